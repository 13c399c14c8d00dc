//! One scenario suite, written once, run on the real kernel (the guest rig,
//! `tests/vm_guest/`) and on the simulated kernel (`tests/sim_diff.rs`).
//! Each scenario records what it observes — values and errno names, never
//! addresses or group numbers, which differ between machines — as
//! `key = value` lines. The real kernel's record is committed
//! (`tests/scenarios/linux-6.12.txt`); the simulator's must equal it except
//! for the keys listed, with a reason, in [`DEVIATIONS`].
//!
//! Every scenario is fallible: a call the real kernel answers but that fails
//! anyway (a fault injected into the simulator, `tests/sim_faults.rs`) ends
//! the scenario with a [`Failure`] naming the step and carrying the crate's
//! typed error, never a panic. A failed transition also says whether the
//! objects it handed back still answer.

#![allow(dead_code)]

mod iommufd;

use std::fmt;
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::eventfd::{EfdFlags, EventFd};
use typed_vfio::iommufd::{CdevDevice, Iommufd, IommufdError};
use typed_vfio::sim::{SimDevice, SimGroup, Simulator};
use typed_vfio::{
    Attached, Container, ContainerError, Device, DeviceError, DmaAccess, DmaBuffer, DmaError,
    DmaModel, Group, GroupError, HasGroups, IommuModel, IovaRange, NoIommu, PciIrq, Type1, Type1v2,
    Unset,
};

/// Keys where the simulator knowingly differs from Linux 6.12 + QEMU 7.2.
pub const DEVIATIONS: &[(&str, &str)] = &[(
    "device.region0.mmap",
    "a process cannot trap its own MMIO: the simulated BAR0 has no MMAP flag",
)];

/// Keys only a 64-bit program observes (a 32-bit one refuses the call
/// before the kernel sees it): on 32-bit hosts the real record's line has
/// no counterpart.
pub const WIDE_ONLY: &[(&str, &str)] = &[(
    "iommufd.allow.past_aperture",
    "allow_iovas refuses bounds past usize::MAX (BadRange) in a 32-bit program",
)];

/// The IOMMU model a configuration uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Type1,
    Type1v2,
    NoIommu,
    /// iommufd and the device cdev (no container).
    Iommufd,
}

impl Kind {
    /// Every configuration the suite knows.
    pub const ALL: [Kind; 4] = [Kind::Type1, Kind::Type1v2, Kind::NoIommu, Kind::Iommufd];

    pub fn name(self) -> &'static str {
        match self {
            Kind::Type1 => "type1",
            Kind::Type1v2 => "type1v2",
            Kind::NoIommu => "noiommu",
            Kind::Iommufd => "iommufd",
        }
    }
}

/// Where the scenarios get their VFIO objects.
pub trait Env {
    fn kind(&self) -> Kind;
    /// Two edu devices, each in its own group, behind its own root port.
    fn devices(&self) -> Vec<String>;
    fn open_container(&self) -> Result<Container<Unset>, ContainerError>;
    fn open_group_of(&self, address: &str) -> Result<Group, GroupError>;
    fn open_iommufd(&self) -> Result<Iommufd, IommufdError>;
    fn open_cdev(&self, address: &str) -> Result<CdevDevice, IommufdError>;
    /// How long to wait before concluding that no interrupt comes.
    fn quiet(&self) -> Duration;
    /// How long to wait for what should come (an interrupt, the end of an
    /// edu DMA or computation) before giving up on it.
    fn timeout(&self) -> Duration;
    /// The first IOVA of the first device's MSI window (its group's
    /// reserved region of type `msi`): x86 VT-d's `0xfee00000`, an ARM
    /// SMMUv3's `0x8000000` in QEMU's `virt`.
    fn msi_window(&self) -> u64;
    /// Whether a 2-byte read of edu's BAR0 is safe here. On x86 it reads 0;
    /// on aarch64 it is a synchronous external abort that kills the guest
    /// kernel, so the real aarch64 guest does not do it (its record says so
    /// instead).
    fn narrow_bar0_reads(&self) -> bool {
        true
    }
    /// Whether edu's BAR0 registers are big-endian here. QEMU's edu is
    /// `DEVICE_NATIVE_ENDIAN`: little-endian on x86 and aarch64 (and in the
    /// simulator), big-endian on a big-endian guest (PowerPC). The suite
    /// then uses the crate's `_be` accessors, so the record reads the same.
    fn big_endian_registers(&self) -> bool {
        false
    }
}

/// edu's BAR0 in its registers' byte order ([`Env::big_endian_registers`]).
struct Bar0<'d> {
    region: typed_vfio::Region<'d>,
    be: bool,
}

impl<'d> Bar0<'d> {
    fn new(region: typed_vfio::Region<'d>, env: &dyn Env) -> Self {
        Bar0 {
            region,
            be: env.big_endian_registers(),
        }
    }
    fn read_u16(&self, offset: u64) -> Result<u16, DeviceError> {
        if self.be {
            self.region.read_u16_be(offset)
        } else {
            self.region.read_u16(offset)
        }
    }
    fn read_u32(&self, offset: u64) -> Result<u32, DeviceError> {
        if self.be {
            self.region.read_u32_be(offset)
        } else {
            self.region.read_u32(offset)
        }
    }
    fn write_u32(&self, offset: u64, value: u32) -> Result<(), DeviceError> {
        if self.be {
            self.region.write_u32_be(offset, value)
        } else {
            self.region.write_u32(offset, value)
        }
    }
}

