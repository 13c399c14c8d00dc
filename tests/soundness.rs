//! Regressions for the soundness and correctness holes of issue 11, one test
//! (or more) per numbered item and per friction point, on the simulated
//! kernel. Item 1 (the data race) is `tests/dma_race.rs`, run under Miri and
//! ThreadSanitizer by `.ci/run`; item 9 is the compile-fail case
//! `pamu_assume_present_without_unsafe`; item 5 is a unit test in
//! `src/region.rs` (it needs a forged region); item 11 is the guest test
//! `raw::iommu::mappings_outlive_the_container_fd_and_end_when_the_last_group_leaves`.
//! The test that orphaned pages are freed once the kernel confirms them gone
//! is `tests/page_lifetime.rs`, alone in its process: another test's
//! allocation could land on the freed pages here.

use std::os::fd::AsFd;
use std::sync::mpsc;
use std::time::Duration;

use nix::sys::eventfd::{EfdFlags, EventFd};
use typed_vfio::sim::{PamuMode, SimDevice, SimGroup, Simulator};
use typed_vfio::type2::{Fresh, Ready, plan};
use typed_vfio::{
    Aperture, Container, DeviceError, DmaAccess, DmaBuffer, DmaError, Errno, PciIrq, Type1,
    Type1v2, Type2, Type2Error, WindowHolder,
};

const MODES: [PamuMode; 2] = [PamuMode::Strict, PamuMode::Sdk];
const BDF: &str = "0000:01:00.0";
/// 1 MiB aperture at 16 MiB, 16 windows of 64 KiB.
const START: u64 = 0x100_0000;
const SIZE: u64 = 0x10_0000;
const WS: u64 = 0x1_0000;
const UNMAP: &str = "VFIO_IOMMU_UNMAP_DMA";
const SET_ATTR: &str = "VFIO_IOMMU_PAMU_SET_ATTR";

fn pamu_sim(mode: PamuMode, banks: u32) -> Simulator {
    Simulator::builder()
        .pamu(mode)
        .msi_banks(banks)
        .group(SimGroup::new(1).device(SimDevice::edu(BDF)))
        .build()
        .unwrap()
}

fn fresh(sim: &Simulator) -> Container<Type2<Fresh>> {
    sim.open_container()
        .unwrap()
        .attach(sim.open_group(1).unwrap())
        .unwrap()
        .set_iommu_type2(sim.pamu_platform().unwrap())
        .unwrap()
}

fn ready(sim: &Simulator) -> Container<Type2<Ready>> {
    fresh(sim)
        .set_geometry(Aperture::new(START, SIZE).unwrap())
        .unwrap()
        .set_windows(16)
        .unwrap()
}

fn type1v2(sim: &Simulator) -> Container<Type1v2> {
    sim.open_container()
        .unwrap()
        .attach(sim.open_group(1).unwrap())
        .unwrap()
        .set_iommu::<Type1v2>()
        .unwrap()
}

fn eventfd() -> EventFd {
    EventFd::from_value_and_flags(0, EfdFlags::EFD_CLOEXEC | EfdFlags::EFD_NONBLOCK).unwrap()
}

// ---- item 2: a leaked MSI-bank guard ----------------------------------------------------

