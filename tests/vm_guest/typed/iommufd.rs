//! iommufd (`/dev/iommu`) and the VFIO device cdev, typed: run in the
//! `custom-iommufd` configuration (`TVFIO_IOMMU=iommufd`), skipped elsewhere.

use super::*;
use typed_vfio::iommufd::{
    BoundDevice, CdevDevice, CdevHotResetInfo, HotResetOwner, Ioas, Iommufd, IommufdError,
};
use typed_vfio::{Errno, IovaRange, sys};

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

/// `data`, from the start of `buf`, to edu through `iova`, and back through
/// `iova + back`: what arrives at `back`.
fn round_trip(dev: &Device, buf: &DmaBuffer, iova: u64, back: usize, data: &[u8]) -> Vec<u8> {
    buf.write(0, data).unwrap();
    edu_dma(dev, iova, EDU_BUF, data.len() as u64, false);
    edu_dma(dev, EDU_BUF, iova + back as u64, data.len() as u64, true);
    let mut out = vec![0u8; data.len()];
    buf.read(back, &mut out).unwrap();
    out
}

/// Whether a device write of `len` bytes to `iova` changes `buf` at
/// `offset` (filled first, so that any write there shows).
fn write_reaches(dev: &Device, buf: &DmaBuffer, iova: u64, offset: usize, len: usize) -> bool {
    buf.fill(0xA5);
    edu_dma(dev, EDU_BUF, iova, len as u64, true);
    let mut after = vec![0u8; len];
    buf.read(offset, &mut after).unwrap();
    after.iter().any(|&b| b != 0xA5)
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
    let map = ioas.map(&buf, 0x20_0000, DmaAccess::ReadWrite).unwrap();
    assert_eq!(
        round_trip(&dev, &buf, map.iova(), 2048, &data),
        data,
        "bytes did not survive RAM -> edu -> RAM through the IOAS"
    );
    map.unmap().expect("IOAS_UNMAP");
    assert!(!buf.is_mapped());
    // Unmapped: the device's write to that IOVA reaches nothing.
    assert!(
        !write_reaches(&dev, &buf, 0x20_0000, 0, 512),
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
        let data = pattern(256, 3);
        assert_eq!(round_trip(&dev, &buf, map.iova(), 4096, &data), data);
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
        assert_eq!(
            round_trip(dev, &buf, map.iova(), 1024, &data),
            data,
            "device {i}"
        );
    }
    // b moves to a second IOAS (attach replaces), where the first
    // IOAS's mapping does not exist: its DMA there reaches nothing.
    let second = fd.alloc_ioas().unwrap();
    b.attach(&second).unwrap();
    assert!(
        !write_reaches(&b, &buf, map.iova(), 0, 64),
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
    // x86: QEMU's intel-iommu, a VT-d. aarch64: QEMU virt's SMMUv3, whose
    // driver reports its ID registers from Linux 6.13 on; before that it
    // has no hw_info operation and the kernel answers type NONE.
    let info = fd.hw_info(&dev).expect("IOMMU_GET_HW_INFO");
    println!("hw info {info:x?}");
    match info.data {
        HwInfoData::IntelVtd {
            cap_reg, ecap_reg, ..
        } if cfg!(target_arch = "x86_64") => {
            assert_ne!(cap_reg, 0, "VT-d capability register");
            assert_ne!(ecap_reg, 0, "VT-d extended capability register");
        }
        HwInfoData::ArmSmmuV3 { idr, .. } if cfg!(target_arch = "aarch64") => {
            // IDR0's S1P or S2P: the SMMU translates at some stage.
            assert_ne!(idr[0] & 0b11, 0, "SMMU_IDR0 names no translation stage");
        }
        HwInfoData::None if cfg!(target_arch = "aarch64") => {
            let version = rig::kernel_version();
            assert!(
                version < (6, 13),
                "no SMMUv3 hw info from Linux {version:?}"
            );
        }
        other => panic!("unexpected hw info for this architecture's IOMMU: {other:x?}"),
    }
    // A paging HWPT on the IOAS, attached: the kernel answers its id,
    // and DMA goes through the IOAS's mappings.
    let hwpt = fd.alloc_hwpt(&dev, &ioas, 0).expect("IOMMU_HWPT_ALLOC");
    assert_eq!(dev.attach_hwpt(&hwpt).unwrap(), hwpt.id());
    set_bus_master(&dev);
    let buf = DmaBuffer::new(4096).unwrap();
    let map = ioas.map(&buf, 0x60_0000, DmaAccess::ReadWrite).unwrap();
    let data = pattern(64, 21);
    assert_eq!(
        round_trip(&dev, &buf, map.iova(), 512, &data),
        data,
        "DMA through the HWPT"
    );
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

/// `(bus, devfn, owner)` of each device a cdev hot reset would reset.
fn owners(info: &CdevHotResetInfo) -> Vec<(u8, u8, HotResetOwner)> {
    info.devices
        .iter()
        .inspect(|d| assert_eq!(d.segment, 0, "{d:?}"))
        .map(|d| (d.bus, d.devfn, d.owner))
        .collect()
}

fn device_errno(r: Result<(), DeviceError>, ioctl: &str) -> Errno {
    match r {
        Err(DeviceError::Ioctl { ioctl: i, errno }) if i == ioctl => errno,
        other => panic!("expected {ioctl} to fail, got {other:?}"),
    }
}

#[test]
#[ignore = "needs a VFIO guest: run tests/vm/run"]
fn iommufd_cdev_hot_reset_answers_device_ids_and_needs_no_group_fd() {
    let fd = Iommufd::open().unwrap();
    let devices = rig::devices();
    let (ioas, dev) = attached_first(&fd);
    let info = dev
        .hot_reset_info()
        .expect("GET_PCI_HOT_RESET_INFO on the cdev");
    println!("cdev hot reset info {info:x?}");
    // edu sits alone behind its root port: the reset would reset it alone,
    // named by its device id in this iommufd, and so owned.
    let (bus, devfn) = rig::bus_devfn(&devices[0]);
    assert_eq!(
        owners(&info),
        [(bus, devfn, HotResetOwner::Bound(dev.devid()))]
    );
    assert!(info.all_owned);
    // The group path's reading of the same answer: the id is the devid.
    let raw = dev.pci_hot_reset_info().unwrap();
    assert_eq!(raw.len(), 1);
    assert_eq!(raw[0].group_id, dev.devid());
    let bar0 = dev.region(0).unwrap();
    dev.hot_reset().expect("hot reset with no group fd");
    assert_eq!(bar0.read_u32(IDENT).unwrap(), 0x010000ed);
    // Group fds from a cdev-opened device: EINVAL (the second edu's group
    // opens: its cdev is not bound).
    let other = Group::open_id(group_ids()[1]).expect("the other group opens");
    let errno = device_errno(dev.pci_hot_reset([&other]), "VFIO_DEVICE_PCI_HOT_RESET");
    assert_eq!(errno, Errno::EINVAL);
    // Still usable after all of it.
    set_bus_master(&dev);
    let buf = DmaBuffer::new(4096).unwrap();
    let map = ioas.map(&buf, 0x20_0000, DmaAccess::ReadWrite).unwrap();
    let data = pattern(64, 9);
    assert_eq!(
        round_trip(&dev, &buf, map.iova(), 1024, &data),
        data,
        "DMA after the hot reset"
    );
}

/// A hot reset with every affected device owned gets past the kernel's
/// ownership check (which answers `EINVAL`). Behind the rig's third root
/// port (a conventional-PCI multifunction slot) the reset itself then fails:
/// the port never reports its link active again ("Data Link Layer Link
/// Active not set in 100 msec"), and the kernel gives up after about a
/// second with `ENOTTY`. The edu ports reset (see the test above).
fn owned_reset_passes_the_ownership_check(r: Result<(), DeviceError>) {
    match r {
        Ok(()) => {}
        Err(DeviceError::Ioctl {
            ioctl: "VFIO_DEVICE_PCI_HOT_RESET",
            errno: Errno::ENOTTY,
        }) => println!("hot reset past the ownership check: ENOTTY (the port's link)"),
        other => panic!("hot reset with every device owned: {other:?}"),
    }
}

#[test]
#[ignore = "needs a VFIO guest: run tests/vm/run"]
fn iommufd_cdev_hot_reset_needs_every_affected_device_owned() {
    // The pci-testdev (function 0, vfio-pci) and the virtio-rng (function
    // 1) share a slot, so a hot reset of one resets both, and an IOMMU group.
    let (testdev, mate) = rig::non_viable();
    let mate_driver = rig::driver_of(&mate).expect("the slot mate has a driver");
    let (bus, devfn) = rig::bus_devfn(&testdev);
    let mate_devfn = rig::bus_devfn(&mate).1;
    let fd = Iommufd::open().unwrap();
    // While the mate has a kernel driver the group is the kernel's: no bind.
    match CdevDevice::open_pci(&testdev).unwrap().bind(&fd) {
        Err(e) => {
            println!("bind beside a kernel driver: {}", e.error);
            assert!(e.device.is_some());
            match e.error {
                IommufdError::Ioctl { errno, .. } => assert_eq!(errno, Errno::EPERM),
                other => panic!("{other:?}"),
            }
        }
        Ok(_) => panic!("bound while the group's other device has a kernel driver"),
    }
    rig::sysfs_driver(&mate_driver, &mate, false);
    let a = bound(&testdev, &fd);
    // The mate, driverless, is no VFIO device: not owned, and the reset is
    // refused.
    let info = a.hot_reset_info().unwrap();
    println!("mate without a driver: {info:x?}");
    assert_eq!(
        owners(&info),
        [
            (bus, devfn, HotResetOwner::Bound(a.devid())),
            (bus, mate_devfn, HotResetOwner::NotOwned)
        ]
    );
    assert!(!info.all_owned);
    assert_eq!(
        device_errno(a.hot_reset(), "VFIO_DEVICE_PCI_HOT_RESET"),
        Errno::EINVAL
    );
    // The mate bound to vfio-pci but not to the iommufd: its group is the
    // iommufd's (through the pci-testdev), so it is owned, and the reset
    // gets past the ownership check.
    rig::driver_override(&mate, Some("vfio-pci"));
    rig::sysfs_driver("vfio-pci", &mate, true);
    let info = a.hot_reset_info().unwrap();
    println!("mate on vfio-pci, unbound: {info:x?}");
    assert_eq!(
        owners(&info)[1],
        (bus, mate_devfn, HotResetOwner::GroupOwned)
    );
    assert!(info.all_owned);
    owned_reset_passes_the_ownership_check(a.hot_reset());
    // Another iommufd cannot take the mate: the group is the first one's.
    let other_fd = Iommufd::open().unwrap();
    match CdevDevice::open_pci(&mate).unwrap().bind(&other_fd) {
        Err(e) => {
            println!("bind to a second iommufd: {}", e.error);
            match e.error {
                IommufdError::Ioctl { errno, .. } => assert_eq!(errno, Errno::EPERM),
                other => panic!("{other:?}"),
            }
        }
        Ok(_) => panic!("a group's devices bound to two iommufds"),
    }
    // Bound to the same iommufd: its own device id, from either device.
    let b = bound(&mate, &fd);
    for dev in [&a, &b] {
        let info = dev.hot_reset_info().unwrap();
        assert_eq!(
            owners(&info),
            [
                (bus, devfn, HotResetOwner::Bound(a.devid())),
                (bus, mate_devfn, HotResetOwner::Bound(b.devid()))
            ]
        );
        assert!(info.all_owned);
    }
    owned_reset_passes_the_ownership_check(b.hot_reset());
    drop(b);
    drop(a);
    rig::sysfs_driver("vfio-pci", &mate, false);
    rig::driver_override(&mate, None);
    rig::sysfs_driver(&mate_driver, &mate, true);
    assert_eq!(rig::driver_of(&mate), Some(mate_driver));
}

#[test]
#[ignore = "needs a VFIO guest: run tests/vm/run"]
fn iommufd_allowed_iovas_confine_kernel_chosen_ones() {
    let range = |start, end| IovaRange { start, end };
    let allow_errno = |ioas: &Ioas<'_>, ranges: &[IovaRange]| match ioas.allow_iovas(ranges) {
        Err(IommufdError::Ioctl {
            ioctl: "IOMMU_IOAS_ALLOW_IOVAS",
            errno,
        }) => errno,
        other => panic!("allow {ranges:x?}: expected the kernel to refuse, got {other:?}"),
    };
    let fd = Iommufd::open().unwrap();
    let (ioas, dev) = attached_first(&fd);
    set_bus_master(&dev);
    let before = ioas.iova_ranges().unwrap();
    // 1 MiB below edu's 28-bit DMA mask, clear of the MSI window (an
    // SMMUv3's lies at 0x0800_0000 in QEMU's virt).
    let allowed = range(0x0400_0000, 0x040f_ffff);
    ioas.allow_iovas(&[allowed])
        .expect("IOMMU_IOAS_ALLOW_IOVAS");
    // The usable ranges the kernel reports are the reserved regions'
    // holes: allowed ranges do not show there.
    assert_eq!(ioas.iova_ranges().unwrap(), before);
    let buf = DmaBuffer::new(8192).unwrap();
    let map = ioas.map_anywhere(&buf, DmaAccess::ReadWrite).unwrap();
    println!("kernel-chosen IOVA in {allowed:x?}: {:#x}", map.iova());
    assert!(allowed.contains(map.iova(), 8192), "{:#x}", map.iova());
    let data = pattern(256, 13);
    assert_eq!(
        round_trip(&dev, &buf, map.iova(), 4096, &data),
        data,
        "DMA at the allowed IOVA"
    );
    // No room for 2 MiB in the 1 MiB allowed: ENOSPC; a fixed IOVA outside
    // the allowed ranges is not confined.
    let big = DmaBuffer::new(2 << 20).unwrap();
    assert_eq!(
        map_errno(ioas.map_anywhere(&big, DmaAccess::ReadWrite)),
        Errno::ENOSPC
    );
    drop(
        ioas.map(&big, 0x0100_0000, DmaAccess::ReadWrite)
            .expect("a fixed IOVA outside the allowed ranges"),
    );
    // Refused by the kernel, keeping the ranges it had: a range over the
    // attached device's MSI window or past the IOMMU's aperture (both
    // reserved: EADDRINUSE), a one-byte range, overlapping ranges (EINVAL).
    let (msi, msi_end) = rig::msi_window(rig::first_group_number());
    let top = before.ranges.last().unwrap().end;
    for (ranges, want) in [
        (vec![range(msi, msi + 0xfff)], Errno::EADDRINUSE),
        (vec![range(top + 1, top + 0x10_0000)], Errno::EADDRINUSE),
        (vec![range(0x0900_0000, 0x0900_0000)], Errno::EINVAL),
        (
            vec![
                range(0x0900_0000, 0x09ff_ffff),
                range(0x0980_0000, 0x0a7f_ffff),
            ],
            Errno::EINVAL,
        ),
    ] {
        assert_eq!(allow_errno(&ioas, &ranges), want, "{ranges:x?}");
    }
    let small = DmaBuffer::new(4096).unwrap();
    let again = ioas.map_anywhere(&small, DmaAccess::ReadWrite).unwrap();
    assert!(
        allowed.contains(again.iova(), 4096),
        "a refused ALLOW_IOVAS changed the ranges: {:#x}",
        again.iova()
    );
    // Refused before the call: a range that ends before it starts.
    match ioas.allow_iovas(&[range(0x2000, 0x1000)]) {
        Err(IommufdError::BadRange {
            start: 0x2000,
            end: 0x1000,
            ..
        }) => {}
        other => panic!("a reversed range: {other:?}"),
    }
    // Cleared: 2 MiB fits again.
    ioas.allow_iovas(&[]).unwrap();
    drop(
        ioas.map_anywhere(&big, DmaAccess::ReadWrite)
            .expect("kernel-chosen IOVAs unconfined again"),
    );
    // An IOAS with no device has no reserved region: the MSI window may be
    // allowed, but then a device reserving it cannot attach (EADDRINUSE).
    let second = fd.alloc_ioas().unwrap();
    second
        .allow_iovas(&[range(msi, msi_end)])
        .expect("nothing reserved yet");
    let other = bound(&rig::devices()[1], &fd);
    match other.attach(&second) {
        Err(IommufdError::Ioctl { errno, .. }) => assert_eq!(errno, Errno::EADDRINUSE),
        r => panic!("attach over an allowed range the device reserves: {r:?}"),
    }
    second.allow_iovas(&[]).unwrap();
    other
        .attach(&second)
        .expect("attach once the range is gone");
    drop((map, again));
}

#[test]
#[ignore = "needs a VFIO guest: run tests/vm/run"]
fn iommufd_copy_maps_a_buffer_in_a_second_ioas_and_outlives_its_source() {
    let fd = Iommufd::open().unwrap();
    let devices = rig::devices();
    let src = fd.alloc_ioas().unwrap();
    let dst = fd.alloc_ioas().unwrap();
    let a = bound(&devices[0], &fd);
    let b = bound(&devices[1], &fd);
    a.attach(&src).unwrap();
    b.attach(&dst).unwrap();
    set_bus_master(&a);
    set_bus_master(&b);
    let buf = DmaBuffer::new(8192).unwrap();
    let source = src.map(&buf, 0x50_0000, DmaAccess::ReadWrite).unwrap();
    // Before the copy, b's IOAS has nothing at the source's IOVA.
    assert!(
        !write_reaches(&b, &buf, 0x50_0000 + 6144, 6144, 64),
        "b reached src"
    );
    let copy = dst
        .copy(&source, 0x70_0000, DmaAccess::ReadWrite)
        .expect("IOMMU_IOAS_COPY");
    assert_eq!((copy.iova(), copy.size()), (0x70_0000, 8192));
    // b reads and writes the buffer through the copy in its own IOAS.
    let data = pattern(512, 77);
    assert_eq!(
        round_trip(&b, &buf, copy.iova(), 4096, &data),
        data,
        "DMA through the copy"
    );
    // A kernel-chosen copy lands in the destination's usable ranges.
    let anywhere = dst
        .copy_anywhere(&source, DmaAccess::DeviceReads)
        .expect("IOMMU_IOAS_COPY, kernel-chosen IOVA");
    let ranges = dst.iova_ranges().unwrap();
    println!("kernel-chosen copy IOVA {:#x}", anywhere.iova());
    assert!(
        ranges
            .ranges
            .iter()
            .any(|r| r.contains(anywhere.iova(), 8192)),
        "{:#x} outside {ranges:x?}",
        anywhere.iova()
    );
    // The source goes, and its IOAS, and the copies stay: the kernel
    // copied the pages, not the mapping; they hold the buffer.
    source.unmap().expect("unmap the source");
    a.detach().unwrap();
    src.destroy()
        .expect("destroy the source IOAS under live copies");
    assert!(buf.is_mapped());
    let later = pattern(256, 5);
    assert_eq!(
        round_trip(&b, &buf, copy.iova(), 6144, &later),
        later,
        "DMA through the copy once the source is gone"
    );
    // a, detached, reaches nothing.
    assert!(
        !write_reaches(&a, &buf, 0x50_0000, 0, 256),
        "a reached the unmapped source"
    );
    drop(anywhere);
    assert!(buf.is_mapped());
    copy.unmap().expect("unmap the copy");
    assert!(!buf.is_mapped(), "every guard gone, the buffer is free");
    // Unmapped from dst too: b's write reaches nothing.
    assert!(
        !write_reaches(&b, &buf, 0x70_0000, 0, 256),
        "DMA reached the unmapped copy"
    );
}

#[test]
#[ignore = "needs a VFIO guest: run tests/vm/run"]
fn iommufd_copy_errors_carry_the_kernels_errno() {
    let fd = Iommufd::open().unwrap();
    let (src, _a) = attached_first(&fd);
    let dst = fd.alloc_ioas().unwrap();
    let b = bound(&rig::devices()[1], &fd);
    b.attach(&dst).unwrap();
    let rw = DmaAccess::ReadWrite;
    let buf = DmaBuffer::new(8192).unwrap();
    let source = src.map(&buf, 0x50_0000, rw).unwrap();
    let copy = dst.copy(&source, 0x70_0000, rw).unwrap();
    // Over a mapping: EEXIST; into the reserved MSI window, or unaligned:
    // EINVAL; wrapping: EOVERFLOW.
    let msi = rig::msi_window(rig::first_group_number()).0;
    for (iova, want) in [
        (0x70_1000, Errno::EEXIST),
        (msi, Errno::EINVAL),
        (0x74_0800, Errno::EINVAL),
        (u64::MAX - 0xfff, Errno::EOVERFLOW),
    ] {
        assert_eq!(map_errno(dst.copy(&source, iova, rw)), want, "{iova:#x}");
    }
    // Device writes to pages mapped for device reads only: EPERM; a
    // read-only copy of them is fine.
    let ro_buf = DmaBuffer::new(4096).unwrap();
    let ro = src.map(&ro_buf, 0x60_0000, DmaAccess::DeviceReads).unwrap();
    assert_eq!(map_errno(dst.copy(&ro, 0x72_0000, rw)), Errno::EPERM);
    drop(
        dst.copy(&ro, 0x72_0000, DmaAccess::DeviceReads)
            .expect("read-only copy"),
    );
    // Raw copies take any range of mapped IOVAs: part of a mapping is fine;
    // a range reaching into a hole, or wholly unmapped: ENOENT; an empty or
    // unaligned length, or an unaligned source: EINVAL.
    // SAFETY: 0x50_1000..0x50_2000 maps `buf`, which outlives this copy
    // (unmapped just below).
    let part = unsafe { dst.copy_raw(&src, 0x50_1000, 4096, Some(0x74_0000), rw) }
        .expect("a copy of part of a mapping");
    assert_eq!(part, 0x74_0000);
    assert_eq!(dst.unmap_raw(0x74_0000, 4096).unwrap(), 4096);
    for (src_iova, size, want) in [
        (0x50_1000, 8192, Errno::ENOENT),
        (0x90_0000, 4096, Errno::ENOENT),
        (0x50_0000, 0, Errno::EINVAL),
        (0x50_0000, 0x800, Errno::EINVAL),
        (0x50_0800, 4096, Errno::EINVAL),
    ] {
        // SAFETY: every one of these is refused (asserted); none that
        // succeeded could map more than `buf`, which outlives the IOASes.
        let r = unsafe { dst.copy_raw(&src, src_iova, size, Some(0x74_0000), rw) };
        assert_eq!(map_errno(r), want, "{src_iova:#x} + {size:#x}");
    }
    // An IOAS of another iommufd: refused before the call.
    let fd2 = Iommufd::open().unwrap();
    let foreign = fd2.alloc_ioas().unwrap();
    match foreign.copy(&source, 0x70_0000, rw) {
        Err(DmaError::OtherIommufd {
            ioctl: "IOMMU_IOAS_COPY",
        }) => {}
        other => panic!("a copy across iommufds: {other:?}"),
    }
    // A guard whose range was unmapped behind its back: refused before the
    // call, once other memory is mapped there too; the new guard copies.
    assert_eq!(src.unmap_raw(0x50_0000, 8192).unwrap(), 8192);
    let other = DmaBuffer::new(8192).unwrap();
    let squatter = src.map(&other, 0x50_0000, rw).unwrap();
    match dst.copy(&source, 0x76_0000, rw) {
        Err(DmaError::Stale {
            ioctl: "IOMMU_IOAS_COPY",
            iova: 0x50_0000,
            size: 8192,
        }) => {}
        other => panic!("a copy of a stale guard: {other:?}"),
    }
    drop(
        dst.copy(&squatter, 0x76_0000, rw)
            .expect("the squatter's own copy"),
    );
    drop((copy, squatter, ro));
    // The stale guard's unmap finds nothing now (ENOENT): its buffer stays
    // held by the IOAS until the kernel confirms the range gone.
    drop(source);
    assert_eq!(src.orphaned_mappings(), 1);
    assert!(buf.is_mapped());
}

#[test]
#[ignore = "needs a VFIO guest: run tests/vm/run"]
fn iommufd_map_unmap_and_msi_trigger_allocate_nothing() {
    use crate::alloc_count::allocations;
    let fd = Iommufd::open().unwrap();
    let (ioas, dev) = attached_first(&fd);
    let buf = DmaBuffer::new(4096).unwrap();
    // Warm up once outside the counts (first-use state, if any).
    drop(ioas.map(&buf, 0x70_0000, DmaAccess::ReadWrite).unwrap());
    // Each map and each unmap counted on its own: the guard's drop and the
    // explicit unmap(), 1000 times each.
    let (mut maps, mut drops, mut unmaps) = (0, 0, 0);
    for i in 0..2000 {
        let (m, n) = allocations(|| ioas.map(&buf, 0x70_0000, DmaAccess::ReadWrite).unwrap());
        maps += n;
        if i % 2 == 0 {
            drops += allocations(|| drop(m)).1;
        } else {
            let (r, n) = allocations(|| m.unmap());
            r.expect("IOAS_UNMAP");
            unmaps += n;
        }
    }
    assert!(!buf.is_mapped());
    // MSI loopback triggers on the bound cdev.
    let e = eventfd();
    dev.set_irq_eventfd(PciIrq::Msi as u32, 0, e.as_fd())
        .unwrap();
    let ((), triggers) = allocations(|| {
        for _ in 0..1000 {
            dev.trigger_irq(PciIrq::Msi as u32, 0, 1).unwrap();
        }
    });
    assert_eq!(wait(&e, 2000), Some(1000));
    dev.disable_irq(PciIrq::Msi as u32).unwrap();
    println!(
        "iommufd heap allocations: 2000 IOAS maps {maps}, 1000 guard drops (unmap) {drops}, \
         1000 unmap() {unmaps}, 1000 MSI triggers {triggers}"
    );
    assert_eq!(
        (maps, drops, unmaps, triggers),
        (0, 0, 0, 0),
        "the iommufd hot paths allocated"
    );
}
