//! Plain-data mirrors of the fixed parts of the structs that end in a
//! flexible array (bindgen's forms carry a zero-sized `__IncompleteArrayField`
//! and are not plain data). Each is checked against the generated struct:
//! same size, same field offsets; `sys::plain!` proves each plain.

use core::mem::{offset_of, size_of};

use crate::sys::{self, FromBytes};

/// Fixed part of `vfio_iommu_type1_info_cap_iova_range`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub(crate) struct IovaRangeCap {
    pub(crate) header: sys::vfio_info_cap_header,
    pub(crate) nr_iovas: u32,
    pub(crate) reserved: u32,
}

/// Fixed part of `vfio_region_info_cap_sparse_mmap`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub(crate) struct SparseMmapCap {
    pub(crate) header: sys::vfio_info_cap_header,
    pub(crate) nr_areas: u32,
    pub(crate) reserved: u32,
}

/// Fixed part of `vfio_irq_set`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub(crate) struct IrqSet {
    pub(crate) argsz: u32,
    pub(crate) flags: u32,
    pub(crate) index: u32,
    pub(crate) start: u32,
    pub(crate) count: u32,
}

/// Fixed part of `vfio_pci_hot_reset_info`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub(crate) struct HotResetInfo {
    pub(crate) argsz: u32,
    pub(crate) flags: u32,
    pub(crate) count: u32,
}

/// Fixed part of `vfio_pci_hot_reset`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub(crate) struct HotReset {
    pub(crate) argsz: u32,
    pub(crate) flags: u32,
    pub(crate) count: u32,
}

/// `vfio_pci_dependent_device` with its anonymous `group_id`/`devid` union
/// (both `u32`) as a plain field.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub(crate) struct DependentDevice {
    pub(crate) id: u32,
    pub(crate) segment: u16,
    pub(crate) bus: u8,
    pub(crate) devfn: u8,
}

/// Fixed part of `vfio_device_feature`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub(crate) struct DeviceFeature {
    pub(crate) argsz: u32,
    pub(crate) flags: u32,
}

/// `vfio_device_feature` followed by `vfio_device_feature_mig_state`
/// (`VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE`'s GET and SET).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub(crate) struct FeatureMigState {
    pub(crate) argsz: u32,
    pub(crate) flags: u32,
    pub(crate) device_state: u32,
    pub(crate) data_fd: i32,
}

/// `vfio_device_feature` followed by one `u64` (`VFIO_DEVICE_FEATURE_MIGRATION`'s
/// flags, `VFIO_DEVICE_FEATURE_MIG_DATA_SIZE`'s `stop_copy_length`).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub(crate) struct FeatureU64 {
    pub(crate) argsz: u32,
    pub(crate) flags: u32,
    pub(crate) value: u64,
}

const _: () = {
    assert!(size_of::<FeatureMigState>() == 16);
    assert!(offset_of!(FeatureMigState, device_state) == size_of::<DeviceFeature>());
    assert!(size_of::<FeatureU64>() == 16);
    assert!(offset_of!(FeatureU64, value) == size_of::<DeviceFeature>());
    // The payloads mirror the generated structs.
    assert!(
        offset_of!(FeatureMigState, data_fd) - size_of::<DeviceFeature>()
            == offset_of!(sys::vfio_device_feature_mig_state, data_fd)
    );
    assert!(
        size_of::<FeatureMigState>() - size_of::<DeviceFeature>()
            == size_of::<sys::vfio_device_feature_mig_state>()
    );
    assert!(
        size_of::<FeatureU64>() - size_of::<DeviceFeature>()
            == size_of::<sys::vfio_device_feature_migration>()
    );
    assert!(
        size_of::<FeatureU64>() - size_of::<DeviceFeature>()
            == size_of::<sys::vfio_device_feature_mig_data_size>()
    );
};

