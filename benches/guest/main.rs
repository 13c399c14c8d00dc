//! In-guest benchmark, run by the VM rig (`tests/vm/run`) on a real kernel:
//! `MAP_DMA`+`UNMAP_DMA` pairs and loopback IRQ triggers through the typed
//! API, through the raw `sys` calls, and through rust-vmm's `vfio-ioctls`,
//! in the same guest run, with the ratios the project's goals are stated in
//! (typed/raw ≤ 1.03, typed/vfio-ioctls ≤ 1.0).
//!
//! The three contenders are live at once and take turns in short batches
//! ([`BATCH`] operations, a few milliseconds), the order rotating every
//! cycle: TCG guests run at the speed of a host whose own speed swings by
//! a factor of two from one second to the next on these shared machines,
//! and only batches run moments apart see the same host. Typed and raw
//! share one container and device (the raw calls go to the typed objects'
//! fds); vfio-ioctls has its own, on the other edu device, and the devices
//! swap between the two sessions. Each contender does 2 × [`CYCLES`] ×
//! [`BATCH`] = 20,000 of each operation. Reported: the median batch per
//! contender, and each ratio both as the ratio of those medians and as the
//! median of the cycles' own ratios (the paired estimate).
//!
//! With `TVFIO_IOMMU=iommufd` (the rig's `custom-iommufd` configuration)
//! it runs the iommufd part instead (`guest/iommufd.rs`): IOAS map+unmap
//! pairs typed vs raw vs rust-vmm's `iommufd-ioctls`, and MSI triggers on the
//! bound cdev, by the same method.
//!
//! Outside the guest (no `TVFIO_DEVICES`), it says so and exits non-zero.
//!
//! `TVFIO_BENCH_COUNT="CONTENDER MAPS TRIGGERS"` runs one contender once with
//! that many operations and prints nothing else (in either part): `benches/icount` uses it
//! to count instructions with callgrind against a stand-in VFIO
//! (`benches/vfio_shim.c`) on a machine without VFIO.

use std::hint::black_box;
use std::os::fd::AsFd;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use nix::sys::eventfd::EventFd;
use typed_vfio::{Container, Device, DmaAccess, DmaBuffer, Group, GroupId, PciIrq, Type1v2, sys};
use vfio_ioctls::{VfioContainer, VfioDevice};

/// The NVMe benchmark (`guest_bench nvme`).
mod nvme;

/// Operations per batch.
const BATCH: u32 = 200;
/// Batches per contender and operation in each of the two sessions.
const CYCLES: usize = 50;
/// Where vfio-ioctls looks for the device (`TVFIO_SYSFS_DEVICES` overrides
/// it for `benches/icount`).
const SYSFS_DEVICES: &str = "/sys/bus/pci/devices";
const IOVA: u64 = 0x20_0000;
const MSI: u32 = PciIrq::Msi as u32;

