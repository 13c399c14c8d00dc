//! `IOMMU_IOAS_IOVA_RANGES` answers (iommufd): arbitrary header and array
//! bytes must never panic; every range the crate accepts is one the header
//! counted and the array holds, in the array's order, each with start <=
//! end; the alignment is a power of two; and decoding does not depend on
//! the buffers' alignment.
#![no_main]

use fuzz_oracle::Shifted;
use libfuzzer_sys::fuzz_target;
use typed_vfio::fuzzing::parse_ioas_iova_ranges;

/// `iommu_ioas_iova_ranges`: size, ioas_id, num_iovas, __reserved @0..16,
/// allowed_iovas @16, out_iova_alignment @24.
const HEAD: usize = 32;

fuzz_target!(|data: &[u8]| {
    let split = HEAD.min(data.len());
    let (head, array) = data.split_at(split);
    let parsed = parse_ioas_iova_ranges(
        Shifted::new(head, 0).bytes(),
        Shifted::new(array, 0).bytes(),
    );
    for shift in [1, 4] {
        let other = parse_ioas_iova_ranges(
            Shifted::new(head, shift).bytes(),
            Shifted::new(array, shift).bytes(),
        );
        assert_eq!(parsed, other, "decoding depends on the buffers' alignment");
    }
    let word = |at: usize| u32::from_ne_bytes(head[at..at + 4].try_into().unwrap());
    let dword = |b: &[u8], at: usize| u64::from_ne_bytes(b[at..at + 8].try_into().unwrap());
    if let Ok(r) = &parsed {
        assert_eq!(head.len(), HEAD, "accepted a truncated header");
        let n = word(8) as usize;
        assert_eq!(r.ranges.len(), n);
        assert!(16 * n <= array.len(), "more ranges than the array holds");
        for (i, range) in r.ranges.iter().enumerate() {
            assert_eq!(range.start, dword(array, 16 * i));
            assert_eq!(range.end, dword(array, 16 * i + 8));
            assert!(range.start <= range.end);
            let _ = range.contains(range.start, u64::MAX);
            let _ = range.contains(range.end, 1);
        }
        assert!(r.alignment.is_power_of_two());
        let raw = dword(head, 24);
        assert_eq!(r.alignment, raw.max(1));
    }
});
