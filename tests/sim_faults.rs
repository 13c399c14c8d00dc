//! Fault injection on the simulated kernel.
//!
//! - Every fallible transition, failed at its ioctl, returns a typed error
//!   naming the ioctl and errno, hands back the object it consumed (usable
//!   for a retry), and leaks no fd (by hand, one transition at a time).
//! - Exhaustively: every scenario of the differential suite
//!   (`tests/scenarios/`), on every IOMMU model, with a fault injected at
//!   each call it makes in turn, ends without a panic, in `Ok` or in the
//!   crate's typed error for that call, with what a failed transition
//!   consumed handed back, no mapping left once its containers are gone,
//!   and no fd leaked.
//!
//! The tests count `/proc/self/fd`, which tests running in parallel threads
//! would disturb: each holds [`LOCK`] throughout.

#[path = "scenarios/mod.rs"]
mod scenarios;

use std::collections::BTreeMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use scenarios::{ApiError, Failure, Kind, Record, Scenario, SimEnv};
use typed_vfio::iommufd::IommufdError;
use typed_vfio::sim::Simulator;
use typed_vfio::{
    ContainerError, DeviceError, DmaAccess, DmaBuffer, DmaError, Errno, GroupError, Type1v2,
};

/// Serialises the tests of this binary (they count the process's fds).
static LOCK: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    // A failed test poisons the lock; the next one still runs alone.
    LOCK.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Open fds of this process.
fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

/// Open fds of this process. The simulator releases a closed object's own
/// end at its next call, so it is asked something first.
fn fds(sim: &Simulator) -> usize {
    let _ = sim.calls("open");
    open_fds()
}

