//! The simulated kernel: VFIO without `/dev/vfio`.
//!
//! A [`Simulator`] is an in-process model of Linux 6.12's VFIO: the
//! container, IOMMU groups (viable or not, no-IOMMU or not, several devices
//! each), the type1/type1v2 and no-IOMMU drivers, iommufd (`/dev/iommu`)
//! with the VFIO device cdev ([`Simulator::open_iommufd`],
//! [`Simulator::open_cdev`]), and vfio-pci devices with QEMU's `edu` device
//! behind them. It hands out the crate's ordinary
//! [`Container`], [`Group`] and [`Device`](crate::Device) types: the typed
//! API has one code path, and only the seam under it (`kernel.rs`) knows
//! which kernel answers. The simulator receives the very request codes and
//! argument bytes the real kernel would, after the same checks, and answers
//! with the real kernel's errno values.
//!
//! Every simulated object is a real fd (the write end of a pipe), so
//! `AsFd`, `try_clone` and closing behave as usual; closing every copy of
//! an fd releases the object, as in the kernel.
//!
//! ```
//! use typed_vfio::sim::{SimDevice, SimGroup, Simulator};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let sim = Simulator::builder()
//!     .group(SimGroup::new(7).device(SimDevice::edu("0000:03:00.0")))
//!     .build()?;
//! let group = sim.open_group(7)?;
//! assert!(group.status()?.viable);
//! let container = sim.open_container()?.attach(group)?;
//! # drop(container);
//! # Ok(())
//! # }
//! ```
//!
//! ## Fidelity
//!
//! The scenario suite of `tests/scenarios/` runs on the real Linux 6.12
//! kernel in the guest rig (type1, type1v2, no-IOMMU, iommufd) and on this simulator
//! (`tests/sim_diff.rs`); the records agree errno for errno and value for
//! value, except for the deviations listed below as differences.
//!
//! ## Known deviations from the real kernel
//!
//! - BAR0 is reported without `VFIO_REGION_INFO_FLAG_MMAP` (the one
//!   difference the differential check allows): a process cannot trap its
//!   own loads and stores, so MMIO goes through `pread`/`pwrite` (the real
//!   edu's BAR0 is mmap-able).
//! - DMA and the factorial unit complete at once (QEMU's edu takes ~100 ms
//!   of timer time), on the thread that writes the command register: the
//!   device's writes into a [`DmaBuffer`](crate::DmaBuffer) happen inside
//!   that `pwrite`. They are byte-sized atomic stores (its reads atomic
//!   loads), as every access the crate makes to DMA memory is, so another
//!   thread reading or writing the buffer meanwhile sees bytes of either
//!   side but never makes a data race (`tests/dma_race.rs`, under Miri and
//!   ThreadSanitizer in CI). Memory mapped with the `unsafe`
//!   [`map_raw`](crate::Container::map_raw) is reached the same way.
//! - Groups may carry reserved IOVA regions ([`SimGroup::reserved`]), as an
//!   SMMU's MSI window is one: joining a type1 container removes them from
//!   the usable ranges, or fails with `EINVAL` when a mapping overlaps one.
//! - A closed object is released at the simulator's next call, not at
//!   `close(2)`: until then the simulator still holds its own end of it.
//! - A DMA outside edu's 4 KiB buffer is recorded as a fault and skipped
//!   (QEMU 7.2 aborts the whole VM).
//! - No-IOMMU DMA targets physical addresses, which the simulator does not
//!   model: such a DMA is recorded as a [`DmaFaultReason::NoIommu`] fault.
//! - Pinning ignores `RLIMIT_MEMLOCK` and page permissions (only unmapped
//!   memory fails, with `EFAULT`); dirty-page tracking, `VFIO_DMA_UNMAP_FLAG_VADDR`
//!   invalidation and INTx unmask-by-eventfd are accepted but not modelled.
//! - `VFIO_IOMMU_DIRTY_PAGES` and `VFIO_DEVICE_IOEVENTFD` answer `ENOTTY`.
//! - iommufd models one IOMMU: QEMU's Intel VT-d as Linux 6.12 drives it (a
//!   39-bit aperture, 4 KiB pages, its capability registers in
//!   `IOMMU_GET_HW_INFO`, no dirty tracking and no nesting: those HWPT
//!   flags answer `EOPNOTSUPP`, as there). Every device's reserved regions
//!   are the x86 MSI window and its group's. Pinning charges no rlimit, and
//!   the process may set `IOMMU_OPTION_RLIMIT_MODE` (as root can). Access
//!   objects (emulated devices), fault queues, nested HWPTs and PASIDs are
//!   not modelled (`ENOTTY` or `EOPNOTSUPP`).
//!
//! ## The PAMU ("type2") platform
//!
//! [`SimBuilder::pamu`] makes the machine a QorIQ SoC whose only IOMMU
//! driver is the Freescale PAMU driver of the SDK kernels, modelled from
//! the shipped ABI and behaviour (`shared/type2.md`) in a [`PamuMode::Strict`]
//! or a [`PamuMode::Sdk`] (errors swallowed) flavour. No such hardware is in
//! the rig, so unlike type1 this model is not checked differentially; where
//! the shipped behaviour is unknown or unobservable it decides as follows:
//!
//! - physical memory is not simulated: `MAP_DMA` only checks that the
//!   process memory is there (`EFAULT` otherwise) and trusts it to be
//!   contiguous per window; the crate's [`ContiguousBuffer`](crate::ContiguousBuffer)
//!   check is what enforces contiguity here;
//! - the device at position `i` of the machine (description order) signals
//!   MSIs through bank `i % banks`; enabling MSI on a device of a PAMU
//!   container fails with `EINVAL` unless that bank's doorbell is in some
//!   window (whether or not the domain is enabled);
//! - a window holds one thing: a bank mapped into a window that holds a DMA
//!   mapping or another bank fails with `EBUSY` (and a bank mapped twice with
//!   `EEXIST`), swallowed in SDK mode;
//! - `UNMAP_DMA` removes the mappings wholly inside the range (no splitting)
//!   and reports their size;
//! - `GET_ATTR(PAMU_STASH)` before a stash target was set fails with `EINVAL`;
//!   a stash cache level outside L1..=L3 is refused like any bad `SET_ATTR`;
//! - an injected fault ([`Simulator::inject_fault`]) on `SET_ATTR`,
//!   `MAP_MSI_BANK` or `UNMAP_MSI_BANK` is swallowed in SDK mode too (the call
//!   returns 0 and does nothing), as every error of those calls was.

