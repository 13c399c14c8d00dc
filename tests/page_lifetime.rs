//! Item 6 of issue 11, the half that watches the process's page tables:
//! pages of a mapping whose unmap failed outlive their buffer, and are freed
//! once the kernel confirms the mapping gone. Alone in its test binary (its
//! own process): that a freed page is unmapped can only be asserted where no
//! other test's allocation can land on it in between.

use typed_vfio::sim::Simulator;
use typed_vfio::{Container, DmaAccess, DmaBuffer, Errno, Type1v2};

const UNMAP: &str = "VFIO_IOMMU_UNMAP_DMA";

fn type1v2(sim: &Simulator) -> Container<Type1v2> {
    sim.open_container()
        .unwrap()
        .attach(sim.open_group(1).unwrap())
        .unwrap()
        .set_iommu::<Type1v2>()
        .unwrap()
}

/// Whether `addr` is a mapped page of this process (`mincore` answers
/// `ENOMEM` for an unmapped one). Not under Miri (no `mincore`).
#[cfg(not(miri))]
fn page_is_mapped(addr: usize) -> bool {
    let mut vec = [0u8; 1];
    // SAFETY: mincore only inspects this process's page tables for one page
    // at `addr` (never dereferences it) and writes one byte into `vec`.
    let r = unsafe { libc::mincore(addr as *mut libc::c_void, 4096, vec.as_mut_ptr()) };
    r == 0
}

#[test]
fn item6_orphaned_pages_outlive_their_buffer_until_the_last_group_leaves() {
    let sim = Simulator::new();
    let c = type1v2(&sim);
    let buf = DmaBuffer::new(4096).unwrap();
    let addr = buf.addr();
    let m = c.map(&buf, 0x10_0000, DmaAccess::ReadWrite).unwrap();
    sim.inject_fault(UNMAP, 1, Errno::EIO).unwrap();
    drop(m);
    drop(buf);
    // Still mapped in the IOMMU: the pages must not be returned.
    #[cfg(not(miri))]
    assert!(page_is_mapped(addr), "orphaned pages were freed");
    assert_eq!(sim.mappings().len(), 1);
    // The container's teardown detaches its group: the kernel drops the
    // mapping, and only then are the pages freed.
    drop(c);
    assert!(sim.mappings().is_empty());
    #[cfg(not(miri))]
    assert!(!page_is_mapped(addr), "confirmed-gone pages were leaked");
    let _ = addr;
}
