//! Raw-layer scenarios for no-IOMMU mode (`vfio.enable_unsafe_noiommu_mode=1`,
//! groups `/dev/vfio/noiommu-N`): the NOIOMMU model, the requests it refuses,
//! and DMA straight to physical addresses. `tests/vm/run` skips this module
//! in the IOMMU configurations.

use std::mem::size_of;

use nix::errno::Errno;
use typed_vfio::sys;

use crate::edu::*;
use crate::rig::{self, IommuKind};

const PAGE: usize = 4096;

#[test]
#[ignore = "needs a VFIO guest: run tests/vm/run"]
fn check_extension_reports_noiommu() {
    assert_eq!(
        rig::iommu(),
        IommuKind::NoIommu,
        "module run outside no-IOMMU mode"
    );
    let c = open_container();
    let no = expect_ok(
        "CHECK_EXTENSION NOIOMMU",
        check_extension(&c, sys::VFIO_NOIOMMU_IOMMU),
    );
    let t1 = expect_ok(
        "CHECK_EXTENSION TYPE1",
        check_extension(&c, sys::VFIO_TYPE1_IOMMU),
    );
    let t2 = expect_ok(
        "CHECK_EXTENSION TYPE1v2",
        check_extension(&c, sys::VFIO_TYPE1v2_IOMMU),
    );
    println!("NOIOMMU {no} TYPE1 {t1} TYPE1v2 {t2}");
    assert_eq!(no, 1, "NOIOMMU extension");
    // the type1 driver answers for itself where the kernel has one (not on
    // PowerPC: see rig::has_type1_driver)
    let type1 = i32::from(rig::has_type1_driver());
    assert_eq!((t1, t2), (type1, type1), "TYPE1 / TYPE1v2 extensions");
    for g in rig::groups() {
        assert!(g.starts_with("noiommu-"), "group node {g} in no-IOMMU mode");
    }
}

#[test]
#[ignore = "needs a VFIO guest: run tests/vm/run"]
fn type1_models_cannot_drive_a_noiommu_group_enodev() {
    let (_, g) = &rig::devices_with_groups()[0];
    let c = open_container();
    let group = open_group(g);
    expect_ok("VFIO_GROUP_SET_CONTAINER", set_container(&group, &c));
    // Linux 6.12 vfio_ioctl_set_iommu: a no-IOMMU container accepts only the
    // no-IOMMU driver; no other driver matches -> ENODEV.
    expect_errno(
        "SET_IOMMU TYPE1 on noiommu",
        set_iommu(&c, sys::VFIO_TYPE1_IOMMU),
        Errno::ENODEV,
    );
    expect_errno(
        "SET_IOMMU TYPE1v2 on noiommu",
        set_iommu(&c, sys::VFIO_TYPE1v2_IOMMU),
        Errno::ENODEV,
    );
    // the container is still unset: NOIOMMU succeeds afterwards
    expect_ok("SET_IOMMU NOIOMMU", set_iommu(&c, sys::VFIO_NOIOMMU_IOMMU));
}

#[test]
#[ignore = "needs a VFIO guest: run tests/vm/run"]
fn noiommu_container_refuses_iommu_info_and_map_dma_enotty() {
    let v = Vfio::open(1);
    let mut info = sys::vfio_iommu_type1_info {
        argsz: size_of::<sys::vfio_iommu_type1_info>() as u32,
        ..Default::default()
    };
    // SAFETY: container fd; `info` is live, writable, argsz = its size.
    let r = unsafe { sys::ioctl::vfio_iommu_get_info(cfd(&v.container), &mut info) };
    // Linux 6.12 vfio_noiommu_ioctl: everything but CHECK_EXTENSION -> ENOTTY.
    expect_errno("GET_INFO on noiommu", r, Errno::ENOTTY);
    let mem = Mmap::anon(PAGE);
    expect_errno(
        "MAP_DMA on noiommu",
        map_dma(&v.container, mem.addr(), 0x10_0000, PAGE as u64),
        Errno::ENOTTY,
    );
}

#[test]
#[ignore = "needs a VFIO guest: run tests/vm/run"]
fn dma_to_physical_addresses_copies_bytes_both_ways() {
    let v = Vfio::open(1);
    let d = v.dev();
    d.set_bus_master(true);
    let src = Mmap::anon(PAGE);
    let dst = Mmap::anon(PAGE);
    src.mlock();
    dst.mlock();
    let data = pattern(MAX_DMA, fresh_seed());
    src.write_bytes(0, &data);
    dst.fill(0);
    let (ps, pd) = (src.phys_addr(0), dst.phys_addr(0));
    println!("physical: src {ps:#x} dst {pd:#x}");
    assert!(
        ps + PAGE as u64 <= DMA_LIMIT && pd + PAGE as u64 <= DMA_LIMIT,
        "RAM beyond edu's DMA mask"
    );
    assert_ne!(ps, pd, "two pages at one physical address");
    // RAM → device, device → other RAM page
    d.dma_to_device(ps, 0, MAX_DMA);
    d.dma_to_ram(0, pd, MAX_DMA);
    let back = dst.read_bytes(0, PAGE);
    assert_eq!(
        &back[..MAX_DMA],
        &data[..],
        "bytes after the physical round trip"
    );
    assert!(
        back[MAX_DMA..].iter().all(|&b| b == 0),
        "DMA wrote past its count"
    );
    // the physical address stays put while locked
    assert_eq!(dst.phys_addr(0), pd, "locked page moved");
    d.set_bus_master(false);
}
