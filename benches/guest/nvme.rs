//! The NVMe benchmark (`guest_bench nvme`, the rig's stock-type1v2 guest):
//! 4 KiB random reads from QEMU's nvme at queue depth 1 and 32, through
//! the user-space driver of examples/nvme/ (polled, and MSI-X) and through
//! the guest kernel's nvme driver (O_DIRECT: `pread` at depth 1, Linux AIO
//! at depth 32), on the same device in the same run. The device moves
//! between vfio-pci and nvme each round, and the contenders take turns
//! round by round ([`ROUNDS`]), so each ratio is taken from measurements
//! moments apart (this machine's speed swings); reported: IOPS and median
//! latency per contender (medians over rounds) and the median of the
//! rounds' IOPS ratios. For the polled driver it also counts the system
//! calls the I/O loop makes (a `raw_syscalls:sys_enter` perf counter on the
//! thread), which the goal says must be none.

use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::time::{Duration, Instant};

use typed_vfio::iova::IovaAllocator;
use typed_vfio::{Container, DmaAccess, DmaBuffer, Group, GroupId, Type1v2};

#[path = "../../examples/nvme/driver.rs"]
#[allow(dead_code)]
mod driver;

use driver::{Arena, Completion, Config, Controller};

/// Rounds; each runs every contender once at each depth.
const ROUNDS: usize = 5;
/// Reads per contender, depth and round.
const READS: usize = 2000;
/// The LBA space read (4 KiB blocks of the 8 MiB image).
const BLOCKS_4K: u64 = 2048;

/// A reproducible random 4 KiB-aligned LBA (512-byte blocks).
struct Lcg(u64);
impl Lcg {
    fn next_lba(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % BLOCKS_4K * 8
    }
}

#[derive(Default, Clone, Copy)]
struct Sample {
    iops: f64,
    median_us: f64,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// A system-call counter for this thread (perf, `raw_syscalls:sys_enter`),
/// or why there is none.
struct SyscallCounter(std::fs::File);

impl SyscallCounter {
    fn open() -> Result<Self, String> {
        let tracing = "/sys/kernel/tracing";
        if !std::path::Path::new(&format!("{tracing}/events")).exists() {
            let _ = std::process::Command::new("mount")
                .args(["-t", "tracefs", "nodev", tracing])
                .status();
        }
        let id: u64 =
            std::fs::read_to_string(format!("{tracing}/events/raw_syscalls/sys_enter/id"))
                .map_err(|e| format!("no raw_syscalls:sys_enter tracepoint: {e}"))?
                .trim()
                .parse()
                .map_err(|e| format!("tracepoint id: {e}"))?;
        // struct perf_event_attr, the fields used (PERF_ATTR_SIZE_VER0 = 64
        // bytes): type, size, config, then flags at 40 (disabled = bit 0,
        // exclude_kernel = bit 5 stays off: the tracepoint fires in the
        // kernel).
        let mut attr = [0u8; 64];
        attr[0..4].copy_from_slice(&2u32.to_ne_bytes()); // PERF_TYPE_TRACEPOINT
        attr[4..8].copy_from_slice(&64u32.to_ne_bytes());
        attr[8..16].copy_from_slice(&id.to_ne_bytes());
        // SAFETY: perf_event_open reads `size` (64) bytes of `attr`, which
        // is 64 bytes long and lives across the call; pid 0 / cpu -1 count
        // this thread on any CPU; no group fd; flags 0.
        let fd = unsafe { libc::syscall(libc::SYS_perf_event_open, attr.as_ptr(), 0, -1, -1, 0) };
        if fd < 0 {
            return Err(format!(
                "perf_event_open: {}",
                std::io::Error::last_os_error()
            ));
        }
        // SAFETY: `fd` is a new perf event fd that nothing else owns.
        Ok(SyscallCounter(unsafe {
            <std::fs::File as std::os::fd::FromRawFd>::from_raw_fd(fd as i32)
        }))
    }

    fn read(&mut self) -> u64 {
        use std::io::Read;
        let mut b = [0u8; 8];
        match self.0.read_exact(&mut b) {
            Ok(()) => u64::from_ne_bytes(b),
            Err(_) => u64::MAX,
        }
    }

