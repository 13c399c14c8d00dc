//! Migration v2 (`typed_vfio::migration`) on the simulator's migratable edu:
//! a save and resume between two devices (pre-copy rounds, STOP_COPY,
//! RESUMING), every arc the types allow on every capability set, failed
//! transitions reporting the kernel's state and handing the handle back,
//! ERROR and reset, and the handle's exclusivity.

use typed_vfio::migration::{
    Current, MigState, MigrationError, PreCopy, PreCopyP2p, PreCopyRead, Resuming, Running,
    RunningP2p, Stop, StopCopy, StopCopyOnly, WithP2p, WithP2pPreCopy, WithPreCopy,
};
use typed_vfio::sim::{SimDevice, SimGroup, Simulator};
use typed_vfio::{Container, DeviceError, Errno, Type1v2};

const A: &str = "0000:01:00.0";
const B: &str = "0000:02:00.0";

fn sim(p2p: bool, pre_copy: bool) -> Simulator {
    Simulator::builder()
        .group(SimGroup::new(1).device(SimDevice::edu(A).migratable(p2p, pre_copy)))
        .group(SimGroup::new(2).device(SimDevice::edu(B).migratable(p2p, pre_copy)))
        .group(SimGroup::new(3).device(SimDevice::edu("0000:03:00.0")))
        .build()
        .unwrap()
}

fn container(sim: &Simulator) -> Container<Type1v2> {
    let c = sim
        .open_container()
        .unwrap()
        .attach(sim.open_group(1).unwrap())
        .unwrap();
    c.attach_more(sim.open_group(2).unwrap())
        .map_err(|(_, e)| e)
        .unwrap();
    c.attach_more(sim.open_group(3).unwrap())
        .map_err(|(_, e)| e)
        .unwrap();
    c.set_iommu::<Type1v2>().unwrap()
}

/// The stop-copy size the simulated driver reports: the DMA buffer record
/// and the registers record (tag, length, payload each).
const STREAM_LEN: usize = 5 + 4096 + 5 + 16;

#[test]
fn save_with_pre_copy_and_resume_into_another_device() {
    let sim = sim(true, true);
    let c = container(&sim);
    let (a, b) = (c.open_device(A).unwrap(), c.open_device(B).unwrap());
    a.region(0).unwrap().write_u32(0x04, 0x0bad_cafe).unwrap();
    a.region(0).unwrap().write_u32(0x08, 5).unwrap(); // factorial: 120
    let before = (
        a.region(0).unwrap().read_u32(0x04).unwrap(),
        a.region(0).unwrap().read_u32(0x08).unwrap(),
    );
    assert_eq!(before, (!0x0bad_cafe, 120));

    let m = a.migration::<WithP2pPreCopy>().unwrap();
    assert_eq!(m.data_size().unwrap(), STREAM_LEN as u64);
    let mut pre = m.to::<PreCopy>().unwrap();
    assert_eq!(a.migration_state().unwrap(), MigState::PreCopy);
    let info = pre.precopy_info().unwrap();
    assert_eq!((info.initial_bytes, info.dirty_bytes), (4101, 0));
    let mut stream = Vec::new();
    let mut buf = [0u8; 1000];
    let mut rounds = 0;
    while let PreCopyRead::Data(n) = pre.read(&mut buf).unwrap() {
        stream.extend_from_slice(&buf[..n]);
        rounds += 1;
    }
    assert_eq!(rounds, 5, "4101 bytes in 1000-byte reads");
    assert_eq!(pre.precopy_info().unwrap().initial_bytes, 0);
    // PRE_COPY -> PRE_COPY_P2P keeps the stream; STOP_COPY finishes it.
    let pre = pre.to::<PreCopyP2p>().unwrap();
    let mut stop_copy = pre.to::<StopCopy>().unwrap();
    stream.extend(stop_copy.read_to_end(1 << 16).unwrap());
    assert_eq!(stream.len(), STREAM_LEN);
    let stopped = stop_copy.to::<Stop>().unwrap();
    drop(stopped.to::<Running>().unwrap());

    let resuming = b.migration::<StopCopyOnly>().unwrap().to::<Resuming>();
    let mut resuming = resuming.unwrap();
    resuming.write_all(&stream).unwrap();
    drop(resuming.to::<Running>().unwrap());
    let after = (
        b.region(0).unwrap().read_u32(0x04).unwrap(),
        b.region(0).unwrap().read_u32(0x08).unwrap(),
    );
    assert_eq!(after, before, "the target returns what the source held");
}

