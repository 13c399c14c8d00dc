//! A user-space NVMe driver on typed-vfio (the driver is `nvme/driver.rs`).
//!
//!     cargo run --example nvme                 # on the simulated kernel's NVMe controller
//!     cargo run --example nvme -- 0000:02:00.0 # on a real NVMe controller bound to vfio-pci (type1v2)
//!
//! It maps one DMA arena at an IOVA from the IOMMU's usable ranges, brings
//! the controller up with polled completion, identifies it, writes a
//! pattern and reads it back (one command, then a queue depth of 8), then
//! again with MSI-X completion across a VFIO device reset, and shuts the
//! controller down. The real run overwrites the device's first 64 KiB.

use std::error::Error;

use typed_vfio::iova::IovaAllocator;
use typed_vfio::sim::{SimDevice, SimGroup, Simulator};
use typed_vfio::{Container, Device, DmaAccess, DmaBuffer, Group, Type1v2, Unset};

#[path = "nvme/driver.rs"]
#[allow(dead_code)]
mod driver;

use driver::{Arena, Completion, Config, Controller, NvmeError};

/// The pattern block `lba` holds: every byte derived from the LBA and its
/// offset, so a block read from elsewhere does not pass.
fn pattern(lba: u64, out: &mut [u8]) {
    for (i, b) in out.iter_mut().enumerate() {
        *b = (lba as u8).wrapping_mul(31) ^ (i as u8).wrapping_add((lba >> 8) as u8);
    }
}

fn run(device: &Device, arena: Arena<'_>, completion: Completion) -> Result<(), NvmeError> {
    let config = Config {
        completion,
        ..Config::default()
    };
    let mut c = Controller::new(device, arena, config)?;
    println!(
        "   controller {:04x} '{}' serial '{}' firmware '{}', max transfer {} bytes",
        c.controller.vid,
        c.controller.model,
        c.controller.serial,
        c.controller.firmware,
        c.max_transfer()
    );
    println!(
        "   namespace {}: {} blocks of {} bytes",
        c.namespace.nsid, c.namespace.blocks, c.namespace.block_size
    );
    let bs = c.namespace.block_size;
    let per = 4096 / bs;
    let mut block = vec![0u8; 4096];
    let mut back = vec![0u8; 4096];
    for i in 0..16u64 {
        let lba = i * per as u64;
        pattern(lba, &mut block);
        c.write(lba, &block)?;
    }
    for i in 0..16u64 {
        let lba = i * per as u64;
        pattern(lba, &mut block);
        c.read(lba, &mut back)?;
        assert_eq!(block, back, "block {lba} read back differs");
    }
    println!("   wrote 16 x 4 KiB, read them back: equal ({completion:?})");

    // Eight reads in flight on queue 0, then reaped as they complete.
    for slot in 0..8u16 {
        c.submit_io(0, slot, false, u64::from(slot) * per as u64, 4096)?;
    }
    let mut done = 0;
    while done < 8 {
        done += c.wait(0, |_| {})?;
    }
    for slot in 0..8u16 {
        c.slot_read(0, slot, &mut back)?;
        pattern(u64::from(slot) * per as u64, &mut block);
        assert_eq!(block, back, "slot {slot} differs");
    }
    println!("   8 reads in flight: all equal");

    match c.read(c.namespace.blocks, &mut back) {
        Err(NvmeError::LbaOutOfRange { .. }) => println!("   a read past the end: LbaOutOfRange"),
        other => panic!("a read past the end gave {other:?}"),
    }
    let mut big = vec![0u8; c.max_transfer() + bs];
    match c.read(0, &mut big) {
        Err(NvmeError::TransferTooLarge { .. }) => {
            println!("   a read too large: TransferTooLarge")
        }
        other => panic!("a read too large gave {other:?}"),
    }

    c.reset()?;
    c.read(0, &mut back)?;
    pattern(0, &mut block);
    assert_eq!(block, back);
    println!("   after VFIO_DEVICE_RESET and bring-up: block 0 reads the same");
    c.shutdown()?;
    println!("   shut down: CC.SHN, then CC.EN = 0");
    Ok(())
}

fn drive(container: &Container<Type1v2>, address: &str) -> Result<(), Box<dyn Error>> {
    let device = container.open_device(address)?;
    let bytes = Config::default().arena_bytes();
    let buffer = DmaBuffer::new(bytes)?;
    let mut iovas = IovaAllocator::for_container(&container.iommu_info()?)?;
    // IOVA 0 stays unused: a zeroed descriptor holds 0, and controllers
    // (QEMU's) refuse an admin queue there.
    let guard = iovas.alloc(1 << 21, 1 << 21)?;
    let block = iovas.alloc(buffer.len() as u64, 1 << 21)?;
    let mapping = container.map(&buffer, block.iova(), DmaAccess::ReadWrite)?;
    println!(
        "1. DMA arena: {} KiB mapped at IOVA {:#x}",
        buffer.len() / 1024,
        mapping.iova()
    );
    println!("2. Polled completion");
    run(
        &device,
        Arena::mapped(&buffer, mapping.iova()),
        Completion::Polled,
    )?;
    println!("3. MSI-X completion (one eventfd per I/O queue)");
    run(
        &device,
        Arena::mapped(&buffer, mapping.iova()),
        Completion::Msix,
    )?;
    mapping.unmap()?;
    iovas.release(block)?;
    iovas.release(guard)?;
    Ok(())
}

fn main() -> Result<(), Box<dyn Error>> {
    match std::env::args().nth(1) {
        Some(address) => {
            let container: Container<Unset> = Container::open()?;
            let group = Group::for_pci_device(&address)?;
            let container = container.attach(group)?.set_iommu::<Type1v2>()?;
            drive(&container, &address)
        }
        None => {
            let address = "0000:02:00.0";
            println!("(the simulated kernel: an NVMe controller at {address})");
            let sim = Simulator::builder()
                .group(SimGroup::new(1).device(SimDevice::nvme(address)))
                .build()?;
            let container = sim
                .open_container()?
                .attach(sim.open_group(1)?)?
                .set_iommu::<Type1v2>()?;
            drive(&container, address)
        }
    }
}