mod edu;
mod iommu;
mod iommufd;
#[allow(unsafe_code)]
mod machine;
mod migration;
mod nvme;
#[allow(unsafe_code)]
mod os;
mod pamu;
mod pci;

pub use pamu::PamuMode;

use std::fmt;
use std::os::fd::BorrowedFd;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, Weak};

use crate::container::{Container, Unset};
use crate::error::{ContainerError, Errno, GroupError};
use crate::group::{Group, GroupId};
use crate::kernel::Kernel;

pub(crate) use machine::Machine;

/// A simulated PCI device bound to vfio-pci: QEMU's `edu`, or a small NVMe
/// controller ([`SimDevice::nvme`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SimDevice {
    address: String,
    reset: bool,
    /// `VFIO_MIGRATION_*` flags, for a migratable device.
    migration: Option<u32>,
    /// An NVMe controller instead of the edu.
    nvme: Option<NvmeSpec>,
}

/// What [`SimDevice::nvme`] and its options describe.
#[derive(Clone, Debug, PartialEq, Eq)]
struct NvmeSpec {
    blocks: u64,
    resizable: bool,
    available: u32,
    hostile: Option<Vec<u8>>,
}

impl SimDevice {
    /// An edu device at a PCI address (`0000:01:00.0`), behind its own root
    /// port so that it can be reset (`VFIO_DEVICE_RESET`, hot reset).
    pub fn edu(address: &str) -> Self {
        SimDevice {
            address: address.to_owned(),
            reset: true,
            migration: None,
            nvme: None,
        }
    }

    /// An NVMe controller at a PCI address, as QEMU's `nvme` device presents
    /// itself (1b36:0010): NVMe 1.4 registers in a 16 KiB BAR0, an admin
    /// queue and up to 16 I/O queue pairs of up to 1024 entries, Identify
    /// (controller, namespace 1, active namespace list), Number of Queues,
    /// Read/Write/Flush with PRP lists and 128 KiB transfers at most, on
    /// one namespace of 2048 zeroed 512-byte blocks (1 MiB). MSI-X has 17
    /// vectors, all allocatable, and cannot grow while enabled (NORESIZE,
    /// as on platforms without dynamic MSI-X: [`msix_resizable`]).
    /// Commands run when their doorbell is written.
    ///
    /// [`msix_resizable`]: Self::msix_resizable
    pub fn nvme(address: &str) -> Self {
        SimDevice {
            nvme: Some(NvmeSpec {
                blocks: 2048,
                resizable: false,
                available: 17,
                hostile: None,
            }),
            ..Self::edu(address)
        }
    }

