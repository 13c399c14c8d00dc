// Kernel rule: every PAMU window must be backed by physically contiguous
// memory (else EFAULT; the SDK kernel may map garbage). A plain `DmaBuffer`
// (4 KiB pages anywhere) cannot be mapped on a PAMU container: `map` takes
// a `ContiguousBuffer`.
use typed_vfio::{Aperture, Container, DmaAccess, DmaBuffer, Group, PamuPlatform};

pub fn map_plain_buffer() -> Result<(), Box<dyn std::error::Error>> {
    let container = Container::open()?
        .attach(Group::open(26)?)?
        .set_iommu_type2(PamuPlatform::detect()?)?
        .set_geometry(Aperture::new(0, 1 << 24)?)?
        .set_windows(8)?;
    let buffer = DmaBuffer::new(1 << 21)?;
    let mapping = container.map(&buffer, 0, DmaAccess::ReadWrite)?; //~ ERROR E0308 ContiguousBuffer
    println!("{:#x}", mapping.iova());
    Ok(())
}