/// `vfio_device_feature` followed by `vfio_device_feature_dma_logging_control`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub(crate) struct FeatureLogControl {
    pub(crate) argsz: u32,
    pub(crate) flags: u32,
    pub(crate) page_size: u64,
    pub(crate) num_ranges: u32,
    pub(crate) reserved: u32,
    pub(crate) ranges: u64,
}

/// `vfio_device_feature` followed by `vfio_device_feature_dma_logging_report`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub(crate) struct FeatureLogReport {
    pub(crate) argsz: u32,
    pub(crate) flags: u32,
    pub(crate) iova: u64,
    pub(crate) length: u64,
    pub(crate) page_size: u64,
    pub(crate) bitmap: u64,
}

const _: () = {
    let head = size_of::<DeviceFeature>();
    assert!(
        size_of::<FeatureLogControl>() - head
            == size_of::<sys::vfio_device_feature_dma_logging_control>()
    );
    assert!(
        offset_of!(FeatureLogControl, num_ranges) - head
            == offset_of!(sys::vfio_device_feature_dma_logging_control, num_ranges)
    );
    assert!(
        offset_of!(FeatureLogControl, ranges) - head
            == offset_of!(sys::vfio_device_feature_dma_logging_control, ranges)
    );
    assert!(
        size_of::<FeatureLogReport>() - head
            == size_of::<sys::vfio_device_feature_dma_logging_report>()
    );
    assert!(
        offset_of!(FeatureLogReport, bitmap) - head
            == offset_of!(sys::vfio_device_feature_dma_logging_report, bitmap)
    );
};

/// `vfio_device_ioeventfd`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub(crate) struct IoEventFd {
    pub(crate) argsz: u32,
    pub(crate) flags: u32,
    pub(crate) offset: u64,
    pub(crate) data: u64,
    pub(crate) fd: i32,
    pub(crate) reserved: u32,
}

/// `vfio_precopy_info` (`VFIO_MIG_GET_PRECOPY_INFO` on a data fd).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub(crate) struct PrecopyInfo {
    pub(crate) argsz: u32,
    pub(crate) flags: u32,
    pub(crate) initial_bytes: u64,
    pub(crate) dirty_bytes: u64,
}

/// `vfio_iommu_type1_dma_unmap` without its bitmap tail.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub(crate) struct DmaUnmap {
    pub(crate) argsz: u32,
    pub(crate) flags: u32,
    pub(crate) iova: u64,
    pub(crate) size: u64,
}

/// `struct iommu_hw_info` with its anonymous `in_data_type`/`out_data_type`
/// union (added after 6.12; both `u32`, one plain field here, `data_type`). In
/// the 6.12 uapi, which the crate can also be bound against, `out_data_type`
/// is a plain field at the same offset.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub(crate) struct HwInfo {
    pub(crate) size: u32,
    pub(crate) flags: u32,
    pub(crate) dev_id: u32,
    pub(crate) data_len: u32,
    pub(crate) data_uptr: u64,
    /// `out_data_type` (and, with `IOMMU_HW_INFO_FLAG_INPUT_TYPE`, which the
    /// crate never sets, `in_data_type`).
    pub(crate) data_type: u32,
    pub(crate) out_max_pasid_log2: u8,
    pub(crate) __reserved: [u8; 3],
    pub(crate) out_capabilities: u64,
}

// `data_type` has no same-named field in the generated struct: its place,
// from the ABI (after the aligned `data_uptr`), and the union's under the
// pinned headers.
const _: () = assert!(offset_of!(HwInfo, data_type) == 24);
#[cfg(typed_vfio_pinned_uapi)]
const _: () =
    assert!(offset_of!(HwInfo, data_type) == offset_of!(sys::iommu_hw_info, __bindgen_anon_1));

