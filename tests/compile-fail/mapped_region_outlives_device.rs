// Kernel rule: a region mmap of a device fd (BAR) must not outlive the
// device: a `MappedRegion` borrows its `Device`, so the device cannot be
// dropped (its fd closed) while the mapping is alive.
use typed_vfio::{Container, Group, Type1v2};

pub fn read_bar_after_close() -> Result<u32, Box<dyn std::error::Error>> {
    let group = Group::open(26)?;
    let container = Container::open()?.attach(group)?.set_iommu::<Type1v2>()?;
    let device = container.open_device("0000:01:00.0")?;
    let bar0 = device.region(0)?.mmap()?;
    drop(device); //~ ERROR E0505 device
    Ok(bar0.read_u32(0)?)
}
