//! VFIO migration v2 (`VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE`) as typestate.
//!
//! A [`Migration`] is a device's migration handle in one state of the
//! kernel's state machine. The states are types ([`Running`], [`Stop`],
//! [`StopCopy`], [`Resuming`], [`RunningP2p`], [`PreCopy`], [`PreCopyP2p`]);
//! [`Migration::to`] exists only for the arcs the kernel takes, direct or
//! combined (the kernel walks a combined transition itself, one
//! `SET` call): every pair of states but the two the uapi blocks,
//! `STOP_COPY` → `PRE_COPY` and `STOP_COPY` → `PRE_COPY_P2P`. The optional
//! states (P2P, PRE_COPY) are reachable only on a handle whose capability
//! type ([`WithP2p`], [`WithPreCopy`], [`WithP2pPreCopy`]) the device's
//! `VFIO_DEVICE_FEATURE_MIGRATION` advertised when the handle was obtained
//! ([`Device::migration`]).
//!
//! The data fd the kernel returns belongs to the state: the saving states
//! ([`StopCopy`], [`PreCopy`], [`PreCopyP2p`]) can only read it, [`Resuming`]
//! can only write it, and a transition that leaves them closes it. The
//! uapi's ERROR state is reached only through a failed transition
//! ([`Current::Error`]), and [`Migration::reset`] (`VFIO_DEVICE_RESET`)
//! is the way back to RUNNING.
//!
//! A failed transition reports the state the kernel is really in, read back
//! with `MIG_DEVICE_STATE` `GET`, and hands the handle back in it
//! ([`TransitionError::now`]).
//!
//! ```
//! use typed_vfio::migration::{PreCopy, PreCopyRead, Resuming, Running, Stop, StopCopy, WithP2pPreCopy};
//! use typed_vfio::sim::{SimDevice, SimGroup, Simulator};
//! use typed_vfio::Type1v2;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let sim = Simulator::builder()
//!     .group(SimGroup::new(1).device(SimDevice::edu("0000:01:00.0").migratable(true, true)))
//!     .group(SimGroup::new(2).device(SimDevice::edu("0000:02:00.0").migratable(true, true)))
//!     .build()?;
//! let container = sim.open_container()?.attach(sim.open_group(1)?)?;
//! container.attach_more(sim.open_group(2)?).map_err(|(_, e)| e)?;
//! let container = container.set_iommu::<Type1v2>()?;
//! let (source, target) = (container.open_device("0000:01:00.0")?, container.open_device("0000:02:00.0")?);
//! source.region(0)?.write_u32(0x04, 0x1234_5678)?; // edu's liveness register
//!
//! // Save: pre-copy while the device runs, then stop and copy the rest.
//! // A failed transition hands the handle back in its error (borrowing the
//! // device); `.error` drops it and keeps the cause.
//! let running = source.migration::<WithP2pPreCopy>()?;
//! let mut saving = running.to::<PreCopy>().map_err(|e| e.error)?;
//! let mut stream = Vec::new();
//! let mut buf = [0u8; 4096];
//! while let PreCopyRead::Data(n) = saving.read(&mut buf)? {
//!     stream.extend_from_slice(&buf[..n]);
//! }
//! let mut saving = saving.to::<StopCopy>().map_err(|e| e.error)?;
//! stream.extend(saving.read_to_end(1 << 20)?);
//! let _stopped = saving.to::<Stop>().map_err(|e| e.error)?;
//!
//! // Resume into the second device.
//! let mut resuming = target.migration::<WithP2pPreCopy>()?.to::<Resuming>().map_err(|e| e.error)?;
//! resuming.write_all(&stream)?;
//! let _running = resuming.to::<Running>().map_err(|e| e.error)?;
//! assert_eq!(target.region(0)?.read_u32(0x04)?, !0x1234_5678);
//! # Ok(())
//! # }
//! ```

use std::fmt;
use std::marker::PhantomData;
use std::os::fd::{AsFd, OwnedFd};

use thiserror::Error;

use crate::Errno;
use crate::abi;
use crate::device::Device;
use crate::kernel::{Arg, req};
use crate::sys::{self, IntoBytes};

