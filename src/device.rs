//! Devices: info, regions, PCI config space, interrupts, resets.

use std::ffi::c_int;
use std::fmt;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};

use crate::sys::{FromBytes, IntoBytes, SliceBytes};

use crate::abi;
use crate::caps;
use crate::error::DeviceError;
use crate::kernel::{Arg, Kernel, req};
use crate::region::Region;
use crate::sys;

/// What `VFIO_DEVICE_GET_INFO` reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeviceInfo {
    /// Raw `VFIO_DEVICE_FLAGS_*`.
    pub flags: u32,
    /// Number of regions.
    pub num_regions: u32,
    /// Number of IRQ indexes.
    pub num_irqs: u32,
}

impl DeviceInfo {
    /// Decodes `VFIO_DEVICE_GET_INFO`'s fixed struct; untrusted bytes.
    pub(crate) fn parse(buf: &[u8]) -> Result<DeviceInfo, &'static str> {
        let (info, _) =
            sys::vfio_device_info::read_from_prefix(buf).map_err(|_| "device info truncated")?;
        Ok(DeviceInfo {
            flags: info.flags,
            num_regions: info.num_regions,
            num_irqs: info.num_irqs,
        })
    }

    /// The capability ids of a `VFIO_DEVICE_GET_INFO` answer with room for
    /// the chain; empty when the device has none. Untrusted bytes.
    pub(crate) fn parse_capability_ids(buf: &[u8]) -> Result<Vec<u16>, &'static str> {
        let (info, _) = sys::vfio_device_info::read_from_prefix(buf).map_err(|_| "truncated")?;
        if info.flags & sys::VFIO_DEVICE_FLAGS_CAPS == 0 {
            return Ok(Vec::new());
        }
        let len = (info.argsz as usize).min(buf.len());
        caps::chain(
            &buf[..len],
            info.cap_offset,
            size_of::<sys::vfio_device_info>(),
        )
        .map(|c| c.map(|c| c.id))
        .collect()
    }

    /// A PCI device (`VFIO_DEVICE_FLAGS_PCI`).
    pub fn is_pci(&self) -> bool {
        self.flags & sys::VFIO_DEVICE_FLAGS_PCI != 0
    }
    /// A platform device (`VFIO_DEVICE_FLAGS_PLATFORM`).
    pub fn is_platform(&self) -> bool {
        self.flags & sys::VFIO_DEVICE_FLAGS_PLATFORM != 0
    }
    /// The device supports `VFIO_DEVICE_RESET`.
    pub fn can_reset(&self) -> bool {
        self.flags & sys::VFIO_DEVICE_FLAGS_RESET != 0
    }
}

/// What `VFIO_DEVICE_GET_IRQ_INFO` reports for one IRQ index.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IrqInfo {
    /// The IRQ index.
    pub index: u32,
    /// Raw `VFIO_IRQ_INFO_*`.
    pub flags: u32,
    /// Number of vectors.
    pub count: u32,
}

impl IrqInfo {
    /// Decodes `VFIO_DEVICE_GET_IRQ_INFO`'s answer for IRQ `index`; untrusted
    /// bytes.
    pub(crate) fn parse(index: u32, buf: &[u8]) -> Result<IrqInfo, &'static str> {
        let (info, _) =
            sys::vfio_irq_info::read_from_prefix(buf).map_err(|_| "IRQ info truncated")?;
        Ok(IrqInfo {
            index,
            flags: info.flags,
            count: info.count,
        })
    }

    /// Signals through eventfds.
    pub fn eventfd(&self) -> bool {
        self.flags & sys::VFIO_IRQ_INFO_EVENTFD != 0
    }
    /// Supports mask/unmask.
    pub fn maskable(&self) -> bool {
        self.flags & sys::VFIO_IRQ_INFO_MASKABLE != 0
    }
    /// Masked by the kernel on delivery (level-triggered INTx): unmask after
    /// servicing.
    pub fn automasked(&self) -> bool {
        self.flags & sys::VFIO_IRQ_INFO_AUTOMASKED != 0
    }
    /// The vector count cannot change without a full disable.
    pub fn noresize(&self) -> bool {
        self.flags & sys::VFIO_IRQ_INFO_NORESIZE != 0
    }
}

/// The PCI IRQ indexes (`VFIO_PCI_*_IRQ_INDEX`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum PciIrq {
    /// Legacy INTx.
    Intx = sys::VFIO_PCI_INTX_IRQ_INDEX,
    /// MSI.
    Msi = sys::VFIO_PCI_MSI_IRQ_INDEX,
    /// MSI-X.
    Msix = sys::VFIO_PCI_MSIX_IRQ_INDEX,
    /// AER error reporting.
    Err = sys::VFIO_PCI_ERR_IRQ_INDEX,
    /// Device request (the kernel asks for the device back).
    Req = sys::VFIO_PCI_REQ_IRQ_INDEX,
}