#[test]
fn item2_a_leaked_msi_bank_guard_keeps_its_window_and_refuses_reconfiguration() {
    for mode in MODES {
        let sim = pamu_sim(mode, 1);
        let c = ready(&sim);
        let bank_iova = START + 15 * WS;
        std::mem::forget(c.map_msi_bank(0, bank_iova).unwrap());
        let holder = WindowHolder::MsiBank { index: 0 };
        let alive = Type2Error::MappingsAlive { window: 15, holder };
        // Both reconfigurations are refused at run time, the container back.
        let e = c.set_windows(8).unwrap_err();
        assert_eq!(e.error, alive, "{mode:?}");
        let e = e
            .container
            .set_geometry(Aperture::new(START, 2 * SIZE).unwrap())
            .unwrap_err();
        assert_eq!(e.error, alive, "{mode:?}");
        let c = e.container;
        // The crate agrees with itself and with the kernel.
        assert_eq!(c.windows(), 16);
        assert_eq!(c.windows_in_use(), vec![(15, holder)]);
        assert_eq!(
            c.map_msi_bank(0, START).unwrap_err(),
            Type2Error::BankMapped {
                index: 0,
                iova: bank_iova
            }
        );
        let buf = sim.contiguous_buffer(WS as usize, WS).unwrap();
        assert!(matches!(
            c.map(&buf, bank_iova, DmaAccess::ReadWrite),
            Err(Type2Error::WindowBusy { window: 15, holder: h, .. }) if h == holder
        ));
        let banks: Vec<_> = sim
            .mappings()
            .into_iter()
            .filter(|m| m.msi_bank.is_some())
            .collect();
        assert_eq!(banks.len(), 1, "{mode:?}: the kernel still maps the bank");
        assert_eq!(
            (banks[0].msi_bank, banks[0].iova, banks[0].size),
            (Some(0), bank_iova, WS)
        );
        // MSI works: the bank is mapped in the kernel and in the crate.
        let dev = c.open_device(BDF).unwrap();
        let efd = eventfd();
        dev.set_irq_eventfd(PciIrq::Msi as u32, 0, efd.as_fd())
            .unwrap();
        dev.disable_irq(PciIrq::Msi as u32).unwrap();
        drop(dev);
        // Releasing the groups clears it all; the container configures again.
        let (unset, groups) = c.release_groups().map_err(|e| e.error).unwrap();
        assert!(sim.mappings().is_empty());
        let c = unset
            .attach(groups.into_iter().next().unwrap())
            .unwrap()
            .set_iommu_type2(sim.pamu_platform().unwrap())
            .unwrap()
            .set_geometry(Aperture::new(START, SIZE).unwrap())
            .unwrap();
        assert_eq!(c.set_windows(8).unwrap().windows(), 8);
    }
}

#[test]
fn item2_a_pamu_dma_guard_whose_unmap_failed_holds_its_windows_and_pages() {
    let sim = pamu_sim(PamuMode::Strict, 1);
    let c = ready(&sim);
    let buf = sim.contiguous_buffer(2 * WS as usize, WS).unwrap();
    let m = c.map(&buf, START, DmaAccess::ReadWrite).unwrap();
    sim.inject_fault(UNMAP, 1, Errno::EIO).unwrap();
    drop(m);
    assert!(buf.buffer().is_mapped());
    let e = c.set_windows(4).unwrap_err();
    assert_eq!(
        e.error,
        Type2Error::MappingsAlive {
            window: 0,
            holder: WindowHolder::Dma { iova: START }
        }
    );
    // The last group leaving drops the mapping: the pages are freed.
    let (_unset, _groups) = e.container.release_groups().map_err(|e| e.error).unwrap();
    assert!(!buf.buffer().is_mapped());
}

// ---- item 3: SDK read-back ambiguity ----------------------------------------------------

#[test]
fn item3_a_swallowed_set_attr_of_the_value_already_reported_is_caught() {
    let sim = pamu_sim(PamuMode::Sdk, 1);
    let c = fresh(&sim);
    // The default aperture is reported before any geometry is configured.
    let default = Aperture::new(0, 1 << 36).unwrap();
    assert_eq!(c.geometry().unwrap(), (0, (1 << 36) - 1));
    // A transient failure, swallowed by the SDK driver: no longer success.
    sim.inject_fault(SET_ATTR, 1, Errno::EIO).unwrap();
    let e = c.set_geometry(default).unwrap_err();
    assert!(
        matches!(
            e.error,
            Type2Error::NotApplied {
                attribute: "GEOMETRY",
                ..
            }
        ),
        "{:?}",
        e.error
    );
    // ... nor on the second of the two sets.
    sim.inject_fault(SET_ATTR, 2, Errno::EIO).unwrap();
    let e = e.container.set_geometry(default).unwrap_err();
    assert_eq!(
        e.error,
        Type2Error::NotApplied {
            attribute: "GEOMETRY",
            wrote: (0, (1 << 36) - 1),
            read: (0, 0xfff)
        }
    );
    let c = e.container.set_geometry(default).unwrap();
    // The window maximum is reported after every geometry.
    assert_eq!(c.window_count().unwrap(), 256);
    sim.inject_fault(SET_ATTR, 1, Errno::EIO).unwrap();
    let e = c.set_windows(256).unwrap_err();
    assert!(
        matches!(
            e.error,
            Type2Error::NotApplied {
                attribute: "WINDOWS",
                ..
            }
        ),
        "{:?}",
        e.error
    );
    sim.inject_fault(SET_ATTR, 2, Errno::EIO).unwrap();
    let e = e.container.set_windows(256).unwrap_err();
    assert_eq!(
        e.error,
        Type2Error::NotApplied {
            attribute: "WINDOWS",
            wrote: (256, 0),
            read: (1, 0)
        }
    );
    // Without a fault the stage is the kernel's: the bank maps, MSI works.
    let c = e.container.set_windows(256).unwrap();
    let bank = c.map_msi_bank(0, 255 << 28).unwrap();
    let dev = c.open_device(BDF).unwrap();
    let efd = eventfd();
    dev.set_irq_eventfd(PciIrq::Msi as u32, 0, efd.as_fd())
        .unwrap();
    dev.disable_irq(PciIrq::Msi as u32).unwrap();
    drop((dev, bank));
}

