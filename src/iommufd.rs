//! iommufd (`/dev/iommu`) and the VFIO device cdev
//! (`/dev/vfio/devices/vfioN`): the kernel's current VFIO interface (Linux
//! 6.2+), beside the container/group one.
//!
//! The order the kernel imposes, as types:
//!
//! ```text
//! Iommufd::open() ── alloc_ioas() ──▶ Ioas ── map(&DmaBuffer) ──▶ IoasMapping (unmaps on drop)
//! CdevDevice::open_pci(addr) ── bind(&Iommufd) ──▶ BoundDevice ── attach(&Ioas) ──▶ DMA through the IOAS
//!                                                   └── Deref<Target = Device>: regions, IRQs, resets
//! ```
//!
//! A cdev that is not bound can do nothing but bind (the kernel answers
//! every other device request with `EINVAL`), so [`CdevDevice`] has no
//! device operations at all; [`BoundDevice`] derefs to the same [`Device`]
//! the group path opens: one copy of regions, MMIO, IRQs and resets.
//!
//! DMA memory follows the container's rules: an [`IoasMapping`] borrows
//! the [`Ioas`] and the [`DmaBuffer`], so the buffer cannot be freed while
//! mapped; a failed unmap keeps the pages (the IOAS's orphan record) until
//! the kernel confirms the range gone — an unmap of all of the IOAS, or its
//! destruction. An IOAS whose destruction fails (`EBUSY`: a device is still
//! attached) may keep its mappings, so their pages are then never freed.
//!
//! Only the running kernel offers iommufd: the simulator does not model it
//! (yet).

use std::fmt;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use crate::device::Device;
use crate::dma::{DmaAccess, DmaBuffer, Orphans, UnmapError, try_unmap_with};
use crate::error::{DeviceError, DmaError, Errno};
use crate::kernel::{Arg, Kernel, req};
use crate::sys::{self, FromBytes, IntoBytes, SliceBytes};

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
}

impl Iommufd {
    /// Opens `/dev/iommu`.
    pub fn open() -> Result<Iommufd, IommufdError> {
        let kernel = Kernel::host();
        let fd = kernel
            .open(Path::new(IOMMUFD_PATH))
            .map_err(|errno| IommufdError::Open {
                path: IOMMUFD_PATH.into(),
                errno,
            })?;
        Ok(Iommufd { kernel, fd })
    }

    /// Adopts an already-open iommufd (privilege separation).
    pub fn from_fd(fd: OwnedFd) -> Iommufd {
        Iommufd {
            kernel: Kernel::for_fd(fd.as_fd()),
            fd,
        }
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
            destroyed: false,
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

/// A usable IOVA range of an IOAS, `start..=last`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IoasRange {
    /// First usable IOVA.
    pub start: u64,
    /// Last usable IOVA (inclusive).
    pub last: u64,
}

impl IoasRange {
    /// Whether `iova..iova + size` lies inside this range.
    pub fn contains(&self, iova: u64, size: u64) -> bool {
        size != 0
            && iova >= self.start
            && iova
                .checked_add(size - 1)
                .is_some_and(|end| end <= self.last)
    }
}

/// The usable IOVA ranges of an IOAS and the alignment the kernel asks of
/// every mapping (`IOMMU_IOAS_IOVA_RANGES`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IoasRanges {
    /// The ranges, in the kernel's order (ascending).
    pub ranges: Vec<IoasRange>,
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
    let ranges: Vec<IoasRange> = entries
        .map(|r| IoasRange {
            start: r.start,
            last: r.last,
        })
        .collect();
    if ranges.iter().any(|r| r.start > r.last) {
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
    pub fn map<'a>(
        &'a self,
        buffer: &'a DmaBuffer,
        iova: u64,
        access: DmaAccess,
    ) -> Result<IoasMapping<'a, 'f>, DmaError> {
        self.map_buffer(buffer, Some(iova), access)
    }

