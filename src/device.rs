//! Devices: info, regions, PCI config space, interrupts, resets.

use std::fmt;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use zerocopy::{FromBytes, FromZeros, IntoBytes};

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
pub struct Device {
    fd: OwnedFd,
    kernel: Kernel,
    info: DeviceInfo,
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
        Self::from_kernel_fd(Kernel::host(), fd)
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
        let info = DeviceInfo {
            flags: info.flags,
            num_regions: info.num_regions,
            num_irqs: info.num_irqs,
        };
        Ok(Device { fd, kernel, info })
    }

    /// The info read when the device was opened (`VFIO_DEVICE_GET_INFO`).
    #[doc(alias = "VFIO_DEVICE_GET_INFO")]
    pub fn info(&self) -> DeviceInfo {
        self.info
    }

    /// The device fd, borrowed.
    pub fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    pub(crate) fn kernel(&self) -> &Kernel {
        &self.kernel
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
        Ok(IrqInfo {
            index,
            flags: info.flags,
            count: info.count,
        })
    }

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

    /// `VFIO_DEVICE_SET_IRQS` with `flags`, vectors `start..start + count`,
    /// and `data` after the header (no heap allocation when it fits
    /// [`IRQ_STACK`]).
    fn set_irqs(
        &self,
        index: u32,
        flags: u32,
        start: u32,
        count: u32,
        data: &[u8],
    ) -> Result<(), DeviceError> {
        self.check_irq_index(index)?;
        let head_len = size_of::<abi::IrqSet>();
        let total = head_len + data.len();
        let mut stack = [0u8; IRQ_STACK];
        let mut heap = Vec::new();
        let buf: &mut [u8] = if total <= IRQ_STACK {
            &mut stack[..total]
        } else {
            heap.resize(total, 0);
            &mut heap
        };
        let head = abi::IrqSet {
            argsz: total as u32,
            flags,
            index,
            start,
            count,
        };
        buf[..head_len].copy_from_slice(head.as_bytes());
        buf[head_len..].copy_from_slice(data);
        self.kernel
            .ioctl(self.fd.as_fd(), req::VFIO_DEVICE_SET_IRQS, Arg::In(buf))
            .map(drop)
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
    #[doc(alias = "VFIO_DEVICE_SET_IRQS")]
    pub fn set_irq_eventfds(
        &self,
        index: u32,
        start: u32,
        fds: &[Option<BorrowedFd<'_>>],
    ) -> Result<(), DeviceError> {
        const MAX: usize = (IRQ_STACK - size_of::<abi::IrqSet>()) / 4;
        let mut stack = [0u8; MAX * 4];
        let mut heap = Vec::new();
        let data: &mut [u8] = if fds.len() <= MAX {
            &mut stack[..fds.len() * 4]
        } else {
            heap.resize(fds.len() * 4, 0);
            &mut heap
        };
        for (slot, fd) in data.chunks_exact_mut(4).zip(fds) {
            let raw: i32 = fd.map_or(-1, |fd| fd.as_raw_fd());
            slot.copy_from_slice(&raw.to_ne_bytes());
        }
        let count = u32::try_from(fds.len()).map_err(|_| DeviceError::IrqRange {
            index,
            start,
            end: start as u64 + fds.len() as u64,
            count: 0,
        })?;
        self.set_irqs(
            index,
            sys::VFIO_IRQ_SET_DATA_EVENTFD | sys::VFIO_IRQ_SET_ACTION_TRIGGER,
            start,
            count,
            data,
        )
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
        self.set_irqs(
            index,
            sys::VFIO_IRQ_SET_DATA_NONE | sys::VFIO_IRQ_SET_ACTION_TRIGGER,
            0,
            0,
            &[],
        )
    }

    /// Fires vectors `start..start + count` from user space (loopback test;
    /// `DATA_NONE | ACTION_TRIGGER`).
    pub fn trigger_irq(&self, index: u32, start: u32, count: u32) -> Result<(), DeviceError> {
        self.set_irqs(
            index,
            sys::VFIO_IRQ_SET_DATA_NONE | sys::VFIO_IRQ_SET_ACTION_TRIGGER,
            start,
            count,
            &[],
        )
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
    pub fn mask_irq(&self, index: u32, start: u32, count: u32) -> Result<(), DeviceError> {
        self.set_irqs(
            index,
            sys::VFIO_IRQ_SET_DATA_NONE | sys::VFIO_IRQ_SET_ACTION_MASK,
            start,
            count,
            &[],
        )
    }

    /// Unmasks vectors `start..start + count` (`DATA_NONE | ACTION_UNMASK`):
    /// after servicing an automasked INTx, or no second interrupt comes.
    pub fn unmask_irq(&self, index: u32, start: u32, count: u32) -> Result<(), DeviceError> {
        self.set_irqs(
            index,
            sys::VFIO_IRQ_SET_DATA_NONE | sys::VFIO_IRQ_SET_ACTION_UNMASK,
            start,
            count,
            &[],
        )
    }

    fn bool_action(
        &self,
        index: u32,
        action: u32,
        start: u32,
        which: &[bool],
    ) -> Result<(), DeviceError> {
        let max = IRQ_STACK - size_of::<abi::IrqSet>();
        let mut stack = [0u8; IRQ_STACK];
        let heap: Vec<u8>;
        let data: &[u8] = if which.len() <= max {
            for (b, &w) in stack.iter_mut().zip(which) {
                *b = u8::from(w);
            }
            &stack[..which.len()]
        } else {
            heap = which.iter().map(|&w| u8::from(w)).collect();
            &heap
        };
        let count = u32::try_from(which.len()).unwrap_or(u32::MAX);
        self.set_irqs(
            index,
            sys::VFIO_IRQ_SET_DATA_BOOL | action,
            start,
            count,
            data,
        )
    }

    /// Function-level reset (`VFIO_DEVICE_RESET`).
    #[doc(alias = "VFIO_DEVICE_RESET")]
    pub fn reset(&self) -> Result<(), DeviceError> {
        self.kernel
            .ioctl(self.fd.as_fd(), req::VFIO_DEVICE_RESET, Arg::None)
            .map(drop)
            .map_err(|errno| DeviceError::Ioctl {
                ioctl: req::VFIO_DEVICE_RESET.name,
                errno,
            })
    }

    /// The devices a PCI hot reset of this device affects
    /// (`VFIO_DEVICE_GET_PCI_HOT_RESET_INFO`, asked again with room when the
    /// kernel answers `ENOSPC`).
    #[doc(alias = "VFIO_DEVICE_GET_PCI_HOT_RESET_INFO")]
    pub fn pci_hot_reset_info(&self) -> Result<Vec<HotResetDevice>, DeviceError> {
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
            let (head, tail) =
                abi::HotResetInfo::read_from_prefix(bytes).map_err(|_| DeviceError::Malformed {
                    ioctl,
                    what: "truncated",
                })?;
            match result {
                Ok(_) => {
                    let (devices, _) = <[abi::DependentDevice]>::ref_from_prefix_with_elems(
                        tail,
                        head.count as usize,
                    )
                    .map_err(|_| DeviceError::Malformed {
                        ioctl,
                        what: "count exceeds the buffer",
                    })?;
                    return Ok(devices
                        .iter()
                        .map(|d| HotResetDevice {
                            group_id: d.id,
                            segment: d.segment,
                            bus: d.bus,
                            devfn: d.devfn,
                        })
                        .collect());
                }
                Err(crate::Errno::ENOSPC) if (head.count as usize) > room && head.count <= 4096 => {
                    room = head.count as usize;
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
    /// affected group with its fd (e.g. `container.groups()`).
    #[doc(alias = "VFIO_DEVICE_PCI_HOT_RESET")]
    pub fn pci_hot_reset<'g>(
        &self,
        groups: impl IntoIterator<Item = &'g crate::Group>,
    ) -> Result<(), DeviceError> {
        let fds: Vec<i32> = groups.into_iter().map(|g| g.as_fd().as_raw_fd()).collect();
        let head_len = size_of::<abi::HotReset>();
        let mut buf = vec![0u8; head_len + fds.len() * 4];
        let head = abi::HotReset {
            argsz: buf.len() as u32,
            flags: 0,
            count: fds.len() as u32,
        };
        buf[..head_len].copy_from_slice(head.as_bytes());
        buf[head_len..].copy_from_slice(fds.as_bytes());
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
        let (info, _) =
            sys::vfio_device_info::read_from_prefix(bytes).map_err(|_| DeviceError::Malformed {
                ioctl,
                what: "truncated",
            })?;
        if info.flags & sys::VFIO_DEVICE_FLAGS_CAPS == 0 {
            return Ok(Vec::new());
        }
        let len = (info.argsz as usize).min(bytes.len());
        caps::chain(
            &bytes[..len],
            info.cap_offset,
            size_of::<sys::vfio_device_info>(),
        )
        .map(|c| {
            c.map(|c| c.id)
                .map_err(|what| DeviceError::Malformed { ioctl, what })
        })
        .collect()
    }
}

impl AsFd for Device {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}
