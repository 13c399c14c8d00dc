//! Dirty-page tracking: type1's `VFIO_IOMMU_DIRTY_PAGES` on a type1v2
//! container, and a device's own DMA logging
//! (`VFIO_DEVICE_FEATURE_DMA_LOGGING_START`/`_STOP`/`_REPORT`).
//!
//! Both answer with the same bitmap: one bit per page from the IOVA asked
//! about, in `u64` words of the host's byte order ([`DirtyBitmap`]). The
//! kernel writes it through a pointer in the argument, so these requests go
//! through the seam's unchecked path, each with the proof that the kernel
//! writes only inside a buffer of the size the argument names.
//!
//! What type1 reports: while tracking, every page of a mapping that an
//! IOMMU-backed device can reach counts as dirty (the kernel cannot see
//! which ones the device wrote); only groups whose driver pins pages (mdevs)
//! narrow it to the pinned pages. A device's DMA logging reports what the
//! device itself recorded.

use std::os::fd::BorrowedFd;

use crate::Errno;
use crate::abi;
use crate::container::{Container, Type1v2};
use crate::device::Device;
use crate::error::{DeviceError, DmaError};
use crate::kernel::{Arg, Kernel, req};
use crate::sys::{self, IntoBytes};

/// The most pages a bitmap may cover (the kernel's `DIRTY_BITMAP_PAGES_MAX`,
/// `INT_MAX`): also what bounds the allocation, 256 MiB at most.
pub const MAX_BITMAP_PAGES: u64 = i32::MAX as u64;

/// Which pages of `iova..iova + pages * page_size` are dirty.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirtyBitmap {
    iova: u64,
    page_size: u64,
    pages: u64,
    words: Vec<u64>,
}

impl DirtyBitmap {
    /// A clean bitmap for `size` bytes from `iova` in pages of `page_size`
    /// (a power of two; `iova` and `size` multiples of it; `size` not 0 and
    /// at most [`MAX_BITMAP_PAGES`] pages, the range inside the 64-bit
    /// space). `None` otherwise.
    pub fn new(iova: u64, size: u64, page_size: u64) -> Option<DirtyBitmap> {
        if !page_size.is_power_of_two()
            || size == 0
            || !iova.is_multiple_of(page_size)
            || !size.is_multiple_of(page_size)
            || iova.checked_add(size - 1).is_none()
        {
            return None;
        }
        let pages = size / page_size;
        if pages > MAX_BITMAP_PAGES {
            return None;
        }
        let words = usize::try_from(pages.div_ceil(64)).ok()?;
        Some(DirtyBitmap {
            iova,
            page_size,
            pages,
            words: vec![0; words],
        })
    }

    /// Decodes a bitmap the kernel wrote, from its bytes (`u64` words in the
    /// host's order, as the uapi lays them out): untrusted, so the length
    /// must be exactly the words the pages need, and bits past the last
    /// page are ignored.
    pub fn from_bytes(iova: u64, size: u64, page_size: u64, bytes: &[u8]) -> Option<DirtyBitmap> {
        let mut map = DirtyBitmap::new(iova, size, page_size)?;
        if bytes.len() != map.words.len().checked_mul(8)? {
            return None;
        }
        for (word, chunk) in map.words.iter_mut().zip(bytes.chunks_exact(8)) {
            *word = u64::from_ne_bytes(chunk.try_into().ok()?);
        }
        map.clear_tail();
        Some(map)
    }

    fn clear_tail(&mut self) {
        let used = self.pages % 64;
        if used != 0
            && let Some(last) = self.words.last_mut()
        {
            *last &= (1u64 << used) - 1;
        }
    }

    /// The first IOVA covered.
    pub fn iova(&self) -> u64 {
        self.iova
    }

    /// The page size.
    pub fn page_size(&self) -> u64 {
        self.page_size
    }

    /// The pages covered.
    pub fn pages(&self) -> u64 {
        self.pages
    }

    /// Whether the page holding `iova` is dirty (false outside the range).
    pub fn is_dirty(&self, iova: u64) -> bool {
        let Some(page) = iova.checked_sub(self.iova).map(|o| o / self.page_size) else {
            return false;
        };
        page < self.pages
            && usize::try_from(page / 64)
                .ok()
                .and_then(|w| self.words.get(w))
                .is_some_and(|w| w >> (page % 64) & 1 == 1)
    }

    /// How many pages are dirty.
    pub fn count(&self) -> u64 {
        self.words.iter().map(|w| u64::from(w.count_ones())).sum()
    }

