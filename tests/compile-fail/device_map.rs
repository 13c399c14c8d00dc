// Kernel rule: VFIO_IOMMU_MAP_DMA is a container-fd ioctl; a device fd does
// not accept it. `Device` has no `map`.
use typed_vfio::{Container, DmaAccess, DmaBuffer, Group, Type1v2};

pub fn map_through_device() -> Result<(), Box<dyn std::error::Error>> {
    let group = Group::open(26)?;
    let container = Container::open()?.attach(group)?.set_iommu::<Type1v2>()?;
    let device = container.open_device("0000:01:00.0")?;
    let buffer = DmaBuffer::new(4096)?;
    let mapping = device.map(&buffer, 0, DmaAccess::ReadWrite)?; //~ ERROR E0599 map
    println!("mapped at {:#x}", mapping.iova());
    Ok(())
}
