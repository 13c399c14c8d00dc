//! `IOMMU_IOAS_COPY`: the pages of an existing mapping, mapped a second
//! time (in another IOAS of the same iommufd, or elsewhere in the same one).
//!
//! The kernel's copy shares the source mapping's pages: it stays when the
//! source is unmapped, and devices reach the memory through it until it is
//! unmapped itself. So a safe copy of an [`IoasMapping`] is a second guard
//! over the same [`DmaBuffer`](crate::DmaBuffer), holding it exactly as
//! [`Ioas::map`] does, with its own unmap on drop and its own orphan record
//! (the destination IOAS's); it borrows the buffer and the destination,
//! not the source guard or the source IOAS, which may go first.
//!
//! The kernel copies whatever the source IOVAs map *now*. A guard's IOVAs
//! map its buffer unless something else unmapped them: [`Ioas::unmap_raw`]
//! (safe: removing access always is), or the guard's own unmap that failed
//! part way. Other memory may be mapped there afterwards, which a copy
//! would then hand to devices under the guard's name. Each IOAS therefore
//! records the ranges unmapped behind guards' backs ([`RawUnmaps`]), and a
//! copy of a guard whose range lies inside one recorded after the guard was
//! made is refused ([`DmaError::Stale`]).

use std::os::fd::AsFd;
#[cfg(target_has_atomic = "64")]
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

use super::{Ioas, IoasMapping, map_flags};
use crate::container::IovaRange;
use crate::dma::DmaAccess;
use crate::error::DmaError;
use crate::kernel::{Arg, req};
use crate::sys::{self, IntoBytes};

/// How many unmap records an IOAS keeps; past it they collapse into a
/// floor: every guard made before it counts as unmapped (no copy), which
/// is conservative, and bounds the memory.
const MAX_RECORDS: usize = 1024;

/// The ranges of an IOAS unmapped other than by their own guards, each with
/// a sequence number; a guard carries the number current just before its
/// mapping was made (its *stamp*).
///
/// Ordering: [`around`](Self::around) holds the lock across the unmap it
/// records, and a copy holds it across its `IOMMU_IOAS_COPY`
/// ([`intact`](Self::intact)), so an unmap is wholly before or wholly
/// after a copy; a stamp is taken before the map or copy that makes its
/// guard, so a guard made while an unmap runs counts as made before it.
///
/// Where the target has 64-bit atomics the current sequence number is also
/// published in an atomic, stored under the lock after each record, so
/// taking a stamp (once per map, the hot path) is one load instead of a
/// lock and an unlock. A stamp read while an unmap runs is the number from
/// before it, as with the lock.
#[derive(Debug, Default)]
pub(super) struct RawUnmaps {
    records: Mutex<Records>,
    #[cfg(target_has_atomic = "64")]
    seq: AtomicU64,
}

#[derive(Debug, Default)]
struct Records {
    /// Records made so far.
    seq: u64,
    /// Guards stamped before this count as unmapped.
    floor: u64,
    /// `(sequence number, range)`, oldest first.
    ranges: Vec<(u64, IovaRange)>,
}

impl RawUnmaps {
    fn lock(&self) -> MutexGuard<'_, Records> {
        self.records.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The stamp for a guard about to be made.
    #[inline]
    pub(super) fn stamp(&self) -> u64 {
        #[cfg(target_has_atomic = "64")]
        return self.seq.load(Ordering::Acquire);
        #[cfg(not(target_has_atomic = "64"))]
        return self.lock().seq;
    }

    /// Adds a record under the lock held as `records`.
    fn add(&self, records: &mut Records, iova: u64, size: u64) {
        records.record(iova, size);
        #[cfg(target_has_atomic = "64")]
        self.seq.store(records.seq, Ordering::Release);
    }

    /// Records that the mappings inside `iova..iova + size` may be gone.
    pub(super) fn record(&self, iova: u64, size: u64) {
        self.add(&mut self.lock(), iova, size);
    }

    /// Runs the unmap `f` of `iova..iova + size` and records the range,
    /// whatever `f` answers (a failed unmap may have removed part of it).
    pub(super) fn around<T>(&self, iova: u64, size: u64, f: impl FnOnce() -> T) -> T {
        let mut records = self.lock();
        let answer = f();
        self.add(&mut records, iova, size);
        answer
    }

    /// Runs `f` (the copy of a guard's `iova..iova + size`, made with
    /// `stamp`) if no unmap recorded since the stamp covers the range;
    /// `None` without running it otherwise.
    pub(super) fn intact<T>(
        &self,
        stamp: u64,
        iova: u64,
        size: u64,
        f: impl FnOnce() -> T,
    ) -> Option<T> {
        let records = self.lock();
        let unmapped = stamp < records.floor
            || records
                .ranges
                .iter()
                .any(|(seq, range)| *seq > stamp && range.contains(iova, size));
        (!unmapped).then(f)
    }

