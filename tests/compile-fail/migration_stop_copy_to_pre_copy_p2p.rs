// Kernel rule: the uapi blocks STOP_COPY -> PRE_COPY_P2P as it blocks
// STOP_COPY -> PRE_COPY (EINVAL).
use typed_vfio::Device;
use typed_vfio::migration::{PreCopyP2p, StopCopy, WithP2pPreCopy};

pub fn back_to_pre_copy_p2p(device: &Device) -> Result<(), Box<dyn std::error::Error>> {
    let m = device.migration::<WithP2pPreCopy>()?;
    let m = m.to::<StopCopy>().map_err(|e| e.error)?;
    let _m = m.to::<PreCopyP2p>(); //~ ERROR E0277 ArcTo
    Ok(())
}