    /// An NVMe controller's namespace size, in 512-byte blocks (at most
    /// 2^20: 512 MiB of the simulator's memory).
    pub fn blocks(mut self, blocks: u64) -> Self {
        if let Some(n) = &mut self.nvme {
            n.blocks = blocks.min(1 << 20);
        }
        self
    }

    /// Whether the NVMe controller's MSI-X can grow while enabled (the
    /// kernel then reports no `VFIO_IRQ_INFO_NORESIZE`: dynamic MSI-X).
    pub fn msix_resizable(mut self, resizable: bool) -> Self {
        if let Some(n) = &mut self.nvme {
            n.resizable = resizable;
        }
        self
    }

    /// How many MSI-X vectors the platform can allocate for the NVMe
    /// controller (default all 17): enabling more makes vfio-pci enable
    /// nothing and answer with this count.
    pub fn msix_available(mut self, vectors: u32) -> Self {
        if let Some(n) = &mut self.nvme {
            n.available = vectors;
        }
        self
    }

    /// Makes the NVMe controller hostile, for fuzzing a driver: `script`'s
    /// first eight bytes are xored into CAP, and the rest, one byte per
    /// event, corrupt the Identify data (offset/value pairs) and each
    /// completion entry (its command id, status, SQ head or phase) as it is
    /// posted.
    pub fn hostile(mut self, script: Vec<u8>) -> Self {
        if let Some(n) = &mut self.nvme {
            n.hostile = Some(script);
        }
        self
    }

    /// Makes the device migratable (migration v2: STOP_COPY, and RUNNING_P2P
    /// with `p2p`, PRE_COPY with `pre_copy`): its driver saves and restores
    /// edu's registers and DMA buffer through the data fd. The simulator's
    /// stream format is its own; PRE_COPY carries the DMA buffer, STOP_COPY
    /// the registers; a resume stream over 64 KiB is refused (`ENOMEM`).
    pub fn migratable(mut self, p2p: bool, pre_copy: bool) -> Self {
        let mut flags = crate::sys::VFIO_MIGRATION_STOP_COPY;
        if p2p {
            flags |= crate::sys::VFIO_MIGRATION_P2P;
        }
        if pre_copy {
            flags |= crate::sys::VFIO_MIGRATION_PRE_COPY;
        }
        self.migration = Some(flags);
        self
    }

    /// Whether the device can be reset. Without it (an edu on QEMU's root
    /// bus), `VFIO_DEVICE_RESET` fails with `EINVAL` and hot-reset info
    /// with `ENODEV`.
    pub fn reset(mut self, works: bool) -> Self {
        self.reset = works;
        self
    }

    /// The device's PCI address (its VFIO name).
    pub fn address(&self) -> &str {
        &self.address
    }
}

/// A simulated IOMMU group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SimGroup {
    number: u32,
    noiommu: bool,
    viable: bool,
    devices: Vec<SimDevice>,
    reserved: Vec<(u64, u64)>,
}

impl SimGroup {
    /// IOMMU group `number` (`/dev/vfio/N`), viable, with no device yet.
    pub fn new(number: u32) -> Self {
        SimGroup {
            number,
            noiommu: false,
            viable: true,
            devices: Vec::new(),
            reserved: Vec::new(),
        }
    }

    /// A no-IOMMU group (`/dev/vfio/noiommu-N`); its presence turns on
    /// `enable_unsafe_noiommu_mode`.
    pub fn noiommu(number: u32) -> Self {
        SimGroup {
            noiommu: true,
            ..SimGroup::new(number)
        }
    }

    /// Whether every device of the group is bound to vfio. A non-viable
    /// group opens, reports no `VIABLE` flag, and cannot join a container
    /// (`EPERM`).
    pub fn viable(mut self, viable: bool) -> Self {
        self.viable = viable;
        self
    }

