// Kernel rule: VFIO_IOMMU_MAP_DMA is handled by the container's IOMMU model.
// A freshly opened container has no group and no model (VFIO_SET_IOMMU was
// never issued), so the kernel fails the request: `Container<Unset>` has no
// `map`.
use typed_vfio::{Container, DmaAccess, DmaBuffer};

pub fn map_on_fresh_container() -> Result<(), Box<dyn std::error::Error>> {
    let container = Container::open()?;
    let buffer = DmaBuffer::new(1 << 20)?;
    let mapping = container.map(&buffer, 0x10_0000, DmaAccess::ReadWrite)?; //~ ERROR E0599 map
    println!("mapped at {:#x}", mapping.iova());
    Ok(())
}
