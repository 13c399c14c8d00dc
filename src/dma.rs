//! DMA: owned buffers the device may access, mapping guards, and the raw
//! mapping escape hatch.
//!
//! A [`DmaBuffer`] is anonymous, page-aligned memory that a device may read
//! or write at any moment, so the crate never hands out `&T` or `&mut [u8]`
//! into it: every access, the program's and (on the [simulated
//! kernel](crate::sim)) the device's, is an atomic access of an aligned
//! 32-bit word (one size everywhere: Rust does not allow mixed-size atomic
//! accesses to race). Atomic accesses never race with each other, so a buffer may be shared between
//! threads (`DmaBuffer: Sync`) and a device may write it while a thread reads
//! it, without undefined behaviour. What two threads or a thread and a device
//! see of each other's writes is then the device's protocol (doorbells,
//! phase bits), not the language's.
//!
//! [`Container::map`] maps a buffer and returns a [`DmaMapping`] guard that
//! borrows both the container and the buffer and unmaps on drop, so neither
//! can go away while the device can reach the memory. The pages are freed
//! only once no mapping of them can remain in any IOMMU:
//!
//! - a guard whose unmap succeeded releases its hold at once;
//! - a guard whose unmap failed in `Drop` leaves a record with its container
//!   (an *orphan*); the container frees those pages when the kernel confirms
//!   the range gone (a successful [`Container::unmap_all`], an
//!   [`unmap_raw`](Container::unmap_raw) that provably removed it, the last
//!   group leaving the container: [`release_groups`](Container::release_groups)
//!   or the container's own teardown);
//! - a leaked guard (`mem::forget`) leaves no record: its pages are leaked
//!   for good, since nothing can prove the device lost access.
//!
//! [`DmaMapping::unmap`] reports a failed unmap, and
//! [`DmaMapping::try_unmap`] hands the guard back with it, so a caller can
//! see the failure and retry.

use std::marker::PhantomData;
use std::num::NonZeroUsize;
use std::os::fd::BorrowedFd;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use crate::sys::{FromBytes, IntoBytes};
use nix::errno::Errno;
use nix::sys::mman::{MapFlags, ProtFlags, mmap_anonymous, munmap};

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
    /// Whether the device may read the memory.
    pub(crate) fn device_reads(self) -> bool {
        matches!(self, DmaAccess::DeviceReads | DmaAccess::ReadWrite)
    }

    /// Whether the device may write the memory.
    pub(crate) fn device_writes(self) -> bool {
        matches!(self, DmaAccess::DeviceWrites | DmaAccess::ReadWrite)
    }

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

/// The pages of a [`DmaBuffer`]: an anonymous mapping and the number of
/// IOMMU mappings that may still reach it. Shared (`Arc`) between the buffer
/// and the orphan records of containers whose unmap of it failed, so the
/// pages outlive the buffer while a mapping may remain.
#[derive(Debug)]
pub(crate) struct Pages {
    ptr: NonNull<u8>,
    len: usize,
    /// IOMMU mappings that may still reach these pages. Non-zero when the
    /// last holder goes means a mapping was leaked: the pages are leaked too.
    mapped: AtomicUsize,
}

// SAFETY: `Pages` owns its anonymous mapping. Every access to the memory
// goes through `byte`, as an atomic access (no data race whatever the
// threads), and the count is atomic; the pointer itself is never written
// after construction.
unsafe impl Send for Pages {}
// SAFETY: as for Send: shared access is atomic accesses only.
unsafe impl Sync for Pages {}

