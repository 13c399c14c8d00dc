// Kernel rule: when the last group leaves the container the kernel drops the
// IOMMU model and all DMA mappings; VFIO_IOMMU_MAP_DMA fails until a group
// is attached and VFIO_SET_IOMMU issued again. `release_groups` returns a
// `Container<Unset>`, which has no `map`.
use typed_vfio::{Container, DmaAccess, DmaBuffer, Group, Type1v2};

pub fn map_after_groups_left() -> Result<(), Box<dyn std::error::Error>> {
    let group = Group::open(26)?;
    let container = Container::open()?.attach(group)?.set_iommu::<Type1v2>()?;
    let (container, _groups) = container.release_groups()?;
    let buffer = DmaBuffer::new(4096)?;
    let mapping = container.map(&buffer, 0, DmaAccess::ReadWrite)?; //~ ERROR E0599 map
    println!("mapped at {:#x}", mapping.iova());
    Ok(())
}
