//! Mediated devices on the real kernel: the kernel's `mtty` sample
//! (`CONFIG_SAMPLE_VFIO_MDEV_MTTY`, an emulated 16550 serial port as a VFIO
//! mdev with migration v2), created and removed through sysfs
//! (`typed_vfio::mdev`), opened through its group on a type1 container or
//! through its cdev on iommufd, and migrated with the typestate API
//! (`typed_vfio::migration`): data written into one mtty's FIFO comes out
//! of a second one.
//!
//! Runs where the custom kernels run (they have mtty); `tests/vm/run` skips
//! `mdev::` on the stock, no-IOMMU and cross-architecture kernels, which do
//! not.

use std::any::Any;

use typed_vfio::iommufd::{CdevDevice, Iommufd};
use typed_vfio::mdev::{Mdev, MdevError, MdevParent, MdevType, MdevUuid};
use typed_vfio::migration::{
    Current, MigState, MigrationError, PreCopy, PreCopyP2p, PreCopyRead, Resuming, Running,
    RunningP2p, Stop, StopCopy, StopCopyOnly, WithP2pPreCopy,
};
use typed_vfio::{Container, Device, Errno, Group, Type1, Type1v2, sys};

use crate::rig::{self, IommuKind};

/// mtty's PCI ids (samples/vfio-mdev/mtty.c).
const MTTY_VENDOR: u16 = 0x4348;
const MTTY_DEVICE: u16 = 0x3253;
/// 16550 registers in BAR0 (one byte each): transmit/receive, line status.
const UART_TX_RX: u64 = 0;
const UART_LSR: u64 = 5;
const LSR_DATA_READY: u8 = 0x01;
/// mtty's FIFO depth after open.
const FIFO: usize = 16;

fn parent() -> MdevParent {
    MdevParent::by_name("mtty").unwrap_or_else(|e| {
        panic!("no mtty mdev parent ({e}): the kernel needs CONFIG_SAMPLE_VFIO_MDEV_MTTY")
    })
}

fn single_port(parent: &MdevParent) -> MdevType {
    let types = parent.types().expect("mdev_supported_types");
    types
        .into_iter()
        .find(|t| t.id == "mtty-1")
        .expect("mtty offers mtty-1")
}

fn create(parent: &MdevParent, ty: &MdevType) -> Mdev {
    parent
        .create(ty, MdevUuid::random().unwrap())
        .expect("create an mdev")
}

/// Opens mdevs the configuration's way, keeping what must outlive them.
struct Opened {
    _keep: Vec<Box<dyn Any>>,
    devices: Vec<Box<dyn std::ops::Deref<Target = Device>>>,
}

struct Plain(Device);
impl std::ops::Deref for Plain {
    type Target = Device;
    fn deref(&self) -> &Device {
        &self.0
    }
}

fn open(mdevs: &[&Mdev]) -> Opened {
    match rig::iommu() {
        IommuKind::Iommufd => {
            let fd = Iommufd::open().expect("open /dev/iommu");
            let devices = mdevs
                .iter()
                .map(|m| {
                    let path = m.cdev_path().expect("the mdev's cdev");
                    let bound = CdevDevice::open(&path)
                        .expect("open the cdev")
                        .bind(&fd)
                        .unwrap_or_else(|e| panic!("bind {}: {e}", m.name()));
                    Box::new(bound) as Box<dyn std::ops::Deref<Target = Device>>
                })
                .collect();
            Opened {
                _keep: vec![Box::new(fd)],
                devices,
            }
        }
        kind => {
            let groups: Vec<Group> = mdevs
                .iter()
                .map(|m| Group::open_id(m.group().expect("the mdev's group")).expect("open group"))
                .collect();
            let mut groups = groups.into_iter();
            let container = Container::open()
                .expect("open container")
                .attach(groups.next().unwrap())
                .expect("attach");
            for g in groups {
                container
                    .attach_more(g)
                    .map_err(|(_, e)| e)
                    .expect("attach");
            }
            match kind {
                IommuKind::Type1 => with_model::<Type1>(container, mdevs),
                _ => with_model::<Type1v2>(container, mdevs),
            }
        }
    }
}

