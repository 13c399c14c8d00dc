// Kernel rule: VFIO_DEVICE_SET_IRQS is a device-fd ioctl on an IRQ index,
// unrelated to regions. A `Region` handle has no `set_irq_eventfd`.
use std::os::fd::AsFd;

use typed_vfio::{Container, Group, PciIrq, Type1v2};

pub fn wire_irq_on_region(eventfd: &impl AsFd) -> Result<(), Box<dyn std::error::Error>> {
    let group = Group::open(26)?;
    let container = Container::open()?.attach(group)?.set_iommu::<Type1v2>()?;
    let device = container.open_device("0000:01:00.0")?;
    let bar0 = device.region(0)?;
    bar0.set_irq_eventfd(PciIrq::Msi as u32, 0, eventfd.as_fd())?; //~ ERROR E0599 set_irq_eventfd
    Ok(())
}
