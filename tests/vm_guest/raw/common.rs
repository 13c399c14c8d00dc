//! Raw-layer scenarios valid in every configuration (type1, type1v2,
//! no-IOMMU): container, group and device life cycle, regions, interrupts,
//! resets and the error paths that need no IOMMU.

use std::os::fd::AsRawFd;
use std::time::Duration;

use nix::errno::Errno;
use typed_vfio::sys;

use crate::edu::{self, *};
use crate::rig;

/// A short wait for "no interrupt arrives" checks.
const QUIET: Duration = Duration::from_millis(300);

#[test]
#[ignore = "needs a VFIO guest: run tests/vm/run"]
fn container_reports_vfio_api_version() {
    let c = open_container();
    // SAFETY: `c` is /dev/vfio/vfio; the request takes no argument.
    let v = unsafe { sys::ioctl::vfio_get_api_version(cfd(&c)) };
    let v = expect_ok("VFIO_GET_API_VERSION", v);
    println!("VFIO_GET_API_VERSION = {v}");
    assert_eq!(v as u32, sys::VFIO_API_VERSION);
}

#[test]
#[ignore = "needs a VFIO guest: run tests/vm/run"]
fn check_extension_of_an_unknown_id_is_zero() {
    let c = open_container();
    let r = expect_ok("VFIO_CHECK_EXTENSION 0x7fff", check_extension(&c, 0x7fff));
    assert_eq!(r, 0, "an unknown extension id reports {r}");
}

#[test]
#[ignore = "needs a VFIO guest: run tests/vm/run"]
fn group_is_viable_and_container_set_follows_set_and_unset_container() {
    let (_, g) = &rig::devices_with_groups()[0];
    let c = open_container();
    let group = open_group(g);
    let f = group_flags(&group);
    assert_eq!(
        f,
        sys::VFIO_GROUP_FLAGS_VIABLE,
        "fresh group {g}: flags {f:#x}"
    );
    expect_ok("VFIO_GROUP_SET_CONTAINER", set_container(&group, &c));
    let f = group_flags(&group);
    assert_eq!(
        f,
        sys::VFIO_GROUP_FLAGS_VIABLE | sys::VFIO_GROUP_FLAGS_CONTAINER_SET,
        "attached group {g}: flags {f:#x}"
    );
    expect_ok("VFIO_GROUP_UNSET_CONTAINER", unset_container(&group));
    let f = group_flags(&group);
    assert_eq!(
        f,
        sys::VFIO_GROUP_FLAGS_VIABLE,
        "detached group {g}: flags {f:#x}"
    );
}

#[test]
#[ignore = "needs a VFIO guest: run tests/vm/run"]
fn set_iommu_with_the_configured_model_succeeds_once_a_group_is_attached() {
    let (_, g) = &rig::devices_with_groups()[0];
    let c = open_container();
    let group = open_group(g);
    expect_ok("VFIO_GROUP_SET_CONTAINER", set_container(&group, &c));
    let model = iommu_model();
    let r = expect_ok("VFIO_SET_IOMMU", set_iommu(&c, model));
    println!("VFIO_SET_IOMMU {model} -> {r}");
    assert_eq!(r, 0);
    if rig::compat() {
        // iommufd's compatibility container keeps no model: SET_IOMMU only
        // checks that the compat IOAS exists (and for type1 turns off large
        // pages), so a second one is accepted, with either type1 model.
        // Linux 6.12 drivers/iommu/iommufd/vfio_compat.c,
        // iommufd_vfio_set_iommu: "VFIO fails the set_iommu if there is no
        // group" is its only state check.
        let again = expect_ok("second VFIO_SET_IOMMU", set_iommu(&c, model));
        assert_eq!(again, 0, "second VFIO_SET_IOMMU under compat");
        let other = if model == sys::VFIO_TYPE1_IOMMU {
            sys::VFIO_TYPE1v2_IOMMU
        } else {
            sys::VFIO_TYPE1_IOMMU
        };
        let r = expect_ok(
            "VFIO_SET_IOMMU, the other type1 model",
            set_iommu(&c, other),
        );
        assert_eq!(r, 0, "the other type1 model under compat");
        return;
    }
    // The model is fixed now: a second SET_IOMMU is refused.
    // Linux 6.12: EINVAL (container already has an IOMMU driver).
    expect_errno("second VFIO_SET_IOMMU", set_iommu(&c, model), Errno::EINVAL);
}

