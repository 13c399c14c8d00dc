// Kernel rule: VFIO_MIG_GET_PRECOPY_INFO answers only in PRE_COPY and
// PRE_COPY_P2P (EINVAL elsewhere). So `Migration<StopCopy>` has no
// `precopy_info`.
use typed_vfio::Device;
use typed_vfio::migration::{StopCopy, WithPreCopy};

pub fn info(device: &Device) -> Result<(), Box<dyn std::error::Error>> {
    let m = device.migration::<WithPreCopy>()?;
    let m = m.to::<StopCopy>().map_err(|e| e.error)?;
    let _info = m.precopy_info(); //~ ERROR E0599 precopy_info
    Ok(())
}
