// Kernel rule: IOMMU_IOAS_COPY maps the source's pages a second time, and
// devices keep access through the copy after the source is unmapped: the
// copy's guard borrows the buffer itself, which cannot be dropped while it
// lives (even once the source guard is gone).
use typed_vfio::iommufd::Ioas;
use typed_vfio::{DmaAccess, DmaBuffer};

pub fn early_free(src: &Ioas<'_>, dst: &Ioas<'_>) {
    let buffer = DmaBuffer::new(4096).unwrap();
    let mapping = src.map(&buffer, 0x10_0000, DmaAccess::ReadWrite).unwrap();
    let copy = dst.copy(&mapping, 0x20_0000, DmaAccess::ReadWrite).unwrap();
    drop(mapping);
    drop(buffer); //~ ERROR E0505 buffer
    drop(copy);
}
