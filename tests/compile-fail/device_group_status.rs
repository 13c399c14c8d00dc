// Kernel rule: VFIO_GROUP_GET_STATUS is a group-fd ioctl; a device fd does
// not accept it. `Device` has no `status`.
use typed_vfio::{Container, Group, Type1v2};

pub fn viability_through_device() -> Result<(), Box<dyn std::error::Error>> {
    let group = Group::open(26)?;
    let container = Container::open()?.attach(group)?.set_iommu::<Type1v2>()?;
    let device = container.open_device("0000:01:00.0")?;
    let status = device.status()?; //~ ERROR E0599 status
    assert!(status.viable);
    Ok(())
}
