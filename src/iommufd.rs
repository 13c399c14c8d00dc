//! iommufd (`/dev/iommu`) and the VFIO device cdev
//! (`/dev/vfio/devices/vfioN`): the kernel's current VFIO interface (Linux
//! 6.2+), beside the container/group one.
//!
//! The order the kernel imposes, as types:
//!
//! ```text
//! Iommufd::open() ── alloc_ioas() ──▶ Ioas ── map(&DmaBuffer) / map_anywhere ──▶ IoasMapping (unmaps on drop)
//!                                      │  └── allow_iovas(&[IovaRange]): where map_anywhere / copy_anywhere may land
//!                                      └── copy(&IoasMapping) / copy_anywhere ──▶ IoasMapping in this IOAS, same buffer
//! CdevDevice::open_pci(addr) ── bind(&Iommufd) ──▶ BoundDevice ── attach(&Ioas) ──▶ DMA through the IOAS
//!                                                   ├── hot_reset_info() / hot_reset(): ownership by the iommufd
//!                                                   └── Deref<Target = Device>: regions, IRQs, resets
//! ```
//!
//! A cdev that is not bound can do nothing but bind (the kernel answers
//! every other device request with `EINVAL`), so [`CdevDevice`] has no
//! device operations at all; [`BoundDevice`] derefs to the same [`Device`]
//! the group path opens: one copy of regions, MMIO, IRQs and resets. Its
//! PCI hot reset proves ownership with the iommufd instead of group fds
//! ([`BoundDevice::hot_reset`]). A device in a no-IOMMU group has no cdev
//! ([`IommufdError::NoIommu`]).
//!
//! DMA memory follows the container's rules: an [`IoasMapping`] borrows
//! the [`Ioas`] and the [`DmaBuffer`], so the buffer cannot be freed while
//! mapped; a failed unmap keeps the pages (the IOAS's orphan record) until
//! the kernel confirms the range gone — an unmap of all of the IOAS, or its
//! destruction. An IOAS whose destruction fails (`EBUSY`: a device is still
//! attached) may keep its mappings, so their pages are then never freed.
//! A copy ([`Ioas::copy`], `IOMMU_IOAS_COPY`) maps the same pages in a
//! second place and outlives its source: it is a guard of its own, holding
//! the buffer and borrowing it and the destination IOAS; [`Ioas::copy_raw`]
//! is the `unsafe` form for memory mapped with [`Ioas::map_raw`].
//!
//! Where each of the kernel's rules is enforced: the [crate's rule
//! table](crate#kernel-ordering-rules-and-where-they-are-enforced).
//!
//! The simulated kernel models iommufd and the cdev too
//! ([`Simulator::open_iommufd`](crate::sim::Simulator::open_iommufd),
//! [`Simulator::open_cdev`](crate::sim::Simulator::open_cdev), with the
//! `sim` feature).

use std::fmt;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use crate::container::IovaRange;
use crate::device::Device;
use crate::dma::{DmaAccess, DmaBuffer, Orphans, UnmapError, try_unmap_with};
use crate::error::{DeviceError, DmaError, Errno};
use crate::kernel::{Arg, Kernel, req};
use crate::sys::{self, FromBytes, IntoBytes, SliceBytes};

mod allowed;
mod copy;
mod hot_reset;

use copy::RawUnmaps;
pub use hot_reset::{CdevHotResetDevice, CdevHotResetInfo, HotResetOwner};

/// The iommufd node.
pub const IOMMUFD_PATH: &str = "/dev/iommu";

/// What failed on the iommufd path.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IommufdError {
    /// Opening a node failed.
    #[error("open {path}: {errno}")]
    Open {
        /// The node.
        path: PathBuf,
        /// The errno.
        errno: Errno,
    },
    /// A request failed.
    #[error("{ioctl} failed: {errno}")]
    Ioctl {
        /// The request, by its C name.
        ioctl: &'static str,
        /// The errno.
        errno: Errno,
    },
    /// Reading sysfs to find a device's cdev failed.
    #[error("{path}: {what}")]
    Sysfs {
        /// The sysfs path read.
        path: PathBuf,
        /// What was wrong.
        what: String,
    },
    /// The device's IOMMU group is a no-IOMMU group: Linux makes no VFIO
    /// device cdev for it (through 6.12 at least), so it can only be used
    /// through its group (`/dev/vfio/noiommu-N`, a
    /// [`Container<NoIommu>`](crate::NoIommu)).
    #[error(
        "{address} is in a no-IOMMU group: the kernel makes no VFIO device cdev for it \
         (open its group /dev/vfio/noiommu-N with a NoIommu container instead)"
    )]
    NoIommu {
        /// The PCI device.
        address: String,
    },
    /// An object of another iommufd was named (an IOAS or HWPT for a
    /// device bound elsewhere, or such a device): refused before the call,
    /// since object ids name objects of one iommufd context only.
    #[error("{ioctl}: the device and the object belong to different iommufds")]
    OtherIommufd {
        /// The request, by its C name.
        ioctl: &'static str,
    },
    /// An IOVA range refused before the call: it ends before it starts, or
    /// reaches past what the kernel's `unsigned long` holds (a 32-bit kernel
    /// would silently cut it short), or there are more ranges than a
    /// request can count.
    #[error("{ioctl}: range {start:#x}..={end:#x}: {what}")]
    BadRange {
        /// The request.
        ioctl: &'static str,
        /// The range's first IOVA.
        start: u64,
        /// Its last IOVA.
        end: u64,
        /// What is wrong with it.
        what: &'static str,
    },
    /// The kernel's answer did not parse.
    #[error("{ioctl}: malformed answer: {what}")]
    Malformed {
        /// The request.
        ioctl: &'static str,
        /// What was wrong.
        what: &'static str,
    },
    /// The device could not be read after binding.
    #[error(transparent)]
    Device(#[from] DeviceError),
}

/// An open iommufd (`/dev/iommu`): the context IOASes and bound devices
/// live in.
#[derive(Debug)]
pub struct Iommufd {
    kernel: Kernel,
    fd: OwnedFd,
    /// Which `Iommufd` of this process this is: object ids are per context,
    /// so a device bound to one must never be handed the ids of another.
    token: std::sync::Arc<()>,
}

impl Iommufd {
    /// Opens `/dev/iommu`.
    pub fn open() -> Result<Iommufd, IommufdError> {
        Self::open_in(Kernel::host())
    }

    /// Opens `/dev/iommu` of `kernel`.
    pub(crate) fn open_in(kernel: Kernel) -> Result<Iommufd, IommufdError> {
        let fd = kernel
            .open(Path::new(IOMMUFD_PATH))
            .map_err(|errno| IommufdError::Open {
                path: IOMMUFD_PATH.into(),
                errno,
            })?;
        Ok(Iommufd {
            kernel,
            fd,
            token: std::sync::Arc::new(()),
        })
    }

