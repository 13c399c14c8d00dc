// Kernel rule: VFIO_GROUP_SET_CONTAINER is issued on a group fd; a device fd
// cannot join a container. `Container::attach` takes a `Group`, not a
// `Device`.
use std::os::fd::OwnedFd;

use typed_vfio::{Container, Device};

pub fn attach_device_fd(fd: OwnedFd) -> Result<(), Box<dyn std::error::Error>> {
    let device = Device::from_fd(fd)?;
    let container = Container::open()?.attach(device)?; //~ ERROR E0308 Group
    println!("{container:?}");
    Ok(())
}
