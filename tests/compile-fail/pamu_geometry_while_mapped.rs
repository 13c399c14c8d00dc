// Kernel rule: the first MAP_DMA enables the PAMU domain; from then on
// SET_ATTR(GEOMETRY) fails with EBUSY (swallowed by the SDK kernel). The
// mapping guard borrows the container and `set_geometry` consumes it, so a
// geometry change under a live mapping does not compile.
use typed_vfio::{Aperture, Container, ContiguousBuffer, DmaAccess, Group, PamuPlatform};

pub fn geometry_while_mapped() -> Result<(), Box<dyn std::error::Error>> {
    let container = Container::open()?
        .attach(Group::open(26)?)?
        .set_iommu_type2(PamuPlatform::detect()?)?
        .set_geometry(Aperture::new(0, 1 << 24)?)?
        .set_windows(8)?;
    let buffer = ContiguousBuffer::huge(1 << 21, 1 << 21)?;
    let mapping = container.map(&buffer, 0, DmaAccess::ReadWrite)?;
    let container = container.set_geometry(Aperture::new(0, 1 << 25)?)?; //~ ERROR E0505 container
    println!("{:#x} {container:?}", mapping.iova());
    Ok(())
}