/// A state of the kernel's migration state machine, as
/// `VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE` reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MigState {
    /// `VFIO_DEVICE_STATE_ERROR`: a failed transition left the device
    /// unusable until reset.
    Error,
    /// `VFIO_DEVICE_STATE_STOP`.
    Stop,
    /// `VFIO_DEVICE_STATE_RUNNING`.
    Running,
    /// `VFIO_DEVICE_STATE_STOP_COPY`.
    StopCopy,
    /// `VFIO_DEVICE_STATE_RESUMING`.
    Resuming,
    /// `VFIO_DEVICE_STATE_RUNNING_P2P`.
    RunningP2p,
    /// `VFIO_DEVICE_STATE_PRE_COPY`.
    PreCopy,
    /// `VFIO_DEVICE_STATE_PRE_COPY_P2P`.
    PreCopyP2p,
    /// A value this crate does not know (a newer kernel's).
    Unknown(u32),
}

impl MigState {
    /// From the uapi's value.
    pub fn from_raw(raw: u32) -> MigState {
        match raw {
            sys::VFIO_DEVICE_STATE_ERROR => MigState::Error,
            sys::VFIO_DEVICE_STATE_STOP => MigState::Stop,
            sys::VFIO_DEVICE_STATE_RUNNING => MigState::Running,
            sys::VFIO_DEVICE_STATE_STOP_COPY => MigState::StopCopy,
            sys::VFIO_DEVICE_STATE_RESUMING => MigState::Resuming,
            sys::VFIO_DEVICE_STATE_RUNNING_P2P => MigState::RunningP2p,
            sys::VFIO_DEVICE_STATE_PRE_COPY => MigState::PreCopy,
            sys::VFIO_DEVICE_STATE_PRE_COPY_P2P => MigState::PreCopyP2p,
            other => MigState::Unknown(other),
        }
    }

    /// The uapi's value.
    pub fn raw(self) -> u32 {
        match self {
            MigState::Error => sys::VFIO_DEVICE_STATE_ERROR,
            MigState::Stop => sys::VFIO_DEVICE_STATE_STOP,
            MigState::Running => sys::VFIO_DEVICE_STATE_RUNNING,
            MigState::StopCopy => sys::VFIO_DEVICE_STATE_STOP_COPY,
            MigState::Resuming => sys::VFIO_DEVICE_STATE_RESUMING,
            MigState::RunningP2p => sys::VFIO_DEVICE_STATE_RUNNING_P2P,
            MigState::PreCopy => sys::VFIO_DEVICE_STATE_PRE_COPY,
            MigState::PreCopyP2p => sys::VFIO_DEVICE_STATE_PRE_COPY_P2P,
            MigState::Unknown(raw) => raw,
        }
    }

    /// A saving state: the data fd is read (`STOP_COPY`, `PRE_COPY`,
    /// `PRE_COPY_P2P`).
    pub fn is_saving(self) -> bool {
        matches!(
            self,
            MigState::StopCopy | MigState::PreCopy | MigState::PreCopyP2p
        )
    }
}

/// `VFIO_DEVICE_FEATURE_MIGRATION`'s flags: what the device's migration
/// driver implements.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MigrationFlags(pub u64);

impl MigrationFlags {
    /// `VFIO_MIGRATION_STOP_COPY`: the mandatory states.
    pub fn stop_copy(self) -> bool {
        self.0 & u64::from(sys::VFIO_MIGRATION_STOP_COPY) != 0
    }
    /// `VFIO_MIGRATION_P2P`: RUNNING_P2P (and PRE_COPY_P2P with pre-copy).
    pub fn p2p(self) -> bool {
        self.0 & u64::from(sys::VFIO_MIGRATION_P2P) != 0
    }
    /// `VFIO_MIGRATION_PRE_COPY`: PRE_COPY (and PRE_COPY_P2P with P2P).
    pub fn pre_copy(self) -> bool {
        self.0 & u64::from(sys::VFIO_MIGRATION_PRE_COPY) != 0
    }
}

