// Kernel rule: VFIO_DEVICE_RESET is a device-fd ioctl; a group fd does not
// accept it. `Group` has no `reset`.
use typed_vfio::Group;

pub fn reset_through_group() -> Result<(), Box<dyn std::error::Error>> {
    let group = Group::for_pci_device("0000:01:00.0")?;
    group.reset()?; //~ ERROR E0599 reset
    Ok(())
}
