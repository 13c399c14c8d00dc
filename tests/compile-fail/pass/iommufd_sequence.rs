// The iommufd path used correctly: open, allocate an IOAS, bind a cdev,
// attach it, map a buffer, use the device, unmap, detach. Must compile.
use typed_vfio::iommufd::{CdevDevice, Iommufd};
use typed_vfio::{DmaAccess, DmaBuffer};

pub fn sequence() -> Result<(), Box<dyn std::error::Error>> {
    let fd = Iommufd::open()?;
    let mut ioas = fd.alloc_ioas()?;
    let dev = CdevDevice::open_pci("0000:01:00.0")?.bind(&fd)?;
    dev.attach(&ioas)?;
    let buffer = DmaBuffer::new(4096)?;
    {
        let mapping = ioas.map(&buffer, 0x10_0000, DmaAccess::ReadWrite)?;
        let _ = dev.region(0)?.read_u32(0)?;
        mapping.unmap()?;
    }
    ioas.unmap_all()?;
    dev.detach()?;
    drop(dev);
    ioas.destroy().map_err(|e| e.error)?;
    Ok(())
}