#[test]
#[ignore = "needs a VFIO guest: run tests/vm/run"]
fn set_iommu_without_an_attached_group_fails_einval_or_enodev_under_compat() {
    let c = open_container();
    // Linux 6.12 vfio_ioctl_set_iommu: empty group list -> EINVAL. iommufd's
    // compatibility container has no compat IOAS before a group's
    // SET_CONTAINER creates one: get_compat_ioas's ERR_PTR(-ENODEV)
    // (drivers/iommu/iommufd/vfio_compat.c, iommufd_vfio_set_iommu).
    let want = if rig::compat() {
        Errno::ENODEV
    } else {
        Errno::EINVAL
    };
    expect_errno(
        "VFIO_SET_IOMMU, no group",
        set_iommu(&c, iommu_model()),
        want,
    );
}

#[test]
#[ignore = "needs a VFIO guest: run tests/vm/run"]
fn get_device_fd_with_an_unknown_device_name_fails_enodev() {
    let v = Vfio::open(1);
    // Linux 6.12: no device of that name in the group -> ENODEV.
    expect_errno(
        "VFIO_GROUP_GET_DEVICE_FD 0000:ff:1f.7",
        get_device_fd(&v.groups[0], "0000:ff:1f.7"),
        Errno::ENODEV,
    );
    // the real name still works on the same group
    let (bdf, _) = &rig::devices_with_groups()[0];
    // the device is already open once (in `v`); a second fd is allowed
    let second = get_device_fd(&v.groups[0], bdf);
    assert!(second.is_ok(), "second fd for {bdf}: {:?}", second.err());
}

#[test]
#[ignore = "needs a VFIO guest: run tests/vm/run"]
fn get_device_fd_before_set_iommu_fails_einval_except_under_compat() {
    let (bdf, g) = &rig::devices_with_groups()[0];
    let c = open_container();
    let group = open_group(g);
    // not even in a container
    expect_errno(
        "VFIO_GROUP_GET_DEVICE_FD, no container",
        get_device_fd(&group, bdf),
        Errno::EINVAL,
    );
    // in a container without an IOMMU model
    expect_ok("VFIO_GROUP_SET_CONTAINER", set_container(&group, &c));
    if rig::compat() {
        // iommufd's compatibility container: the group's SET_CONTAINER
        // created the compat IOAS, and opening a device attaches it there
        // (drivers/vfio/group.c, vfio_df_group_open: only "has an iommu",
        // then vfio_iommufd_compat_attach_ioas); no model is needed.
        let dev = get_device_fd(&group, bdf)
            .unwrap_or_else(|e| panic!("VFIO_GROUP_GET_DEVICE_FD, compat, no model: {e}"));
        let info = device_info(&dev).expect("VFIO_DEVICE_GET_INFO");
        assert_eq!(info.num_regions, 9, "the device answers");
        return;
    }
    expect_errno(
        "VFIO_GROUP_GET_DEVICE_FD, no IOMMU model",
        get_device_fd(&group, bdf),
        Errno::EINVAL,
    );
}

#[test]
#[ignore = "needs a VFIO guest: run tests/vm/run"]
fn group_in_a_container_cannot_attach_to_a_second_container_einval() {
    let (_, g) = &rig::devices_with_groups()[0];
    let c1 = open_container();
    let c2 = open_container();
    let group = open_group(g);
    expect_ok("VFIO_GROUP_SET_CONTAINER c1", set_container(&group, &c1));
    // Linux 6.12 vfio_group_ioctl_set_container: group already has a container -> EINVAL.
    expect_errno(
        "VFIO_GROUP_SET_CONTAINER c2 (double attach)",
        set_container(&group, &c2),
        Errno::EINVAL,
    );
    expect_errno(
        "VFIO_GROUP_SET_CONTAINER c1 again",
        set_container(&group, &c1),
        Errno::EINVAL,
    );
    // after leaving c1 it may join c2
    expect_ok("VFIO_GROUP_UNSET_CONTAINER", unset_container(&group));
    expect_ok("VFIO_GROUP_SET_CONTAINER c2", set_container(&group, &c2));
}

#[test]
#[ignore = "needs a VFIO guest: run tests/vm/run"]
fn group_node_can_be_open_only_once_ebusy() {
    let (_, g) = &rig::devices_with_groups()[0];
    let first = open_group(g);
    let path = rig::group_path(g);
    let second = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path);
    let e = second.expect_err("second open of a group node succeeded");
    println!("second open {}: {e}", path.display());
    assert_eq!(e.raw_os_error(), Some(libc::EBUSY), "second open: {e}");
    drop(first);
    // closed: it opens again
    let _again = open_group(g);
}

#[test]
#[ignore = "needs a VFIO guest: run tests/vm/run"]
fn unset_container_of_a_detached_group_fails_einval() {
    let (_, g) = &rig::devices_with_groups()[0];
    let group = open_group(g);
    expect_errno(
        "VFIO_GROUP_UNSET_CONTAINER, never attached",
        unset_container(&group),
        Errno::EINVAL,
    );
}

