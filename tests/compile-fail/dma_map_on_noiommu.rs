// Kernel rule: the no-IOMMU model (VFIO_NOIOMMU_IOMMU) implements no DMA
// mapping ioctls at all: the device DMAs to physical addresses. So
// `Container<NoIommu>` has no `map`.
use typed_vfio::{Container, DmaAccess, DmaBuffer, Group, NoIommu};

pub fn map_on_noiommu() -> Result<(), Box<dyn std::error::Error>> {
    let group = Group::open_noiommu(0)?;
    let container = Container::open()?.attach(group)?.set_iommu::<NoIommu>()?;
    let buffer = DmaBuffer::new(4096)?;
    let mapping = container.map(&buffer, 0, DmaAccess::ReadWrite)?; //~ ERROR E0599 map
    println!("mapped at {:#x}", mapping.iova());
    Ok(())
}
