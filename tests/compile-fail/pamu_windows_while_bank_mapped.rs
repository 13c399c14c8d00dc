// Kernel rule: setting the window count discards every window mapping,
// MSI doorbells included, under devices that may be signalling through
// them. The MSI-bank guard borrows the container and `set_windows` consumes
// it, so the window count cannot change while a bank is mapped.
use typed_vfio::{Aperture, Container, Group, PamuPlatform};

pub fn windows_while_bank_mapped() -> Result<(), Box<dyn std::error::Error>> {
    let container = Container::open()?
        .attach(Group::open(26)?)?
        .set_iommu_type2(PamuPlatform::detect()?)?
        .set_geometry(Aperture::new(0, 1 << 24)?)?
        .set_windows(8)?;
    let bank = container.map_msi_bank(0, 7 << 21)?;
    let container = container.set_windows(16)?; //~ ERROR E0505 container
    println!("{} {container:?}", bank.index());
    Ok(())
}