impl Pages {
    /// The start of the memory, for [`words`]' accesses; every access is
    /// checked against [`len`](Self::len) by the caller.
    #[inline(always)]
    fn base(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    fn hold(&self) {
        self.mapped.fetch_add(1, Ordering::AcqRel);
    }

    fn release(&self) {
        self.mapped.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Drop for Pages {
    fn drop(&mut self) {
        if *self.mapped.get_mut() != 0 {
            // A mapping may remain (a leaked guard, or an unmap the kernel
            // never confirmed): the device may still reach these pages, so
            // they must never be reused. Leak them.
            return;
        }
        // SAFETY: `ptr`/`len` are exactly the mapping `DmaBuffer::with_flags`
        // made, owned by this `Pages` alone (the last `Arc` is going); no
        // IOMMU mapping can reach it (count zero) and no reference into it
        // outlives `&self`.
        let _ = unsafe { munmap(self.ptr.cast(), self.len) };
    }
}

/// One mapping whose unmap failed: the pages stay held until the kernel
/// confirms the range gone.
#[derive(Debug)]
struct Orphan {
    iova: u64,
    size: u64,
    pages: Arc<Pages>,
}

/// A container's (or IOAS's) orphaned mappings.
#[derive(Debug, Default)]
pub(crate) struct Orphans(Mutex<Vec<Orphan>>);

impl Orphans {
    fn list(&self) -> std::sync::MutexGuard<'_, Vec<Orphan>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records a mapping whose unmap failed (its pages stay held).
    pub(crate) fn adopt(&self, iova: u64, size: u64, pages: Arc<Pages>) {
        self.list().push(Orphan { iova, size, pages });
    }

    /// The kernel confirmed that every mapping is gone: release them all.
    pub(crate) fn all_gone(&self) {
        for orphan in self.list().drain(..) {
            orphan.pages.release();
        }
    }

    /// The kernel confirmed that every mapping lying inside
    /// `iova..iova + size` is gone; `exact` asks for the orphan's range to be
    /// that range exactly.
    pub(crate) fn range_gone(&self, iova: u64, size: u64, exact: bool) {
        let Some(last) = size.checked_sub(1).and_then(|s| iova.checked_add(s)) else {
            return;
        };
        self.list().retain(|o| {
            let inside = if exact {
                o.iova == iova && o.size == size
            } else {
                o.size > 0
                    && o.iova >= iova
                    && o.iova.checked_add(o.size - 1).is_some_and(|l| l <= last)
            };
            if inside {
                o.pages.release();
            }
            !inside
        });
    }

    /// How many mappings are orphaned.
    pub(crate) fn count(&self) -> usize {
        self.list().len()
    }
}

/// Owned, page-aligned, zero-initialised memory for DMA.
///
/// Reached only through copies ([`read`](Self::read), [`write`](Self::write))
/// and scalar accessors, all made of atomic accesses of aligned 32-bit
/// words, so a device (or another thread) writing the buffer meanwhile is no
/// data race. A naturally aligned `u16` or `u32` is read in one access, so a
/// word the device writes at once (an NVMe completion's phase bit with its
/// command id) is never seen torn; a `u64` and a longer copy are read a word
/// at a time: use the device's protocol (a phase bit, a doorbell) to know
/// when a structure is complete.
/// The `_le`/`_be` accessors give device-defined structures an explicit byte
/// order; the plain ones use the host's.
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
/// buffer.write_u32_le(20, 0x0102_0304)?;
/// assert_eq!(buffer.read_u8(20)?, 0x04);
/// assert!(buffer.read_u32(buffer.len()).is_err());
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct DmaBuffer {
    pub(crate) pages: Arc<Pages>,
}

macro_rules! dma_scalar {
    ($($t:ty: $read:ident / $write:ident, $read_le:ident / $write_le:ident, $read_be:ident / $write_be:ident;)*) => {$(
        #[doc = concat!("Reads a host-order `", stringify!($t), "` at `offset` (naturally aligned). A `u16` or `u32` is one atomic load of its 32-bit word, so a word the device writes in one access is never seen half-written; a `u64` is two such loads, the lower address first.")]
        #[inline]
        pub fn $read(&self, offset: usize) -> Result<$t, DmaError> {
            self.scalar::<{ size_of::<$t>() }>(offset).map(<$t>::from_ne_bytes)
        }
        #[doc = concat!("Writes a host-order `", stringify!($t), "` at `offset` (naturally aligned): a `u32` in one atomic store, a `u16` in one atomic update of its word, a `u64` as two 32-bit stores, the lower address first.")]
        #[inline]
        pub fn $write(&self, offset: usize, value: $t) -> Result<(), DmaError> {
            self.put_scalar(offset, value.to_ne_bytes())
        }
        #[doc = concat!("Reads a little-endian `", stringify!($t), "` at `offset` (naturally aligned), whatever the host's byte order.")]
        #[inline]
        pub fn $read_le(&self, offset: usize) -> Result<$t, DmaError> {
            self.scalar::<{ size_of::<$t>() }>(offset).map(<$t>::from_le_bytes)
        }
        #[doc = concat!("Writes a little-endian `", stringify!($t), "` at `offset` (naturally aligned), whatever the host's byte order.")]
        #[inline]
        pub fn $write_le(&self, offset: usize, value: $t) -> Result<(), DmaError> {
            self.put_scalar(offset, value.to_le_bytes())
        }
        #[doc = concat!("Reads a big-endian `", stringify!($t), "` at `offset` (naturally aligned), whatever the host's byte order.")]
        #[inline]
        pub fn $read_be(&self, offset: usize) -> Result<$t, DmaError> {
            self.scalar::<{ size_of::<$t>() }>(offset).map(<$t>::from_be_bytes)
        }
        #[doc = concat!("Writes a big-endian `", stringify!($t), "` at `offset` (naturally aligned), whatever the host's byte order.")]
        #[inline]
        pub fn $write_be(&self, offset: usize, value: $t) -> Result<(), DmaError> {
            self.put_scalar(offset, value.to_be_bytes())
        }
    )*};
}

/// A huge-page size for [`DmaBuffer::huge`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HugePage {
    /// 2 MiB (x86-64, aarch64 with 4 KiB pages).
    Size2M,
    /// 1 GiB (x86-64 with `pdpe1gb`, aarch64).
    Size1G,
}

impl HugePage {
    /// The size in bytes.
    pub fn bytes(self) -> u64 {
        match self {
            HugePage::Size2M => 2 << 20,
            HugePage::Size1G => 1 << 30,
        }
    }

    /// Free pages of this size in the kernel's pool (sysfs
    /// `free_hugepages`); `None` when the kernel has no pool of this size.
    pub fn free_pages(self) -> Option<u64> {
        let path = format!(
            "/sys/kernel/mm/hugepages/hugepages-{}kB/free_hugepages",
            self.bytes() / 1024
        );
        std::fs::read_to_string(path).ok()?.trim().parse().ok()
    }
}

impl DmaBuffer {
    /// Allocates `len` bytes rounded up to whole pages (at least one page:
    /// `new(0)` is one page), zeroed (anonymous private `mmap`, populated).
    pub fn new(len: usize) -> Result<DmaBuffer, DmaError> {
        Self::with_flags(len, page_size(), MapFlags::empty())
    }

    /// `len` bytes rounded up to whole huge pages of `size` (`MAP_HUGETLB`
    /// with that size): each huge page is physically contiguous and aligned
    /// to its size, so fewer IOMMU entries (and, without an IOMMU, fewer
    /// physical ranges) describe the buffer. The kernel gives huge pages only
    /// from its reserved pool (`/sys/kernel/mm/hugepages/hugepages-*kB/
    /// nr_hugepages`): with too few free there, `DmaError::Alloc` with
    /// `ENOMEM`; a size this kernel has no pool for is `EINVAL`.
    pub fn huge(len: usize, size: HugePage) -> Result<DmaBuffer, DmaError> {
        Self::huge_pages(len, size.bytes())
    }

    /// As [`huge`](Self::huge), for any huge-page size (a power of two).
    pub(crate) fn huge_pages(len: usize, huge_page: u64) -> Result<DmaBuffer, DmaError> {
        let bad = DmaError::Alloc {
            len,
            errno: Errno::EINVAL,
        };
        if !huge_page.is_power_of_two() || huge_page < page_size() as u64 {
            return Err(bad);
        }
        let align = usize::try_from(huge_page).map_err(|_| bad)?;
        let shift = huge_page.trailing_zeros() as libc::c_int;
        let size_bits = MapFlags::from_bits_retain(shift << libc::MAP_HUGE_SHIFT);
        Self::with_flags(len, align, MapFlags::MAP_HUGETLB | size_bits)
    }

    /// `len` (at least 1) rounded up to a multiple of `page`, mapped with
    /// `extra` flags too (`MAP_HUGETLB` and a size, for huge pages).
    pub(crate) fn with_flags(
        len: usize,
        page: usize,
        extra: MapFlags,
    ) -> Result<DmaBuffer, DmaError> {
        let rounded = len
            .max(1)
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
            pages: Arc::new(Pages {
                ptr: ptr.cast(),
                len: rounded.get(),
                mapped: AtomicUsize::new(0),
            }),
        })
    }

