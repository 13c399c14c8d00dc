// Kernel rule: before VFIO_DEVICE_BIND_IOMMUFD a cdev fd can do nothing but
// bind: no reset.
use typed_vfio::iommufd::CdevDevice;

pub fn reset(dev: &CdevDevice) {
    let _ = dev.reset(); //~ ERROR E0599 reset
}
