// Kernel rule: destroying an IOAS removes its mappings, copies among them,
// behind their guards' backs: `destroy` consumes the destination IOAS,
// which a live copy borrows.
use typed_vfio::iommufd::Ioas;
use typed_vfio::{DmaAccess, DmaBuffer};

pub fn destroy_destination(src: &Ioas<'_>, dst: Ioas<'_>, buffer: &DmaBuffer) {
    let mapping = src.map(buffer, 0x10_0000, DmaAccess::ReadWrite).unwrap();
    let copy = dst.copy(&mapping, 0x20_0000, DmaAccess::ReadWrite).unwrap();
    let _ = dst.destroy(); //~ ERROR E0505 dst
    drop(copy);
}
