//! Dirty-page tracking on the simulator: type1's `VFIO_IOMMU_DIRTY_PAGES`
//! (every page of a mapping an IOMMU-backed device reaches counts as dirty,
//! as the kernel reports) and a device's own DMA logging (the migratable
//! edu logs exactly the pages its DMA wrote). The guest suite runs the same
//! on the real kernel.

use typed_vfio::sim::{SimDevice, SimGroup, Simulator};
use typed_vfio::{Container, Device, DeviceError, DmaAccess, DmaBuffer, DmaError, Errno, Type1v2};

const PAGE: u64 = 4096;
const IOVA: u64 = 0x10_0000;

fn sim() -> Simulator {
    Simulator::builder()
        .group(SimGroup::new(1).device(SimDevice::edu("0000:01:00.0").migratable(true, true)))
        .build()
        .unwrap()
}

/// edu copies `len` bytes of its buffer to `iova`.
fn device_writes(d: &Device, iova: u64, len: u32) {
    let bar0 = d.region(0).unwrap();
    for (reg, value) in [
        (0x80, 0x4_0000u64),
        (0x88, iova),
        (0x90, u64::from(len)),
        (0x98, 3),
    ] {
        bar0.write_u64(reg, value).unwrap();
    }
}

/// A type1v2 container with the simulator's first edu open.
fn edu(s: &Simulator) -> (Container<Type1v2>, Device) {
    let c = s
        .open_container()
        .unwrap()
        .attach(s.open_group(1).unwrap())
        .unwrap();
    let c = c.set_iommu::<Type1v2>().unwrap();
    let d = c.open_device("0000:01:00.0").unwrap();
    (c, d)
}

fn ioctl_errno<T: std::fmt::Debug>(r: Result<T, DmaError>) -> Errno {
    match r {
        Err(DmaError::Ioctl { errno, .. }) => errno,
        other => panic!("expected an ioctl error, got {other:?}"),
    }
}

#[test]
fn type1v2_reports_every_mapped_page_while_tracking() {
    let s = sim();
    let (c, d) = edu(&s);
    d.set_bus_master(true).unwrap();
    let (a, b) = (
        DmaBuffer::new(4 * PAGE as usize).unwrap(),
        DmaBuffer::new(PAGE as usize).unwrap(),
    );
    let ma = c.map(&a, IOVA, DmaAccess::ReadWrite).unwrap();
    let mb = c.map(&b, IOVA + 0x10_0000, DmaAccess::ReadWrite).unwrap();
    // Not tracking yet.
    assert_eq!(ioctl_errno(c.dirty_bitmap(IOVA, 4 * PAGE)), Errno::EINVAL);
    c.start_dirty_tracking().unwrap();
    device_writes(&d, IOVA + 2 * PAGE, 16);
    let map = c.dirty_bitmap(IOVA, 4 * PAGE).unwrap();
    assert_eq!(map.page_size(), PAGE);
    assert_eq!(map.pages(), 4);
    assert!(map.is_dirty(IOVA + 2 * PAGE), "the page the device wrote");
    assert_eq!(
        map.count(),
        4,
        "type1 cannot tell: every mapped page is dirty"
    );
    // A range over both mappings and the hole between them: the hole is
    // clean.
    let wide = c.dirty_bitmap(IOVA, 0x10_0000 + PAGE).unwrap();
    assert_eq!(wide.count(), 5);
    assert!(!wide.is_dirty(IOVA + 4 * PAGE));
    assert!(wide.is_dirty(IOVA + 0x10_0000));
    // A range that cuts a mapping is refused.
    assert_eq!(ioctl_errno(c.dirty_bitmap(IOVA, 2 * PAGE)), Errno::EINVAL);
    assert_eq!(
        ioctl_errno(c.dirty_bitmap(IOVA + PAGE, 3 * PAGE)),
        Errno::EINVAL
    );
    // Unmapping with the bitmap: the guard's pages, then gone.
    let back = mb.unmap_with_dirty_bitmap().unwrap();
    assert_eq!(
        (back.iova(), back.pages(), back.count()),
        (IOVA + 0x10_0000, 1, 1)
    );
    assert!(!b.is_mapped());
    c.stop_dirty_tracking().unwrap();
    assert_eq!(ioctl_errno(c.dirty_bitmap(IOVA, 4 * PAGE)), Errno::EINVAL);
    // Not tracking: the unmap with a bitmap is refused and the guard comes
    // back, still mapped.
    let err = ma.unmap_with_dirty_bitmap().unwrap_err();
    assert!(matches!(
        err.error,
        DmaError::Ioctl {
            errno: Errno::EINVAL,
            ..
        }
    ));
    assert!(a.is_mapped());
    err.mapping.unmap().unwrap();
    assert!(!a.is_mapped());
}

#[test]
fn device_dma_logging_reports_the_pages_the_device_wrote() {
    let s = sim();
    let (c, d) = edu(&s);
    d.set_bus_master(true).unwrap();
    let a = DmaBuffer::new(8 * PAGE as usize).unwrap();
    let _m = c.map(&a, IOVA, DmaAccess::ReadWrite).unwrap();
    let log = d.start_dma_logging(PAGE, &[(IOVA, 4 * PAGE)]).unwrap();
    assert_eq!(log.page_size(), PAGE);
    device_writes(&d, IOVA + 2 * PAGE + 8, 16);
    // Outside the logged ranges: not logged.
    device_writes(&d, IOVA + 6 * PAGE, 16);
    let map = log.report(IOVA, 8 * PAGE).unwrap();
    assert_eq!(map.dirty_iovas().collect::<Vec<_>>(), [IOVA + 2 * PAGE]);
    // Reported pages are forgotten.
    assert_eq!(log.report(IOVA, 8 * PAGE).unwrap().count(), 0);
    // A write across a page boundary dirties both pages.
    device_writes(&d, IOVA + PAGE - 8, 16);
    let map = log.report(IOVA, 4 * PAGE).unwrap();
    assert_eq!(map.dirty_iovas().collect::<Vec<_>>(), [IOVA, IOVA + PAGE]);
    log.stop().unwrap();
    // Overlapping ranges, or none, are refused.
    assert!(matches!(
        d.start_dma_logging(PAGE, &[(IOVA, 2 * PAGE), (IOVA + PAGE, PAGE)]),
        Err(DeviceError::Ioctl {
            errno: Errno::EINVAL,
            ..
        })
    ));
    assert!(d.start_dma_logging(PAGE, &[]).is_err());
}

#[test]
fn a_device_without_logging_says_so() {
    let s = Simulator::new();
    let (_c, d) = edu(&s);
    assert!(matches!(
        d.start_dma_logging(PAGE, &[(IOVA, PAGE)]),
        Err(DeviceError::NotSupported { .. })
    ));
}