#[test]
#[ignore = "needs a VFIO guest: run tests/vm/run"]
fn device_info_reports_a_pci_device_with_9_regions_5_irqs_and_the_kernels_reset() {
    let v = Vfio::open(1);
    let info = device_info(&v.dev().file).expect("VFIO_DEVICE_GET_INFO");
    let methods = rig::reset_methods(&v.dev().bdf);
    println!(
        "device info: flags {:#x} num_regions {} num_irqs {} cap_offset {}",
        info.flags, info.num_regions, info.num_irqs, info.cap_offset
    );
    assert!(
        info.flags & sys::VFIO_DEVICE_FLAGS_PCI != 0,
        "not a PCI device: {:#x}",
        info.flags
    );
    // vfio-pci sets FLAGS_RESET exactly when the PCI core has a reset
    // method for the device (vdev->reset_works): behind a root port edu
    // has a bus reset; on a root bus (ppce500) none.
    assert_eq!(
        info.flags & sys::VFIO_DEVICE_FLAGS_RESET != 0,
        !methods.is_empty(),
        "FLAGS_RESET in {:#x} against reset_method {methods:?}",
        info.flags
    );
    assert!(
        info.num_regions >= sys::VFIO_PCI_NUM_REGIONS,
        "num_regions {}",
        info.num_regions
    );
    assert!(
        info.num_irqs >= sys::VFIO_PCI_NUM_IRQS,
        "num_irqs {}",
        info.num_irqs
    );
}

#[test]
#[ignore = "needs a VFIO guest: run tests/vm/run"]
fn region_info_bar0_is_1mib_mmapable_and_config_is_readwrite() {
    let v = Vfio::open(1);
    let d = v.dev();
    let b = d.bar0;
    println!(
        "BAR0: flags {:#x} size {:#x} offset {:#x} cap_offset {}",
        b.flags, b.size, b.offset, b.cap_offset
    );
    assert_eq!(b.size, BAR0_SIZE, "BAR0 size");
    let rw = sys::VFIO_REGION_INFO_FLAG_READ | sys::VFIO_REGION_INFO_FLAG_WRITE;
    assert_eq!(b.flags & rw, rw, "BAR0 flags {:#x}", b.flags);
    assert!(
        b.flags & sys::VFIO_REGION_INFO_FLAG_MMAP != 0,
        "BAR0 not mmap-able: {:#x}",
        b.flags
    );
    let c = d.config;
    println!(
        "config: flags {:#x} size {:#x} offset {:#x}",
        c.flags, c.size, c.offset
    );
    assert_eq!(c.flags & rw, rw, "config flags {:#x}", c.flags);
    assert!(c.size >= 256, "config size {:#x}", c.size);
    assert_ne!(b.offset, c.offset, "BAR0 and config share an offset");
    // edu has only BAR0 (BAR1 is the upper half of nothing: edu's BAR0 is 32-bit)
    for index in sys::VFIO_PCI_BAR1_REGION_INDEX..=sys::VFIO_PCI_ROM_REGION_INDEX {
        let r = region_info(&d.file, index).unwrap_or_else(|e| panic!("region {index}: {e}"));
        assert_eq!(r.size, 0, "region {index}: size {:#x}", r.size);
    }
}

#[test]
#[ignore = "needs a VFIO guest: run tests/vm/run"]
fn region_info_of_vga_without_vga_and_past_num_regions_fails_einval() {
    let v = Vfio::open(1);
    let d = &v.dev().file;
    // Linux 6.12 vfio-pci: VGA index on a device without VGA -> EINVAL.
    expect_errno(
        "REGION_INFO VGA",
        region_info(d, sys::VFIO_PCI_VGA_REGION_INDEX),
        Errno::EINVAL,
    );
    let n = device_info(d).expect("device info").num_regions;
    // index >= num_regions (no device-specific regions on edu) -> EINVAL
    expect_errno("REGION_INFO past the end", region_info(d, n), Errno::EINVAL);
}

