// Kernel rule: closing the container fd drops every DMA mapping when its
// groups leave; a `DmaMapping` guard must not outlive its container. It
// cannot be returned from a function whose container is a local.
use typed_vfio::{Container, DmaAccess, DmaBuffer, DmaMapping, Group, Type1v2};

pub fn map_into_private_container(
    buffer: &DmaBuffer,
) -> Result<DmaMapping<'_>, Box<dyn std::error::Error>> {
    let group = Group::open(26)?;
    let container = Container::open()?.attach(group)?.set_iommu::<Type1v2>()?;
    let mapping = container.map(buffer, 0x10_0000, DmaAccess::ReadWrite)?;
    Ok(mapping) //~ ERROR E0515 container
}
