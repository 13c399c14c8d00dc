// Kernel rule: VFIO_IOMMU_UNMAP_DMA with VFIO_DMA_UNMAP_FLAG_ALL removes
// every mapping of the container, including ones a live `DmaMapping` guard
// owns. `unmap_all` takes `&mut self`, so it cannot run while a guard borrows
// the container.
use typed_vfio::{Container, DmaAccess, DmaBuffer, Group, Type1v2};

pub fn unmap_all_under_mapping() -> Result<(), Box<dyn std::error::Error>> {
    let group = Group::open(26)?;
    let mut container = Container::open()?.attach(group)?.set_iommu::<Type1v2>()?;
    let buffer = DmaBuffer::new(1 << 16)?;
    let mapping = container.map(&buffer, 0x10_0000, DmaAccess::ReadWrite)?;
    let unmapped = container.unmap_all()?; //~ ERROR E0502 container
    //~ ERROR E0502 unmap_all
    println!("unmapped {unmapped} bytes, guard at {:#x}", mapping.iova());
    Ok(())
}
