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
    ($($ty:ident = $size:tt { $($field:ident @ $off:literal),* $(,)? };)*) => {$(
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
    vfio_device_bind_iommufd = BIND_IOMMUFD_SIZE { argsz @ 0, flags @ 4, iommufd @ 8, out_devid @ 12 };
    vfio_device_attach_iommufd_pt = ATTACH_IOMMUFD_PT_SIZE { argsz @ 0, flags @ 4, pt_id @ 8 };
    vfio_device_detach_iommufd_pt = DETACH_IOMMUFD_PT_SIZE { argsz @ 0, flags @ 4 };
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

// Three cdev structs grew at their ends between 6.12 and 7.2, each field
// read only behind a flag that 6.12 refuses (EINVAL) and the crate never
// sets: BIND's `__aligned_u64 token_uuid_ptr` @ 16 (VFIO_DEVICE_BIND_FLAG_TOKEN;
// the struct's alignment becomes 8), ATTACH's and DETACH's `__u32 pasid` @ 12
// and @ 8 (VFIO_DEVICE_{ATTACH,DETACH}_PASID). Both kernels require only the
// 6.12 size in `argsz` (`minsz`: offsetofend of out_devid, pt_id, flags);
// 6.12 reads that much, 7.2 at most `argsz` bytes (BIND: copy_struct_from_user,
// so bytes past its own struct must be zero).
#[cfg(typed_vfio_pinned_uapi)]
const BIND_IOMMUFD_SIZE: usize = 24;
#[cfg(typed_vfio_pinned_uapi)]
const ATTACH_IOMMUFD_PT_SIZE: usize = 16;
#[cfg(typed_vfio_pinned_uapi)]
const DETACH_IOMMUFD_PT_SIZE: usize = 12;
#[cfg(typed_vfio_pinned_uapi)]
layout! {
    vfio_device_bind_iommufd = 24 { token_uuid_ptr @ 16 };
    vfio_device_attach_iommufd_pt = 16 { pasid @ 12 };
    vfio_device_detach_iommufd_pt = 12 { pasid @ 8 };
}
// Other headers (TYPED_VFIO_HEADERS): the 6.12 sizes or the 7.2 ones.
#[cfg(not(typed_vfio_pinned_uapi))]
const BIND_IOMMUFD_SIZE: usize = grown(size_of::<vfio_device_bind_iommufd>(), 16, 24);
#[cfg(not(typed_vfio_pinned_uapi))]
const ATTACH_IOMMUFD_PT_SIZE: usize = grown(size_of::<vfio_device_attach_iommufd_pt>(), 12, 16);
#[cfg(not(typed_vfio_pinned_uapi))]
const DETACH_IOMMUFD_PT_SIZE: usize = grown(size_of::<vfio_device_detach_iommufd_pt>(), 8, 12);
/// `size` when it is one of the two sizes a struct has had, else a compile error.
#[cfg(not(typed_vfio_pinned_uapi))]
const fn grown(size: usize, old: usize, new: usize) -> usize {
    assert!(
        size == old || size == new,
        "ABI layout: a cdev struct has a size neither 6.12 nor 7.2 gave it"
    );
    size
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