/// Why a migration operation failed.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum MigrationError {
    /// The kernel or the device's driver does not implement this feature
    /// (`ENOTTY` from `VFIO_DEVICE_FEATURE`): an older kernel, or a device
    /// without migration.
    #[error("{ioctl}: not supported by this kernel or device ({errno})")]
    NotSupported {
        /// The request (and feature).
        ioctl: &'static str,
        /// The errno (`ENOTTY`).
        errno: Errno,
    },
    /// The device does not advertise the migration states the handle's
    /// capability type needs.
    #[error("the device's migration flags {offered:#x} lack {wanted:#x}")]
    Unsupported {
        /// The `VFIO_MIGRATION_*` flags asked for.
        wanted: u64,
        /// The flags the device offers.
        offered: u64,
    },
    /// A migration handle starts from RUNNING; the device is elsewhere
    /// (left there by a dropped handle: reset the device, or move it back).
    #[error("the device is in {state:?}, not RUNNING")]
    NotRunning {
        /// The state the kernel reports.
        state: MigState,
    },
    /// The device already has a live migration handle.
    #[error("the device already has a migration handle")]
    Busy,
    /// A request failed.
    #[error("{ioctl} failed: {errno}")]
    Ioctl {
        /// The request (and feature).
        ioctl: &'static str,
        /// The errno.
        errno: Errno,
    },
    /// `read(2)` or `write(2)` of the data fd failed.
    #[error("{syscall} of the migration data fd failed: {errno}")]
    Io {
        /// `read` or `write`.
        syscall: &'static str,
        /// The errno.
        errno: Errno,
    },
    /// The kernel's answer did not make sense.
    #[error("{ioctl} returned malformed data: {what}")]
    Malformed {
        /// The request.
        ioctl: &'static str,
        /// What was wrong.
        what: &'static str,
    },
    /// The stream is longer than the caller's limit.
    #[error("the migration stream is longer than the {limit}-byte limit")]
    TooLong {
        /// The limit.
        limit: usize,
    },
}

const MIG_FLAGS: &str = "VFIO_DEVICE_FEATURE(MIGRATION)";
const MIG_STATE: &str = "VFIO_DEVICE_FEATURE(MIG_DEVICE_STATE)";
const MIG_DATA_SIZE: &str = "VFIO_DEVICE_FEATURE(MIG_DATA_SIZE)";

fn feature_error(ioctl: &'static str, errno: Errno) -> MigrationError {
    match errno {
        Errno::ENOTTY => MigrationError::NotSupported { ioctl, errno },
        errno => MigrationError::Ioctl { ioctl, errno },
    }
}

mod sealed {
    pub trait Sealed {}

    /// What a state does with the data fd.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub enum Data {
        None,
        Save,
        Resume,
    }
}
use sealed::Data;

/// The migration states a handle may use: the capability set its device
/// advertised.
pub trait Caps: sealed::Sealed + fmt::Debug {
    /// The `VFIO_MIGRATION_*` flags required.
    const FLAGS: u32;
}
/// Capabilities that include P2P.
pub trait HasP2p: Caps {}
/// Capabilities that include pre-copy.
pub trait HasPreCopy: Caps {}

/// STOP_COPY only (the mandatory states).
#[derive(Debug)]
pub enum StopCopyOnly {}
/// STOP_COPY and P2P.
#[derive(Debug)]
pub enum WithP2p {}
/// STOP_COPY and pre-copy.
#[derive(Debug)]
pub enum WithPreCopy {}
/// STOP_COPY, P2P and pre-copy.
#[derive(Debug)]
pub enum WithP2pPreCopy {}

impl sealed::Sealed for StopCopyOnly {}
impl sealed::Sealed for WithP2p {}
impl sealed::Sealed for WithPreCopy {}
impl sealed::Sealed for WithP2pPreCopy {}
impl Caps for StopCopyOnly {
    const FLAGS: u32 = sys::VFIO_MIGRATION_STOP_COPY;
}
impl Caps for WithP2p {
    const FLAGS: u32 = sys::VFIO_MIGRATION_STOP_COPY | sys::VFIO_MIGRATION_P2P;
}
impl Caps for WithPreCopy {
    const FLAGS: u32 = sys::VFIO_MIGRATION_STOP_COPY | sys::VFIO_MIGRATION_PRE_COPY;
}
impl Caps for WithP2pPreCopy {
    const FLAGS: u32 =
        sys::VFIO_MIGRATION_STOP_COPY | sys::VFIO_MIGRATION_P2P | sys::VFIO_MIGRATION_PRE_COPY;
}
impl HasP2p for WithP2p {}
impl HasP2p for WithP2pPreCopy {}
impl HasPreCopy for WithPreCopy {}
impl HasPreCopy for WithP2pPreCopy {}

/// A migration state as a type.
pub trait State: sealed::Sealed {
    /// The state.
    const STATE: MigState;
    #[doc(hidden)]
    const DATA: Data;
}

/// The states a handle with capabilities `C` may enter.
pub trait Allowed<C: Caps>: State {}

