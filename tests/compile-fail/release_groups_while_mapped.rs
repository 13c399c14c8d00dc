// Kernel rule: when the last group leaves a container
// (VFIO_GROUP_UNSET_CONTAINER), the kernel drops all DMA mappings and the
// IOMMU model. `release_groups` takes the container by value, so it cannot
// run while a `DmaMapping` guard borrows the container.
use typed_vfio::{Container, DmaAccess, DmaBuffer, Group, Type1v2};

pub fn release_groups_under_mapping() -> Result<(), Box<dyn std::error::Error>> {
    let group = Group::open(26)?;
    let container = Container::open()?.attach(group)?.set_iommu::<Type1v2>()?;
    let buffer = DmaBuffer::new(1 << 16)?;
    let mapping = container.map(&buffer, 0x10_0000, DmaAccess::ReadWrite)?;
    let (_empty, groups) = container.release_groups()?; //~ ERROR E0505 container
    println!("{} groups released, guard at {:#x}", groups.len(), mapping.iova());
    Ok(())
}
