// Kernel rule: VFIO_SET_IOMMU succeeds once per container; once a model is
// set the kernel refuses another (EBUSY) until the last group leaves. So
// `Container<Type1v2>` has no `set_iommu`.
use typed_vfio::{Container, Group, Type1, Type1v2};

pub fn switch_models() -> Result<(), Box<dyn std::error::Error>> {
    let group = Group::open(26)?;
    let container = Container::open()?.attach(group)?.set_iommu::<Type1v2>()?;
    let container = container.set_iommu::<Type1>()?; //~ ERROR E0599 set_iommu
    println!("{container:?}");
    Ok(())
}
