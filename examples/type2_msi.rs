//! The Freescale PAMU ("type2") IOMMU, narrated, on the simulated kernel:
//! platform check, SET_IOMMU, the aperture and its windows, the MSI banks
//! mapped before MSI is enabled, DMA of physically contiguous memory.
//!
//!     cargo run --example type2_msi            # the SDK kernel (errors swallowed)
//!     cargo run --example type2_msi -- strict  # a strict kernel (errors returned)
//!
//! The crate gives the same typed errors in both: it checks every value
//! before the call, reads back every attribute it sets, and tracks the MSI
//! banks itself.

use std::error::Error;
use std::os::fd::AsFd;

use nix::sys::eventfd::{EfdFlags, EventFd};
use typed_vfio::sim::{PamuMode, SimDevice, SimGroup, Simulator};
use typed_vfio::type2::plan;
use typed_vfio::{DmaAccess, PciIrq};

const EDU: &str = "0000:01:00.0";

fn step(n: u32, what: &str) {
    println!("\n{n}. {what}");
}

/// Writes an edu DMA request (the simulator completes it at once).
fn edu_dma(bar0: &typed_vfio::Region<'_>, src: u64, dst: u64, count: u32, to_ram: bool) {
    for (reg, value) in [
        (0x80, src as u32),
        (0x88, dst as u32),
        (0x90, count),
        (0x98, 1 | if to_ram { 2 } else { 0 }),
    ] {
        // The simulated edu accepts every register write.
        let _ = bar0.write_u32(reg, value);
    }
}

