//! iommufd (`/dev/iommu`) and the VFIO device cdev, typed: run in the
//! `custom-iommufd` configuration (`TVFIO_IOMMU=iommufd`), skipped elsewhere.

use super::*;
use typed_vfio::iommufd::{BoundDevice, CdevDevice, Ioas, Iommufd, IommufdError};
use typed_vfio::{Errno, sys};

fn bound(bdf: &str, fd: &Iommufd) -> BoundDevice {
    CdevDevice::open_pci(bdf)
        .unwrap_or_else(|e| panic!("open cdev of {bdf}: {e}"))
        .bind(fd)
        .unwrap_or_else(|e| panic!("bind {bdf}: {e}"))
}

fn map_errno(r: Result<impl std::fmt::Debug, DmaError>) -> Errno {
    match r {
        Err(DmaError::Ioctl { errno, .. }) => errno,
        other => panic!("expected an ioctl error, got {other:?}"),
    }
}

fn attached_first(fd: &Iommufd) -> (Ioas<'_>, BoundDevice) {
    let ioas = fd.alloc_ioas().expect("IOMMU_IOAS_ALLOC");
    let dev = bound(&rig::devices()[0], fd);
    dev.attach(&ioas).expect("attach");
    (ioas, dev)
}

#[test]
#[ignore = "needs a VFIO guest: run tests/vm/run"]
fn iommufd_bind_attach_dma_both_ways_then_blocked_after_unmap() {
    let fd = Iommufd::open().expect("open /dev/iommu");
    let ioas = fd.alloc_ioas().expect("IOMMU_IOAS_ALLOC");
    let dev = bound(&rig::devices()[0], &fd);
    assert_ne!(dev.devid(), 0, "the kernel gives a device id");
    let pt = dev.attach(&ioas).expect("attach");
    // The kernel answers with the page table it attached: its own
    // automatic HWPT for the IOAS, another object.
    assert_ne!(pt, ioas.id(), "attach answered the IOAS id itself");
    assert_eq!(dev.region(0).unwrap().read_u32(IDENT).unwrap(), 0x010000ed);
    let ranges = ioas.iova_ranges().expect("IOVA_RANGES");
    println!("iommufd IOAS ranges {ranges:x?}");
    assert!(ranges.ranges.iter().any(|r| r.contains(0x10_0000, 1 << 20)));
    let msi = rig::msi_window(rig::first_group_number()).0;
    assert!(
        ranges.ranges.iter().all(|r| !r.contains(msi, 0x1000)),
        "MSI window usable"
    );
    assert_eq!(ranges.alignment, 0x1000);
    set_bus_master(&dev);
    let buf = DmaBuffer::new(4096).unwrap();
    let data = pattern(1024, 11);
    buf.write(0, &data).unwrap();
    let map = ioas.map(&buf, 0x20_0000, DmaAccess::ReadWrite).unwrap();
    edu_dma(&dev, map.iova(), EDU_BUF, 1024, false);
    edu_dma(&dev, EDU_BUF, map.iova() + 2048, 1024, true);
    let mut back = vec![0u8; 1024];
    buf.read(2048, &mut back).unwrap();
    assert_eq!(
        back, data,
        "bytes did not survive RAM -> edu -> RAM through the IOAS"
    );
    map.unmap().expect("IOAS_UNMAP");
    assert!(!buf.is_mapped());
    // Unmapped: the device's write to that IOVA reaches nothing.
    buf.fill(0xAA);
    edu_dma(&dev, EDU_BUF, 0x20_0000, 512, true);
    let mut after = vec![0u8; 512];
    buf.read(0, &mut after).unwrap();
    assert!(
        after.iter().all(|&b| b == 0xAA),
        "DMA reached an unmapped IOVA"
    );
}