    /// Adopts an already-open iommufd (privilege separation). Each adopted
    /// fd is an iommufd of its own to the crate: objects of one are not
    /// accepted by devices bound to another, even if both fds name the same
    /// kernel context.
    pub fn from_fd(fd: OwnedFd) -> Iommufd {
        Iommufd {
            kernel: Kernel::for_fd(fd.as_fd()),
            fd,
            token: std::sync::Arc::new(()),
        }
    }

    /// Refuses (before the call) a device bound to another iommufd: object
    /// ids name objects of one context only.
    fn check_device(&self, device: &BoundDevice, ioctl: &'static str) -> Result<(), IommufdError> {
        if !device.bound_to(self) {
            return Err(IommufdError::OtherIommufd { ioctl });
        }
        Ok(())
    }

    /// The iommufd, borrowed.
    pub fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Allocates an IOAS (`IOMMU_IOAS_ALLOC`), destroyed when dropped.
    #[doc(alias = "IOMMU_IOAS_ALLOC")]
    pub fn alloc_ioas(&self) -> Result<Ioas<'_>, IommufdError> {
        let mut arg = sys::iommu_ioas_alloc {
            size: size_of::<sys::iommu_ioas_alloc>() as u32,
            ..FromBytes::new_zeroed()
        };
        self.ioctl(req::IOMMU_IOAS_ALLOC, arg.as_mut_bytes())?;
        Ok(Ioas {
            iommufd: self,
            id: arg.out_ioas_id,
            orphans: Orphans::default(),
            raw_unmaps: RawUnmaps::default(),
            destroyed: false,
        })
    }

    /// Whether pinned pages are charged to the user (`true`) or to the
    /// process (`false`, the default): `IOMMU_OPTION_RLIMIT_MODE`, get.
    #[doc(alias = "IOMMU_OPTION")]
    pub fn rlimit_per_user(&self) -> Result<bool, IommufdError> {
        self.option(sys::IOMMU_OPTION_RLIMIT_MODE, 0, None)
            .map(|v| v != 0)
    }

    /// Sets `IOMMU_OPTION_RLIMIT_MODE` (needs `CAP_SYS_RESOURCE`; only while
    /// this iommufd holds no object, no IOAS and no bound device: `EBUSY`
    /// otherwise).
    #[doc(alias = "IOMMU_OPTION")]
    pub fn set_rlimit_per_user(&self, per_user: bool) -> Result<(), IommufdError> {
        self.option(sys::IOMMU_OPTION_RLIMIT_MODE, 0, Some(u64::from(per_user)))
            .map(drop)
    }

    /// `IOMMU_OPTION` on `object` (0: global): get with `None`, set with a
    /// value; the value the kernel answers.
    fn option(&self, id: u32, object: u32, set: Option<u64>) -> Result<u64, IommufdError> {
        let mut arg = sys::iommu_option::new_zeroed();
        arg.size = size_of::<sys::iommu_option>() as u32;
        arg.option_id = id;
        arg.object_id = object;
        match set {
            Some(v) => {
                arg.op = sys::IOMMU_OPTION_OP_SET as u16;
                arg.val64 = v;
            }
            None => arg.op = sys::IOMMU_OPTION_OP_GET as u16,
        }
        self.ioctl(req::IOMMU_OPTION, arg.as_mut_bytes())?;
        Ok(arg.val64)
    }

    /// What the IOMMU behind a bound device is (`IOMMU_GET_HW_INFO`):
    /// its type and driver data (decoded for Intel VT-d and ARM SMMUv3), and the
    /// capabilities iommufd reports (dirty tracking, PASID).
    #[doc(alias = "IOMMU_GET_HW_INFO")]
    pub fn hw_info(&self, device: &BoundDevice) -> Result<HwInfo, IommufdError> {
        let ioctl = req::IOMMU_GET_HW_INFO.name;
        self.check_device(device, ioctl)?;
        let mut data = [0u64; 32];
        let mut arg = crate::abi::HwInfo::new_zeroed();
        arg.size = size_of::<crate::abi::HwInfo>() as u32;
        arg.dev_id = device.devid;
        arg.data_len = size_of_val(&data) as u32;
        arg.data_uptr = data.as_mut_ptr() as u64;
        // SAFETY: the argument is a complete `iommu_hw_info` (size = its
        // size); its one pointer, `data_uptr`, names `data`, exclusively
        // borrowed for the call, and `data_len` is its length: the kernel
        // writes at most that many bytes there.
        unsafe {
            self.kernel.ioctl_unchecked(
                self.fd.as_fd(),
                req::IOMMU_GET_HW_INFO,
                Arg::InOut(arg.as_mut_bytes()),
            )
        }
        .map_err(|errno| IommufdError::Ioctl { ioctl, errno })?;
        let filled = (arg.data_len as usize).min(size_of_val(&data));
        HwInfo::parse(arg.as_bytes(), &data.as_bytes()[..filled])
            .map_err(|what| IommufdError::Malformed { ioctl, what })
    }

    /// Allocates a paging hardware page table for `device` on `ioas`
    /// (`IOMMU_HWPT_ALLOC`, no driver data): the IOAS's mappings, in a page
    /// table the caller owns (attach it with
    /// [`BoundDevice::attach_hwpt`]). `flags`: `IOMMU_HWPT_ALLOC_*`
    /// (`NEST_PARENT`, `DIRTY_TRACKING`); others are refused before the call.
    #[doc(alias = "IOMMU_HWPT_ALLOC")]
    pub fn alloc_hwpt<'i>(
        &'i self,
        device: &BoundDevice,
        ioas: &'i Ioas<'_>,
        flags: u32,
    ) -> Result<Hwpt<'i>, IommufdError> {
        let ioctl = req::IOMMU_HWPT_ALLOC.name;
        self.check_device(device, ioctl)?;
        if !std::sync::Arc::ptr_eq(&ioas.iommufd.token, &self.token) {
            return Err(IommufdError::OtherIommufd { ioctl });
        }
        let known = sys::IOMMU_HWPT_ALLOC_NEST_PARENT | sys::IOMMU_HWPT_ALLOC_DIRTY_TRACKING;
        if flags & !known != 0 {
            return Err(IommufdError::Ioctl {
                ioctl,
                errno: Errno::EOPNOTSUPP,
            });
        }
        let mut arg = sys::iommu_hwpt_alloc::new_zeroed();
        arg.size = size_of::<sys::iommu_hwpt_alloc>() as u32;
        arg.flags = flags;
        arg.dev_id = device.devid;
        arg.pt_id = ioas.id;
        arg.data_type = sys::IOMMU_HWPT_DATA_NONE;
        // SAFETY: the argument is a complete `iommu_hwpt_alloc`; with data
        // type NONE, `data_len` 0 and `data_uptr` 0 the kernel reads no user
        // memory, and the flags are the two that carry no pointer (the
        // fault-queue flag, which names an object, is refused above).
        unsafe {
            self.kernel.ioctl_unchecked(
                self.fd.as_fd(),
                req::IOMMU_HWPT_ALLOC,
                Arg::InOut(arg.as_mut_bytes()),
            )
        }
        .map_err(|errno| IommufdError::Ioctl { ioctl, errno })?;
        Ok(Hwpt {
            iommufd: self,
            id: arg.out_hwpt_id,
            _ioas: std::marker::PhantomData,
        })
    }

    fn ioctl(&self, request: crate::kernel::Request, arg: &mut [u8]) -> Result<(), IommufdError> {
        self.kernel
            .ioctl(self.fd.as_fd(), request, Arg::InOut(arg))
            .map(drop)
            .map_err(|errno| IommufdError::Ioctl {
                ioctl: request.name,
                errno,
            })
    }

    /// Destroys object `id` (`IOMMU_DESTROY`).
    fn destroy(&self, id: u32) -> Result<(), IommufdError> {
        let mut arg = sys::iommu_destroy {
            size: size_of::<sys::iommu_destroy>() as u32,
            id,
        };
        self.ioctl(req::IOMMU_DESTROY, arg.as_mut_bytes())
    }
}

