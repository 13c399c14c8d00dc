//! Sequences of migration-state transitions on the simulator's migratable
//! edu (every optional state), through the typestate API, with faults
//! injected into them: the `SET` refused by the kernel (any errno), or one
//! step of a combined transition failing in the driver (the device lands in
//! ERROR). Streams are read from the saving states and written into
//! RESUMING, whole or cut short.
//!
//! The reference model: the kernel's state machine written from the uapi
//! (the direct arcs, and for each pair the path the core walks), the state
//! it predicts after every operation, and which resume streams load (one
//! complete saved stream, nothing more or less). After every step the
//! kernel's state, the handle's type and the model agree; a failed
//! transition hands the handle back in the state the kernel reports.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use typed_vfio::migration::{
    Current, ErrorState, MigState, Migration, PreCopy, PreCopyP2p, PreCopyRead, Resuming, Running,
    RunningP2p, Stop, StopCopy, TransitionError, WithP2pPreCopy,
};
use typed_vfio::sim::{SimDevice, SimGroup, Simulator};
use typed_vfio::{Device, Errno, Type1v2};

type C = WithP2pPreCopy;

const MAX_OPS: usize = 48;

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Target {
    Running,
    Stop,
    StopCopy,
    Resuming,
    RunningP2p,
    PreCopy,
    PreCopyP2p,
}

