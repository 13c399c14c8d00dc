// Kernel rule: IOMMU_IOAS_MAP of arbitrary process memory gives devices
// access the borrow checker cannot see: `map_raw` is `unsafe`.
use typed_vfio::iommufd::Ioas;
use typed_vfio::DmaAccess;

pub fn guest_memory(ioas: &Ioas<'_>, vaddr: *mut u8) {
    let _ = ioas.map_raw(vaddr, 4096, Some(0x10_0000), DmaAccess::ReadWrite); //~ ERROR E0133 map_raw
}