#[test]
fn a_stream_limit_is_kept() {
    let sim = sim(false, false);
    let c = container(&sim);
    let a = c.open_device(A).unwrap();
    let m = a.migration::<StopCopyOnly>().unwrap();
    let mut saving = m.to::<StopCopy>().unwrap();
    assert_eq!(
        saving.read_to_end(100).unwrap_err(),
        MigrationError::TooLong { limit: 100 }
    );
}

/// Moves a fresh RUNNING handle to `$a`, then to `$b`, and checks the
/// kernel's state after each.
macro_rules! arc {
    ($dev:expr, $caps:ty, $a:ty => $b:ty) => {{
        let m = $dev.migration::<$caps>().unwrap();
        let m = m.to::<$a>().unwrap();
        assert_eq!($dev.migration_state().unwrap(), m.state());
        let m = m.to::<$b>().unwrap();
        assert_eq!($dev.migration_state().unwrap(), m.state());
        let m = m.reset().unwrap();
        assert_eq!(m.state(), MigState::Running);
    }};
}

macro_rules! arcs_from {
    ($dev:expr, $caps:ty, $a:ty => $($b:ty),*) => {$(
        arc!($dev, $caps, $a => $b);
    )*};
}

/// As `arcs_from!` from RESUMING, with a valid stream written first (a
/// device leaves RESUMING only by loading one).
macro_rules! arcs_from_resuming {
    ($dev:expr, $caps:ty, $stream:expr => $($b:ty),*) => {$(
        let mut m = $dev.migration::<$caps>().unwrap().to::<Resuming>().unwrap();
        m.write_all($stream).unwrap();
        let m = m.to::<$b>().unwrap();
        assert_eq!($dev.migration_state().unwrap(), m.state());
        drop(m.reset().unwrap());
    )*};
}

/// A valid stream, saved from `dev`.
fn saved(dev: &typed_vfio::Device) -> Vec<u8> {
    let m = dev.migration::<StopCopyOnly>().unwrap();
    let mut sc = m.to::<StopCopy>().unwrap();
    let stream = sc.read_to_end(1 << 16).unwrap();
    drop(sc.reset().unwrap());
    stream
}

macro_rules! from_running {
    ($dev:expr, $caps:ty => $($b:ty),*) => {$(
        let m = $dev.migration::<$caps>().unwrap().to::<$b>().unwrap();
        assert_eq!($dev.migration_state().unwrap(), m.state());
        drop(m.reset().unwrap());
    )*};
}

#[test]
fn every_arc_of_the_full_state_machine() {
    let sim = sim(true, true);
    let c = container(&sim);
    let d = c.open_device(A).unwrap();
    type C = WithP2pPreCopy;
    arcs_from!(d, C, Stop => Running, StopCopy, Resuming, RunningP2p, PreCopy, PreCopyP2p);
    arcs_from!(d, C, StopCopy => Running, Stop, Resuming, RunningP2p);
    let stream = saved(&c.open_device(B).unwrap());
    arcs_from_resuming!(d, C, &stream => Running, Stop, StopCopy, RunningP2p, PreCopy, PreCopyP2p);
    arcs_from!(d, C, RunningP2p => Running, Stop, StopCopy, Resuming, PreCopy, PreCopyP2p);
    arcs_from!(d, C, PreCopy => Running, Stop, StopCopy, Resuming, RunningP2p, PreCopyP2p);
    arcs_from!(d, C, PreCopyP2p => Running, Stop, StopCopy, Resuming, RunningP2p, PreCopy);
    // From RUNNING itself.
    from_running!(d, C => Stop, StopCopy, Resuming, RunningP2p, PreCopy, PreCopyP2p);
}

