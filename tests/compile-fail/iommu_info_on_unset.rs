// Kernel rule: VFIO_IOMMU_GET_INFO is answered by the type1 IOMMU driver,
// which only exists once a group is attached and VFIO_SET_IOMMU selected it.
// On a fresh container it fails: `Container<Unset>` has no `iommu_info`.
use typed_vfio::Container;

pub fn page_sizes_of_fresh_container() -> Result<u64, Box<dyn std::error::Error>> {
    let container = Container::open()?;
    let info = container.iommu_info()?; //~ ERROR E0599 iommu_info
    Ok(info.page_sizes)
}
