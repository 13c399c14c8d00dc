//! DMA: owned buffers the device may access, mapping guards, and the raw
//! mapping escape hatch.
//!
//! A [`DmaBuffer`] is anonymous, page-aligned memory whose contents are
//! reached only by copies and volatile accessors: the device may write it at
//! any moment, so the crate never hands out `&T` or `&mut [u8]` into it.
//! [`Container::map`] maps it and returns a [`DmaMapping`] guard that borrows
//! both the container and the buffer and unmaps on drop, so neither can go
//! away while the device can reach the memory. Should a guard be leaked
//! (`mem::forget`), the buffer notices it is still mapped and, when dropped,
//! leaks its pages instead of returning them to the system: the device can
//! never write memory that was reused.

use std::cell::Cell;
use std::marker::PhantomData;
use std::num::NonZeroUsize;
use std::os::fd::BorrowedFd;
use std::ptr::NonNull;

use nix::errno::Errno;
use nix::sys::mman::{MapFlags, ProtFlags, mmap_anonymous, munmap};
use zerocopy::{FromBytes, IntoBytes};

use crate::abi;
use crate::container::{Container, DmaModel};
use crate::error::DmaError;
use crate::kernel::{Arg, Kernel, req};
use crate::sys;

/// What the device may do with a mapping.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DmaAccess {
    /// The device reads (`VFIO_DMA_MAP_FLAG_READ`): host-to-device.
    DeviceReads,
    /// The device writes (`VFIO_DMA_MAP_FLAG_WRITE`): device-to-host.
    DeviceWrites,
    /// Both.
    ReadWrite,
}

impl DmaAccess {
    pub(crate) fn flags(self) -> u32 {
        match self {
            DmaAccess::DeviceReads => sys::VFIO_DMA_MAP_FLAG_READ,
            DmaAccess::DeviceWrites => sys::VFIO_DMA_MAP_FLAG_WRITE,
            DmaAccess::ReadWrite => sys::VFIO_DMA_MAP_FLAG_READ | sys::VFIO_DMA_MAP_FLAG_WRITE,
        }
    }
}

/// The system page size.
pub fn page_size() -> usize {
    nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
        .ok()
        .flatten()
        .and_then(|v| usize::try_from(v).ok())
        .unwrap_or(4096)
}

/// Owned, page-aligned, zero-initialised memory for DMA.
///
/// Reached only through copies ([`read`](Self::read), [`write`](Self::write))
/// and volatile scalar accessors. Not `Sync`: concurrent accesses from two
/// threads would race with each other (the device's accesses are what the
/// volatile discipline is for).
///
/// ```
/// use typed_vfio::DmaBuffer;
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let buffer = DmaBuffer::new(100)?; // rounded up to a page
/// assert_eq!(buffer.len() % 4096, 0);
/// buffer.write(0, b"to the device")?;
/// buffer.write_u32(16, 0xdead_beef)?;
/// let mut back = [0u8; 13];
/// buffer.read(0, &mut back)?;
/// assert_eq!(&back, b"to the device");
/// assert_eq!(buffer.read_u32(16)?, 0xdead_beef);
/// assert!(buffer.read_u32(buffer.len()).is_err());
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct DmaBuffer {
    pub(crate) ptr: NonNull<u8>,
    pub(crate) len: usize,
    /// Live mappings of this buffer. Non-zero at drop means a guard leaked:
    /// the pages are then leaked too.
    pub(crate) mapped: Cell<usize>,
}

// SAFETY: DmaBuffer exclusively owns its mapping; moving it to another thread
// moves that ownership. It is not Sync (Cell), so no two threads access it at
// once.
unsafe impl Send for DmaBuffer {}