    /// No guard is alive: every record can go.
    pub(super) fn clear(&self) {
        self.lock().ranges.clear();
    }
}

impl Records {
    fn record(&mut self, iova: u64, size: u64) {
        // The kernel reads (0, u64::MAX) as "everything"; any other range
        // that is empty or wraps it refuses, removing nothing.
        let end = if iova == 0 && size == u64::MAX {
            u64::MAX
        } else {
            match size.checked_sub(1).and_then(|s| iova.checked_add(s)) {
                Some(end) => end,
                None => return,
            }
        };
        self.seq += 1;
        if self.ranges.len() == MAX_RECORDS {
            self.floor = self.seq;
            self.ranges.clear();
        } else {
            self.ranges.push((self.seq, IovaRange { start: iova, end }));
        }
    }
}

impl<'f> Ioas<'f> {
    /// Maps the buffer `source` maps, a second time: in this IOAS at `iova`
    /// (`IOMMU_IOAS_COPY` with `FIXED_IOVA`), from the source guard's IOAS
    /// (this one or another of the same iommufd). The guard returned holds
    /// the buffer and unmaps the copy on drop; it borrows this IOAS and the
    /// buffer, and may outlive `source` and its IOAS (the kernel's copy
    /// stays when the source is unmapped or its IOAS destroyed).
    ///
    /// Errors: [`DmaError::OtherIommufd`] when the source's IOAS is in
    /// another iommufd, [`DmaError::Stale`] when the source's range was
    /// unmapped behind its back (see [`unmap_raw`](Self::unmap_raw)), both
    /// before the call; the kernel's errno in [`DmaError::Ioctl`] (`EEXIST`
    /// over a mapping, `EINVAL` in a reserved range or unaligned, `EPERM`
    /// for device writes to a source the device may only read).
    #[doc(alias = "IOMMU_IOAS_COPY")]
    pub fn copy<'a, 'b>(
        &'a self,
        source: &IoasMapping<'_, '_, 'b>,
        iova: u64,
        access: DmaAccess,
    ) -> Result<IoasMapping<'a, 'f, 'b>, DmaError> {
        self.copy_mapping(source, Some(iova), access)
    }

    /// As [`copy`](Self::copy), at an IOVA the kernel chooses (within the
    /// allowed ranges, if [`allow_iovas`](Self::allow_iovas) set some); the
    /// guard's [`iova`](IoasMapping::iova) says where.
    #[doc(alias = "IOMMU_IOAS_COPY")]
    pub fn copy_anywhere<'a, 'b>(
        &'a self,
        source: &IoasMapping<'_, '_, 'b>,
        access: DmaAccess,
    ) -> Result<IoasMapping<'a, 'f, 'b>, DmaError> {
        self.copy_mapping(source, None, access)
    }

    fn copy_mapping<'a, 'b>(
        &'a self,
        source: &IoasMapping<'_, '_, 'b>,
        iova: Option<u64>,
        access: DmaAccess,
    ) -> Result<IoasMapping<'a, 'f, 'b>, DmaError> {
        let stamp = self.raw_unmaps.stamp();
        // Counted before the call: the device may reach the pages from the
        // moment the kernel maps them.
        source.buffer.hold();
        let copied = source
            .ioas
            .raw_unmaps
            .intact(source.stamp, source.iova, source.size, || {
                // SAFETY: the source range still maps `source.buffer` (no
                // unmap of it since the guard was made: `intact`, which
                // holds off any unmap until the copy is done), so the copy
                // maps that buffer's pages. The guard returned borrows the
                // buffer, so it stays allocated while the guard lives; it
                // unmaps the copy on drop, and if it is leaked or its unmap
                // fails the pages' mapping count (just raised) stays non-zero
                // and they are leaked or kept by this IOAS's orphan record
                // instead of freed. The memory is only ever reached by
                // atomic accesses.
                unsafe { self.copy_raw(source.ioas, source.iova, source.size, iova, access) }
            });
        match copied {
            Some(Ok(iova)) => Ok(IoasMapping {
                ioas: self,
                buffer: source.buffer,
                iova,
                size: source.size,
                stamp,
            }),
            Some(Err(error)) => {
                source.buffer.release();
                Err(error)
            }
            None => {
                source.buffer.release();
                Err(DmaError::Stale {
                    ioctl: req::IOMMU_IOAS_COPY.name,
                    iova: source.iova,
                    size: source.size,
                })
            }
        }
    }

    /// Maps whatever `source` maps at `src_iova..src_iova + size` in this
    /// IOAS too (`IOMMU_IOAS_COPY`), at `iova` or, with `None`, where the
    /// kernel chooses; returns the IOVA. No guard: for memory mapped with
    /// [`map_raw`](Self::map_raw); undo with [`unmap_raw`](Self::unmap_raw).
    /// The range may be part of a mapping, or span adjacent ones; a hole in
    /// it is `ENOENT`. `source` must be an IOAS of the same iommufd
    /// ([`DmaError::OtherIommufd`] otherwise, before the call).
    ///
    /// # Safety
    ///
    /// The memory mapped there must stay mapped in this process, and the
    /// caller must accept devices reading (and, with write access, writing)
    /// it at any time, until the copy is unmapped from this IOAS (by
    /// `unmap_raw`, `unmap_all`, or the IOAS's destruction): unmapping the
    /// source does not end the copy. If the range maps a [`DmaBuffer`]
    /// through a guard, that buffer must outlive the copy too.
    ///
    /// [`DmaBuffer`]: crate::DmaBuffer
    #[doc(alias = "IOMMU_IOAS_COPY")]
    pub unsafe fn copy_raw(
        &self,
        source: &Ioas<'_>,
        src_iova: u64,
        size: u64,
        iova: Option<u64>,
        access: DmaAccess,
    ) -> Result<u64, DmaError> {
        let ioctl = req::IOMMU_IOAS_COPY.name;
        // The request names both IOASes by id in the one iommufd it is
        // issued on: an id from another iommufd would name some other IOAS.
        if !std::ptr::eq(self.iommufd, source.iommufd) {
            return Err(DmaError::OtherIommufd { ioctl });
        }
        let mut arg = sys::iommu_ioas_copy {
            size: size_of::<sys::iommu_ioas_copy>() as u32,
            flags: map_flags(iova, access),
            dst_ioas_id: self.id,
            src_ioas_id: source.id,
            length: size,
            dst_iova: iova.unwrap_or(0),
            src_iova,
        };
        // SAFETY: the argument is a complete `iommu_ioas_copy` (size = its
        // size), which the kernel reads and writes back (`dst_iova`); it
        // carries no pointer. The memory the copy gives devices is covered
        // by this function's contract, which the caller upholds.
        unsafe {
            self.iommufd.kernel.ioctl_unchecked(
                self.iommufd.fd.as_fd(),
                req::IOMMU_IOAS_COPY,
                Arg::InOut(arg.as_mut_bytes()),
            )
        }
        .map_err(|errno| DmaError::Ioctl {
            ioctl,
            iova: iova.unwrap_or(0),
            size,
            errno,
        })?;
        Ok(arg.dst_iova)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_guard_is_stale_only_under_a_later_unmap_covering_it() {
        let r = RawUnmaps::default();
        let old = r.stamp();
        r.record(0x10_0000, 0x2000);
        let new = r.stamp();
        assert!(new > old);
        // Covered by a record made after it: stale.
        assert!(r.intact(old, 0x10_0000, 0x1000, || ()).is_none());
        assert!(r.intact(old, 0x10_0000, 0x2000, || ()).is_none());
        // Made after the record, or not inside it: intact.
        assert_eq!(r.intact(new, 0x10_0000, 0x2000, || 7), Some(7));
        assert!(r.intact(old, 0x10_0000, 0x3000, || ()).is_some());
        assert!(r.intact(old, 0x20_0000, 0x1000, || ()).is_some());
        // An empty or wrapping range unmaps nothing: no record.
        r.record(5, 0);
        r.record(u64::MAX, 2);
        assert_eq!(r.stamp(), new);
        // (0, u64::MAX) is the kernel's "everything", the top byte too.
        r.record(0, u64::MAX);
        assert!(r.intact(new, u64::MAX - 0xfff, 0x1000, || ()).is_none());
        r.clear();
        assert!(r.intact(old, 0x10_0000, 0x1000, || ()).is_some());
    }

    #[test]
    fn records_past_the_cap_collapse_into_a_floor() {
        let r = RawUnmaps::default();
        let old = r.stamp();
        for i in 0..=MAX_RECORDS as u64 {
            r.record(0x1000_0000 + i * 0x1000, 0x1000);
        }
        // Unrelated to every recorded range, but older than the floor.
        assert!(r.intact(old, 0x10_0000, 0x1000, || ()).is_none());
        let new = r.stamp();
        assert!(r.intact(new, 0x10_0000, 0x1000, || ()).is_some());
        assert!(r.lock().ranges.len() <= MAX_RECORDS);
    }

    #[test]
    fn copy_and_allow_never_take_the_safe_path() {
        let bytes = [0u8; 40];
        for request in [req::IOMMU_IOAS_COPY, req::IOMMU_IOAS_ALLOW_IOVAS] {
            assert!(crate::kernel::check_shape(request.shape, &Arg::In(&bytes)).is_err());
        }
    }
}
