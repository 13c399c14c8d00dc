//! Absolute sizes and field offsets of every struct the crate encodes or
//! parses, written down from the kernel ABI (natural alignment: every
//! architecture agrees, except i386, which aligns a plain `__u64` to 4, so
//! the PAMU structs of our `vfio_type2.h` move there). A break is a compile
//! error that names the struct and field. The typed layer reads the PAMU
//! offsets from here ([`PAMU_ATTR_INFO`], [`PAMU_BANK_IOVA`]), never from
//! literals.

use core::mem::{offset_of, size_of};

use super::{FromBytes, IntoBytes};
use static_assertions::assert_impl_all;

use super::*;

macro_rules! layout {
    ($($ty:ident = $size:literal { $($field:ident @ $off:literal),* $(,)? };)*) => {$(
        const _: () = assert!(
            size_of::<$ty>() == $size,
            concat!("ABI layout: size_of::<", stringify!($ty), ">() is not ", stringify!($size))
        );
        $(const _: () = assert!(
            offset_of!($ty, $field) == $off,
            concat!("ABI layout: ", stringify!($ty), ".", stringify!($field), " is not at offset ", stringify!($off))
        );)*
    )*};
}

layout! {
    vfio_info_cap_header = 8 { id @ 0, version @ 2, next @ 4 };
    vfio_group_status = 8 { argsz @ 0, flags @ 4 };
    vfio_device_info = 24 { argsz @ 0, flags @ 4, num_regions @ 8, num_irqs @ 12, cap_offset @ 16, pad @ 20 };
    vfio_region_info = 32 { argsz @ 0, flags @ 4, index @ 8, cap_offset @ 12, size @ 16, offset @ 24 };
    vfio_region_sparse_mmap_area = 16 { offset @ 0, size @ 8 };
    vfio_region_info_cap_sparse_mmap = 16 { header @ 0, nr_areas @ 8, reserved @ 12, areas @ 16 };
    vfio_region_info_cap_type = 16 { header @ 0, type_ @ 8, subtype @ 12 };
    vfio_irq_info = 16 { argsz @ 0, flags @ 4, index @ 8, count @ 12 };
    vfio_irq_set = 20 { argsz @ 0, flags @ 4, index @ 8, start @ 12, count @ 16, data @ 20 };
    vfio_pci_dependent_device = 8 { segment @ 4, bus @ 6, devfn @ 7 };
    vfio_pci_hot_reset_info = 12 { argsz @ 0, flags @ 4, count @ 8, devices @ 12 };
    vfio_pci_hot_reset = 12 { argsz @ 0, flags @ 4, count @ 8, group_fds @ 12 };
    vfio_device_feature = 8 { argsz @ 0, flags @ 4, data @ 8 };
    vfio_device_ioeventfd = 32 { argsz @ 0, flags @ 4, offset @ 8, data @ 16, fd @ 24, reserved @ 28 };
    vfio_device_bind_iommufd = 16 { argsz @ 0, flags @ 4, iommufd @ 8, out_devid @ 12 };
    vfio_device_attach_iommufd_pt = 12 { argsz @ 0, flags @ 4, pt_id @ 8 };
    vfio_device_detach_iommufd_pt = 8 { argsz @ 0, flags @ 4 };
    vfio_iommu_type1_info = 24 { argsz @ 0, flags @ 4, iova_pgsizes @ 8, cap_offset @ 16, pad @ 20 };
    vfio_iova_range = 16 { start @ 0, end @ 8 };
    vfio_iommu_type1_info_cap_iova_range = 16 { header @ 0, nr_iovas @ 8, reserved @ 12, iova_ranges @ 16 };
    vfio_iommu_type1_info_dma_avail = 12 { header @ 0, avail @ 8 };
    vfio_iommu_type1_dma_map = 32 { argsz @ 0, flags @ 4, vaddr @ 8, iova @ 16, size @ 24 };
    vfio_iommu_type1_dma_unmap = 24 { argsz @ 0, flags @ 4, iova @ 8, size @ 16, data @ 24 };
    vfio_pamu_geometry = 16 { aperture_start @ 0, aperture_end @ 8 };
    vfio_pamu_stash = 8 { cpu @ 0, cache @ 4 };
    vfio_pamu_msi_bank_unmap = 16 { argsz @ 0, flags @ 4, iova @ 8 };
}

#[cfg(not(target_arch = "x86"))]
layout! {
    vfio_pamu_attr = 32 { argsz @ 0, flags @ 4, attribute @ 8, attr_info @ 16 };
    vfio_pamu_msi_bank_map = 24 { argsz @ 0, flags @ 4, msi_bank_index @ 8, iova @ 16 };
}

// i386: the u64 members are 4-aligned, so no padding precedes them.
#[cfg(target_arch = "x86")]
layout! {
    vfio_pamu_attr = 28 { argsz @ 0, flags @ 4, attribute @ 8, attr_info @ 12 };
    vfio_pamu_msi_bank_map = 20 { argsz @ 0, flags @ 4, msi_bank_index @ 8, iova @ 12 };
}

/// Where `vfio_pamu_attr`'s union starts on this target.
#[cfg(any(feature = "type2", feature = "sim"))]
pub(crate) const PAMU_ATTR_INFO: usize = offset_of!(vfio_pamu_attr, attr_info);
/// Where `vfio_pamu_msi_bank_map`'s IOVA is on this target.
#[cfg(feature = "sim")]
pub(crate) const PAMU_BANK_IOVA: usize = offset_of!(vfio_pamu_msi_bank_map, iova);

// The fixed-size structs the typed layer reads from kernel bytes and writes
// as argument bytes must be plain data (build.rs has `sys::plain!` prove it).
assert_impl_all!(
    vfio_info_cap_header: FromBytes, IntoBytes
);
assert_impl_all!(vfio_group_status: FromBytes, IntoBytes);
assert_impl_all!(vfio_device_info: FromBytes, IntoBytes);
assert_impl_all!(vfio_region_info: FromBytes, IntoBytes);
assert_impl_all!(vfio_region_sparse_mmap_area: FromBytes, IntoBytes);
assert_impl_all!(vfio_region_info_cap_type: FromBytes, IntoBytes);
assert_impl_all!(vfio_irq_info: FromBytes, IntoBytes);
assert_impl_all!(vfio_iommu_type1_info: FromBytes, IntoBytes);
assert_impl_all!(vfio_iova_range: FromBytes, IntoBytes);
assert_impl_all!(vfio_iommu_type1_info_dma_avail: FromBytes, IntoBytes);
assert_impl_all!(vfio_iommu_type1_dma_map: FromBytes, IntoBytes);
assert_impl_all!(vfio_pamu_msi_bank_map: FromBytes, IntoBytes);
assert_impl_all!(vfio_pamu_msi_bank_unmap: FromBytes, IntoBytes);
assert_impl_all!(vfio_pamu_attr: FromBytes);