#[test]
#[ignore = "needs a VFIO guest: run tests/vm/run"]
fn iommufd_kernel_chosen_iova_is_usable_and_inside_the_ranges() {
    let fd = Iommufd::open().unwrap();
    let (ioas, dev) = attached_first(&fd);
    set_bus_master(&dev);
    let buf = DmaBuffer::new(8192).unwrap();
    buf.write(0, &pattern(256, 3)).unwrap();
    let map = ioas.map_anywhere(&buf, DmaAccess::ReadWrite).unwrap();
    let ranges = ioas.iova_ranges().unwrap();
    assert!(
        ranges.ranges.iter().any(|r| r.contains(map.iova(), 8192)),
        "kernel-chosen IOVA {:#x} outside {ranges:x?}",
        map.iova()
    );
    assert_eq!(map.iova() % ranges.alignment, 0);
    // edu's DMA mask is 28 bits: only an IOVA below it can be tested.
    if map.iova() + 8192 <= 1 << 28 {
        edu_dma(&dev, map.iova(), EDU_BUF, 256, false);
        edu_dma(&dev, EDU_BUF, map.iova() + 4096, 256, true);
        let mut back = vec![0u8; 256];
        buf.read(4096, &mut back).unwrap();
        assert_eq!(back, pattern(256, 3));
    } else {
        println!(
            "kernel-chosen IOVA {:#x} is past edu's 28-bit mask: DMA not tried",
            map.iova()
        );
    }
}

#[test]
#[ignore = "needs a VFIO guest: run tests/vm/run"]
fn iommufd_msi_intx_and_reset_work_on_the_bound_cdev() {
    let fd = Iommufd::open().unwrap();
    let (_ioas, dev) = attached_first(&fd);
    set_bus_master(&dev);
    let e = eventfd();
    dev.set_irq_eventfd(PciIrq::Msi as u32, 0, e.as_fd())
        .unwrap();
    let bar0 = dev.region(0).unwrap();
    bar0.write_u32(IRQ_RAISE, 0x10).unwrap();
    assert!(wait(&e, 2000).is_some(), "no MSI through the cdev");
    bar0.write_u32(IRQ_ACK, 0x10).unwrap();
    dev.disable_irq(PciIrq::Msi as u32).unwrap();
    let intx = eventfd();
    dev.set_irq_eventfd(PciIrq::Intx as u32, 0, intx.as_fd())
        .unwrap();
    dev.trigger_irq(PciIrq::Intx as u32, 0, 1).unwrap();
    assert!(
        wait(&intx, 2000).is_some(),
        "no INTx loopback through the cdev"
    );
    dev.disable_irq(PciIrq::Intx as u32).unwrap();
    dev.reset().expect("VFIO_DEVICE_RESET on the cdev");
    assert_eq!(bar0.read_u32(IDENT).unwrap(), 0x010000ed);
}

#[test]
#[ignore = "needs a VFIO guest: run tests/vm/run"]
fn iommufd_two_devices_share_one_ioas_and_one_moves_to_a_second() {
    let fd = Iommufd::open().unwrap();
    let devices = rig::devices();
    assert!(devices.len() >= 2, "two edu devices");
    let ioas = fd.alloc_ioas().unwrap();
    let a = bound(&devices[0], &fd);
    let b = bound(&devices[1], &fd);
    assert_ne!(a.devid(), b.devid());
    a.attach(&ioas).unwrap();
    b.attach(&ioas).unwrap();
    let buf = DmaBuffer::new(4096).unwrap();
    let map = ioas.map(&buf, 0x30_0000, DmaAccess::ReadWrite).unwrap();
    for (i, dev) in [&a, &b].into_iter().enumerate() {
        set_bus_master(dev);
        let data = pattern(128, 40 + i as u8);
        buf.write(0, &data).unwrap();
        edu_dma(dev, map.iova(), EDU_BUF, 128, false);
        edu_dma(dev, EDU_BUF, map.iova() + 1024, 128, true);
        let mut back = vec![0u8; 128];
        buf.read(1024, &mut back).unwrap();
        assert_eq!(back, data, "device {i}");
    }
    // b moves to a second IOAS (attach replaces), where the first
    // IOAS's mapping does not exist: its DMA there reaches nothing.
    let second = fd.alloc_ioas().unwrap();
    b.attach(&second).unwrap();
    buf.fill(0x55);
    edu_dma(&b, EDU_BUF, map.iova(), 64, true);
    let mut after = vec![0u8; 64];
    buf.read(0, &mut after).unwrap();
    assert!(
        after.iter().all(|&x| x == 0x55),
        "b still reaches the first IOAS"
    );
    b.detach().unwrap();
    drop(map);
}