    /// System calls `f` made, less the counter's own read.
    fn count(&mut self, f: impl FnOnce()) -> u64 {
        let a = self.read();
        let b = self.read();
        let own = b.saturating_sub(a);
        let start = self.read();
        f();
        let end = self.read();
        end.saturating_sub(start).saturating_sub(own)
    }
}

/// Depth-1 reads through the user-space driver: `READS` reads, one at a
/// time. Each latency in µs.
fn user_qd1(c: &mut Controller<'_, '_>, rng: &mut Lcg, lat: &mut Vec<f64>) -> Sample {
    lat.clear();
    let start = Instant::now();
    for _ in 0..READS {
        let t = Instant::now();
        c.submit_io(0, 0, false, rng.next_lba(), 4096).unwrap();
        let mut done = false;
        while !done {
            c.wait(0, |d| done |= d.slot == 0).unwrap();
        }
        lat.push(t.elapsed().as_secs_f64() * 1e6);
    }
    let secs = start.elapsed().as_secs_f64();
    Sample {
        iops: READS as f64 / secs,
        median_us: median(lat.clone()),
    }
}

/// Depth-32 reads: 32 slots kept busy until `READS` completed.
fn user_qd32(
    c: &mut Controller<'_, '_>,
    rng: &mut Lcg,
    started: &mut [Instant; 32],
    lat: &mut Vec<f64>,
) -> Sample {
    lat.clear();
    let start = Instant::now();
    for slot in 0..32u16 {
        started[usize::from(slot)] = Instant::now();
        c.queue_io(0, slot, false, rng.next_lba(), 4096).unwrap();
    }
    c.ring_sq(0).unwrap();
    let mut done = 0;
    let mut inflight = 32;
    let mut free = [0u16; 32];
    while done < READS {
        let mut n = 0;
        c.wait(0, |d| {
            free[n] = d.slot;
            n += 1;
        })
        .unwrap();
        let mut queued = false;
        for &slot in &free[..n] {
            lat.push(started[usize::from(slot)].elapsed().as_secs_f64() * 1e6);
            done += 1;
            inflight -= 1;
            if done + inflight < READS {
                started[usize::from(slot)] = Instant::now();
                c.queue_io(0, slot, false, rng.next_lba(), 4096).unwrap();
                inflight += 1;
                queued = true;
            }
        }
        // One SQ doorbell for the batch, as the kernel's driver rings once
        // per batch too.
        if queued {
            c.ring_sq(0).unwrap();
        }
    }
    let secs = start.elapsed().as_secs_f64();
    Sample {
        iops: READS as f64 / secs,
        median_us: median(lat.clone()),
    }
}

/// One user-space session (type1v2): depth 1 and 32, with `completion`;
/// polled also counts the I/O loops' system calls.
fn user_round(
    address: &str,
    group: u32,
    completion: Completion,
    rng: &mut Lcg,
    counter: Option<&mut SyscallCounter>,
) -> (Sample, Sample, Option<u64>) {
    let container = Container::open()
        .unwrap()
        .attach(Group::open_id(GroupId::new(group)).unwrap())
        .unwrap()
        .set_iommu::<Type1v2>()
        .unwrap();
    let device = container.open_device(address).unwrap();
    let config = Config {
        completion,
        depth: 32,
        slot_bytes: 4096,
        command_timeout: Duration::from_secs(10),
        ..Config::default()
    };
    let buffer = DmaBuffer::new(config.arena_bytes()).unwrap();
    let mut iovas = IovaAllocator::for_container(&container.iommu_info().unwrap()).unwrap();
    let _guard = iovas.alloc(1 << 21, 1 << 21).unwrap();
    let block = iovas.alloc(buffer.len() as u64, 1 << 21).unwrap();
    let mapping = container
        .map(&buffer, block.iova(), DmaAccess::ReadWrite)
        .unwrap();
    let mut c = Controller::new(&device, Arena::mapped(&buffer, mapping.iova()), config).unwrap();
    let mut lat = Vec::with_capacity(READS);
    let mut started = [Instant::now(); 32];
    let (qd1, qd32, calls) = match counter {
        Some(counter) => {
            let (mut a, mut b) = (Sample::default(), Sample::default());
            let calls = counter.count(|| {
                a = user_qd1(&mut c, rng, &mut lat);
                b = user_qd32(&mut c, rng, &mut started, &mut lat);
            });
            (a, b, Some(calls))
        }
        None => (
            user_qd1(&mut c, rng, &mut lat),
            user_qd32(&mut c, rng, &mut started, &mut lat),
            None,
        ),
    };
    c.shutdown().unwrap();
    drop(mapping);
    (qd1, qd32, calls)
}

// Linux AIO (the kernel's io_submit interface), for depth 32.
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct Iocb {
    data: u64,
    #[cfg(target_endian = "little")]
    key: u32,
    rw_flags: i32,
    #[cfg(target_endian = "big")]
    key: u32,
    opcode: u16,
    reqprio: i16,
    fildes: u32,
    buf: u64,
    nbytes: u64,
    offset: i64,
    reserved2: u64,
    flags: u32,
    resfd: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct IoEvent {
    data: u64,
    obj: u64,
    res: i64,
    res2: i64,
}

/// Kernel reads: `pread` at depth 1, AIO at depth 32, O_DIRECT.
fn kernel_round(dev: &std::path::Path, rng: &mut Lcg) -> (Sample, Sample) {
    use std::os::unix::fs::FileExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECT)
        .open(dev)
        .unwrap();
    // 32 page-aligned 4 KiB buffers (O_DIRECT).
    let mut pool = vec![0u8; 33 * 4096];
    let off = pool.as_ptr().align_offset(4096);
    let mut lat = Vec::with_capacity(READS);
    let start = Instant::now();
    for _ in 0..READS {
        let t = Instant::now();
        let n = file
            .read_at(&mut pool[off..off + 4096], rng.next_lba() * 512)
            .unwrap();
        assert_eq!(n, 4096);
        lat.push(t.elapsed().as_secs_f64() * 1e6);
    }
    let qd1 = Sample {
        iops: READS as f64 / start.elapsed().as_secs_f64(),
        median_us: median(lat.clone()),
    };

    let mut ctx: libc::c_ulong = 0;
    // SAFETY: io_setup writes the context id into `ctx`, which lives.
    let r = unsafe { libc::syscall(libc::SYS_io_setup, 32, &mut ctx as *mut libc::c_ulong) };
    assert_eq!(r, 0, "io_setup: {}", std::io::Error::last_os_error());
    let base = pool[off..].as_mut_ptr();
    let mut iocbs = [Iocb::default(); 32];
    let mut started = [Instant::now(); 32];
    let mut events = [IoEvent::default(); 32];
    lat.clear();
    let submit = |iocbs: &mut [Iocb; 32], slot: usize, lba: u64| {
        iocbs[slot] = Iocb {
            data: slot as u64,
            opcode: 0, // IOCB_CMD_PREAD
            fildes: file.as_raw_fd() as u32,
            buf: base.wrapping_add(slot * 4096) as u64,
            nbytes: 4096,
            offset: (lba * 512) as i64,
            ..Iocb::default()
        };
        let mut p = [&mut iocbs[slot] as *mut Iocb];
        // SAFETY: one iocb, alive until its event is reaped (the array
        // outlives the loop); its buffer is 4096 bytes of `pool` at a
        // distinct page per slot, alive likewise.
        let r = unsafe { libc::syscall(libc::SYS_io_submit, ctx, 1, p.as_mut_ptr()) };
        assert_eq!(r, 1, "io_submit: {}", std::io::Error::last_os_error());
    };
    let start = Instant::now();
    for (slot, at) in started.iter_mut().enumerate() {
        *at = Instant::now();
        submit(&mut iocbs, slot, rng.next_lba());
    }
    let (mut done, mut inflight) = (0, 32);
    while done < READS {
        // SAFETY: up to 32 events written into `events` (32 long).
        let n = unsafe {
            libc::syscall(
                libc::SYS_io_getevents,
                ctx,
                1,
                32,
                events.as_mut_ptr(),
                std::ptr::null_mut::<libc::timespec>(),
            )
        };
        assert!(n > 0, "io_getevents: {}", std::io::Error::last_os_error());
        for e in &events[..n as usize] {
            assert_eq!(e.res, 4096, "AIO read result");
            let slot = e.data as usize;
            lat.push(started[slot].elapsed().as_secs_f64() * 1e6);
            done += 1;
            inflight -= 1;
            if done + inflight < READS {
                started[slot] = Instant::now();
                submit(&mut iocbs, slot, rng.next_lba());
                inflight += 1;
            }
        }
    }
    let qd32 = Sample {
        iops: READS as f64 / start.elapsed().as_secs_f64(),
        median_us: median(lat),
    };
    // SAFETY: the context made above; nothing is in flight.
    unsafe { libc::syscall(libc::SYS_io_destroy, ctx) };
    (qd1, qd32)
}

fn bind(bdf: &str, from: &str, to: &str) {
    std::fs::write(format!("/sys/bus/pci/drivers/{from}/unbind"), bdf).unwrap();
    std::fs::write(format!("/sys/bus/pci/devices/{bdf}/driver_override"), to).unwrap();
    std::fs::write("/sys/bus/pci/drivers_probe", bdf).unwrap();
}

fn kernel_disk(bdf: &str) -> std::path::PathBuf {
    let start = Instant::now();
    loop {
        if let Ok(ctrls) = std::fs::read_dir(format!("/sys/bus/pci/devices/{bdf}/nvme")) {
            for ctrl in ctrls.flatten() {
                let ns = format!("{}n1", ctrl.file_name().to_string_lossy());
                let dev = std::path::PathBuf::from(format!("/dev/{ns}"));
                if ctrl.path().join(&ns).exists() && dev.exists() {
                    return dev;
                }
            }
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "no nvme namespace for {bdf}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub fn run() {
    let le = std::env::var("TVFIO_LE_DEVICE").expect("TVFIO_LE_DEVICE (the nvme) unset");
    let mut words = le.split_whitespace();
    let (bdf, group) = (words.next().unwrap().to_owned(), words.next().unwrap());
    let group: u32 = group.parse().expect("an IOMMU group (type1v2)");
    if !std::path::Path::new("/sys/bus/pci/drivers/nvme").exists() {
        println!("bench nvme: NOT RUN: this kernel has no nvme driver to compare with");
        std::process::exit(3);
    }
    let mut counter = SyscallCounter::open();
    if let Err(why) = &counter {
        println!("bench nvme: system calls NOT COUNTED: {why}");
    }
    let names = ["typed-vfio polled", "typed-vfio MSI-X", "kernel nvme"];
    // [contender][depth] per round.
    let mut s: Vec<[Vec<Sample>; 2]> = (0..3).map(|_| [Vec::new(), Vec::new()]).collect();
    let mut calls = Vec::new();
    let mut rng = Lcg(0x7466_696f);
    for round in 0..ROUNDS {
        let (a, b, c) = user_round(
            &bdf,
            group,
            Completion::Polled,
            &mut rng,
            counter.as_mut().ok(),
        );
        s[0][0].push(a);
        s[0][1].push(b);
        calls.extend(c);
        let (a, b, _) = user_round(&bdf, group, Completion::Msix, &mut rng, None);
        s[1][0].push(a);
        s[1][1].push(b);
        bind(&bdf, "vfio-pci", "nvme");
        let (a, b) = kernel_round(&kernel_disk(&bdf), &mut rng);
        s[2][0].push(a);
        s[2][1].push(b);
        bind(&bdf, "nvme", "vfio-pci");
        eprintln!("bench nvme: round {} of {ROUNDS} done", round + 1);
    }
    println!(
        "bench nvme: 4 KiB random reads, {READS} per contender, depth and round, {ROUNDS} rounds (medians over rounds)"
    );
    println!(
        "bench nvme: {:<20} {:>10} {:>10} {:>10} {:>10}",
        "contender", "QD1 IOPS", "QD1 µs", "QD32 IOPS", "QD32 µs"
    );
    for (i, name) in names.iter().enumerate() {
        let m = |d: usize, f: fn(&Sample) -> f64| median(s[i][d].iter().map(f).collect());
        println!(
            "bench nvme: {:<20} {:>10.0} {:>10.1} {:>10.0} {:>10.1}",
            name,
            m(0, |x| x.iops),
            m(0, |x| x.median_us),
            m(1, |x| x.iops),
            m(1, |x| x.median_us)
        );
    }
    for (i, name) in names.iter().enumerate().take(2) {
        for (d, depth) in ["QD1", "QD32"].iter().enumerate() {
            let ratios: Vec<f64> = (0..ROUNDS)
                .map(|r| s[i][d][r].iops / s[2][d][r].iops)
                .collect();
            println!(
                "bench nvme: {name} / kernel nvme IOPS at {depth}: {:.2} (median of the rounds' ratios; goal for polled: >= 1.0)",
                median(ratios)
            );
        }
    }
    match calls.iter().max() {
        Some(max) => println!(
            "bench nvme: system calls in the polled I/O loops ({} reads per round): at most {max} per round, {:.4} per read (goal: 0)",
            2 * READS,
            *max as f64 / (2 * READS) as f64
        ),
        None => println!("bench nvme: system calls NOT COUNTED"),
    }
}