/// An arc the kernel takes from this state to `T`, direct or combined.
pub trait ArcTo<T: State>: State {}

macro_rules! states {
    ($($(#[$doc:meta])* $name:ident = $state:ident, $data:ident;)*) => {$(
        $(#[$doc])*
        #[derive(Debug)]
        pub enum $name {}
        impl sealed::Sealed for $name {}
        impl State for $name {
            const STATE: MigState = MigState::$state;
            const DATA: Data = Data::$data;
        }
    )*};
}

states! {
    /// RUNNING: the device runs normally.
    Running = Running, None;
    /// STOP: the device neither runs nor changes its state.
    Stop = Stop, None;
    /// STOP_COPY: stopped, its whole state readable from the data fd.
    StopCopy = StopCopy, Save;
    /// RESUMING: stopped, its new state written into the data fd.
    Resuming = Resuming, Resume;
    /// RUNNING_P2P: running, but issues no peer-to-peer DMA.
    RunningP2p = RunningP2p, None;
    /// PRE_COPY: running, its initial state readable from the data fd.
    PreCopy = PreCopy, Save;
    /// PRE_COPY_P2P: PRE_COPY without peer-to-peer DMA.
    PreCopyP2p = PreCopyP2p, Save;
    /// ERROR: a failed transition left the device here; only
    /// [`Migration::reset`] leaves it.
    ErrorState = Error, None;
}

impl<C: Caps> Allowed<C> for Running {}
impl<C: Caps> Allowed<C> for Stop {}
impl<C: Caps> Allowed<C> for StopCopy {}
impl<C: Caps> Allowed<C> for Resuming {}
impl<C: HasP2p> Allowed<C> for RunningP2p {}
impl<C: HasPreCopy> Allowed<C> for PreCopy {}
impl<C: HasP2p + HasPreCopy> Allowed<C> for PreCopyP2p {}

macro_rules! arcs {
    ($($from:ident => $($to:ident),*;)*) => {$($(
        impl ArcTo<$to> for $from {}
    )*)*};
}

// Every pair of states the kernel's state machine connects
// (vfio_mig_get_next_state): all but the identity, ERROR as a target,
// and STOP_COPY -> PRE_COPY / PRE_COPY_P2P, which the uapi blocks.
arcs! {
    Running => Stop, StopCopy, Resuming, RunningP2p, PreCopy, PreCopyP2p;
    Stop => Running, StopCopy, Resuming, RunningP2p, PreCopy, PreCopyP2p;
    StopCopy => Running, Stop, Resuming, RunningP2p;
    Resuming => Running, Stop, StopCopy, RunningP2p, PreCopy, PreCopyP2p;
    RunningP2p => Running, Stop, StopCopy, Resuming, PreCopy, PreCopyP2p;
    PreCopy => Running, Stop, StopCopy, Resuming, RunningP2p, PreCopyP2p;
    PreCopyP2p => Running, Stop, StopCopy, Resuming, RunningP2p, PreCopy;
}

/// A device's migration handle, in state `S`, with capabilities `C`.
///
/// While it lives, [`Device::reset`] and the PCI hot reset refuse
/// ([`DeviceError::MigrationActive`](crate::DeviceError::MigrationActive)):
/// a reset moves the device to RUNNING behind the handle's back; use
/// [`Migration::reset`]. Dropping the handle leaves the device in its
/// state (a new handle needs RUNNING).
pub struct Migration<'d, S: State, C: Caps> {
    device: &'d Device,
    /// The data fd: `Some` exactly in the saving states and RESUMING.
    data: Option<OwnedFd>,
    _state: PhantomData<(S, C)>,
}

impl<S: State, C: Caps> fmt::Debug for Migration<'_, S, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Migration")
            .field("state", &S::STATE)
            .field("data", &self.data)
            .finish()
    }
}

impl<S: State, C: Caps> Drop for Migration<'_, S, C> {
    fn drop(&mut self) {
        self.device.release_migration();
    }
}

/// A handle the kernel left in a state the crate cannot hand back with its
/// data fd (a saving state or RESUMING it reached without returning one, or
/// a state it does not know); only [`reset`](Stranded::reset) leaves it.
pub struct Stranded<'d, C: Caps> {
    device: &'d Device,
    state: Option<MigState>,
    _caps: PhantomData<C>,
}

impl<C: Caps> fmt::Debug for Stranded<'_, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Stranded")
            .field("state", &self.state)
            .finish()
    }
}