    /// Length in bytes (whole pages).
    #[inline]
    pub fn len(&self) -> usize {
        self.pages.len
    }

    /// Always false: a buffer has at least one page.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The buffer's address in this process (what `MAP_DMA` is given).
    pub fn addr(&self) -> usize {
        self.pages.ptr.as_ptr() as usize
    }

    /// The start of the memory, for the kernel (never dereferenced here).
    #[inline]
    pub(crate) fn as_mut_ptr(&self) -> *mut u8 {
        self.pages.ptr.as_ptr()
    }

    /// Whether a mapping of this buffer may remain: a guard is alive, was
    /// leaked, or failed to unmap and the kernel has not yet confirmed the
    /// range gone.
    pub fn is_mapped(&self) -> bool {
        self.pages.mapped.load(Ordering::Acquire) != 0
    }

    /// Counts one more IOMMU mapping of the pages.
    #[inline]
    pub(crate) fn hold(&self) {
        self.pages.hold();
    }

    /// One IOMMU mapping of the pages is confirmed gone.
    #[inline]
    pub(crate) fn release(&self) {
        self.pages.release();
    }

    fn check(&self, offset: usize, len: usize, align: usize) -> Result<(), DmaError> {
        match offset.checked_add(len) {
            Some(end) if end <= self.pages.len && offset.is_multiple_of(align) => Ok(()),
            _ => Err(DmaError::OutOfBounds {
                offset: offset as u64,
                len: len as u64,
                size: self.pages.len as u64,
            }),
        }
    }

