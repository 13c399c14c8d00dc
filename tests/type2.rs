//! The PAMU ("type2") extension on the simulated kernel, in both of its
//! modes: strict (errors returned) and SDK (errors swallowed as the shipped
//! driver did). Every rule of shared/type2.md gives the same typed error in
//! both modes; property tests drive random plans against a reference model
//! of the rules.

use std::os::fd::AsFd;

use nix::sys::eventfd::{EfdFlags, EventFd};
use typed_vfio::sim::{DmaFaultReason, PamuMode, SimDevice, SimGroup, Simulator};
use typed_vfio::type2::{Fresh, HasGeometry, PlanError, Ready, plan};
use typed_vfio::{
    Aperture, Container, ContainerError, DeviceError, DmaAccess, Errno, PamuId, PamuPlatform,
    PciIrq, StashCache, Type1v2, Type2, Type2Error, WindowHolder,
};

const MODES: [PamuMode; 2] = [PamuMode::Strict, PamuMode::Sdk];
const BDF: &str = "0000:01:00.0";
/// 1 MiB aperture at 16 MiB, 16 windows of 64 KiB.
const START: u64 = 0x100_0000;
const SIZE: u64 = 0x10_0000;
const WS: u64 = 0x1_0000;

fn sim(mode: PamuMode, banks: u32) -> Simulator {
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

fn geometry(sim: &Simulator) -> Container<Type2<HasGeometry>> {
    fresh(sim)
        .set_geometry(Aperture::new(START, SIZE).unwrap())
        .unwrap()
}

fn ready(sim: &Simulator) -> Container<Type2<Ready>> {
    geometry(sim).set_windows(16).unwrap()
}

fn eventfd() -> EventFd {
    EventFd::from_value_and_flags(0, EfdFlags::EFD_CLOEXEC | EfdFlags::EFD_NONBLOCK).unwrap()
}

#[test]
fn the_platform_check_finds_fsl_pamu_and_nothing_else() {
    assert!(matches!(
        Simulator::new().pamu_platform(),
        Err(Type2Error::NoPamuNode { .. })
    ));
    assert!(sim(PamuMode::Strict, 1).pamu_platform().is_ok());
    let dir = std::env::temp_dir().join(format!("tvfio-dt-{}", std::process::id()));
    let node = dir.join("soc@ffe000000").join("iommu@20000");
    std::fs::create_dir_all(&node).unwrap();
    std::fs::write(node.join("compatible"), b"fsl,pamu-v1.0\0fsl,pamu-x\0").unwrap();
    assert!(PamuPlatform::detect_in(&dir).is_none());
    std::fs::write(node.join("compatible"), b"fsl,pamu-v1.0\0fsl,pamu\0").unwrap();
    assert!(PamuPlatform::detect_in(&dir).is_some());
    std::fs::remove_dir_all(&dir).unwrap();
    // This host (x86_64 CI, or the rig) has no PAMU.
    if cfg!(target_arch = "x86_64") {
        assert!(matches!(
            PamuPlatform::detect(),
            Err(Type2Error::NoPamuNode { .. })
        ));
    }
}

#[test]
fn set_iommu_picks_the_offered_id_and_refuses_a_kernel_without_pamu() {
    for (id, want) in [(PamuId::Sdk, 2), (PamuId::OpenIl, 7)] {
        let sim = Simulator::builder()
            .pamu(PamuMode::Strict)
            .pamu_id(id)
            .group(SimGroup::new(1).device(SimDevice::edu(BDF)))
            .build()
            .unwrap();
        let attached = sim
            .open_container()
            .unwrap()
            .attach(sim.open_group(1).unwrap())
            .unwrap();
        // A PAMU SoC has no type1.
        assert!(!attached.supports::<Type1v2>().unwrap());
        let c = attached
            .set_iommu_type2(sim.pamu_platform().unwrap())
            .unwrap();
        assert_eq!(c.pamu_id(), want);
    }
    // An x86 kernel with the explicit opt-in: neither id is offered; the
    // container comes back.
    let sim = Simulator::new();
    let attached = sim
        .open_container()
        .unwrap()
        .attach(sim.open_group(1).unwrap())
        .unwrap();
    // SAFETY: the simulated kernel is no POWER host: ids 2 and 7 reach no
    // sPAPR driver here (and the simulator offers neither without a PAMU).
    let platform = unsafe { PamuPlatform::assume_present() };
    let err = attached.set_iommu_type2(platform).unwrap_err();
    assert!(matches!(err.error, ContainerError::Unsupported { .. }));
    assert!(err.container.set_iommu::<Type1v2>().is_ok());
}

#[test]
fn defaults_geometry_unconfigured_256_windows_bank_count() {
    for mode in MODES {
        let sim = sim(mode, 3);
        let c = fresh(&sim);
        assert_eq!(c.geometry().unwrap(), (0, (1 << 36) - 1));
        assert_eq!(c.window_count().unwrap(), 256);
        assert_eq!(c.max_windows(), 256);
        assert_eq!(c.msi_bank_count().unwrap(), 3);
        let c = c.set_geometry(Aperture::new(START, SIZE).unwrap()).unwrap();
        assert_eq!(c.geometry().unwrap(), (START, START + SIZE - 1));
        let c = c.set_windows(16).unwrap();
        assert_eq!(c.window_count().unwrap(), 16);
        assert_eq!(c.window_size(), WS);
    }
}

#[test]
fn bad_apertures_are_typed_errors() {
    assert!(matches!(
        Aperture::new(0, 0x3000),
        Err(Type2Error::ApertureSize {
            start: 0,
            size: 0x3000
        })
    ));
    assert!(matches!(
        Aperture::new(0, 0x800),
        Err(Type2Error::ApertureSize { size: 0x800, .. })
    ));
    assert!(matches!(
        Aperture::new(0, 0),
        Err(Type2Error::ApertureSize { size: 0, .. })
    ));
    assert!(matches!(
        Aperture::new(0x1000, 0x2000),
        Err(Type2Error::ApertureUnaligned {
            start: 0x1000,
            size: 0x2000
        })
    ));
    assert!(matches!(
        Aperture::new(1 << 63, 1 << 63),
        Ok(a) if a.end() == u64::MAX
    ));
    assert!(Aperture::new(0x4000, 0x1000).is_ok());
}

#[test]
fn bad_window_counts_are_typed_errors_and_the_container_comes_back() {
    for mode in MODES {
        let sim = sim(mode, 1);
        let mut c = geometry(&sim);
        for bad in [0, 3, 12, 512] {
            let err = c.set_windows(bad).unwrap_err();
            assert!(
                matches!(err.error, Type2Error::WindowCount { windows, max: 256 } if windows == bad),
                "{mode:?} {bad}: {}",
                err.error
            );
            c = err.container;
        }
        let c = c.set_windows(256).unwrap();
        assert_eq!(c.window_count().unwrap(), 256);
    }
}

#[test]
fn a_failed_set_attr_is_reported_in_strict_mode_and_caught_by_read_back_in_sdk_mode() {
    for mode in MODES {
        let sim = sim(mode, 1);
        let c = fresh(&sim);
        sim.inject_fault("VFIO_IOMMU_PAMU_SET_ATTR", 1, Errno::ENOMEM)
            .unwrap();
        let err = c
            .set_geometry(Aperture::new(START, SIZE).unwrap())
            .unwrap_err();
        match (mode, &err.error) {
            (PamuMode::Strict, Type2Error::Ioctl { ioctl, errno, .. }) => {
                assert_eq!(*ioctl, "VFIO_IOMMU_PAMU_SET_ATTR");
                assert_eq!(*errno, Errno::ENOMEM);
            }
            (
                PamuMode::Sdk,
                Type2Error::NotApplied {
                    attribute,
                    wrote,
                    read,
                },
            ) => {
                assert_eq!(*attribute, "GEOMETRY");
                assert_eq!(*wrote, (START, START + SIZE - 1));
                assert_eq!(*read, (0, (1 << 36) - 1));
            }
            other => panic!("{mode:?}: {other:?}"),
        }
        // Retry on the container handed back.
        let c = err
            .container
            .set_geometry(Aperture::new(START, SIZE).unwrap())
            .unwrap();
        sim.inject_fault("VFIO_IOMMU_PAMU_SET_ATTR", 1, Errno::EIO)
            .unwrap();
        let err = c.set_windows(8).unwrap_err();
        match mode {
            PamuMode::Strict => assert!(matches!(
                err.error,
                Type2Error::Ioctl {
                    errno: Errno::EIO,
                    ..
                }
            )),
            PamuMode::Sdk => assert!(matches!(
                err.error,
                Type2Error::NotApplied {
                    attribute: "WINDOWS",
                    wrote: (8, 0),
                    read: (256, 0)
                }
            )),
        }
        let mut c = err.container.set_windows(8).unwrap();
        c.set_stash(1, StashCache::L2).unwrap();
        sim.inject_fault("VFIO_IOMMU_PAMU_SET_ATTR", 1, Errno::EINVAL)
            .unwrap();
        let err = c.set_stash(2, StashCache::L3).unwrap_err();
        match mode {
            PamuMode::Strict => assert!(matches!(err, Type2Error::Ioctl { .. })),
            PamuMode::Sdk => assert!(matches!(
                err,
                Type2Error::NotApplied {
                    attribute: "PAMU_STASH",
                    wrote: (2, 3),
                    read: (1, 2)
                }
            )),
        }
    }
}

#[test]
fn msi_bank_rules_give_the_same_typed_errors_in_both_modes() {
    for mode in MODES {
        let sim = sim(mode, 2);
        let c = ready(&sim);
        assert!(matches!(
            c.map_msi_bank(2, START),
            Err(Type2Error::BankIndex { index: 2, count: 2 })
        ));
        assert!(matches!(
            c.map_msi_bank(0, START + SIZE),
            Err(Type2Error::OutsideAperture { iova, .. }) if iova == START + SIZE
        ));
        assert!(matches!(
            c.map_msi_bank(0, START - 1),
            Err(Type2Error::OutsideAperture { .. })
        ));
        // The iova is rounded down to its window.
        let b0 = c.map_msi_bank(0, START + 15 * WS + 0x123).unwrap();
        assert_eq!(b0.window(), 15);
        assert!(matches!(
            c.map_msi_bank(0, START + 14 * WS),
            Err(Type2Error::BankMapped { index: 0, .. })
        ));
        assert!(matches!(
            c.map_msi_bank(1, START + 15 * WS),
            Err(Type2Error::WindowBusy {
                window: 15,
                holder: WindowHolder::MsiBank { index: 0 },
                ..
            })
        ));
        let b1 = c.map_msi_bank(1, START + 14 * WS).unwrap();
        assert_eq!(c.windows_in_use().len(), 2);
        b1.unmap().unwrap();
        drop(b0);
        assert!(c.windows_in_use().is_empty());
        // Unmapped banks may be mapped again.
        let _b0 = c.map_msi_bank(0, START).unwrap();
    }
}

#[test]
fn dma_rules_give_the_same_typed_errors_in_both_modes() {
    for mode in MODES {
        let sim = sim(mode, 1);
        let c = ready(&sim);
        let two = sim.contiguous_buffer(2 * WS as usize, WS).unwrap();
        assert!(matches!(
            c.map(&two, START + 0x1000, DmaAccess::ReadWrite),
            Err(Type2Error::WindowUnaligned { iova, window_size: WS }) if iova == START + 0x1000
        ));
        assert!(matches!(
            c.map(&two, START + 15 * WS, DmaAccess::ReadWrite),
            Err(Type2Error::OutsideAperture { .. })
        ));
        let small = sim.contiguous_buffer(0x3000, 0x1000).unwrap();
        assert!(matches!(
            c.map(&small, START, DmaAccess::ReadWrite),
            Err(Type2Error::PartialWindows {
                size: 0x3000,
                window_size: WS
            })
        ));
        let fragmented = sim.contiguous_buffer(WS as usize, 0x4000).unwrap();
        assert!(matches!(
            c.map(&fragmented, START, DmaAccess::ReadWrite),
            Err(Type2Error::NotContiguous {
                contiguity: 0x4000,
                window_size: WS
            })
        ));
        assert!(!sim.pamu_enabled());
        let m = c.map(&two, START + 2 * WS, DmaAccess::ReadWrite).unwrap();
        assert_eq!(m.windows(), 2..4);
        assert!(sim.pamu_enabled(), "the first MAP_DMA enables the domain");
        assert!(two.buffer().is_mapped());
        let one = sim.contiguous_buffer(WS as usize, WS).unwrap();
        assert!(matches!(
            c.map(&one, START + 3 * WS, DmaAccess::ReadWrite),
            Err(Type2Error::WindowBusy {
                window: 3,
                holder: WindowHolder::Dma { iova },
                ..
            }) if iova == START + 2 * WS
        ));
        let bank = c.map_msi_bank(0, START + 4 * WS).unwrap();
        assert!(matches!(
            c.map(&one, START + 4 * WS, DmaAccess::ReadWrite),
            Err(Type2Error::WindowBusy {
                holder: WindowHolder::MsiBank { index: 0 },
                ..
            })
        ));
        drop(bank);
        assert!(matches!(
            c.map_msi_bank(0, START + 2 * WS),
            Err(Type2Error::WindowBusy {
                window: 2,
                holder: WindowHolder::Dma { .. },
                ..
            })
        ));
        let m2 = c.map(&one, START, DmaAccess::DeviceReads).unwrap();
        assert_eq!(sim.mappings().len(), 2);
        drop(m);
        assert!(sim.pamu_enabled());
        m2.unmap().unwrap();
        assert!(!sim.pamu_enabled(), "the last UNMAP_DMA disables it");
        assert!(!two.buffer().is_mapped());
        assert!(sim.mappings().is_empty());
    }
}

#[test]
fn reconfiguring_after_the_guards_are_gone() {
    for mode in MODES {
        let sim = sim(mode, 1);
        let c = ready(&sim);
        let buf = sim.contiguous_buffer(WS as usize, WS).unwrap();
        drop(c.map(&buf, START, DmaAccess::ReadWrite).unwrap());
        let c = c.set_windows(4).unwrap();
        assert_eq!(c.window_size(), SIZE / 4);
        // A 64 KiB buffer is now a partial window.
        assert!(matches!(
            c.map(&buf, START, DmaAccess::ReadWrite),
            Err(Type2Error::PartialWindows { .. })
        ));
        let c = c
            .set_geometry(Aperture::new(0, 0x4_0000).unwrap())
            .unwrap()
            .set_windows(4)
            .unwrap();
        let m = c.map(&buf, 0x1_0000, DmaAccess::ReadWrite).unwrap();
        assert_eq!(m.windows(), 1..2);
    }
}

#[test]
fn msi_needs_the_banks_mapped_first() {
    for mode in MODES {
        let sim = sim(mode, 2);
        let c = ready(&sim);
        let dev = c.open_device(BDF).unwrap();
        dev.set_bus_master(true).unwrap();
        let e = eventfd();
        let err = dev
            .set_irq_eventfd(PciIrq::Msi as u32, 0, e.as_fd())
            .unwrap_err();
        assert!(matches!(
            err,
            DeviceError::MsiBanksUnmapped {
                index: 1,
                mapped: 0,
                count: 2
            }
        ));
        assert_eq!(
            sim.calls("VFIO_DEVICE_SET_IRQS"),
            0,
            "refused before any ioctl"
        );
        let b0 = c.map_msi_bank(0, START + 15 * WS).unwrap();
        assert!(matches!(
            dev.set_irq_eventfd(PciIrq::Msi as u32, 0, e.as_fd()),
            Err(DeviceError::MsiBanksUnmapped { mapped: 1, .. })
        ));
        let b1 = c.map_msi_bank(1, START + 14 * WS).unwrap();
        dev.set_irq_eventfd(PciIrq::Msi as u32, 0, e.as_fd())
            .unwrap();
        dev.region(0).unwrap().write_u32(0x60, 1).unwrap();
        assert_eq!(e.read().unwrap(), 1);
        dev.disable_irq(PciIrq::Msi as u32).unwrap();
        drop((b0, b1));
        // INTx needs no bank.
        dev.set_irq_eventfd(PciIrq::Intx as u32, 0, e.as_fd())
            .unwrap();
    }
}

#[test]
fn the_kernel_refuses_msi_when_a_swallowed_bank_map_left_no_doorbell() {
    // In SDK mode a failed MAP_MSI_BANK returns 0: the crate believes the
    // bank mapped, and the kernel's own MSI check (EINVAL) is what remains.
    let sim = sim(PamuMode::Sdk, 1);
    let c = ready(&sim);
    let dev = c.open_device(BDF).unwrap();
    sim.inject_fault("VFIO_IOMMU_PAMU_MAP_MSI_BANK", 1, Errno::ENOMEM)
        .unwrap();
    let _bank = c.map_msi_bank(0, START).unwrap();
    let e = eventfd();
    assert!(matches!(
        dev.set_irq_eventfd(PciIrq::Msi as u32, 0, e.as_fd()),
        Err(DeviceError::IndexedIoctl {
            ioctl: "VFIO_DEVICE_SET_IRQS",
            errno: Errno::EINVAL,
            ..
        })
    ));
    // Strict mode reports the failed bank map itself.
    let sim = self::sim(PamuMode::Strict, 1);
    let c = ready(&sim);
    sim.inject_fault("VFIO_IOMMU_PAMU_MAP_MSI_BANK", 1, Errno::ENOMEM)
        .unwrap();
    assert!(matches!(
        c.map_msi_bank(0, START),
        Err(Type2Error::Ioctl {
            ioctl: "VFIO_IOMMU_PAMU_MAP_MSI_BANK",
            errno: Errno::ENOMEM,
            value: 0,
            ..
        })
    ));
    assert!(c.map_msi_bank(0, START).is_ok(), "nothing was recorded");
}

#[test]
fn a_bank_count_read_failing_in_set_iommu_is_retried_by_the_first_bank_map() {
    // Found by fuzz/fuzz_targets/pamu_sequence.rs (reproducer in
    // fuzz/regressions/pamu_sequence/bank-count-read-failing-in-set-iommu):
    // set_iommu_type2 took a failed GET_MSI_BANK_COUNT for 0 banks, so every
    // bank map was BankIndex { count: 0 } and MSI was refused for good.
    for mode in MODES {
        let sim = sim(mode, 2);
        let attached = sim
            .open_container()
            .unwrap()
            .attach(sim.open_group(1).unwrap())
            .unwrap();
        sim.inject_fault("VFIO_IOMMU_PAMU_GET_MSI_BANK_COUNT", 1, Errno::EIO)
            .unwrap();
        let c = attached
            .set_iommu_type2(sim.pamu_platform().unwrap())
            .unwrap()
            .set_geometry(Aperture::new(START, SIZE).unwrap())
            .unwrap()
            .set_windows(16)
            .unwrap();
        let dev = c.open_device(BDF).unwrap();
        let e = eventfd();
        // Unknown count: MSI is refused before any ioctl.
        assert!(matches!(
            dev.set_irq_eventfd(PciIrq::Msi as u32, 0, e.as_fd()),
            Err(DeviceError::MsiBanksUnmapped { mapped: 0, .. })
        ));
        // The first bank map reads the count again; its failure is the error.
        sim.inject_fault("VFIO_IOMMU_PAMU_GET_MSI_BANK_COUNT", 1, Errno::ENOMEM)
            .unwrap();
        assert!(matches!(
            c.map_msi_bank(0, START + 15 * WS),
            Err(Type2Error::Ioctl {
                ioctl: "VFIO_IOMMU_PAMU_GET_MSI_BANK_COUNT",
                errno: Errno::ENOMEM,
                ..
            })
        ));
        let calls = sim.calls("VFIO_IOMMU_PAMU_GET_MSI_BANK_COUNT");
        let b0 = c.map_msi_bank(0, START + 15 * WS).unwrap();
        assert!(matches!(
            c.map_msi_bank(2, START),
            Err(Type2Error::BankIndex { index: 2, count: 2 })
        ));
        let b1 = c.map_msi_bank(1, START + 14 * WS).unwrap();
        assert_eq!(
            sim.calls("VFIO_IOMMU_PAMU_GET_MSI_BANK_COUNT"),
            calls + 1,
            "read once, then known"
        );
        dev.set_irq_eventfd(PciIrq::Msi as u32, 0, e.as_fd())
            .unwrap();
        dev.disable_irq(PciIrq::Msi as u32).unwrap();
        drop((b0, b1));
    }
}

#[test]
fn edu_dma_goes_through_the_pamu_windows() {
    for mode in MODES {
        let sim = sim(mode, 1);
        let c = ready(&sim);
        let dev = c.open_device(BDF).unwrap();
        dev.set_bus_master(true).unwrap();
        let buf = sim.contiguous_buffer(WS as usize, WS).unwrap();
        buf.buffer().write(0, b"through a window").unwrap();
        let m = c.map(&buf, START + WS, DmaAccess::ReadWrite).unwrap();
        let bar0 = dev.region(0).unwrap();
        let run = |src: u64, dst: u64, cmd: u32| {
            for (reg, v) in [
                (0x80, src as u32),
                (0x88, dst as u32),
                (0x90, 16),
                (0x98, cmd),
            ] {
                bar0.write_u32(reg, v).unwrap();
            }
        };
        run(m.iova(), 0x4_0000, 1);
        run(0x4_0000, m.iova() + 0x100, 3);
        let mut back = [0u8; 16];
        buf.buffer().read(0x100, &mut back).unwrap();
        assert_eq!(&back, b"through a window");
        assert!(sim.dma_faults().is_empty());
        drop(m);
        run(START + WS, 0x4_0000, 1);
        let faults = sim.take_dma_faults();
        assert_eq!(faults.len(), 1);
        assert_eq!(faults[0].reason, DmaFaultReason::Unmapped);
    }
}

#[test]
fn releasing_the_groups_forgets_the_pamu_configuration() {
    let sim = sim(PamuMode::Sdk, 1);
    let c = ready(&sim);
    let (unset, groups) = c.release_groups().map_err(|e| e.error).unwrap();
    let c = unset
        .attach(groups.into_iter().next().unwrap())
        .unwrap()
        .set_iommu_type2(sim.pamu_platform().unwrap())
        .unwrap();
    assert_eq!(c.geometry().unwrap(), (0, (1 << 36) - 1));
}

// ---- the planner ---------------------------------------------------------------

#[test]
fn the_planner_keeps_windows_for_the_banks() {
    let p = plan(2, &[0x1_0000, 0x3_0000], 0x100_0000, 256).unwrap();
    // 16 + 48 DMA windows + 2 banks = 66 → 128 windows of 4 KiB: 512 KiB,
    // as small as 8 windows of 64 KiB; the smaller window size wins.
    assert_eq!(p.window_size, 0x1000);
    assert_eq!(p.windows, 128);
    assert_eq!(p.aperture, Aperture::new(0x100_0000, 0x8_0000).unwrap());
    assert_eq!(p.dma, vec![(0x100_0000, 0x1_0000), (0x101_0000, 0x3_0000)]);
    assert_eq!(p.msi_banks, vec![0x104_0000, 0x104_1000]);
    // With at most 16 windows: 2 + 6 + 2 = 10 → 16 windows of 32 KiB.
    let p = plan(2, &[0x1_0000, 0x3_0000], 0, 16).unwrap();
    assert_eq!((p.window_size, p.windows), (0x8000, 16));
    assert_eq!(p.msi_banks, vec![0x4_0000, 0x4_8000]);
    assert_eq!(
        plan(1, &[0], 0, 256),
        Err(PlanError::EmptyRequest { index: 0 })
    );
    assert_eq!(
        plan(200, &[1; 100], 0, 256),
        Err(PlanError::TooManyWindows {
            needed: 300,
            max: 256
        })
    );
}

/// A deterministic PRNG (SplitMix64): no dependency, reproducible failures.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// The reference: the smallest aperture over every power-of-two window size,
/// computed independently of the planner's loop.
fn reference_min_aperture(banks: u32, sizes: &[u64], max: u32) -> Option<u64> {
    (12..40)
        .filter_map(|shift| {
            let ws = 1u64 << shift;
            let n: u64 = sizes.iter().map(|s| s.div_ceil(ws)).sum::<u64>() + u64::from(banks);
            let n = n.max(1).next_power_of_two();
            (n <= u64::from(max)).then_some(n * ws)
        })
        .min()
}

#[test]
fn planner_property_plans_are_valid_minimal_and_work_on_both_kernels() {
    let mut rng = Rng(0x7c0f_fee0_2013);
    for case in 0..300 {
        let banks = rng.below(4) as u32;
        let count = rng.below(5) as usize;
        let sizes: Vec<u64> = (0..count)
            .map(|_| {
                let shift = 12 + rng.below(10);
                1 + rng.below(1 << shift)
            })
            .collect();
        let max = [16, 64, 256][rng.below(3) as usize];
        let base = rng.below(1 << 32);
        let p = match plan(banks, &sizes, base, max) {
            Ok(p) => p,
            Err(e) => panic!("case {case}: {banks} {sizes:?} {max}: {e}"),
        };
        // The rules.
        let a = p.aperture;
        assert!(a.size().is_power_of_two() && a.size() >= 4096 && a.start() % a.size() == 0);
        assert!(a.start() >= base);
        assert!(p.windows.is_power_of_two() && p.windows <= max);
        assert_eq!(p.window_size * u64::from(p.windows), a.size());
        let mut used = Vec::new();
        for (&(iova, len), &want) in p.dma.iter().zip(&sizes) {
            assert!(len >= want && len % p.window_size == 0);
            assert_eq!((iova - a.start()) % p.window_size, 0);
            assert!(a.contains(iova, len));
            used.extend(
                (iova - a.start()) / p.window_size..(iova - a.start() + len) / p.window_size,
            );
        }
        for &iova in &p.msi_banks {
            assert!(a.contains(iova, 4096));
            used.push((iova - a.start()) / p.window_size);
        }
        let n = used.len();
        used.sort_unstable();
        used.dedup();
        assert_eq!(used.len(), n, "case {case}: windows shared");
        // Minimal.
        assert_eq!(
            Some(a.size()),
            reference_min_aperture(banks, &sizes, max),
            "case {case}"
        );
        // And the kernel accepts it, in both modes (small plans only: the
        // buffers are real memory).
        if case % 10 != 0 || a.size() > 1 << 24 {
            continue;
        }
        for mode in MODES {
            let sim = sim(mode, banks);
            let c = fresh(&sim)
                .set_geometry(a)
                .unwrap()
                .set_windows(p.windows)
                .unwrap();
            let bufs: Vec<_> = p
                .dma
                .iter()
                .map(|&(_, len)| sim.contiguous_buffer(len as usize, p.window_size).unwrap())
                .collect();
            let maps: Vec<_> = p
                .dma
                .iter()
                .zip(&bufs)
                .map(|(&(iova, _), b)| c.map(b, iova, DmaAccess::ReadWrite).unwrap())
                .collect();
            let banks_mapped: Vec<_> = p
                .msi_banks
                .iter()
                .enumerate()
                .map(|(i, &iova)| c.map_msi_bank(i as u32, iova).unwrap())
                .collect();
            assert_eq!(
                maps.len() + banks_mapped.len(),
                p.dma.len() + p.msi_banks.len()
            );
        }
    }
}

// ---- random operation sequences against a reference model ---------------------

/// What the reference model predicts for an operation.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    Ok,
    BankIndex,
    BankMapped,
    Outside,
    Unaligned,
    Partial,
    NotContiguous,
    Busy,
}