/// The simulated kernel shaped like the guest rig: two edu devices, each in
/// its own group behind its own root port (no-IOMMU groups for
/// [`Kind::NoIommu`]).
pub struct SimEnv {
    pub sim: Simulator,
    kind: Kind,
}

impl SimEnv {
    pub fn new(kind: Kind) -> Self {
        let group = |n| match kind {
            Kind::NoIommu => SimGroup::noiommu(n),
            _ => SimGroup::new(n),
        };
        let sim = Simulator::builder()
            .group(group(0).device(SimDevice::edu("0000:01:00.0")))
            .group(group(1).device(SimDevice::edu("0000:02:00.0")))
            .build()
            .expect("a valid simulator description");
        SimEnv { sim, kind }
    }
}

impl Env for SimEnv {
    fn kind(&self) -> Kind {
        self.kind
    }
    fn devices(&self) -> Vec<String> {
        vec!["0000:01:00.0".into(), "0000:02:00.0".into()]
    }
    fn open_container(&self) -> Result<Container<Unset>, ContainerError> {
        self.sim.open_container()
    }
    fn open_group_of(&self, address: &str) -> Result<Group, GroupError> {
        self.sim.open_group_of(address)
    }
    fn open_iommufd(&self) -> Result<Iommufd, IommufdError> {
        self.sim.open_iommufd()
    }
    fn open_cdev(&self, address: &str) -> Result<CdevDevice, IommufdError> {
        self.sim.open_cdev(address)
    }
    fn quiet(&self) -> Duration {
        Duration::ZERO
    }
    /// Interrupts and edu work complete synchronously on the simulator: what
    /// has not come at once never comes (only a run with an injected fault
    /// waits this long).
    fn timeout(&self) -> Duration {
        Duration::from_millis(20)
    }
    /// The simulator models VT-d: its interrupt window.
    fn msi_window(&self) -> u64 {
        0xfee0_0000
    }
}

/// The observations of one run, in order.
#[derive(Default)]
pub struct Record(pub Vec<(String, String)>);

impl Record {
    fn note(&mut self, key: &str, value: impl ToString) {
        self.0.push((key.to_owned(), value.to_string()));
    }

    /// `config key = value` lines.
    pub fn lines(&self, config: &str) -> Vec<String> {
        self.0
            .iter()
            .map(|(k, v)| format!("{config} {k} = {v}"))
            .collect()
    }
}

/// A typed error of the crate, of whichever family the failed call is.
#[derive(Debug)]
pub enum ApiError {
    Container(ContainerError),
    Group(GroupError),
    Device(DeviceError),
    Dma(DmaError),
    Iommufd(IommufdError),
}

impl From<ContainerError> for ApiError {
    fn from(e: ContainerError) -> Self {
        ApiError::Container(e)
    }
}

impl From<GroupError> for ApiError {
    fn from(e: GroupError) -> Self {
        ApiError::Group(e)
    }
}

impl From<DeviceError> for ApiError {
    fn from(e: DeviceError) -> Self {
        ApiError::Device(e)
    }
}

impl From<DmaError> for ApiError {
    fn from(e: DmaError) -> Self {
        ApiError::Dma(e)
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ApiError::Container(e) => write!(f, "ContainerError: {e} ({e:?})"),
            ApiError::Group(e) => write!(f, "GroupError: {e} ({e:?})"),
            ApiError::Device(e) => write!(f, "DeviceError: {e} ({e:?})"),
            ApiError::Dma(e) => write!(f, "DmaError: {e} ({e:?})"),
            ApiError::Iommufd(e) => write!(f, "IommufdError: {e} ({e:?})"),
        }
    }
}

/// Why a scenario stopped before its end.
#[derive(Debug)]
pub enum Failure {
    /// A call failed.
    Call { step: String, error: ApiError },
    /// A transition (`attach`, `set_iommu`, `release_groups`, `attach_more`)
    /// failed; `handed_back_usable` says whether the objects it handed back
    /// (the container, the group) still answered queries afterwards.
    Transition {
        step: String,
        error: ApiError,
        handed_back_usable: bool,
    },
    /// A call that the real kernel refuses succeeded.
    Unexpected { step: String, what: &'static str },
}

impl Failure {
    /// The step that failed.
    pub fn step(&self) -> &str {
        match self {
            Failure::Call { step, .. }
            | Failure::Transition { step, .. }
            | Failure::Unexpected { step, .. } => step,
        }
    }