/// A device the PCI hot reset of this device would also reset.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HotResetDevice {
    /// Its IOMMU group number (or device id on the cdev path).
    pub group_id: u32,
    /// PCI segment.
    pub segment: u16,
    /// PCI bus.
    pub bus: u8,
    /// PCI device/function.
    pub devfn: u8,
}

/// Which operations a `VFIO_DEVICE_FEATURE` supports, from a probe.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FeatureSupport {
    /// `VFIO_DEVICE_FEATURE_GET` works.
    pub get: bool,
    /// `VFIO_DEVICE_FEATURE_SET` works.
    pub set: bool,
}

/// An open VFIO device.
///
/// A device is not tied to the group it came from: it can also be adopted
/// from an fd ([`Device::from_fd`]), e.g. one a privileged launcher opened.
/// Close devices before their container for a clean teardown.
///
/// ```
/// use std::os::fd::AsFd;
/// use nix::sys::eventfd::EventFd;
/// use typed_vfio::{PciIrq, Type1v2, sim::Simulator};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let sim = Simulator::new();
/// let container = sim.open_container()?.attach(sim.open_group(1)?)?.set_iommu::<Type1v2>()?;
/// let device = container.open_device("0000:01:00.0")?;
/// assert!(device.info().is_pci() && device.info().can_reset());
/// assert_eq!(device.pci_config()?.read_u16(0)?, 0x1234); // QEMU's vendor id
///
/// // An MSI (edu's "raise interrupt" register) arrives on an eventfd once
/// // Bus Master is on.
/// let eventfd = EventFd::new()?;
/// device.set_bus_master(true)?;
/// device.set_irq_eventfd(PciIrq::Msi as u32, 0, eventfd.as_fd())?;
/// device.region(0)?.write_u32(0x60, 0x1)?;
/// assert_eq!(eventfd.read()?, 1);
/// device.disable_irq(PciIrq::Msi as u32)?;
/// device.reset()?;
/// # Ok(())
/// # }
/// ```
pub struct Device {
    fd: OwnedFd,
    kernel: Kernel,
    info: DeviceInfo,
    /// A migration handle (`crate::migration`) is live: resets go through it.
    migration_busy: AtomicBool,
    /// An [`Msix`](crate::Msix) handle is live: MSI-X triggers change
    /// through it only.
    msix_owned: AtomicBool,
    /// For a device of a PAMU container: its MSI-bank bookkeeping.
    #[cfg(feature = "type2")]
    msi_gate: Option<crate::type2::MsiGate>,
}

impl fmt::Debug for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Device")
            .field("fd", &self.fd)
            .field("info", &self.info)
            .finish()
    }
}

/// The PCI command register's offset in config space, and its Bus Master bit.
const PCI_COMMAND: u64 = 0x04;
const PCI_COMMAND_MASTER: u16 = 1 << 2;

/// Stack space for `SET_IRQS` arguments; larger ones use the heap.
const IRQ_STACK: usize = 256;

impl Device {
    /// Adopts an already-open device fd and reads its info
    /// (`VFIO_DEVICE_GET_INFO`).
    pub fn from_fd(fd: OwnedFd) -> Result<Device, DeviceError> {
        Self::from_kernel_fd(Kernel::for_fd(fd.as_fd()), fd)
    }

    pub(crate) fn from_kernel_fd(kernel: Kernel, fd: OwnedFd) -> Result<Device, DeviceError> {
        let mut info = sys::vfio_device_info::new_zeroed();
        info.argsz = size_of::<sys::vfio_device_info>() as u32;
        kernel
            .ioctl(
                fd.as_fd(),
                req::VFIO_DEVICE_GET_INFO,
                Arg::InOut(info.as_mut_bytes()),
            )
            .map_err(|errno| DeviceError::Ioctl {
                ioctl: req::VFIO_DEVICE_GET_INFO.name,
                errno,
            })?;
        let info = DeviceInfo::parse(info.as_bytes()).map_err(|what| DeviceError::Malformed {
            ioctl: req::VFIO_DEVICE_GET_INFO.name,
            what,
        })?;
        Ok(Device {
            fd,
            kernel,
            info,
            migration_busy: AtomicBool::new(false),
            msix_owned: AtomicBool::new(false),
            #[cfg(feature = "type2")]
            msi_gate: None,
        })
    }

    /// The info read when the device was opened (`VFIO_DEVICE_GET_INFO`).
    #[doc(alias = "VFIO_DEVICE_GET_INFO")]
    pub fn info(&self) -> DeviceInfo {
        self.info
    }

    /// The device fd, borrowed.
    #[inline]
    pub fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    pub(crate) fn kernel(&self) -> &Kernel {
        &self.kernel
    }

    /// Ties the device to its PAMU container's MSI banks.
    #[cfg(feature = "type2")]
    pub(crate) fn set_msi_gate(&mut self, gate: crate::type2::MsiGate) {
        self.msi_gate = Some(gate);
    }