    /// The IOVAs of the dirty pages, ascending.
    pub fn dirty_iovas(&self) -> impl Iterator<Item = u64> + '_ {
        self.words.iter().enumerate().flat_map(move |(w, &word)| {
            (0..64u64)
                .filter(move |b| word >> b & 1 == 1)
                .map(move |b| {
                    // w * 64 + b < pages <= MAX_BITMAP_PAGES: no overflow.
                    self.iova + (w as u64 * 64 + b) * self.page_size
                })
        })
    }

    pub(crate) fn bytes_len(&self) -> u64 {
        self.words.len() as u64 * 8
    }

    /// The words, for the kernel to write; their provenance exposed (the
    /// simulator reaches them by address).
    pub(crate) fn words_ptr(&mut self) -> *mut u64 {
        let ptr = self.words.as_mut_ptr();
        let _ = ptr.expose_provenance();
        ptr
    }

    /// After the kernel wrote the words: bits past the last page dropped.
    pub(crate) fn written(mut self) -> DirtyBitmap {
        self.clear_tail();
        self
    }
}

/// The bytes of an argument that holds a pointer (so it is not `IntoBytes`),
/// for the seam's unchecked path, borrowed for as long as `arg` is.
///
/// # Safety
///
/// `T` must be `#[repr(C)]` with no implicit padding: every one of its
/// `size_of::<T>()` bytes is initialised.
pub(crate) unsafe fn arg_bytes<T>(arg: &mut T) -> &mut [u8] {
    // SAFETY: `arg` is a live, exclusively borrowed `T` of `size_of::<T>()`
    // bytes, all initialised (the caller's contract), viewed as bytes for
    // the same borrow; u8 has no alignment or validity requirement beyond
    // initialisation.
    unsafe { std::slice::from_raw_parts_mut((arg as *mut T).cast::<u8>(), size_of::<T>()) }
}

/// A `vfio_bitmap` (with the padding after `data` that 32-bit targets have
/// zeroed: their bindings have a padding field, 64-bit ones none, so neither
/// a struct literal nor `..Default::default()` fits every target).
#[allow(clippy::field_reassign_with_default)]
pub(crate) fn bitmap_arg(pgsize: u64, size: u64, data: *mut u64) -> sys::vfio_bitmap {
    let mut bitmap = sys::vfio_bitmap::default();
    bitmap.pgsize = pgsize;
    bitmap.size = size;
    bitmap.data = data;
    bitmap
}

/// `vfio_iommu_type1_dirty_bitmap` with a `vfio_iommu_type1_dirty_bitmap_get`
/// after it, laid out as the target's C compiler does (the bitmap's `data`
/// is a pointer).
#[repr(C)]
struct DirtyPagesGet {
    argsz: u32,
    flags: u32,
    get: sys::vfio_iommu_type1_dirty_bitmap_get,
}

fn dirty_pages(kernel: &Kernel, fd: BorrowedFd<'_>, flags: u32) -> Result<(), Errno> {
    let arg = abi::DeviceFeature {
        argsz: size_of::<abi::DeviceFeature>() as u32,
        flags,
    };
    // SAFETY: START and STOP read only the 8-byte header given (argsz says
    // 8; neither flag makes the kernel follow a pointer).
    unsafe { kernel.ioctl_unchecked(fd, req::VFIO_IOMMU_DIRTY_PAGES, Arg::In(arg.as_bytes())) }
        .map(drop)
}

fn dirty_error(iova: u64, size: u64, errno: Errno) -> DmaError {
    let ioctl = req::VFIO_IOMMU_DIRTY_PAGES.name;
    match errno {
        Errno::ENOTTY => DmaError::NotSupported { ioctl },
        errno => DmaError::Ioctl {
            ioctl,
            iova,
            size,
            errno,
        },
    }
}

/// A device request's error: `ENOTTY` is the kernel or driver not knowing
/// it.
pub(crate) fn device_error(ioctl: &'static str, errno: Errno) -> DeviceError {
    match errno {
        Errno::ENOTTY => DeviceError::NotSupported { ioctl },
        errno => DeviceError::Ioctl { ioctl, errno },
    }
}

impl Container<Type1v2> {
    /// `VFIO_IOMMU_DIRTY_PAGES_FLAG_START`: the kernel starts tracking the
    /// pages devices may have written (type1v2 only: a type1 container
    /// answers `EACCES`).
    #[doc(alias = "VFIO_IOMMU_DIRTY_PAGES")]
    pub fn start_dirty_tracking(&self) -> Result<(), DmaError> {
        dirty_pages(
            &self.inner.kernel,
            self.as_fd(),
            sys::VFIO_IOMMU_DIRTY_PAGES_FLAG_START,
        )
        .map_err(|errno| dirty_error(0, 0, errno))
    }

    /// `VFIO_IOMMU_DIRTY_PAGES_FLAG_STOP`.
    pub fn stop_dirty_tracking(&self) -> Result<(), DmaError> {
        dirty_pages(
            &self.inner.kernel,
            self.as_fd(),
            sys::VFIO_IOMMU_DIRTY_PAGES_FLAG_STOP,
        )
        .map_err(|errno| dirty_error(0, 0, errno))
    }