macro_rules! dma_scalar {
    ($($read:ident / $write:ident: $t:ty;)*) => {$(
        #[doc = concat!("Volatile read of a `", stringify!($t), "` at `offset` (naturally aligned).")]
        pub fn $read(&self, offset: usize) -> Result<$t, DmaError> {
            let p = self.at(offset, size_of::<$t>(), size_of::<$t>())?;
            // SAFETY: `at` proved `offset..offset + size_of::<T>()` is inside
            // the live mapping and aligned for T; any bits are a valid integer.
            Ok(unsafe { p.cast::<$t>().as_ptr().read_volatile() })
        }
        #[doc = concat!("Volatile write of a `", stringify!($t), "` at `offset` (naturally aligned).")]
        pub fn $write(&self, offset: usize, value: $t) -> Result<(), DmaError> {
            let p = self.at(offset, size_of::<$t>(), size_of::<$t>())?;
            // SAFETY: as for the read; the mapping is writable.
            unsafe { p.cast::<$t>().as_ptr().write_volatile(value) };
            Ok(())
        }
    )*};
}

impl DmaBuffer {
    /// Allocates `len` bytes rounded up to whole pages, zeroed
    /// (anonymous private `mmap`, populated).
    pub fn new(len: usize) -> Result<DmaBuffer, DmaError> {
        Self::with_flags(len, page_size(), MapFlags::empty())
    }

    /// `len` rounded up to a multiple of `page`, mapped with `extra` flags
    /// too (`MAP_HUGETLB` and a size, for huge pages).
    pub(crate) fn with_flags(
        len: usize,
        page: usize,
        extra: MapFlags,
    ) -> Result<DmaBuffer, DmaError> {
        let rounded = len
            .checked_next_multiple_of(page)
            .and_then(NonZeroUsize::new)
            .ok_or(DmaError::Alloc {
                len,
                errno: Errno::EINVAL,
            })?;
        // SAFETY: an anonymous mapping with no address hint creates fresh
        // memory and replaces nothing.
        let ptr = unsafe {
            mmap_anonymous(
                None,
                rounded,
                ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
                // MAP_POPULATE only pre-faults the pages; Miri refuses it.
                extra
                    | if cfg!(miri) {
                        MapFlags::MAP_PRIVATE
                    } else {
                        MapFlags::MAP_PRIVATE | MapFlags::MAP_POPULATE
                    },
            )
        }
        .map_err(|errno| DmaError::Alloc { len, errno })?;
        Ok(DmaBuffer {
            ptr: ptr.cast(),
            len: rounded.get(),
            mapped: Cell::new(0),
        })
    }

    /// Length in bytes (whole pages).
    pub fn len(&self) -> usize {
        self.len
    }

    /// Always false: a buffer has at least one page.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The buffer's address in this process (what `MAP_DMA` is given).
    pub fn addr(&self) -> usize {
        self.ptr.as_ptr() as usize
    }

    /// Whether a mapping guard of this buffer is alive (or was leaked).
    pub fn is_mapped(&self) -> bool {
        self.mapped.get() != 0
    }

    fn at(&self, offset: usize, len: usize, align: usize) -> Result<NonNull<u8>, DmaError> {
        match offset.checked_add(len) {
            Some(end) if end <= self.len && offset.is_multiple_of(align) => {
                // SAFETY: `offset + len <= self.len`: inside the mapping.
                Ok(unsafe { self.ptr.add(offset) })
            }
            _ => Err(DmaError::OutOfBounds {
                offset: offset as u64,
                len: len as u64,
                size: self.len as u64,
            }),
        }
    }

    /// Copies `buf.len()` bytes out of the buffer from `offset` (volatile,
    /// byte by byte: the device may be writing).
    pub fn read(&self, offset: usize, buf: &mut [u8]) -> Result<(), DmaError> {
        let p = self.at(offset, buf.len(), 1)?;
        for (i, b) in buf.iter_mut().enumerate() {
            let byte = p.as_ptr().wrapping_add(i);
            // SAFETY: `at` proved `offset..offset + buf.len()` is in bounds,
            // and `i < buf.len()`, so `byte` is inside the live mapping.
            *b = unsafe { byte.read_volatile() };
        }
        Ok(())
    }

