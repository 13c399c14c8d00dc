//! The kernel seam: the one place that issues VFIO ioctls, `pread`/`pwrite`
//! and `mmap` on VFIO fds.
//!
//! Every request the typed API makes is a [`Request`]: its name (for errors),
//! its code (from [`sys`](crate::sys)), the fd class it belongs to, and the
//! *shape* of its argument. [`Kernel::ioctl`] checks the argument bytes
//! against that shape before the call, so the kernel can never read or write
//! past them: the safe path covers every request whose argument is
//! self-contained. The requests that carry a user pointer the kernel
//! dereferences (`MAP_DMA`'s `vaddr`) go through the `unsafe`
//! [`Kernel::ioctl_unchecked`], whose callers prove the pointer's contract.
//!
//! A backend sees only `(fd, request, argument bytes)`, which is what lets a
//! simulated kernel stand in for the real one without a second code path:
//! [`Kernel`] is either the host kernel or a [`sim`](crate::sim) machine, and
//! every method dispatches after the same checks.

use std::ffi::c_int;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::path::Path;
#[cfg(feature = "sim")]
use std::sync::Arc;

use nix::errno::Errno;

use crate::sys;

/// The `VFIO_DEVICE_FEATURE`s whose GET/SET data holds no user pointer (the
/// DMA logging features do: their ranges and bitmaps are user arrays).
pub(crate) const SELF_CONTAINED_FEATURES: &[u32] = &[
    sys::VFIO_DEVICE_FEATURE_MIGRATION,
    sys::VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE,
    sys::VFIO_DEVICE_FEATURE_MIG_DATA_SIZE,
    sys::VFIO_DEVICE_FEATURE_LOW_POWER_ENTRY,
    sys::VFIO_DEVICE_FEATURE_LOW_POWER_EXIT,
];

/// What a request's argument looks like, and so what [`Kernel::ioctl`] must
/// check before handing it to the kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Shape {
    /// No argument.
    None,
    /// An integer passed by value.
    Int,
    /// A pointer to a C `int` (4 bytes), read by the kernel.
    IntPtr,
    /// A NUL-terminated string, read by the kernel.
    CStr,
    /// A struct led by `u32 argsz`, at least `min` bytes; the kernel touches
    /// at most `argsz` bytes. Flags in `forbidden` (at offset 4) would make
    /// the kernel follow a user pointer, so they are refused here.
    Argsz { min: usize, forbidden: u32 },
    /// `VFIO_DEVICE_FEATURE`: a probe of any feature (no data moves), or a
    /// GET/SET of a feature whose data is self-contained (no user pointer:
    /// [`SELF_CONTAINED_FEATURES`]), within `argsz`.
    Feature,
    /// `vfio_pci_hot_reset`: `argsz`, `flags`, `count`, then `count` ints.
    /// The kernel reads `count` ints whatever `argsz` says (it only checks
    /// `argsz >= 12`), so `12 + 4 * count` must fit the buffer too.
    CountedInts,
    /// A struct that carries a user address the kernel dereferences
    /// (`MAP_DMA`'s `vaddr`), or a request that gives devices access to
    /// process memory without one (`IOMMU_IOAS_COPY`): never issued through
    /// the safe path.
    UserPointer,
}

/// One VFIO request as the typed API issues it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Request {
    pub(crate) name: &'static str,
    pub(crate) code: u32,
    pub(crate) shape: Shape,
}