/// The whole sequence on a simulated QorIQ SoC in `mode`.
pub fn walkthrough(mode: PamuMode) -> Result<(), Box<dyn Error>> {
    step(
        1,
        "A QorIQ SoC: PAMU in the device tree, 2 MSI banks, an edu device.",
    );
    let sim = Simulator::builder()
        .pamu(mode)
        .msi_banks(2)
        .group(SimGroup::new(1).device(SimDevice::edu(EDU)))
        .build()?;
    // On hardware: PamuPlatform::detect() reads /proc/device-tree.
    let platform = sim.pamu_platform()?;
    println!(
        "   a node compatible with \"fsl,pamu\" was found: ids 2 and 7 mean PAMU here, not sPAPR"
    );

    step(2, "Attach the group and select the PAMU IOMMU.");
    let container = sim
        .open_container()?
        .attach(sim.open_group(1)?)?
        .set_iommu_type2(platform)?;
    let (start, end) = container.geometry()?;
    println!(
        "   IOMMU id {} (2 = SDK 3.8.13, 7 = OpenIL); default aperture {start:#x}..={end:#x} (not configured)",
        container.pamu_id()
    );
    let banks = container.msi_bank_count()?;
    println!(
        "   {} windows at most; {banks} MSI banks, each needs a window of its own",
        container.max_windows()
    );

    step(
        3,
        "Plan: two DMA buffers (64 KiB and 96 KiB) plus the banks.",
    );
    let p = plan(banks, &[0x1_0000, 0x1_8000], 0x100_0000, 16)?;
    println!(
        "   aperture {:#x}+{:#x}, {} windows of {:#x}",
        p.aperture.start(),
        p.aperture.size(),
        p.windows,
        p.window_size
    );
    for (i, (iova, len)) in p.dma.iter().enumerate() {
        println!("   DMA buffer {i}: {len:#x} bytes at IOVA {iova:#x}");
    }
    for (i, iova) in p.msi_banks.iter().enumerate() {
        println!("   MSI bank {i}: window at IOVA {iova:#x}");
    }

    step(
        4,
        "Set the geometry, then the windows (each read back with GET_ATTR).",
    );
    let container = container.set_geometry(p.aperture)?;
    let (start, end) = container.geometry()?;
    println!("   aperture now {start:#x}..={end:#x}");
    let err = container.set_windows(p.windows - 1).unwrap_err();
    println!("   a bad count is refused before the ioctl: {}", err.error);
    let container = err.container.set_windows(p.windows)?;
    println!(
        "   {} windows of {:#x} bytes",
        container.window_count()?,
        container.window_size()
    );

    step(
        5,
        "Open the device: MSI is refused until the banks are mapped.",
    );
    let dev = container.open_device(EDU)?;
    dev.set_bus_master(true)?;
    let eventfd = EventFd::from_value_and_flags(0, EfdFlags::EFD_CLOEXEC | EfdFlags::EFD_NONBLOCK)?;
    match dev.set_irq_eventfd(PciIrq::Msi as u32, 0, eventfd.as_fd()) {
        Err(e) => println!("   {e}"),
        Ok(()) => return Err("MSI was enabled before the banks".into()),
    }

    step(6, "Map the MSI banks into their windows, then enable MSI.");
    let mut mapped = Vec::new();
    for (i, &iova) in p.msi_banks.iter().enumerate() {
        let bank = container.map_msi_bank(i as u32, iova)?;
        println!("   bank {} in window {}", bank.index(), bank.window());
        mapped.push(bank);
    }
    if let Err(e) = container.map_msi_bank(0, p.msi_banks[0]) {
        println!("   mapping bank 0 twice: {e}");
    }
    dev.set_irq_eventfd(PciIrq::Msi as u32, 0, eventfd.as_fd())?;
    let bar0 = dev.region(0)?;
    bar0.write_u32(0x60, 1)?; // edu: raise interrupt
    println!("   MSI raised: eventfd counter {}", eventfd.read()?);
    bar0.write_u32(0x64, 1)?;

    step(7, "DMA through windows: contiguous buffers, whole windows.");
    let a = sim.contiguous_buffer(p.dma[0].1 as usize, p.window_size)?;
    let b = sim.contiguous_buffer(p.dma[1].1 as usize, p.window_size)?;
    let plain = sim.contiguous_buffer(p.window_size as usize, 0x1000)?;
    if let Err(e) = container.map(&plain, p.dma[0].0, DmaAccess::ReadWrite) {
        println!("   4 KiB pages for {:#x}-byte windows: {e}", p.window_size);
    }
    let ma = container.map(&a, p.dma[0].0, DmaAccess::DeviceReads)?;
    let mb = container.map(&b, p.dma[1].0, DmaAccess::DeviceWrites)?;
    if let Err(e) = container.map(&b, p.msi_banks[0], DmaAccess::ReadWrite) {
        println!("   a DMA mapping over a bank's window: {e}");
    }
    let mut runs: Vec<(u64, u64, typed_vfio::WindowHolder)> = Vec::new();
    for (w, holder) in container.windows_in_use() {
        match runs.last_mut() {
            Some((_, last, h)) if *h == holder && *last + 1 == w => *last = w,
            _ => runs.push((w, w, holder)),
        }
    }
    for (first, last, holder) in runs {
        println!("   windows {first}..={last}: {holder}");
    }
    let message = b"through a PAMU window and back";
    a.buffer().write(0, message)?;
    edu_dma(&bar0, ma.iova(), 0x4_0000, message.len() as u32, false);
    edu_dma(
        &bar0,
        0x4_0000,
        mb.iova() + 0x100,
        message.len() as u32,
        true,
    );
    let mut back = vec![0u8; message.len()];
    b.buffer().read(0x100, &mut back)?;
    println!("   device copied: {:?}", String::from_utf8_lossy(&back));
    if back != message {
        return Err("the DMA round trip changed the bytes".into());
    }

    step(
        8,
        "Tear down: the guards unmap; only then may the geometry change.",
    );
    dev.disable_irq(PciIrq::Msi as u32)?;
    drop((ma, mb, mapped));
    println!(
        "   domain enabled after the last unmap: {}",
        sim.pamu_enabled()
    );
    let container = container.set_windows(p.windows / 2)?;
    println!("   windows reconfigured to {}", container.window_count()?);
    drop(dev);
    Ok(())
}

#[allow(dead_code)] // also included by the tour, which has its own main
fn main() -> Result<(), Box<dyn Error>> {
    let mode = match std::env::args().nth(1).as_deref() {
        Some("strict") => PamuMode::Strict,
        _ => PamuMode::Sdk,
    };
    println!("typed-vfio: the PAMU (type2) IOMMU on a simulated {mode:?} kernel");
    walkthrough(mode)?;
    println!("\nDone.");
    Ok(())
}
