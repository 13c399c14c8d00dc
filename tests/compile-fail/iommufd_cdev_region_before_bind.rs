// Kernel rule: before VFIO_DEVICE_BIND_IOMMUFD a cdev fd can do nothing but
// bind (every other device request answers EINVAL). An unbound `CdevDevice`
// has no regions.
use typed_vfio::iommufd::CdevDevice;

pub fn bar0(dev: &CdevDevice) {
    let _ = dev.region(0); //~ ERROR E0599 region
}