/// The IOMMU behind a device, as `IOMMU_GET_HW_INFO` reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HwInfo {
    /// The driver's data, decoded where the crate knows its type.
    pub data: HwInfoData,
    /// `IOMMU_HW_CAP_*`: dirty tracking, PASID execute/privileged.
    pub capabilities: u64,
    /// log2 of the largest PASID the device supports (0: none).
    pub max_pasid_log2: u8,
}

/// The IOMMU driver's data in [`HwInfo`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HwInfoData {
    /// `IOMMU_HW_INFO_TYPE_NONE`: the driver reports nothing.
    None,
    /// `IOMMU_HW_INFO_TYPE_INTEL_VTD`: the VT-d capability registers.
    IntelVtd {
        /// `IOMMU_HW_INFO_VTD_*` flags (errata).
        flags: u32,
        /// The capability register.
        cap_reg: u64,
        /// The extended capability register.
        ecap_reg: u64,
    },
    /// `IOMMU_HW_INFO_TYPE_ARM_SMMUV3` (Linux 6.13+): the SMMU's ID
    /// registers, raw (SMMUv3 specification, 6.3.1–6.3.6). They report the
    /// hardware, not what the kernel supports of it.
    ArmSmmuV3 {
        /// Flags (none defined yet).
        flags: u32,
        /// `SMMU_IDR0` .. `SMMU_IDR5`.
        idr: [u32; 6],
        /// `SMMU_IIDR`: implementer and implementation.
        iidr: u32,
        /// `SMMU_AIDR`: the architecture version.
        aidr: u32,
    },
    /// Another type: its number and the bytes the kernel wrote, undecoded.
    Other {
        /// `out_data_type`.
        data_type: u32,
        /// The driver data.
        bytes: Vec<u8>,
    },
}

impl HwInfo {
    /// Whether the IOMMU can track dirty pages (`IOMMU_HW_CAP_DIRTY_TRACKING`).
    pub fn dirty_tracking(&self) -> bool {
        self.capabilities & u64::from(sys::IOMMU_HW_CAP_DIRTY_TRACKING) != 0
    }

    /// Decodes the header the kernel wrote back and its driver data
    /// (`data`: the bytes it filled). Untrusted bytes.
    pub(crate) fn parse(head: &[u8], data: &[u8]) -> Result<HwInfo, &'static str> {
        let (h, _) =
            crate::abi::HwInfo::read_from_prefix(head).map_err(|_| "hw info header truncated")?;
        let data = match h.data_type {
            sys::IOMMU_HW_INFO_TYPE_NONE => HwInfoData::None,
            sys::IOMMU_HW_INFO_TYPE_INTEL_VTD => {
                let (v, _) = sys::iommu_hw_info_vtd::read_from_prefix(data)
                    .map_err(|_| "VT-d data shorter than iommu_hw_info_vtd")?;
                HwInfoData::IntelVtd {
                    flags: v.flags,
                    cap_reg: v.cap_reg,
                    ecap_reg: v.ecap_reg,
                }
            }
            crate::abi::IOMMU_HW_INFO_TYPE_ARM_SMMUV3 => {
                let (v, _) = crate::abi::HwInfoArmSmmuV3::read_from_prefix(data)
                    .map_err(|_| "SMMUv3 data shorter than iommu_hw_info_arm_smmuv3")?;
                HwInfoData::ArmSmmuV3 {
                    flags: v.flags,
                    idr: v.idr,
                    iidr: v.iidr,
                    aidr: v.aidr,
                }
            }
            other => HwInfoData::Other {
                data_type: other,
                bytes: data.to_vec(),
            },
        };
        Ok(HwInfo {
            data,
            capabilities: h.out_capabilities,
            max_pasid_log2: h.out_max_pasid_log2,
        })
    }
}

/// A paging hardware page table (`IOMMU_HWPT_ALLOC`) holding its IOAS's
/// mappings; destroyed when dropped. Borrows the [`Ioas`] (the kernel
/// keeps the IOAS while the HWPT lives: it cannot be destroyed first).
pub struct Hwpt<'i> {
    iommufd: &'i Iommufd,
    id: u32,
    _ioas: std::marker::PhantomData<&'i ()>,
}

impl fmt::Debug for Hwpt<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Hwpt")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl Hwpt<'_> {
    /// The HWPT's object id.
    pub fn id(&self) -> u32 {
        self.id
    }
}

impl Drop for Hwpt<'_> {
    fn drop(&mut self) {
        // EBUSY while a device is attached: the kernel keeps it, and with it
        // the IOAS, whose own destruction then fails and leaks its orphans.
        let _ = self.iommufd.destroy(self.id);
    }
}

/// A failed [`Ioas::destroy`]: the IOAS, handed back, and why.
#[derive(Debug, thiserror::Error)]
#[error("destroying the IOAS failed (it is handed back): {error}")]
pub struct DestroyError<'f> {
    /// The IOAS, still alive.
    pub ioas: Ioas<'f>,
    /// Why.
    #[source]
    pub error: IommufdError,
}

/// The usable IOVA ranges of an IOAS and the alignment the kernel asks of
/// every mapping (`IOMMU_IOAS_IOVA_RANGES`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IoasRanges {
    /// The ranges, in the kernel's order (ascending).
    pub ranges: Vec<IovaRange>,
    /// `out_iova_alignment`: IOVAs and lengths must be multiples of it.
    pub alignment: u64,
}

/// The most ranges the crate reads (the kernel's answer is untrusted: a
/// count beyond this is refused instead of allocated).
const MAX_RANGES: u32 = 4096;

/// Decodes an `IOMMU_IOAS_IOVA_RANGES` answer: the fixed struct the kernel
/// wrote back and the range array it filled (`filled` entries fit the
/// buffer we gave). Untrusted bytes.
pub(crate) fn parse_iova_ranges(head: &[u8], array: &[u8]) -> Result<IoasRanges, &'static str> {
    let (h, _) = sys::iommu_ioas_iova_ranges::read_from_prefix(head)
        .map_err(|_| "iova ranges header truncated")?;
    let n = usize::try_from(h.num_iovas).map_err(|_| "range count overflows")?;
    let entries = crate::abi::read_array::<sys::iommu_iova_range>(array, n)
        .ok_or("more ranges than the buffer holds")?;
    let ranges: Vec<IovaRange> = entries
        .map(|r| IovaRange {
            start: r.start,
            end: r.last,
        })
        .collect();
    if ranges.iter().any(|r| r.start > r.end) {
        return Err("a range ends before it starts");
    }
    if h.out_iova_alignment != 0 && !h.out_iova_alignment.is_power_of_two() {
        return Err("alignment is not a power of two");
    }
    Ok(IoasRanges {
        ranges,
        alignment: h.out_iova_alignment.max(1),
    })
}