#[test]
fn item3_the_stash_and_a_repeated_window_count_are_proved_by_a_probe() {
    let sim = pamu_sim(PamuMode::Sdk, 1);
    let mut c = ready(&sim);
    c.set_stash(1, typed_vfio::StashCache::L2).unwrap();
    // The same value again: proved through a probe; a swallowed failure of
    // the probe is seen.
    sim.inject_fault(SET_ATTR, 1, Errno::EIO).unwrap();
    assert!(matches!(
        c.set_stash(1, typed_vfio::StashCache::L2),
        Err(Type2Error::NotApplied {
            attribute: "PAMU_STASH",
            ..
        })
    ));
    c.set_stash(1, typed_vfio::StashCache::L2).unwrap();
    // One window maximum: nothing to probe with, and the crate says so.
    let sim = pamu_sim(PamuMode::Strict, 0);
    let c = fresh(&sim)
        .set_geometry(Aperture::new(START, SIZE).unwrap())
        .unwrap()
        .set_windows(1)
        .unwrap();
    // The kernel reports 1 now; asking for 1 again is proved with 2.
    assert_eq!(c.set_windows(1).unwrap().windows(), 1);
}

// ---- item 4: a kernel-returned count sizes nothing unchecked -----------------------------

#[test]
fn item4_an_impossible_bank_count_is_a_typed_error_not_an_abort() {
    for mode in MODES {
        for banks in [u32::MAX, 257] {
            let sim = pamu_sim(mode, banks);
            let c = fresh(&sim);
            // The ioctl's return value is an int: the simulated kernel
            // answers at most i32::MAX.
            let count = Type2Error::BankCount {
                count: banks.min(i32::MAX as u32),
                max: 256,
            };
            assert_eq!(c.msi_bank_count().unwrap_err(), count);
            let c = c
                .set_geometry(Aperture::new(START, SIZE).unwrap())
                .unwrap()
                .set_windows(16)
                .unwrap();
            assert_eq!(c.map_msi_bank(0, START).unwrap_err(), count);
            // MSI stays refused: no bank can be mapped.
            let dev = c.open_device(BDF).unwrap();
            let efd = eventfd();
            assert!(matches!(
                dev.set_irq_eventfd(PciIrq::Msi as u32, 0, efd.as_fd()),
                Err(DeviceError::MsiBanksUnmapped { .. })
            ));
        }
        // 256 banks is a count the windows can serve.
        let sim = pamu_sim(mode, 256);
        assert_eq!(fresh(&sim).msi_bank_count().unwrap(), 256);
    }
}

// ---- item 6: a failed unmap, seen, retried, and released once confirmed -----------------

#[test]
fn item6_a_failed_drop_is_kept_until_unmap_all_confirms_it() {
    let sim = Simulator::new();
    let mut c = type1v2(&sim);
    let buf = DmaBuffer::new(4096).unwrap();
    let m = c.map(&buf, 0x10_0000, DmaAccess::ReadWrite).unwrap();
    sim.inject_fault(UNMAP, 1, Errno::EIO).unwrap();
    drop(m);
    assert!(buf.is_mapped());
    assert_eq!(c.orphaned_mappings(), 1);
    assert_eq!(sim.mappings().len(), 1);
    assert_eq!(c.unmap_all().unwrap(), 4096);
    assert_eq!(c.orphaned_mappings(), 0);
    assert!(!buf.is_mapped(), "the kernel confirmed the range gone");
    assert!(sim.mappings().is_empty());
}

