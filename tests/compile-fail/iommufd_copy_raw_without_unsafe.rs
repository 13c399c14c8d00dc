// Kernel rule: IOMMU_IOAS_COPY of raw IOVAs hands devices whatever memory
// they map, for as long as the copy lives: `copy_raw` is `unsafe`.
use typed_vfio::iommufd::Ioas;
use typed_vfio::DmaAccess;

pub fn copy_guest_memory(src: &Ioas<'_>, dst: &Ioas<'_>) {
    let _ = dst.copy_raw(src, 0x10_0000, 4096, None, DmaAccess::ReadWrite); //~ ERROR E0133 copy_raw
}