/// An I/O address space: IOVA → process memory mappings that attached
/// devices DMA through. Destroyed (`IOMMU_DESTROY`) when dropped.
pub struct Ioas<'f> {
    iommufd: &'f Iommufd,
    id: u32,
    orphans: Orphans,
    /// Ranges unmapped other than by their guards (what a copy of a guard
    /// must check first).
    raw_unmaps: RawUnmaps,
    destroyed: bool,
}

impl fmt::Debug for Ioas<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ioas")
            .field("id", &self.id)
            .field("orphans", &self.orphans.count())
            .finish_non_exhaustive()
    }
}

impl<'f> Ioas<'f> {
    /// The IOAS's object id (what [`BoundDevice::attach`] names).
    pub fn id(&self) -> u32 {
        self.id
    }

    /// The usable IOVA ranges and the required alignment
    /// (`IOMMU_IOAS_IOVA_RANGES`): the IOMMU's aperture minus every
    /// attached device's reserved regions (such as the MSI window).
    #[doc(alias = "IOMMU_IOAS_IOVA_RANGES")]
    pub fn iova_ranges(&self) -> Result<IoasRanges, IommufdError> {
        let ioctl = req::IOMMU_IOAS_IOVA_RANGES.name;
        let mut cap = 16u32;
        loop {
            let mut array = vec![sys::iommu_iova_range::new_zeroed(); cap as usize];
            let mut head = sys::iommu_ioas_iova_ranges {
                size: size_of::<sys::iommu_ioas_iova_ranges>() as u32,
                ioas_id: self.id,
                num_iovas: cap,
                allowed_iovas: array.as_mut_ptr() as u64,
                ..FromBytes::new_zeroed()
            };
            // SAFETY: the argument is a complete `iommu_ioas_iova_ranges`
            // (size = its size); the one pointer in it, `allowed_iovas`,
            // names `array`, which holds `num_iovas` entries and is
            // exclusively borrowed for the call: the kernel writes at most
            // `num_iovas` entries there (and answers EMSGSIZE, writing
            // none beyond, when there are more).
            let r = unsafe {
                self.iommufd.kernel.ioctl_unchecked(
                    self.iommufd.fd.as_fd(),
                    req::IOMMU_IOAS_IOVA_RANGES,
                    Arg::InOut(head.as_mut_bytes()),
                )
            };
            match r {
                Ok(_) => {
                    let filled = head.num_iovas.min(cap) as usize;
                    return parse_iova_ranges(head.as_bytes(), array[..filled].as_bytes())
                        .map_err(|what| IommufdError::Malformed { ioctl, what });
                }
                Err(Errno::EMSGSIZE) if head.num_iovas > cap && head.num_iovas <= MAX_RANGES => {
                    cap = head.num_iovas;
                }
                Err(Errno::EMSGSIZE) => {
                    return Err(IommufdError::Malformed {
                        ioctl,
                        what: "the kernel asks for an implausible number of ranges",
                    });
                }
                Err(errno) => return Err(IommufdError::Ioctl { ioctl, errno }),
            }
        }
    }