impl<C: Caps> Drop for Stranded<'_, C> {
    fn drop(&mut self) {
        self.device.release_migration();
    }
}

impl<'d, C: Caps> Stranded<'d, C> {
    /// The state the kernel reported, if it could be read.
    pub fn state(&self) -> Option<MigState> {
        self.state
    }

    /// `VFIO_DEVICE_RESET`: back to RUNNING.
    pub fn reset(self) -> Result<Migration<'d, Running, C>, TransitionError<'d, C>> {
        let device = self.device;
        std::mem::forget(self);
        reset_handle(device, MigState::Running)
    }
}

/// Where a failed transition left the device: the handle, in the state the
/// kernel reports.
#[derive(Debug)]
pub enum Current<'d, C: Caps> {
    /// RUNNING.
    Running(Migration<'d, Running, C>),
    /// STOP.
    Stop(Migration<'d, Stop, C>),
    /// STOP_COPY, with the data fd of the saving states.
    StopCopy(Migration<'d, StopCopy, C>),
    /// RESUMING, with its data fd.
    Resuming(Migration<'d, Resuming, C>),
    /// RUNNING_P2P.
    RunningP2p(Migration<'d, RunningP2p, C>),
    /// PRE_COPY, with its data fd.
    PreCopy(Migration<'d, PreCopy, C>),
    /// PRE_COPY_P2P, with its data fd.
    PreCopyP2p(Migration<'d, PreCopyP2p, C>),
    /// ERROR: reset the device.
    Error(Migration<'d, ErrorState, C>),
    /// A state that cannot be handed back as a [`Migration`].
    Stranded(Stranded<'d, C>),
}

impl<C: Caps> Current<'_, C> {
    /// The state.
    pub fn state(&self) -> Option<MigState> {
        Some(match self {
            Current::Running(_) => MigState::Running,
            Current::Stop(_) => MigState::Stop,
            Current::StopCopy(_) => MigState::StopCopy,
            Current::Resuming(_) => MigState::Resuming,
            Current::RunningP2p(_) => MigState::RunningP2p,
            Current::PreCopy(_) => MigState::PreCopy,
            Current::PreCopyP2p(_) => MigState::PreCopyP2p,
            Current::Error(_) => MigState::Error,
            Current::Stranded(s) => return s.state,
        })
    }
}

/// A transition failed: what was asked, why, and where the device is now.
#[derive(Debug, Error)]
#[error("migration to {requested:?} failed: {error} (now in {:?})", now.state())]
pub struct TransitionError<'d, C: Caps> {
    /// The state asked for.
    pub requested: MigState,
    /// Why it failed.
    pub error: MigrationError,
    /// The handle, in the state the kernel reports.
    pub now: Current<'d, C>,
}

/// What a pre-copy read returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PreCopyRead {
    /// This many bytes.
    Data(usize),
    /// No data for now (`ENOMSG`, or a 0-byte read): the device may produce
    /// more while it runs; move to STOP_COPY for the rest.
    NoDataNow,
}

/// `VFIO_MIG_GET_PRECOPY_INFO`: how much pre-copy data is pending.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PrecopyInfo {
    /// Bytes of the initial state still to read.
    pub initial_bytes: u64,
    /// Bytes of state changed since (an estimate).
    pub dirty_bytes: u64,
}

/// `VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE` with `op` (`GET` or `SET` of
/// `state`): the argument as the kernel wrote it back.
fn mig_state(
    device: &Device,
    op: u32,
    state: MigState,
) -> Result<abi::FeatureMigState, MigrationError> {
    let mut arg = abi::FeatureMigState {
        argsz: size_of::<abi::FeatureMigState>() as u32,
        flags: op | sys::VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE,
        device_state: state.raw(),
        data_fd: -1,
    };
    device
        .kernel()
        .ioctl(
            device.as_fd(),
            req::VFIO_DEVICE_FEATURE,
            Arg::InOut(arg.as_mut_bytes()),
        )
        .map_err(|errno| feature_error(MIG_STATE, errno))?;
    Ok(arg)
}

fn get_state(device: &Device) -> Result<MigState, MigrationError> {
    let arg = mig_state(device, sys::VFIO_DEVICE_FEATURE_GET, MigState::Error)?;
    Ok(MigState::from_raw(arg.device_state))
}

/// `SET` of `state`: the data fd the kernel returned, if any.
fn set_state(device: &Device, state: MigState) -> Result<Option<OwnedFd>, MigrationError> {
    let arg = mig_state(device, sys::VFIO_DEVICE_FEATURE_SET, state)?;
    // The kernel writes -1 when the arc makes no fd.
    Ok((arg.data_fd >= 0).then(|| device.kernel().adopt_fd(arg.data_fd)))
}

/// `GET` of a feature whose data is one `u64` (`MIGRATION`'s flags,
/// `MIG_DATA_SIZE`).
fn get_u64(device: &Device, feature: u32, name: &'static str) -> Result<u64, MigrationError> {
    let mut arg = abi::FeatureU64 {
        argsz: size_of::<abi::FeatureU64>() as u32,
        flags: sys::VFIO_DEVICE_FEATURE_GET | feature,
        value: 0,
    };
    device
        .kernel()
        .ioctl(
            device.as_fd(),
            req::VFIO_DEVICE_FEATURE,
            Arg::InOut(arg.as_mut_bytes()),
        )
        .map_err(|errno| feature_error(name, errno))?;
    Ok(arg.value)
}

/// Wraps the device in the handle of the state the kernel reports, keeping
/// `data` where that state reads or writes it.
fn current<'d, C: Caps>(device: &'d Device, data: Option<OwnedFd>) -> Current<'d, C> {
    fn make<'d, S: State, C: Caps>(
        device: &'d Device,
        data: Option<OwnedFd>,
    ) -> Migration<'d, S, C> {
        Migration {
            device,
            data,
            _state: PhantomData,
        }
    }
    let state = get_state(device).ok();
    let needs_fd = state.is_some_and(|s| s.is_saving() || s == MigState::Resuming);
    if needs_fd != data.is_some() {
        return Current::Stranded(Stranded {
            device,
            state,
            _caps: PhantomData,
        });
    }
    match state {
        Some(MigState::Running) => Current::Running(make(device, data)),
        Some(MigState::Stop) => Current::Stop(make(device, data)),
        Some(MigState::StopCopy) => Current::StopCopy(make(device, data)),
        Some(MigState::Resuming) => Current::Resuming(make(device, data)),
        Some(MigState::RunningP2p) => Current::RunningP2p(make(device, data)),
        Some(MigState::PreCopy) => Current::PreCopy(make(device, data)),
        Some(MigState::PreCopyP2p) => Current::PreCopyP2p(make(device, data)),
        Some(MigState::Error) => Current::Error(make(device, data)),
        Some(MigState::Unknown(_)) | None => Current::Stranded(Stranded {
            device,
            state,
            _caps: PhantomData,
        }),
    }
}