#[test]
#[ignore = "needs a VFIO guest: run tests/vm/run"]
fn irq_info_intx_is_maskable_and_automasked_msi_has_one_vector() {
    let v = Vfio::open(1);
    let d = &v.dev().file;
    let n = device_info(d).expect("device info").num_irqs;
    for index in 0..n {
        match irq_info(d, index) {
            Ok(i) => println!("irq index {index}: flags {:#x} count {}", i.flags, i.count),
            Err(e) => println!("irq index {index}: {e}"),
        }
    }
    let intx = irq_info(d, sys::VFIO_PCI_INTX_IRQ_INDEX).expect("INTx info");
    assert_eq!(intx.count, 1, "INTx count");
    let want =
        sys::VFIO_IRQ_INFO_EVENTFD | sys::VFIO_IRQ_INFO_MASKABLE | sys::VFIO_IRQ_INFO_AUTOMASKED;
    assert_eq!(intx.flags & want, want, "INTx flags {:#x}", intx.flags);
    let msi = irq_info(d, sys::VFIO_PCI_MSI_IRQ_INDEX).expect("MSI info");
    assert_eq!(msi.count, 1, "edu has one MSI vector");
    assert!(
        msi.flags & sys::VFIO_IRQ_INFO_EVENTFD != 0,
        "MSI flags {:#x}",
        msi.flags
    );
    let msix = irq_info(d, sys::VFIO_PCI_MSIX_IRQ_INDEX).expect("MSI-X info");
    assert_eq!(msix.count, 0, "edu has no MSI-X");
    // edu is a conventional PCI device (no PCIe capability), so vfio-pci has
    // no error IRQ for it: Linux 6.12 returns EINVAL for the ERR index of a
    // non-PCIe device, although it is below num_irqs.
    expect_errno(
        "IRQ_INFO ERR on conventional PCI",
        irq_info(d, sys::VFIO_PCI_ERR_IRQ_INDEX),
        Errno::EINVAL,
    );
    let req = irq_info(d, sys::VFIO_PCI_REQ_IRQ_INDEX).expect("REQ info");
    assert_eq!(req.count, 1, "REQ count");
    expect_errno("IRQ_INFO past num_irqs", irq_info(d, n), Errno::EINVAL);
}

#[test]
#[ignore = "needs a VFIO guest: run tests/vm/run"]
fn config_space_reads_edu_ids_and_bus_master_write_reads_back() {
    let v = Vfio::open(1);
    let d = v.dev();
    assert_eq!(d.cfg_read16(PCI_VENDOR_ID), rig::EDU_VENDOR, "vendor");
    assert_eq!(d.cfg_read16(PCI_DEVICE_ID), rig::EDU_DEVICE, "device");
    assert_eq!(
        d.cfg_read32(PCI_VENDOR_ID),
        u32::from(rig::EDU_DEVICE) << 16 | u32::from(rig::EDU_VENDOR),
        "32-bit read of vendor+device"
    );
    let before = d.cfg_read16(PCI_COMMAND);
    d.set_bus_master(true);
    let on = d.cfg_read16(PCI_COMMAND);
    println!("command {before:#06x} -> {on:#06x}");
    assert!(
        on & PCI_COMMAND_MASTER != 0,
        "Bus Master did not stick: {on:#06x}"
    );
    d.set_bus_master(false);
    let off = d.cfg_read16(PCI_COMMAND);
    assert_eq!(
        off & PCI_COMMAND_MASTER,
        0,
        "Bus Master did not clear: {off:#06x}"
    );
}

