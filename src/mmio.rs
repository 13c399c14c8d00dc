//! The unsafe core of MMIO: `mmap` of a device fd and volatile access into it.
//! Callers ([`region`](crate::region)) do the bounds and alignment checks and
//! reach memory only through a [`Slot`], which can only be made in bounds.

use std::marker::PhantomData;
use std::num::NonZeroUsize;
use std::os::fd::BorrowedFd;
use std::ptr::NonNull;
use std::sync::atomic::{Ordering, fence};

use nix::errno::Errno;
use nix::sys::mman::munmap;

/// One mapped area: `size` bytes of the region from `offset`, at `ptr`.
#[derive(Debug)]
pub(crate) struct Area {
    pub(crate) offset: u64,
    pub(crate) size: u64,
    pub(crate) ptr: NonNull<u8>,
}

// SAFETY: an Area is an exclusive owner of its mapping; the mapping is plain
// shared memory of the device, usable from any thread.
unsafe impl Send for Area {}

/// An in-bounds, aligned address inside an [`Area`], borrowed from it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Slot<'a> {
    ptr: NonNull<u8>,
    _area: PhantomData<&'a Area>,
}

impl Area {
    /// The address of `width` bytes at region offset `offset`, if they lie in
    /// this area. The caller has checked `offset` is a multiple of `width`;
    /// the area starts page-aligned, so the address is aligned too.
    pub(crate) fn slot(&self, offset: u64, width: usize) -> Option<Slot<'_>> {
        let rel = offset.checked_sub(self.offset)?;
        let end = rel.checked_add(width as u64)?;
        if end > self.size || !rel.is_multiple_of(width as u64) {
            return None;
        }
        let rel = usize::try_from(rel).ok()?;
        // SAFETY: `rel + width <= size`, so `ptr + rel` stays inside the
        // mapping of `size` bytes that starts at `ptr` (the same allocation).
        let ptr = unsafe { self.ptr.add(rel) };
        Some(Slot {
            ptr,
            _area: PhantomData,
        })
    }
}

impl Drop for Area {
    fn drop(&mut self) {
        // SAFETY: `ptr`/`size` are exactly a mapping this Area made and owns;
        // no Slot outlives the Area (they borrow it). Errors are ignored:
        // Drop must not fail.
        let _ = unsafe { munmap(self.ptr.cast(), self.size as usize) };
    }
}

/// Maps `len` bytes of the device fd at file offset `offset`, shared.
pub(crate) fn map(
    fd: BorrowedFd<'_>,
    offset: u64,
    len: u64,
    read: bool,
    write: bool,
) -> Result<NonNull<u8>, Errno> {
    // A length the address space cannot hold is refused, never truncated.
    let len = usize::try_from(len)
        .ok()
        .and_then(NonZeroUsize::new)
        .ok_or(Errno::EINVAL)?;
    let mut prot = 0;
    if read {
        prot |= libc::PROT_READ;
    }
    if write {
        prot |= libc::PROT_WRITE;
    }
    crate::sys::file::mmap_shared(fd, len, prot, offset)
}

/// A plain integer the MMIO accessors move.
pub(crate) trait Scalar: Copy + sealed::Sealed {}
mod sealed {
    pub trait Sealed {}
}
macro_rules! scalar {
    ($($t:ty),*) => {$(impl sealed::Sealed for $t {} impl Scalar for $t {})*};
}
scalar!(u8, u16, u32, u64);

/// Volatile read through a slot, then an acquire fence: the program's later
/// accesses to DMA memory (atomic, see `dma`) are not moved before it, so a
/// status register read first and a completion read after keep their order.
pub(crate) fn read<T: Scalar>(slot: Slot<'_>) -> T {
    // SAFETY: a Slot is in bounds of a live mapping for `width` bytes and
    // aligned to `width` (see `Area::slot`); T is a plain integer of that
    // width, valid for any bits.
    let value = unsafe { slot.ptr.cast::<T>().as_ptr().read_volatile() };
    fence(Ordering::Acquire);
    value
}

/// A release fence, then a volatile write through a slot: the program's
/// earlier accesses to DMA memory are not moved after it, so a descriptor
/// written first and a doorbell rung after keep their order. (On x86 both
/// fences cost nothing but the compiler's ordering.)
pub(crate) fn write<T: Scalar>(slot: Slot<'_>, value: T) {
    fence(Ordering::Release);
    // SAFETY: as in `read`. `region` only writes through mappings made with
    // PROT_WRITE (it refuses writes to regions without the WRITE flag).
    unsafe { slot.ptr.cast::<T>().as_ptr().write_volatile(value) }
}