/// `N` (1 or 2) new single-port mttys, opened the configuration's way: the
/// first, the second (if any), and what keeps them open (dropped first).
fn mttys<const N: usize>() -> (Mdev, Option<Mdev>, Opened) {
    let parent = parent();
    let ty = single_port(&parent);
    let first = create(&parent, &ty);
    let second = (N > 1).then(|| create(&parent, &ty));
    let mut all = vec![&first];
    all.extend(second.as_ref());
    let opened = open(&all);
    (first, second, opened)
}

/// Sets the container's IOMMU model (the emulated IOMMU takes either) and
/// opens the mdevs by name.
fn with_model<M: typed_vfio::IommuModel + 'static>(
    container: Container<typed_vfio::Attached>,
    mdevs: &[&Mdev],
) -> Opened {
    let c = container
        .set_iommu::<M>()
        .expect("the model on the emulated IOMMU");
    let devices = mdevs
        .iter()
        .map(|m| {
            let d = c.open_device(&m.name()).expect("open the mdev");
            Box::new(Plain(d)) as Box<dyn std::ops::Deref<Target = Device>>
        })
        .collect();
    Opened {
        _keep: vec![Box::new(c)],
        devices,
    }
}

/// The device's state as a complete STOP_COPY stream; the device is reset
/// (RUNNING) after.
fn saved(d: &Device) -> Vec<u8> {
    let mut sc = d
        .migration::<StopCopyOnly>()
        .unwrap()
        .to::<StopCopy>()
        .unwrap();
    let stream = sc.read_to_end(1 << 20).unwrap();
    drop(sc.reset().unwrap());
    stream
}

fn put_bytes(d: &Device, bytes: &[u8]) {
    let bar = d.region(0).expect("BAR0");
    for &b in bytes {
        bar.write_u8(UART_TX_RX, b).expect("write THR");
    }
}

fn take_bytes(d: &Device) -> Vec<u8> {
    let bar = d.region(0).expect("BAR0");
    let mut out = Vec::new();
    for _ in 0..=FIFO {
        if bar.read_u8(UART_LSR).expect("read LSR") & LSR_DATA_READY == 0 {
            break;
        }
        out.push(bar.read_u8(UART_TX_RX).expect("read RBR"));
    }
    out
}

#[test]
#[ignore = "needs a VFIO guest: run tests/vm/run"]
fn mtty_types_create_open_and_remove() {
    let parent = parent();
    let types = parent.types().unwrap();
    let ids: Vec<&str> = types.iter().map(|t| t.id.as_str()).collect();
    assert_eq!(ids, ["mtty-1", "mtty-2"]);
    assert!(types.iter().all(|t| t.device_api == "vfio-pci"));
    let ty = single_port(&parent);
    let before = ty.available;
    assert!(before > 0);
    let uuid = MdevUuid::random().unwrap();
    let mdev = parent.create(&ty, uuid).expect("create");
    assert_eq!(single_port(&parent).available, before - 1);
    // The UUID is taken now.
    match parent.create(&ty, uuid) {
        Err(MdevError::Sysfs { errno, .. }) => assert_eq!(errno, Some(Errno::EEXIST)),
        other => panic!("a second mdev with one UUID: {other:?}"),
    }
    let dir = mdev.sysfs().to_owned();
    {
        let opened = open(&[&mdev]);
        let d = &*opened.devices[0];
        assert!(d.info().is_pci());
        let config = d.pci_config().unwrap();
        assert_eq!(config.read_u16(0).unwrap(), MTTY_VENDOR);
        assert_eq!(config.read_u16(2).unwrap(), MTTY_DEVICE);
        assert_eq!(
            d.region(0).unwrap().info().size,
            8,
            "BAR0: one 8-byte I/O port"
        );
        let flags = d.migration_flags().expect("mtty has migration");
        assert!(
            flags.stop_copy() && flags.p2p() && flags.pre_copy(),
            "{flags:?}"
        );
        assert_eq!(d.migration_state().unwrap(), MigState::Running);
        // The FIFO works: what is written is read back.
        put_bytes(d, b"mdev");
        assert_eq!(take_bytes(d), b"mdev");
    }
    mdev.remove().expect("remove");
    assert!(!dir.exists(), "the mdev's sysfs directory is gone");
    assert_eq!(single_port(&parent).available, before);
}

