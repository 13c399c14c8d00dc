// Kernel rule: VFIO_SET_IOMMU needs at least one group in the container (the
// model is checked against the groups' IOMMU); on an empty container it
// fails. So `Container<Unset>` has no `set_iommu`.
use typed_vfio::{Container, Type1v2};

pub fn set_iommu_on_empty_container() -> Result<(), Box<dyn std::error::Error>> {
    let container = Container::open()?;
    let container = container.set_iommu::<Type1v2>()?; //~ ERROR E0599 set_iommu
    println!("{container:?}");
    Ok(())
}