fn reset_handle<'d, C: Caps>(
    device: &'d Device,
    requested: MigState,
) -> Result<Migration<'d, Running, C>, TransitionError<'d, C>> {
    let fail = |error| TransitionError {
        requested,
        error,
        now: current(device, None),
    };
    if let Err(errno) = device.reset_for_migration() {
        return Err(fail(MigrationError::Ioctl {
            ioctl: req::VFIO_DEVICE_RESET.name,
            errno,
        }));
    }
    match get_state(device) {
        Ok(MigState::Running) => Ok(Migration {
            device,
            data: None,
            _state: PhantomData,
        }),
        Ok(_) => Err(fail(MigrationError::Malformed {
            ioctl: req::VFIO_DEVICE_RESET.name,
            what: "the device is not RUNNING after a reset",
        })),
        Err(error) => Err(fail(error)),
    }
}

impl<'d, S: State, C: Caps> Migration<'d, S, C> {
    /// The state this handle is in.
    pub fn state(&self) -> MigState {
        S::STATE
    }

    /// The device.
    pub fn device(&self) -> &'d Device {
        self.device
    }

    /// Moves the device to `T` with one `SET` of
    /// `VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE`; the kernel walks a combined
    /// transition itself. Entering a saving state from outside them, or
    /// RESUMING, yields a new data fd; moving between saving states keeps
    /// the one there is; any other arc closes it.
    pub fn to<T>(mut self) -> Result<Migration<'d, T, C>, TransitionError<'d, C>>
    where
        S: ArcTo<T>,
        T: Allowed<C>,
    {
        let device = self.device;
        let old = self.data.take();
        std::mem::forget(self);
        let requested = T::STATE;
        match set_state(device, requested) {
            Ok(new) => {
                let data = match (S::DATA, T::DATA) {
                    // Between saving states the stream goes on.
                    (Data::Save, Data::Save) => new.or(old),
                    (_, Data::Save | Data::Resume) => new,
                    (_, Data::None) => None,
                };
                if (T::DATA != Data::None) != data.is_some() {
                    return Err(TransitionError {
                        requested,
                        error: MigrationError::Malformed {
                            ioctl: MIG_STATE,
                            what: "no data fd for a saving or resuming state",
                        },
                        now: current(device, data),
                    });
                }
                Ok(Migration {
                    device,
                    data,
                    _state: PhantomData,
                })
            }
            Err(error) => {
                // The old fd is still the stream of the state the kernel
                // stopped in if that is the handle's own state, or another
                // saving state reached from a saving one.
                let keep = match get_state(device) {
                    Ok(now) if now == S::STATE => old,
                    Ok(now) if now.is_saving() && S::DATA == Data::Save => old,
                    _ => None,
                };
                Err(TransitionError {
                    requested,
                    error,
                    now: current(device, keep),
                })
            }
        }
    }

    /// `VFIO_DEVICE_RESET`: the device returns to RUNNING and any data fd
    /// is closed.
    pub fn reset(mut self) -> Result<Migration<'d, Running, C>, TransitionError<'d, C>> {
        let device = self.device;
        drop(self.data.take());
        std::mem::forget(self);
        reset_handle(device, MigState::Running)
    }

    /// `VFIO_DEVICE_FEATURE_MIG_DATA_SIZE`: the kernel's estimate of the
    /// bytes STOP_COPY will produce.
    #[doc(alias = "VFIO_DEVICE_FEATURE_MIG_DATA_SIZE")]
    pub fn data_size(&self) -> Result<u64, MigrationError> {
        get_u64(
            self.device,
            sys::VFIO_DEVICE_FEATURE_MIG_DATA_SIZE,
            MIG_DATA_SIZE,
        )
    }

    fn data_fd(&self, ioctl: &'static str) -> Result<std::os::fd::BorrowedFd<'_>, MigrationError> {
        self.data
            .as_ref()
            .map(AsFd::as_fd)
            .ok_or(MigrationError::Malformed {
                ioctl,
                what: "no data fd",
            })
    }

    fn read_raw(&mut self, buf: &mut [u8]) -> Result<usize, Errno> {
        let fd = self.data_fd("read").map_err(|_| Errno::EBADF)?;
        self.device.kernel().read(fd, buf)
    }
}