fn outcome<T>(r: &Result<T, Type2Error>) -> Outcome {
    match r {
        Ok(_) => Outcome::Ok,
        Err(Type2Error::BankIndex { .. }) => Outcome::BankIndex,
        Err(Type2Error::BankMapped { .. }) => Outcome::BankMapped,
        Err(Type2Error::OutsideAperture { .. }) => Outcome::Outside,
        Err(Type2Error::WindowUnaligned { .. }) => Outcome::Unaligned,
        Err(Type2Error::PartialWindows { .. }) => Outcome::Partial,
        Err(Type2Error::NotContiguous { .. }) => Outcome::NotContiguous,
        Err(Type2Error::WindowBusy { .. }) => Outcome::Busy,
        Err(e) => panic!("unexpected error {e}"),
    }
}

/// The rules of type2.md as a tiny model: windows taken, banks mapped.
struct Model {
    start: u64,
    size: u64,
    ws: u64,
    taken: Vec<bool>,
    banks: Vec<bool>,
}

impl Model {
    fn map_bank(&self, index: u32, iova: u64) -> Outcome {
        if index as usize >= self.banks.len() {
            return Outcome::BankIndex;
        }
        if self.banks[index as usize] {
            return Outcome::BankMapped;
        }
        if iova < self.start || iova >= self.start + self.size {
            return Outcome::Outside;
        }
        if self.taken[((iova - self.start) / self.ws) as usize] {
            return Outcome::Busy;
        }
        Outcome::Ok
    }