    /// Maps the whole of `buffer` at an IOVA the kernel chooses
    /// (`IOMMU_IOAS_MAP` without `FIXED_IOVA`); the guard's
    /// [`iova`](IoasMapping::iova) says where.
    #[doc(alias = "IOMMU_IOAS_MAP")]
    pub fn map_anywhere<'a>(
        &'a self,
        buffer: &'a DmaBuffer,
        access: DmaAccess,
    ) -> Result<IoasMapping<'a, 'f>, DmaError> {
        self.map_buffer(buffer, None, access)
    }

    fn map_buffer<'a>(
        &'a self,
        buffer: &'a DmaBuffer,
        iova: Option<u64>,
        access: DmaAccess,
    ) -> Result<IoasMapping<'a, 'f>, DmaError> {
        let size = buffer.len() as u64;
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
    pub unsafe fn map_raw(
        &self,
        vaddr: *mut u8,
        size: u64,
        iova: Option<u64>,
        access: DmaAccess,
    ) -> Result<u64, DmaError> {
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
        let mut arg = sys::iommu_ioas_map {
            size: size_of::<sys::iommu_ioas_map>() as u32,
            flags,
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
    /// fail later.
    #[doc(alias = "IOMMU_IOAS_UNMAP")]
    pub fn unmap_raw(&self, iova: u64, size: u64) -> Result<u64, DmaError> {
        let unmapped = self.unmap_range(iova, size)?;
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

    /// How many guards failed to unmap and are not yet confirmed gone.
    pub fn orphaned_mappings(&self) -> usize {
        self.orphans.count()
    }

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

/// A live mapping of a [`DmaBuffer`] in an [`Ioas`]; unmaps on drop
/// (`IOMMU_IOAS_UNMAP`). Borrows the IOAS (so it cannot be destroyed) and
/// the buffer (so it cannot be freed). A failed unmap in `Drop` keeps the
/// buffer's pages until the kernel confirms the range gone.
#[must_use = "dropping the guard unmaps the buffer at once"]
pub struct IoasMapping<'a, 'f> {
    ioas: &'a Ioas<'f>,
    buffer: &'a DmaBuffer,
    iova: u64,
    size: u64,
}

impl fmt::Debug for IoasMapping<'_, '_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IoasMapping")
            .field("ioas", &self.ioas.id)
            .field("iova", &self.iova)
            .field("size", &self.size)
            .finish_non_exhaustive()
    }
}

impl<'a, 'f> IoasMapping<'a, 'f> {
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
    pub fn try_unmap(self) -> Result<(), UnmapError<IoasMapping<'a, 'f>>> {
        try_unmap_with(self, Self::do_unmap)
    }

    #[cold]
    fn orphan(&self) {
        self.ioas
            .orphans
            .adopt(self.iova, self.size, self.buffer.pages.clone());
    }

    fn do_unmap(&self) -> Result<(), DmaError> {
        let unmapped = self.ioas.unmap_range(self.iova, self.size)?;
        if unmapped < self.size {
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

impl Drop for IoasMapping<'_, '_> {
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
    /// bound to vfio-pci on a kernel with `CONFIG_VFIO_DEVICE_CDEV`. (Linux
    /// 6.12 makes no cdev for a no-IOMMU device.)
    pub fn path_of_pci_device(address: &str) -> Result<PathBuf, IommufdError> {
        let dir = Path::new("/sys/bus/pci/devices")
            .join(address)
            .join("vfio-dev");
        let entries = std::fs::read_dir(&dir).map_err(|e| IommufdError::Sysfs {
            path: dir.clone(),
            what: format!(
                "{e} (no VFIO device cdev: is the device bound to vfio-pci, on a kernel \
                 with CONFIG_VFIO_DEVICE_CDEV, and not a no-IOMMU device?)"
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
        let kernel = Kernel::host();
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
        let mut arg = sys::vfio_device_bind_iommufd {
            argsz: size_of::<sys::vfio_device_bind_iommufd>() as u32,
            flags: 0,
            iommufd: iommufd.as_fd().as_raw_fd(),
            out_devid: 0,
        };
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
        })
    }
}

/// A cdev bound to an iommufd: the [`Device`] (regions, IRQs, resets, by
/// `Deref`) plus attach and detach.
#[derive(Debug)]
pub struct BoundDevice {
    device: Device,
    devid: u32,
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
    pub fn attach(&self, ioas: &Ioas<'_>) -> Result<u32, IommufdError> {
        // Field by field over zeroes: newer headers add fields (a PASID).
        let mut arg = sys::vfio_device_attach_iommufd_pt::new_zeroed();
        arg.argsz = size_of::<sys::vfio_device_attach_iommufd_pt>() as u32;
        arg.pt_id = ioas.id;
        self.device
            .kernel()
            .ioctl(
                self.device.as_fd(),
                req::VFIO_DEVICE_ATTACH_IOMMUFD_PT,
                Arg::InOut(arg.as_mut_bytes()),
            )
            .map_err(|errno| IommufdError::Ioctl {
                ioctl: req::VFIO_DEVICE_ATTACH_IOMMUFD_PT.name,
                errno,
            })?;
        Ok(arg.pt_id)
    }

    /// Detaches the device from its IOAS (`VFIO_DEVICE_DETACH_IOMMUFD_PT`):
    /// its DMA is blocked until it is attached again.
    #[doc(alias = "VFIO_DEVICE_DETACH_IOMMUFD_PT")]
    pub fn detach(&self) -> Result<(), IommufdError> {
        let mut arg = sys::vfio_device_detach_iommufd_pt {
            argsz: size_of::<sys::vfio_device_detach_iommufd_pt>() as u32,
            ..FromBytes::new_zeroed()
        };
        self.device
            .kernel()
            .ioctl(
                self.device.as_fd(),
                req::VFIO_DEVICE_DETACH_IOMMUFD_PT,
                Arg::InOut(arg.as_mut_bytes()),
            )
            .map(drop)
            .map_err(|errno| IommufdError::Ioctl {
                ioctl: req::VFIO_DEVICE_DETACH_IOMMUFD_PT.name,
                errno,
            })
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
                IoasRange {
                    start: 0,
                    last: 0xfedf_ffff
                },
                IoasRange {
                    start: 0xfef0_0000,
                    last: 0x7f_ffff_ffff
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
    fn ioas_map_and_ranges_never_take_the_safe_path() {
        // Both carry a pointer the kernel follows: the seam refuses them
        // without the unchecked call.
        let arg = head(1, 0);
        for request in [req::IOMMU_IOAS_IOVA_RANGES, req::IOMMU_IOAS_MAP] {
            assert!(crate::kernel::check_shape(request.shape, &Arg::In(&arg)).is_err());
        }
        // A bind with a flag (the newer token pointer) is refused too.
        let mut bind = sys::vfio_device_bind_iommufd {
            argsz: size_of::<sys::vfio_device_bind_iommufd>() as u32,
            flags: 1,
            iommufd: 3,
            out_devid: 0,
        };
        let shape = req::VFIO_DEVICE_BIND_IOMMUFD.shape;
        assert!(crate::kernel::check_shape(shape, &Arg::In(bind.as_bytes())).is_err());
        bind.flags = 0;
        assert!(crate::kernel::check_shape(shape, &Arg::In(bind.as_bytes())).is_ok());
    }
}
