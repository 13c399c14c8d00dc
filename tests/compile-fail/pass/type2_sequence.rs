// Control: the legal PAMU sequence must compile: platform check, SET_IOMMU,
// geometry, windows, stash, MSI banks before MSI, DMA of contiguous memory,
// guards dropped, then reconfiguration.
use std::os::fd::AsFd;

use typed_vfio::type2::plan;
use typed_vfio::{Aperture, Container, ContiguousBuffer, DmaAccess, Group, PamuPlatform, PciIrq, StashCache};

pub fn type2_sequence(eventfd: impl AsFd) -> Result<(), Box<dyn std::error::Error>> {
    let container = Container::open()?
        .attach(Group::open(26)?)?
        .set_iommu_type2(PamuPlatform::detect()?)?;
    let banks = container.msi_bank_count()?;
    let p = plan(banks, &[1 << 21], 0, container.max_windows())?;
    let mut container = container.set_geometry(p.aperture)?.set_windows(p.windows)?;
    container.set_stash(0, StashCache::L3)?;
    let device = container.open_device("ffe240000.pcie")?;
    {
        let mapped: Vec<_> = p
            .msi_banks
            .iter()
            .enumerate()
            .map(|(i, &iova)| container.map_msi_bank(i as u32, iova))
            .collect::<Result<_, _>>()?;
        device.set_irq_eventfd(PciIrq::Msi as u32, 0, eventfd.as_fd())?;
        let buffer = ContiguousBuffer::huge(p.dma[0].1 as usize, p.window_size.max(1 << 21))?;
        let mapping = container.map(&buffer, p.dma[0].0, DmaAccess::ReadWrite)?;
        mapping.unmap()?;
        device.disable_irq(PciIrq::Msi as u32)?;
        drop(mapped);
    }
    let container = container.set_geometry(Aperture::new(0, 1 << 30)?)?.set_windows(2)?;
    drop(device);
    drop(container);
    Ok(())
}