    /// `VFIO_IOMMU_DIRTY_PAGES_FLAG_GET_BITMAP` for `size` bytes from
    /// `iova`, in the IOMMU's smallest page size (the only one the kernel
    /// takes), and clears what it reports. The range must cover whole
    /// mappings (`EINVAL` if it cuts one) and tracking must be on.
    pub fn dirty_bitmap(&self, iova: u64, size: u64) -> Result<DirtyBitmap, DmaError> {
        let page_size = self
            .iommu_info()
            .map_err(|_| dirty_error(iova, size, Errno::EIO))?
            .page_sizes;
        let page_size = page_size & page_size.wrapping_neg();
        let mut map = DirtyBitmap::new(iova, size, page_size).ok_or(dirty_error(
            iova,
            size,
            Errno::EINVAL,
        ))?;
        let data = map.words_ptr();
        let mut arg = DirtyPagesGet {
            argsz: size_of::<DirtyPagesGet>() as u32,
            flags: sys::VFIO_IOMMU_DIRTY_PAGES_FLAG_GET_BITMAP,
            get: sys::vfio_iommu_type1_dirty_bitmap_get {
                iova,
                size,
                bitmap: bitmap_arg(page_size, map.bytes_len(), data),
            },
        };
        // SAFETY: `DirtyPagesGet` is two u32s and a struct of u64s and a
        // pointer whose padding on 32-bit targets is a named field: every
        // byte is initialised.
        let bytes = unsafe { arg_bytes(&mut arg) };
        // SAFETY: the kernel reads `argsz` bytes of `arg` (its size) and
        // writes the bitmap through `data`: at most `bitmap.size` bytes
        // (it refuses a smaller size than the range's pages need, and copies
        // only the words of those pages), which is the length of `words`,
        // exclusively borrowed by `map` here until the call returns.
        unsafe {
            self.inner.kernel.ioctl_unchecked(
                self.as_fd(),
                req::VFIO_IOMMU_DIRTY_PAGES,
                Arg::InOut(bytes),
            )
        }
        .map_err(|errno| dirty_error(iova, size, errno))?;
        map.clear_tail();
        Ok(map)
    }
}

/// A device's DMA logging, started over some IOVA ranges; stopped on drop
/// (`VFIO_DEVICE_FEATURE_DMA_LOGGING_STOP`).
#[derive(Debug)]
pub struct DmaLogging<'d> {
    device: &'d Device,
    page_size: u64,
}

impl Device {
    /// `VFIO_DEVICE_FEATURE_DMA_LOGGING_START`: the device (its driver)
    /// records the pages it writes in `ranges` (`(iova, length)`, each a
    /// multiple of `page_size`, not overlapping; at most 256 of them), in
    /// the page size its driver picks. `NotSupported`-style `ENOTTY` when
    /// the driver has no logging.
    #[doc(alias = "VFIO_DEVICE_FEATURE_DMA_LOGGING_START")]
    pub fn start_dma_logging(
        &self,
        page_size: u64,
        ranges: &[(u64, u64)],
    ) -> Result<DmaLogging<'_>, DeviceError> {
        let ioctl = "VFIO_DEVICE_FEATURE(DMA_LOGGING_START)";
        let feature = sys::VFIO_DEVICE_FEATURE_DMA_LOGGING_START;
        let count = u32::try_from(ranges.len())
            .ok()
            .filter(|&n| n > 0 && n <= 256)
            .ok_or(DeviceError::Malformed {
                ioctl,
                what: "1 to 256 ranges",
            })?;
        let raw: Vec<sys::vfio_device_feature_dma_logging_range> = ranges
            .iter()
            .map(|&(iova, length)| sys::vfio_device_feature_dma_logging_range { iova, length })
            .collect();
        let mut arg = abi::FeatureLogControl {
            argsz: size_of::<abi::FeatureLogControl>() as u32,
            flags: sys::VFIO_DEVICE_FEATURE_SET | feature,
            page_size,
            num_ranges: count,
            reserved: 0,
            ranges: raw.as_ptr() as u64,
        };
        // SAFETY: the kernel reads `argsz` bytes of `arg`, then
        // `num_ranges` ranges from `ranges`, which is `raw`: exactly that
        // many, alive and unchanged until the call returns; it writes back
        // only `arg` (the page size its driver chose).
        unsafe {
            self.kernel().ioctl_unchecked(
                self.as_fd(),
                req::VFIO_DEVICE_FEATURE_UNCHECKED,
                Arg::InOut(arg.as_mut_bytes()),
            )
        }
        .map_err(|errno| device_error(ioctl, errno))?;
        Ok(DmaLogging {
            device: self,
            page_size: arg.page_size,
        })
    }
}

