// Kernel rule: VFIO_DEVICE_ATTACH_IOMMUFD_PT needs a bound device (EINVAL
// before the bind): an unbound `CdevDevice` has no `attach`.
use typed_vfio::iommufd::{CdevDevice, Ioas};

pub fn attach_first(dev: &CdevDevice, ioas: &Ioas<'_>) {
    let _ = dev.attach(ioas); //~ ERROR E0599 attach
}
