//! `VFIO_DEVICE_GET_REGION_INFO` answers: arbitrary bytes (argsz, cap_offset,
//! next links, cycles, truncation) must never panic; what is accepted must be
//! what a reference decoder of the uapi layout reads, whatever the buffer's
//! alignment, with every sparse area inside the region.
#![no_main]

use fuzz_oracle::{Shifted, ref_region};
use libfuzzer_sys::fuzz_target;
use typed_vfio::fuzzing::parse_region_info;

fuzz_target!(|data: &[u8]| {
    let aligned = Shifted::new(data, 0);
    let parsed = parse_region_info(aligned.bytes());
    for shift in [1, 4] {
        let other = parse_region_info(Shifted::new(data, shift).bytes());
        assert_eq!(parsed, other, "decoding depends on the buffer's alignment");
    }
    let reference = ref_region(data);
    match (&parsed, &reference) {
        (Ok(info), Some(r)) => {
            assert_eq!((info.index, info.flags, info.size, info.offset), r.head);
            let areas = info
                .sparse
                .as_ref()
                .map(|a| a.iter().map(|a| (a.offset, a.size)).collect::<Vec<_>>());
            assert_eq!(areas, r.sparse);
            assert_eq!(info.region_type, r.region_type);
            assert_eq!(info.msix_mappable, r.msix_mappable);
            for area in info.sparse.iter().flatten() {
                let end = area
                    .offset
                    .checked_add(area.size)
                    .expect("sparse area wraps");
                assert!(end <= info.size, "sparse area outside the region");
            }
            // Bounded by the bytes: 16 bytes per area, after two headers.
            let n = info.sparse.as_ref().map_or(0, Vec::len);
            assert!(n * 16 + 32 + 16 <= data.len() || n == 0);
        }
        (Err(_), None) => {}
        _ => panic!("crate {parsed:?} vs reference {reference:?}"),
    }
});