#[test]
fn item6_unmap_reports_and_try_unmap_hands_the_guard_back() {
    let sim = Simulator::new();
    let c = type1v2(&sim);
    let buf = DmaBuffer::new(8192).unwrap();
    let m = c.map(&buf, 0x20_0000, DmaAccess::ReadWrite).unwrap();
    sim.inject_fault(UNMAP, 1, Errno::EIO).unwrap();
    let e = m.try_unmap().unwrap_err();
    let want = DmaError::Ioctl {
        ioctl: UNMAP,
        iova: 0x20_0000,
        size: 8192,
        errno: Errno::EIO,
    };
    assert_eq!(e.error, want);
    assert_eq!((e.mapping.iova(), e.mapping.size()), (0x20_0000, 8192));
    assert_eq!(c.orphaned_mappings(), 0, "the guard is still alive");
    e.mapping.try_unmap().unwrap();
    assert!(!buf.is_mapped());
    // `unmap` reports the failure and leaves the pages with the container.
    let m = c.map(&buf, 0x20_0000, DmaAccess::ReadWrite).unwrap();
    sim.inject_fault(UNMAP, 1, Errno::EIO).unwrap();
    assert_eq!(m.unmap().unwrap_err(), want);
    assert_eq!(c.orphaned_mappings(), 1);
    assert!(buf.is_mapped());
    // unmap_raw over the range (type1v2: every mapping inside goes).
    assert_eq!(c.unmap_raw(0, 1 << 30).unwrap(), 8192);
    assert_eq!(c.orphaned_mappings(), 0);
    assert!(!buf.is_mapped());
}

#[test]
fn item6_type1_v1_needs_an_exact_unmap_to_confirm() {
    let sim = Simulator::new();
    let c = sim
        .open_container()
        .unwrap()
        .attach(sim.open_group(1).unwrap())
        .unwrap()
        .set_iommu::<Type1>()
        .unwrap();
    let buf = DmaBuffer::new(4096).unwrap();
    let m = c.map(&buf, 0x30_0000, DmaAccess::ReadWrite).unwrap();
    sim.inject_fault(UNMAP, 1, Errno::EIO).unwrap();
    drop(m);
    assert_eq!(c.orphaned_mappings(), 1);
    // v1's unmap may stop early: a range that does not name the orphan
    // exactly proves nothing (here it finds nothing).
    assert_eq!(c.unmap_raw(0x40_0000, 4096).unwrap(), 0);
    assert_eq!(c.orphaned_mappings(), 1);
    assert_eq!(c.unmap_raw(0x30_0000, 4096).unwrap(), 4096);
    assert_eq!(c.orphaned_mappings(), 0);
    assert!(!buf.is_mapped());
}

#[test]
fn item6_release_groups_confirms_and_a_leaked_guard_stays_leaked() {
    let sim = Simulator::new();
    let c = type1v2(&sim);
    let failed = DmaBuffer::new(4096).unwrap();
    let leaked = DmaBuffer::new(4096).unwrap();
    let m = c.map(&failed, 0x10_0000, DmaAccess::ReadWrite).unwrap();
    std::mem::forget(c.map(&leaked, 0x20_0000, DmaAccess::ReadWrite).unwrap());
    sim.inject_fault(UNMAP, 1, Errno::EIO).unwrap();
    drop(m);
    let (_unset, _groups) = c.release_groups().map_err(|e| e.error).unwrap();
    assert!(sim.mappings().is_empty());
    assert!(!failed.is_mapped(), "an orphan is released once confirmed");
    // Nothing recorded the forgotten guard: its pages stay leaked for good.
    assert!(leaked.is_mapped());
}

#[test]
fn item6_release_groups_keeps_an_orphan_unless_the_kernel_confirms_nothing_is_mapped() {
    // With an orphan pending, the last group leaving is confirmed by an
    // unmap-all: EINVAL (VFIO's container has no driver any more) or success
    // (iommufd's compatibility container, which keeps its mappings) frees
    // the pages; any other answer keeps them.
    let sim = Simulator::new();
    let c = type1v2(&sim);
    let failed = DmaBuffer::new(4096).unwrap();
    let m = c.map(&failed, 0x10_0000, DmaAccess::ReadWrite).unwrap();
    sim.inject_fault(UNMAP, 1, Errno::EIO).unwrap();
    drop(m);
    // the guard's unmap failed; the release's unmap-all fails too
    sim.inject_fault(UNMAP, 1, Errno::EIO).unwrap();
    let (_unset, _groups) = c.release_groups().map_err(|e| e.error).unwrap();
    assert!(sim.mappings().is_empty(), "the last group took the mapping");
    assert!(failed.is_mapped(), "not confirmed: the pages stay");
}

