//! The user-space NVMe driver (examples/nvme/driver.rs) against a hostile
//! simulated controller: the input is the controller's script
//! (`SimDevice::hostile`), which corrupts CAP, the Identify data and every
//! completion entry it posts. The driver brings the controller up, writes,
//! reads back and shuts down. No panic, no hang (every wait is bounded),
//! and a bring-up that succeeds describes a controller within the bounds
//! the driver checks: its namespace is non-empty, its block size 512 to
//! 4096, its largest transfer at least one block and at most a slot.
#![no_main]

use libfuzzer_sys::fuzz_target;
use typed_vfio::iova::IovaAllocator;
use typed_vfio::sim::{SimDevice, SimGroup, Simulator};
use typed_vfio::{DmaAccess, DmaBuffer, Type1v2};

#[path = "../../examples/nvme/driver.rs"]
#[allow(dead_code)]
mod driver;

use driver::{Arena, Completion, Config, Controller};

const ADDR: &str = "0000:02:00.0";

fuzz_target!(|script: &[u8]| {
    // The script's first byte picks the completion mode; the rest drive
    // the controller.
    let (mode, script) = script.split_first().unwrap_or((&0, &[]));
    let completion = if mode & 1 == 0 {
        Completion::Polled
    } else {
        Completion::Msix
    };
    let config = Config {
        completion,
        depth: 4,
        command_timeout: std::time::Duration::from_millis(1),
        ..Config::default()
    };
    let sim = Simulator::builder()
        .group(SimGroup::new(1).device(SimDevice::nvme(ADDR).hostile(script.to_vec())))
        .build()
        .unwrap();
    let container = sim
        .open_container()
        .unwrap()
        .attach(sim.open_group(1).unwrap())
        .unwrap()
        .set_iommu::<Type1v2>()
        .unwrap();
    let device = container.open_device(ADDR).unwrap();
    let buffer = DmaBuffer::new(config.arena_bytes()).unwrap();
    let mut iovas = IovaAllocator::for_container(&container.iommu_info().unwrap()).unwrap();
    let _guard = iovas.alloc(1 << 21, 1 << 21).unwrap();
    let block = iovas.alloc(buffer.len() as u64, 1 << 21).unwrap();
    let mapping = container
        .map(&buffer, block.iova(), DmaAccess::ReadWrite)
        .unwrap();
    let Ok(mut c) = Controller::new(&device, Arena::mapped(&buffer, mapping.iova()), config) else {
        return;
    };
    let ns = c.namespace;
    assert!(ns.blocks > 0);
    assert!((512..=4096).contains(&ns.block_size) && ns.block_size.is_power_of_two());
    assert!(c.max_transfer() >= ns.block_size && c.max_transfer() <= config.slot_bytes);
    let data: Vec<u8> = (0..ns.block_size).map(|i| i as u8 ^ 0x5a).collect();
    let mut back = vec![0u8; ns.block_size];
    let lba = ns.blocks - 1;
    let _ = c.write(lba, &data).and_then(|()| c.read(lba, &mut back));
    let _ = c.read(ns.blocks, &mut back);
    let _ = c.shutdown();
});