    /// Copies `buf` into the buffer at `offset` (volatile, byte by byte).
    pub fn write(&self, offset: usize, buf: &[u8]) -> Result<(), DmaError> {
        let p = self.at(offset, buf.len(), 1)?;
        for (i, &b) in buf.iter().enumerate() {
            let byte = p.as_ptr().wrapping_add(i);
            // SAFETY: as in `read`.
            unsafe { byte.write_volatile(b) };
        }
        Ok(())
    }

    /// Sets every byte to `value`.
    pub fn fill(&self, value: u8) {
        for i in 0..self.len {
            let byte = self.ptr.as_ptr().wrapping_add(i);
            // SAFETY: `i < self.len`: inside the mapping.
            unsafe { byte.write_volatile(value) };
        }
    }

    dma_scalar! {
        read_u8 / write_u8: u8;
        read_u16 / write_u16: u16;
        read_u32 / write_u32: u32;
        read_u64 / write_u64: u64;
    }

    /// The physical address of each page, for no-IOMMU DMA (the device sees
    /// physical memory). Locks the pages in memory first (`mlock`) so they
    /// stay where they are; reads `/proc/self/pagemap` (needs
    /// `CAP_SYS_ADMIN` to see frame numbers).
    pub fn physical_pages(&self) -> std::io::Result<Vec<u64>> {
        use std::io::{Read, Seek, SeekFrom};
        // SAFETY: locking pages of our own live mapping changes no memory.
        unsafe { nix::sys::mman::mlock(self.ptr.cast(), self.len) }?;
        let page = page_size();
        let mut map = std::fs::File::open("/proc/self/pagemap")?;
        let mut out = Vec::with_capacity(self.len / page);
        for i in 0..self.len / page {
            let vpn = (self.addr() + i * page) / page;
            map.seek(SeekFrom::Start(vpn as u64 * 8))?;
            let mut entry = [0u8; 8];
            map.read_exact(&mut entry)?;
            let entry = u64::from_ne_bytes(entry);
            let pfn = entry & ((1 << 55) - 1);
            if entry >> 63 == 0 || pfn == 0 {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::PermissionDenied,
                    "pagemap gives no frame number (page not present, or no CAP_SYS_ADMIN)",
                ));
            }
            out.push(pfn * page as u64);
        }
        Ok(out)
    }
}

impl Drop for DmaBuffer {
    fn drop(&mut self) {
        if self.mapped.get() != 0 {
            // A mapping guard was leaked: the device may still reach these
            // pages, so they must never be reused. Leak them.
            return;
        }
        // SAFETY: `ptr`/`len` are exactly the mapping `new` made and this
        // buffer owns; no mapping guard refers to it (count is zero) and no
        // reference into it exists (the API hands out none).
        let _ = unsafe { munmap(self.ptr.cast(), self.len) };
    }
}