macro_rules! request {
    // The class names the kind of fd the request is issued on (documentation:
    // the typed API only reaches each request from its own object type).
    ($(#[$attr:meta])* $name:ident, $class:ident, $shape:expr) => {
        $(#[$attr])*
        pub(crate) const $name: Request = Request {
            name: stringify!($name),
            code: sys::$name,
            shape: $shape,
        };
    };
}

const fn argsz(min: usize) -> Shape {
    Shape::Argsz { min, forbidden: 0 }
}

/// The requests the typed API issues.
pub(crate) mod req {
    use super::*;
    use core::mem::size_of;

    request!(VFIO_GET_API_VERSION, Container, Shape::None);
    request!(VFIO_CHECK_EXTENSION, Container, Shape::Int);
    request!(VFIO_SET_IOMMU, Container, Shape::Int);
    request!(
        VFIO_IOMMU_GET_INFO,
        Container,
        argsz(size_of::<sys::vfio_iommu_type1_info>())
    );
    // Carries `vaddr`: only through `ioctl_unchecked`. (Its number is also
    // VFIO_DEVICE_PCI_HOT_RESET's: the refusal is by shape, never by code.)
    request!(VFIO_IOMMU_MAP_DMA, Container, Shape::UserPointer);
    request!(
        VFIO_IOMMU_UNMAP_DMA,
        Container,
        Shape::Argsz {
            min: size_of::<sys::vfio_iommu_type1_dma_unmap>(),
            forbidden: sys::VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP | sys::VFIO_DMA_UNMAP_FLAG_VADDR,
        }
    );
    request!(
        VFIO_GROUP_GET_STATUS,
        Group,
        argsz(size_of::<sys::vfio_group_status>())
    );
    request!(VFIO_GROUP_SET_CONTAINER, Group, Shape::IntPtr);
    request!(VFIO_GROUP_UNSET_CONTAINER, Group, Shape::None);
    request!(VFIO_GROUP_GET_DEVICE_FD, Group, Shape::CStr);
    request!(
        VFIO_DEVICE_GET_INFO,
        Device,
        argsz(size_of::<sys::vfio_device_info>())
    );
    request!(
        VFIO_DEVICE_GET_REGION_INFO,
        Device,
        argsz(size_of::<sys::vfio_region_info>())
    );
    request!(
        VFIO_DEVICE_GET_IRQ_INFO,
        Device,
        argsz(size_of::<sys::vfio_irq_info>())
    );
    request!(
        VFIO_DEVICE_SET_IRQS,
        Device,
        argsz(size_of::<sys::vfio_irq_set>())
    );
    request!(VFIO_DEVICE_RESET, Device, Shape::None);
    request!(
        VFIO_DEVICE_GET_PCI_HOT_RESET_INFO,
        Device,
        argsz(size_of::<sys::vfio_pci_hot_reset_info>())
    );
    request!(VFIO_DEVICE_PCI_HOT_RESET, Device, Shape::CountedInts);
    request!(VFIO_DEVICE_FEATURE, Device, Shape::Feature);
    // `fd` is an eventfd number, not a pointer; no flag reaches memory.
    request!(
        VFIO_DEVICE_IOEVENTFD,
        Device,
        Shape::Argsz {
            min: size_of::<sys::vfio_device_ioeventfd>(),
            forbidden: !sys::VFIO_DEVICE_IOEVENTFD_SIZE_MASK,
        }
    );
    // The DMA logging features carry user arrays (ranges, bitmaps): the same
    // request through `ioctl_unchecked` only (`crate::dirty`).
    pub(crate) const VFIO_DEVICE_FEATURE_UNCHECKED: Request = Request {
        name: "VFIO_DEVICE_FEATURE",
        code: sys::VFIO_DEVICE_FEATURE,
        shape: Shape::UserPointer,
    };
    // GET_BITMAP's `bitmap.data` is a user pointer the kernel writes.
    request!(VFIO_IOMMU_DIRTY_PAGES, Container, Shape::UserPointer);
    // On a migration data fd (`crate::migration`).
    request!(
        VFIO_MIG_GET_PRECOPY_INFO,
        MigrationData,
        argsz(size_of::<sys::vfio_precopy_info>())
    );
    // iommufd and VFIO device cdev requests (`crate::iommufd`). Their
    // structs begin with `size`/`argsz` too, so the argsz shape applies;
    // the flags word at offset 4 is checked only where it is one.
    request!(
        IOMMU_IOAS_ALLOC,
        Iommufd,
        argsz(size_of::<sys::iommu_ioas_alloc>())
    );
    request!(
        IOMMU_DESTROY,
        Iommufd,
        argsz(size_of::<sys::iommu_destroy>())
    );
    // `allowed_iovas` is a user pointer the kernel writes through.
    request!(IOMMU_IOAS_IOVA_RANGES, Iommufd, Shape::UserPointer);
    // `user_va`: the memory devices will reach.
    request!(IOMMU_IOAS_MAP, Iommufd, Shape::UserPointer);
    // `allowed_iovas`: a user array the kernel reads.
    request!(IOMMU_IOAS_ALLOW_IOVAS, Iommufd, Shape::UserPointer);
    // No pointer, but it gives devices the pages of an existing mapping a
    // second time, as MAP gives new ones: only through `ioctl_unchecked`,
    // whose caller proves the memory outlives the copy.
    request!(IOMMU_IOAS_COPY, Iommufd, Shape::UserPointer);
    request!(
        IOMMU_IOAS_UNMAP,
        Iommufd,
        Shape::Argsz {
            min: size_of::<sys::iommu_ioas_unmap>(),
            forbidden: 0,
        }
    );
    // `option_id` at offset 4, not flags.
    request!(
        IOMMU_OPTION,
        Iommufd,
        Shape::Argsz {
            min: size_of::<sys::iommu_option>(),
            forbidden: 0,
        }
    );
    // `data_uptr`: a user buffer the kernel writes.
    request!(IOMMU_GET_HW_INFO, Iommufd, Shape::UserPointer);
    // `data_uptr`: driver data the kernel reads (for nested HWPTs).
    request!(IOMMU_HWPT_ALLOC, Iommufd, Shape::UserPointer);
    request!(
        VFIO_DEVICE_BIND_IOMMUFD,
        Device,
        Shape::Argsz {
            min: size_of::<sys::vfio_device_bind_iommufd>(),
            forbidden: !0,
        }
    );
    request!(
        VFIO_DEVICE_ATTACH_IOMMUFD_PT,
        Device,
        Shape::Argsz {
            min: size_of::<sys::vfio_device_attach_iommufd_pt>(),
            forbidden: !0,
        }
    );
    request!(
        VFIO_DEVICE_DETACH_IOMMUFD_PT,
        Device,
        Shape::Argsz {
            min: size_of::<sys::vfio_device_detach_iommufd_pt>(),
            forbidden: !0,
        }
    );
    // PAMU ("type2") container requests: only reachable from
    // `Container<Type2<_>>` (their numbers mean other things to other IOMMU
    // drivers and fd classes).
    request!(
        #[cfg(feature = "type2")]
        VFIO_IOMMU_PAMU_GET_ATTR,
        Container,
        argsz(size_of::<sys::vfio_pamu_attr>())
    );
    request!(
        #[cfg(feature = "type2")]
        VFIO_IOMMU_PAMU_SET_ATTR,
        Container,
        argsz(size_of::<sys::vfio_pamu_attr>())
    );
    request!(
        #[cfg(feature = "type2")]
        VFIO_IOMMU_PAMU_GET_MSI_BANK_COUNT,
        Container,
        Shape::None
    );
    request!(
        #[cfg(feature = "type2")]
        VFIO_IOMMU_PAMU_MAP_MSI_BANK,
        Container,
        argsz(size_of::<sys::vfio_pamu_msi_bank_map>())
    );
    request!(
        #[cfg(feature = "type2")]
        VFIO_IOMMU_PAMU_UNMAP_MSI_BANK,
        Container,
        argsz(size_of::<sys::vfio_pamu_msi_bank_unmap>())
    );
}

/// Why [`Kernel::ioctl`] refused an argument before the call. Always a bug in
/// the typed API, never the caller's fault; reported as `EINVAL`.
#[inline(always)]
pub(crate) fn check_shape(shape: Shape, arg: &Arg<'_>) -> Result<(), &'static str> {
    if shape == Shape::UserPointer {
        return Err("carries a user pointer: not for the safe path");
    }
    let bytes: &[u8] = match arg {
        Arg::None => {
            return if shape == Shape::None {
                Ok(())
            } else {
                Err("missing argument")
            };
        }
        Arg::Int(_) => {
            return if shape == Shape::Int {
                Ok(())
            } else {
                Err("unexpected integer")
            };
        }
        Arg::In(b) => b,
        Arg::InOut(b) => b,
    };
    let word = |at: usize| -> Option<u32> {
        let w = bytes.get(at..at + 4)?;
        Some(u32::from_ne_bytes([w[0], w[1], w[2], w[3]]))
    };
    match shape {
        Shape::None | Shape::Int => Err("unexpected buffer"),
        Shape::UserPointer => Err("carries a user pointer: not for the safe path"),
        Shape::IntPtr if bytes.len() == 4 => Ok(()),
        Shape::IntPtr => Err("an int pointer needs 4 bytes"),
        Shape::CStr if bytes.last() == Some(&0) => Ok(()),
        Shape::CStr => Err("string not NUL-terminated"),
        Shape::Argsz { min, forbidden } => {
            let argsz = word(0).ok_or("argument shorter than argsz")? as usize;
            let flags = word(4).ok_or("argument shorter than flags")?;
            if bytes.len() < min || argsz < min || argsz > bytes.len() {
                Err("argsz outside the argument buffer")
            } else if flags & forbidden != 0 {
                Err("flag would make the kernel follow a user pointer")
            } else {
                Ok(())
            }
        }
        Shape::CountedInts => {
            let argsz = word(0).ok_or("argument shorter than argsz")? as usize;
            let count = word(8).ok_or("argument shorter than count")? as usize;
            let needed = count.checked_mul(4).and_then(|n| n.checked_add(12));
            if argsz < 12 || argsz > bytes.len() || needed.is_none_or(|n| n > bytes.len()) {
                Err("count or argsz outside the argument buffer")
            } else {
                Ok(())
            }
        }
        Shape::Feature => {
            let argsz = word(0).ok_or("argument shorter than argsz")? as usize;
            let flags = word(4).ok_or("argument shorter than flags")?;
            let feature = flags & sys::VFIO_DEVICE_FEATURE_MASK;
            if argsz < 8 || argsz > bytes.len() {
                Err("argsz outside the argument buffer")
            } else if flags & sys::VFIO_DEVICE_FEATURE_PROBE != 0
                || SELF_CONTAINED_FEATURES.contains(&feature)
            {
                Ok(())
            } else {
                Err("this feature's data carries user pointers: not for the safe path")
            }
        }
    }
}

/// A request's argument.
#[derive(Debug)]
pub(crate) enum Arg<'a> {
    None,
    Int(c_int),
    /// Bytes the kernel reads.
    In(&'a [u8]),
    /// Bytes the kernel reads and writes back.
    InOut(&'a mut [u8]),
}

/// A handle on the kernel that serves VFIO requests.
#[derive(Clone, Debug, Default)]
pub(crate) struct Kernel {
    backend: Backend,
}

/// Who answers: the running kernel, or a simulated one.
#[derive(Clone, Debug, Default)]
enum Backend {
    #[default]
    Host,
    #[cfg(feature = "sim")]
    Sim(Arc<crate::sim::Machine>),
}

impl Kernel {
    /// The running kernel.
    pub(crate) fn host() -> Self {
        Kernel {
            backend: Backend::Host,
        }
    }

    /// A simulated kernel.
    #[cfg(feature = "sim")]
    pub(crate) fn sim(machine: Arc<crate::sim::Machine>) -> Self {
        Kernel {
            backend: Backend::Sim(machine),
        }
    }

    /// The kernel an adopted fd belongs to: a simulator's, if one of the
    /// live simulators made it, else the running kernel.
    pub(crate) fn for_fd(fd: BorrowedFd<'_>) -> Self {
        #[cfg(feature = "sim")]
        if let Some(machine) = crate::sim::owner_of(fd) {
            return Kernel::sim(machine);
        }
        let _ = fd;
        Kernel::host()
    }

    /// Whether this is a simulated kernel.
    #[cfg_attr(not(feature = "type2"), allow(dead_code))]
    pub(crate) fn is_sim(&self) -> bool {
        match self.backend {
            Backend::Host => false,
            #[cfg(feature = "sim")]
            Backend::Sim(_) => true,
        }
    }

    /// Opens a VFIO node read-write, close-on-exec.
    pub(crate) fn open(&self, path: &Path) -> Result<OwnedFd, Errno> {
        match &self.backend {
            Backend::Host => Ok(nix::fcntl::open(
                path,
                nix::fcntl::OFlag::O_RDWR | nix::fcntl::OFlag::O_CLOEXEC,
                nix::sys::stat::Mode::empty(),
            )?),
            #[cfg(feature = "sim")]
            Backend::Sim(machine) => machine.open(path),
        }
    }

    /// Issues `request` on `fd`, after checking the argument against the
    /// request's shape (see [`Shape`]). Always inlined: `request` is a
    /// constant and the argument usually a struct just filled in, so the
    /// check folds to a few compares where it is issued.
    #[inline(always)]
    pub(crate) fn ioctl(
        &self,
        fd: BorrowedFd<'_>,
        request: Request,
        arg: Arg<'_>,
    ) -> Result<c_int, Errno> {
        check_shape(request.shape, &arg).map_err(|_| Errno::EINVAL)?;
        // SAFETY: `check_shape` proved the kernel's accesses for this request
        // stay inside `arg` (argsz ≤ buffer length, a 4-byte int, or a
        // NUL-terminated string) and that no flag makes it follow a user
        // pointer; `request` is one of the `req` constants, each issued on
        // its own fd class by the typed API.
        unsafe { self.ioctl_unchecked(fd, request, arg) }
    }

    /// Issues `request` on `fd` with no shape check.
    ///
    /// # Safety
    ///
    /// Every memory access the kernel makes for this request must be valid:
    /// it must stay inside `arg`, and any user address the argument carries
    /// (`MAP_DMA`'s `vaddr` and `size`) must describe memory that the caller
    /// allows the device to read and write until it is unmapped.
    #[inline(always)]
    pub(crate) unsafe fn ioctl_unchecked(
        &self,
        fd: BorrowedFd<'_>,
        request: Request,
        arg: Arg<'_>,
    ) -> Result<c_int, Errno> {
        #[cfg(feature = "sim")]
        if let Backend::Sim(machine) = &self.backend {
            // SAFETY: the simulator's contract is this function's own (the
            // memory a MAP_DMA names is the device's until unmapped), which
            // our caller upholds.
            return unsafe { machine.ioctl(fd, request.code, arg) };
        }
        let fd = fd.as_raw_fd();
        let code = request.code as nix::sys::ioctl::ioctl_num_type;
        let ret = match arg {
            // SAFETY: a request without an argument touches no user memory.
            Arg::None => unsafe { libc::ioctl(fd, code) },
            // SAFETY: an integer argument carries no memory.
            Arg::Int(v) => unsafe { libc::ioctl(fd, code, v) },
            // SAFETY: the kernel only reads `b`, inside its bounds per the
            // caller's contract; the cast to *mut is what ioctl(2) takes.
            Arg::In(b) => unsafe { libc::ioctl(fd, code, b.as_ptr().cast_mut()) },
            // SAFETY: `b` is exclusively borrowed for the call and the kernel's
            // accesses stay inside it per the caller's contract.
            Arg::InOut(b) => unsafe { libc::ioctl(fd, code, b.as_mut_ptr()) },
        };
        Errno::result(ret)
    }

    /// Takes ownership of an fd a request returned (`GET_DEVICE_FD`).
    pub(crate) fn adopt_fd(&self, raw: c_int) -> OwnedFd {
        // SAFETY: `raw` is the return value of a successful ioctl that creates
        // a new fd (`VFIO_GROUP_GET_DEVICE_FD`): it is open and owned by no
        // one else in this process.
        unsafe { OwnedFd::from_raw_fd(raw) }
    }

    /// `pread(2)` on a device fd.
    pub(crate) fn pread(
        &self,
        fd: BorrowedFd<'_>,
        buf: &mut [u8],
        offset: u64,
    ) -> Result<usize, Errno> {
        match &self.backend {
            Backend::Host => crate::sys::file::pread(fd, buf, offset),
            #[cfg(feature = "sim")]
            Backend::Sim(machine) => machine.pread(fd, buf, offset),
        }
    }

    /// `read(2)` on a migration data fd.
    pub(crate) fn read(&self, fd: BorrowedFd<'_>, buf: &mut [u8]) -> Result<usize, Errno> {
        match &self.backend {
            Backend::Host => nix::unistd::read(fd, buf),
            #[cfg(feature = "sim")]
            Backend::Sim(machine) => machine.read(fd, buf),
        }
    }

    /// `write(2)` on a migration data fd.
    pub(crate) fn write(&self, fd: BorrowedFd<'_>, buf: &[u8]) -> Result<usize, Errno> {
        match &self.backend {
            Backend::Host => nix::unistd::write(fd, buf),
            #[cfg(feature = "sim")]
            Backend::Sim(machine) => machine.write(fd, buf),
        }
    }

    /// `pwrite(2)` on a device fd.
    pub(crate) fn pwrite(
        &self,
        fd: BorrowedFd<'_>,
        buf: &[u8],
        offset: u64,
    ) -> Result<usize, Errno> {
        match &self.backend {
            Backend::Host => crate::sys::file::pwrite(fd, buf, offset),
            #[cfg(feature = "sim")]
            Backend::Sim(machine) => machine.pwrite(fd, buf, offset),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argsz_bytes(argsz: u32, flags: u32, len: usize) -> Vec<u8> {
        let mut v = vec![0u8; len];
        v[..4].copy_from_slice(&argsz.to_ne_bytes());
        v[4..8].copy_from_slice(&flags.to_ne_bytes());
        v
    }

    #[test]
    fn argsz_must_fit_the_buffer() {
        let shape = req::VFIO_DEVICE_GET_INFO.shape;
        assert!(check_shape(shape, &Arg::In(&argsz_bytes(24, 0, 24))).is_ok());
        assert!(check_shape(shape, &Arg::In(&argsz_bytes(64, 0, 64))).is_ok());
        assert!(check_shape(shape, &Arg::In(&argsz_bytes(25, 0, 24))).is_err());
        assert!(check_shape(shape, &Arg::In(&argsz_bytes(16, 0, 24))).is_err());
        assert!(check_shape(shape, &Arg::In(&argsz_bytes(16, 0, 16))).is_err());
        assert!(check_shape(shape, &Arg::In(&[0u8; 3])).is_err());
        assert!(check_shape(shape, &Arg::None).is_err());
    }

    #[test]
    fn unmap_refuses_pointer_flags() {
        let shape = req::VFIO_IOMMU_UNMAP_DMA.shape;
        assert!(check_shape(shape, &Arg::In(&argsz_bytes(24, 0, 24))).is_ok());
        assert!(
            check_shape(
                shape,
                &Arg::In(&argsz_bytes(24, sys::VFIO_DMA_UNMAP_FLAG_ALL, 24))
            )
            .is_ok()
        );
        let dirty = sys::VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP;
        assert!(check_shape(shape, &Arg::In(&argsz_bytes(24, dirty, 24))).is_err());
    }

    #[test]
    fn strings_ints_and_probes() {
        assert!(check_shape(Shape::CStr, &Arg::In(b"0000:01:00.0\0")).is_ok());
        assert!(check_shape(Shape::CStr, &Arg::In(b"0000:01:00.0")).is_err());
        assert!(check_shape(Shape::IntPtr, &Arg::In(&[0; 4])).is_ok());
        assert!(check_shape(Shape::IntPtr, &Arg::In(&[0; 8])).is_err());
        assert!(check_shape(Shape::Int, &Arg::Int(3)).is_ok());
        let probe = argsz_bytes(
            8,
            sys::VFIO_DEVICE_FEATURE_PROBE | sys::VFIO_DEVICE_FEATURE_GET,
            8,
        );
        assert!(check_shape(Shape::Feature, &Arg::InOut(&mut probe.clone())).is_ok());
        // GET of a feature without pointers passes; one whose data holds
        // user pointers (DMA logging) does not, nor an argsz past the buffer.
        let state = sys::VFIO_DEVICE_FEATURE_GET | sys::VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE;
        assert!(check_shape(Shape::Feature, &Arg::In(&argsz_bytes(16, state, 16))).is_ok());
        assert!(check_shape(Shape::Feature, &Arg::In(&argsz_bytes(17, state, 16))).is_err());
        let report = sys::VFIO_DEVICE_FEATURE_GET | sys::VFIO_DEVICE_FEATURE_DMA_LOGGING_REPORT;
        assert!(check_shape(Shape::Feature, &Arg::In(&argsz_bytes(40, report, 40))).is_err());
        let start = sys::VFIO_DEVICE_FEATURE_SET | sys::VFIO_DEVICE_FEATURE_DMA_LOGGING_START;
        assert!(check_shape(Shape::Feature, &Arg::In(&argsz_bytes(32, start, 32))).is_err());
    }

    #[test]
    fn requests_sharing_map_dmas_number_still_pass_the_safe_path() {
        // VFIO_DEVICE_PCI_HOT_RESET == VFIO_IOMMU_MAP_DMA == VFIO_BASE + 13.
        assert_eq!(
            req::VFIO_DEVICE_PCI_HOT_RESET.code,
            req::VFIO_IOMMU_MAP_DMA.code
        );
        let mut hot_reset = argsz_bytes(16, 0, 16);
        hot_reset[8..12].copy_from_slice(&1u32.to_ne_bytes());
        assert!(check_shape(req::VFIO_DEVICE_PCI_HOT_RESET.shape, &Arg::In(&hot_reset)).is_ok());
        // The kernel reads `count` fds whatever argsz says: a count past the
        // buffer is refused even with a small argsz.
        let mut lying = argsz_bytes(12, 0, 16);
        lying[8..12].copy_from_slice(&1000u32.to_ne_bytes());
        assert!(check_shape(req::VFIO_DEVICE_PCI_HOT_RESET.shape, &Arg::In(&lying)).is_err());
        let mut short = argsz_bytes(16, 0, 16);
        short[8..12].copy_from_slice(&2u32.to_ne_bytes());
        assert!(check_shape(req::VFIO_DEVICE_PCI_HOT_RESET.shape, &Arg::In(&short)).is_err());
        assert!(
            check_shape(
                req::VFIO_IOMMU_MAP_DMA.shape,
                &Arg::In(&argsz_bytes(32, 3, 32))
            )
            .is_err()
        );
    }

    #[test]
    fn map_dma_is_refused_on_the_safe_path() {
        let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
        let bytes = argsz_bytes(32, 3, 32);
        let fd = std::os::fd::AsFd::as_fd(&a);
        assert_eq!(
            Kernel::host().ioctl(fd, req::VFIO_IOMMU_MAP_DMA, Arg::In(&bytes)),
            Err(Errno::EINVAL)
        );
    }
}