    /// Adds a reserved IOVA region `start..=end` (inclusive, as sysfs
    /// `reserved_regions` lists them): when the group joins a type1
    /// container, the usable IOVA ranges lose it, and the join fails with
    /// `EINVAL` if a mapping already overlaps it (as on a real IOMMU, e.g.
    /// an SMMU's MSI window). Every group also has the x86 MSI window.
    pub fn reserved(mut self, start: u64, end: u64) -> Self {
        self.reserved.push((start.min(end), start.max(end)));
        self
    }

    /// Adds a device.
    pub fn device(mut self, device: SimDevice) -> Self {
        self.devices.push(device);
        self
    }
}

/// Describes a [`Simulator`].
#[derive(Clone, Debug)]
pub struct SimBuilder {
    groups: Vec<SimGroup>,
    dma_entry_limit: u32,
    pamu: Option<PamuMode>,
    msi_banks: u32,
    pamu_id: u32,
}

/// Errors building or driving a [`Simulator`].
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// Two groups with one number and kind.
    #[error("group {0} is described twice")]
    DuplicateGroup(GroupId),
    /// Two devices with one address.
    #[error("device {0} is described twice")]
    DuplicateDevice(String),
    /// A device address that is not `SSSS:BB:DD.F`.
    #[error("{0:?} is not a PCI address (SSSS:BB:DD.F)")]
    BadAddress(String),
    /// `inject_fault` with a request the simulator does not know.
    #[error("{0:?} is not a request the simulator answers")]
    UnknownRequest(String),
    /// `inject_fault` with call 0 (calls count from 1).
    #[error("calls are counted from 1")]
    ZerothCall,
}

impl Default for SimBuilder {
    fn default() -> Self {
        SimBuilder {
            groups: Vec::new(),
            dma_entry_limit: iommu::DMA_ENTRY_LIMIT,
            pamu: None,
            msi_banks: 2,
            pamu_id: crate::sys::VFIO_FSL_PAMU_IOMMU_SDK,
        }
    }
}

impl SimBuilder {
    /// Adds a group.
    pub fn group(mut self, group: SimGroup) -> Self {
        self.groups.push(group);
        self
    }

    /// The type1 driver's `dma_entry_limit` (default 65535): how many
    /// mappings a container may hold (`DMA_AVAIL` starts here).
    pub fn dma_entry_limit(mut self, limit: u32) -> Self {
        self.dma_entry_limit = limit;
        self
    }

    /// Makes the machine a Freescale QorIQ SoC: its device tree has a PAMU
    /// node (compatible `"fsl,pamu"`), and the PAMU ("type2") driver, in
    /// this `mode`, is its only IOMMU driver (type1 is not offered). It
    /// answers to the SDK 3.8.13 id (2) unless [`pamu_id`](Self::pamu_id)
    /// says otherwise; it has 2 MSI banks unless
    /// [`msi_banks`](Self::msi_banks) says otherwise. Defaults: aperture
    /// [0, 2^36 - 1] (not configured), at most 256 windows.
    pub fn pamu(mut self, mode: PamuMode) -> Self {
        self.pamu = Some(mode);
        self
    }

    /// The number of MSI banks the PAMU platform has (its
    /// `VFIO_IOMMU_PAMU_GET_MSI_BANK_COUNT`). A device at index `i` of the
    /// machine (in description order) signals MSIs through bank `i % n`.
    pub fn msi_banks(mut self, n: u32) -> Self {
        self.msi_banks = n;
        self
    }

    /// The PAMU IOMMU id: [`PamuId::Sdk`](crate::PamuId::Sdk) (2, the
    /// default) or [`PamuId::OpenIl`](crate::PamuId::OpenIl) (7).
    #[cfg(feature = "type2")]
    pub fn pamu_id(mut self, id: crate::PamuId) -> Self {
        self.pamu_id = id as u32;
        self
    }

    /// Builds the simulator.
    pub fn build(self) -> Result<Simulator, SimError> {
        let mut seen_groups = Vec::new();
        let mut seen_devices: Vec<&str> = Vec::new();
        for g in &self.groups {
            let id = GroupId {
                number: g.number,
                noiommu: g.noiommu,
            };
            if seen_groups.contains(&g.number) {
                return Err(SimError::DuplicateGroup(id));
            }
            seen_groups.push(g.number);
            for d in &g.devices {
                if machine::parse_address(&d.address).is_none() {
                    return Err(SimError::BadAddress(d.address.clone()));
                }
                if seen_devices.contains(&d.address.as_str()) {
                    return Err(SimError::DuplicateDevice(d.address.clone()));
                }
                seen_devices.push(&d.address);
            }
        }
        Ok(Simulator::from_valid(&self))
    }
}