/// `IOMMU_HW_INFO_TYPE_ARM_SMMUV3`: Linux 6.13 added it to
/// `enum iommu_hw_info_type`, after the 6.12 uapi the crate can also be
/// bound against (checked against the pinned headers' value below).
pub(crate) const IOMMU_HW_INFO_TYPE_ARM_SMMUV3: u32 = 2;
#[cfg(typed_vfio_pinned_uapi)]
const _: () = assert!(IOMMU_HW_INFO_TYPE_ARM_SMMUV3 == sys::IOMMU_HW_INFO_TYPE_ARM_SMMUV3);

/// `struct iommu_hw_info_arm_smmuv3` (Linux 6.13+; absent from the 6.12
/// uapi the crate can also be bound against, so its layout is asserted below
/// from the ABI, and mirrored against the pinned headers' struct): `flags`, a
/// reserved word (`__reserved`), the SMMU's `IDR0..IDR5`, `IIDR` and `AIDR`
/// registers.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub(crate) struct HwInfoArmSmmuV3 {
    pub(crate) flags: u32,
    pub(crate) reserved: u32,
    pub(crate) idr: [u32; 6],
    pub(crate) iidr: u32,
    pub(crate) aidr: u32,
}

const _: () = {
    assert!(size_of::<HwInfoArmSmmuV3>() == 40);
    assert!(offset_of!(HwInfoArmSmmuV3, idr) == 8);
    assert!(offset_of!(HwInfoArmSmmuV3, iidr) == 32);
    assert!(offset_of!(HwInfoArmSmmuV3, aidr) == 36);
};

// Each mirror is plain data, proved by the macro (no padding, plain fields).
sys::plain::plain!(bytes IovaRangeCap { header: sys::vfio_info_cap_header, nr_iovas: u32, reserved: u32 });
sys::plain::plain!(bytes SparseMmapCap { header: sys::vfio_info_cap_header, nr_areas: u32, reserved: u32 });
sys::plain::plain!(bytes IrqSet { argsz: u32, flags: u32, index: u32, start: u32, count: u32 });
sys::plain::plain!(bytes HotResetInfo { argsz: u32, flags: u32, count: u32 });
sys::plain::plain!(bytes HotReset { argsz: u32, flags: u32, count: u32 });
sys::plain::plain!(bytes DependentDevice { id: u32, segment: u16, bus: u8, devfn: u8 });
sys::plain::plain!(bytes DeviceFeature { argsz: u32, flags: u32 });
sys::plain::plain!(bytes FeatureMigState { argsz: u32, flags: u32, device_state: u32, data_fd: i32 });
sys::plain::plain!(bytes FeatureU64 { argsz: u32, flags: u32, value: u64 });
sys::plain::plain!(bytes FeatureLogControl { argsz: u32, flags: u32, page_size: u64, num_ranges: u32, reserved: u32, ranges: u64 });
sys::plain::plain!(bytes FeatureLogReport { argsz: u32, flags: u32, iova: u64, length: u64, page_size: u64, bitmap: u64 });
sys::plain::plain!(bytes IoEventFd { argsz: u32, flags: u32, offset: u64, data: u64, fd: i32, reserved: u32 });
sys::plain::plain!(bytes PrecopyInfo { argsz: u32, flags: u32, initial_bytes: u64, dirty_bytes: u64 });
sys::plain::plain!(bytes DmaUnmap { argsz: u32, flags: u32, iova: u64, size: u64 });
sys::plain::plain!(bytes HwInfo {
    size: u32, flags: u32, dev_id: u32, data_len: u32, data_uptr: u64, data_type: u32,
    out_max_pasid_log2: u8, __reserved: [u8; 3], out_capabilities: u64
});
sys::plain::plain!(bytes HwInfoArmSmmuV3 { flags: u32, reserved: u32, idr: [u32; 6], iidr: u32, aidr: u32 });

