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

/// One barrier instruction (the architectures' I/O barriers below).
#[cfg(all(
    not(miri),
    any(
        target_arch = "aarch64",
        target_arch = "arm",
        target_arch = "powerpc",
        target_arch = "powerpc64",
        target_arch = "riscv32",
        target_arch = "riscv64"
    )
))]
macro_rules! barrier {
    ($insn:literal) => {
        // SAFETY: a barrier instruction only: it reads or writes no memory
        // and no register the compiler allocates; without `nomem` the
        // compiler also keeps memory accesses on their side of it.
        unsafe { std::arch::asm!($insn, options(nostack, preserves_flags)) }
    };
}

/// The barrier between a device register read and the program's later
/// reads of DMA memory (what Linux's `readl` has after the load: the
/// outer-shareable domain on Arm, `sync` on PowerPC, `fence i,r` on
/// RISC-V). A Rust fence orders atomics between threads only: it leaves a
/// weakly ordered CPU free to satisfy a later DMA-memory load before an
/// uncached device load, so a driver that reads a status register and then
/// the completion it announces could see stale memory.
#[inline(always)]
fn after_device_read() {
    fence(Ordering::Acquire);
    #[cfg(all(not(miri), target_arch = "aarch64"))]
    barrier!("dmb oshld");
    #[cfg(all(not(miri), target_arch = "arm"))]
    barrier!("dmb osh");
    #[cfg(all(not(miri), any(target_arch = "powerpc", target_arch = "powerpc64")))]
    barrier!("sync");
    #[cfg(all(not(miri), any(target_arch = "riscv32", target_arch = "riscv64")))]
    barrier!("fence i,r");
}

/// The barrier between the program's earlier writes to DMA memory and a
/// device register write (Linux's `writel` before the store: `dmb oshst`,
/// `sync`, `fence w,o`), so that a descriptor written first is visible to
/// the device when the doorbell rung after it arrives. x86 orders stores to
/// uncached memory after earlier stores: a compiler fence is enough there.
#[inline(always)]
fn before_device_write() {
    fence(Ordering::Release);
    #[cfg(all(not(miri), target_arch = "aarch64"))]
    barrier!("dmb oshst");
    #[cfg(all(not(miri), target_arch = "arm"))]
    barrier!("dmb oshst");
    #[cfg(all(not(miri), any(target_arch = "powerpc", target_arch = "powerpc64")))]
    barrier!("sync");
    #[cfg(all(not(miri), any(target_arch = "riscv32", target_arch = "riscv64")))]
    barrier!("fence w,o");
}

/// Volatile read through a slot, then the device-read barrier
/// ([`after_device_read`]): the program's later accesses to DMA memory are
/// not moved before it, so a status register read first and a completion
/// read after keep their order, on every architecture.
pub(crate) fn read<T: Scalar>(slot: Slot<'_>) -> T {
    // SAFETY: a Slot is in bounds of a live mapping for `width` bytes and
    // aligned to `width` (see `Area::slot`); T is a plain integer of that
    // width, valid for any bits.
    let value = unsafe { slot.ptr.cast::<T>().as_ptr().read_volatile() };
    after_device_read();
    value
}

/// The device-write barrier ([`before_device_write`]), then a volatile
/// write through a slot: the program's earlier accesses to DMA memory are
/// not moved after it, so a descriptor written first and a doorbell rung
/// after keep their order, on every architecture.
pub(crate) fn write<T: Scalar>(slot: Slot<'_>, value: T) {
    before_device_write();
    // SAFETY: as in `read`. `region` only writes through mappings made with
    // PROT_WRITE (it refuses writes to regions without the WRITE flag).
    unsafe { slot.ptr.cast::<T>().as_ptr().write_volatile(value) }
}
