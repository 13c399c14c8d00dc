// Kernel rule: attaching a group (VFIO_GROUP_SET_CONTAINER) does not pick an
// IOMMU model; until VFIO_SET_IOMMU, VFIO_IOMMU_MAP_DMA fails. So
// `Container<Attached>` has no `map`.
use typed_vfio::{Container, DmaAccess, DmaBuffer, Group};

pub fn map_before_set_iommu() -> Result<(), Box<dyn std::error::Error>> {
    let group = Group::open(26)?;
    let container = Container::open()?.attach(group)?;
    let ring = DmaBuffer::new(4096)?;
    let mapping = container.map(&ring, 0, DmaAccess::DeviceReads)?; //~ ERROR E0599 map
    println!("ring at {:#x}", mapping.iova());
    Ok(())
}