    /// Maps the whole of `buffer` at `iova` (`IOMMU_IOAS_MAP` with
    /// `FIXED_IOVA`) and returns the guard that unmaps it.
    #[doc(alias = "IOMMU_IOAS_MAP")]
    #[inline]
    pub fn map<'a, 'b>(
        &'a self,
        buffer: &'b DmaBuffer,
        iova: u64,
        access: DmaAccess,
    ) -> Result<IoasMapping<'a, 'f, 'b>, DmaError> {
        self.map_buffer(buffer, Some(iova), access)
    }

    /// Maps the whole of `buffer` at an IOVA the kernel chooses
    /// (`IOMMU_IOAS_MAP` without `FIXED_IOVA`); the guard's
    /// [`iova`](IoasMapping::iova) says where.
    #[doc(alias = "IOMMU_IOAS_MAP")]
    pub fn map_anywhere<'a, 'b>(
        &'a self,
        buffer: &'b DmaBuffer,
        access: DmaAccess,
    ) -> Result<IoasMapping<'a, 'f, 'b>, DmaError> {
        self.map_buffer(buffer, None, access)
    }

    #[inline]
    fn map_buffer<'a, 'b>(
        &'a self,
        buffer: &'b DmaBuffer,
        iova: Option<u64>,
        access: DmaAccess,
    ) -> Result<IoasMapping<'a, 'f, 'b>, DmaError> {
        let size = buffer.len() as u64;
        // Taken before the call (see `RawUnmaps`).
        let stamp = self.raw_unmaps.stamp();
        // Counted before the call: the device may reach the pages from the
        // moment the kernel maps them.
        buffer.hold();
        // SAFETY: the guard returned borrows the buffer, so its pages stay
        // allocated while the guard lives; it unmaps on drop, and if it is
        // leaked or its unmap fails the pages' mapping count stays non-zero
        // and they are leaked or kept by this IOAS's orphan record instead
        // of freed. The memory is only ever reached by atomic accesses.
        let mapped = unsafe { self.map_raw(buffer.as_mut_ptr(), size, iova, access) };
        match mapped {
            Ok(iova) => Ok(IoasMapping {
                ioas: self,
                buffer,
                iova,
                size,
                stamp,
            }),
            Err(e) => {
                buffer.release();
                Err(e)
            }
        }
    }

    /// Maps `size` bytes of process memory at `vaddr` (`IOMMU_IOAS_MAP`),
    /// at `iova` or, with `None`, where the kernel chooses; returns the
    /// IOVA. No guard: for VMMs mapping guest memory; undo with
    /// [`unmap_raw`](Self::unmap_raw).
    ///
    /// # Safety
    ///
    /// `vaddr..vaddr + size` must be memory of this process that stays
    /// mapped, and that the caller accepts devices reading (and, with write
    /// access, writing) at any time, until the range is unmapped from this
    /// IOAS (by `unmap_raw`, `unmap_all`, or the IOAS's destruction).
    #[doc(alias = "IOMMU_IOAS_MAP")]
    #[inline]
    pub unsafe fn map_raw(
        &self,
        vaddr: *mut u8,
        size: u64,
        iova: Option<u64>,
        access: DmaAccess,
    ) -> Result<u64, DmaError> {
        let mut arg = sys::iommu_ioas_map {
            size: size_of::<sys::iommu_ioas_map>() as u32,
            flags: map_flags(iova, access),
            ioas_id: self.id,
            __reserved: 0,
            user_va: vaddr as u64,
            length: size,
            iova: iova.unwrap_or(0),
        };
        // SAFETY: the argument is a complete `iommu_ioas_map` (size = its
        // size), which the kernel reads and writes back (`iova`); the memory
        // it names is covered by this function's contract, which the caller
        // upholds.
        unsafe {
            self.iommufd.kernel.ioctl_unchecked(
                self.iommufd.fd.as_fd(),
                req::IOMMU_IOAS_MAP,
                Arg::InOut(arg.as_mut_bytes()),
            )
        }
        .map_err(|errno| DmaError::Ioctl {
            ioctl: req::IOMMU_IOAS_MAP.name,
            iova: iova.unwrap_or(0),
            size,
            errno,
        })?;
        Ok(arg.iova)
    }

    /// Unmaps `iova..iova + size` (`IOMMU_IOAS_UNMAP`), returning the bytes
    /// the kernel unmapped. The kernel unmaps only whole mappings inside
    /// the range (`ENOENT` for a range that covers none, or that would split
    /// one). Unmapping a range a guard owns makes that guard's own unmap
    /// fail later, and the guard can no longer be copied
    /// ([`DmaError::Stale`]: its IOVAs may map other memory by then).
    #[doc(alias = "IOMMU_IOAS_UNMAP")]
    pub fn unmap_raw(&self, iova: u64, size: u64) -> Result<u64, DmaError> {
        let unmapped = self
            .raw_unmaps
            .around(iova, size, || self.unmap_range(iova, size))?;
        // Every mapping inside the range is gone (iommufd never unmaps part
        // of one).
        self.orphans.range_gone(iova, size, false);
        Ok(unmapped)
    }

    /// Unmaps everything (`IOMMU_IOAS_UNMAP` of the whole IOVA space). Takes
    /// `&mut self`: no guard can be alive. On success the pages of every
    /// guard whose unmap had failed are freed.
    #[doc(alias = "IOMMU_IOAS_UNMAP")]
    pub fn unmap_all(&mut self) -> Result<u64, DmaError> {
        let unmapped = self.unmap_range(0, u64::MAX)?;
        self.orphans.all_gone();
        // No guard is alive (`&mut self`): no record can concern one.
        self.raw_unmaps.clear();
        Ok(unmapped)
    }

    /// Destroys the IOAS now (`IOMMU_DESTROY`), reporting the kernel's
    /// answer; on failure (`EBUSY` while a device is attached) the IOAS is
    /// handed back, unchanged.
    #[doc(alias = "IOMMU_DESTROY")]
    pub fn destroy(self) -> Result<(), DestroyError<'f>> {
        match self.iommufd.destroy(self.id) {
            Ok(()) => {
                let mut this = self;
                this.orphans.all_gone();
                // Destroyed: Drop must not destroy again (the id may be
                // reused by a new object).
                this.destroyed = true;
                Ok(())
            }
            Err(error) => Err(DestroyError { ioas: self, error }),
        }
    }

    /// Whether the IOAS maps with huge pages where it can
    /// (`IOMMU_OPTION_HUGE_PAGES`, get; on by default).
    #[doc(alias = "IOMMU_OPTION")]
    pub fn huge_pages(&self) -> Result<bool, IommufdError> {
        self.iommufd
            .option(sys::IOMMU_OPTION_HUGE_PAGES, self.id, None)
            .map(|v| v != 0)
    }

    /// Sets `IOMMU_OPTION_HUGE_PAGES` for this IOAS (only while it has no
    /// mapping and no device: the kernel answers `EBUSY` otherwise).
    #[doc(alias = "IOMMU_OPTION")]
    pub fn set_huge_pages(&self, on: bool) -> Result<(), IommufdError> {
        self.iommufd
            .option(sys::IOMMU_OPTION_HUGE_PAGES, self.id, Some(u64::from(on)))
            .map(drop)
    }

    /// How many guards failed to unmap and are not yet confirmed gone.
    pub fn orphaned_mappings(&self) -> usize {
        self.orphans.count()
    }

    #[inline]
    fn unmap_range(&self, iova: u64, size: u64) -> Result<u64, DmaError> {
        let mut arg = sys::iommu_ioas_unmap {
            size: size_of::<sys::iommu_ioas_unmap>() as u32,
            ioas_id: self.id,
            iova,
            length: size,
        };
        self.iommufd
            .kernel
            .ioctl(
                self.iommufd.fd.as_fd(),
                req::IOMMU_IOAS_UNMAP,
                Arg::InOut(arg.as_mut_bytes()),
            )
            .map_err(|errno| DmaError::Ioctl {
                ioctl: req::IOMMU_IOAS_UNMAP.name,
                iova,
                size,
                errno,
            })?;
        Ok(arg.length)
    }
}

impl Drop for Ioas<'_> {
    fn drop(&mut self) {
        // Destroying the IOAS removes its mappings: the orphans' pages may
        // then go. If it fails (EBUSY: a device is still attached), the IOAS
        // lives on in the kernel with its mappings, and the orphans' pages
        // must never be freed.
        // (Dropping an orphan record without releasing it leaks its pages.)
        if !self.destroyed && self.iommufd.destroy(self.id).is_ok() {
            self.orphans.all_gone();
        }
    }
}

/// `IOMMU_IOAS_MAP_*` flags (`IOMMU_IOAS_COPY` takes the same).
pub(super) fn map_flags(iova: Option<u64>, access: DmaAccess) -> u32 {
    let mut flags = 0;
    if iova.is_some() {
        flags |= sys::IOMMU_IOAS_MAP_FIXED_IOVA;
    }
    if access.device_reads() {
        flags |= sys::IOMMU_IOAS_MAP_READABLE;
    }
    if access.device_writes() {
        flags |= sys::IOMMU_IOAS_MAP_WRITEABLE;
    }
    flags
}

/// A live mapping of a [`DmaBuffer`] in an [`Ioas`]; unmaps on drop
/// (`IOMMU_IOAS_UNMAP`). Borrows the IOAS (`'a`, so it cannot be destroyed;
/// `'f` is the IOAS's own borrow of its [`Iommufd`]) and the buffer (`'b`,
/// so it cannot be freed). A failed unmap in `Drop` keeps the buffer's
/// pages until the kernel confirms the range gone.
///
/// [`Ioas::copy`] makes a second guard over the same buffer in another
/// IOAS: it borrows that IOAS and the buffer, not this guard or its IOAS.
#[must_use = "dropping the guard unmaps the buffer at once"]
pub struct IoasMapping<'a, 'f, 'b> {
    ioas: &'a Ioas<'f>,
    buffer: &'b DmaBuffer,
    iova: u64,
    size: u64,
    /// The IOAS's raw-unmap count just before the mapping was made.
    stamp: u64,
}

impl fmt::Debug for IoasMapping<'_, '_, '_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IoasMapping")
            .field("ioas", &self.ioas.id)
            .field("iova", &self.iova)
            .field("size", &self.size)
            .finish_non_exhaustive()
    }
}