    fn map_dma(&self, iova: u64, len: u64, chunk: u64) -> Outcome {
        if iova < self.start
            || iova
                .checked_add(len)
                .is_none_or(|e| e > self.start + self.size)
        {
            return Outcome::Outside;
        }
        if !(iova - self.start).is_multiple_of(self.ws) {
            return Outcome::Unaligned;
        }
        if !len.is_multiple_of(self.ws) {
            return Outcome::Partial;
        }
        if chunk < self.ws {
            return Outcome::NotContiguous;
        }
        let first = ((iova - self.start) / self.ws) as usize;
        if (first..first + (len / self.ws) as usize).any(|w| self.taken[w]) {
            return Outcome::Busy;
        }
        Outcome::Ok
    }
}

#[test]
fn property_random_window_plans_match_the_reference_model_in_both_modes() {
    for mode in MODES {
        let mut rng = Rng(0x5eed_0000 + mode as u64);
        for round in 0..40 {
            let banks = rng.below(4) as u32;
            let sim = sim(mode, banks);
            let size = 1u64 << (16 + rng.below(6)); // 64 KiB .. 2 MiB
            let start = size * rng.below(64);
            let windows = 1u32 << rng.below(6); // 1 .. 32
            let c = fresh(&sim)
                .set_geometry(Aperture::new(start, size).unwrap())
                .unwrap()
                .set_windows(windows)
                .unwrap();
            let ws = size / u64::from(windows);
            let mut model = Model {
                start,
                size,
                ws,
                taken: vec![false; windows as usize],
                banks: vec![false; banks as usize],
            };
            let mut buffers = Vec::new();
            for _ in 0..12 {
                let len = ws * (1 + rng.below(3)) / [1, 2][rng.below(2) as usize];
                let len = len.max(4096).next_multiple_of(4096);
                let chunk = [ws, ws / 2, ws * 2][rng.below(3) as usize].max(4096);
                buffers.push((sim.contiguous_buffer(len as usize, chunk).unwrap(), chunk));
            }
            let mut dma = Vec::new();
            let mut msi = Vec::new();
            for step in 0..30 {
                let iova = (start + rng.below(u64::from(windows) + 2) * ws)
                    .wrapping_sub(ws)
                    .wrapping_add(if rng.below(5) == 0 { 0x1000 } else { 0 });
                match rng.below(4) {
                    0 => {
                        let index = rng.below(u64::from(banks) + 1) as u32;
                        let want = model.map_bank(index, iova);
                        let got = c.map_msi_bank(index, iova);
                        assert_eq!(outcome(&got), want, "{mode:?} round {round} step {step}");
                        if let Ok(g) = got {
                            model.banks[index as usize] = true;
                            model.taken[g.window() as usize] = true;
                            msi.push(g);
                        }
                    }
                    1 | 2 => {
                        let (buf, chunk) = &buffers[rng.below(buffers.len() as u64) as usize];
                        if buf.buffer().is_mapped() {
                            continue;
                        }
                        let len = buf.len() as u64;
                        let want = model.map_dma(iova, len, *chunk);
                        let got = c.map(buf, iova, DmaAccess::ReadWrite);
                        assert_eq!(outcome(&got), want, "{mode:?} round {round} step {step}");
                        if let Ok(g) = got {
                            for w in g.windows() {
                                model.taken[w as usize] = true;
                            }
                            dma.push(g);
                        }
                    }
                    _ => {
                        if rng.below(2) == 0 && !dma.is_empty() {
                            let g = dma.swap_remove(rng.below(dma.len() as u64) as usize);
                            for w in g.windows() {
                                model.taken[w as usize] = false;
                            }
                            g.unmap().unwrap();
                        } else if !msi.is_empty() {
                            let g = msi.swap_remove(rng.below(msi.len() as u64) as usize);
                            model.taken[g.window() as usize] = false;
                            model.banks[g.index() as usize] = false;
                            g.unmap().unwrap();
                        }
                    }
                }
                // The kernel's view agrees with the model's.
                assert_eq!(sim.pamu_enabled(), !dma.is_empty());
                let busy: Vec<u64> = c.windows_in_use().iter().map(|(w, _)| *w).collect();
                let want: Vec<u64> = (0..u64::from(windows))
                    .filter(|&w| model.taken[w as usize])
                    .collect();
                assert_eq!(busy, want);
            }
        }
    }
}

#[test]
fn huge_page_buffers_are_checked_and_allocated_or_refused_with_the_errno() {
    assert!(matches!(
        typed_vfio::ContiguousBuffer::huge(4096, 3 << 20),
        Err(Type2Error::HugePageSize { size }) if size == 3 << 20
    ));
    assert!(matches!(
        typed_vfio::ContiguousBuffer::huge(4096, 512),
        Err(Type2Error::HugePageSize { size: 512 })
    ));
    // Whether 2 MiB pages are reserved depends on the machine.
    match typed_vfio::ContiguousBuffer::huge(4096, 2 << 20) {
        Ok(b) => {
            assert_eq!(b.len(), 2 << 20);
            assert_eq!(b.contiguity(), 2 << 20);
            assert_eq!(b.buffer().addr() % (2 << 20), 0);
        }
        Err(Type2Error::Dma(typed_vfio::DmaError::Alloc { len: 4096, errno })) => {
            assert!(matches!(errno, Errno::ENOMEM | Errno::EINVAL), "{errno}");
        }
        Err(e) => panic!("{e}"),
    }
    // A simulated buffer cannot reach a real kernel: that is checked at
    // map time (this host has no PAMU container to show it on).
}
