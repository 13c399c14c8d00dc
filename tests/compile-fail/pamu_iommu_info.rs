// Kernel rule: the PAMU driver does not serve VFIO_IOMMU_GET_INFO (ENOTTY):
// a PAMU container has no `iommu_info`; its geometry comes from GET_ATTR.
use typed_vfio::{Container, Group, PamuPlatform};

pub fn pamu_iommu_info() -> Result<(), Box<dyn std::error::Error>> {
    let container = Container::open()?
        .attach(Group::open(26)?)?
        .set_iommu_type2(PamuPlatform::detect()?)?;
    let info = container.iommu_info()?; //~ ERROR E0599 iommu_info
    println!("{info:?}");
    Ok(())
}