/// A DMA the simulated IOMMU (or the device) refused: nothing was
/// transferred for these bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DmaFault {
    /// The device that attempted it.
    pub device: String,
    /// The address (IOVA; the device-buffer address for
    /// [`DmaFaultReason::OutsideDeviceBuffer`]).
    pub address: u64,
    /// Bytes refused.
    pub len: u64,
    /// The device was writing memory (else reading it).
    pub device_writes: bool,
    /// Why.
    pub reason: DmaFaultReason,
}

/// Why a simulated DMA was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DmaFaultReason {
    /// No IOMMU mapping translates the IOVA (a DMAR fault on real hardware).
    Unmapped,
    /// The mapping lacks the needed access (`DeviceReads` for a write, ...).
    NotPermitted,
    /// Bus Master is off in the command register.
    BusMasterOff,
    /// The container has no type1 IOMMU (no-IOMMU mode: physical addresses
    /// are not simulated).
    NoIommu,
    /// The device-side range is outside edu's 4 KiB buffer.
    OutsideDeviceBuffer,
}

/// A live IOMMU mapping of some container of the simulator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SimMapping {
    /// The IOVA.
    pub iova: u64,
    /// Its size.
    pub size: u64,
    /// The process address it maps.
    pub vaddr: u64,
    /// The device may read it.
    pub device_reads: bool,
    /// The device may write it.
    pub device_writes: bool,
    /// `Some(bank)` for a PAMU MSI-bank mapping: `iova..iova + size` is the
    /// window holding the bank's doorbell page, `vaddr` is 0 (the doorbell is
    /// no process memory). `None` for DMA mappings.
    pub msi_bank: Option<u32>,
}

/// A simulated VFIO kernel. Cheap to clone (a handle).
///
/// ```
/// use typed_vfio::{Errno, Type1v2};
/// use typed_vfio::sim::Simulator;
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let sim = Simulator::new(); // groups 1 and 2, an edu in each
/// // The 1st SET_IOMMU from now on fails with ENOMEM.
/// sim.inject_fault("VFIO_SET_IOMMU", 1, Errno::ENOMEM)?;
/// let attached = sim.open_container()?.attach(sim.open_group(1)?)?;
/// let err = attached.set_iommu::<Type1v2>().unwrap_err();
/// assert!(err.to_string().contains("ENOMEM"));
/// // The container came back; the retry succeeds.
/// let container = err.container.set_iommu::<Type1v2>()?;
/// # drop(container);
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct Simulator {
    machine: Arc<Machine>,
}

impl fmt::Debug for Simulator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Simulator").finish_non_exhaustive()
    }
}

impl Default for Simulator {
    fn default() -> Self {
        Self::new()
    }
}

/// Every live simulator, so that an adopted fd (`Container::from_fd`,
/// `Group::from_fd`, `Device::from_fd`) finds its kernel.
static MACHINES: Mutex<Vec<Weak<Machine>>> = Mutex::new(Vec::new());

fn register(machine: &Arc<Machine>) {
    let mut all = MACHINES.lock().unwrap_or_else(|p| p.into_inner());
    all.retain(|w| w.strong_count() > 0);
    all.push(Arc::downgrade(machine));
}

/// The simulator an fd belongs to, if any.
pub(crate) fn owner_of(fd: BorrowedFd<'_>) -> Option<Arc<Machine>> {
    let live: Vec<Arc<Machine>> = {
        let all = MACHINES.lock().unwrap_or_else(|p| p.into_inner());
        all.iter().filter_map(Weak::upgrade).collect()
    };
    live.into_iter().find(|m| m.owns(fd))
}

impl Simulator {
    /// The simulator the guest rig resembles: IOMMU groups 1 and 2, each
    /// with one edu device (`0000:01:00.0`, `0000:02:00.0`) behind its own
    /// root port.
    pub fn new() -> Simulator {
        // Valid by construction: distinct group numbers and addresses.
        Self::from_valid(
            &Self::builder()
                .group(SimGroup::new(1).device(SimDevice::edu("0000:01:00.0")))
                .group(SimGroup::new(2).device(SimDevice::edu("0000:02:00.0"))),
        )
    }