#[test]
#[cfg_attr(miri, ignore = "reads /proc/self/fd")]
fn every_failed_transition_hands_back_its_object_and_leaks_no_fd() {
    let _serial = serial();
    let sim = Simulator::new();

    // open: the container node.
    let n = fds(&sim);
    sim.inject_fault("open", 1, Errno::ENFILE).unwrap();
    assert!(matches!(
        sim.open_container(),
        Err(ContainerError::Open {
            errno: Errno::ENFILE,
            ..
        })
    ));
    // GET_API_VERSION fails after the open: the fd is closed again.
    sim.inject_fault("VFIO_GET_API_VERSION", 1, Errno::EIO)
        .unwrap();
    assert!(matches!(
        sim.open_container(),
        Err(ContainerError::Ioctl {
            ioctl: "VFIO_GET_API_VERSION",
            errno: Errno::EIO
        })
    ));
    assert_eq!(fds(&sim), n, "open failures leaked an fd");

    // SET_CONTAINER: container and group come back; the retry works.
    let container = sim.open_container().unwrap();
    let group = sim.open_group(1).unwrap();
    let n = fds(&sim);
    sim.inject_fault("VFIO_GROUP_SET_CONTAINER", 1, Errno::ENOMEM)
        .unwrap();
    let err = container.attach(group).unwrap_err();
    assert!(matches!(
        err.error,
        GroupError::Ioctl {
            ioctl: "VFIO_GROUP_SET_CONTAINER",
            errno: Errno::ENOMEM,
            ..
        }
    ));
    assert!(!err.group.status().unwrap().container_set);
    assert_eq!(fds(&sim), n);
    let attached = err.container.attach(err.group).unwrap();

    // SET_IOMMU: the attached container comes back.
    sim.inject_fault("VFIO_SET_IOMMU", 1, Errno::ENOMEM)
        .unwrap();
    let err = attached.set_iommu::<Type1v2>().unwrap_err();
    assert!(matches!(
        err.error,
        ContainerError::Ioctl {
            ioctl: "VFIO_SET_IOMMU",
            errno: Errno::ENOMEM
        }
    ));
    assert_eq!(err.container.groups().len(), 1);
    assert_eq!(fds(&sim), n);
    let c = err.container.set_iommu::<Type1v2>().unwrap();

    // GET_DEVICE_FD, then GET_INFO on the new device fd (which is closed).
    sim.inject_fault("VFIO_GROUP_GET_DEVICE_FD", 1, Errno::EMFILE)
        .unwrap();
    assert!(matches!(
        c.open_device("0000:01:00.0"),
        Err(GroupError::NoDevice {
            errno: Errno::EMFILE,
            ..
        })
    ));
    sim.inject_fault("VFIO_DEVICE_GET_INFO", 1, Errno::EIO)
        .unwrap();
    assert!(matches!(
        c.open_device("0000:01:00.0"),
        Err(GroupError::Device(DeviceError::Ioctl {
            ioctl: "VFIO_DEVICE_GET_INFO",
            errno: Errno::EIO
        }))
    ));
    assert_eq!(fds(&sim), n, "a failed device open leaked an fd");

    // GET_INFO (asked directly: whether and when `map` reads it is the
    // DMA path's business), then MAP_DMA.
    let buf = DmaBuffer::new(4096).unwrap();
    sim.inject_fault("VFIO_IOMMU_GET_INFO", 1, Errno::EIO)
        .unwrap();
    assert!(matches!(
        c.iommu_info(),
        Err(ContainerError::Ioctl {
            ioctl: "VFIO_IOMMU_GET_INFO",
            errno: Errno::EIO,
        })
    ));
    sim.inject_fault("VFIO_IOMMU_MAP_DMA", 1, Errno::ENOMEM)
        .unwrap();
    assert!(matches!(
        c.map(&buf, 0x10_0000, DmaAccess::ReadWrite),
        Err(DmaError::Ioctl {
            ioctl: "VFIO_IOMMU_MAP_DMA",
            errno: Errno::ENOMEM,
            ..
        })
    ));
    assert!(!buf.is_mapped());
    assert!(sim.mappings().is_empty());
    let m = c.map(&buf, 0x10_0000, DmaAccess::ReadWrite).unwrap();
    drop(m);
    assert_eq!(fds(&sim), n);

    // SET_IRQS with an eventfd: the simulator's reference is dropped when
    // the trigger is torn down.
    let dev = c.open_device("0000:01:00.0").unwrap();
    let e = nix::sys::eventfd::EventFd::new().unwrap();
    let with_dev = fds(&sim);
    sim.inject_fault("VFIO_DEVICE_SET_IRQS", 1, Errno::EIO)
        .unwrap();
    assert!(
        dev.set_irq_eventfd(1, 0, std::os::fd::AsFd::as_fd(&e))
            .is_err()
    );
    assert_eq!(fds(&sim), with_dev);
    dev.set_irq_eventfd(1, 0, std::os::fd::AsFd::as_fd(&e))
        .unwrap();
    assert_eq!(
        fds(&sim),
        with_dev + 1,
        "the kernel holds its own reference"
    );
    dev.disable_irq(1).unwrap();
    assert_eq!(fds(&sim), with_dev);
    drop(e);
    drop(dev);

    // UNSET_CONTAINER: the container comes back in its state with its group.
    sim.inject_fault("VFIO_GROUP_UNSET_CONTAINER", 1, Errno::EIO)
        .unwrap();
    let err = c.release_groups().unwrap_err();
    assert!(matches!(
        err.error,
        GroupError::Ioctl {
            ioctl: "VFIO_GROUP_UNSET_CONTAINER",
            errno: Errno::EIO,
            ..
        }
    ));
    assert_eq!(err.container.groups().len(), 1);
    assert_eq!(fds(&sim), n);
    let (unset, groups) = err.container.release_groups().map_err(|e| e.error).unwrap();
    drop((unset, groups));
    // Each simulated object is two fds (the caller's end and the simulator's).
    assert_eq!(fds(&sim), n - 4, "container and group released");
}

/// Errnos the kernel could return from these calls, used in turn.
const ERRNOS: [Errno; 5] = [
    Errno::EIO,
    Errno::ENOMEM,
    Errno::EFAULT,
    Errno::EBUSY,
    Errno::EINVAL,
];

