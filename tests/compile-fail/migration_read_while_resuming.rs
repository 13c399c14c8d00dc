// Kernel rule: RESUMING's data fd is write-only (O_WRONLY). So
// `Migration<Resuming>` has no `read`.
use typed_vfio::Device;
use typed_vfio::migration::{Resuming, StopCopyOnly};

pub fn read_resuming(device: &Device) -> Result<(), Box<dyn std::error::Error>> {
    let m = device.migration::<StopCopyOnly>()?;
    let mut m = m.to::<Resuming>().map_err(|e| e.error)?;
    let mut buf = [0u8; 64];
    let _n = m.read(&mut buf); //~ ERROR E0599 read
    Ok(())
}