impl<C: Caps> Migration<'_, StopCopy, C> {
    /// Reads the stream; 0 at its end.
    pub fn read(&mut self, buf: &mut [u8]) -> Result<usize, MigrationError> {
        loop {
            match self.read_raw(buf) {
                Err(Errno::EINTR) => continue,
                Err(errno) => {
                    return Err(MigrationError::Io {
                        syscall: "read",
                        errno,
                    });
                }
                Ok(n) => return Ok(n),
            }
        }
    }

    /// Reads the rest of the stream, at most `limit` bytes (more is
    /// [`MigrationError::TooLong`]).
    pub fn read_to_end(&mut self, limit: usize) -> Result<Vec<u8>, MigrationError> {
        let mut out = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            let n = self.read(&mut buf)?;
            if n == 0 {
                return Ok(out);
            }
            // `n` is at most the buffer's length: a larger count would be
            // the kernel's error, reported as one.
            let chunk = buf.get(..n).ok_or(MigrationError::Malformed {
                ioctl: "read",
                what: "read past the buffer",
            })?;
            if out.len().saturating_add(n) > limit {
                return Err(MigrationError::TooLong { limit });
            }
            out.extend_from_slice(chunk);
        }
    }
}

macro_rules! pre_copy {
    ($($state:ident),*) => {$(
        impl<C: Caps> Migration<'_, $state, C> {
            /// Reads pre-copy data.
            pub fn read(&mut self, buf: &mut [u8]) -> Result<PreCopyRead, MigrationError> {
                loop {
                    match self.read_raw(buf) {
                        Err(Errno::EINTR) => continue,
                        Ok(0) | Err(Errno::ENOMSG) => return Ok(PreCopyRead::NoDataNow),
                        Ok(n) if n <= buf.len() => return Ok(PreCopyRead::Data(n)),
                        Ok(_) => {
                            return Err(MigrationError::Malformed {
                                ioctl: "read",
                                what: "read past the buffer",
                            })
                        }
                        Err(errno) => return Err(MigrationError::Io { syscall: "read", errno }),
                    }
                }
            }

            /// `VFIO_MIG_GET_PRECOPY_INFO` on the data fd.
            #[doc(alias = "VFIO_MIG_GET_PRECOPY_INFO")]
            pub fn precopy_info(&self) -> Result<PrecopyInfo, MigrationError> {
                let ioctl = req::VFIO_MIG_GET_PRECOPY_INFO.name;
                let mut arg = abi::PrecopyInfo {
                    argsz: size_of::<abi::PrecopyInfo>() as u32,
                    flags: 0,
                    initial_bytes: 0,
                    dirty_bytes: 0,
                };
                let fd = self.data_fd(ioctl)?;
                self.device
                    .kernel()
                    .ioctl(fd, req::VFIO_MIG_GET_PRECOPY_INFO, Arg::InOut(arg.as_mut_bytes()))
                    .map_err(|errno| match errno {
                        Errno::ENOTTY => MigrationError::NotSupported { ioctl, errno },
                        errno => MigrationError::Ioctl { ioctl, errno },
                    })?;
                Ok(PrecopyInfo {
                    initial_bytes: arg.initial_bytes,
                    dirty_bytes: arg.dirty_bytes,
                })
            }
        }
    )*};
}
pre_copy!(PreCopy, PreCopyP2p);