/// A live DMA mapping of a [`DmaBuffer`]; unmaps on drop
/// (`VFIO_IOMMU_UNMAP_DMA`). Borrows the container (so its groups cannot
/// leave and it cannot be reconfigured or dropped) and the buffer (so it
/// cannot be freed).
///
/// A DMA round trip with the [simulated](crate::sim) edu device:
///
/// ```
/// use typed_vfio::{DmaAccess, DmaBuffer, Type1v2, sim::Simulator};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let sim = Simulator::new();
/// let container = sim.open_container()?.attach(sim.open_group(1)?)?.set_iommu::<Type1v2>()?;
/// let device = container.open_device("0000:01:00.0")?;
/// device.set_bus_master(true)?;
/// let buffer = DmaBuffer::new(4096)?;
/// buffer.write(0, b"round trip")?;
/// let mapping = container.map(&buffer, 0x10_0000, DmaAccess::ReadWrite)?;
/// let bar0 = device.region(0)?;
/// // edu: copy 10 bytes from IOVA 0x100000 into its buffer (0x40000) ...
/// for (reg, value) in [(0x80, 0x10_0000), (0x88, 0x4_0000), (0x90, 10), (0x98, 1)] {
///     bar0.write_u32(reg, value)?;
/// }
/// // ... and back to IOVA 0x100800.
/// for (reg, value) in [(0x80, 0x4_0000), (0x88, 0x10_0800), (0x90, 10), (0x98, 3)] {
///     bar0.write_u32(reg, value)?;
/// }
/// let mut back = [0u8; 10];
/// buffer.read(0x800, &mut back)?;
/// assert_eq!(&back, b"round trip");
/// assert!(buffer.is_mapped());
/// drop(mapping); // VFIO_IOMMU_UNMAP_DMA
/// assert!(!buffer.is_mapped());
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
#[must_use = "dropping the guard unmaps the buffer at once"]
pub struct DmaMapping<'a> {
    fd: BorrowedFd<'a>,
    kernel: &'a Kernel,
    buffer: &'a DmaBuffer,
    iova: u64,
    size: u64,
    _container: PhantomData<&'a ()>,
}

impl DmaMapping<'_> {
    /// The IOVA the device uses.
    pub fn iova(&self) -> u64 {
        self.iova
    }

    /// The mapped size in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Unmaps now, reporting the kernel's answer.
    pub fn unmap(self) -> Result<(), DmaError> {
        let this = std::mem::ManuallyDrop::new(self);
        this.do_unmap()
    }

    #[inline]
    fn do_unmap(&self) -> Result<(), DmaError> {
        unmap_range(self.kernel, self.fd, self.iova, self.size).map(drop)?;
        self.buffer.mapped.set(self.buffer.mapped.get() - 1);
        Ok(())
    }
}

impl Drop for DmaMapping<'_> {
    #[inline]
    fn drop(&mut self) {
        // On failure the buffer stays marked mapped and leaks its pages when
        // dropped; Drop itself must not fail.
        let _ = self.do_unmap();
    }
}

/// The `VFIO_IOMMU_MAP_DMA` argument mapping `size` bytes at `vaddr` to
/// `iova`.
#[inline]
pub(crate) fn map_dma_arg(
    vaddr: u64,
    size: u64,
    iova: u64,
    access: DmaAccess,
) -> sys::vfio_iommu_type1_dma_map {
    sys::vfio_iommu_type1_dma_map {
        argsz: size_of::<sys::vfio_iommu_type1_dma_map>() as u32,
        flags: access.flags(),
        vaddr,
        iova,
        size,
    }
}

/// The `VFIO_IOMMU_UNMAP_DMA` argument (no dirty bitmap) for `iova..iova +
/// size` with `flags` (0 or `VFIO_DMA_UNMAP_FLAG_ALL` on the typed path).
#[inline]
pub(crate) fn unmap_dma_arg(iova: u64, size: u64, flags: u32) -> abi::DmaUnmap {
    abi::DmaUnmap {
        argsz: size_of::<abi::DmaUnmap>() as u32,
        flags,
        iova,
        size,
    }
}

/// The bytes unmapped, from the `VFIO_IOMMU_UNMAP_DMA` argument the kernel
/// wrote back (0 if it is not one).
#[inline]
pub(crate) fn unmapped_size(arg: &[u8]) -> u64 {
    abi::DmaUnmap::read_from_bytes(arg).map_or(0, |a| a.size)
}

