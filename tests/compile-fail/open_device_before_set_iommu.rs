// Kernel rule: VFIO_GROUP_GET_DEVICE_FD fails until the container the group
// is attached to has an IOMMU model (VFIO_SET_IOMMU). So
// `Container<Attached>` has no `open_device`.
use typed_vfio::{Container, Group};

pub fn open_device_too_early() -> Result<(), Box<dyn std::error::Error>> {
    let group = Group::for_pci_device("0000:01:00.0")?;
    let container = Container::open()?.attach(group)?;
    let device = container.open_device("0000:01:00.0")?; //~ ERROR E0599 open_device
    device.reset()?;
    Ok(())
}