#[test]
#[ignore = "needs a VFIO guest: run tests/vm/run"]
fn mtty_migrates_its_fifo_into_a_second_mdev() {
    let (a, b, opened) = mttys::<2>();
    let (src, dst) = (&*opened.devices[0], &*opened.devices[1]);
    let written = b"typed-vfio 7.2!";
    put_bytes(src, written);

    // Pre-copy rounds while the source runs, then STOP_COPY.
    let m = src.migration::<WithP2pPreCopy>().unwrap();
    let size = m.data_size().expect("MIG_DATA_SIZE");
    let mut pre = m.to::<PreCopy>().expect("RUNNING -> PRE_COPY");
    let info = pre.precopy_info().expect("PRECOPY_INFO");
    let mut stream = Vec::new();
    let mut buf = [0u8; 16];
    let mut rounds = 0;
    while let PreCopyRead::Data(n) = pre.read(&mut buf).unwrap() {
        stream.extend_from_slice(&buf[..n]);
        rounds += 1;
        assert!(rounds < 1000, "pre-copy never ends");
    }
    assert_eq!(
        stream.len() as u64,
        info.initial_bytes,
        "pre-copy gave what PRECOPY_INFO said"
    );
    assert_eq!(pre.precopy_info().unwrap().initial_bytes, 0);
    let pre = pre.to::<PreCopyP2p>().expect("PRE_COPY -> PRE_COPY_P2P");
    let mut sc = pre.to::<StopCopy>().expect("PRE_COPY_P2P -> STOP_COPY");
    let rest = sc.read_to_end(1 << 20).unwrap();
    stream.extend_from_slice(&rest);
    assert_eq!(
        stream.len() as u64,
        size,
        "the stream is MIG_DATA_SIZE long"
    );
    drop(sc.to::<Stop>().expect("STOP_COPY -> STOP"));
    println!(
        "MIGRATION wrote {:?} into mtty {}; pre-copy {} bytes in {rounds} reads, stop-copy {} bytes, MIG_DATA_SIZE {size}",
        String::from_utf8_lossy(written),
        a.name(),
        info.initial_bytes,
        rest.len()
    );

    let mut r = dst
        .migration::<StopCopyOnly>()
        .unwrap()
        .to::<Resuming>()
        .expect("STOP -> RESUMING");
    r.write_all(&stream).expect("write the stream");
    drop(r.to::<Running>().expect("RESUMING -> RUNNING"));
    let back = take_bytes(dst);
    println!(
        "MIGRATION read back {:?} from mtty {}",
        String::from_utf8_lossy(&back),
        b.as_ref().map(Mdev::name).unwrap_or_default()
    );
    assert_eq!(
        back, written,
        "the second mtty returns what the first had buffered"
    );
}

/// A fresh RUNNING handle to `$a`, then `$b`, the kernel's state checked
/// after each, then reset.
macro_rules! arc {
    ($dev:expr, $a:ty => $($b:ty),*) => {$(
        let m = $dev.migration::<WithP2pPreCopy>().unwrap().to::<$a>().unwrap();
        assert_eq!($dev.migration_state().unwrap(), m.state());
        let m = m
            .to::<$b>()
            .unwrap_or_else(|e| panic!("{} -> {}: {e}", stringify!($a), stringify!($b)));
        assert_eq!($dev.migration_state().unwrap(), m.state());
        drop(m.reset().expect("reset"));
    )*};
}