/// Issues `VFIO_IOMMU_MAP_DMA` for `size` bytes at `vaddr` to `iova` on the
/// container `fd` (type1 and PAMU containers alike).
///
/// # Safety
///
/// As [`Container::map_raw`]: `vaddr..vaddr + size` must stay mapped and
/// may be read (and, with write access, written) by the device at any time
/// until the range is unmapped from the IOMMU.
#[inline]
pub(crate) unsafe fn issue_map_dma(
    kernel: &Kernel,
    fd: BorrowedFd<'_>,
    vaddr: *mut u8,
    size: u64,
    iova: u64,
    access: DmaAccess,
) -> Result<(), DmaError> {
    let arg = map_dma_arg(vaddr as u64, size, iova, access);
    // SAFETY: the argument is a complete `vfio_iommu_type1_dma_map` (argsz =
    // its size), so the kernel reads only it; the memory it names is covered
    // by this function's own contract, which the caller upholds.
    unsafe { kernel.ioctl_unchecked(fd, req::VFIO_IOMMU_MAP_DMA, Arg::In(arg.as_bytes())) }
        .map(drop)
        .map_err(|errno| DmaError::Ioctl {
            ioctl: req::VFIO_IOMMU_MAP_DMA.name,
            iova,
            size,
            errno,
        })
}

#[inline]
fn unmap_range(kernel: &Kernel, fd: BorrowedFd<'_>, iova: u64, size: u64) -> Result<u64, DmaError> {
    let mut arg = unmap_dma_arg(iova, size, 0);
    kernel
        .ioctl(
            fd,
            req::VFIO_IOMMU_UNMAP_DMA,
            Arg::InOut(arg.as_mut_bytes()),
        )
        .map_err(|errno| DmaError::Ioctl {
            ioctl: req::VFIO_IOMMU_UNMAP_DMA.name,
            iova,
            size,
            errno,
        })?;
    Ok(unmapped_size(arg.as_bytes()))
}

impl<M: DmaModel> Container<M> {
    /// Why the kernel refused to map `iova..iova + size` with `errno`: the
    /// typed error for a range that is empty or wraps, unaligned to the
    /// IOMMU's smallest page, or outside its usable IOVA ranges (read once
    /// per container from `VFIO_IOMMU_GET_INFO`); otherwise the ioctl error
    /// as it came. Only ever called on the failure path: the kernel checks
    /// all of this itself, so a mapping that succeeds pays nothing for it.
    #[cold]
    #[inline(never)]
    fn explain_map_failure(&self, iova: u64, size: u64, error: DmaError) -> DmaError {
        let DmaError::Ioctl {
            errno: Errno::EINVAL,
            ..
        } = error
        else {
            return error;
        };
        // The last byte must not wrap past the top of the IOVA space (a
        // range may end exactly there).
        if size == 0 || iova.checked_add(size - 1).is_none() {
            return DmaError::BadRange { iova, size };
        }
        // Without the IOMMU's geometry there is nothing to add to EINVAL.
        let Ok(info) = self.cached_iommu_info() else {
            return error;
        };
        // A power of two (the lowest set bit of the page-size bitmap, or 1).
        let page = info.min_page_size().max(1);
        if (iova | size) & (page - 1) != 0 {
            return DmaError::Unaligned { iova, size, page };
        }
        if !info.iova_ranges.is_empty() && !info.iova_ranges.iter().any(|r| r.contains(iova, size))
        {
            return DmaError::OutsideRanges { iova, size };
        }
        error
    }