impl<'a, 'f, 'b> IoasMapping<'a, 'f, 'b> {
    /// The IOVA devices use.
    pub fn iova(&self) -> u64 {
        self.iova
    }

    /// The mapped size in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Unmaps now, reporting the kernel's answer; on failure the IOAS keeps
    /// the pages until the kernel confirms the range gone.
    #[doc(alias = "IOMMU_IOAS_UNMAP")]
    pub fn unmap(self) -> Result<(), DmaError> {
        let this = std::mem::ManuallyDrop::new(self);
        this.do_unmap().inspect_err(|_| this.orphan())
    }

    /// Unmaps now; on failure the guard comes back inside the error.
    #[doc(alias = "IOMMU_IOAS_UNMAP")]
    pub fn try_unmap(self) -> Result<(), UnmapError<IoasMapping<'a, 'f, 'b>>> {
        try_unmap_with(self, Self::do_unmap)
    }

    #[cold]
    fn orphan(&self) {
        self.ioas
            .orphans
            .adopt(self.iova, self.size, self.buffer.pages.clone());
    }

    #[inline]
    fn do_unmap(&self) -> Result<(), DmaError> {
        let unmapped = self
            .ioas
            .unmap_range(self.iova, self.size)
            // Failed: part of the range may be gone (the kernel stops at the
            // first area it cannot unmap), and other memory may be mapped
            // there later, so a guard handed back can no longer be copied.
            .inspect_err(|_| self.ioas.raw_unmaps.record(self.iova, self.size))?;
        if unmapped < self.size {
            self.ioas.raw_unmaps.record(self.iova, self.size);
            // Not all of it went: keep the pages.
            return Err(DmaError::PartialUnmap {
                ioctl: req::IOMMU_IOAS_UNMAP.name,
                iova: self.iova,
                size: self.size,
                unmapped,
            });
        }
        self.buffer.release();
        Ok(())
    }
}

impl Drop for IoasMapping<'_, '_, '_> {
    #[inline]
    fn drop(&mut self) {
        if self.do_unmap().is_err() {
            self.orphan();
        }
    }
}

/// A VFIO device cdev (`/dev/vfio/devices/vfioN`) not yet bound to an
/// iommufd: the kernel refuses every device request but the bind, so this
/// type offers nothing else.
#[derive(Debug)]
pub struct CdevDevice {
    kernel: Kernel,
    fd: OwnedFd,
}

/// A failed bind: the device, handed back, and why.
#[derive(Debug, thiserror::Error)]
#[error("binding the device to the iommufd failed: {error}")]
pub struct BindError {
    /// The device, still unbound; `None` when the kernel bound it but it
    /// could not be read afterwards (`VFIO_DEVICE_GET_INFO` failed): its fd
    /// is then closed, which undoes the bind.
    pub device: Option<CdevDevice>,
    /// Why.
    #[source]
    pub error: IommufdError,
}

impl CdevDevice {
    /// The cdev node of a PCI device, from sysfs
    /// (`/sys/bus/pci/devices/<addr>/vfio-dev/vfioN`): needs the device
    /// bound to vfio-pci on a kernel with `CONFIG_VFIO_DEVICE_CDEV`.
    ///
    /// Linux (6.12) makes no cdev for a device in a no-IOMMU group (its
    /// sysfs `vfio-dev/vfioN` exists, its `/dev/vfio/devices/vfioN` does
    /// not): that is [`IommufdError::NoIommu`], known the way
    /// [`Group::id_of_pci_device`](crate::Group::id_of_pci_device) knows a
    /// no-IOMMU group.
    pub fn path_of_pci_device(address: &str) -> Result<PathBuf, IommufdError> {
        let path = Self::cdev_of_pci_device(address);
        if path.as_ref().is_ok_and(|p| p.exists()) {
            return path;
        }
        // No cdev: a no-IOMMU device has none to find.
        match crate::Group::id_of_pci_device(address) {
            Ok(id) if id.noiommu => Err(IommufdError::NoIommu {
                address: address.into(),
            }),
            _ => path,
        }
    }

    /// The cdev node sysfs names for a PCI device (it may not exist).
    fn cdev_of_pci_device(address: &str) -> Result<PathBuf, IommufdError> {
        let dir = Path::new("/sys/bus/pci/devices")
            .join(address)
            .join("vfio-dev");
        let entries = std::fs::read_dir(&dir).map_err(|e| IommufdError::Sysfs {
            path: dir.clone(),
            what: format!(
                "{e} (no VFIO device cdev: is the device bound to vfio-pci, on a kernel \
                 with CONFIG_VFIO_DEVICE_CDEV?)"
            ),
        })?;
        let mut names: Vec<String> = entries
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("vfio") && n[4..].bytes().all(|b| b.is_ascii_digit()))
            .collect();
        names.sort();
        match names.as_slice() {
            [one] => Ok(Path::new("/dev/vfio/devices").join(one)),
            [] => Err(IommufdError::Sysfs {
                path: dir,
                what: "no vfioN entry".into(),
            }),
            _ => Err(IommufdError::Sysfs {
                path: dir,
                what: format!("several entries: {names:?}"),
            }),
        }
    }

    /// Opens the cdev of a PCI device (see
    /// [`path_of_pci_device`](Self::path_of_pci_device)).
    pub fn open_pci(address: &str) -> Result<CdevDevice, IommufdError> {
        Self::open(&Self::path_of_pci_device(address)?)
    }

    /// Opens a cdev node.
    pub fn open(path: &Path) -> Result<CdevDevice, IommufdError> {
        Self::open_in(Kernel::host(), path)
    }

    /// Opens a cdev node of `kernel`.
    pub(crate) fn open_in(kernel: Kernel, path: &Path) -> Result<CdevDevice, IommufdError> {
        let fd = kernel.open(path).map_err(|errno| IommufdError::Open {
            path: path.into(),
            errno,
        })?;
        Ok(CdevDevice { kernel, fd })
    }

    /// Adopts an already-open, unbound cdev fd.
    pub fn from_fd(fd: OwnedFd) -> CdevDevice {
        CdevDevice {
            kernel: Kernel::for_fd(fd.as_fd()),
            fd,
        }
    }

    /// Binds the device to `iommufd` (`VFIO_DEVICE_BIND_IOMMUFD`); from then
    /// on it is a [`Device`]. While bound, its group cannot be opened
    /// (`EBUSY`), and a device whose group is open cannot be bound.
    #[doc(alias = "VFIO_DEVICE_BIND_IOMMUFD")]
    pub fn bind(self, iommufd: &Iommufd) -> Result<BoundDevice, BindError> {
        use std::os::fd::AsRawFd;
        // Field by field over zeroes: after 6.12 the kernel appended `token_uuid_ptr`
        // (read only with VFIO_DEVICE_BIND_FLAG_TOKEN). The full size with
        // the new field zero binds on 6.12 too: it reads the first
        // offsetofend(out_devid) bytes and needs `argsz` to be at least that.
        let mut arg = sys::vfio_device_bind_iommufd::new_zeroed();
        arg.argsz = size_of::<sys::vfio_device_bind_iommufd>() as u32;
        arg.iommufd = iommufd.as_fd().as_raw_fd();
        let bound = self.kernel.ioctl(
            self.fd.as_fd(),
            req::VFIO_DEVICE_BIND_IOMMUFD,
            Arg::InOut(arg.as_mut_bytes()),
        );
        if let Err(errno) = bound {
            return Err(BindError {
                device: Some(self),
                error: IommufdError::Ioctl {
                    ioctl: req::VFIO_DEVICE_BIND_IOMMUFD.name,
                    errno,
                },
            });
        }
        // Bound: the kernel keeps the binding until the fd closes, so if
        // reading the device fails now there is no unbound device to hand
        // back (the fd is closed, which unbinds it).
        let device = Device::from_kernel_fd(self.kernel, self.fd).map_err(|e| BindError {
            device: None,
            error: e.into(),
        })?;
        Ok(BoundDevice {
            device,
            devid: arg.out_devid,
            iommufd: std::sync::Arc::downgrade(&iommufd.token),
        })
    }
}

