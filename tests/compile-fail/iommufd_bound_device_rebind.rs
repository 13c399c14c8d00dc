// Kernel rule: a bound cdev cannot bind again (EINVAL): a `BoundDevice` has
// no `bind`.
use typed_vfio::iommufd::{BoundDevice, Iommufd};

pub fn again(dev: BoundDevice, fd: &Iommufd) {
    let _ = dev.bind(fd); //~ ERROR E0599 bind
}
