// Kernel rule: VFIO_DEVICE_RESET is a device-fd ioctl; the container fd does
// not accept it. `Container` has no `reset`.
use typed_vfio::{Container, Group, Type1v2};

pub fn reset_through_container() -> Result<(), Box<dyn std::error::Error>> {
    let group = Group::open(26)?;
    let container = Container::open()?.attach(group)?.set_iommu::<Type1v2>()?;
    container.reset()?; //~ ERROR E0599 reset
    Ok(())
}
