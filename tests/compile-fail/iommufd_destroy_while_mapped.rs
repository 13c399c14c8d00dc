// Kernel rule: destroying an IOAS removes its mappings behind their guards'
// backs: `destroy` consumes the IOAS, which a live guard borrows.
use typed_vfio::iommufd::Ioas;
use typed_vfio::{DmaAccess, DmaBuffer};

pub fn destroy_mapped(ioas: Ioas<'_>, buffer: &DmaBuffer) {
    let mapping = ioas.map(buffer, 0x10_0000, DmaAccess::ReadWrite).unwrap();
    let _ = ioas.destroy(); //~ ERROR E0505 ioas
    drop(mapping);
}
