// Kernel rule: the ids 2 and 7 are the PAMU's only on a QorIQ SDK kernel;
// on IBM POWER they select the sPAPR TCE IOMMU, whose drivers read the PAMU
// request numbers as other requests (GET_MSI_BANK_COUNT, issued with no
// argument, reaches SPAPR_REGISTER_MEMORY, which reads a user pointer). The
// opt-in that skips the device-tree check is `unsafe`: calling it from safe
// code does not compile.
use typed_vfio::{Container, Group, PamuPlatform};

pub fn pamu_without_proof() -> Result<(), Box<dyn std::error::Error>> {
    let platform = PamuPlatform::assume_present(); //~ ERROR E0133 assume_present
    let container = Container::open()?
        .attach(Group::open(26)?)?
        .set_iommu_type2(platform)?;
    println!("PAMU id {}", container.pamu_id());
    Ok(())
}
