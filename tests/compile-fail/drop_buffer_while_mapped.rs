// Kernel rule: after VFIO_IOMMU_MAP_DMA the device may read and write the
// pinned pages until VFIO_IOMMU_UNMAP_DMA. Freeing the buffer while mapped
// would let the device write memory that gets reused: the `DmaMapping`
// guard borrows the buffer, so it cannot be dropped.
use typed_vfio::{Container, DmaAccess, DmaBuffer, Group, Type1v2};

pub fn free_buffer_under_mapping() -> Result<(), Box<dyn std::error::Error>> {
    let group = Group::open(26)?;
    let container = Container::open()?.attach(group)?.set_iommu::<Type1v2>()?;
    let buffer = DmaBuffer::new(1 << 16)?;
    let mapping = container.map(&buffer, 0x10_0000, DmaAccess::DeviceWrites)?;
    drop(buffer); //~ ERROR E0505 buffer
    println!("device still writes at {:#x}", mapping.iova());
    Ok(())
}