    /// The aligned `N`-byte scalar at `offset` (checked): a 2- or 4-byte
    /// one from one atomic load of its 32-bit word, an 8-byte one from two
    /// (the lower address first).
    #[inline]
    fn scalar<const N: usize>(&self, offset: usize) -> Result<[u8; N], DmaError> {
        self.check(offset, N, N)?;
        let mut out = [0u8; N];
        self.load(offset, &mut out);
        Ok(out)
    }

    /// Stores the aligned `N`-byte scalar at `offset` (checked): 4 bytes in
    /// one atomic store, 2 in one atomic update of their word, 8 as two
    /// 4-byte stores.
    #[inline]
    fn put_scalar<const N: usize>(&self, offset: usize, bytes: [u8; N]) -> Result<(), DmaError> {
        self.check(offset, N, N)?;
        self.store(offset, &bytes);
        Ok(())
    }

    /// Loads `out.len()` bytes from `offset` (checked by the caller).
    #[inline]
    fn load(&self, offset: usize, out: &mut [u8]) {
        // SAFETY: the caller checked `offset + out.len() <= len`; the
        // mapping is page-aligned and a whole number of pages, so every
        // 32-bit word `words` touches lies inside it, and it stays mapped
        // while `&self` lives; all accesses to it are `words`' (Pages'
        // contract).
        unsafe { words::load(self.pages.base(), offset, out) }
    }

    /// Stores `data` at `offset` (checked by the caller).
    #[inline]
    fn store(&self, offset: usize, data: &[u8]) {
        // SAFETY: as in `load`.
        unsafe { words::store(self.pages.base(), offset, data) }
    }

    /// Copies `buf.len()` bytes out of the buffer from `offset` (atomic
    /// word loads: the device may be writing).
    pub fn read(&self, offset: usize, buf: &mut [u8]) -> Result<(), DmaError> {
        self.check(offset, buf.len(), 1)?;
        self.load(offset, buf);
        Ok(())
    }

    /// Copies `buf` into the buffer at `offset` (atomic word stores).
    pub fn write(&self, offset: usize, buf: &[u8]) -> Result<(), DmaError> {
        self.check(offset, buf.len(), 1)?;
        self.store(offset, buf);
        Ok(())
    }

    /// Sets every byte to `value`.
    pub fn fill(&self, value: u8) {
        let page = [value; 256];
        let mut at = 0;
        while at < self.pages.len {
            let n = (self.pages.len - at).min(page.len());
            self.store(at, &page[..n]);
            at += n;
        }
    }

