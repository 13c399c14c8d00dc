//! `IOMMU_IOAS_ALLOW_IOVAS`: the ranges an IOAS may choose IOVAs from.
//!
//! What the kernel does with them (Linux 6.12, `ioas.c`, `io_pagetable.c`):
//! IOVAs it chooses (a map or copy without `FIXED_IOVA`) come from the
//! allowed ranges only; a fixed IOVA is not checked against them; a device
//! whose reserved regions (the MSI window) or IOMMU aperture would
//! intersect them cannot be attached (`EADDRINUSE`), and ranges that
//! intersect a region reserved already are refused (`EADDRINUSE`, the
//! previous ranges kept). They do not show in
//! [`iova_ranges`](Ioas::iova_ranges), which reports the reserved regions'
//! holes.

use std::os::fd::AsFd;

use super::{Ioas, IommufdError};
use crate::container::IovaRange;
use crate::kernel::{Arg, req};
use crate::sys::{self, IntoBytes};

/// The `iommu_iova_range` array for `ranges`, or the first range the crate
/// refuses: one that ends before it starts, or that reaches past `ulong_max`
/// (the kernel's `unsigned long`, into which it copies each bound unchecked:
/// on a 32-bit kernel a larger bound would silently lose its top half).
pub(super) fn encode(
    ranges: &[IovaRange],
    ulong_max: u64,
) -> Result<Vec<sys::iommu_iova_range>, IommufdError> {
    let bad = |r: &IovaRange, what| IommufdError::BadRange {
        ioctl: req::IOMMU_IOAS_ALLOW_IOVAS.name,
        start: r.start,
        end: r.end,
        what,
    };
    if u32::try_from(ranges.len()).is_err() {
        let (first, last) = (ranges[0], ranges[ranges.len() - 1]);
        return Err(bad(
            &IovaRange {
                start: first.start,
                end: last.end,
            },
            "more ranges than num_iovas counts",
        ));
    }
    ranges
        .iter()
        .map(|r| {
            if r.start > r.end {
                Err(bad(r, "ends before it starts"))
            } else if r.end > ulong_max {
                Err(bad(r, "reaches past the kernel's unsigned long"))
            } else {
                Ok(sys::iommu_iova_range {
                    start: r.start,
                    last: r.end,
                })
            }
        })
        .collect()
}

impl Ioas<'_> {
    /// Restricts the IOVAs the kernel chooses for this IOAS
    /// ([`map_anywhere`](Self::map_anywhere),
    /// [`copy_anywhere`](Self::copy_anywhere)) to `ranges`
    /// (`IOMMU_IOAS_ALLOW_IOVAS`); an empty slice lifts the restriction.
    /// Replaces the previous ranges as a whole, or, on failure, keeps them.
    ///
    /// Refused before the call ([`IommufdError::BadRange`]): a range that
    /// ends before it starts, or past the kernel's `unsigned long` (taken to
    /// be as wide as this program's `usize`: a 32-bit program on a 64-bit
    /// kernel is refused bounds past 4 GiB it could have had). The
    /// kernel refuses (`EINVAL`) a range of one byte (`start == end`) and
    /// ranges that overlap each other, and (`EADDRINUSE`) a range that
    /// intersects a reserved region of an attached device. Fixed-IOVA maps
    /// are not restricted; attaching a device whose reserved regions fall
    /// inside an allowed range fails (`EADDRINUSE`).
    #[doc(alias = "IOMMU_IOAS_ALLOW_IOVAS")]
    pub fn allow_iovas(&self, ranges: &[IovaRange]) -> Result<(), IommufdError> {
        let ioctl = req::IOMMU_IOAS_ALLOW_IOVAS.name;
        let ulong_max = u64::try_from(usize::MAX).unwrap_or(u64::MAX);
        let array = encode(ranges, ulong_max)?;
        let mut arg = sys::iommu_ioas_allow_iovas {
            size: size_of::<sys::iommu_ioas_allow_iovas>() as u32,
            ioas_id: self.id,
            // Checked by `encode`.
            num_iovas: array.len() as u32,
            __reserved: 0,
            allowed_iovas: array.as_ptr() as u64,
        };
        // SAFETY: the argument is a complete `iommu_ioas_allow_iovas` (size
        // = its size); its one pointer, `allowed_iovas`, names `array`,
        // which holds exactly `num_iovas` entries and lives across the
        // call: the kernel reads at most that many `iommu_iova_range`s there
        // and writes nothing.
        unsafe {
            self.iommufd.kernel.ioctl_unchecked(
                self.iommufd.fd.as_fd(),
                req::IOMMU_IOAS_ALLOW_IOVAS,
                Arg::InOut(arg.as_mut_bytes()),
            )
        }
        .map(drop)
        .map_err(|errno| IommufdError::Ioctl { ioctl, errno })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const R: fn(u64, u64) -> IovaRange = |start, end| IovaRange { start, end };

    #[test]
    fn ranges_encode_in_order_and_bad_ones_are_named() {
        let got = encode(&[R(0x1000, 0x1fff), R(0x10_0000, 0x1f_ffff)], u64::MAX).unwrap();
        assert_eq!(
            got.iter().map(|r| (r.start, r.last)).collect::<Vec<_>>(),
            [(0x1000, 0x1fff), (0x10_0000, 0x1f_ffff)]
        );
        assert!(encode(&[], u64::MAX).unwrap().is_empty());
        // One byte is a range for the crate; the kernel refuses it itself.
        assert_eq!(encode(&[R(5, 5)], u64::MAX).unwrap().len(), 1);
        match encode(&[R(0, 0xfff), R(0x2000, 0x1fff)], u64::MAX) {
            Err(IommufdError::BadRange {
                ioctl: "IOMMU_IOAS_ALLOW_IOVAS",
                start: 0x2000,
                end: 0x1fff,
                what,
            }) => assert!(what.contains("before")),
            other => panic!("{other:?}"),
        }
        // A 32-bit kernel's unsigned long: the top of a 64-bit range would
        // be cut off, so it is refused; a range ending at its top is fine.
        let ulong32 = u64::from(u32::MAX);
        assert!(encode(&[R(0, ulong32)], ulong32).is_ok());
        assert!(matches!(
            encode(&[R(0x1000, 1 << 32)], ulong32),
            Err(IommufdError::BadRange {
                start: 0x1000,
                end: 0x1_0000_0000,
                ..
            })
        ));
    }
}