/// `SET` of a raw state value, bypassing the types: the errno.
fn raw_set(d: &Device, state: u32) -> Result<(), Errno> {
    #[repr(C)]
    struct Arg {
        argsz: u32,
        flags: u32,
        device_state: u32,
        data_fd: i32,
    }
    let mut arg = Arg {
        argsz: 16,
        flags: sys::VFIO_DEVICE_FEATURE_SET | sys::VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE,
        device_state: state,
        data_fd: -1,
    };
    use std::os::fd::AsRawFd;
    // SAFETY: VFIO_DEVICE_FEATURE reads and writes `argsz` (16) bytes of
    // `arg`, which is that long and exclusively borrowed for the call.
    let ret = unsafe {
        libc::ioctl(
            d.as_fd().as_raw_fd(),
            sys::VFIO_DEVICE_FEATURE as _,
            &mut arg as *mut Arg,
        )
    };
    if arg.data_fd >= 0 {
        // SAFETY: a successful SET's data fd is new and ours.
        drop(unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(arg.data_fd) });
    }
    if ret < 0 { Err(Errno::last()) } else { Ok(()) }
}

#[test]
#[ignore = "needs a VFIO guest: run tests/vm/run"]
fn mtty_every_arc_and_the_refused_ones() {
    let (_mdev, _donor, opened) = mttys::<2>();
    let (d, donor) = (&*opened.devices[0], &*opened.devices[1]);
    // A valid stream, for the arcs out of RESUMING.
    let stream = saved(donor);

    for_running(d);
    arc!(d, Stop => Running, StopCopy, Resuming, RunningP2p, PreCopy, PreCopyP2p);
    arc!(d, StopCopy => Running, Stop, Resuming, RunningP2p);
    arc!(d, RunningP2p => Running, Stop, StopCopy, Resuming, PreCopy, PreCopyP2p);
    arc!(d, PreCopy => Running, Stop, StopCopy, Resuming, RunningP2p, PreCopyP2p);
    arc!(d, PreCopyP2p => Running, Stop, StopCopy, Resuming, RunningP2p, PreCopy);
    macro_rules! from_resuming {
        ($($b:ty),*) => {$(
            let mut r = d.migration::<WithP2pPreCopy>().unwrap().to::<Resuming>().unwrap();
            r.write_all(&stream).unwrap();
            let m = r.to::<$b>().unwrap();
            assert_eq!(d.migration_state().unwrap(), m.state());
            drop(m.reset().unwrap());
        )*};
    }
    from_resuming!(Running, Stop, StopCopy, RunningP2p, PreCopy, PreCopyP2p);
    println!("MIGRATION all 40 typed arcs (every ArcTo impl) taken on mtty");

    // What the types refuse, the kernel refuses too: each raw SET, from
    // the state named, with its errno; the state stays.
    let refused: [(MigState, u32, &str); 4] = [
        (
            MigState::Running,
            sys::VFIO_DEVICE_STATE_ERROR,
            "RUNNING -> ERROR",
        ),
        (
            MigState::Running,
            sys::VFIO_DEVICE_STATE_NR,
            "RUNNING -> 8 (no state)",
        ),
        (
            MigState::StopCopy,
            sys::VFIO_DEVICE_STATE_PRE_COPY,
            "STOP_COPY -> PRE_COPY",
        ),
        (
            MigState::StopCopy,
            sys::VFIO_DEVICE_STATE_PRE_COPY_P2P,
            "STOP_COPY -> PRE_COPY_P2P",
        ),
    ];
    for (from, to, what) in refused {
        d.reset().unwrap();
        if from == MigState::StopCopy {
            raw_set(d, sys::VFIO_DEVICE_STATE_STOP_COPY).unwrap();
        }
        assert_eq!(raw_set(d, to), Err(Errno::EINVAL), "{what}");
        assert_eq!(
            d.migration_state().unwrap(),
            from,
            "{what} leaves the state"
        );
        println!("MIGRATION refused {what}: EINVAL");
    }
    d.reset().unwrap();
}

fn for_running(d: &Device) {
    macro_rules! from_running {
        ($($b:ty),*) => {$(
            let m = d.migration::<WithP2pPreCopy>().unwrap().to::<$b>().unwrap();
            assert_eq!(d.migration_state().unwrap(), m.state());
            drop(m.reset().unwrap());
        )*};
    }
    from_running!(Stop, StopCopy, Resuming, RunningP2p, PreCopy, PreCopyP2p);
}