    dma_scalar! {
        u16: read_u16 / write_u16, read_u16_le / write_u16_le, read_u16_be / write_u16_be;
        u32: read_u32 / write_u32, read_u32_le / write_u32_le, read_u32_be / write_u32_be;
        u64: read_u64 / write_u64, read_u64_le / write_u64_le, read_u64_be / write_u64_be;
    }

    /// Reads the byte at `offset`.
    #[inline]
    pub fn read_u8(&self, offset: usize) -> Result<u8, DmaError> {
        self.scalar::<1>(offset).map(|[b]| b)
    }

    /// Writes the byte at `offset`.
    #[inline]
    pub fn write_u8(&self, offset: usize, value: u8) -> Result<(), DmaError> {
        self.put_scalar(offset, [value])
    }

    /// The physical address of each page, for no-IOMMU DMA (the device sees
    /// physical memory). Locks the pages in memory first (`mlock`) so they
    /// stay where they are; reads `/proc/self/pagemap` (needs
    /// `CAP_SYS_ADMIN` to see frame numbers).
    pub fn physical_pages(&self) -> std::io::Result<Vec<u64>> {
        use std::io::{Read, Seek, SeekFrom};
        // SAFETY: locking pages of our own live mapping changes no memory.
        unsafe { nix::sys::mman::mlock(self.pages.ptr.cast(), self.pages.len) }?;
        let page = page_size();
        let mut map = std::fs::File::open("/proc/self/pagemap")?;
        let mut out = Vec::with_capacity(self.pages.len / page);
        for i in 0..self.pages.len / page {
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
            out.push(pfn.checked_mul(page as u64).ok_or_else(|| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    "pagemap frame number overflows",
                )
            })?);
        }
        Ok(out)
    }
}

impl DmaBuffer {
    /// The buffer's physically contiguous runs, `(physical address,
    /// length)` in buffer order ([`physical_pages`](Self::physical_pages)
    /// merged where one page follows the last): what a no-IOMMU device
    /// reaches in one descriptor each. A huge-page buffer is one run per
    /// huge page, or fewer.
    pub fn physical_runs(&self) -> std::io::Result<Vec<(u64, usize)>> {
        let page = page_size();
        let mut runs: Vec<(u64, usize)> = Vec::new();
        for phys in self.physical_pages()? {
            match runs.last_mut() {
                Some((start, len)) if start.checked_add(*len as u64) == Some(phys) => *len += page,
                _ => runs.push((phys, page)),
            }
        }
        Ok(runs)
    }
}

/// A failed unmap: the guard, handed back (still holding its buffer; drop
/// it to try once more, or call `unmap` again), and the kernel's error.
#[derive(Debug, thiserror::Error)]
#[error("unmapping failed (the guard is handed back): {error}")]
pub struct UnmapError<G: std::fmt::Debug, E: std::error::Error + 'static = DmaError> {
    /// The guard, still live: the mapping may remain in the IOMMU.
    pub mapping: G,
    /// Why.
    #[source]
    pub error: E,
}

/// Runs `unmap` on `guard`: on success the guard is done (forgotten: its
/// `Drop` would unmap again; it owns nothing but borrows); on failure it comes
/// back inside the error, still live.
pub(crate) fn try_unmap_with<G: std::fmt::Debug, E: std::error::Error + 'static>(
    guard: G,
    unmap: impl FnOnce(&G) -> Result<(), E>,
) -> Result<(), UnmapError<G, E>> {
    match unmap(&guard) {
        Ok(()) => {
            std::mem::forget(guard);
            Ok(())
        }
        Err(error) => Err(UnmapError {
            mapping: guard,
            error,
        }),
    }
}

