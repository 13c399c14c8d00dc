// Kernel rule: only the saving states (STOP_COPY, PRE_COPY, PRE_COPY_P2P)
// have a data fd to read; RUNNING has none. So `Migration<Running>` has no
// `read`.
use typed_vfio::Device;
use typed_vfio::migration::StopCopyOnly;

pub fn read_running(device: &Device) -> Result<(), Box<dyn std::error::Error>> {
    let mut m = device.migration::<StopCopyOnly>()?;
    let mut buf = [0u8; 64];
    let _n = m.read(&mut buf); //~ ERROR E0599 read
    Ok(())
}