#[test]
fn the_arcs_of_the_smaller_capability_sets() {
    // STOP_COPY only: the kernel skips the P2P states it lacks.
    let s = sim(false, false);
    let c = container(&s);
    let d = c.open_device(A).unwrap();
    from_running!(d, StopCopyOnly => Stop, StopCopy, Resuming);
    arcs_from!(d, StopCopyOnly, Stop => Running, StopCopy, Resuming);
    arcs_from!(d, StopCopyOnly, StopCopy => Running, Stop, Resuming);
    let stream = saved(&c.open_device(B).unwrap());
    arcs_from_resuming!(d, StopCopyOnly, &stream => Running, Stop, StopCopy);
    // A handle asking for more than the device has is refused.
    assert!(matches!(
        d.migration::<WithP2p>(),
        Err(MigrationError::Unsupported {
            wanted: 3,
            offered: 1
        })
    ));
    drop(c);

    let s = sim(true, false);
    let c = container(&s);
    let d = c.open_device(A).unwrap();
    arcs_from!(d, WithP2p, RunningP2p => Running, Stop, StopCopy, Resuming);
    assert!(d.migration::<WithPreCopy>().is_err());
    drop(c);

    let s = sim(false, true);
    let c = container(&s);
    let d = c.open_device(A).unwrap();
    arcs_from!(d, WithPreCopy, PreCopy => Running, Stop, StopCopy, Resuming);
    // PRE_COPY -> STOP_COPY directly (no PRE_COPY_P2P to pass through),
    // keeping the stream.
    let mut pre = d
        .migration::<WithPreCopy>()
        .unwrap()
        .to::<PreCopy>()
        .unwrap();
    let mut buf = vec![0u8; 8192];
    let PreCopyRead::Data(n) = pre.read(&mut buf).unwrap() else {
        panic!("no pre-copy data")
    };
    let mut sc = pre.to::<StopCopy>().unwrap();
    assert_eq!(n + sc.read_to_end(1 << 16).unwrap().len(), STREAM_LEN);
}

#[test]
fn a_device_without_migration_says_so() {
    let s = sim(false, false);
    let c = container(&s);
    let plain = c.open_device("0000:03:00.0").unwrap();
    assert!(matches!(
        plain.migration_flags(),
        Err(MigrationError::NotSupported {
            errno: Errno::ENOTTY,
            ..
        })
    ));
    assert!(matches!(
        plain.migration::<StopCopyOnly>(),
        Err(MigrationError::NotSupported { .. })
    ));
}

#[test]
fn one_handle_at_a_time_and_no_reset_behind_its_back() {
    let s = sim(true, true);
    let c = container(&s);
    let d = c.open_device(A).unwrap();
    let m = d.migration::<WithP2p>().unwrap();
    assert_eq!(d.migration::<WithP2p>().unwrap_err(), MigrationError::Busy);
    assert_eq!(
        d.reset().unwrap_err(),
        DeviceError::MigrationActive {
            ioctl: "VFIO_DEVICE_RESET"
        }
    );
    let stopped = m.to::<Stop>().unwrap();
    drop(stopped);
    // A dropped handle leaves the device where it was: a new one needs
    // RUNNING.
    assert_eq!(
        d.migration::<WithP2p>().unwrap_err(),
        MigrationError::NotRunning {
            state: MigState::Stop
        }
    );
    d.reset().unwrap();
    assert_eq!(d.migration_state().unwrap(), MigState::Running);
    drop(d.migration::<WithP2p>().unwrap());
}

#[test]
fn a_short_resume_stream_fails_and_hands_resuming_back() {
    let s = sim(true, true);
    let c = container(&s);
    let (a, b) = (c.open_device(A).unwrap(), c.open_device(B).unwrap());
    a.region(0).unwrap().write_u32(0x04, 7).unwrap();
    let mut sc = a
        .migration::<StopCopyOnly>()
        .unwrap()
        .to::<StopCopy>()
        .unwrap();
    let stream = sc.read_to_end(1 << 16).unwrap();
    drop(sc);

    let mut r = b
        .migration::<StopCopyOnly>()
        .unwrap()
        .to::<Resuming>()
        .unwrap();
    r.write_all(&stream[..stream.len() - 1]).unwrap();
    let err = r.to::<Running>().unwrap_err();
    assert_eq!(err.requested, MigState::Running);
    assert_eq!(
        err.error,
        MigrationError::Ioctl {
            ioctl: "VFIO_DEVICE_FEATURE(MIG_DEVICE_STATE)",
            errno: Errno::EINVAL
        }
    );
    // The kernel stayed in RESUMING, and the handle comes back there with
    // its data fd: a fresh resume is a new RESUMING.
    let Current::Resuming(r) = err.now else {
        panic!("not handed back in RESUMING: {:?}", err.now.state())
    };
    let stop = r.to::<Stop>();
    assert!(stop.is_err(), "still short");
    let Err(e) = stop else { unreachable!() };
    let Current::Resuming(r) = e.now else {
        panic!("not RESUMING")
    };
    let r = r.to::<Stop>().err().map(|e| e.now);
    // Still short, so it fails again; take RESUMING -> STOP -> RESUMING
    // through a reset instead.
    let Some(Current::Resuming(r)) = r else {
        panic!("not RESUMING")
    };
    let mut r = r.reset().unwrap().to::<Resuming>().unwrap();
    r.write_all(&stream).unwrap();
    drop(r.to::<Running>().unwrap());
    assert_eq!(b.region(0).unwrap().read_u32(0x04).unwrap(), !7);
}

