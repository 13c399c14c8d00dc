// Kernel rule: VFIO_SET_IOMMU accepts only the model ids the kernel
// implements; user code cannot invent an IOMMU model (say, a made-up
// "type3") and hand its id to the kernel. `IommuModel` requires the sealed
// `ContainerState`, which user types cannot implement.
use typed_vfio::{Container, IommuModel, Type1v2};

pub struct Type3;

impl IommuModel for Type3 { //~ ERROR E0277 ContainerState
    const ID: u32 = 3;
    const NAME: &'static str = "VFIO_TYPE3_IOMMU";
}

pub fn probe(container: &Container<Type1v2>) -> bool {
    container.check_extension(Type3::ID).unwrap_or(false)
}