// ---- item 7: the planner at the top of the IOVA space ----------------------------------

#[test]
fn item7_plan_handles_an_aperture_ending_at_2_pow_64() {
    // One DMA request filling the top half of the IOVA space.
    let p = plan(0, &[1 << 63], 1 << 63, 256).unwrap();
    assert_eq!(p.aperture, Aperture::new(1 << 63, 1 << 63).unwrap());
    assert_eq!(p.aperture.end(), u64::MAX);
    assert_eq!(p.dma, vec![(1 << 63, 1 << 63)]);
    // A request and a bank sharing it.
    let p = plan(1, &[1 << 62], 1 << 63, 256).unwrap();
    assert_eq!(p.dma, vec![(1 << 63, 1 << 62)]);
    assert_eq!(p.msi_banks, vec![(1 << 63) + (1 << 62)]);
    // Sizes whose window counts would overflow a sum.
    assert!(plan(0, &[u64::MAX, u64::MAX], 0, 256).is_err());
    assert!(plan(255, &[u64::MAX], 0, 256).is_err());
}

// ---- item 8: no simulator call holds the machine for unbounded time ---------------------

#[test]
fn item8_a_huge_factorial_returns_at_once() {
    let sim = Simulator::new();
    let c = type1v2(&sim);
    let dev = c.open_device(BDF).unwrap();
    let bar0 = dev.region(0).unwrap();
    bar0.write_u32(0x08, 12).unwrap();
    assert_eq!(bar0.read_u32(0x08).unwrap(), 479_001_600);
    bar0.write_u32(0x08, 13).unwrap();
    assert_eq!(bar0.read_u32(0x08).unwrap(), 1_932_053_504); // 13! mod 2^32
    // u32::MAX used to loop 4 billion times under the simulator's lock: the
    // write must come back (a stall detector, not a speed goal).
    let (tx, rx) = mpsc::channel();
    std::thread::scope(|s| {
        s.spawn(|| {
            let r = bar0
                .write_u32(0x08, u32::MAX)
                .and_then(|()| bar0.read_u32(0x08));
            let _ = tx.send(r);
        });
        let got = rx.recv_timeout(Duration::from_secs(60));
        assert_eq!(got.map_err(|_| "the simulator stalled"), Ok(Ok(0)));
    });
}

// ---- item 10: refused maps are explained from the IOMMU's current ranges ---------------

/// Groups 1 and 2, each with an edu; group 2 reserves 0x800_0000..=0x80f_ffff
/// (as an SMMU's MSI window is reserved).
fn reserved_sim() -> Simulator {
    Simulator::builder()
        .group(SimGroup::new(1).device(SimDevice::edu(BDF)))
        .group(
            SimGroup::new(2)
                .reserved(0x800_0000, 0x80f_ffff)
                .device(SimDevice::edu("0000:02:00.0")),
        )
        .build()
        .unwrap()
}

#[test]
fn item10_attach_more_with_live_mappings_then_a_refusal_from_fresh_ranges() {
    let sim = reserved_sim();
    let c = type1v2(&sim);
    let buf = DmaBuffer::new(4096).unwrap();
    // Usable before group 2 joins; the explanation cache (if any) warms up.
    c.map(&buf, 0x800_0000, DmaAccess::ReadWrite)
        .unwrap()
        .unmap()
        .unwrap();
    assert!(matches!(
        c.map(&buf, 0xfee0_0000, DmaAccess::ReadWrite),
        Err(DmaError::OutsideRanges { .. })
    ));
    let other = DmaBuffer::new(4096).unwrap();
    let live = c.map(&other, 0x10_0000, DmaAccess::ReadWrite).unwrap();
    // Friction: attaching while a mapping lives compiles and works.
    c.attach_more(sim.open_group(2).unwrap())
        .map_err(|(_, e)| e)
        .unwrap();
    assert_eq!(c.groups().len(), 2);
    assert!(
        c.iommu_info()
            .unwrap()
            .iova_ranges
            .iter()
            .all(|r| !r.contains(0x800_0000, 4096))
    );
    assert_eq!(
        c.map(&buf, 0x800_0000, DmaAccess::ReadWrite).unwrap_err(),
        DmaError::OutsideRanges {
            iova: 0x800_0000,
            size: 4096
        }
    );
    drop(live);
}

