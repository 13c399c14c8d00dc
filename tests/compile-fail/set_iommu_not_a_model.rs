// Kernel rule: VFIO_SET_IOMMU takes an IOMMU model id (VFIO_TYPE1_IOMMU, ...);
// the container states `Unset`/`Attached` are not models and have no id, so
// `set_iommu::<Attached>` is rejected (`Attached: IommuModel` does not hold).
use typed_vfio::{Attached, Container, Group};

pub fn set_iommu_to_a_state() -> Result<(), Box<dyn std::error::Error>> {
    let group = Group::open(26)?;
    let container = Container::open()?.attach(group)?;
    let container = container.set_iommu::<Attached>()?; //~ ERROR E0277 IommuModel
    println!("{container:?}");
    Ok(())
}