impl<C: Caps> Migration<'_, Resuming, C> {
    /// Writes all of `data` into the device's resume stream.
    pub fn write_all(&mut self, mut data: &[u8]) -> Result<(), MigrationError> {
        let fd = self.data_fd("write")?;
        while !data.is_empty() {
            match self.device.kernel().write(fd, data) {
                Err(Errno::EINTR) => continue,
                Err(errno) => {
                    return Err(MigrationError::Io {
                        syscall: "write",
                        errno,
                    });
                }
                Ok(0) => {
                    return Err(MigrationError::Io {
                        syscall: "write",
                        errno: Errno::EIO,
                    });
                }
                Ok(n) => {
                    data = data.get(n..).ok_or(MigrationError::Malformed {
                        ioctl: "write",
                        what: "wrote more than asked",
                    })?;
                }
            }
        }
        Ok(())
    }
}

impl Device {
    /// `VFIO_DEVICE_FEATURE_MIGRATION`: the migration states the device's
    /// driver implements; [`MigrationError::NotSupported`] when the kernel
    /// or the device has no migration.
    #[doc(alias = "VFIO_DEVICE_FEATURE_MIGRATION")]
    pub fn migration_flags(&self) -> Result<MigrationFlags, MigrationError> {
        get_u64(self, sys::VFIO_DEVICE_FEATURE_MIGRATION, MIG_FLAGS).map(MigrationFlags)
    }

    /// The migration state the kernel reports
    /// (`VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE` `GET`).
    pub fn migration_state(&self) -> Result<MigState, MigrationError> {
        get_state(self)
    }

    /// One `SET` of `VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE` to any value,
    /// outside the typestate: the data fd the kernel returned, if any. For
    /// a VMM that runs its own copy of the state machine, and for probing
    /// what the kernel refuses. Refused while a typed handle lives
    /// ([`MigrationError::Busy`]): it would move the device behind it.
    pub fn set_migration_state(&self, state: MigState) -> Result<Option<OwnedFd>, MigrationError> {
        if !self.claim_migration() {
            return Err(MigrationError::Busy);
        }
        let result = set_state(self, state);
        self.release_migration();
        result
    }

    /// The device's migration handle, in RUNNING, for the states `C` names:
    /// the device must advertise them ([`MigrationError::Unsupported`]), be
    /// RUNNING ([`MigrationError::NotRunning`]) and have no other handle
    /// ([`MigrationError::Busy`]).
    pub fn migration<C: Caps>(&self) -> Result<Migration<'_, Running, C>, MigrationError> {
        let flags = self.migration_flags()?;
        let wanted = u64::from(C::FLAGS);
        if flags.0 & wanted != wanted {
            return Err(MigrationError::Unsupported {
                wanted,
                offered: flags.0,
            });
        }
        if !self.claim_migration() {
            return Err(MigrationError::Busy);
        }
        let handle = Migration {
            device: self,
            data: None,
            _state: PhantomData,
        };
        match get_state(self)? {
            MigState::Running => Ok(handle),
            state => Err(MigrationError::NotRunning { state }),
        }
    }
}
