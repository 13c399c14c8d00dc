// Kernel rule: VFIO_DEVICE_RESET applies to the whole device fd; there is no
// per-region reset. A `Region` handle has no `reset`.
use typed_vfio::{Container, Group, Type1v2};

pub fn reset_bar0() -> Result<(), Box<dyn std::error::Error>> {
    let group = Group::open(26)?;
    let container = Container::open()?.attach(group)?.set_iommu::<Type1v2>()?;
    let device = container.open_device("0000:01:00.0")?;
    let bar0 = device.region(0)?;
    bar0.reset()?; //~ ERROR E0599 reset
    Ok(())
}
