// Kernel rule: PAMU requests are served by the PAMU driver only; to the
// type1 driver VFIO_BASE + 18 is another request (and to sPAPR, memory
// registration). So `Container<Type1v2>` has no `map_msi_bank`.
use typed_vfio::{Container, Group, Type1v2};

pub fn msi_bank_on_type1v2() -> Result<(), Box<dyn std::error::Error>> {
    let container = Container::open()?
        .attach(Group::open(26)?)?
        .set_iommu::<Type1v2>()?;
    let bank = container.map_msi_bank(0, 0x10_0000)?; //~ ERROR E0599 map_msi_bank
    println!("bank {} mapped", bank.index());
    Ok(())
}
