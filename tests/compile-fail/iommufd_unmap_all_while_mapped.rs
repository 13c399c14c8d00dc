// Kernel rule: unmapping everything removes mappings whose guards still
// believe them live: `unmap_all` needs `&mut Ioas`, which no live guard
// allows.
use typed_vfio::iommufd::Ioas;
use typed_vfio::{DmaAccess, DmaBuffer};

pub fn unmap_everything(ioas: &mut Ioas<'_>, buffer: &DmaBuffer) {
    let mapping = ioas.map(buffer, 0x10_0000, DmaAccess::ReadWrite).unwrap();
    let _ = ioas.unmap_all(); //~ ERROR E0502 ioas
    drop(mapping);
}