/// The call (ioctl C name, or `open`, `pread`, `pwrite`) and errno a typed
/// error reports, if it reports a failed call.
fn culprit(e: &ApiError) -> Option<(&'static str, Errno)> {
    match e {
        ApiError::Container(e) => container_culprit(e),
        ApiError::Group(e) => group_culprit(e),
        ApiError::Device(e) => device_culprit(e),
        ApiError::Dma(e) => dma_culprit(e),
        ApiError::Iommufd(e) => iommufd_culprit(e),
    }
}

fn iommufd_culprit(e: &IommufdError) -> Option<(&'static str, Errno)> {
    match e {
        IommufdError::Open { errno, .. } => Some(("open", *errno)),
        IommufdError::Ioctl { ioctl, errno } => Some((ioctl, *errno)),
        IommufdError::Device(e) => device_culprit(e),
        _ => None,
    }
}

fn container_culprit(e: &ContainerError) -> Option<(&'static str, Errno)> {
    match *e {
        ContainerError::Open { errno, .. } => Some(("open", errno)),
        ContainerError::Ioctl { ioctl, errno } => Some((ioctl, errno)),
        _ => None,
    }
}

fn group_culprit(e: &GroupError) -> Option<(&'static str, Errno)> {
    match e {
        GroupError::Open { errno, .. } => Some(("open", *errno)),
        GroupError::Ioctl { ioctl, errno, .. } => Some((ioctl, *errno)),
        GroupError::NoDevice { errno, .. } => Some(("VFIO_GROUP_GET_DEVICE_FD", *errno)),
        GroupError::Device(e) => device_culprit(e),
        _ => None,
    }
}

fn device_culprit(e: &DeviceError) -> Option<(&'static str, Errno)> {
    match *e {
        DeviceError::Ioctl { ioctl, errno }
        | DeviceError::IndexedIoctl { ioctl, errno, .. }
        | DeviceError::IrqNotEnabled { ioctl, errno, .. } => Some((ioctl, errno)),
        DeviceError::Io { syscall, errno, .. } => Some((syscall, errno)),
        _ => None,
    }
}

fn dma_culprit(e: &DmaError) -> Option<(&'static str, Errno)> {
    match e {
        DmaError::Ioctl { ioctl, errno, .. } => Some((ioctl, *errno)),
        _ => None,
    }
}

/// How a run with one injected fault ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Outcome {
    /// `Ok`, the fault visible in the record (a step records errnos).
    OkObserved,
    /// `Ok` with the clean run's record: the fault hit a call whose
    /// failure the scenario expects anyway (same errno) or that a `Drop`
    /// issues (which cannot fail).
    OkUnchanged,
    /// The typed error of the faulted call itself.
    ErrDirect,
    /// A typed error of a later call, after the fault was recorded as an
    /// observation and left the kernel in another state than a clean run.
    ErrAfterObserved,
}

