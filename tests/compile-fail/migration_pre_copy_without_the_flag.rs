// Kernel rule: PRE_COPY needs VFIO_MIGRATION_PRE_COPY in the device's
// migration flags. A handle obtained for P2P only cannot enter it.
use typed_vfio::Device;
use typed_vfio::migration::{PreCopy, WithP2p};

pub fn pre_copy(device: &Device) -> Result<(), Box<dyn std::error::Error>> {
    let m = device.migration::<WithP2p>()?;
    let _m = m.to::<PreCopy>(); //~ ERROR E0277 Allowed
    Ok(())
}