#[test]
#[ignore = "needs a VFIO guest: run tests/vm/run"]
fn iommufd_hw_info_hwpt_alloc_replace_and_options() {
    use typed_vfio::iommufd::HwInfoData;
    let fd = Iommufd::open().unwrap();
    // Options: the rlimit mode per process by default, settable (as
    // root) only while the iommufd holds no object; huge pages on by
    // default, settable on an empty IOAS.
    assert!(
        !fd.rlimit_per_user().unwrap(),
        "per-process accounting is the default"
    );
    fd.set_rlimit_per_user(true).unwrap();
    assert!(fd.rlimit_per_user().unwrap());
    fd.set_rlimit_per_user(false).unwrap();
    let ioas = fd.alloc_ioas().unwrap();
    match fd.set_rlimit_per_user(true) {
        Err(IommufdError::Ioctl { errno, .. }) => assert_eq!(errno, Errno::EBUSY),
        other => panic!("rlimit mode changed with an IOAS alive: {other:?}"),
    }
    assert!(ioas.huge_pages().unwrap(), "huge pages are the default");
    ioas.set_huge_pages(false).unwrap();
    assert!(!ioas.huge_pages().unwrap());
    ioas.set_huge_pages(true).unwrap();
    let dev = bound(&rig::devices()[0], &fd);
    // QEMU's intel-iommu: a VT-d.
    let info = fd.hw_info(&dev).expect("IOMMU_GET_HW_INFO");
    println!("hw info {info:x?}");
    match info.data {
        HwInfoData::IntelVtd {
            cap_reg, ecap_reg, ..
        } => {
            assert_ne!(cap_reg, 0, "VT-d capability register");
            assert_ne!(ecap_reg, 0, "VT-d extended capability register");
        }
        other => panic!("expected VT-d data, got {other:x?}"),
    }
    // A paging HWPT on the IOAS, attached: the kernel answers its id,
    // and DMA goes through the IOAS's mappings.
    let hwpt = fd.alloc_hwpt(&dev, &ioas, 0).expect("IOMMU_HWPT_ALLOC");
    assert_eq!(dev.attach_hwpt(&hwpt).unwrap(), hwpt.id());
    set_bus_master(&dev);
    let buf = DmaBuffer::new(4096).unwrap();
    buf.write(0, &pattern(64, 21)).unwrap();
    let map = ioas.map(&buf, 0x60_0000, DmaAccess::ReadWrite).unwrap();
    edu_dma(&dev, map.iova(), EDU_BUF, 64, false);
    edu_dma(&dev, EDU_BUF, map.iova() + 512, 64, true);
    let mut back = vec![0u8; 64];
    buf.read(512, &mut back).unwrap();
    assert_eq!(back, pattern(64, 21), "DMA through the HWPT");
    // Replace with the IOAS itself (its automatic HWPT): another id.
    let auto = dev.attach(&ioas).unwrap();
    assert_ne!(auto, hwpt.id());
    // Dirty tracking exactly where the hardware reports it.
    let dirty = fd.alloc_hwpt(&dev, &ioas, sys::IOMMU_HWPT_ALLOC_DIRTY_TRACKING);
    match (
        info.capabilities & u64::from(sys::IOMMU_HW_CAP_DIRTY_TRACKING) != 0,
        dirty,
    ) {
        (true, Ok(_)) => {}
        (false, Err(IommufdError::Ioctl { errno, .. })) => assert_eq!(errno, Errno::EOPNOTSUPP),
        (cap, other) => panic!("dirty tracking capability {cap}, alloc {other:?}"),
    }
    // A flag the crate does not know is refused before the call.
    assert!(matches!(
        fd.alloc_hwpt(&dev, &ioas, 1 << 31),
        Err(IommufdError::Ioctl {
            errno: Errno::EOPNOTSUPP,
            ..
        })
    ));
    drop(map);
    dev.detach().unwrap();
}