#[test]
fn a_driver_failure_lands_in_error_and_reset_recovers() {
    let s = sim(true, true);
    let c = container(&s);
    let d = c.open_device(A).unwrap();
    let m = d.migration::<WithP2pPreCopy>().unwrap();
    // RUNNING -> STOP_COPY walks RUNNING_P2P, STOP, STOP_COPY: fail the
    // second step.
    s.inject_fault("migration_step", 2, Errno::EIO).unwrap();
    let err = m.to::<StopCopy>().unwrap_err();
    assert_eq!(err.requested, MigState::StopCopy);
    assert!(matches!(
        err.error,
        MigrationError::Ioctl {
            errno: Errno::EIO,
            ..
        }
    ));
    let Current::Error(e) = err.now else {
        panic!("not ERROR: {:?}", err.now.state())
    };
    assert_eq!(d.migration_state().unwrap(), MigState::Error);
    let running = e.reset().unwrap();
    assert_eq!(d.migration_state().unwrap(), MigState::Running);
    // An ioctl fault (the kernel refusing the call) leaves the state as it
    // was, and the handle comes back there.
    s.inject_fault("VFIO_DEVICE_FEATURE", 1, Errno::EINTR)
        .unwrap();
    let err = running.to::<Stop>().unwrap_err();
    let Current::Running(running) = err.now else {
        panic!("not RUNNING")
    };
    drop(running.to::<Stop>().unwrap());
}

#[test]
fn a_pre_copy_stream_survives_a_failed_move_to_stop_copy() {
    let s = sim(true, true);
    let c = container(&s);
    let d = c.open_device(A).unwrap();
    let mut pre = d
        .migration::<WithP2pPreCopy>()
        .unwrap()
        .to::<PreCopy>()
        .unwrap();
    let mut head = [0u8; 5];
    assert_eq!(pre.read(&mut head).unwrap(), PreCopyRead::Data(5));
    // PRE_COPY -> PRE_COPY_P2P -> STOP_COPY: fail the second step. The
    // device is in ERROR, which has no stream.
    s.inject_fault("migration_step", 2, Errno::EIO).unwrap();
    let err = pre.to::<StopCopy>().unwrap_err();
    assert!(matches!(err.now, Current::Error(_)));
    drop(err);
    d.reset().unwrap();
    // A failure at the ioctl keeps PRE_COPY and its stream where it was.
    let mut pre = d
        .migration::<WithP2pPreCopy>()
        .unwrap()
        .to::<PreCopy>()
        .unwrap();
    assert_eq!(pre.read(&mut head).unwrap(), PreCopyRead::Data(5));
    s.inject_fault("VFIO_DEVICE_FEATURE", 1, Errno::EAGAIN)
        .unwrap();
    let Current::PreCopy(mut pre) = pre.to::<StopCopy>().unwrap_err().now else {
        panic!("not PRE_COPY")
    };
    let mut rest = vec![0u8; 8192];
    let PreCopyRead::Data(n) = pre.read(&mut rest).unwrap() else {
        panic!("the stream did not go on")
    };
    assert_eq!(5 + n, 4101);
}

#[path = "scenarios/migration_fsm.rs"]
mod migration_fsm;

/// The raw state machine of the simulator's migratable edu against the
/// kernel's, as recorded on mtty (`tests/scenarios/migration-fsm.txt`), on
/// every configuration that recorded it.
#[test]
fn the_state_machine_matches_the_real_kernels_mtty() {
    let record = include_str!("scenarios/migration-fsm.txt");
    let s = sim(true, true);
    let c = container(&s);
    let d = c.open_device(A).unwrap();
    let mine = migration_fsm::matrix(&d, &|d| d.reset().unwrap());
    let mut configs: Vec<&str> = record
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| l.split_once(' ').map(|(c, _)| c))
        .collect();
    configs.dedup();
    for line in &mine {
        println!("SIM {line}");
    }
    assert!(
        !configs.is_empty(),
        "no real-kernel record in migration-fsm.txt"
    );
    for config in configs {
        let theirs: Vec<&str> = record
            .lines()
            .filter_map(|l| l.strip_prefix(&format!("{config} ")))
            .collect();
        let ours: Vec<&str> = mine.iter().map(String::as_str).collect();
        assert_eq!(
            ours, theirs,
            "the simulator's state machine differs from {config}'s"
        );
    }
}
