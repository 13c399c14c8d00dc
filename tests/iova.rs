//! The IOVA allocator (`typed_vfio::iova`) over the simulator's IOMMUs: a
//! type1v2 container's usable ranges (the x86 MSI window left out) and an
//! IOAS's, blocks mapped where it hands them out.

use typed_vfio::iova::{IovaAllocator, IovaError};
use typed_vfio::sim::Simulator;
use typed_vfio::{DmaAccess, DmaBuffer, Type1v2};

#[test]
fn container_blocks_map_and_skip_the_msi_window() {
    let sim = Simulator::new();
    let c = sim
        .open_container()
        .unwrap()
        .attach(sim.open_group(1).unwrap())
        .unwrap();
    let c = c.set_iommu::<Type1v2>().unwrap();
    let info = c.iommu_info().unwrap();
    let mut iovas = IovaAllocator::for_container(&info).unwrap();
    assert_eq!(iovas.page_size(), 4096);
    let buffers: Vec<DmaBuffer> = (0..4).map(|_| DmaBuffer::new(0x2000).unwrap()).collect();
    let blocks: Vec<_> = buffers
        .iter()
        .map(|_| iovas.alloc(0x2000, 0x1000).unwrap())
        .collect();
    let maps: Vec<_> = buffers
        .iter()
        .zip(&blocks)
        .map(|(b, blk)| c.map(b, blk.iova(), DmaAccess::ReadWrite).unwrap())
        .collect();
    assert_eq!(maps.len(), 4);
    // A block reaching into the MSI window is never handed out: allocate
    // up to it and past it.
    let big = iovas.alloc(0xfee0_0000 - 0x8000, 0x1000).unwrap();
    assert_eq!(big.iova(), 0x8000);
    let next = iovas.alloc(0x1000, 0x1000).unwrap();
    assert!(next.iova() >= 0xfef0_0000, "{:#x}", next.iova());
    iovas.release(big).unwrap();
    iovas.release(next).unwrap();
    drop(maps);
    for b in blocks {
        iovas.release(b).unwrap();
    }
}

#[test]
fn ioas_blocks_map_in_its_ranges() {
    let sim = Simulator::new();
    let fd = sim.open_iommufd().unwrap();
    let ioas = fd.alloc_ioas().unwrap();
    let ranges = ioas.iova_ranges().unwrap();
    let mut iovas = IovaAllocator::for_ioas(&ranges).unwrap();
    assert_eq!(iovas.page_size(), ranges.alignment.max(4096));
    let buf = DmaBuffer::new(0x4000).unwrap();
    let blk = iovas.alloc(0x4000, 0x10_0000).unwrap();
    assert_eq!(blk.iova() % 0x10_0000, 0);
    let _m = ioas.map(&buf, blk.iova(), DmaAccess::ReadWrite).unwrap();
    let other = iovas.alloc(0x1000, 0x1000).unwrap();
    assert!(other.iova() + other.size() <= blk.iova() || other.iova() >= blk.iova() + blk.size());
    assert!(matches!(iovas.release(other), Ok(())));
    assert!(matches!(
        iovas.alloc(u64::MAX - 0xfff, 0x1000),
        Err(IovaError::Exhausted { .. })
    ));
}
