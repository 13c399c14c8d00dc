// Kernel rule: the uapi blocks STOP_COPY -> PRE_COPY (vfio_mig_get_next_state
// answers EINVAL): once stopped and copying, pre-copy cannot resume. So a
// `Migration<StopCopy>` has no arc to `PreCopy`.
use typed_vfio::Device;
use typed_vfio::migration::{PreCopy, StopCopy, WithP2pPreCopy};

pub fn back_to_pre_copy(device: &Device) -> Result<(), Box<dyn std::error::Error>> {
    let m = device.migration::<WithP2pPreCopy>()?;
    let m = m.to::<StopCopy>().map_err(|e| e.error)?;
    let _m = m.to::<PreCopy>(); //~ ERROR E0277 ArcTo
    Ok(())
}
