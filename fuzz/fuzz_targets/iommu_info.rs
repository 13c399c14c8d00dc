//! `VFIO_IOMMU_GET_INFO` answers: arbitrary bytes must never panic; IOVA
//! ranges, DMA_AVAIL and migration must be exactly what a reference decoder
//! of the uapi layout reads, independent of alignment, and the number of
//! ranges bounded by the bytes.
#![no_main]

use fuzz_oracle::{Shifted, ref_iommu};
use libfuzzer_sys::fuzz_target;
use typed_vfio::fuzzing::parse_iommu_info;

fuzz_target!(|data: &[u8]| {
    let parsed = parse_iommu_info(Shifted::new(data, 0).bytes());
    for shift in [1, 4] {
        let other = parse_iommu_info(Shifted::new(data, shift).bytes());
        assert_eq!(parsed, other, "decoding depends on the buffer's alignment");
    }
    let reference = ref_iommu(data);
    match (&parsed, &reference) {
        (Ok(info), Some(r)) => {
            assert_eq!(info.page_sizes, r.page_sizes);
            let ranges: Vec<_> = info.iova_ranges.iter().map(|r| (r.start, r.end)).collect();
            assert_eq!(ranges, r.ranges);
            assert_eq!(info.dma_avail, r.dma_avail);
            assert_eq!(info.migration, r.migration);
            // Each range is 16 bytes after the header and the 16-byte
            // capability head.
            assert!(
                info.iova_ranges.is_empty() || 24 + 16 + 16 * info.iova_ranges.len() <= data.len()
            );
            let min = info.min_page_size();
            assert!(min == 0 || (min.is_power_of_two() && info.page_sizes & min != 0));
            for range in &info.iova_ranges {
                // `contains` must not overflow at the edges.
                let _ = range.contains(range.start, 1);
                let _ = range.contains(range.end, u64::MAX);
                let _ = range.contains(u64::MAX, 1);
            }
        }
        (Err(_), None) => {}
        _ => panic!("crate {parsed:?} vs reference {reference:?}"),
    }
});
