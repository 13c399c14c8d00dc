// Kernel rule: unmapping everything in the destination removes a copy
// whose guard still believes it live: `unmap_all` needs `&mut Ioas`, which
// a live copy's borrow forbids.
use typed_vfio::iommufd::Ioas;
use typed_vfio::{DmaAccess, DmaBuffer};

pub fn unmap_destination(src: &Ioas<'_>, dst: &mut Ioas<'_>, buffer: &DmaBuffer) {
    let mapping = src.map(buffer, 0x10_0000, DmaAccess::ReadWrite).unwrap();
    let copy = dst.copy_anywhere(&mapping, DmaAccess::ReadWrite).unwrap();
    let _ = dst.unmap_all(); //~ ERROR E0502 dst
    drop(copy);
}
