// Kernel rule: ERROR is never a state user space asks for (SET of ERROR is
// EINVAL); a device lands there only through a failed transition. So no
// handle has an arc to `ErrorState`.
use typed_vfio::Device;
use typed_vfio::migration::{ErrorState, StopCopyOnly};

pub fn ask_for_error(device: &Device) -> Result<(), Box<dyn std::error::Error>> {
    let m = device.migration::<StopCopyOnly>()?;
    let _m = m.to::<ErrorState>(); //~ ERROR E0277 ArcTo
    Ok(())
}