    /// A region by index, with its info and capabilities
    /// (`VFIO_DEVICE_GET_REGION_INFO`).
    #[doc(alias = "VFIO_DEVICE_GET_REGION_INFO")]
    pub fn region(&self, index: u32) -> Result<Region<'_>, DeviceError> {
        if index >= self.info.num_regions {
            return Err(DeviceError::NoSuchRegion {
                index,
                count: self.info.num_regions,
            });
        }
        let info = crate::region::query(&self.kernel, self.fd.as_fd(), index)?;
        Ok(Region::new(self, info))
    }

    /// The PCI configuration space region (`VFIO_PCI_CONFIG_REGION_INDEX`).
    pub fn pci_config(&self) -> Result<Region<'_>, DeviceError> {
        self.region(sys::VFIO_PCI_CONFIG_REGION_INDEX)
    }

    /// The PCI command register (config offset 0x04).
    pub fn pci_command(&self) -> Result<u16, DeviceError> {
        self.pci_config()?.read_u16(PCI_COMMAND)
    }

    /// Turns Bus Master on or off in the PCI command register (read, modify,
    /// write through the config region). vfio-pci leaves it off: a device
    /// needs it for DMA, and MSI (a memory write by the device) needs it too.
    pub fn set_bus_master(&self, on: bool) -> Result<(), DeviceError> {
        let config = self.pci_config()?;
        let command = config.read_u16(PCI_COMMAND)?;
        let wanted = if on {
            command | PCI_COMMAND_MASTER
        } else {
            command & !PCI_COMMAND_MASTER
        };
        config.write_u16(PCI_COMMAND, wanted)
    }

    /// One IRQ index's flags and vector count (`VFIO_DEVICE_GET_IRQ_INFO`).
    #[doc(alias = "VFIO_DEVICE_GET_IRQ_INFO")]
    pub fn irq_info(&self, index: u32) -> Result<IrqInfo, DeviceError> {
        self.check_irq_index(index)?;
        let mut info = sys::vfio_irq_info::new_zeroed();
        info.argsz = size_of::<sys::vfio_irq_info>() as u32;
        info.index = index;
        self.kernel
            .ioctl(
                self.fd.as_fd(),
                req::VFIO_DEVICE_GET_IRQ_INFO,
                Arg::InOut(info.as_mut_bytes()),
            )
            .map_err(|errno| DeviceError::IndexedIoctl {
                ioctl: req::VFIO_DEVICE_GET_IRQ_INFO.name,
                index,
                errno,
            })?;
        IrqInfo::parse(index, info.as_bytes()).map_err(|what| DeviceError::Malformed {
            ioctl: req::VFIO_DEVICE_GET_IRQ_INFO.name,
            what,
        })
    }

    #[inline]
    fn check_irq_index(&self, index: u32) -> Result<(), DeviceError> {
        if index >= self.info.num_irqs {
            Err(DeviceError::NoSuchIrq {
                index,
                count: self.info.num_irqs,
            })
        } else {
            Ok(())
        }
    }

    /// `VFIO_DEVICE_SET_IRQS` with `action`, vectors from `start`, and
    /// `data` (see [`encode_irq_set`]; no heap allocation when the argument
    /// fits [`IRQ_STACK`]).
    fn set_irqs(
        &self,
        index: u32,
        action: u32,
        start: u32,
        data: IrqData<'_>,
    ) -> Result<c_int, DeviceError> {
        self.check_irq_index(index)?;
        let total = irq_set_len(data);
        let mut stack = [0u8; IRQ_STACK];
        let mut heap = Vec::new();
        let buf: &mut [u8] = if total <= IRQ_STACK {
            &mut stack[..total]
        } else {
            heap.resize(total, 0);
            &mut heap
        };
        encode_irq_set(buf, index, action, start, data).map_err(malformed_set)?;
        self.issue_set_irqs(index, buf)
    }

    /// A header-only `VFIO_DEVICE_SET_IRQS` (`DATA_NONE`: trigger, mask,
    /// unmask, disable; the hot path): the argument is the 20-byte header
    /// itself, so there is no buffer to size, clear or copy into.
    #[inline]
    fn header_only(
        &self,
        index: u32,
        action: u32,
        start: u32,
        count: u32,
    ) -> Result<(), DeviceError> {
        self.check_irq_index(index)?;
        let head =
            irq_set_header(index, action, start, IrqData::None(count)).map_err(malformed_set)?;
        self.issue_set_irqs(index, head.as_bytes()).map(drop)
    }

    #[inline]
    fn issue_set_irqs(&self, index: u32, bytes: &[u8]) -> Result<c_int, DeviceError> {
        self.kernel
            .ioctl(self.fd.as_fd(), req::VFIO_DEVICE_SET_IRQS, Arg::In(bytes))
            .map_err(|errno| DeviceError::IndexedIoctl {
                ioctl: req::VFIO_DEVICE_SET_IRQS.name,
                index,
                errno,
            })
    }

    /// Routes vectors `start..start + fds.len()` of IRQ `index` to eventfds
    /// (`DATA_EVENTFD | ACTION_TRIGGER`). `None` de-assigns that vector.
    /// The kernel takes its own reference: closing an eventfd does not
    /// disarm it; call [`disable_irq`](Self::disable_irq).
    ///
    /// Enabling MSI or MSI-X allocates vectors `0..start + fds.len()`; when
    /// the platform has fewer, vfio-pci enables nothing and says how many it
    /// has: [`DeviceError::IrqVectorsShort`]. For MSI-X, [`Msix`] keeps
    /// track of the allocated set (and refuses a raw change here while it
    /// lives: [`DeviceError::IrqOwned`]).
    ///
    /// [`Msix`]: crate::Msix
    #[doc(alias = "VFIO_DEVICE_SET_IRQS")]
    pub fn set_irq_eventfds(
        &self,
        index: u32,
        start: u32,
        fds: &[Option<BorrowedFd<'_>>],
    ) -> Result<(), DeviceError> {
        self.refuse_owned(index)?;
        self.arm_eventfds(index, start, fds)
    }

    /// [`set_irq_eventfds`](Self::set_irq_eventfds) without the ownership
    /// check (for the [`Msix`](crate::Msix) handle itself).
    pub(crate) fn arm_eventfds(
        &self,
        index: u32,
        start: u32,
        fds: &[Option<BorrowedFd<'_>>],
    ) -> Result<(), DeviceError> {
        #[cfg(feature = "type2")]
        if let Some(gate) = &self.msi_gate {
            gate.check(index)?;
        }
        const MAX: usize = (IRQ_STACK - size_of::<abi::IrqSet>()) / 4;
        let mut stack = [0i32; MAX];
        let mut heap = Vec::new();
        let raw: &mut [i32] = if fds.len() <= MAX {
            &mut stack[..fds.len()]
        } else {
            heap.resize(fds.len(), 0);
            &mut heap
        };
        for (slot, fd) in raw.iter_mut().zip(fds) {
            *slot = fd.map_or(-1, |fd| fd.as_raw_fd());
        }
        if u32::try_from(fds.len()).is_err() {
            return Err(DeviceError::IrqRange {
                index,
                start,
                end: start as u64 + fds.len() as u64,
                count: 0,
            });
        }
        let answer = self.set_irqs(
            index,
            sys::VFIO_IRQ_SET_ACTION_TRIGGER,
            start,
            IrqData::EventFds(raw),
        )?;
        // A positive answer is vfio_msi_enable's "this many vectors could
        // have been allocated": nothing was enabled.
        match u32::try_from(answer) {
            Ok(0) | Err(_) => Ok(()),
            Ok(available) => Err(DeviceError::IrqVectorsShort {
                ioctl: req::VFIO_DEVICE_SET_IRQS.name,
                index,
                wanted: start.saturating_add(fds.len() as u32),
                available,
            }),
        }
    }

    fn refuse_owned(&self, index: u32) -> Result<(), DeviceError> {
        if index == sys::VFIO_PCI_MSIX_IRQ_INDEX && self.msix_owned.load(Ordering::Acquire) {
            Err(DeviceError::IrqOwned { index })
        } else {
            Ok(())
        }
    }

    /// Claims MSI-X for an [`Msix`](crate::Msix) handle; false if one lives.
    pub(crate) fn claim_msix(&self) -> bool {
        self.msix_owned
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    /// The MSI-X handle ended.
    pub(crate) fn release_msix(&self) {
        self.msix_owned.store(false, Ordering::Release);
    }

    /// `DATA_NONE | ACTION_TRIGGER` with count 0, without the ownership
    /// check (for the [`Msix`](crate::Msix) handle).
    pub(crate) fn disarm_all(&self, index: u32) -> Result<(), DeviceError> {
        self.header_only(index, sys::VFIO_IRQ_SET_ACTION_TRIGGER, 0, 0)
    }

    /// Routes one vector to an eventfd.
    pub fn set_irq_eventfd(
        &self,
        index: u32,
        vector: u32,
        fd: BorrowedFd<'_>,
    ) -> Result<(), DeviceError> {
        self.set_irq_eventfds(index, vector, &[Some(fd)])
    }

    /// Tears down every trigger of IRQ `index` (`DATA_NONE | ACTION_TRIGGER`,
    /// count 0), disabling MSI/MSI-X/INTx on the device.
    pub fn disable_irq(&self, index: u32) -> Result<(), DeviceError> {
        self.refuse_owned(index)?;
        self.disarm_all(index)
    }

    /// Fires vectors `start..start + count` from user space (loopback test;
    /// `DATA_NONE | ACTION_TRIGGER`).
    #[inline]
    pub fn trigger_irq(&self, index: u32, start: u32, count: u32) -> Result<(), DeviceError> {
        self.header_only(index, sys::VFIO_IRQ_SET_ACTION_TRIGGER, start, count)
    }

    /// Fires the vectors from `start` whose flag is true (`DATA_BOOL |
    /// ACTION_TRIGGER`).
    pub fn trigger_irq_bool(
        &self,
        index: u32,
        start: u32,
        which: &[bool],
    ) -> Result<(), DeviceError> {
        self.bool_action(index, sys::VFIO_IRQ_SET_ACTION_TRIGGER, start, which)
    }

    /// Masks vectors `start..start + count` (`DATA_NONE | ACTION_MASK`).
    ///
    /// vfio-pci masks only an IRQ it has enabled, that is one with an eventfd
    /// trigger set ([`set_irq_eventfd`](Self::set_irq_eventfd)); before that
    /// (or after [`disable_irq`](Self::disable_irq)) it answers `EINVAL`,
    /// reported as [`DeviceError::IrqNotEnabled`]. MSI and MSI-X vectors
    /// cannot be masked through VFIO at all.
    pub fn mask_irq(&self, index: u32, start: u32, count: u32) -> Result<(), DeviceError> {
        self.header_only(index, sys::VFIO_IRQ_SET_ACTION_MASK, start, count)
            .map_err(|e| not_enabled(e, "mask"))
    }

    /// Unmasks vectors `start..start + count` (`DATA_NONE | ACTION_UNMASK`):
    /// after servicing an automasked INTx, or no second interrupt comes.
    ///
    /// As for [`mask_irq`](Self::mask_irq), the IRQ must be enabled with an
    /// eventfd trigger first; otherwise [`DeviceError::IrqNotEnabled`].
    pub fn unmask_irq(&self, index: u32, start: u32, count: u32) -> Result<(), DeviceError> {
        self.header_only(index, sys::VFIO_IRQ_SET_ACTION_UNMASK, start, count)
            .map_err(|e| not_enabled(e, "unmask"))
    }

    /// Unmasks INTx from an eventfd (`DATA_EVENTFD | ACTION_UNMASK`): each
    /// signal of `fd` unmasks the IRQ in the kernel, as
    /// [`unmask_irq`](Self::unmask_irq) would, without the ioctl (an
    /// irqfd's resample path). `None` removes it. vfio-pci has it for INTx
    /// only, once enabled ([`DeviceError::IrqNotEnabled`] otherwise).
    pub fn set_irq_unmask_eventfd(
        &self,
        index: u32,
        vector: u32,
        fd: Option<BorrowedFd<'_>>,
    ) -> Result<(), DeviceError> {
        self.check_irq_index(index)?;
        let raw = [fd.map_or(-1, |fd| fd.as_raw_fd())];
        self.set_irqs(
            index,
            sys::VFIO_IRQ_SET_ACTION_UNMASK,
            vector,
            IrqData::EventFds(&raw),
        )
        .map(drop)
        .map_err(|e| not_enabled(e, "unmask"))
    }

    /// `VFIO_DEVICE_FEATURE_LOW_POWER_ENTRY`: lets the device go to a low
    /// power state (D3) while user space does not use it; any access brings
    /// it back. [`low_power_exit`](Self::low_power_exit) ends it.
    #[doc(alias = "VFIO_DEVICE_FEATURE_LOW_POWER_ENTRY")]
    pub fn low_power_entry(&self) -> Result<(), DeviceError> {
        self.set_feature_without_data(sys::VFIO_DEVICE_FEATURE_LOW_POWER_ENTRY)
    }

    /// `VFIO_DEVICE_FEATURE_LOW_POWER_EXIT`.
    #[doc(alias = "VFIO_DEVICE_FEATURE_LOW_POWER_EXIT")]
    pub fn low_power_exit(&self) -> Result<(), DeviceError> {
        self.set_feature_without_data(sys::VFIO_DEVICE_FEATURE_LOW_POWER_EXIT)
    }

    fn set_feature_without_data(&self, feature: u32) -> Result<(), DeviceError> {
        let mut arg = abi::DeviceFeature {
            argsz: size_of::<abi::DeviceFeature>() as u32,
            flags: sys::VFIO_DEVICE_FEATURE_SET | feature,
        };
        self.kernel
            .ioctl(
                self.fd.as_fd(),
                req::VFIO_DEVICE_FEATURE,
                Arg::InOut(arg.as_mut_bytes()),
            )
            .map(drop)
            .map_err(|errno| match errno {
                crate::Errno::ENOTTY => DeviceError::NotSupported {
                    ioctl: req::VFIO_DEVICE_FEATURE.name,
                },
                errno => DeviceError::IndexedIoctl {
                    ioctl: req::VFIO_DEVICE_FEATURE.name,
                    index: feature,
                    errno,
                },
            })
    }

    fn bool_action(
        &self,
        index: u32,
        action: u32,
        start: u32,
        which: &[bool],
    ) -> Result<(), DeviceError> {
        self.set_irqs(index, action, start, IrqData::Bool(which))
            .map(drop)
    }

    /// Function-level reset (`VFIO_DEVICE_RESET`). Refused while a
    /// migration handle lives ([`DeviceError::MigrationActive`]): a reset
    /// returns the device to RUNNING, so it goes through
    /// [`Migration::reset`](crate::migration::Migration::reset).
    #[doc(alias = "VFIO_DEVICE_RESET")]
    pub fn reset(&self) -> Result<(), DeviceError> {
        self.refuse_during_migration(req::VFIO_DEVICE_RESET.name)?;
        self.reset_for_migration()
            .map_err(|errno| DeviceError::Ioctl {
                ioctl: req::VFIO_DEVICE_RESET.name,
                errno,
            })
    }

    fn refuse_during_migration(&self, ioctl: &'static str) -> Result<(), DeviceError> {
        if self.migration_busy.load(Ordering::Acquire) {
            Err(DeviceError::MigrationActive { ioctl })
        } else {
            Ok(())
        }
    }

    /// Claims the device for a migration handle; false if one lives.
    pub(crate) fn claim_migration(&self) -> bool {
        self.migration_busy
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    /// The migration handle ended.
    pub(crate) fn release_migration(&self) {
        self.migration_busy.store(false, Ordering::Release);
    }

    /// `VFIO_DEVICE_RESET`, for the migration handle.
    pub(crate) fn reset_for_migration(&self) -> Result<(), crate::Errno> {
        self.kernel
            .ioctl(self.fd.as_fd(), req::VFIO_DEVICE_RESET, Arg::None)
            .map(drop)
    }

    /// The devices a PCI hot reset of this device affects
    /// (`VFIO_DEVICE_GET_PCI_HOT_RESET_INFO`, asked again with room when the
    /// kernel answers `ENOSPC`).
    #[doc(alias = "VFIO_DEVICE_GET_PCI_HOT_RESET_INFO")]
    pub fn pci_hot_reset_info(&self) -> Result<Vec<HotResetDevice>, DeviceError> {
        self.query_pci_hot_reset_info().map(|answer| answer.devices)
    }

    /// `VFIO_DEVICE_GET_PCI_HOT_RESET_INFO`'s answer, its flags too (the
    /// cdev path reads them: [`BoundDevice::hot_reset_info`]).
    ///
    /// [`BoundDevice::hot_reset_info`]: crate::iommufd::BoundDevice::hot_reset_info
    pub(crate) fn query_pci_hot_reset_info(&self) -> Result<HotResetAnswer, DeviceError> {
        let ioctl = req::VFIO_DEVICE_GET_PCI_HOT_RESET_INFO.name;
        let head_len = size_of::<abi::HotResetInfo>();
        let entry = size_of::<abi::DependentDevice>();
        let mut room = 8usize;
        for _ in 0..3 {
            let mut buf = vec![0u32; (head_len + room * entry).div_ceil(4)];
            let bytes = buf.as_mut_bytes();
            let head = abi::HotResetInfo {
                argsz: bytes.len() as u32,
                flags: 0,
                count: 0,
            };
            bytes[..head_len].copy_from_slice(head.as_bytes());
            let result = self.kernel.ioctl(
                self.fd.as_fd(),
                req::VFIO_DEVICE_GET_PCI_HOT_RESET_INFO,
                Arg::InOut(bytes),
            );
            let count = hot_reset_info_count(bytes)
                .map_err(|what| DeviceError::Malformed { ioctl, what })?;
            match result {
                Ok(_) => {
                    return parse_hot_reset_info(bytes)
                        .map_err(|what| DeviceError::Malformed { ioctl, what });
                }
                Err(crate::Errno::ENOSPC) if (count as usize) > room && count <= 4096 => {
                    room = count as usize;
                }
                Err(errno) => return Err(DeviceError::Ioctl { ioctl, errno }),
            }
        }
        Err(DeviceError::Malformed {
            ioctl,
            what: "count kept growing",
        })
    }

    /// PCI hot reset (`VFIO_DEVICE_PCI_HOT_RESET`), proving ownership of every
    /// affected group with its fd (e.g. `container.groups()`). A device
    /// opened through its cdev proves it with its iommufd instead:
    /// [`BoundDevice::hot_reset`] (the kernel refuses group fds from it,
    /// `EINVAL`).
    ///
    /// [`BoundDevice::hot_reset`]: crate::iommufd::BoundDevice::hot_reset
    #[doc(alias = "VFIO_DEVICE_PCI_HOT_RESET")]
    pub fn pci_hot_reset<'g>(
        &self,
        groups: impl IntoIterator<Item = &'g crate::Group>,
    ) -> Result<(), DeviceError> {
        let fds: Vec<i32> = groups.into_iter().map(|g| g.as_fd().as_raw_fd()).collect();
        self.issue_pci_hot_reset(&fds)
    }

    /// `VFIO_DEVICE_PCI_HOT_RESET` with these group fds (none: the cdev
    /// form, ownership proved by the device's iommufd).
    pub(crate) fn issue_pci_hot_reset(&self, fds: &[i32]) -> Result<(), DeviceError> {
        self.refuse_during_migration(req::VFIO_DEVICE_PCI_HOT_RESET.name)?;
        let buf = encode_hot_reset(fds);
        self.kernel
            .ioctl(
                self.fd.as_fd(),
                req::VFIO_DEVICE_PCI_HOT_RESET,
                Arg::In(&buf),
            )
            .map(drop)
            .map_err(|errno| DeviceError::Ioctl {
                ioctl: req::VFIO_DEVICE_PCI_HOT_RESET.name,
                errno,
            })
    }

    /// Probes a device feature (`VFIO_DEVICE_FEATURE` with `PROBE`): which of
    /// get and set it supports. `ENOTTY`/`EINVAL` from the kernel mean "no".
    #[doc(alias = "VFIO_DEVICE_FEATURE")]
    pub fn probe_feature(&self, feature: u16) -> Result<FeatureSupport, DeviceError> {
        let probe = |op: u32| -> Result<bool, DeviceError> {
            let mut arg = abi::DeviceFeature {
                argsz: size_of::<abi::DeviceFeature>() as u32,
                flags: sys::VFIO_DEVICE_FEATURE_PROBE | op | u32::from(feature),
            };
            match self.kernel.ioctl(
                self.fd.as_fd(),
                req::VFIO_DEVICE_FEATURE,
                Arg::InOut(arg.as_mut_bytes()),
            ) {
                Ok(_) => Ok(true),
                Err(crate::Errno::ENOTTY | crate::Errno::EINVAL) => Ok(false),
                Err(errno) => Err(DeviceError::IndexedIoctl {
                    ioctl: req::VFIO_DEVICE_FEATURE.name,
                    index: u32::from(feature),
                    errno,
                }),
            }
        };
        Ok(FeatureSupport {
            get: probe(sys::VFIO_DEVICE_FEATURE_GET)?,
            set: probe(sys::VFIO_DEVICE_FEATURE_SET)?,
        })
    }

    /// Reads the device's info capability chain ids (`VFIO_DEVICE_GET_INFO`
    /// with room for capabilities); empty when the device has none.
    pub fn info_capability_ids(&self) -> Result<Vec<u16>, DeviceError> {
        let ioctl = req::VFIO_DEVICE_GET_INFO.name;
        let mut buf = vec![0u64; 512];
        let bytes = buf.as_mut_bytes();
        let mut head = sys::vfio_device_info::new_zeroed();
        head.argsz = bytes.len() as u32;
        bytes[..size_of::<sys::vfio_device_info>()].copy_from_slice(head.as_bytes());
        self.kernel
            .ioctl(
                self.fd.as_fd(),
                req::VFIO_DEVICE_GET_INFO,
                Arg::InOut(bytes),
            )
            .map_err(|errno| DeviceError::Ioctl { ioctl, errno })?;
        DeviceInfo::parse_capability_ids(bytes)
            .map_err(|what| DeviceError::Malformed { ioctl, what })
    }
}

impl AsFd for Device {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// The vectors and per-vector data of a `VFIO_DEVICE_SET_IRQS` argument.
#[derive(Clone, Copy, Debug)]
pub(crate) enum IrqData<'a> {
    /// `DATA_NONE` over this many vectors.
    None(u32),
    /// `DATA_BOOL`: one byte (0 or 1) per vector.
    Bool(&'a [bool]),
    /// `DATA_EVENTFD`: one fd per vector, -1 de-assigns it.
    EventFds(&'a [i32]),
}

impl IrqData<'_> {
    /// The `VFIO_IRQ_SET_DATA_*` flag.
    #[inline]
    pub(crate) fn flag(&self) -> u32 {
        match self {
            IrqData::None(_) => sys::VFIO_IRQ_SET_DATA_NONE,
            IrqData::Bool(_) => sys::VFIO_IRQ_SET_DATA_BOOL,
            IrqData::EventFds(_) => sys::VFIO_IRQ_SET_DATA_EVENTFD,
        }
    }

    /// How many vectors it covers.
    #[inline]
    pub(crate) fn len(&self) -> usize {
        match self {
            IrqData::None(count) => *count as usize,
            IrqData::Bool(b) => b.len(),
            IrqData::EventFds(f) => f.len(),
        }
    }

    /// Its size in bytes after the header.
    #[inline]
    pub(crate) fn byte_len(&self) -> usize {
        match self {
            IrqData::None(_) => 0,
            IrqData::Bool(b) => b.len(),
            IrqData::EventFds(f) => size_of_val(*f),
        }
    }
}

/// The size of the `VFIO_DEVICE_SET_IRQS` argument carrying `data`.
#[inline]
pub(crate) fn irq_set_len(data: IrqData<'_>) -> usize {
    size_of::<abi::IrqSet>() + data.byte_len()
}

/// `EINVAL` from a mask or unmask: the kernel has not enabled the IRQ (no
/// eventfd trigger set), the one case vfio-pci answers so for these actions.
fn not_enabled(error: DeviceError, action: &'static str) -> DeviceError {
    match error {
        DeviceError::IndexedIoctl {
            ioctl,
            index,
            errno: crate::Errno::EINVAL,
        } => DeviceError::IrqNotEnabled {
            ioctl,
            index,
            action,
            errno: crate::Errno::EINVAL,
        },
        other => other,
    }
}

/// A `VFIO_DEVICE_SET_IRQS` argument the crate could not encode.
fn malformed_set(what: &'static str) -> DeviceError {
    DeviceError::Malformed {
        ioctl: req::VFIO_DEVICE_SET_IRQS.name,
        what,
    }
}

/// The `vfio_irq_set` header for `data` (its `argsz` covers the data that
/// follows). Fails when the argument is too large for `argsz`.
#[inline]
pub(crate) fn irq_set_header(
    index: u32,
    action: u32,
    start: u32,
    data: IrqData<'_>,
) -> Result<abi::IrqSet, &'static str> {
    let argsz = u32::try_from(irq_set_len(data)).map_err(|_| "argument too large for argsz")?;
    let count = match data {
        IrqData::None(count) => count,
        // Unreachable past u32: argsz, at least as large, was checked above.
        _ => u32::try_from(data.len()).unwrap_or(u32::MAX),
    };
    Ok(abi::IrqSet {
        argsz,
        flags: data.flag() | action,
        index,
        start,
        count,
    })
}

/// Writes the `VFIO_DEVICE_SET_IRQS` argument (`vfio_irq_set` and its data)
/// into `buf`, which must be [`irq_set_len`] bytes long. `action` is a
/// `VFIO_IRQ_SET_ACTION_*` flag; the data flag comes from `data`. Fails when
/// `buf` has the wrong length or the argument is too large for `argsz`.
pub(crate) fn encode_irq_set(
    buf: &mut [u8],
    index: u32,
    action: u32,
    start: u32,
    data: IrqData<'_>,
) -> Result<(), &'static str> {
    if buf.len() != irq_set_len(data) {
        return Err("buffer length is not the argument's");
    }
    let head = irq_set_header(index, action, start, data)?;
    let (head_bytes, tail) = buf.split_at_mut(size_of::<abi::IrqSet>());
    head_bytes.copy_from_slice(head.as_bytes());
    match data {
        IrqData::None(_) => {}
        IrqData::Bool(which) => {
            for (b, &w) in tail.iter_mut().zip(which) {
                *b = u8::from(w);
            }
        }
        IrqData::EventFds(fds) => {
            for (slot, fd) in tail.chunks_exact_mut(size_of::<i32>()).zip(fds) {
                slot.copy_from_slice(&fd.to_ne_bytes());
            }
        }
    }
    Ok(())
}

/// The `count` of a `VFIO_DEVICE_GET_PCI_HOT_RESET_INFO` answer: on `ENOSPC`,
/// how many devices the kernel wanted room for. Untrusted bytes.
pub(crate) fn hot_reset_info_count(buf: &[u8]) -> Result<u32, &'static str> {
    abi::HotResetInfo::read_from_prefix(buf)
        .map(|(head, _)| head.count)
        .map_err(|_| "truncated")
}