/// A cdev bound to an iommufd: the [`Device`] (regions, IRQs, resets, by
/// `Deref`) plus attach and detach.
#[derive(Debug)]
pub struct BoundDevice {
    device: Device,
    devid: u32,
    /// The token of the [`Iommufd`] it is bound to (a `Weak` keeps the
    /// token's allocation, so no later `Iommufd`'s token can share its
    /// address).
    iommufd: std::sync::Weak<()>,
}

impl BoundDevice {
    /// The iommufd device id the kernel gave at bind.
    pub fn devid(&self) -> u32 {
        self.devid
    }

    /// Attaches the device to `ioas` (`VFIO_DEVICE_ATTACH_IOMMUFD_PT`): its
    /// DMA now goes through that IOAS. Returns the page-table id the kernel
    /// answers with (the automatic HWPT it made or found for the IOAS).
    /// Attaching again replaces the attachment.
    #[doc(alias = "VFIO_DEVICE_ATTACH_IOMMUFD_PT")]
    /// An IOAS of another iommufd is refused before the call
    /// ([`IommufdError::OtherIommufd`]): its id would name some other
    /// object of this device's context.
    pub fn attach(&self, ioas: &Ioas<'_>) -> Result<u32, IommufdError> {
        self.attach_pt(ioas.id, ioas.iommufd)
    }

    /// Whether this device is bound to `iommufd`.
    fn bound_to(&self, iommufd: &Iommufd) -> bool {
        std::ptr::eq(
            self.iommufd.as_ptr(),
            std::sync::Arc::as_ptr(&iommufd.token),
        )
    }

    fn attach_pt(&self, pt_id: u32, owner: &Iommufd) -> Result<u32, IommufdError> {
        if !self.bound_to(owner) {
            return Err(IommufdError::OtherIommufd {
                ioctl: req::VFIO_DEVICE_ATTACH_IOMMUFD_PT.name,
            });
        }
        // Field by field over zeroes: after 6.12 the kernel appended `pasid` (read only
        // with VFIO_DEVICE_ATTACH_PASID); 6.12 needs `argsz` to reach `pt_id`.
        let mut arg = sys::vfio_device_attach_iommufd_pt::new_zeroed();
        arg.argsz = size_of::<sys::vfio_device_attach_iommufd_pt>() as u32;
        arg.pt_id = pt_id;
        self.ioctl(req::VFIO_DEVICE_ATTACH_IOMMUFD_PT, arg.as_mut_bytes())?;
        Ok(arg.pt_id)
    }

    /// A device request through the kernel seam, its error named.
    fn ioctl(&self, request: crate::kernel::Request, arg: &mut [u8]) -> Result<(), IommufdError> {
        self.device
            .kernel()
            .ioctl(self.device.as_fd(), request, Arg::InOut(arg))
            .map(drop)
            .map_err(|errno| IommufdError::Ioctl {
                ioctl: request.name,
                errno,
            })
    }

    /// Attaches the device to a HWPT the caller allocated
    /// ([`Iommufd::alloc_hwpt`]), or replaces its attachment with it; the
    /// page-table id the kernel answers (the HWPT's own).
    #[doc(alias = "VFIO_DEVICE_ATTACH_IOMMUFD_PT")]
    pub fn attach_hwpt(&self, hwpt: &Hwpt<'_>) -> Result<u32, IommufdError> {
        self.attach_pt(hwpt.id, hwpt.iommufd)
    }

    /// Detaches the device from its IOAS (`VFIO_DEVICE_DETACH_IOMMUFD_PT`):
    /// its DMA is blocked until it is attached again.
    #[doc(alias = "VFIO_DEVICE_DETACH_IOMMUFD_PT")]
    pub fn detach(&self) -> Result<(), IommufdError> {
        let mut arg = sys::vfio_device_detach_iommufd_pt {
            argsz: size_of::<sys::vfio_device_detach_iommufd_pt>() as u32,
            ..FromBytes::new_zeroed()
        };
        self.ioctl(req::VFIO_DEVICE_DETACH_IOMMUFD_PT, arg.as_mut_bytes())
    }
}