#[test]
#[ignore = "needs a VFIO guest: run tests/vm/run"]
fn iommufd_errors_carry_the_kernels_errno() {
    let fd = Iommufd::open().unwrap();
    let (_, group_id) = first();
    // The group cannot be opened while its device's cdev is bound ...
    let (ioas, dev) = attached_first(&fd);
    match Group::open_id(group_id) {
        Err(GroupError::Open { errno, .. }) => assert_eq!(errno, Errno::EBUSY),
        other => panic!("group open while the cdev is bound: {other:?}"),
    }
    // Overlapping mappings: EEXIST.
    let buf = DmaBuffer::new(8192).unwrap();
    let map = ioas.map(&buf, 0x40_0000, DmaAccess::ReadWrite).unwrap();
    let other = DmaBuffer::new(4096).unwrap();
    assert_eq!(
        map_errno(ioas.map(&other, 0x40_1000, DmaAccess::ReadWrite)),
        Errno::EEXIST
    );
    // Unmapping part of a mapping: ENOENT (iommufd never splits one).
    assert_eq!(map_errno(ioas.unmap_raw(0x40_0000, 4096)), Errno::ENOENT);
    // Mapping into the reserved MSI window: EINVAL ...
    let msi = rig::msi_window(rig::first_group_number()).0;
    let e = map_errno(ioas.map(&other, msi, DmaAccess::ReadWrite));
    println!("IOAS_MAP in the MSI window: {e}");
    assert_eq!(e, Errno::EINVAL);
    // ... and a range that wraps: EOVERFLOW.
    let top = u64::MAX - 4095;
    assert_eq!(
        map_errno(ioas.map(&buf, top, DmaAccess::ReadWrite)),
        Errno::EOVERFLOW
    );
    // Destroying an IOAS a device is attached to: EBUSY, handed back.
    drop(map);
    let ioas = match ioas.destroy() {
        Err(e) => {
            assert_eq!(
                e.error,
                IommufdError::Ioctl {
                    ioctl: "IOMMU_DESTROY",
                    errno: Errno::EBUSY
                }
            );
            e.ioas
        }
        Ok(()) => panic!("an IOAS with a device attached was destroyed"),
    };
    // Attaching to an IOAS whose mapping overlaps the device's reserved
    // MSI window: EADDRINUSE.
    let clash = fd.alloc_ioas().unwrap();
    let held = clash
        .map(&other, msi, DmaAccess::ReadWrite)
        .expect("no reserved region yet");
    match dev.attach(&clash) {
        Err(IommufdError::Ioctl { errno, .. }) => assert_eq!(errno, Errno::EADDRINUSE),
        other => panic!("attach over a reserved region: {other:?}"),
    }
    drop(held);
    dev.detach().unwrap();
    ioas.destroy().expect("destroy once detached");
    drop(dev);
    // Once the cdev is closed the group opens again; and while the group
    // is open, the cdev cannot be bound: EBUSY.
    let group = Group::open_id(group_id).expect("group opens once the cdev is closed");
    match CdevDevice::open_pci(&rig::devices()[0]).map(|c| c.bind(&fd)) {
        Ok(Err(e)) => {
            assert!(e.device.is_some(), "the unbound device is handed back");
            assert_eq!(
                e.error,
                IommufdError::Ioctl {
                    ioctl: "VFIO_DEVICE_BIND_IOMMUFD",
                    errno: Errno::EBUSY
                }
            );
        }
        Ok(Ok(_)) => panic!("bound while the group is open"),
        Err(e) => panic!("the cdev did not open while the group is open: {e}"),
    }
    drop(group);
}
