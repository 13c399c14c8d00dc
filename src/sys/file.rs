//! Device-fd I/O with 64-bit file offsets on every target.
//!
//! vfio-pci places region `i` at file offset `i << 40`, so an offset never
//! fits a 32-bit `off_t`: on 32-bit glibc targets (i686, armv7, powerpc) the
//! plain `pread`/`pwrite`/`mmap` would truncate it and reach BAR0 instead.
//! glibc's `pread64`/`pwrite64`/`mmap64` take an `off64_t` everywhere; other
//! C libraries on Linux (musl) have a 64-bit `off_t` to begin with. An offset
//! the C type cannot hold is refused (`EINVAL`, what the kernel answers for a
//! negative offset), never truncated. This is the one place that knows the
//! width of `off_t`.

use std::ffi::c_void;
use std::num::NonZeroUsize;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::ptr::NonNull;

use nix::errno::Errno;

#[cfg(target_env = "gnu")]
type Off = libc::off64_t;
#[cfg(not(target_env = "gnu"))]
type Off = libc::off_t;

fn off(offset: u64) -> Result<Off, Errno> {
    Off::try_from(offset).map_err(|_| Errno::EINVAL)
}

/// `pread(2)` of `buf.len()` bytes at the 64-bit `offset`.
pub(crate) fn pread(fd: BorrowedFd<'_>, buf: &mut [u8], offset: u64) -> Result<usize, Errno> {
    let offset = off(offset)?;
    let (ptr, len) = (buf.as_mut_ptr().cast::<c_void>(), buf.len());
    // SAFETY: `ptr..ptr + len` is `buf`, valid for writes and exclusively
    // borrowed for the call; the kernel writes at most `len` bytes there.
    #[cfg(target_env = "gnu")]
    let n = unsafe { libc::pread64(fd.as_raw_fd(), ptr, len, offset) };
    // SAFETY: as above.
    #[cfg(not(target_env = "gnu"))]
    let n = unsafe { libc::pread(fd.as_raw_fd(), ptr, len, offset) };
    Errno::result(n).map(|n| n.unsigned_abs())
}

/// `pwrite(2)` of `buf` at the 64-bit `offset`.
pub(crate) fn pwrite(fd: BorrowedFd<'_>, buf: &[u8], offset: u64) -> Result<usize, Errno> {
    let offset = off(offset)?;
    let (ptr, len) = (buf.as_ptr().cast::<c_void>(), buf.len());
    // SAFETY: `ptr..ptr + len` is `buf`, valid for reads for the call; the
    // kernel only reads it.
    #[cfg(target_env = "gnu")]
    let n = unsafe { libc::pwrite64(fd.as_raw_fd(), ptr, len, offset) };
    // SAFETY: as above.
    #[cfg(not(target_env = "gnu"))]
    let n = unsafe { libc::pwrite(fd.as_raw_fd(), ptr, len, offset) };
    Errno::result(n).map(|n| n.unsigned_abs())
}

/// `mmap(2)` of `len` bytes of `fd` at the 64-bit `offset`, shared, with
/// `prot`; the kernel picks the address (no hint, no `MAP_FIXED`).
pub(crate) fn mmap_shared(
    fd: BorrowedFd<'_>,
    len: NonZeroUsize,
    prot: libc::c_int,
    offset: u64,
) -> Result<NonNull<u8>, Errno> {
    let offset = off(offset)?;
    let null = std::ptr::null_mut();
    // SAFETY: no address hint and no MAP_FIXED: the kernel chooses a fresh
    // range, so no memory of this process is replaced or aliased.
    #[cfg(target_env = "gnu")]
    let p = unsafe {
        libc::mmap64(
            null,
            len.get(),
            prot,
            libc::MAP_SHARED,
            fd.as_raw_fd(),
            offset,
        )
    };
    // SAFETY: as above.
    #[cfg(not(target_env = "gnu"))]
    let p = unsafe {
        libc::mmap(
            null,
            len.get(),
            prot,
            libc::MAP_SHARED,
            fd.as_raw_fd(),
            offset,
        )
    };
    if p == libc::MAP_FAILED {
        return Err(Errno::last());
    }
    NonNull::new(p.cast::<u8>()).ok_or(Errno::EINVAL)
}