    /// The crate's error, unless a call unexpectedly succeeded.
    pub fn error(&self) -> Option<&ApiError> {
        match self {
            Failure::Call { error, .. } | Failure::Transition { error, .. } => Some(error),
            Failure::Unexpected { .. } => None,
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Call { step, error } => write!(f, "{step}: {error}"),
            Failure::Transition {
                step,
                error,
                handed_back_usable,
            } => write!(
                f,
                "{step}: {error} (handed-back objects usable: {handed_back_usable})"
            ),
            Failure::Unexpected { step, what } => write!(f, "{step}: {what}"),
        }
    }
}

/// Labels a typed-API result with the step it belongs to.
trait At<T> {
    fn at(self, step: &str) -> Result<T, Failure>;
}

impl<T, E: Into<ApiError>> At<T> for Result<T, E> {
    fn at(self, step: &str) -> Result<T, Failure> {
        self.map_err(|e| Failure::Call {
            step: step.to_owned(),
            error: e.into(),
        })
    }
}

fn unexpected(step: &str, what: &'static str) -> Failure {
    Failure::Unexpected {
        step: step.to_owned(),
        what,
    }
}

fn transition(step: &str, error: impl Into<ApiError>, handed_back_usable: bool) -> Failure {
    Failure::Transition {
        step: step.to_owned(),
        error: error.into(),
        handed_back_usable,
    }
}

/// Whether a group answers `GET_STATUS`, with `container_set` as expected.
fn group_answers(g: &Group, container_set: bool) -> bool {
    g.status().is_ok_and(|s| s.container_set == container_set)
}

/// Whether a container answers `CHECK_EXTENSION`.
fn container_answers<S: typed_vfio::ContainerState>(c: &Container<S>) -> bool {
    c.supports::<Type1v2>().is_ok()
}

/// `attach`; on failure, whether the container and group came back usable.
fn attach(step: &str, c: Container<Unset>, g: Group) -> Result<Container<Attached>, Failure> {
    c.attach(g).map_err(|e| {
        let usable = container_answers(&e.container)
            && e.container.groups().is_empty()
            && group_answers(&e.group, false);
        transition(step, e.error, usable)
    })
}

/// `set_iommu`; on failure, whether the attached container came back usable.
fn set_iommu<M: IommuModel>(step: &str, c: Container<Attached>) -> Result<Container<M>, Failure> {
    let groups = c.groups().len();
    c.set_iommu::<M>().map_err(|e| {
        let usable = container_answers(&e.container)
            && e.container.groups().len() == groups
            && e.container.groups().all(|g| group_answers(g, true));
        transition(step, e.error, usable)
    })
}

/// `release_groups`; on failure, whether the container came back usable,
/// holding the groups that stayed, and the released ones with it.
fn release<S: HasGroups>(
    step: &str,
    c: Container<S>,
) -> Result<(Container<Unset>, Vec<Group>), Failure> {
    let groups = c.groups().len();
    c.release_groups().map_err(|e| {
        let usable = container_answers(&e.container)
            && !e.container.groups().is_empty()
            && e.container.groups().len() + e.released.len() == groups
            && e.container.groups().all(|g| group_answers(g, true))
            && e.released.iter().all(|g| group_answers(g, false));
        transition(step, e.error, usable)
    })
}

/// `attach_more`; on failure, whether the group came back usable and the
/// container kept its groups.
fn attach_more<S: HasGroups>(step: &str, c: &mut Container<S>, g: Group) -> Result<(), Failure> {
    let groups = c.groups().len();
    c.attach_more(g).map_err(|(group, error)| {
        let usable = group_answers(&group, false)
            && container_answers(c)
            && c.groups().len() == groups
            && c.groups().all(|g| group_answers(g, true));
        transition(step, error, usable)
    })
}

fn errno_name(e: nix::errno::Errno) -> String {
    format!("{e:?}")
}

fn dev<T>(r: Result<T, DeviceError>) -> String {
    match r {
        Ok(_) => "ok".into(),
        Err(
            DeviceError::Ioctl { errno, .. }
            | DeviceError::IndexedIoctl { errno, .. }
            | DeviceError::IrqNotEnabled { errno, .. },
        ) => errno_name(errno),
        Err(e) => format!("typed: {}", variant(&format!("{e:?}"))),
    }
}

fn grp<T>(r: Result<T, GroupError>) -> String {
    match r {
        Ok(_) => "ok".into(),
        Err(
            GroupError::Ioctl { errno, .. }
            | GroupError::NoDevice { errno, .. }
            | GroupError::Open { errno, .. },
        ) => errno_name(errno),
        Err(e) => format!("typed: {}", variant(&format!("{e:?}"))),
    }
}

fn con<T>(r: Result<T, ContainerError>) -> String {
    match r {
        Ok(_) => "ok".into(),
        Err(ContainerError::Ioctl { errno, .. } | ContainerError::Open { errno, .. }) => {
            errno_name(errno)
        }
        Err(ContainerError::Unsupported { id, .. }) => format!("unsupported {id}"),
        Err(e) => format!("typed: {}", variant(&format!("{e:?}"))),
    }
}

fn dma<T>(r: Result<T, DmaError>) -> String {
    match r {
        Ok(_) => "ok".into(),
        Err(DmaError::Ioctl { errno, .. }) => errno_name(errno),
        Err(e) => format!("typed: {}", variant(&format!("{e:?}"))),
    }
}

fn unmapped(r: Result<u64, DmaError>) -> String {
    match r {
        Ok(n) => format!("{n:#x}"),
        Err(e) => dma::<()>(Err(e)),
    }
}

fn variant(debug: &str) -> &str {
    debug
        .split(|c: char| !c.is_alphanumeric() && c != '_')
        .next()
        .unwrap_or(debug)
}

fn eventfd() -> EventFd {
    EventFd::from_value_and_flags(0, EfdFlags::EFD_CLOEXEC | EfdFlags::EFD_NONBLOCK).unwrap()
}

/// The eventfd's counter once it fires within `wait`, or 0.
fn fired(e: &EventFd, wait: Duration) -> u64 {
    let mut fds = [PollFd::new(e.as_fd(), PollFlags::POLLIN)];
    let ms = u16::try_from(wait.as_millis()).unwrap_or(u16::MAX);
    match poll(&mut fds, PollTimeout::from(ms)) {
        Ok(1) => e.read().unwrap_or(0),
        _ => 0,
    }
}

const EDU_BUF: u64 = 0x40000;

/// Has edu copy `count` bytes from `src` to `dst` (`cmd` 2: to memory, 4:
/// raise an interrupt at the end) and waits for the copy to end.
fn edu_dma(
    env: &dyn Env,
    d: &Device,
    src: u64,
    dst: u64,
    count: u32,
    cmd: u32,
) -> Result<(), Failure> {
    let step = "edu DMA";
    let bar0 = Bar0::new(d.region(0).at(step)?, env);
    bar0.write_u32(0x80, src as u32).at(step)?;
    bar0.write_u32(0x88, dst as u32).at(step)?;
    bar0.write_u32(0x90, count).at(step)?;
    bar0.write_u32(0x98, 1 | cmd).at(step)?;
    let t = Instant::now();
    while bar0.read_u32(0x98).at(step)? & 1 != 0 && t.elapsed() < env.timeout() {
        std::thread::sleep(Duration::from_millis(5));
    }
    Ok(())
}

macro_rules! by_model {
    ($env:expr, $f:ident ( $($arg:expr),* )) => {
        match $env.kind() {
            Kind::Type1 => $f::<Type1>($($arg),*),
            Kind::Type1v2 => $f::<Type1v2>($($arg),*),
            Kind::NoIommu => $f::<NoIommu>($($arg),*),
            // No container: the iommufd scenarios take no model.
            Kind::Iommufd => $f::<Type1v2>($($arg),*),
        }
    };
    // The instance of a generic scenario for a configuration's model.
    (fn $kind:expr, $f:ident) => {
        match $kind {
            Kind::Type1 => $f::<Type1> as Scenario,
            Kind::Type1v2 => $f::<Type1v2> as Scenario,
            Kind::NoIommu => $f::<NoIommu> as Scenario,
            Kind::Iommufd => $f::<Type1v2> as Scenario,
        }
    };
}

fn open_model<M: IommuModel>(env: &dyn Env, i: usize) -> Result<(Container<M>, Device), Failure> {
    let address = &env.devices()[i];
    let c = env.open_container().at("open the container")?;
    let g = env.open_group_of(address).at("open the group")?;
    let c = attach("attach the group", c, g)?;
    let c = set_iommu::<M>("set the IOMMU model", c)?;
    let d = c.open_device(address).at("open the device")?;
    Ok((c, d))
}

/// One scenario: adds its observations to the record, or stops at the
/// first call that fails where the real kernel succeeds.
pub type Scenario = fn(&dyn Env, &mut Record) -> Result<(), Failure>;

/// The scenarios of a configuration, by name, in the order [`run`] runs
/// them (each can run alone, on fresh objects).
pub fn scenarios(kind: Kind) -> Vec<(&'static str, Scenario)> {
    if kind == Kind::Iommufd {
        return vec![
            ("iommufd_objects", iommufd::iommufd_objects as Scenario),
            ("iommufd_dma", iommufd::iommufd_dma),
            ("iommufd_interrupts", iommufd::iommufd_interrupts),
            (
                "iommufd_copy_allow_reset",
                iommufd::iommufd_copy_allow_reset,
            ),
        ];
    }
    let mut all: Vec<(&'static str, Scenario)> = vec![
        ("containers_and_groups", containers_and_groups as Scenario),
        ("device_basics", by_model!(fn kind, device_basics)),
        ("interrupts", by_model!(fn kind, interrupts)),
        ("resets_and_names", by_model!(fn kind, resets_and_names)),
    ];
    match kind {
        Kind::Type1 => all.push(("dma_scenarios", dma_scenarios::<Type1>)),
        Kind::Type1v2 => all.push(("dma_scenarios", dma_scenarios::<Type1v2>)),
        Kind::NoIommu | Kind::Iommufd => {}
    }
    all
}

/// Runs every scenario for `env`'s configuration; panics, naming the
/// scenario and step, if one fails.
pub fn run(env: &dyn Env) -> Record {
    let mut r = Record::default();
    for (name, scenario) in scenarios(env.kind()) {
        if let Err(failure) = scenario(env, &mut r) {
            panic!("{} scenario {name} failed at {failure}", env.kind().name());
        }
    }
    r
}

fn containers_and_groups(env: &dyn Env, r: &mut Record) -> Result<(), Failure> {
    let c = env.open_container().at("open the container")?;
    let step = "check extensions";
    r.note("container.type1", c.supports::<Type1>().at(step)?);
    r.note("container.type1v2", c.supports::<Type1v2>().at(step)?);
    r.note("container.noiommu", c.supports::<NoIommu>().at(step)?);
    r.note(
        "container.unknown_extension",
        c.check_extension(0x7fff).at(step)?,
    );
    let address = env.devices()[0].clone();
    let g = env.open_group_of(&address).at("open the group")?;
    let s = g.status().at("status of the fresh group")?;
    r.note(
        "group.fresh",
        format!("viable {} set {}", s.viable, s.container_set),
    );
    r.note("group.second_open", grp(env.open_group_of(&address)));
    let c = attach("attach the group", c, g)?;
    let s = c
        .groups()
        .next()
        .unwrap()
        .status()
        .at("status of the attached group")?;
    r.note(
        "group.attached",
        format!("viable {} set {}", s.viable, s.container_set),
    );
    r.note(
        "container.attached.type1v2",
        c.supports::<Type1v2>().at("check type1v2 when attached")?,
    );
    // dup(2) of a real fd (the simulator's objects are real fds too).
    let dup = c
        .groups()
        .next()
        .unwrap()
        .as_fd()
        .try_clone_to_owned()
        .unwrap();
    let second = Group::from_fd(dup, c.groups().next().unwrap().id());
    let step = "attach the group to a second container";
    match env.open_container().at(step)?.attach(second) {
        Ok(_) => return Err(unexpected(step, "a group joined two containers")),
        Err(err) => {
            r.note("group.in_another_container", grp::<()>(Err(err.error)));
            drop(err.group);
        }
    }
    let wrong = match env.kind() {
        Kind::NoIommu => c.set_iommu::<Type1v2>().map(drop),
        _ => c.set_iommu::<NoIommu>().map(drop),
    };
    let err = match wrong {
        Ok(()) => return Err(unexpected("set the wrong model", "the wrong model was set")),
        Err(err) => err,
    };
    r.note("container.wrong_model", con::<()>(Err(err.error)));
    let c = err.container;
    fn release_model<M: IommuModel>(
        c: Container<Attached>,
    ) -> Result<(Container<Unset>, Vec<Group>), Failure> {
        let c = set_iommu::<M>("set the IOMMU model", c)?;
        release("release the groups", c)
    }
    let (unset, groups) = by_model!(env, release_model(c))?;
    let s = groups[0].status().at("status of the released group")?;
    r.note(
        "group.released",
        format!("viable {} set {}", s.viable, s.container_set),
    );
    drop(unset);
    drop(groups);
    Ok(())
}

fn device_basics<M: IommuModel>(env: &dyn Env, r: &mut Record) -> Result<(), Failure> {
    let (_c, d) = open_model::<M>(env, 0)?;
    let i = d.info();
    r.note(
        "device.info",
        format!(
            "flags {:#x} regions {} irqs {}",
            i.flags, i.num_regions, i.num_irqs
        ),
    );
    for index in 0..=i.num_regions {
        let key = format!("device.region{index}");
        match d.region(index) {
            Ok(reg) => {
                let info = reg.info();
                r.note(
                    &key,
                    format!(
                        "size {:#x} read {} write {}",
                        info.size,
                        info.readable(),
                        info.writable()
                    ),
                );
                if info.size > 0 && index < 6 {
                    r.note(&format!("{key}.mmap"), info.mappable());
                }
            }
            Err(e) => r.note(&key, dev::<()>(Err(e))),
        }
    }
    for index in 0..=i.num_irqs {
        let v = match d.irq_info(index) {
            Ok(q) => format!("flags {:#x} count {}", q.flags, q.count),
            Err(e) => dev::<()>(Err(e)),
        };
        r.note(&format!("device.irq{index}"), v);
    }
    let step = "config space";
    let cfg = d.pci_config().at(step)?;
    r.note("config.ids", format!("{:#010x}", cfg.read_u32(0).at(step)?));
    r.note("config.size", cfg.info().size);
    d.set_bus_master(true).at(step)?;
    r.note("config.master_on", d.pci_command().at(step)? & 4 != 0);
    d.set_bus_master(false).at(step)?;
    r.note("config.master_off", d.pci_command().at(step)? & 4 != 0);
    let step = "BAR0";
    let bar0 = Bar0::new(d.region(0).at(step)?, env);
    r.note("bar0.ident", format!("{:#x}", bar0.read_u32(0).at(step)?));
    bar0.write_u32(4, 0x1234_5678).at(step)?;
    r.note(
        "bar0.liveness",
        format!("{:#x}", bar0.read_u32(4).at(step)?),
    );
    if env.narrow_bar0_reads() {
        r.note(
            "bar0.read_u16_ident",
            format!("{:#x}", bar0.read_u16(0).at(step)?),
        );
    } else {
        r.note(
            "bar0.read_u16_ident",
            "not read: a 2-byte MMIO read of edu aborts the aarch64 guest",
        );
    }
    r.note(
        "bar0.read_u32_unused",
        format!("{:#x}", bar0.read_u32(0x40).at(step)?),
    );
    let step = "factorial";
    bar0.write_u32(0x20, 0).at(step)?;
    bar0.write_u32(8, 10).at(step)?;
    let t = Instant::now();
    while bar0.read_u32(0x20).at(step)? & 1 != 0 && t.elapsed() < env.timeout() {
        std::thread::sleep(Duration::from_millis(1));
    }
    r.note("bar0.factorial10", bar0.read_u32(8).at(step)?);
    r.note("bar0.read_past_end", dev(bar0.read_u32(1 << 20)));
    Ok(())
}

fn interrupts<M: IommuModel>(env: &dyn Env, r: &mut Record) -> Result<(), Failure> {
    let (_c, d) = open_model::<M>(env, 0)?;
    let bar0 = Bar0::new(d.region(0).at("BAR0")?, env);
    let (msi, intx) = (PciIrq::Msi as u32, PciIrq::Intx as u32);
    let e = eventfd();
    let e2 = eventfd();
    let two = [Some(e.as_fd()), Some(e2.as_fd())];
    r.note("irq.msi_two_vectors", dev(d.set_irq_eventfds(msi, 0, &two)));
    r.note(
        "irq.msix_set",
        dev(d.set_irq_eventfd(PciIrq::Msix as u32, 0, e.as_fd())),
    );
    r.note(
        "irq.err_set",
        dev(d.set_irq_eventfd(PciIrq::Err as u32, 0, e.as_fd())),
    );
    r.note("irq.msi_disable_unset", dev(d.disable_irq(msi)));
    r.note("irq.intx_unmask_unset", dev(d.unmask_irq(intx, 0, 1)));
    r.note(
        "irq.req_loopback_unset",
        dev(d.trigger_irq(PciIrq::Req as u32, 0, 1)),
    );
    let (sock, _peer) = nix::unistd::pipe().unwrap();
    r.note(
        "irq.msi_not_an_eventfd",
        dev(d.set_irq_eventfd(msi, 0, sock.as_fd())),
    );
    // MSI.
    let step = "MSI";
    bar0.write_u32(0x64, u32::MAX).at(step)?;
    d.set_irq_eventfd(msi, 0, e.as_fd()).at(step)?;
    r.note("irq.msi_mask", dev(d.mask_irq(msi, 0, 1)));
    r.note(
        "irq.intx_while_msi",
        dev(d.set_irq_eventfd(intx, 0, e2.as_fd())),
    );
    bar0.write_u32(0x60, 0x8).at(step)?;
    r.note("irq.msi_without_master", fired(&e, env.quiet()));
    bar0.write_u32(0x64, 0x8).at(step)?;
    d.set_bus_master(true).at(step)?;
    bar0.write_u32(0x60, 0x10).at(step)?;
    r.note("irq.msi_with_master", fired(&e, env.timeout()));
    r.note(
        "irq.status",
        format!("{:#x}", bar0.read_u32(0x24).at(step)?),
    );
    bar0.write_u32(0x64, 0x10).at(step)?;
    for _ in 0..10 {
        d.trigger_irq(msi, 0, 1).at(step)?;
    }
    r.note("irq.msi_loopback10", fired(&e, env.timeout()));
    d.trigger_irq_bool(msi, 0, &[false]).at(step)?;
    r.note("irq.msi_bool_false", fired(&e, env.quiet()));
    r.note("irq.msi_disable", dev(d.disable_irq(msi)));
    bar0.write_u32(0x60, 0x40).at(step)?;
    r.note("irq.msi_after_disable", fired(&e, env.quiet()));
    bar0.write_u32(0x64, u32::MAX).at(step)?;
    // INTx.
    let step = "INTx";
    d.set_irq_eventfd(intx, 0, e.as_fd()).at(step)?;
    bar0.write_u32(0x60, 0x1).at(step)?;
    r.note("intx.first", fired(&e, env.timeout()));
    bar0.write_u32(0x64, 0x1).at(step)?;
    bar0.write_u32(0x60, 0x2).at(step)?;
    r.note("intx.while_automasked", fired(&e, env.quiet()));
    d.unmask_irq(intx, 0, 1).at(step)?;
    r.note("intx.pending_at_unmask", fired(&e, env.timeout()));
    bar0.write_u32(0x64, 0x2).at(step)?;
    d.unmask_irq(intx, 0, 1).at(step)?;
    r.note("intx.nothing_raised", fired(&e, env.quiet()));
    bar0.write_u32(0x60, 0x4).at(step)?;
    r.note("intx.third", fired(&e, env.timeout()));
    bar0.write_u32(0x64, 0x4).at(step)?;
    d.unmask_irq(intx, 0, 1).at(step)?;
    d.mask_irq(intx, 0, 1).at(step)?;
    bar0.write_u32(0x60, 0x1).at(step)?;
    r.note("intx.user_masked", fired(&e, env.quiet()));
    d.unmask_irq(intx, 0, 1).at(step)?;
    r.note("intx.after_user_unmask", fired(&e, env.timeout()));
    d.trigger_irq(intx, 0, 1).at(step)?;
    r.note("intx.loopback", fired(&e, env.timeout()));
    bar0.write_u32(0x64, u32::MAX).at(step)?;
    r.note("intx.disable", dev(d.disable_irq(intx)));
    d.set_bus_master(false).at(step)?;
    Ok(())
}

fn resets_and_names<M: IommuModel>(env: &dyn Env, r: &mut Record) -> Result<(), Failure> {
    let (c, d) = open_model::<M>(env, 0)?;
    r.note("reset", dev(d.reset()));
    let bar0 = Bar0::new(d.region(0).at("BAR0")?, env);
    r.note(
        "reset.ident_after",
        format!("{:#x}", bar0.read_u32(0).at("BAR0")?),
    );
    let own = c.groups().next().unwrap().id().number;
    match d.pci_hot_reset_info() {
        Ok(info) => r.note(
            "hot_reset.info",
            format!(
                "count {} own_group {}",
                info.len(),
                info.iter().all(|x| x.group_id == own)
            ),
        ),
        // No slot and no bus to reset (a device on a root bus, as on QEMU's
        // ppce500): the kernel's refusal is the observation (ENODEV).
        Err(e) => r.note("hot_reset.info", dev::<()>(Err(e))),
    }
    r.note("hot_reset.own_group", dev(d.pci_hot_reset(c.groups())));
    r.note("hot_reset.no_group", dev(d.pci_hot_reset(&[])));
    let other = env
        .open_group_of(&env.devices()[1])
        .at("open the other group")?;
    r.note("hot_reset.other_group", dev(d.pci_hot_reset([&other])));
    let step = "probe features";
    let lp = d.probe_feature(3).at(step)?;
    r.note(
        "feature.low_power",
        format!("get {} set {}", lp.get, lp.set),
    );
    let mig = d.probe_feature(1).at(step)?;
    r.note(
        "feature.migration",
        format!("get {} set {}", mig.get, mig.set),
    );
    r.note(
        "feature.info_caps",
        format!("{:?}", d.info_capability_ids().at(step)?),
    );
    r.note("name.unknown", grp(c.open_device("0000:42:00.0")));
    let token = format!(
        "{} vf_token=00000000-0000-0000-0000-000000000000",
        env.devices()[0]
    );
    r.note("name.vf_token", grp(c.open_device(&token)));
    r.note("name.second_fd", grp(c.open_device(&env.devices()[0])));
    let err = match c.release_groups() {
        Ok(_) => {
            // iommufd's VFIO compatibility container lets a group leave
            // with a device open (Linux 6.12 drivers/vfio/group.c,
            // vfio_group_ioctl_unset_container counts container users
            // only); the device stays attached to its IOAS and answers.
            r.note("release.with_open_device", "ok");
            r.note(
                "release.device_after",
                format!("{:#x}", bar0.read_u32(0).at("BAR0 after release")?),
            );
            return Ok(());
        }
        Err(err) => err,
    };
    r.note("release.with_open_device", grp::<()>(Err(err.error)));
    drop(bar0);
    drop(d);
    r.note(
        "release.after_close",
        grp(err.container.release_groups().map_err(|e| e.error)),
    );
    Ok(())
}

/// The first IOVA after the last of `ranges` (`none` when there are none):
/// the probe "past the IOMMU's aperture".
pub fn past_ranges(ranges: &[IovaRange], none: u64) -> u64 {
    ranges.last().map_or(none, |x| x.end.saturating_add(1))
}

fn dma_scenarios<M: DmaModel>(env: &dyn Env, r: &mut Record) -> Result<(), Failure> {
    // Declared before the container, so dropped after it: if `unmap_all`
    // below fails, the container's release removes the raw mapping of `a`
    // before `a` is freed.
    let a = DmaBuffer::new(4096).at("allocate a buffer")?;
    let (c, d) = open_model::<M>(env, 0)?;
    let info = c.iommu_info().at("IOMMU info")?;
    r.note("iommu.page_sizes", format!("{:#x}", info.page_sizes));
    let ranges: Vec<String> = info
        .iova_ranges
        .iter()
        .map(|x| format!("{:#x}..={:#x}", x.start, x.end))
        .collect();
    r.note("iommu.ranges", ranges.join(" "));
    r.note("iommu.dma_avail", format!("{:?}", info.dma_avail));
    r.note("iommu.migration", format!("{:x?}", info.migration));
    let buf = DmaBuffer::new(8192).at("allocate a buffer")?;
    r.note(
        "map.unaligned",
        dma(c.map(&buf, 0x1000_0800, DmaAccess::ReadWrite)),
    );
    r.note(
        "map.msi_window",
        dma(c.map(&buf, env.msi_window(), DmaAccess::ReadWrite)),
    );
    let raw = |vaddr: usize, size: u64, iova: u64| {
        // SAFETY: each of these is refused by the kernel (recorded and
        // compared), so the device never gains access to the memory.
        let r = unsafe { c.map_raw(vaddr as *mut u8, size, iova, DmaAccess::ReadWrite) };
        if r.is_ok() {
            let _ = c.unmap_raw(iova, size);
        }
        dma(r)
    };
    r.note("raw.msi_window", raw(buf.addr(), 8192, env.msi_window()));
    // Just past the last usable IOVA range (VT-d: 0x80_0000_0000, 39 bits;
    // QEMU's SMMUv3: 1 << 48).
    let past = past_ranges(&info.iova_ranges, 0x80_0000_0000);
    r.note("raw.past_ranges", raw(buf.addr(), 4096, past));
    r.note("raw.iova_unaligned", raw(buf.addr(), 4096, 0x10_0100));
    r.note("raw.size_unaligned", raw(buf.addr(), 0x800, 0x10_0000));
    r.note(
        "raw.vaddr_unaligned",
        raw(buf.addr() + 0x10, 4096, 0x10_0000),
    );
    r.note("raw.size_zero", raw(buf.addr(), 0, 0x10_0000));
    // The page above page zero, below `vm.mmap_min_addr`: never mapped. (A
    // freed buffer's address is not safe to use: a parallel test's
    // allocation can land on it before the ioctl.)
    r.note("raw.unmapped_vaddr", raw(0x1000, 4096, 0x10_0000));
    {
        let step = "overlapping mappings";
        let m = c.map(&buf, 0x50_0000, DmaAccess::ReadWrite).at(step)?;
        let other = DmaBuffer::new(4096).at(step)?;
        r.note(
            "map.overlap",
            dma(c.map(&other, 0x50_1000, DmaAccess::ReadWrite)),
        );
        r.note(
            "map.avail_with_one",
            format!("{:?}", c.iommu_info().at(step)?.dma_avail),
        );
        // Bisecting unmaps: v2 refuses, v1 unmaps the whole mapping when the
        // range covers its first IOVA, nothing when it starts inside.
        r.note(
            "unmap.second_page",
            unmapped(c.unmap_raw(0x50_1000, 0x1000)),
        );
        r.note("unmap.first_page", unmapped(c.unmap_raw(0x50_0000, 0x1000)));
        r.note("unmap.rest", unmapped(c.unmap_raw(0x50_0000, 0x2000)));
        // Nothing left to unmap: the kernel answers 0 bytes.
        m.unmap().at(step)?;
    }
    // A DMA round trip, then a DMA to the unmapped IOVA.
    let step = "DMA round trip";
    d.set_bus_master(true).at(step)?;
    let data: Vec<u8> = (0..256u32).map(|i| (i * 7 + 1) as u8).collect();
    let b2 = DmaBuffer::new(4096).at(step)?;
    b2.write(0, &data).at(step)?;
    let iova = {
        let m = c.map(&b2, 0x20_0000, DmaAccess::ReadWrite).at(step)?;
        edu_dma(env, &d, m.iova(), EDU_BUF, 256, 0)?;
        edu_dma(env, &d, EDU_BUF, m.iova() + 2048, 256, 2)?;
        let mut back = vec![0u8; 256];
        b2.read(2048, &mut back).at(step)?;
        r.note("dma.round_trip", back == data);
        let iova = m.iova();
        m.unmap().at(step)?;
        iova
    };
    {
        let step = "DMA completion";
        let m = c.map(&b2, 0x20_0000, DmaAccess::ReadWrite).at(step)?;
        let e = eventfd();
        d.set_irq_eventfd(PciIrq::Msi as u32, 0, e.as_fd())
            .at(step)?;
        edu_dma(env, &d, m.iova(), EDU_BUF, 64, 4)?;
        r.note("dma.completion_msi", fired(&e, env.timeout()));
        let bar0 = Bar0::new(d.region(0).at(step)?, env);
        r.note(
            "dma.completion_status",
            format!("{:#x}", bar0.read_u32(0x24).at(step)?),
        );
        bar0.write_u32(0x64, u32::MAX).at(step)?;
        d.disable_irq(PciIrq::Msi as u32).at(step)?;
        d.set_bus_master(false).at(step)?;
        b2.fill(0x5a);
        edu_dma(env, &d, EDU_BUF, m.iova(), 256, 2)?;
        let mut after = vec![0u8; 4096];
        b2.read(0, &mut after).at(step)?;
        r.note(
            "dma.without_master_untouched",
            after.iter().all(|&b| b == 0x5a),
        );
        d.set_bus_master(true).at(step)?;
        m.unmap().at(step)?;
    }
    let step = "DMA after unmap";
    b2.fill(0xaa);
    edu_dma(env, &d, EDU_BUF, iova, 256, 2)?;
    let mut after = vec![0u8; 4096];
    b2.read(0, &mut after).at(step)?;
    r.note(
        "dma.after_unmap_untouched",
        after.iter().all(|&b| b == 0xaa),
    );
    d.set_bus_master(false).at(step)?;
    let mut c = c;
    drop(d);
    // A second group joins the container that has its model and mappings;
    // its device reaches the container's mappings too.
    let g = env
        .open_group_of(&env.devices()[1])
        .at("open the second group")?;
    attach_more("attach the second group", &mut c, g)?;
    {
        let step = "DMA by the second group's device";
        let d2 = c.open_device(&env.devices()[1]).at(step)?;
        d2.set_bus_master(true).at(step)?;
        b2.write(0, &data).at(step)?;
        let m = c.map(&b2, 0x70_0000, DmaAccess::ReadWrite).at(step)?;
        edu_dma(env, &d2, m.iova(), EDU_BUF, 256, 0)?;
        edu_dma(env, &d2, EDU_BUF, m.iova() + 1024, 256, 2)?;
        let mut back = vec![0u8; 256];
        b2.read(1024, &mut back).at(step)?;
        r.note("dma.second_group_round_trip", back == data);
        d2.set_bus_master(false).at(step)?;
        m.unmap().at(step)?;
    }
    // SAFETY: unmap_all below removes the mapping before `a` is dropped; if
    // it fails, dropping `c` (before `a`) does.
    unsafe { c.map_raw(a.addr() as *mut u8, 4096, 0x60_0000, DmaAccess::ReadWrite) }
        .at("raw mapping")?;
    r.note("unmap_all", unmapped(c.unmap_all()));
    r.note(
        "unmap_all.avail",
        format!("{:?}", c.iommu_info().at("IOMMU info")?.dma_avail),
    );
    Ok(())
}

/// Compares a simulator record with the real kernel's; returns the
/// differences not listed in [`DEVIATIONS`].
pub fn compare(config: &str, real: &[String], sim: &[String]) -> Vec<String> {
    let parse = |lines: &[String]| -> Vec<(String, String)> {
        lines
            .iter()
            .filter_map(|l| l.strip_prefix(config)?.strip_prefix(' '))
            .filter_map(|l| {
                let (k, v) = l.split_once(" = ")?;
                Some((k.to_owned(), v.to_owned()))
            })
            .collect()
    };
    let (real, sim) = (parse(real), parse(sim));
    let mut out = Vec::new();
    for (k, v) in &real {
        let allowed = DEVIATIONS.iter().any(|(d, _)| d == k)
            || (cfg!(target_pointer_width = "32") && WIDE_ONLY.iter().any(|(d, _)| d == k));
        match sim.iter().find(|(sk, _)| sk == k) {
            Some((_, sv)) if sv == v => {}
            Some((_, sv)) if !allowed => out.push(format!("{config} {k}: real {v}, sim {sv}")),
            None if !allowed => out.push(format!("{config} {k}: real {v}, sim has none")),
            _ => {}
        }
    }
    for (k, v) in &sim {
        if !real.iter().any(|(rk, _)| rk == k) {
            out.push(format!("{config} {k}: sim {v}, real has none"));
        }
    }
    out
}
