// Control: device-fd requests on a device from a container with a model set
// must compile: region info and pread/pwrite (VFIO_DEVICE_GET_REGION_INFO),
// a BAR mmap dropped before the device, IRQ wiring (VFIO_DEVICE_SET_IRQS),
// reset (VFIO_DEVICE_RESET) and hot reset proving group ownership.
use std::os::fd::AsFd;

use typed_vfio::{Container, Group, NoIommu, PciIrq, Type1v2};

pub fn device_access(eventfd: &impl AsFd) -> Result<u32, Box<dyn std::error::Error>> {
    let group = Group::for_pci_device("0000:01:00.0")?;
    let container = Container::open()?.attach(group)?.set_iommu::<Type1v2>()?;
    let device = container.open_device("0000:01:00.0")?;
    assert!(device.info().is_pci());

    let config = device.pci_config()?;
    let vendor = config.read_u16(0)?;
    let bar0 = device.region(0)?;
    bar0.write_u32(0x04, 1)?;
    let mapped = bar0.mmap()?;
    let id = mapped.read_u32(0)?;
    mapped.write_u32(0x08, id)?;
    drop(mapped);
    drop(bar0);

    let msi = PciIrq::Msi as u32;
    if device.irq_info(msi)?.eventfd() {
        device.set_irq_eventfd(msi, 0, eventfd.as_fd())?;
        device.disable_irq(msi)?;
    }
    if device.info().can_reset() {
        device.reset()?;
    } else {
        device.pci_hot_reset(container.groups())?;
    }
    drop(device);
    Ok(u32::from(vendor) ^ id)
}

pub fn noiommu_device() -> Result<(), Box<dyn std::error::Error>> {
    let group = Group::open_noiommu(0)?;
    let container = Container::open()?.attach(group)?.set_iommu::<NoIommu>()?;
    let device = container.open_device("0000:00:04.0")?;
    device.reset()?;
    Ok(())
}
