//! The simulator's contact with the host: the real fds that stand for
//! simulated objects, eventfds, and the process memory that simulated DMA
//! reaches. The only `unsafe` code of the simulator lives here.
//!
//! Every simulated object (container, group, device file) is a pipe: the
//! caller owns the write end (so `OwnedFd`, `AsFd`, `dup` and `try_clone`
//! work as for any fd), the simulator keeps the read end. The simulator
//! names an object by the caller's fd's inode (which `dup` shares) and
//! learns that every copy of it was closed when its own end reads EOF — the
//! simulated kernel's `release`.
//!
//! Under Miri (no `fstat` of pipes, no `/proc`), objects are named by fd
//! number instead: duplicated fds are then not recognised.

use std::ffi::c_int;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use nix::errno::Errno;

/// What names an open file: device and inode numbers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct FdKey {
    dev: u64,
    ino: u64,
}

/// The key of an open fd.
#[cfg(not(miri))]
pub(crate) fn key_of(fd: BorrowedFd<'_>) -> Result<FdKey, Errno> {
    let st = nix::sys::stat::fstat(fd)?;
    // `st_ino` is 32 bits wide on some 32-bit targets: widened, never cut.
    #[allow(clippy::useless_conversion)]
    Ok(FdKey {
        dev: u64::from(st.st_dev),
        ino: u64::from(st.st_ino),
    })
}

/// The key of an open fd (Miri: its number).
#[cfg(miri)]
pub(crate) fn key_of(fd: BorrowedFd<'_>) -> Result<FdKey, Errno> {
    use std::os::fd::AsRawFd;
    Ok(FdKey {
        dev: 0,
        ino: fd.as_raw_fd() as u64,
    })
}

/// The key of an fd number taken from a request's argument bytes (it may
/// not be open: `EBADF`, as the kernel's `fdget` answers).
#[cfg(not(miri))]
pub(crate) fn key_of_raw(raw: c_int) -> Result<FdKey, Errno> {
    use std::os::unix::fs::MetadataExt;
    if raw < 0 {
        return Err(Errno::EBADF);
    }
    // stat(2) of the /proc magic link reaches the open file itself.
    let meta = std::fs::metadata(format!("/proc/self/fd/{raw}")).map_err(|_| Errno::EBADF)?;
    Ok(FdKey {
        dev: meta.dev(),
        ino: meta.ino(),
    })
}

/// The key of an fd number (Miri: the number).
#[cfg(miri)]
pub(crate) fn key_of_raw(raw: c_int) -> Result<FdKey, Errno> {
    if raw < 0 {
        return Err(Errno::EBADF);
    }
    Ok(FdKey {
        dev: 0,
        ino: raw as u64,
    })
}

/// A new object: (the caller's end, the simulator's end). A pipe: the
/// caller holds the write end, the simulator the read end, which reads EOF
/// once every copy of the write end is closed. (Pipes exist on every Linux
/// configuration; Unix sockets need `CONFIG_UNIX`.)
pub(crate) fn object_pair() -> Result<(OwnedFd, OwnedFd), Errno> {
    use nix::fcntl::OFlag;
    let (read, write) = nix::unistd::pipe2(OFlag::O_CLOEXEC | OFlag::O_NONBLOCK)?;
    Ok((write, read))
}

/// Whether every copy of the caller's end of an object is closed.
pub(crate) fn peer_closed(own_end: &OwnedFd) -> bool {
    let mut scratch = [0u8; 64];
    // EOF: the write end is closed everywhere. Data (someone wrote to the
    // object fd) or EAGAIN: still open.
    matches!(nix::unistd::read(own_end, &mut scratch), Ok(0))
}

/// Takes a reference on the eventfd numbered `raw`, as `eventfd_ctx_fdget`
/// does: `EBADF` if it is not open, `EINVAL` if it is not an eventfd.
pub(crate) fn eventfd_ref(raw: c_int) -> Result<OwnedFd, Errno> {
    if raw < 0 {
        return Err(Errno::EBADF);
    }
    #[cfg(not(miri))]
    {
        let target =
            std::fs::read_link(format!("/proc/self/fd/{raw}")).map_err(|_| Errno::EBADF)?;
        if target.as_os_str() != "anon_inode:[eventfd]" {
            return Err(Errno::EINVAL);
        }
    }
    let dup = dup_cloexec(raw)?;
    // SAFETY: `dup` was just returned by a successful F_DUPFD_CLOEXEC: it is
    // a new open fd that nothing else in this process owns.
    Ok(unsafe { OwnedFd::from_raw_fd(dup) })
}

/// A close-on-exec duplicate of fd `raw`: dup(2), then `FD_CLOEXEC`, since
/// QEMU 7.2's user-mode emulation (the foreign-architecture suites) loses the
/// eventfd byte swap on fds made by `F_DUPFD_CLOEXEC` and handles plain dup.
#[cfg(not(miri))]
fn dup_cloexec(raw: c_int) -> Result<c_int, Errno> {
    // SAFETY: dup takes an integer and touches no memory of this process; on
    // an fd number that is not open it fails (EBADF).
    let dup = Errno::result(unsafe { libc::dup(raw) })?;
    // SAFETY: F_SETFD on the fd just made touches no memory.
    let flagged = unsafe { libc::fcntl(dup, libc::F_SETFD, libc::FD_CLOEXEC) };
    if let Err(errno) = Errno::result(flagged) {
        // SAFETY: `dup` is ours alone and not used after this.
        unsafe { libc::close(dup) };
        return Err(errno);
    }
    Ok(dup)
}

