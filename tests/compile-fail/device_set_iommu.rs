// Kernel rule: VFIO_SET_IOMMU is a container-fd ioctl; a device fd does not
// accept it. `Device` has no `set_iommu`.
use typed_vfio::{Container, Group, Type1, Type1v2};

pub fn set_iommu_through_device() -> Result<(), Box<dyn std::error::Error>> {
    let group = Group::open(26)?;
    let container = Container::open()?.attach(group)?.set_iommu::<Type1v2>()?;
    let device = container.open_device("0000:01:00.0")?;
    device.set_iommu::<Type1>()?; //~ ERROR E0599 set_iommu
    Ok(())
}
