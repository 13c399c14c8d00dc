// Kernel rule: a saving state's data fd is read-only (the kernel opens it
// O_RDONLY); only RESUMING's is written. So `Migration<StopCopy>` has no
// `write_all`.
use typed_vfio::Device;
use typed_vfio::migration::{StopCopy, StopCopyOnly};

pub fn write_saving(device: &Device) -> Result<(), Box<dyn std::error::Error>> {
    let m = device.migration::<StopCopyOnly>()?;
    let mut m = m.to::<StopCopy>().map_err(|e| e.error)?;
    m.write_all(b"state")?; //~ ERROR E0599 write_all
    Ok(())
}
