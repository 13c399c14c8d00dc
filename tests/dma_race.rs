//! Issue 11, item 1: a simulated device's DMA racing the buffer owner's
//! reads is no data race. Thread A owns a `DmaBuffer` and its mapping and
//! reads it; thread B holds only `&Device` and makes edu copy its buffer into
//! RAM over and over (the simulated DMA runs on thread B). Every access to
//! DMA memory, the crate's and the simulated device's, is a byte-sized
//! atomic access, so neither Miri nor ThreadSanitizer may report a race:
//! `.ci/run` runs this test under both.

use typed_vfio::sim::Simulator;
use typed_vfio::{DmaAccess, DmaBuffer, Type1v2};

const BDF: &str = "0000:01:00.0";
const IOVA: u64 = 0x10_0000;
/// edu's device-side buffer.
const EDU_BUF: u32 = 0x4_0000;
const LEN: usize = 256;

/// Programs one edu DMA: `count` bytes from `src` to `dst`, `cmd` 1 (RAM →
/// device) or 3 (device → RAM). The simulator carries it out at once, on the
/// calling thread.
fn edu_dma(bar0: &typed_vfio::Region<'_>, src: u32, dst: u32, count: u32, cmd: u32) {
    for (reg, value) in [(0x80, src), (0x88, dst), (0x90, count), (0x98, cmd)] {
        bar0.write_u32(reg, value).unwrap();
    }
}

#[test]
fn simulated_dma_on_another_thread_races_the_owners_reads_without_a_data_race() {
    let sim = Simulator::new();
    let container = sim
        .open_container()
        .unwrap()
        .attach(sim.open_group(1).unwrap())
        .unwrap()
        .set_iommu::<Type1v2>()
        .unwrap();
    let device = container.open_device(BDF).unwrap();
    device.set_bus_master(true).unwrap();
    let buffer = DmaBuffer::new(4096).unwrap();
    let mapping = container.map(&buffer, IOVA, DmaAccess::ReadWrite).unwrap();
    // Load edu's buffer with a pattern from RAM (0x800..), then let thread B
    // copy it back to RAM at 0.. while thread A reads there.
    let pattern: Vec<u8> = (0..LEN).map(|i| (i * 7 + 1) as u8).collect();
    buffer.write(0x800, &pattern).unwrap();
    let bar0 = device.region(0).unwrap();
    edu_dma(&bar0, (IOVA + 0x800) as u32, EDU_BUF, LEN as u32, 1);
    let rounds = if cfg!(miri) { 4 } else { 2000 };
    let device = &device;
    let reads = std::thread::scope(|s| {
        let writer = s.spawn(move || {
            let bar0 = device.region(0).unwrap();
            for _ in 0..rounds {
                edu_dma(&bar0, EDU_BUF, IOVA as u32, LEN as u32, 3);
            }
        });
        // Thread A: reads while B's DMA writes the same bytes.
        let mut reads = 0u64;
        let mut last = [0u8; 4];
        while !writer.is_finished() || reads == 0 {
            let v = buffer.read_u32(0).unwrap();
            last = v.to_ne_bytes();
            reads += 1;
        }
        writer.join().unwrap();
        // Every byte seen is a byte the device or the zeroed buffer held.
        for (i, b) in last.iter().enumerate() {
            assert!(*b == 0 || *b == pattern[i], "byte {i}: {b:#x}");
        }
        reads
    });
    assert!(reads > 0);
    let mut back = vec![0u8; LEN];
    buffer.read(0, &mut back).unwrap();
    assert_eq!(back, pattern, "the device's last copy landed");
    drop(mapping);
}