/// A live DMA mapping of a [`DmaBuffer`]; unmaps on drop
/// (`VFIO_IOMMU_UNMAP_DMA`). Borrows the container (so its groups cannot
/// leave and it cannot be reconfigured or dropped) and the buffer (so it
/// cannot be freed).
///
/// If the unmap in `Drop` fails, the container keeps a record of the range
/// and the buffer's pages stay allocated until the kernel confirms the range
/// gone; [`unmap`](Self::unmap) reports the failure, and
/// [`try_unmap`](Self::try_unmap) also hands the guard back for a retry.
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
/// mapping.unmap()?; // VFIO_IOMMU_UNMAP_DMA, reporting the kernel's answer
/// assert!(!buffer.is_mapped());
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
#[must_use = "dropping the guard unmaps the buffer at once"]
pub struct DmaMapping<'a> {
    fd: BorrowedFd<'a>,
    kernel: &'a Kernel,
    orphans: &'a Orphans,
    buffer: &'a DmaBuffer,
    iova: u64,
    size: u64,
    _container: PhantomData<&'a ()>,
}

impl<'a> DmaMapping<'a> {
    /// The IOVA the device uses.
    pub fn iova(&self) -> u64 {
        self.iova
    }

    /// The mapped size in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Unmaps now (`VFIO_IOMMU_UNMAP_DMA`), reporting the kernel's answer. On
    /// failure the range may still be mapped: the container keeps the
    /// buffer's pages (the buffer stays [`is_mapped`](DmaBuffer::is_mapped))
    /// until the kernel confirms the range gone, as when `Drop` fails. To
    /// retry instead, use [`try_unmap`](Self::try_unmap).
    #[doc(alias = "VFIO_IOMMU_UNMAP_DMA")]
    pub fn unmap(self) -> Result<(), DmaError> {
        let this = std::mem::ManuallyDrop::new(self);
        this.do_unmap().inspect_err(|_| this.orphan())
    }

    /// Unmaps now (`VFIO_IOMMU_UNMAP_DMA`); on failure the guard comes back
    /// inside the error, still holding the buffer, to retry (`try_unmap`
    /// again) or to drop (which tries once more and, if that fails too,
    /// leaves the pages with the container until the kernel confirms the
    /// range gone).
    #[doc(alias = "VFIO_IOMMU_UNMAP_DMA")]
    pub fn try_unmap(self) -> Result<(), UnmapError<DmaMapping<'a>>> {
        try_unmap_with(self, Self::do_unmap)
    }

    /// Unmaps now with `VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP`: the kernel
    /// reports which pages of the mapping were dirtied since tracking
    /// started or the last bitmap
    /// ([`Container::start_dirty_tracking`](crate::Container::start_dirty_tracking),
    /// type1v2), in the IOMMU's smallest page size, and unmaps. On failure
    /// the guard comes back, still mapped, as from
    /// [`try_unmap`](Self::try_unmap) (`EINVAL` when tracking is off).
    pub fn unmap_with_dirty_bitmap(
        self,
    ) -> Result<crate::dirty::DirtyBitmap, UnmapError<DmaMapping<'a>>> {
        let (iova, size) = (self.iova, self.size);
        let fail = |errno| DmaError::Ioctl {
            ioctl: req::VFIO_IOMMU_UNMAP_DMA.name,
            iova,
            size,
            errno,
        };
        let page_size = match crate::container::query_iommu_info(self.kernel, self.fd) {
            Ok(info) => info.page_sizes & info.page_sizes.wrapping_neg(),
            Err(_) => {
                return Err(UnmapError {
                    mapping: self,
                    error: fail(Errno::EIO),
                });
            }
        };
        let Some(mut map) = crate::dirty::DirtyBitmap::new(iova, size, page_size) else {
            return Err(UnmapError {
                mapping: self,
                error: fail(Errno::EINVAL),
            });
        };
        #[repr(C)]
        struct UnmapWithBitmap {
            unmap: abi::DmaUnmap,
            bitmap: sys::vfio_bitmap,
        }
        let mut arg = UnmapWithBitmap {
            unmap: unmap_dma_arg(iova, size, sys::VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP),
            bitmap: crate::dirty::bitmap_arg(page_size, map.bytes_len(), map.words_ptr()),
        };
        arg.unmap.argsz = size_of::<UnmapWithBitmap>() as u32;
        try_unmap_with(self, |m| {
            // SAFETY: `UnmapWithBitmap` is a 24-byte `DmaUnmap` (plain
            // data) and a `vfio_bitmap` whose padding on 32-bit targets is a
            // named field: every byte is initialised.
            let bytes = unsafe { crate::dirty::arg_bytes(&mut arg) };
            // SAFETY: the kernel reads `argsz` bytes of `arg` and writes the
            // unmapped size back into it, and writes at most `bitmap.size`
            // bytes at `bitmap.data` (it checks the size covers the range's
            // pages and copies only theirs), which are `map`'s words, live
            // and not otherwise touched until the call returns. The range
            // unmapped is this guard's own.
            unsafe {
                m.kernel
                    .ioctl_unchecked(m.fd, req::VFIO_IOMMU_UNMAP_DMA, Arg::InOut(bytes))
            }
            .map_err(fail)?;
            m.buffer.release();
            Ok(())
        })?;
        Ok(map.written())
    }

    /// The unmap failed: the container keeps the pages until the kernel
    /// confirms the range gone.
    #[cold]
    fn orphan(&self) {
        self.orphans
            .adopt(self.iova, self.size, self.buffer.pages.clone());
    }

    #[inline]
    fn do_unmap(&self) -> Result<(), DmaError> {
        unmap_range(self.kernel, self.fd, self.iova, self.size)?;
        self.buffer.release();
        Ok(())
    }
}