#[test]
#[ignore = "needs a VFIO guest: run tests/vm/run"]
fn bar0_pread_pwrite_ident_liveness_and_factorial() {
    let v = Vfio::open(1);
    let d = v.dev();
    assert_eq!(d.read32(REG_IDENT), EDU_IDENT, "ident");
    for x in [0x1234_5678u32, 0, 0xffff_ffff, 0xa5a5_0f0f] {
        d.write32(REG_LIVENESS, x);
        assert_eq!(d.read32(REG_LIVENESS), !x, "liveness after writing {x:#x}");
    }
    d.write32(REG_STATUS, 0);
    d.write32(REG_FACTORIAL, 10);
    let t0 = std::time::Instant::now();
    while d.read32(REG_STATUS) & STATUS_COMPUTING != 0 {
        assert!(
            t0.elapsed() < TIMEOUT,
            "factorial still computing after {TIMEOUT:?}"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(d.read32(REG_FACTORIAL), 3_628_800, "10!");
}

#[test]
#[ignore = "needs a VFIO guest: run tests/vm/run"]
fn bar0_mmap_reads_ident_and_liveness_inverse() {
    let v = Vfio::open(1);
    let d = v.dev();
    let m = d.mmap_bar0();
    assert_eq!(
        m.read32(REG_IDENT as usize),
        EDU_IDENT,
        "ident through mmap"
    );
    m.write32(REG_LIVENESS as usize, 0x0bad_cafe);
    assert_eq!(
        m.read32(REG_LIVENESS as usize),
        !0x0bad_cafe,
        "liveness through mmap"
    );
    // the same register through pread sees the mmap write
    assert_eq!(
        d.read32(REG_LIVENESS),
        !0x0bad_cafe,
        "liveness through pread after mmap write"
    );
    d.write32(REG_LIVENESS, 0x1357_9bdf);
    assert_eq!(
        m.read32(REG_LIVENESS as usize),
        !0x1357_9bdf,
        "mmap sees a pwrite"
    );
}

fn ack_all(d: &Device) {
    d.write32(REG_IRQ_ACK, 0xffff_ffff);
}

#[test]
#[ignore = "needs a VFIO guest: run tests/vm/run"]
fn msi_eventfd_fires_for_each_edu_raised_interrupt_once_bus_master_is_set() {
    let v = Vfio::open(1);
    let d = v.dev();
    ack_all(d);
    d.set_bus_master(false);
    let efd = EventFd::new();
    expect_ok(
        "SET_IRQS MSI eventfd",
        irq_set_eventfd(&d.file, sys::VFIO_PCI_MSI_IRQ_INDEX, &efd),
    );
    assert_eq!(
        efd.wait(Duration::ZERO),
        None,
        "eventfd signalled before any interrupt"
    );
    // An MSI is a memory write by the device: with Bus Master off it goes
    // nowhere (vfio-pci enables MSI but does not set Bus Master).
    d.write32(REG_IRQ_RAISE, 0x8);
    assert_eq!(efd.wait(QUIET), None, "MSI delivered with Bus Master off");
    d.write32(REG_IRQ_ACK, 0x8);
    d.set_bus_master(true);
    for (round, bit) in [0x10u32, 0x20].into_iter().enumerate() {
        d.write32(REG_IRQ_RAISE, bit);
        let n = efd.wait(TIMEOUT);
        println!(
            "MSI round {round}: eventfd {n:?}, irq status {:#x}",
            d.read32(REG_IRQ_STATUS)
        );
        assert!(
            n.is_some_and(|n| n >= 1),
            "no MSI within {TIMEOUT:?} (round {round})"
        );
        assert!(
            d.read32(REG_IRQ_STATUS) & bit != 0,
            "irq status lacks {bit:#x}"
        );
        d.write32(REG_IRQ_ACK, bit);
        assert_eq!(d.read32(REG_IRQ_STATUS), 0, "irq status after ack");
    }
    expect_ok(
        "SET_IRQS MSI off",
        irq_disable(&d.file, sys::VFIO_PCI_MSI_IRQ_INDEX),
    );
    // With MSI torn down, a raise reaches no eventfd.
    d.write32(REG_IRQ_RAISE, 0x40);
    assert_eq!(
        efd.wait(QUIET),
        None,
        "eventfd signalled after MSI was disabled"
    );
    ack_all(d);
    d.set_bus_master(false);
}

#[test]
#[ignore = "needs a VFIO guest: run tests/vm/run"]
fn intx_is_automasked_until_unmask() {
    let v = Vfio::open(1);
    let d = v.dev();
    ack_all(d);
    let efd = EventFd::new();
    let intx = sys::VFIO_PCI_INTX_IRQ_INDEX;
    expect_ok(
        "SET_IRQS INTx eventfd",
        irq_set_eventfd(&d.file, intx, &efd),
    );
    assert_eq!(
        efd.wait(Duration::ZERO),
        None,
        "eventfd signalled before any interrupt"
    );

    // first interrupt
    d.write32(REG_IRQ_RAISE, 0x1);
    assert!(
        efd.wait(TIMEOUT).is_some(),
        "first INTx: no eventfd within {TIMEOUT:?}"
    );
    // VFIO masked the line on delivery: acknowledge at edu, raise again
    // while masked: nothing arrives
    d.write32(REG_IRQ_ACK, 0x1);
    d.write32(REG_IRQ_RAISE, 0x2);
    assert_eq!(efd.wait(QUIET), None, "INTx delivered while automasked");
    // unmask: the pending level interrupt is delivered now
    expect_ok(
        "SET_IRQS INTx unmask",
        irq_set_none(&d.file, intx, sys::VFIO_IRQ_SET_ACTION_UNMASK, 0, 1),
    );
    assert!(
        efd.wait(TIMEOUT).is_some(),
        "second INTx (pending at unmask): no eventfd"
    );

    // third: the clean sequence ack → unmask → raise
    d.write32(REG_IRQ_ACK, 0x2);
    expect_ok(
        "SET_IRQS INTx unmask",
        irq_set_none(&d.file, intx, sys::VFIO_IRQ_SET_ACTION_UNMASK, 0, 1),
    );
    assert_eq!(efd.wait(QUIET), None, "INTx without a raised interrupt");
    d.write32(REG_IRQ_RAISE, 0x4);
    assert!(efd.wait(TIMEOUT).is_some(), "third INTx: no eventfd");
    ack_all(d);
    expect_ok(
        "SET_IRQS INTx unmask",
        irq_set_none(&d.file, intx, sys::VFIO_IRQ_SET_ACTION_UNMASK, 0, 1),
    );
    expect_ok("SET_IRQS INTx off", irq_disable(&d.file, intx));
}

#[test]
#[ignore = "needs a VFIO guest: run tests/vm/run"]
fn set_irqs_beyond_the_msi_vector_count_fails_einval() {
    let v = Vfio::open(1);
    let d = &v.dev().file;
    let efd = EventFd::new();
    // one vector, start 1 (past the only vector)
    #[repr(C)]
    struct Two {
        argsz: u32,
        flags: u32,
        index: u32,
        start: u32,
        count: u32,
        data: [i32; 2],
    }
    let fd = efd.fd.as_raw_fd();
    let set = Two {
        argsz: std::mem::size_of::<Two>() as u32,
        flags: sys::VFIO_IRQ_SET_DATA_EVENTFD | sys::VFIO_IRQ_SET_ACTION_TRIGGER,
        index: sys::VFIO_PCI_MSI_IRQ_INDEX,
        start: 0,
        count: 2,
        data: [fd, fd],
    };
    // SAFETY: device fd; `set` is vfio_irq_set's layout with two s32 eventfds
    // that stay open; argsz covers it.
    let r = unsafe { sys::ioctl::vfio_device_set_irqs(dfd(d), (&raw const set).cast()) };
    // Linux 6.12 vfio_set_irqs_validate_and_prepare: start + count > max -> EINVAL.
    expect_errno("SET_IRQS MSI count 2", r, Errno::EINVAL);
}

#[test]
#[ignore = "needs a VFIO guest: run tests/vm/run"]
fn dma_completion_raises_msi() {
    let v = Vfio::open(1);
    let d = v.dev();
    ack_all(d);
    d.set_bus_master(true);
    let buf = DmaBuf::new(&v, edu::page_size() as usize, 0x20_0000);
    let data = pattern(256, fresh_seed());
    buf.mem.write_bytes(0, &data);
    let efd = EventFd::new();
    expect_ok(
        "SET_IRQS MSI eventfd",
        irq_set_eventfd(&d.file, sys::VFIO_PCI_MSI_IRQ_INDEX, &efd),
    );
    d.dma_start(buf.bus(0, 256), EDU_DMA_BUF, 256, DMA_CMD_IRQ);
    let n = efd.wait(TIMEOUT);
    assert!(n.is_some(), "no DMA-completion MSI within {TIMEOUT:?}");
    assert!(
        d.dma_wait(),
        "DMA start bit still set after the completion interrupt"
    );
    let st = d.read32(REG_IRQ_STATUS);
    assert!(
        st & DMA_IRQ != 0,
        "irq status {st:#x} lacks the DMA bit {DMA_IRQ:#x}"
    );
    ack_all(d);
    expect_ok(
        "SET_IRQS MSI off",
        irq_disable(&d.file, sys::VFIO_PCI_MSI_IRQ_INDEX),
    );
    d.set_bus_master(false);
}

#[test]
#[ignore = "needs a VFIO guest: run tests/vm/run"]
fn device_to_ram_dma_without_bus_master_leaves_ram_untouched() {
    let v = Vfio::open(1);
    let d = v.dev();
    let page = edu::page_size() as usize;
    let buf = DmaBuf::new(&v, page, 0x30_0000);
    // load a pattern into the device with Bus Master on ...
    d.set_bus_master(true);
    let data = pattern(512, fresh_seed());
    buf.mem.write_bytes(0, &data);
    d.dma_to_device(buf.bus(0, 512), 0, 512);
    buf.mem.fill(0x5a);
    // ... positive control: it comes back while Bus Master is on
    d.dma_to_ram(0, buf.bus(1024, 512), 512);
    assert_eq!(
        buf.mem.read_bytes(1024, 512),
        data,
        "control DMA with Bus Master on"
    );
    buf.mem.fill(0x5a);
    // ... then with Bus Master off the device cannot write RAM
    d.set_bus_master(false);
    d.dma_start(EDU_DMA_BUF, buf.bus(0, 512), 512, DMA_CMD_TO_RAM);
    let done = d.dma_wait();
    println!("DMA without Bus Master: command register cleared: {done}");
    assert!(
        buf.mem.read_bytes(0, page).iter().all(|&b| b == 0x5a),
        "RAM changed by a DMA without Bus Master"
    );
}

#[test]
#[ignore = "needs a VFIO guest: run tests/vm/run"]
fn device_reset_succeeds_or_without_a_reset_method_fails_einval_and_the_device_still_answers() {
    let v = Vfio::open(1);
    let d = v.dev();
    let resettable = !rig::reset_methods(&d.bdf).is_empty();
    let m = d.mmap_bar0();
    assert_eq!(
        m.read32(REG_IDENT as usize),
        EDU_IDENT,
        "ident through mmap"
    );
    d.set_bus_master(true);
    d.write32(REG_LIVENESS, 0x600d_f00d);
    // SAFETY: device fd; no argument.
    let r = unsafe { sys::ioctl::vfio_device_reset(dfd(&d.file)) };
    if resettable {
        expect_ok("VFIO_DEVICE_RESET", r);
    } else {
        // Linux 6.12 vfio_pci_ioctl_reset: !vdev->reset_works -> EINVAL
        expect_errno("VFIO_DEVICE_RESET without a reset method", r, Errno::EINVAL);
        assert_eq!(
            d.read32(REG_LIVENESS),
            !0x600d_f00d,
            "liveness survived no reset"
        );
    }
    println!(
        "command after reset {:#06x}, liveness {:#x}",
        d.cfg_read16(PCI_COMMAND),
        d.read32(REG_LIVENESS)
    );
    // vfio-pci zapped the BAR mmap for the reset; the mapping faults back in
    assert_eq!(
        m.read32(REG_IDENT as usize),
        EDU_IDENT,
        "ident through mmap after reset"
    );
    d.set_bus_master(false);
    assert_eq!(
        d.cfg_read16(PCI_VENDOR_ID),
        rig::EDU_VENDOR,
        "vendor after reset"
    );
    assert_eq!(d.read32(REG_IDENT), EDU_IDENT, "ident after reset");
    d.write32(REG_LIVENESS, 0x0102_0304);
    assert_eq!(d.read32(REG_LIVENESS), !0x0102_0304, "liveness after reset");
}

/// `struct vfio_pci_hot_reset_info` with room for 4 devices.
#[repr(C)]
struct HotResetInfo {
    argsz: u32,
    flags: u32,
    count: u32,
    devices: [sys::vfio_pci_dependent_device; 4],
}

/// `struct vfio_pci_hot_reset` with room for 2 group fds.
#[repr(C)]
struct HotReset {
    argsz: u32,
    flags: u32,
    count: u32,
    group_fds: [i32; 2],
}

fn hot_reset(dev: &std::fs::File, fds: &[i32]) -> nix::Result<i32> {
    let mut hr = HotReset {
        argsz: (12 + 4 * fds.len()) as u32,
        flags: 0,
        count: fds.len() as u32,
        group_fds: [-1; 2],
    };
    hr.group_fds[..fds.len()].copy_from_slice(fds);
    // SAFETY: device fd; `hr` is vfio_pci_hot_reset's layout followed by
    // `fds.len()` group fds that stay open; argsz covers exactly those.
    unsafe { sys::ioctl::vfio_device_pci_hot_reset(dfd(dev), (&raw const hr).cast()) }
}

#[test]
#[ignore = "needs a VFIO guest: run tests/vm/run"]
fn hot_reset_info_needs_two_calls_enospc_then_lists_the_device_and_group_or_enodev_on_a_root_bus() {
    let v = Vfio::open(1);
    let d = v.dev();
    let (bdf, g) = &rig::devices_with_groups()[0];
    let root_bus = rig::on_root_bus(bdf);
    let mut info = HotResetInfo {
        argsz: 12,
        flags: 0,
        count: 0,
        devices: [sys::vfio_pci_dependent_device::default(); 4],
    };
    // SAFETY: device fd; `info` is live and writable and argsz (12) covers
    // only its header.
    let r = unsafe {
        sys::ioctl::vfio_device_get_pci_hot_reset_info(dfd(&d.file), (&raw mut info).cast())
    };
    if root_bus {
        // Linux 6.12: no slot, and pci_probe_reset_bus refuses a root bus
        // -> ENODEV before the size is looked at.
        expect_errno("HOT_RESET_INFO on a root bus", r, Errno::ENODEV);
        return;
    }
    // Linux 6.12: too small for the devices -> ENOSPC, with count filled in.
    expect_errno("HOT_RESET_INFO header only", r, Errno::ENOSPC);
    let count = info.count as usize;
    println!("hot reset info: count {count}, flags {:#x}", info.flags);
    assert!((1..=4).contains(&count), "count {count}");
    info.argsz = (12 + 8 * count) as u32;
    // SAFETY: as above; argsz now covers `count` devices, within the struct.
    let r = unsafe {
        sys::ioctl::vfio_device_get_pci_hot_reset_info(dfd(&d.file), (&raw mut info).cast())
    };
    expect_ok("HOT_RESET_INFO sized", r);
    assert_eq!(info.count as usize, count, "count changed");
    assert_eq!(
        info.flags & sys::VFIO_PCI_HOT_RESET_FLAG_DEV_ID,
        0,
        "group API reports devids"
    );
    let (seg, bus, devfn) = bus_devfn(bdf);
    let mut found = false;
    for dev in &info.devices[..count] {
        // SAFETY: without FLAG_DEV_ID the union holds group_id (both are u32).
        let group_id = unsafe { dev.__bindgen_anon_1.group_id };
        println!(
            "  dependent device {:04x}:{:02x}:{:02x}.{} group {group_id}",
            dev.segment,
            dev.bus,
            dev.devfn >> 3,
            dev.devfn & 7
        );
        if (dev.segment, dev.bus, dev.devfn) == (seg, bus, devfn) {
            assert_eq!(group_id, group_number(g), "{bdf}: group id");
            found = true;
        }
    }
    assert!(found, "{bdf} is not among its own hot-reset devices");
}

#[test]
#[ignore = "needs a VFIO guest: run tests/vm/run"]
fn hot_reset_with_the_own_group_fd_succeeds_or_fails_enodev_on_a_root_bus() {
    let v = Vfio::open(1);
    let d = v.dev();
    let m = d.mmap_bar0();
    d.write32(REG_LIVENESS, 0xfeed_beef);
    let r = hot_reset(&d.file, &[v.groups[0].as_raw_fd()]);
    if rig::on_root_bus(&d.bdf) {
        // Linux 6.12 vfio_pci_ioctl_pci_hot_reset: no slot or bus to reset
        expect_errno("VFIO_DEVICE_PCI_HOT_RESET on a root bus", r, Errno::ENODEV);
        assert_eq!(
            d.read32(REG_LIVENESS),
            !0xfeed_beef,
            "liveness survived no reset"
        );
    } else {
        expect_ok("VFIO_DEVICE_PCI_HOT_RESET", r);
    }
    assert_eq!(
        m.read32(REG_IDENT as usize),
        EDU_IDENT,
        "ident through mmap after hot reset"
    );
    assert_eq!(
        d.cfg_read16(PCI_DEVICE_ID),
        rig::EDU_DEVICE,
        "device id after hot reset"
    );
    assert_eq!(d.read32(REG_IDENT), EDU_IDENT, "ident after hot reset");
    d.write32(REG_LIVENESS, 0x0f0f_0f0f);
    assert_eq!(
        d.read32(REG_LIVENESS),
        !0x0f0f_0f0f,
        "liveness after hot reset"
    );
}

#[test]
#[ignore = "needs a VFIO guest: run tests/vm/run"]
fn hot_reset_without_the_owning_group_fails_einval() {
    let v = Vfio::open(2);
    let d = v.dev();
    // Linux 6.12: the group API needs at least one group fd -> EINVAL.
    expect_errno(
        "HOT_RESET with no group fds",
        hot_reset(&d.file, &[]),
        Errno::EINVAL,
    );
    // The next two are refused after the reset probe (Linux 6.12
    // vfio_pci_ioctl_pci_hot_reset): on a root bus that already fails, ENODEV.
    let refusal = if rig::on_root_bus(&d.bdf) {
        Errno::ENODEV
    } else {
        Errno::EINVAL
    };
    // the other device's group does not own this device -> EINVAL
    expect_errno(
        "HOT_RESET with the other device's group",
        hot_reset(&d.file, &[v.groups[1].as_raw_fd()]),
        refusal,
    );
    // a non-group fd (the container) -> EINVAL
    expect_errno(
        "HOT_RESET with a container fd",
        hot_reset(&d.file, &[v.container.as_raw_fd()]),
        refusal,
    );
}

#[test]
#[ignore = "needs a VFIO guest: run tests/vm/run"]
fn two_groups_share_one_container_and_both_devices_answer() {
    let pairs = rig::devices_with_groups();
    assert!(
        pairs.len() >= 2,
        "the rig has two edu devices, got {pairs:?}"
    );
    let v = Vfio::open(2);
    for (i, g) in v.groups.iter().enumerate() {
        let f = group_flags(g);
        assert_eq!(
            f,
            sys::VFIO_GROUP_FLAGS_VIABLE | sys::VFIO_GROUP_FLAGS_CONTAINER_SET,
            "group {} flags {f:#x}",
            pairs[i].1
        );
    }
    for (i, d) in v.devices.iter().enumerate() {
        assert_eq!(d.read32(REG_IDENT), EDU_IDENT, "{}: ident", d.bdf);
        d.write32(REG_LIVENESS, 0x1000 + i as u32);
    }
    // the two devices are distinct: each keeps its own liveness value
    for (i, d) in v.devices.iter().enumerate() {
        assert_eq!(
            d.read32(REG_LIVENESS),
            !(0x1000 + i as u32),
            "{}: liveness",
            d.bdf
        );
    }
}
