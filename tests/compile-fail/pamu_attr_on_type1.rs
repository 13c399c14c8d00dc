// Kernel rule: VFIO_IOMMU_PAMU_SET_ATTR / GET_ATTR (VFIO_BASE + 16 / 15)
// belong to the PAMU driver; on a type1 container those numbers reach the
// type1 driver (on sPAPR, IOMMU_ENABLE/DISABLE). The attribute calls exist
// only on `Container<Type2<_>>`.
use typed_vfio::{Aperture, Container, Group, Type1};

pub fn pamu_attr_on_type1() -> Result<(), Box<dyn std::error::Error>> {
    let container = Container::open()?
        .attach(Group::open(26)?)?
        .set_iommu::<Type1>()?;
    let (start, end) = container.geometry()?; //~ ERROR E0599 geometry
    let container = container.set_geometry(Aperture::new(0, 1 << 20)?)?; //~ ERROR E0599 set_geometry
    println!("{start:#x}..={end:#x} {container:?}");
    Ok(())
}