/// Miri knows `F_DUPFD_CLOEXEC` but not `F_SETFD` (and runs no qemu-user).
#[cfg(miri)]
fn dup_cloexec(raw: c_int) -> Result<c_int, Errno> {
    // SAFETY: fcntl(F_DUPFD_CLOEXEC) takes an integer and touches no memory
    // of this process; on an fd number that is not open it fails (EBADF).
    Errno::result(unsafe { libc::fcntl(raw, libc::F_DUPFD_CLOEXEC, 0) })
}

/// Whether an eventfd was signalled since last asked, consuming the counter
/// (as the kernel's virqfd wakeup does): a zero-timeout poll, then a read.
pub(crate) fn eventfd_take(eventfd: &OwnedFd) -> bool {
    let mut pfd = libc::pollfd {
        fd: eventfd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: `pfd` is one valid pollfd, exclusively borrowed for the call,
    // and the count says one; a zero timeout never blocks.
    let ready = unsafe { libc::poll(&mut pfd, 1, 0) };
    if ready != 1 || pfd.revents & libc::POLLIN == 0 {
        return false;
    }
    let mut counter = [0u8; 8];
    // Readable: the read does not block, and leaves the counter 0.
    matches!(nix::unistd::read(eventfd, &mut counter), Ok(8))
}

/// Signals an eventfd (adds 1 to its counter), as `eventfd_signal` does.
pub(crate) fn signal(eventfd: &OwnedFd) {
    // A full counter (EAGAIN) drops the signal, as the kernel's does.
    let _ = nix::unistd::write(eventfd.as_fd(), &1u64.to_ne_bytes());
}

/// Whether `addr..addr + len` (page-aligned) is mapped in this process: the
/// kernel's page pinning fails with `EFAULT` where it is not.
pub(crate) fn is_mapped(addr: u64, len: u64, page: u64) -> bool {
    if cfg!(miri) {
        return true;
    }
    const CHUNK: u64 = 256;
    let mut at = addr;
    let end = addr.saturating_add(len);
    let mut vec = [0u8; CHUNK as usize];
    while at < end {
        let n = ((end - at).div_ceil(page)).min(CHUNK);
        let ptr = std::ptr::without_provenance_mut::<libc::c_void>(at as usize);
        // SAFETY: mincore(2) only inspects this process's page tables for
        // the range (it never dereferences `ptr`) and writes one byte per
        // page into `vec`, which has room for `n <= CHUNK` pages.
        let r = unsafe { libc::mincore(ptr, (n * page) as usize, vec.as_mut_ptr()) };
        if r != 0 {
            return false;
        }
        at += n * page;
    }
    true
}

/// Copies process memory at `addr` into `out` with atomic loads of the
/// aligned 32-bit words it overlaps: the device's side of DMA. The program's
/// own accesses to DMA memory are the same ([`DmaBuffer`](crate::DmaBuffer)), so a
/// simulated device writing on one thread while the buffer's owner reads on
/// another is no data race.
///
/// # Safety
///
/// `addr..addr + out.len()` must be memory of this process that is valid
/// for reads for the whole call, and that no non-atomic access races with:
/// the simulator calls this only for ranges inside a live IOMMU mapping,
/// whose creator promised exactly that when it issued `VFIO_IOMMU_MAP_DMA`
/// (see `Kernel::ioctl_unchecked` and `Container::map_raw`). The address
/// must carry exposed provenance (mapped addresses come from `as` casts of
/// pointers, which expose it).
pub(crate) unsafe fn read_process(addr: u64, out: &mut [u8]) {
    let base = std::ptr::with_exposed_provenance_mut::<u8>((addr & !3) as usize);
    // SAFETY: the caller's range lies in a mapping of whole pages, so the
    // 32-bit words overlapping it do too; the crate reaches that memory
    // only through `dma::words` (DmaBuffer) and so does this.
    unsafe { crate::dma::words::load(base, (addr & 3) as usize, out) }
}

/// Copies `data` into process memory at `addr` with atomic stores (and
/// updates) of the aligned 32-bit words it overlaps (the device writing by
/// DMA).
///
/// # Safety
///
/// `addr..addr + data.len()` must be memory of this process that is valid
/// for writes, that no Rust reference relies on, and that no non-atomic
/// access races with, for the whole call: the simulator calls this only for
/// ranges inside a live IOMMU mapping with device-write access, whose creator
/// promised that when it issued `VFIO_IOMMU_MAP_DMA`. Provenance as for
/// [`read_process`].
pub(crate) unsafe fn write_process(addr: u64, data: &[u8]) {
    let base = std::ptr::with_exposed_provenance_mut::<u8>((addr & !3) as usize);
    // SAFETY: as in `read_process`, for writes.
    unsafe { crate::dma::words::store(base, (addr & 3) as usize, data) }
}