impl DmaLogging<'_> {
    /// The page size the driver logs in.
    pub fn page_size(&self) -> u64 {
        self.page_size
    }

    /// `VFIO_DEVICE_FEATURE_DMA_LOGGING_REPORT` for `length` bytes from
    /// `iova`: the pages the device wrote there since the last report, which
    /// the driver then forgets.
    #[doc(alias = "VFIO_DEVICE_FEATURE_DMA_LOGGING_REPORT")]
    pub fn report(&self, iova: u64, length: u64) -> Result<DirtyBitmap, DeviceError> {
        let ioctl = "VFIO_DEVICE_FEATURE(DMA_LOGGING_REPORT)";
        let mut map =
            DirtyBitmap::new(iova, length, self.page_size).ok_or(DeviceError::Malformed {
                ioctl,
                what: "range not in whole pages",
            })?;
        let mut arg = abi::FeatureLogReport {
            argsz: size_of::<abi::FeatureLogReport>() as u32,
            flags: sys::VFIO_DEVICE_FEATURE_GET | sys::VFIO_DEVICE_FEATURE_DMA_LOGGING_REPORT,
            iova,
            length,
            page_size: self.page_size,
            bitmap: map.words_ptr() as u64,
        };
        // SAFETY: the kernel reads `arg` and writes one bit per page of
        // `iova..iova + length` at `page_size` into `bitmap` (iova_bitmap:
        // `length / page_size` bits, rounded up to whole u64 words), which
        // is `words`: exactly that many words, exclusively borrowed through
        // `map` until the call returns.
        unsafe {
            self.device.kernel().ioctl_unchecked(
                self.device.as_fd(),
                req::VFIO_DEVICE_FEATURE_UNCHECKED,
                Arg::InOut(arg.as_mut_bytes()),
            )
        }
        .map_err(|errno| device_error(ioctl, errno))?;
        map.clear_tail();
        Ok(map)
    }

    /// `VFIO_DEVICE_FEATURE_DMA_LOGGING_STOP` now, reporting the answer.
    pub fn stop(self) -> Result<(), DeviceError> {
        let this = std::mem::ManuallyDrop::new(self);
        stop_logging(this.device)
    }
}

fn stop_logging(device: &Device) -> Result<(), DeviceError> {
    let mut arg = abi::DeviceFeature {
        argsz: size_of::<abi::DeviceFeature>() as u32,
        flags: sys::VFIO_DEVICE_FEATURE_SET | sys::VFIO_DEVICE_FEATURE_DMA_LOGGING_STOP,
    };
    // SAFETY: STOP has no data: the kernel reads the 8-byte header only.
    unsafe {
        device.kernel().ioctl_unchecked(
            device.as_fd(),
            req::VFIO_DEVICE_FEATURE_UNCHECKED,
            Arg::InOut(arg.as_mut_bytes()),
        )
    }
    .map(drop)
    .map_err(|errno| device_error("VFIO_DEVICE_FEATURE(DMA_LOGGING_STOP)", errno))
}

impl Drop for DmaLogging<'_> {
    fn drop(&mut self) {
        // Drop cannot report; `stop` does.
        let _ = stop_logging(self.device);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bitmaps_are_bounded_and_decode_their_words() {
        assert!(DirtyBitmap::new(0, 0, 4096).is_none());
        assert!(DirtyBitmap::new(0, 4096, 3000).is_none());
        assert!(DirtyBitmap::new(1, 4096, 4096).is_none());
        assert!(DirtyBitmap::new(u64::MAX - 4095, 8192, 4096).is_none());
        assert!(DirtyBitmap::new(0, (MAX_BITMAP_PAGES + 1) * 4096, 4096).is_none());
        // 70 pages: two words; bits past page 70 are not pages.
        let mut bytes = vec![0u8; 16];
        bytes[..8].copy_from_slice(&(1u64 << 3 | 1 << 63).to_ne_bytes());
        bytes[8..].copy_from_slice(&(1u64 << 5 | 1 << 40).to_ne_bytes());
        let map = DirtyBitmap::from_bytes(0x1000, 70 * 4096, 4096, &bytes).unwrap();
        let want = [0x1000 + 3 * 4096, 0x1000 + 63 * 4096, 0x1000 + 69 * 4096];
        assert_eq!(map.dirty_iovas().collect::<Vec<_>>(), want);
        assert_eq!(map.count(), 3);
        assert!(map.is_dirty(0x1000 + 69 * 4096 + 17));
        assert!(!map.is_dirty(0x1000 + 70 * 4096));
        assert!(!map.is_dirty(0));
        // The length must be exactly the words the pages need.
        assert!(DirtyBitmap::from_bytes(0, 70 * 4096, 4096, &bytes[..8]).is_none());
        assert!(DirtyBitmap::from_bytes(0, 70 * 4096, 4096, &[0; 24]).is_none());
    }
}