    fn from_valid(builder: &SimBuilder) -> Simulator {
        let machine = Arc::new(Machine::new(builder));
        register(&machine);
        Simulator { machine }
    }

    /// A simulator with no group yet: add them with [`SimBuilder::group`].
    pub fn builder() -> SimBuilder {
        SimBuilder::default()
    }

    fn kernel(&self) -> Kernel {
        Kernel::sim(self.machine.clone())
    }

    /// Opens the simulated `/dev/vfio/vfio`: a [`Container`] on this kernel.
    pub fn open_container(&self) -> Result<Container<Unset>, ContainerError> {
        Container::open_in(self.kernel())
    }

    /// Opens group `number` (`/dev/vfio/N`, or `/dev/vfio/noiommu-N` for a
    /// no-IOMMU group). A group node opens once at a time (`EBUSY`).
    pub fn open_group(&self, number: u32) -> Result<Group, GroupError> {
        let id = self
            .machine
            .lock()
            .group_id_of(number)
            .unwrap_or(GroupId::new(number));
        self.open_group_id(id)
    }

    /// Opens the group with this id.
    pub fn open_group_id(&self, id: GroupId) -> Result<Group, GroupError> {
        Group::open_in(self.kernel(), id)
    }

    /// Every IOMMU group with the PCI addresses of its devices, in the order
    /// they were described: the simulated `/sys/kernel/iommu_groups/*/devices`.
    pub fn groups(&self) -> Vec<(GroupId, Vec<String>)> {
        self.machine.lock().group_list()
    }

    /// The group of a device, by its PCI address (the simulated sysfs
    /// `iommu_group` link).
    pub fn group_of(&self, address: &str) -> Option<GroupId> {
        self.machine.lock().group_of_device(address)
    }

    /// Opens the group of a device by its PCI address (the simulated
    /// [`Group::for_pci_device`]).
    pub fn open_group_of(&self, address: &str) -> Result<Group, GroupError> {
        match self.group_of(address) {
            Some(id) => self.open_group_id(id),
            None => Err(GroupError::Sysfs {
                path: PathBuf::from("/sys/bus/pci/devices")
                    .join(address)
                    .join("iommu_group"),
                kind: std::io::ErrorKind::NotFound,
                errno: Some(Errno::ENOENT),
            }),
        }
    }

    /// Opens the simulated `/dev/iommu`: an [`Iommufd`](crate::iommufd::Iommufd)
    /// on this kernel.
    pub fn open_iommufd(&self) -> Result<crate::iommufd::Iommufd, crate::iommufd::IommufdError> {
        crate::iommufd::Iommufd::open_in(self.kernel())
    }

    /// The cdev node of a device, by its PCI address (the simulated sysfs
    /// `vfio-dev/vfioN`): `/dev/vfio/devices/vfioN`, N its position in the
    /// machine's description. `None` for an unknown device, and for a
    /// device of a no-IOMMU group (Linux 6.12 makes no cdev for those).
    pub fn cdev_path_of(&self, address: &str) -> Option<PathBuf> {
        let s = self.machine.lock();
        let (i, noiommu) = s.device_index(address)?;
        (!noiommu).then(|| PathBuf::from(format!("/dev/vfio/devices/vfio{i}")))
    }

    /// Opens the cdev of a device by its PCI address (the simulated
    /// [`CdevDevice::open_pci`](crate::iommufd::CdevDevice::open_pci)).
    pub fn open_cdev(
        &self,
        address: &str,
    ) -> Result<crate::iommufd::CdevDevice, crate::iommufd::IommufdError> {
        let sysfs = || {
            PathBuf::from("/sys/bus/pci/devices")
                .join(address)
                .join("vfio-dev")
        };
        let Some((i, noiommu)) = self.machine.lock().device_index(address) else {
            return Err(crate::iommufd::IommufdError::Sysfs {
                path: sysfs(),
                what: "no such device".into(),
            });
        };
        if noiommu {
            return Err(crate::iommufd::IommufdError::NoIommu {
                address: address.to_owned(),
            });
        }
        let path = PathBuf::from(format!("/dev/vfio/devices/vfio{i}"));
        crate::iommufd::CdevDevice::open_in(self.kernel(), &path)
    }