#[test]
fn item10_a_group_whose_reserved_region_holds_a_mapping_cannot_join() {
    let sim = reserved_sim();
    let c = type1v2(&sim);
    let buf = DmaBuffer::new(4096).unwrap();
    let m = c.map(&buf, 0x800_0000, DmaAccess::ReadWrite).unwrap();
    let (group, error) = c.attach_more(sim.open_group(2).unwrap()).unwrap_err();
    assert!(matches!(
        error,
        typed_vfio::GroupError::Ioctl {
            errno: Errno::EINVAL,
            ..
        }
    ));
    drop(m);
    c.attach_more(group).map_err(|(_, e)| e).unwrap();
}

// ---- frictions --------------------------------------------------------------------------

#[test]
fn friction_stacked_faults_each_count_every_call() {
    let sim = Simulator::new();
    let c = type1v2(&sim);
    let dev = c.open_device(BDF).unwrap();
    let bar0 = dev.region(0).unwrap();
    sim.inject_fault("pread", 1, Errno::EIO).unwrap();
    sim.inject_fault("pread", 2, Errno::EINTR).unwrap();
    let outcomes: Vec<_> = (0..3).map(|_| bar0.read_u32(0).is_ok()).collect();
    assert_eq!(outcomes, [false, false, true], "fail, fail, ok");
    // Two faults due at one call: that call and the next fail.
    sim.inject_fault("pread", 1, Errno::EIO).unwrap();
    sim.inject_fault("pread", 1, Errno::EIO).unwrap();
    let outcomes: Vec<_> = (0..3).map(|_| bar0.read_u32(0).is_ok()).collect();
    assert_eq!(outcomes, [false, false, true]);
}

#[test]
fn friction_intx_mask_before_an_eventfd_says_why() {
    let sim = Simulator::new();
    let c = type1v2(&sim);
    let dev = c.open_device(BDF).unwrap();
    let intx = PciIrq::Intx as u32;
    let not_enabled = |action| DeviceError::IrqNotEnabled {
        ioctl: "VFIO_DEVICE_SET_IRQS",
        index: intx,
        action,
        errno: Errno::EINVAL,
    };
    assert_eq!(dev.mask_irq(intx, 0, 1).unwrap_err(), not_enabled("mask"));
    assert_eq!(
        dev.unmask_irq(intx, 0, 1).unwrap_err(),
        not_enabled("unmask")
    );
    let efd = eventfd();
    dev.set_irq_eventfd(intx, 0, efd.as_fd()).unwrap();
    dev.mask_irq(intx, 0, 1).unwrap();
    dev.unmask_irq(intx, 0, 1).unwrap();
    dev.disable_irq(intx).unwrap();
    assert_eq!(dev.mask_irq(intx, 0, 1).unwrap_err(), not_enabled("mask"));
}

#[test]
fn friction_dma_buffers_are_sync_and_errors_compare() {
    fn shared<T: Sync + Send>(_: &T) {}
    let buf = DmaBuffer::new(0).unwrap();
    shared(&buf);
    assert_eq!(buf.len(), typed_vfio::page_size());
    assert_eq!(
        buf.read_u32(2).unwrap_err(),
        DmaError::OutOfBounds {
            offset: 2,
            len: 4,
            size: buf.len() as u64
        }
    );
    buf.write_u32_le(8, 0x1122_3344).unwrap();
    buf.write_u16_be(12, 0xaabb).unwrap();
    let mut raw = [0u8; 6];
    buf.read(8, &mut raw).unwrap();
    assert_eq!(raw, [0x44, 0x33, 0x22, 0x11, 0xaa, 0xbb]);
    assert_eq!(buf.read_u32_le(8).unwrap(), 0x1122_3344);
    assert_eq!(buf.read_u32_be(8).unwrap(), 0x4433_2211);
}
