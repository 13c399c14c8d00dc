// Kernel rule: an IOAS mapping must not outlive the memory it maps (devices
// keep access until IOMMU_IOAS_UNMAP): the buffer cannot be dropped while
// its guard lives.
use typed_vfio::iommufd::Ioas;
use typed_vfio::{DmaAccess, DmaBuffer};

pub fn early_free(ioas: &Ioas<'_>) {
    let buffer = DmaBuffer::new(4096).unwrap();
    let mapping = ioas.map(&buffer, 0x10_0000, DmaAccess::ReadWrite).unwrap();
    drop(buffer); //~ ERROR E0505 buffer
    drop(mapping);
}