    /// Makes the `nth` call (counting from 1, from now) of `request` fail
    /// with `errno`, before the simulated kernel acts on it. `request` is a
    /// request's C name (`"VFIO_SET_IOMMU"`, `"VFIO_IOMMU_MAP_DMA"`, ...) or
    /// `"open"`, `"pread"`, `"pwrite"`. Faults stack: several may be
    /// pending for one request, each counting every call of it from now
    /// (failed calls included), so faults for the 1st and the 2nd call fail
    /// the next two calls; two faults for the same call fail it and the one
    /// after it.
    pub fn inject_fault(&self, request: &str, nth: u64, errno: Errno) -> Result<(), SimError> {
        let name = machine::known_request(request)
            .ok_or_else(|| SimError::UnknownRequest(request.to_owned()))?;
        if nth == 0 {
            return Err(SimError::ZerothCall);
        }
        self.machine.lock().inject(name, nth, errno);
        Ok(())
    }

    /// The simulated device tree's PAMU node: `Some` on a PAMU platform
    /// ([`SimBuilder::pamu`]), checked by the same code as
    /// [`PamuPlatform::detect`](crate::PamuPlatform::detect) checks a real
    /// device tree's `compatible` property.
    #[cfg(feature = "type2")]
    pub fn pamu_platform(&self) -> Result<crate::PamuPlatform, crate::Type2Error> {
        let compatible: &[u8] = if self.machine.lock().has_pamu() {
            b"fsl,pamu-v1.0\0fsl,pamu\0"
        } else {
            b""
        };
        crate::PamuPlatform::from_compatible(compatible, "/sim/device-tree/soc/iommu@20000")
    }

    /// A buffer the simulator treats as physically contiguous in chunks of
    /// `chunk` bytes (a power of two, at least a page): the stand-in for a
    /// huge-page buffer, which the simulator cannot tell from any other
    /// memory. Refused by the PAMU mapping on a real kernel.
    #[cfg(feature = "type2")]
    pub fn contiguous_buffer(
        &self,
        len: usize,
        chunk: u64,
    ) -> Result<crate::ContiguousBuffer, crate::Type2Error> {
        crate::ContiguousBuffer::simulated(len, chunk)
    }

    /// Whether the domain of some PAMU container is enabled (it has a DMA
    /// mapping: the first `MAP_DMA` enables it, the last `UNMAP_DMA`
    /// disables it).
    pub fn pamu_enabled(&self) -> bool {
        self.machine.lock().pamu_enabled()
    }

    /// Drops every pending injected fault.
    pub fn clear_faults(&self) {
        self.machine.lock().clear_faults();
    }

    /// How many times `request` was called (by C name, or `"open"`,
    /// `"pread"`, `"pwrite"`), faulted calls included.
    pub fn calls(&self, request: &str) -> u64 {
        self.machine.lock().calls(request)
    }

    /// Every request the simulator has been called with so far, with how
    /// many times (faulted calls included), sorted by name: the C names of
    /// the ioctls, and `"open"`, `"pread"`, `"pwrite"` — each a name
    /// [`inject_fault`](Self::inject_fault) accepts, so a run can be
    /// replayed with a fault at each of its calls in turn.
    ///
    /// ```
    /// use typed_vfio::sim::Simulator;
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let sim = Simulator::new();
    /// let container = sim.open_container()?;
    /// assert_eq!(
    ///     sim.call_counts(),
    ///     [("VFIO_GET_API_VERSION", 1), ("open", 1)]
    /// );
    /// # drop(container);
    /// # Ok(())
    /// # }
    /// ```
    pub fn call_counts(&self) -> Vec<(&'static str, u64)> {
        self.machine.lock().call_counts()
    }

    /// The DMAs refused so far, oldest first.
    pub fn dma_faults(&self) -> Vec<DmaFault> {
        self.machine.lock().dma_faults.clone()
    }

    /// Returns and forgets the DMAs refused so far.
    pub fn take_dma_faults(&self) -> Vec<DmaFault> {
        std::mem::take(&mut self.machine.lock().dma_faults)
    }

    /// Every live IOMMU mapping, of every container, in IOVA order per
    /// container: DMA mappings and, on a PAMU, the MSI-bank windows
    /// ([`SimMapping::msi_bank`]).
    pub fn mappings(&self) -> Vec<SimMapping> {
        self.machine.lock().mappings()
    }
}
