// Kernel rule: SET_ATTR(WINDOWS) before SET_ATTR(GEOMETRY) fails with
// EINVAL (and the SDK kernel swallows it). `set_windows` does not exist on
// `Container<Type2<Fresh>>`.
use typed_vfio::{Container, Group, PamuPlatform};

pub fn windows_before_geometry() -> Result<(), Box<dyn std::error::Error>> {
    let container = Container::open()?
        .attach(Group::open(26)?)?
        .set_iommu_type2(PamuPlatform::detect()?)?;
    let container = container.set_windows(16)?; //~ ERROR E0599 set_windows
    println!("{container:?}");
    Ok(())
}