/// What one faulted run showed, or why it is wrong.
fn run_with_fault(
    kind: Kind,
    scenario: Scenario,
    clean: &Record,
    request: &'static str,
    nth: u64,
    errno: Errno,
) -> Result<Outcome, String> {
    let mut problems = Vec::new();
    let before = open_fds();
    let env = SimEnv::new(kind);
    env.sim.inject_fault(request, nth, errno).unwrap();
    let mut record = Record::default();
    let result = catch_unwind(AssertUnwindSafe(|| scenario(&env, &mut record)));
    // The scenario's objects are gone: its containers with their mappings.
    if env.sim.calls(request) < nth {
        problems.push(format!(
            "the fault was not consumed ({} calls)",
            env.sim.calls(request)
        ));
    }
    let mappings = env.sim.mappings();
    if !mappings.is_empty() {
        problems.push(format!("mappings outlive the containers: {mappings:x?}"));
    }
    let observed = record.0.len() > clean.0.len() || record.0[..] != clean.0[..record.0.len()];
    let outcome = match &result {
        Err(payload) => {
            let msg = payload
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| payload.downcast_ref::<&str>().copied())
                .unwrap_or("(no message)");
            problems.push(format!("panicked: {msg}"));
            None
        }
        Ok(Ok(())) if observed => Some(Outcome::OkObserved),
        Ok(Ok(())) => Some(Outcome::OkUnchanged),
        Ok(Err(failure)) => {
            if let Failure::Transition {
                handed_back_usable: false,
                ..
            } = failure
            {
                problems.push(format!("a failed transition lost its objects: {failure}"));
            }
            match failure.error() {
                None => {
                    problems.push(format!("no typed error: {failure}"));
                    None
                }
                Some(e) if culprit(e) == Some((request, errno)) => Some(Outcome::ErrDirect),
                Some(_) if observed => Some(Outcome::ErrAfterObserved),
                Some(e) => {
                    problems.push(format!(
                        "the error does not name {request} {errno:?}: {failure} (culprit {:?})",
                        culprit(e)
                    ));
                    None
                }
            }
        }
    };
    drop(result);
    drop(env);
    let after = open_fds();
    if after != before {
        problems.push(format!("{before} fds before, {after} after"));
    }
    match outcome {
        Some(o) if problems.is_empty() => Ok(o),
        _ => Err(problems.join("; ")),
    }
}

#[derive(Default)]
struct Tally {
    points: usize,
    outcomes: BTreeMap<Outcome, usize>,
    violations: usize,
}

#[test]
#[cfg_attr(miri, ignore = "reads /proc/self/fd")]
fn every_call_of_every_scenario_can_fail() {
    let _serial = serial();
    let started = Instant::now();
    let mut violations = Vec::new();
    let mut tallies: Vec<(Kind, &str, Tally)> = Vec::new();
    let mut point = 0usize;
    for kind in Kind::ALL {
        for (name, scenario) in scenarios::scenarios(kind) {
            // The clean run: its record, and every call it makes.
            let before = open_fds();
            let env = SimEnv::new(kind);
            let mut clean = Record::default();
            if let Err(failure) = scenario(&env, &mut clean) {
                panic!("{} {name} fails without a fault: {failure}", kind.name());
            }
            assert!(env.sim.mappings().is_empty(), "{} {name}", kind.name());
            let calls = env.sim.call_counts();
            drop(env);
            assert_eq!(open_fds(), before, "{} {name} leaks fds", kind.name());
            assert!(!calls.is_empty());

            let mut tally = Tally::default();
            for (request, count) in calls {
                for nth in 1..=count {
                    let errno = ERRNOS[point % ERRNOS.len()];
                    point += 1;
                    tally.points += 1;
                    match run_with_fault(kind, scenario, &clean, request, nth, errno) {
                        Ok(outcome) => *tally.outcomes.entry(outcome).or_default() += 1,
                        Err(problem) => {
                            tally.violations += 1;
                            violations.push(format!(
                                "{} {name}: {request} call {nth} failing with {errno:?}: {problem}",
                                kind.name()
                            ));
                        }
                    }
                }
            }
            tallies.push((kind, name, tally));
        }
    }

    let mut summary = String::from(
        "injection points per configuration and scenario (ok: the fault recorded as an \
         observation / record unchanged; typed err: of the faulted call / of a later call, \
         after a recorded fault changed the kernel's state):\n",
    );
    for (kind, name, t) in &tallies {
        let n = |o| t.outcomes.get(&o).copied().unwrap_or(0);
        summary += &format!(
            "  {:8} {:22} {:4} points: ok {:3} / {:3}, typed err {:3} / {:3}, violations {}\n",
            kind.name(),
            name,
            t.points,
            n(Outcome::OkObserved),
            n(Outcome::OkUnchanged),
            n(Outcome::ErrDirect),
            n(Outcome::ErrAfterObserved),
            t.violations,
        );
    }
    summary += &format!("{point} injection points in {:?}", started.elapsed());
    println!("{summary}");
    assert!(
        violations.is_empty(),
        "{} of {point} injection points misbehave:\n{}\n\n{summary}",
        violations.len(),
        violations.join("\n")
    );
}
