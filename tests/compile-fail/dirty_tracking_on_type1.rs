// Kernel rule: VFIO_IOMMU_DIRTY_PAGES needs a type1v2 container
// (vfio_iommu_type1_dirty_pages answers EACCES for v1). So
// `Container<Type1>` has no dirty tracking.
use typed_vfio::{Container, Group, Type1};

pub fn track() -> Result<(), Box<dyn std::error::Error>> {
    let container = Container::open()?.attach(Group::open(26)?)?.set_iommu::<Type1>()?;
    container.start_dirty_tracking()?; //~ ERROR E0599 start_dirty_tracking
    Ok(())
}
