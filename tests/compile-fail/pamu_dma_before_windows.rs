// Kernel rule: VFIO_IOMMU_MAP_DMA on a PAMU container needs the windows
// configured (a mapping is a whole number of windows). With only the
// geometry set (`Container<Type2<HasGeometry>>`) there is no `map`.
use typed_vfio::{Aperture, Container, ContiguousBuffer, DmaAccess, Group, PamuPlatform};

pub fn dma_before_windows() -> Result<(), Box<dyn std::error::Error>> {
    let container = Container::open()?
        .attach(Group::open(26)?)?
        .set_iommu_type2(PamuPlatform::detect()?)?
        .set_geometry(Aperture::new(0, 1 << 24)?)?;
    let buffer = ContiguousBuffer::huge(1 << 21, 1 << 21)?;
    let mapping = container.map(&buffer, 0, DmaAccess::ReadWrite)?; //~ ERROR E0599 map
    println!("{:#x}", mapping.iova());
    Ok(())
}
