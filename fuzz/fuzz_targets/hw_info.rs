//! `IOMMU_GET_HW_INFO` answers (iommufd): an arbitrary `iommu_hw_info`
//! header and driver data never panic; Intel VT-d and ARM SMMUv3 data
//! decode as the uapi lays them out, only when the data holds the whole
//! struct; other types keep their bytes; independent of the buffers'
//! alignment.
#![no_main]

use fuzz_oracle::{Shifted, u32_at};
use libfuzzer_sys::fuzz_target;
use typed_vfio::fuzzing::parse_hw_info;
use typed_vfio::iommufd::HwInfoData;

/// `iommu_hw_info`: size, flags, dev_id, data_len @0..16, data_uptr @16,
/// out_data_type @24, out_max_pasid_log2 @28, out_capabilities @32.
const HEAD: usize = 40;

fuzz_target!(|data: &[u8]| {
    let split = HEAD.min(data.len());
    let (head, body) = data.split_at(split);
    let parsed = parse_hw_info(Shifted::new(head, 0).bytes(), Shifted::new(body, 0).bytes());
    for shift in [1, 4] {
        let other = parse_hw_info(
            Shifted::new(head, shift).bytes(),
            Shifted::new(body, shift).bytes(),
        );
        assert_eq!(parsed, other, "decoding depends on the buffers' alignment");
    }
    let u64_at = |b: &[u8], at: usize| u64::from_ne_bytes(b[at..at + 8].try_into().unwrap());
    let Ok(info) = parsed else {
        // Refused: a short header, or short driver data of a known type.
        if head.len() == HEAD {
            let known = match u32_at(head, 24).unwrap() {
                1 => 24,
                2 => 40,
                _ => panic!("refused an answer of an undecoded type"),
            };
            assert!(body.len() < known);
        }
        return;
    };
    assert_eq!(head.len(), HEAD, "accepted a truncated header");
    assert_eq!(info.capabilities, u64_at(head, 32));
    assert_eq!(info.max_pasid_log2, head[28]);
    match info.data {
        HwInfoData::None => assert_eq!(u32_at(head, 24), Some(0)),
        HwInfoData::IntelVtd {
            flags,
            cap_reg,
            ecap_reg,
        } => {
            assert_eq!(u32_at(head, 24), Some(1));
            assert_eq!(
                (flags, cap_reg, ecap_reg),
                (u32_at(body, 0).unwrap(), u64_at(body, 8), u64_at(body, 16))
            );
        }
        HwInfoData::ArmSmmuV3 {
            flags,
            idr,
            iidr,
            aidr,
        } => {
            assert_eq!(u32_at(head, 24), Some(2));
            assert_eq!(flags, u32_at(body, 0).unwrap());
            for (i, r) in idr.iter().enumerate() {
                assert_eq!(Some(*r), u32_at(body, 8 + 4 * i));
            }
            assert_eq!(
                (Some(iidr), Some(aidr)),
                (u32_at(body, 32), u32_at(body, 36))
            );
        }
        HwInfoData::Other { data_type, bytes } => {
            assert!(data_type > 2);
            assert_eq!(Some(data_type), u32_at(head, 24));
            assert_eq!(bytes, body);
        }
    }
});
