// Kernel rule: RUNNING_P2P exists only on a device whose
// VFIO_DEVICE_FEATURE_MIGRATION has VFIO_MIGRATION_P2P (otherwise SET is
// EINVAL). A handle obtained for STOP_COPY only cannot enter it.
use typed_vfio::Device;
use typed_vfio::migration::{RunningP2p, StopCopyOnly};

pub fn p2p(device: &Device) -> Result<(), Box<dyn std::error::Error>> {
    let m = device.migration::<StopCopyOnly>()?;
    let _m = m.to::<RunningP2p>(); //~ ERROR E0277 Allowed
    Ok(())
}
