// Kernel rule: leaving a saving state closes its stream (the data fd reads
// ENODEV or EOF afterwards). A transition consumes the handle, so the old
// state's stream cannot be read after it.
use typed_vfio::Device;
use typed_vfio::migration::{Stop, StopCopy, StopCopyOnly};

pub fn read_after_stop(device: &Device) -> Result<(), Box<dyn std::error::Error>> {
    let m = device.migration::<StopCopyOnly>()?;
    let mut saving = m.to::<StopCopy>().map_err(|e| e.error)?;
    let _stopped = saving.to::<Stop>();
    let _rest = saving.read_to_end(1 << 20); //~ ERROR E0382 saving
    Ok(())
}