fn ns_per_op(n: u32, mut f: impl FnMut()) -> f64 {
    let start = Instant::now();
    for _ in 0..n {
        f();
    }
    start.elapsed().as_nanos() as f64 / f64::from(n.max(1))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn percentile(mut v: Vec<f64>, p: usize) -> f64 {
    v.sort_by(f64::total_cmp);
    v[(v.len() - 1) * p / 100]
}

/// The typed API: a type1v2 container, the device with MSI routed to an
/// eventfd, a one-page buffer.
struct Typed {
    dev: Device,
    c: Container<Type1v2>,
    buf: DmaBuffer,
    _efd: EventFd,
}

impl Typed {
    fn open(bdf: &str, group: u32) -> Typed {
        let c = Container::open()
            .unwrap()
            .attach(Group::open_id(GroupId::new(group)).unwrap())
            .unwrap()
            .set_iommu::<Type1v2>()
            .unwrap();
        let dev = c.open_device(bdf).unwrap();
        let efd = EventFd::new().unwrap();
        dev.set_irq_eventfd(MSI, 0, efd.as_fd()).unwrap();
        Typed {
            dev,
            c,
            buf: DmaBuffer::new(4096).unwrap(),
            _efd: efd,
        }
    }

    fn maps(&self, n: u32) -> f64 {
        ns_per_op(n, || {
            // Inputs opaque, as the raw contender's are; the guard unmaps
            // as it drops.
            let guard = self
                .c
                .map(black_box(&self.buf), black_box(IOVA), DmaAccess::ReadWrite)
                .unwrap();
            drop(guard);
        })
    }

    fn triggers(&self, n: u32) -> f64 {
        ns_per_op(n, || self.dev.trigger_irq(MSI, 0, 1).unwrap())
    }
}

impl Drop for Typed {
    fn drop(&mut self) {
        self.dev.disable_irq(MSI).unwrap();
    }
}

/// The raw `sys` calls, on the typed contender's container and device fds
/// (the same kernel objects), with a buffer of its own. Arguments are built
/// per call, as a caller of the raw layer does (and as the typed API and
/// vfio-ioctls do): only the ioctl plumbing differs.
struct Raw {
    buf: DmaBuffer,
}

impl Raw {
    fn maps(&self, on: &Typed, n: u32) -> f64 {
        let cfd = sys::ContainerFd::new(on.c.as_fd());
        ns_per_op(n, || {
            let map_arg = sys::vfio_iommu_type1_dma_map {
                argsz: size_of::<sys::vfio_iommu_type1_dma_map>() as u32,
                flags: sys::VFIO_DMA_MAP_FLAG_READ | sys::VFIO_DMA_MAP_FLAG_WRITE,
                vaddr: black_box(self.buf.addr()) as u64,
                iova: black_box(IOVA),
                size: 4096,
            };
            let mut unmap = sys::vfio_iommu_type1_dma_unmap {
                argsz: size_of::<sys::vfio_iommu_type1_dma_unmap>() as u32,
                flags: 0,
                iova: IOVA,
                size: 4096,
                data: Default::default(),
            };
            // SAFETY: the buffer outlives the mapping, which is removed
            // right after; both arguments are complete structs.
            unsafe {
                sys::ioctl::vfio_iommu_map_dma(cfd, &map_arg).unwrap();
                sys::ioctl::vfio_iommu_unmap_dma(cfd, &mut unmap).unwrap();
            }
        })
    }

    fn triggers(&self, on: &Typed, n: u32) -> f64 {
        let dfd = sys::DeviceFd::new(on.dev.as_fd());
        ns_per_op(n, || {
            let trigger = [
                20u32,
                sys::VFIO_IRQ_SET_DATA_NONE | sys::VFIO_IRQ_SET_ACTION_TRIGGER,
                black_box(MSI),
                black_box(0),
                1,
            ];
            // SAFETY: `trigger` is a complete 20-byte vfio_irq_set header.
            unsafe { sys::ioctl::vfio_device_set_irqs(dfd, trigger.as_ptr().cast()).unwrap() };
        })
    }
}

/// rust-vmm's vfio-ioctls: its own container and device, MSI enabled.
struct Vmm {
    dev: VfioDevice,
    container: Arc<VfioContainer>,
    buf: DmaBuffer,
    _efd: vmm_sys_util::eventfd::EventFd,
}

impl Vmm {
    fn open(bdf: &str) -> Vmm {
        let root = std::env::var("TVFIO_SYSFS_DEVICES").unwrap_or_else(|_| SYSFS_DEVICES.into());
        let container = Arc::new(VfioContainer::new(None).unwrap());
        let dev = VfioDevice::new(&Path::new(&root).join(bdf), container.clone(), false).unwrap();
        let efd = vmm_sys_util::eventfd::EventFd::new(0).unwrap();
        dev.enable_msi(vec![&efd]).unwrap();
        Vmm {
            dev,
            container,
            buf: DmaBuffer::new(4096).unwrap(),
            _efd: efd,
        }
    }

    fn maps(&self, n: u32) -> f64 {
        let addr = self.buf.addr() as *mut u8;
        ns_per_op(n, || {
            // SAFETY: the buffer outlives the mapping, which is removed
            // right after.
            unsafe { self.container.vfio_dma_map(IOVA, 4096, addr).unwrap() };
            self.container.vfio_dma_unmap(IOVA, 4096).unwrap();
        })
    }

    fn triggers(&self, n: u32) -> f64 {
        ns_per_op(n, || self.dev.trigger_irq(MSI, 0).unwrap())
    }
}

impl Drop for Vmm {
    fn drop(&mut self) {
        self.dev.disable_msi().unwrap();
    }
}

mod iommufd;

const NAMES: [&str; 3] = ["typed", "raw", "vfio-ioctls"];

/// Batch results: `[contender][batch]` in ns per operation; the first
/// `trigger.len()` contenders trigger.
struct Results {
    map: Vec<Vec<f64>>,
    trigger: Vec<Vec<f64>>,
}

impl Results {
    fn new(mappers: usize, triggerers: usize) -> Results {
        Results {
            map: vec![Vec::new(); mappers],
            trigger: vec![Vec::new(); triggerers],
        }
    }
}

/// [`CYCLES`] cycles of one batch per contender (`batch(i)` runs contender
/// `i`'s), each cycle starting with another contender.
fn turns(out: &mut [Vec<f64>], mut batch: impl FnMut(usize) -> f64) {
    let n = out.len();
    for cycle in 0..CYCLES {
        for k in 0..n {
            let i = (cycle + k) % n;
            out[i].push(batch(i));
        }
    }
}

/// Prints each contender's median batch and percentiles, then typed's
/// ratio to each `(contender, goal)`: of the medians, and paired.
fn report(names: &[&str], r: &Results, goals: &[(usize, &str)]) {
    let w = names.iter().map(|n| n.len()).max().unwrap_or(0) + 1;
    for (i, name) in names.iter().enumerate() {
        let map = &r.map[i];
        match r.trigger.get(i) {
            Some(trigger) => println!(
                "bench {name:<w$} map+unmap {:>9.0} ns/pair   irq trigger {:>9.0} ns/op   \
                 (median batch; 10th-90th percentile {:.0}-{:.0} and {:.0}-{:.0})",
                median(map.clone()),
                median(trigger.clone()),
                percentile(map.clone(), 10),
                percentile(map.clone(), 90),
                percentile(trigger.clone(), 10),
                percentile(trigger.clone(), 90),
            ),
            None => println!(
                "bench {name:<w$} map+unmap {:>9.0} ns/pair   \
                 (median batch; 10th-90th percentile {:.0}-{:.0})",
                median(map.clone()),
                percentile(map.clone(), 10),
                percentile(map.clone(), 90),
            ),
        }
    }
    let ratios = |v: &[Vec<f64>], other: usize| {
        let of_medians = median(v[0].clone()) / median(v[other].clone());
        let paired = median(v[0].iter().zip(&v[other]).map(|(x, y)| x / y).collect());
        (of_medians, paired)
    };
    for &(other, goal) in goals {
        let (m, mp) = ratios(&r.map, other);
        let trigger = if other < r.trigger.len() {
            let (t, tp) = ratios(&r.trigger, other);
            format!("   irq trigger {t:.3} (paired {tp:.3})")
        } else {
            String::new()
        };
        println!(
            "bench ratio typed/{:<w$} map+unmap {m:.3} (paired {mp:.3}){trigger}   (goal <= {goal})",
            names[other]
        );
    }
}

/// One session: typed and raw on `a`, vfio-ioctls on `b`.
fn session(a: (&str, u32), b: &str, out: &mut Results) {
    let typed = Typed::open(a.0, a.1);
    let raw = Raw {
        buf: DmaBuffer::new(4096).unwrap(),
    };
    let vmm = Vmm::open(b);
    // Warm up: the first calls fault in code and kernel state.
    let _ = (typed.maps(BATCH), raw.maps(&typed, BATCH), vmm.maps(BATCH));
    let _ = (typed.triggers(BATCH), raw.triggers(&typed, BATCH));
    let _ = vmm.triggers(BATCH);
    turns(&mut out.map, |i| match i {
        0 => typed.maps(BATCH),
        1 => raw.maps(&typed, BATCH),
        _ => vmm.maps(BATCH),
    });
    turns(&mut out.trigger, |i| match i {
        0 => typed.triggers(BATCH),
        1 => raw.triggers(&typed, BATCH),
        _ => vmm.triggers(BATCH),
    });
    drop(vmm);
    drop(typed);
}

fn main() {
    if std::env::args().nth(1).as_deref() == Some("nvme") {
        nvme::run();
        return;
    }
    let Ok(devices) = std::env::var("TVFIO_DEVICES") else {
        eprintln!("bench: not in the VFIO guest (TVFIO_DEVICES unset): run tests/vm/run");
        std::process::exit(2);
    };
    let devices: Vec<&str> = devices.split_whitespace().collect();
    assert!(!devices.is_empty(), "bench: TVFIO_DEVICES is empty");
    let count = std::env::var("TVFIO_BENCH_COUNT").ok().map(|spec| {
        let words: Vec<&str> = spec.split_whitespace().collect();
        let [name, maps, triggers] = words[..] else {
            panic!("TVFIO_BENCH_COUNT: CONTENDER MAPS TRIGGERS");
        };
        let (maps, triggers): (u32, u32) = (maps.parse().unwrap(), triggers.parse().unwrap());
        (name.to_owned(), maps, triggers)
    });

    if std::env::var("TVFIO_IOMMU").is_ok_and(|m| m == "iommufd") {
        match count {
            Some((name, maps, triggers)) => iommufd::count(&name, &devices, maps, triggers),
            None => iommufd::run(&devices),
        }
        return;
    }

    let groups: Vec<u32> = std::env::var("TVFIO_GROUPS")
        .expect("bench: TVFIO_GROUPS unset")
        .split_whitespace()
        .map(|g| g.parse().expect("IOMMU group"))
        .collect();
    assert!(devices.len() == groups.len());

    if let Some((name, maps, triggers)) = count {
        match name.as_str() {
            "typed" => {
                let t = Typed::open(devices[0], groups[0]);
                t.maps(maps);
                t.triggers(triggers);
            }
            "raw" => {
                let t = Typed::open(devices[0], groups[0]);
                let r = Raw {
                    buf: DmaBuffer::new(4096).unwrap(),
                };
                r.maps(&t, maps);
                r.triggers(&t, triggers);
            }
            "vfio-ioctls" => {
                let v = Vmm::open(devices[0]);
                v.maps(maps);
                v.triggers(triggers);
            }
            // Doorbell writes (MAPS of them) into BAR0's mmap: through
            // MappedRegion, and as a raw volatile store (benches/icount
            // --doorbell).
            "doorbell-typed" => {
                let t = Typed::open(devices[0], groups[0]);
                let bar = t.dev.region(0).unwrap().mmap().unwrap();
                for i in 0..maps {
                    bar.write_u32(black_box(0x1000), black_box(i)).unwrap();
                }
            }
            "doorbell-register" => {
                let t = Typed::open(devices[0], groups[0]);
                let bar = t.dev.region(0).unwrap().mmap().unwrap();
                let doorbell = bar.register32(0x1000).unwrap();
                for i in 0..maps {
                    black_box(&doorbell).write(black_box(i));
                }
            }
            "doorbell-raw" => {
                let t = Typed::open(devices[0], groups[0]);
                let fd = std::os::fd::AsRawFd::as_raw_fd(&t.dev.as_fd());
                // SAFETY: a fresh shared mapping of the device fd's first
                // 8 KiB (the stand-in's memfd, or a BAR), unmapped never
                // (the process ends); nothing else reaches it.
                let p = unsafe {
                    libc::mmap(
                        std::ptr::null_mut(),
                        0x2000,
                        libc::PROT_READ | libc::PROT_WRITE,
                        libc::MAP_SHARED,
                        fd,
                        0,
                    )
                };
                assert_ne!(p, libc::MAP_FAILED);
                let doorbell = p.cast::<u8>().wrapping_add(0x1000).cast::<u32>();
                for i in 0..maps {
                    // SAFETY: inside the 8 KiB mapping, 4-aligned.
                    unsafe { black_box(doorbell).write_volatile(black_box(i).to_le()) };
                }
            }
            other => panic!("no contender {other}"),
        }
        return;
    }

    assert!(
        devices.len() >= 2,
        "bench: needs two edu devices (one for vfio-ioctls)"
    );
    let mut r = Results::new(3, 3);
    session((devices[0], groups[0]), devices[1], &mut r);
    eprintln!("bench: session 1 of 2 done");
    session((devices[1], groups[1]), devices[0], &mut r);
    eprintln!("bench: session 2 of 2 done");

    let per_op = BATCH as usize * r.map[0].len();
    println!(
        "bench {per_op} map+unmap pairs and {per_op} triggers per contender, in batches of {BATCH}"
    );
    report(&NAMES, &r, &[(1, "1.03"), (2, "1.0")]);
}