/// Reads `n` consecutive `T`s from the start of `bytes` by copy, so the
/// bytes need no alignment (a capability may start at any multiple of 4, and
/// the buffer anywhere); `None` when they do not fit.
pub(crate) fn read_array<T: FromBytes>(
    bytes: &[u8],
    n: usize,
) -> Option<impl ExactSizeIterator<Item = T> + '_> {
    let size = size_of::<T>();
    if size == 0 {
        return None;
    }
    let bytes = bytes.get(..n.checked_mul(size)?)?;
    // Every chunk is exactly `size_of::<T>()` bytes: the read cannot fail.
    Some(
        bytes
            .chunks_exact(size)
            .map(|c| T::read_from_bytes(c).unwrap_or_else(|_| T::new_zeroed())),
    )
}

macro_rules! mirrors {
    ($($ours:ident = $theirs:ident { $($field:ident),* };)*) => {$(
        const _: () = assert!(
            size_of::<$ours>() == size_of::<sys::$theirs>(),
            concat!(stringify!($ours), " does not mirror the size of ", stringify!($theirs))
        );
        $(const _: () = assert!(
            offset_of!($ours, $field) == offset_of!(sys::$theirs, $field),
            concat!(stringify!($ours), ".", stringify!($field), " does not mirror ", stringify!($theirs))
        );)*
    )*};
}

mirrors! {
    IovaRangeCap = vfio_iommu_type1_info_cap_iova_range { header, nr_iovas, reserved };
    SparseMmapCap = vfio_region_info_cap_sparse_mmap { header, nr_areas, reserved };
    IrqSet = vfio_irq_set { argsz, flags, index, start, count };
    HotResetInfo = vfio_pci_hot_reset_info { argsz, flags, count };
    HotReset = vfio_pci_hot_reset { argsz, flags, count };
    DeviceFeature = vfio_device_feature { argsz, flags };
    DependentDevice = vfio_pci_dependent_device { segment, bus, devfn };
    DmaUnmap = vfio_iommu_type1_dma_unmap { argsz, flags, iova, size };
    PrecopyInfo = vfio_precopy_info { argsz, flags, initial_bytes, dirty_bytes };
    IoEventFd = vfio_device_ioeventfd { argsz, flags, offset, data, fd, reserved };
    HwInfo = iommu_hw_info { size, flags, dev_id, data_len, data_uptr, out_max_pasid_log2, __reserved, out_capabilities };
}

#[cfg(typed_vfio_pinned_uapi)]
mirrors! {
    HwInfoArmSmmuV3 = iommu_hw_info_arm_smmuv3 { flags, idr, iidr, aidr };
}
#[cfg(typed_vfio_pinned_uapi)]
const _: () = assert!(
    offset_of!(HwInfoArmSmmuV3, reserved) == offset_of!(sys::iommu_hw_info_arm_smmuv3, __reserved)
);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::SliceBytes;

    #[test]
    fn read_array_needs_no_alignment() {
        // Two `vfio_iova_range`s (u64 pairs) at every offset of a buffer:
        // found by the fuzzers, the old slice view (zerocopy) refused the
        // ranges unless they were 8-aligned.
        let mut store = [0u64; 8];
        for shift in 0..8 {
            let bytes = &mut store.as_mut_bytes()[shift..shift + 32];
            for (i, v) in [1u64, 2, 3, 4].iter().enumerate() {
                bytes[i * 8..i * 8 + 8].copy_from_slice(&v.to_ne_bytes());
            }
            let ranges: Vec<_> = read_array::<sys::vfio_iova_range>(bytes, 2)
                .unwrap()
                .map(|r| (r.start, r.end))
                .collect();
            assert_eq!(ranges, [(1, 2), (3, 4)], "at offset {shift}");
            assert!(read_array::<sys::vfio_iova_range>(bytes, 3).is_none());
            assert!(read_array::<sys::vfio_iova_range>(bytes, usize::MAX).is_none());
            assert_eq!(
                read_array::<sys::vfio_iova_range>(bytes, 0).unwrap().len(),
                0
            );
        }
    }
}