    /// Maps the whole of `buffer` at `iova` (`VFIO_IOMMU_MAP_DMA`) and returns
    /// the guard that unmaps it.
    ///
    /// The kernel checks the IOVA itself; when it refuses with `EINVAL`, the
    /// error says why: [`DmaError::Unaligned`] (not aligned to the IOMMU's
    /// smallest page), [`DmaError::OutsideRanges`] (not inside one usable
    /// IOVA range) or [`DmaError::BadRange`] (wraps), from the IOMMU's
    /// geometry (`VFIO_IOMMU_GET_INFO`, read once per container, and only
    /// when a mapping fails).
    #[doc(alias = "VFIO_IOMMU_MAP_DMA")]
    #[inline]
    pub fn map<'a>(
        &'a self,
        buffer: &'a DmaBuffer,
        iova: u64,
        access: DmaAccess,
    ) -> Result<DmaMapping<'a>, DmaError> {
        let size = buffer.len as u64;
        // SAFETY: the device may access `buffer` until the mapping is
        // removed. The guard returned borrows the buffer, so it stays
        // allocated while the guard lives; the guard unmaps on drop, and if
        // it is leaked or its unmap fails, the buffer's `mapped` count stays
        // non-zero and its Drop leaks the pages instead of freeing them. The
        // device never gets a `&`/`&mut` view, only volatile accesses.
        let mapped = unsafe { self.map_raw(buffer.ptr.as_ptr(), size, iova, access) };
        if let Err(error) = mapped {
            return Err(self.explain_map_failure(iova, size, error));
        }
        buffer.mapped.set(buffer.mapped.get() + 1);
        Ok(DmaMapping {
            fd: self.as_fd(),
            kernel: &self.inner.kernel,
            buffer,
            iova,
            size,
            _container: PhantomData,
        })
    }

    /// Maps `size` bytes of process memory at `vaddr` to `iova`
    /// (`VFIO_IOMMU_MAP_DMA`) with no guard: for VMMs mapping guest memory.
    /// Undo with [`unmap_raw`](Self::unmap_raw).
    ///
    /// # Safety
    ///
    /// `vaddr..vaddr + size` must be memory of this process that stays
    /// mapped, and that the caller accepts the device reading (and, with
    /// write access, writing) at any time, until this range is unmapped from
    /// the IOMMU (by `unmap_raw`, `unmap_all`, or the container losing its
    /// last group). In particular no Rust reference may rely on the memory
    /// not changing, and it must not be freed or reused while mapped.
    #[doc(alias = "VFIO_IOMMU_MAP_DMA")]
    #[inline]
    pub unsafe fn map_raw(
        &self,
        vaddr: *mut u8,
        size: u64,
        iova: u64,
        access: DmaAccess,
    ) -> Result<(), DmaError> {
        // SAFETY: this function's contract is `issue_map_dma`'s, and the
        // caller upholds it.
        unsafe { issue_map_dma(&self.inner.kernel, self.as_fd(), vaddr, size, iova, access) }
    }

    /// Unmaps `iova..iova + size` (`VFIO_IOMMU_UNMAP_DMA`), returning the
    /// bytes the kernel unmapped. Removing device access is always memory
    /// safe; unmapping a range a [`DmaMapping`] owns makes that guard's own
    /// unmap fail later (its buffer then leaks its pages).
    #[doc(alias = "VFIO_IOMMU_UNMAP_DMA")]
    pub fn unmap_raw(&self, iova: u64, size: u64) -> Result<u64, DmaError> {
        unmap_range(&self.inner.kernel, self.as_fd(), iova, size)
    }

    /// Unmaps everything (`VFIO_IOMMU_UNMAP_DMA` with
    /// `VFIO_DMA_UNMAP_FLAG_ALL`; needs the `VFIO_UNMAP_ALL` extension).
    /// Takes `&mut self`: no mapping guard can be alive.
    pub fn unmap_all(&mut self) -> Result<u64, DmaError> {
        let mut arg = unmap_dma_arg(0, 0, sys::VFIO_DMA_UNMAP_FLAG_ALL);
        self.inner
            .kernel
            .ioctl(
                self.as_fd(),
                req::VFIO_IOMMU_UNMAP_DMA,
                Arg::InOut(arg.as_mut_bytes()),
            )
            .map_err(|errno| DmaError::Ioctl {
                ioctl: req::VFIO_IOMMU_UNMAP_DMA.name,
                iova: 0,
                size: 0,
                errno,
            })?;
        Ok(unmapped_size(arg.as_bytes()))
    }
}
