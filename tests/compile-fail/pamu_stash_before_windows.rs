// Kernel rule: SET_ATTR(PAMU_STASH) is accepted only once the windows are
// configured. `set_stash` exists only on `Container<Type2<Ready>>`.
use typed_vfio::{Aperture, Container, Group, PamuPlatform, StashCache};

pub fn stash_before_windows() -> Result<(), Box<dyn std::error::Error>> {
    let mut container = Container::open()?
        .attach(Group::open(26)?)?
        .set_iommu_type2(PamuPlatform::detect()?)?
        .set_geometry(Aperture::new(0, 1 << 24)?)?;
    container.set_stash(0, StashCache::L1)?; //~ ERROR E0599 set_stash
    Ok(())
}
