// Kernel rule: a cdev fd binds once (a second VFIO_DEVICE_BIND_IOMMUFD on the
// same fd answers EINVAL). `bind` consumes the unbound device.
use typed_vfio::iommufd::{CdevDevice, Iommufd};

pub fn twice(dev: CdevDevice, fd: &Iommufd) {
    let _first = dev.bind(fd);
    let _second = dev.bind(fd); //~ ERROR E0382 dev
}
