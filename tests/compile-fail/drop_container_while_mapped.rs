// Kernel rule: closing the container fd detaches its groups, and when the
// last group leaves the kernel silently drops every DMA mapping. A live
// `DmaMapping` guard borrows the container, so the container cannot be
// dropped while the guard is alive.
use typed_vfio::{Container, DmaAccess, DmaBuffer, Group, Type1v2};

pub fn drop_container_under_mapping() -> Result<(), Box<dyn std::error::Error>> {
    let group = Group::open(26)?;
    let container = Container::open()?.attach(group)?.set_iommu::<Type1v2>()?;
    let buffer = DmaBuffer::new(1 << 16)?;
    let mapping = container.map(&buffer, 0x10_0000, DmaAccess::ReadWrite)?;
    drop(container); //~ ERROR E0505 container
    println!("still mapped at {:#x}", mapping.iova());
    Ok(())
}