#[test]
#[ignore = "needs a VFIO guest: run tests/vm/run"]
fn mtty_refuses_a_short_and_an_overlong_stream() {
    let (_a, _b, opened) = mttys::<2>();
    let (src, dst) = (&*opened.devices[0], &*opened.devices[1]);
    put_bytes(src, b"xyz");
    let stream = saved(src);

    // Short: RESUMING -> RUNNING fails (EINVAL) and the kernel stays in
    // RESUMING, where the handle comes back with its data fd.
    let mut r = dst
        .migration::<StopCopyOnly>()
        .unwrap()
        .to::<Resuming>()
        .unwrap();
    r.write_all(&stream[..stream.len() - 1]).unwrap();
    let err = r.to::<Running>().unwrap_err();
    assert!(
        matches!(
            err.error,
            MigrationError::Ioctl {
                errno: Errno::EINVAL,
                ..
            }
        ),
        "{}",
        err.error
    );
    let Current::Resuming(mut r) = err.now else {
        panic!("a short stream left {:?}", err.now.state())
    };
    // The stream goes on where it stopped.
    r.write_all(&stream[stream.len() - 1..]).unwrap();
    drop(r.to::<Running>().expect("the completed stream loads"));
    assert_eq!(take_bytes(dst), b"xyz");

    // Overlong: the kernel refuses a write past its state size (ENOMEM).
    let mut r = dst
        .migration::<StopCopyOnly>()
        .unwrap()
        .to::<Resuming>()
        .unwrap();
    let mut long = stream.clone();
    long.push(0);
    assert!(matches!(
        r.write_all(&long),
        Err(MigrationError::Io {
            syscall: "write",
            errno: Errno::ENOMEM
        })
    ));
    drop(r.reset().unwrap());
}

#[path = "../scenarios/migration_fsm.rs"]
mod migration_fsm;

/// The committed record of the raw state machine on mtty
/// (`MIGFSM <config> key = value` lines of this test, collected).
const FSM_RECORD: &str = include_str!("../scenarios/migration-fsm.txt");

#[test]
#[ignore = "needs a VFIO guest: run tests/vm/run"]
fn mtty_state_machine_record() {
    let (_mdev, _, opened) = mttys::<1>();
    let d = &*opened.devices[0];
    let config = rig::config();
    let lines: Vec<String> = migration_fsm::matrix(d, &|d| d.reset().expect("reset"))
        .into_iter()
        .map(|l| format!("{config} {l}"))
        .collect();
    for line in &lines {
        println!("MIGFSM {line}");
    }
    let committed: Vec<&str> = FSM_RECORD
        .lines()
        .filter(|l| l.starts_with(&format!("{config} ")))
        .collect();
    if committed.is_empty() {
        println!("MIGFSM-NOTE no committed record for {config} yet");
    } else {
        let mine: Vec<&str> = lines.iter().map(String::as_str).collect();
        assert_eq!(
            mine, committed,
            "mtty's state machine no longer matches its record"
        );
    }
}

#[test]
#[ignore = "needs a VFIO guest: run tests/vm/run"]
fn mtty_dma_logging_starts_reports_and_stops() {
    let (_mdev, _, opened) = mttys::<1>();
    let d = &*opened.devices[0];
    let page = 4096u64;
    let log = d
        .start_dma_logging(page, &[(0x10_0000, 16 * page), (0x20_0000, page)])
        .expect("DMA_LOGGING_START");
    let map = log
        .report(0x10_0000, 16 * page)
        .expect("DMA_LOGGING_REPORT");
    // mtty does no DMA: its log is always clean.
    assert_eq!((map.pages(), map.count()), (16, 0));
    println!(
        "DMA_LOGGING mtty: page size {}, 16 pages reported, {} dirty",
        log.page_size(),
        map.count()
    );
    log.stop().expect("DMA_LOGGING_STOP");
    // Overlapping ranges: the core refuses them before the driver (EINVAL).
    match d.start_dma_logging(page, &[(0x10_0000, 2 * page), (0x10_1000, page)]) {
        Err(typed_vfio::DeviceError::Ioctl { errno, .. }) => assert_eq!(errno, Errno::EINVAL),
        other => panic!("overlapping ranges: {other:?}"),
    }
}
