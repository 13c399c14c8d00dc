//! Dirty bitmaps as the kernel writes them (`VFIO_IOMMU_DIRTY_PAGES`,
//! DMA logging reports): `DirtyBitmap::from_bytes` on arbitrary ranges and
//! bytes. No panic; a bitmap only for a valid range (page size a power of
//! two, start and size multiples of it, inside 64 bits, bounded) and exactly the words its
//! pages need; its dirty pages are the reference decode's (bit `i % 64` of
//! native-endian word `i / 64`, pages past the end ignored), each inside
//! the range and reported dirty, and no other.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use typed_vfio::dirty::{DirtyBitmap, MAX_BITMAP_PAGES};

#[derive(Arbitrary, Debug)]
struct Input {
    iova: u64,
    pages: u32,
    page_shift: u8,
    bytes: Vec<u8>,
}

fuzz_target!(|input: Input| {
    let page_size = 1u64
        .checked_shl(u32::from(input.page_shift % 66))
        .unwrap_or(0);
    let size = u64::from(input.pages).saturating_mul(page_size.max(1));
    let map = DirtyBitmap::from_bytes(input.iova, size, page_size, &input.bytes);
    let valid = page_size.is_power_of_two()
        && size != 0
        && input.iova.is_multiple_of(page_size)
        && size.is_multiple_of(page_size)
        && input.iova.checked_add(size - 1).is_some()
        && size / page_size <= MAX_BITMAP_PAGES
        && input.bytes.len() as u64 == (size / page_size).div_ceil(64) * 8;
    let Some(map) = map else {
        assert!(!valid, "a valid bitmap refused: {input:?}");
        return;
    };
    assert!(valid, "an invalid bitmap accepted: {input:?}");
    let pages = size / page_size;
    assert_eq!(map.pages(), pages);
    let reference: Vec<u64> = (0..pages)
        .filter(|&i| {
            let at = (i / 64 * 8) as usize;
            let word = u64::from_ne_bytes(input.bytes[at..at + 8].try_into().unwrap());
            word >> (i % 64) & 1 == 1
        })
        .map(|i| input.iova + i * page_size)
        .collect();
    let got: Vec<u64> = map.dirty_iovas().collect();
    assert_eq!(got, reference);
    assert_eq!(map.count(), got.len() as u64);
    for &iova in &got {
        assert!(map.is_dirty(iova) && iova >= input.iova && iova - input.iova < size);
    }
    // Clean pages read clean: the first page after each dirty one, if any.
    for &iova in &got {
        if let Some(next) = iova.checked_add(page_size)
            && next - input.iova < size
            && !got.contains(&next)
        {
            assert!(!map.is_dirty(next));
        }
    }
});