impl Target {
    fn state(self) -> MigState {
        match self {
            Target::Running => MigState::Running,
            Target::Stop => MigState::Stop,
            Target::StopCopy => MigState::StopCopy,
            Target::Resuming => MigState::Resuming,
            Target::RunningP2p => MigState::RunningP2p,
            Target::PreCopy => MigState::PreCopy,
            Target::PreCopyP2p => MigState::PreCopyP2p,
        }
    }
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Fault {
    None,
    /// The `SET` ioctl fails with this errno (EINVAL, EIO, EAGAIN).
    Ioctl(u8),
    /// Step `n` (1-based) of the walk fails in the driver.
    Step(u8),
}

#[derive(Arbitrary, Debug)]
enum Op {
    To(Target, Fault),
    /// Read from a saving state, in chunks of this size (1..=4096).
    Read(u16),
    /// Write the last complete saved stream, cut to this length when
    /// shorter.
    Write(u16),
    Reset,
    /// Drop the handle and take a new one (resetting first if need be).
    Renew,
}

/// The uapi's state machine: the next step from `cur` towards `new` with
/// every optional state present (the core's preferred paths).
fn step(cur: MigState, new: MigState) -> Option<MigState> {
    use MigState::*;
    Some(match (cur, new) {
        (a, b) if a == b => return None,
        (StopCopy, PreCopy | PreCopyP2p) => return None,
        (_, Error) | (Error, _) => return None,
        (Resuming, _) => Stop,
        (StopCopy, _) => Stop,
        (Stop, StopCopy) => StopCopy,
        (Stop, Resuming) => Resuming,
        (Stop, _) => RunningP2p,
        (RunningP2p, Stop | StopCopy | Resuming) => Stop,
        (RunningP2p, PreCopyP2p) => PreCopyP2p,
        (RunningP2p, _) => Running,
        (Running, PreCopy) => PreCopy,
        (Running, _) => RunningP2p,
        (PreCopy, PreCopyP2p | StopCopy) => PreCopyP2p,
        (PreCopy, _) => Running,
        (PreCopyP2p, PreCopy) => PreCopy,
        (PreCopyP2p, StopCopy) => StopCopy,
        (PreCopyP2p, _) => RunningP2p,
        _ => return None,
    })
}

fn path(cur: MigState, new: MigState) -> Vec<MigState> {
    let mut out = Vec::new();
    let mut at = cur;
    while let Some(next) = step(at, new) {
        out.push(next);
        at = next;
        assert!(out.len() <= 7, "the model loops: {cur:?} -> {new:?}");
    }
    out
}

enum Handle<'d> {
    None,
    Running(Migration<'d, Running, C>),
    Stop(Migration<'d, Stop, C>),
    StopCopy(Migration<'d, StopCopy, C>),
    Resuming(Migration<'d, Resuming, C>),
    RunningP2p(Migration<'d, RunningP2p, C>),
    PreCopy(Migration<'d, PreCopy, C>),
    PreCopyP2p(Migration<'d, PreCopyP2p, C>),
    Error(Migration<'d, ErrorState, C>),
}

impl<'d> Handle<'d> {
    fn state(&self) -> Option<MigState> {
        Some(match self {
            Handle::None => return None,
            Handle::Running(_) => MigState::Running,
            Handle::Stop(_) => MigState::Stop,
            Handle::StopCopy(_) => MigState::StopCopy,
            Handle::Resuming(_) => MigState::Resuming,
            Handle::RunningP2p(_) => MigState::RunningP2p,
            Handle::PreCopy(_) => MigState::PreCopy,
            Handle::PreCopyP2p(_) => MigState::PreCopyP2p,
            Handle::Error(_) => MigState::Error,
        })
    }

    fn from_current(now: Current<'d, C>) -> Handle<'d> {
        match now {
            Current::Running(m) => Handle::Running(m),
            Current::Stop(m) => Handle::Stop(m),
            Current::StopCopy(m) => Handle::StopCopy(m),
            Current::Resuming(m) => Handle::Resuming(m),
            Current::RunningP2p(m) => Handle::RunningP2p(m),
            Current::PreCopy(m) => Handle::PreCopy(m),
            Current::PreCopyP2p(m) => Handle::PreCopyP2p(m),
            Current::Error(m) => Handle::Error(m),
            Current::Stranded(s) => panic!("stranded in {:?} without any fault pending", s.state()),
        }
    }
}

type Moved<'d> = Result<Handle<'d>, TransitionError<'d, C>>;

/// `m.to::<T>()` for the target, `None` where the types have no arc.
macro_rules! go {
    ($m:expr, $t:expr, $($ok:ident),*) => {
        match $t {
            $(Target::$ok => Some($m.to::<$ok>().map(Handle::$ok)),)*
            #[allow(unreachable_patterns)]
            _ => None,
        }
    };
}

/// The typed transition; the caller has checked that the types have the
/// arc (the model's path is not empty).
fn transition<'d>(h: Handle<'d>, t: Target) -> Moved<'d> {
    let moved = match h {
        Handle::Running(m) => go!(
            m, t, Stop, StopCopy, Resuming, RunningP2p, PreCopy, PreCopyP2p
        ),
        Handle::Stop(m) => go!(
            m, t, Running, StopCopy, Resuming, RunningP2p, PreCopy, PreCopyP2p
        ),
        Handle::StopCopy(m) => go!(m, t, Running, Stop, Resuming, RunningP2p),
        Handle::Resuming(m) => go!(
            m, t, Running, Stop, StopCopy, RunningP2p, PreCopy, PreCopyP2p
        ),
        Handle::RunningP2p(m) => go!(m, t, Running, Stop, StopCopy, Resuming, PreCopy, PreCopyP2p),
        Handle::PreCopy(m) => go!(
            m, t, Running, Stop, StopCopy, Resuming, RunningP2p, PreCopyP2p
        ),
        Handle::PreCopyP2p(m) => go!(m, t, Running, Stop, StopCopy, Resuming, RunningP2p, PreCopy),
        Handle::None | Handle::Error(_) => None,
    };
    moved.expect("the model has an arc the types do not")
}

struct Model {
    state: MigState,
    /// The bytes read from the current save session, from its start.
    reading: Option<Vec<u8>>,
    /// The last complete saved stream.
    saved: Option<Vec<u8>>,
    /// What was written into the current resume session.
    written: Vec<u8>,
}

fn run(d: &Device, sim: &Simulator, ops: Vec<Op>) {
    let mut model = Model {
        state: MigState::Running,
        reading: None,
        saved: None,
        written: Vec::new(),
    };
    let mut h = Handle::Running(d.migration::<C>().expect("a migration handle"));
    for op in ops.into_iter().take(MAX_OPS) {
        match op {
            Op::To(t, fault) => {
                let Some(cur) = h.state() else { continue };
                let new = t.state();
                let steps = path(cur, new);
                if steps.is_empty() || cur == MigState::Error {
                    continue; // no arc in the types: nothing to try
                }
                let loads = model.saved.as_ref() == Some(&model.written);
                // Leaving RESUMING loads the stream first: it fails unless
                // exactly one complete stream was written.
                let resume_fails = cur == MigState::Resuming && !loads;
                let mut expect_ok = !resume_fails;
                let mut expect_state = if resume_fails { cur } else { new };
                match fault {
                    Fault::None => {}
                    Fault::Ioctl(e) => {
                        let errno = [Errno::EINVAL, Errno::EIO, Errno::EAGAIN][usize::from(e) % 3];
                        sim.inject_fault("VFIO_DEVICE_FEATURE", 1, errno).unwrap();
                        expect_ok = false;
                        expect_state = cur;
                    }
                    Fault::Step(n) => {
                        let n = u64::from(n % 8) + 1;
                        sim.inject_fault("migration_step", n, Errno::EIO).unwrap();
                        // The load of RESUMING -> STOP happens after the
                        // first step's fault check: a failing load ends the
                        // walk before step 2.
                        let walked = if resume_fails { 1 } else { steps.len() as u64 };
                        if n <= walked {
                            expect_ok = false;
                            expect_state = MigState::Error;
                        }
                    }
                }
                let before = h;
                h = match transition(before, t) {
                    Ok(kept) => {
                        assert!(
                            expect_ok,
                            "{cur:?} -> {new:?} succeeded, the model expected a failure"
                        );
                        kept
                    }
                    Err(e) => {
                        assert!(!expect_ok, "{cur:?} -> {new:?} failed: {e}");
                        assert_eq!(e.requested, new);
                        Handle::from_current(e.now)
                    }
                };
                sim.clear_faults();
                model.state = expect_state;
                if model.state != cur {
                    let saving = |s: MigState| s.is_saving();
                    if !(saving(cur) && saving(model.state)) {
                        model.reading = saving(model.state).then(Vec::new);
                    }
                    if model.state == MigState::Resuming {
                        model.written.clear();
                    }
                }
            }
            Op::Read(chunk) => {
                let mut buf = vec![0u8; usize::from(chunk % 4096) + 1];
                let n = match &mut h {
                    Handle::StopCopy(m) => m.read(&mut buf).expect("read in STOP_COPY"),
                    Handle::PreCopy(m) => match m.read(&mut buf).expect("read in PRE_COPY") {
                        PreCopyRead::Data(n) => n,
                        PreCopyRead::NoDataNow => 0,
                    },
                    Handle::PreCopyP2p(m) => {
                        match m.read(&mut buf).expect("read in PRE_COPY_P2P") {
                            PreCopyRead::Data(n) => n,
                            PreCopyRead::NoDataNow => 0,
                        }
                    }
                    _ => continue,
                };
                let reading = model.reading.as_mut().expect("a save session");
                if n == 0 && model.state == MigState::StopCopy {
                    model.saved = Some(reading.clone());
                } else {
                    reading.extend_from_slice(&buf[..n]);
                }
            }
            Op::Write(len) => {
                let Handle::Resuming(m) = &mut h else {
                    continue;
                };
                let Some(saved) = &model.saved else { continue };
                let cut = &saved[..saved.len().min(usize::from(len))];
                // The simulated driver takes at most 64 KiB per stream.
                if model.written.len() + cut.len() > 64 * 1024 {
                    assert!(matches!(
                        m.write_all(cut),
                        Err(typed_vfio::migration::MigrationError::Io {
                            errno: Errno::ENOMEM,
                            ..
                        })
                    ));
                } else {
                    m.write_all(cut).expect("write in RESUMING");
                    model.written.extend_from_slice(cut);
                }
            }
            Op::Reset => {
                h = match h {
                    Handle::None => continue,
                    Handle::Running(m) => Handle::Running(m.reset().expect("reset")),
                    Handle::Stop(m) => Handle::Running(m.reset().expect("reset")),
                    Handle::StopCopy(m) => Handle::Running(m.reset().expect("reset")),
                    Handle::Resuming(m) => Handle::Running(m.reset().expect("reset")),
                    Handle::RunningP2p(m) => Handle::Running(m.reset().expect("reset")),
                    Handle::PreCopy(m) => Handle::Running(m.reset().expect("reset")),
                    Handle::PreCopyP2p(m) => Handle::Running(m.reset().expect("reset")),
                    Handle::Error(m) => Handle::Running(m.reset().expect("reset")),
                };
                model.state = MigState::Running;
                model.reading = None;
                model.written.clear();
            }
            Op::Renew => {
                drop(std::mem::replace(&mut h, Handle::None));
                // A new handle starts from RUNNING.
                match d.migration::<C>() {
                    Ok(m) => {
                        assert_eq!(model.state, MigState::Running);
                        h = Handle::Running(m);
                    }
                    Err(e) => {
                        assert_ne!(model.state, MigState::Running, "{e}");
                        d.reset().expect("reset without a handle");
                        model.state = MigState::Running;
                        model.reading = None;
                        h = Handle::Running(d.migration::<C>().expect("a handle after reset"));
                    }
                }
            }
        }
        // The kernel, the handle's type and the model agree.
        let kernel = d.migration_state().expect("MIG_DEVICE_STATE GET");
        assert_eq!(kernel, model.state, "the kernel and the model");
        if let Some(s) = h.state() {
            assert_eq!(s, kernel, "the handle's type and the kernel");
        }
    }
}

fuzz_target!(|ops: Vec<Op>| {
    let sim = Simulator::builder()
        .group(SimGroup::new(1).device(SimDevice::edu("0000:01:00.0").migratable(true, true)))
        .build()
        .unwrap();
    let c = sim
        .open_container()
        .unwrap()
        .attach(sim.open_group(1).unwrap())
        .unwrap()
        .set_iommu::<Type1v2>()
        .unwrap();
    let d = c.open_device("0000:01:00.0").unwrap();
    run(&d, &sim, ops);
});