/// A decoded `VFIO_DEVICE_GET_PCI_HOT_RESET_INFO` answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct HotResetAnswer {
    /// `VFIO_PCI_HOT_RESET_FLAG_*`: on the cdev path, whether the ids are
    /// device ids and whether every device is owned.
    pub(crate) flags: u32,
    /// The devices, their ids raw (group ids, or device ids on the cdev path).
    pub(crate) devices: Vec<HotResetDevice>,
}

/// Decodes a successful `VFIO_DEVICE_GET_PCI_HOT_RESET_INFO` answer: the
/// header's flags, and its `count` dependent devices after it. Untrusted
/// bytes.
pub(crate) fn parse_hot_reset_info(buf: &[u8]) -> Result<HotResetAnswer, &'static str> {
    let (head, tail) = abi::HotResetInfo::read_from_prefix(buf).map_err(|_| "truncated")?;
    let devices = abi::read_array::<abi::DependentDevice>(tail, head.count as usize)
        .ok_or("count exceeds the buffer")?;
    Ok(HotResetAnswer {
        flags: head.flags,
        devices: devices
            .map(|d| HotResetDevice {
                group_id: d.id,
                segment: d.segment,
                bus: d.bus,
                devfn: d.devfn,
            })
            .collect(),
    })
}

/// Builds a `VFIO_DEVICE_PCI_HOT_RESET` argument: the header, then one group
/// fd per affected group.
pub(crate) fn encode_hot_reset(fds: &[i32]) -> Vec<u8> {
    let head_len = size_of::<abi::HotReset>();
    let mut buf = vec![0u8; head_len + fds.len() * 4];
    let head = abi::HotReset {
        argsz: buf.len() as u32,
        flags: 0,
        count: fds.len() as u32,
    };
    buf[..head_len].copy_from_slice(head.as_bytes());
    buf[head_len..].copy_from_slice(fds.as_bytes());
    buf
}