impl Drop for DmaMapping<'_> {
    #[inline]
    fn drop(&mut self) {
        // Drop must not fail: on failure the container keeps the pages until
        // the kernel confirms the range gone.
        if self.do_unmap().is_err() {
            self.orphan();
        }
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

/// `VFIO_IOMMU_UNMAP_DMA` of `iova..iova + size` (no flags) on the container
/// `fd`; the bytes the kernel says it unmapped.
#[inline]
pub(crate) fn unmap_range(
    kernel: &Kernel,
    fd: BorrowedFd<'_>,
    iova: u64,
    size: u64,
) -> Result<u64, DmaError> {
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
    /// IOMMU's smallest page, or outside its usable IOVA ranges (read afresh
    /// from `VFIO_IOMMU_GET_INFO`: a group attached since may have shrunk
    /// the ranges); otherwise the ioctl error as it came. Only ever called on
    /// the failure path: the kernel checks all of this itself, so a mapping
    /// that succeeds pays nothing for it.
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
        let Ok(info) = self.iommu_info() else {
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
    /// geometry (`VFIO_IOMMU_GET_INFO`, read when a mapping fails).
    #[doc(alias = "VFIO_IOMMU_MAP_DMA")]
    #[inline]
    pub fn map<'a>(
        &'a self,
        buffer: &'a DmaBuffer,
        iova: u64,
        access: DmaAccess,
    ) -> Result<DmaMapping<'a>, DmaError> {
        let size = buffer.len() as u64;
        // Counted before the call: the device may reach the pages from the
        // moment the kernel maps them.
        buffer.hold();
        // SAFETY: the device may access `buffer` until the mapping is
        // removed. The guard returned borrows the buffer, so it stays
        // allocated while the guard lives; the guard unmaps on drop, and if
        // it is leaked or its unmap fails, the pages' mapping count stays
        // non-zero and they are leaked (or kept by the container's orphan
        // record) instead of freed. The memory is only ever reached through
        // atomic accesses, by the crate and by the simulated device alike.
        let mapped = unsafe { self.map_raw(buffer.as_mut_ptr(), size, iova, access) };
        if let Err(error) = mapped {
            buffer.release();
            return Err(self.explain_map_failure(iova, size, error));
        }
        Ok(DmaMapping {
            fd: self.as_fd(),
            kernel: &self.inner.kernel,
            orphans: &self.inner.orphans,
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
    /// not changing, it must not be freed or reused while mapped, and on the
    /// [simulated kernel](crate::sim) — whose device accesses are atomic
    /// accesses of aligned 32-bit words made on whichever thread started the
    /// DMA — the
    /// program's own accesses to it must not be non-atomic accesses that
    /// could run at the same time.
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
    /// unmap fail later.
    ///
    /// A range whose guard failed to unmap is confirmed gone, and its pages
    /// freed, when this call succeeds and provably removed it: on type1v2
    /// every mapping inside the range goes (the kernel refuses a range that
    /// splits one); on type1 (v1), whose unmap may stop early, only an unmap
    /// of exactly the orphaned range that reports at least its size.
    #[doc(alias = "VFIO_IOMMU_UNMAP_DMA")]
    pub fn unmap_raw(&self, iova: u64, size: u64) -> Result<u64, DmaError> {
        let unmapped = unmap_range(&self.inner.kernel, self.as_fd(), iova, size)?;
        if M::ID == sys::VFIO_TYPE1v2_IOMMU {
            self.inner.orphans.range_gone(iova, size, false);
        } else if unmapped >= size {
            self.inner.orphans.range_gone(iova, size, true);
        }
        Ok(unmapped)
    }

    /// Unmaps everything (`VFIO_IOMMU_UNMAP_DMA` with
    /// `VFIO_DMA_UNMAP_FLAG_ALL`; needs the `VFIO_UNMAP_ALL` extension).
    /// Takes `&mut self`: no mapping guard can be alive. On success the
    /// pages of every guard whose unmap had failed are freed.
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
        self.inner.orphans.all_gone();
        Ok(unmapped_size(arg.as_bytes()))
    }

    /// How many mappings made through guards failed to unmap and are not yet
    /// confirmed gone (their buffers' pages are kept until they are).
    pub fn orphaned_mappings(&self) -> usize {
        self.inner.orphans.count()
    }
}

/// DMA memory as the crate and the simulated device reach it: aligned
/// 32-bit atomic words only, whatever the width asked for. One access size
/// everywhere means no mixed-size atomic accesses (which Rust does not allow
/// to race), and a 32-bit word a device writes in one access (a completion
/// entry's phase and command id) is read whole, never torn.
pub(crate) mod words {
    use std::sync::atomic::{AtomicU32, Ordering};

    /// The word containing byte `at`, and the byte's index in it.
    ///
    /// # Safety
    ///
    /// `base` is 4-aligned and the word `at` falls in is valid for atomic
    /// access for `'a`.
    #[inline(always)]
    unsafe fn word<'a>(base: *mut u8, at: usize) -> (&'a AtomicU32, usize) {
        let p = base.wrapping_add(at & !3).cast::<u32>();
        // SAFETY: the caller's: `p` is 4-aligned (base is, and `at & !3`)
        // and valid for atomic access.
        (unsafe { AtomicU32::from_ptr(p) }, at & 3)
    }

    /// Loads `out.len()` bytes at `base + offset`, a word at a time.
    ///
    /// # Safety
    ///
    /// `base` is 4-aligned; every 32-bit word overlapping `offset..offset +
    /// out.len()` is valid for reads for the call and reached only by
    /// atomic accesses of this module.
    pub(crate) unsafe fn load(base: *mut u8, offset: usize, out: &mut [u8]) {
        let mut i = 0;
        while i < out.len() {
            let at = offset + i;
            // SAFETY: the word of `at` overlaps the range (caller).
            let (w, k) = unsafe { word(base, at) };
            let bytes = w.load(Ordering::Relaxed).to_ne_bytes();
            let n = (4 - k).min(out.len() - i);
            out[i..i + n].copy_from_slice(&bytes[k..k + n]);
            i += n;
        }
    }

    /// Stores `data` at `base + offset`: whole words in one atomic store,
    /// the bytes of a partly covered word in one atomic update of it (the
    /// word's other bytes kept).
    ///
    /// # Safety
    ///
    /// As for [`load`], for writes.
    pub(crate) unsafe fn store(base: *mut u8, offset: usize, data: &[u8]) {
        let mut i = 0;
        while i < data.len() {
            let at = offset + i;
            // SAFETY: the word of `at` overlaps the range (caller).
            let (w, k) = unsafe { word(base, at) };
            let n = (4 - k).min(data.len() - i);
            if n == 4 {
                let mut b = [0u8; 4];
                b.copy_from_slice(&data[i..i + 4]);
                w.store(u32::from_ne_bytes(b), Ordering::Relaxed);
            } else {
                let part = &data[i..i + n];
                // Lock-free: retried only while another store to the same
                // word lands in between.
                let _ = w.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |old| {
                    let mut b = old.to_ne_bytes();
                    b[k..k + n].copy_from_slice(part);
                    Some(u32::from_ne_bytes(b))
                });
            }
            i += n;
        }
    }
}
