// Kernel rule: VFIO_IOMMU_PAMU_MAP_MSI_BANK is a request of the PAMU IOMMU
// driver; before VFIO_SET_IOMMU the container has no driver, and the number
// (VFIO_BASE + 18) means nothing to it. `map_msi_bank` exists only on
// `Container<Type2<Ready>>`.
use typed_vfio::{Container, Group};

pub fn msi_bank_before_set_iommu() -> Result<(), Box<dyn std::error::Error>> {
    let container = Container::open()?.attach(Group::open(26)?)?;
    let bank = container.map_msi_bank(0, 0x10_0000)?; //~ ERROR E0599 map_msi_bank
    println!("bank {} mapped", bank.index());
    Ok(())
}