impl std::ops::Deref for BoundDevice {
    type Target = Device;
    fn deref(&self) -> &Device {
        &self.device
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(num: u32, align: u64) -> Vec<u8> {
        let h = sys::iommu_ioas_iova_ranges {
            size: size_of::<sys::iommu_ioas_iova_ranges>() as u32,
            num_iovas: num,
            out_iova_alignment: align,
            ..FromBytes::new_zeroed()
        };
        h.as_bytes().to_vec()
    }

    fn ranges(r: &[(u64, u64)]) -> Vec<u8> {
        r.iter()
            .flat_map(|&(start, last)| sys::iommu_iova_range { start, last }.as_bytes().to_vec())
            .collect()
    }

    #[test]
    fn iova_ranges_decode_and_refuse_what_cannot_be() {
        let two = ranges(&[(0, 0xfedf_ffff), (0xfef0_0000, 0x7f_ffff_ffff)]);
        let got = parse_iova_ranges(&head(2, 0x1000), &two).unwrap();
        assert_eq!(got.alignment, 0x1000);
        assert_eq!(
            got.ranges,
            [
                IovaRange {
                    start: 0,
                    end: 0xfedf_ffff
                },
                IovaRange {
                    start: 0xfef0_0000,
                    end: 0x7f_ffff_ffff
                }
            ]
        );
        assert!(got.ranges[0].contains(0x10_0000, 0x1000));
        assert!(!got.ranges[0].contains(0xfedf_f000, 0x2000));
        assert!(!got.ranges[0].contains(0, 0));
        // A count past what the buffer holds, a reversed range, an alignment
        // that is no power of two, a truncated header: refused, no panic.
        assert!(parse_iova_ranges(&head(3, 0x1000), &two).is_err());
        assert!(parse_iova_ranges(&head(u32::MAX, 0x1000), &two).is_err());
        assert!(parse_iova_ranges(&head(1, 0x1000), &ranges(&[(5, 4)])).is_err());
        assert!(parse_iova_ranges(&head(2, 0x1800), &two).is_err());
        assert!(parse_iova_ranges(&head(2, 0x1000)[..8], &two).is_err());
        // No ranges and no alignment: an empty IOAS answer, alignment 1.
        let none = parse_iova_ranges(&head(0, 0), &[]).unwrap();
        assert!(none.ranges.is_empty());
        assert_eq!(none.alignment, 1);
    }

    #[test]
    fn hw_info_decodes_vtd_and_keeps_other_types_raw() {
        let mut h = crate::abi::HwInfo::new_zeroed();
        h.data_type = sys::IOMMU_HW_INFO_TYPE_INTEL_VTD;
        h.out_capabilities = u64::from(sys::IOMMU_HW_CAP_DIRTY_TRACKING);
        let vtd = sys::iommu_hw_info_vtd {
            flags: 1,
            __reserved: 0,
            cap_reg: 0xd200_860f,
            ecap_reg: 0xf0_0f5e,
        };
        let info = HwInfo::parse(h.as_bytes(), vtd.as_bytes()).unwrap();
        assert_eq!(
            info.data,
            HwInfoData::IntelVtd {
                flags: 1,
                cap_reg: 0xd200_860f,
                ecap_reg: 0xf0_0f5e
            }
        );
        assert!(info.dirty_tracking());
        // VT-d data shorter than its struct, or a truncated header: refused.
        assert!(HwInfo::parse(h.as_bytes(), &vtd.as_bytes()[..8]).is_err());
        assert!(HwInfo::parse(&h.as_bytes()[..20], vtd.as_bytes()).is_err());
        h.data_type = 4;
        h.out_capabilities = 0;
        let other = HwInfo::parse(h.as_bytes(), &[1, 2, 3]).unwrap();
        assert_eq!(
            other.data,
            HwInfoData::Other {
                data_type: 4,
                bytes: vec![1, 2, 3]
            }
        );
        assert!(!other.dirty_tracking());
        h.data_type = sys::IOMMU_HW_INFO_TYPE_NONE;
        assert_eq!(
            HwInfo::parse(h.as_bytes(), &[]).unwrap().data,
            HwInfoData::None
        );
    }

    #[test]
    fn hw_info_decodes_arm_smmuv3_and_refuses_short_data() {
        let mut h = crate::abi::HwInfo::new_zeroed();
        h.data_type = 2; // IOMMU_HW_INFO_TYPE_ARM_SMMUV3 (Linux 6.13+)
        h.out_max_pasid_log2 = 20;
        // flags, reserved, IDR0..5, IIDR, AIDR: ten native-endian words.
        let words: [u32; 10] = [
            0,
            0,
            0x0c8a_7efb,
            0x2,
            0x3,
            0x4,
            0x0000_0075,
            0x5,
            0x43b,
            0x2,
        ];
        let data: Vec<u8> = words.iter().flat_map(|w| w.to_ne_bytes()).collect();
        let info = HwInfo::parse(h.as_bytes(), &data).unwrap();
        assert_eq!(
            info.data,
            HwInfoData::ArmSmmuV3 {
                flags: 0,
                idr: [0x0c8a_7efb, 0x2, 0x3, 0x4, 0x0000_0075, 0x5],
                iidr: 0x43b,
                aidr: 0x2
            }
        );
        assert_eq!(info.max_pasid_log2, 20);
        // Longer data (a newer kernel's extra words) decodes the same;
        // shorter than the struct, by a word or entirely, is refused.
        let mut longer = data.clone();
        longer.extend_from_slice(&[0xff; 8]);
        assert_eq!(HwInfo::parse(h.as_bytes(), &longer).unwrap(), info);
        for cut in [0, 4, 36, 39] {
            assert!(HwInfo::parse(h.as_bytes(), &data[..cut]).is_err(), "{cut}");
        }
    }

    /// The simulator binds as 6.12 does: `argsz` at least the 6.12 struct
    /// (offsetofend(out_devid) = 16), so both a 6.12-era caller's 16 and the
    /// 7.2 struct's 24 the crate sends bind; 15 is EINVAL.
    #[cfg(feature = "sim")]
    #[test]
    fn sim_binds_with_the_6_12_or_the_7_2_argsz() {
        use std::os::fd::AsRawFd;
        let sim = crate::sim::Simulator::new();
        let iommufd = sim.open_iommufd().unwrap();
        for (argsz, ok) in [(15u32, false), (16, true), (24, true)] {
            let cdev = sim.open_cdev("0000:01:00.0").unwrap();
            // 7.2's struct: argsz @ 0, flags @ 4, iommufd @ 8, out_devid @ 12,
            // token_uuid_ptr @ 16 (zero).
            let mut buf = [0u8; 24];
            buf[..4].copy_from_slice(&argsz.to_ne_bytes());
            buf[8..12].copy_from_slice(&iommufd.as_fd().as_raw_fd().to_ne_bytes());
            // SAFETY: no flags, so no user pointer is followed; `argsz` is at
            // most the buffer's 24 bytes, so the kernel's accesses stay inside
            // it. (The seam's own check would refuse an `argsz` below the
            // struct the crate sends.)
            let r = unsafe {
                cdev.kernel.ioctl_unchecked(
                    cdev.fd.as_fd(),
                    req::VFIO_DEVICE_BIND_IOMMUFD,
                    Arg::InOut(&mut buf),
                )
            };
            let out_devid = u32::from_ne_bytes([buf[12], buf[13], buf[14], buf[15]]);
            match ok {
                true => {
                    assert_eq!(r, Ok(0), "argsz {argsz}");
                    assert_ne!(out_devid, 0, "argsz {argsz}: a device id");
                }
                false => assert_eq!(r, Err(nix::errno::Errno::EINVAL), "argsz {argsz}"),
            }
        }
    }

    #[test]
    fn ioas_map_and_ranges_never_take_the_safe_path() {
        // Both carry a pointer the kernel follows: the seam refuses them
        // without the unchecked call.
        let arg = head(1, 0);
        for request in [
            req::IOMMU_IOAS_IOVA_RANGES,
            req::IOMMU_IOAS_MAP,
            req::IOMMU_GET_HW_INFO,
            req::IOMMU_HWPT_ALLOC,
        ] {
            assert!(crate::kernel::check_shape(request.shape, &Arg::In(&arg)).is_err());
        }
        // A bind with a flag (the newer token pointer) is refused too.
        let mut bind = sys::vfio_device_bind_iommufd::new_zeroed();
        bind.argsz = size_of::<sys::vfio_device_bind_iommufd>() as u32;
        bind.flags = 1; // VFIO_DEVICE_BIND_FLAG_TOKEN (after 6.12)
        bind.iommufd = 3;
        let shape = req::VFIO_DEVICE_BIND_IOMMUFD.shape;
        assert!(crate::kernel::check_shape(shape, &Arg::In(bind.as_bytes())).is_err());
        bind.flags = 0;
        assert!(crate::kernel::check_shape(shape, &Arg::In(bind.as_bytes())).is_ok());
    }
}
