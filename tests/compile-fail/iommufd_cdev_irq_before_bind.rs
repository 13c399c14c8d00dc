// Kernel rule: before VFIO_DEVICE_BIND_IOMMUFD a cdev fd can do nothing but
// bind: no IRQ setup either.
use typed_vfio::iommufd::CdevDevice;

pub fn irqs(dev: &CdevDevice) {
    let _ = dev.irq_info(1); //~ ERROR E0599 irq_info
}
