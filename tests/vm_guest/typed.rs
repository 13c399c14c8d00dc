//! Typed-API scenarios on the real kernel: the same operations as the raw
//! tests, through `typed_vfio`'s typestate API, with every error path checked
//! by its typed error and errno.

use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use nix::poll::{PollFd, PollFlags, poll};
use nix::sys::eventfd::{EfdFlags, EventFd};
use typed_vfio::{
    Container, ContainerError, Device, DeviceError, DmaAccess, DmaBuffer, DmaError, DmaModel,
    Group, GroupError, GroupId, NoIommu, PciIrq, Type1, Type1v2,
};

use crate::edu::{EDU_BIG_ENDIAN, EduRegs};
use crate::rig::{self, IommuKind};

// edu BAR0 registers (QEMU docs/specs/edu.rst).
const IDENT: u64 = 0x00;
const LIVENESS: u64 = 0x04;
const IRQ_STATUS: u64 = 0x24;
const IRQ_RAISE: u64 = 0x60;
const IRQ_ACK: u64 = 0x64;
const DMA_SRC: u64 = 0x80;
const DMA_DST: u64 = 0x88;
const DMA_COUNT: u64 = 0x90;
const DMA_CMD: u64 = 0x98;
const DMA_START: u64 = 1;
const DMA_TO_RAM: u64 = 2;
/// The edu device's internal DMA buffer, as a device address.
const EDU_BUF: u64 = 0x40000;
/// PCI command register and its Bus Master bit.
const PCI_COMMAND: u64 = 0x04;
const BUS_MASTER: u16 = 1 << 2;

fn group_ids() -> Vec<GroupId> {
    rig::groups()
        .iter()
        .map(|g| match g.strip_prefix("noiommu-") {
            Some(n) => GroupId::noiommu(n.parse().unwrap()),
            None => GroupId::new(g.parse().unwrap()),
        })
        .collect()
}

fn first() -> (String, GroupId) {
    (rig::devices()[0].clone(), group_ids()[0])
}

fn attached(id: GroupId) -> Container<typed_vfio::Attached> {
    let group = Group::open_id(id).expect("open group");
    Container::open()
        .expect("open container")
        .attach(group)
        .unwrap_or_else(|e| panic!("attach: {e}"))
}

fn eventfd() -> EventFd {
    EventFd::from_value_and_flags(0, EfdFlags::EFD_CLOEXEC | EfdFlags::EFD_NONBLOCK)
        .expect("eventfd")
}

/// Waits for the eventfd to fire; returns its counter.
fn wait(fd: &EventFd, timeout_ms: u16) -> Option<u64> {
    let mut fds = [PollFd::new(fd.as_fd(), PollFlags::POLLIN)];
    match poll(&mut fds, timeout_ms) {
        Ok(1) => fd.read().ok(),
        _ => None,
    }
}

fn set_bus_master(dev: &Device) {
    let cfg = dev.pci_config().unwrap();
    let cmd = cfg.read_u16(PCI_COMMAND).unwrap();
    cfg.write_u16(PCI_COMMAND, cmd | BUS_MASTER).unwrap();
    assert_ne!(
        cfg.read_u16(PCI_COMMAND).unwrap() & BUS_MASTER,
        0,
        "Bus Master did not stick"
    );
}

/// Runs one edu DMA transfer and waits for the engine to finish.
fn edu_dma(dev: &Device, src: u64, dst: u64, count: u64, to_ram: bool) {
    let bar0 = dev.region(0).unwrap();
    bar0.set_reg64(DMA_SRC, src).unwrap();
    bar0.set_reg64(DMA_DST, dst).unwrap();
    bar0.set_reg64(DMA_COUNT, count).unwrap();
    bar0.set_reg64(DMA_CMD, DMA_START | if to_ram { DMA_TO_RAM } else { 0 })
        .unwrap();
    let start = Instant::now();
    while bar0.reg64(DMA_CMD).unwrap() & DMA_START != 0 {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "edu DMA did not finish"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn pattern(n: usize, seed: u8) -> Vec<u8> {
    (0..n)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

/// Dispatches a scenario generic over the DMA model to the configuration's.
macro_rules! with_dma_model {
    ($f:ident) => {
        match rig::iommu() {
            IommuKind::Type1 => $f::<Type1>(),
            IommuKind::Type1v2 => $f::<Type1v2>(),
            other => panic!("{other:?}: not a DMA configuration"),
        }
    };
}

fn set_model<M: typed_vfio::IommuModel>(c: Container<typed_vfio::Attached>) -> Container<M> {
    c.set_iommu::<M>()
        .unwrap_or_else(|e| panic!("set_iommu: {e}"))
}

/// A container with the configuration's IOMMU model and the first device.
macro_rules! open_first {
    ($m:ty) => {{
        let (bdf, id) = first();
        let c = set_model::<$m>(attached(id));
        let dev = c
            .open_device(&bdf)
            .unwrap_or_else(|e| panic!("open_device: {e}"));
        (c, dev)
    }};
}

pub mod common {
    use super::*;

    fn model_for_config() -> fn(Container<typed_vfio::Attached>) -> Result<(), ContainerError> {
        match rig::iommu() {
            IommuKind::Type1 => |c| c.set_iommu::<Type1>().map(drop).map_err(|e| e.error),
            IommuKind::Type1v2 => |c| c.set_iommu::<Type1v2>().map(drop).map_err(|e| e.error),
            IommuKind::NoIommu => |c| c.set_iommu::<NoIommu>().map(drop).map_err(|e| e.error),
            other => panic!("{other:?}"),
        }
    }

    /// Runs `f` with a container in the configuration's model and the first device.
    fn with_device(f: impl FnOnce(&Device, &[&Group])) {
        let (bdf, id) = first();
        let c = attached(id);
        match rig::iommu() {
            IommuKind::Type1 => {
                let c = set_model::<Type1>(c);
                f(
                    &c.open_device(&bdf).unwrap(),
                    &c.groups().collect::<Vec<_>>(),
                );
            }
            IommuKind::Type1v2 => {
                let c = set_model::<Type1v2>(c);
                f(
                    &c.open_device(&bdf).unwrap(),
                    &c.groups().collect::<Vec<_>>(),
                );
            }
            IommuKind::NoIommu => {
                let c = set_model::<NoIommu>(c);
                f(
                    &c.open_device(&bdf).unwrap(),
                    &c.groups().collect::<Vec<_>>(),
                );
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    #[ignore = "needs a VFIO guest: run tests/vm/run"]
    fn typed_container_opens_and_reports_the_configured_model() {
        let c = Container::open().expect("open");
        match rig::iommu() {
            IommuKind::NoIommu => {
                assert!(c.supports::<NoIommu>().unwrap());
                // Where the type1 driver is built (x86, arm64: VFIO_CONTAINER
                // selects it there, not on PowerPC) it answers
                // CHECK_EXTENSION with 1, though it cannot drive a no-IOMMU
                // group (ENODEV at SET_IOMMU; see
                // typed_unsupported_model_hands_the_container_back).
                assert_eq!(c.supports::<Type1v2>().unwrap(), rig::has_type1_driver());
            }
            _ => {
                assert!(c.supports::<Type1>().unwrap());
                assert!(c.supports::<Type1v2>().unwrap());
                // iommufd's compatibility container answers NOIOMMU with
                // IS_ENABLED(CONFIG_VFIO_NOIOMMU), whatever the groups
                // (Linux 6.12 drivers/iommu/iommufd/vfio_compat.c,
                // iommufd_vfio_check_extension); VFIO's container has no
                // no-IOMMU driver registered without enable_unsafe_noiommu_mode.
                assert_eq!(c.supports::<NoIommu>().unwrap(), rig::compat());
            }
        }
    }

    #[test]
    #[ignore = "needs a VFIO guest: run tests/vm/run"]
    fn typed_group_is_viable_and_attach_sets_its_container() {
        let (_, id) = first();
        let group = Group::open_id(id).unwrap();
        let status = group.status().unwrap();
        assert!(status.viable && !status.container_set, "{status:?}");
        let c = Container::open().unwrap().attach(group).unwrap();
        assert!(c.groups().next().unwrap().status().unwrap().container_set);
        assert!(model_for_config()(c).is_ok());
    }

    #[test]
    #[ignore = "needs a VFIO guest: run tests/vm/run"]
    fn typed_device_info_config_space_and_bar0() {
        with_device(|dev, _| {
            let info = dev.info();
            assert!(
                info.is_pci() && info.num_regions >= 9 && info.num_irqs >= 5,
                "{info:?}"
            );
            let cfg = dev.pci_config().unwrap();
            assert_eq!(cfg.read_u16(0).unwrap(), 0x1234);
            assert_eq!(cfg.read_u16(2).unwrap(), 0x11e8);
            set_bus_master(dev);
            let bar0 = dev.region(0).unwrap();
            assert_eq!(bar0.info().size, 1 << 20);
            assert!(bar0.info().mappable());
            assert_eq!(bar0.reg32(IDENT).unwrap(), 0x010000ed);
            // The crate's little- and big-endian accessors, against edu's
            // native-endian registers (QEMU: big-endian on PowerPC).
            let (le, be) = (
                bar0.read_u32(IDENT).unwrap(),
                bar0.read_u32_be(IDENT).unwrap(),
            );
            if EDU_BIG_ENDIAN {
                assert_eq!((le, be), (0xed00_0001, 0x0100_00ed));
            } else {
                assert_eq!((le, be), (0x0100_00ed, 0xed00_0001));
            }
            bar0.set_reg32(LIVENESS, 0x1234_5678).unwrap();
            assert_eq!(bar0.reg32(LIVENESS).unwrap(), !0x1234_5678);
            let mapped = bar0.mmap().unwrap();
            assert_eq!(mapped.reg32(IDENT).unwrap(), 0x010000ed);
            mapped.set_reg32(LIVENESS, 0x0f0f_0000).unwrap();
            assert_eq!(mapped.reg32(LIVENESS).unwrap(), !0x0f0f_0000);
        });
    }

    #[test]
    #[ignore = "needs a VFIO guest: run tests/vm/run"]
    fn typed_bad_indexes_and_offsets_are_typed_errors() {
        with_device(|dev, _| {
            let count = dev.info().num_regions;
            assert!(
                matches!(dev.region(99), Err(DeviceError::NoSuchRegion { index: 99, count: c }) if c == count)
            );
            let irqs = dev.info().num_irqs;
            let e = eventfd();
            assert!(matches!(
                dev.set_irq_eventfd(42, 0, e.as_fd()),
                Err(DeviceError::NoSuchIrq { index: 42, count: c }) if c == irqs
            ));
            let bar0 = dev.region(0).unwrap();
            assert!(matches!(
                bar0.read_u32(1 << 20),
                Err(DeviceError::OutOfBounds {
                    index: 0,
                    offset: 0x10_0000,
                    ..
                })
            ));
            assert!(matches!(
                bar0.read_u32(2),
                Err(DeviceError::OutOfBounds { offset: 2, .. })
            ));
            let mapped = bar0.mmap().unwrap();
            assert!(matches!(
                mapped.read_u64((1 << 20) - 4),
                Err(DeviceError::OutOfBounds { .. })
            ));
            // The device still works after every refusal.
            assert_eq!(mapped.reg32(IDENT).unwrap(), 0x010000ed);
        });
    }

    #[test]
    #[ignore = "needs a VFIO guest: run tests/vm/run"]
    fn typed_msi_reaches_an_eventfd_and_loopback_trigger_allocates_nothing() {
        with_device(|dev, _| {
            let info = dev.irq_info(PciIrq::Msi as u32).unwrap();
            assert!(info.eventfd() && info.count >= 1, "{info:?}");
            // vfio-pci enables MSI but not Bus Master, and an MSI is a
            // memory write by the device: without Bus Master none arrives.
            set_bus_master(dev);
            let e = eventfd();
            dev.set_irq_eventfd(PciIrq::Msi as u32, 0, e.as_fd())
                .unwrap();
            let bar0 = dev.region(0).unwrap();
            bar0.set_reg32(IRQ_RAISE, 0x10).unwrap();
            assert_eq!(wait(&e, 2000), Some(1), "no MSI");
            assert_eq!(bar0.reg32(IRQ_STATUS).unwrap() & 0x10, 0x10);
            bar0.set_reg32(IRQ_ACK, 0x10).unwrap();
            // Loopback: user-space trigger of the same vector, 1000 times, no heap.
            let ((), allocs) = crate::alloc_count::allocations(|| {
                for _ in 0..1000 {
                    dev.trigger_irq(PciIrq::Msi as u32, 0, 1).unwrap();
                }
            });
            assert_eq!(allocs, 0, "trigger_irq allocated");
            assert_eq!(wait(&e, 2000), Some(1000));
            dev.disable_irq(PciIrq::Msi as u32).unwrap();
        });
    }

    #[test]
    #[ignore = "needs a VFIO guest: run tests/vm/run"]
    fn typed_intx_is_automasked_and_fires_again_after_unmask() {
        with_device(|dev, _| {
            let intx = PciIrq::Intx as u32;
            let info = dev.irq_info(intx).unwrap();
            assert!(
                info.automasked() && info.maskable() && info.count == 1,
                "{info:?}"
            );
            let e = eventfd();
            dev.set_irq_eventfd(intx, 0, e.as_fd()).unwrap();
            let bar0 = dev.region(0).unwrap();
            for round in 0..2 {
                bar0.set_reg32(IRQ_RAISE, 0x1).unwrap();
                assert_eq!(wait(&e, 2000), Some(1), "INTx round {round}");
                bar0.set_reg32(IRQ_ACK, 0x1).unwrap();
                dev.unmask_irq(intx, 0, 1).unwrap();
            }
            // Masked: a raise does not get through until unmasked.
            dev.mask_irq(intx, 0, 1).unwrap();
            bar0.set_reg32(IRQ_RAISE, 0x1).unwrap();
            assert_eq!(wait(&e, 300), None, "INTx passed a mask");
            dev.unmask_irq(intx, 0, 1).unwrap();
            assert_eq!(wait(&e, 2000), Some(1), "INTx pending across unmask");
            bar0.set_reg32(IRQ_ACK, 0x1).unwrap();
            dev.disable_irq(intx).unwrap();
        });
    }

    #[test]
    #[ignore = "needs a VFIO guest: run tests/vm/run"]
    fn typed_ioeventfd_writes_the_register_and_an_unmask_eventfd_unmasks_intx() {
        with_device(|dev, _| {
            let bar0 = dev.region(0).unwrap();
            // What a plain write of the value leaves in the liveness
            // register (edu inverts it), read back the same way.
            let value = 0x1234_5678u32;
            bar0.write_u32(LIVENESS, value).unwrap();
            let expected = bar0.read_u32(LIVENESS).unwrap();
            bar0.write_u32(LIVENESS, 0).unwrap();
            assert_ne!(bar0.read_u32(LIVENESS).unwrap(), expected);
            let e = eventfd();
            let data = typed_vfio::IoEventData::U32(value);
            bar0.add_ioeventfd(LIVENESS, data, e.as_fd()).unwrap();
            match bar0.add_ioeventfd(LIVENESS, data, e.as_fd()) {
                Err(DeviceError::IndexedIoctl { errno, .. }) => {
                    assert_eq!(errno, typed_vfio::Errno::EEXIST)
                }
                other => panic!("a second identical ioeventfd: {other:?}"),
            }
            e.write(1).unwrap();
            let start = Instant::now();
            while bar0.read_u32(LIVENESS).unwrap() != expected {
                assert!(
                    start.elapsed() < Duration::from_secs(2),
                    "the ioeventfd never wrote"
                );
                std::thread::sleep(Duration::from_millis(5));
            }
            println!("IOEVENTFD liveness register {expected:#x} after one eventfd signal");
            bar0.remove_ioeventfd(LIVENESS, data).unwrap();
            match bar0.remove_ioeventfd(LIVENESS, data) {
                Err(DeviceError::IndexedIoctl { errno, .. }) => {
                    assert_eq!(errno, typed_vfio::Errno::ENODEV)
                }
                other => panic!("removing a removed ioeventfd: {other:?}"),
            }
            bar0.write_u32(LIVENESS, 0).unwrap();
            e.write(1).unwrap();
            std::thread::sleep(Duration::from_millis(100));
            assert_ne!(
                bar0.read_u32(LIVENESS).unwrap(),
                expected,
                "a removed ioeventfd wrote"
            );

            // INTx, automasked on delivery, unmasked by an eventfd.
            let intx = PciIrq::Intx as u32;
            let trigger = eventfd();
            let unmask = eventfd();
            dev.set_irq_eventfd(intx, 0, trigger.as_fd()).unwrap();
            dev.set_irq_unmask_eventfd(intx, 0, Some(unmask.as_fd()))
                .unwrap();
            bar0.set_reg32(IRQ_RAISE, 0x1).unwrap();
            assert_eq!(wait(&trigger, 2000), Some(1), "the first INTx");
            bar0.set_reg32(IRQ_ACK, 0x1).unwrap();
            bar0.set_reg32(IRQ_RAISE, 0x1).unwrap();
            assert_eq!(wait(&trigger, 300), None, "automasked INTx got through");
            unmask.write(1).unwrap();
            assert_eq!(
                wait(&trigger, 2000),
                Some(1),
                "the unmask eventfd did not unmask"
            );
            bar0.set_reg32(IRQ_ACK, 0x1).unwrap();
            dev.set_irq_unmask_eventfd(intx, 0, None).unwrap();
            dev.disable_irq(intx).unwrap();

            // Low power entry and exit; the device answers after.
            dev.low_power_entry().unwrap();
            dev.low_power_exit().unwrap();
            assert_eq!(bar0.reg32(IDENT).unwrap(), 0x010000ed);
        });
    }

    #[test]
    #[ignore = "needs a VFIO guest: run tests/vm/run"]
    fn typed_reset_and_hot_reset_behind_a_root_port_or_their_errors_on_a_root_bus() {
        let bdf = first().0;
        // What the kernel says (sysfs): edu behind a root port has a bus
        // reset; on a root bus (ppce500) it has no reset method and no bus
        // to reset, and vfio-pci answers EINVAL (vfio_pci_ioctl_reset) and
        // ENODEV (the hot-reset probes), Linux 6.12.
        let resettable = !rig::reset_methods(&bdf).is_empty();
        let root_bus = rig::on_root_bus(&bdf);
        let ioctl_errno = |r: Result<_, DeviceError>, want: &str, errno: typed_vfio::Errno| match r
        {
            Err(DeviceError::Ioctl { ioctl, errno: e }) if ioctl == want => assert_eq!(e, errno),
            other => panic!("{want}: expected {errno}, got {other:?}"),
        };
        with_device(|dev, groups| {
            assert_eq!(dev.info().can_reset(), resettable);
            let bar0 = dev.region(0).unwrap();
            bar0.set_reg32(0x08, 5).unwrap(); // factorial input
            if resettable {
                dev.reset().unwrap();
            } else {
                ioctl_errno(dev.reset(), "VFIO_DEVICE_RESET", typed_vfio::Errno::EINVAL);
            }
            assert_eq!(bar0.reg32(IDENT).unwrap(), 0x010000ed);
            if root_bus {
                ioctl_errno(
                    dev.pci_hot_reset_info().map(drop),
                    "VFIO_DEVICE_GET_PCI_HOT_RESET_INFO",
                    typed_vfio::Errno::ENODEV,
                );
                ioctl_errno(
                    dev.pci_hot_reset(groups.iter().copied()),
                    "VFIO_DEVICE_PCI_HOT_RESET",
                    typed_vfio::Errno::ENODEV,
                );
            } else {
                let affected = dev.pci_hot_reset_info().unwrap();
                let own = groups[0].id().number;
                assert!(
                    !affected.is_empty() && affected.iter().all(|d| d.group_id == own),
                    "{affected:?}"
                );
                dev.pci_hot_reset(groups.iter().copied()).unwrap();
            }
            assert_eq!(bar0.reg32(IDENT).unwrap(), 0x010000ed);
            // Without any group fd the kernel refuses (group API: EINVAL,
            // checked before the reset probe).
            ioctl_errno(
                dev.pci_hot_reset(&[]),
                "VFIO_DEVICE_PCI_HOT_RESET",
                typed_vfio::Errno::EINVAL,
            );
        });
    }

    #[test]
    #[ignore = "needs a VFIO guest: run tests/vm/run"]
    fn typed_unknown_device_name_is_no_device_and_group_is_still_usable() {
        let (bdf, id) = first();
        let c = attached(id);
        match rig::iommu() {
            IommuKind::NoIommu => check_unknown_name(&set_model::<NoIommu>(c), &bdf),
            IommuKind::Type1 => check_unknown_name(&set_model::<Type1>(c), &bdf),
            _ => check_unknown_name(&set_model::<Type1v2>(c), &bdf),
        }
    }

    fn check_unknown_name<M: typed_vfio::IommuModel>(c: &Container<M>, bdf: &str) {
        match c.open_device("0000:42:00.0") {
            Err(GroupError::NoDevice { name, errno, .. }) => {
                assert_eq!(name, "0000:42:00.0");
                // The kernel has no device of that name in the group.
                assert_eq!(errno, typed_vfio::Errno::ENODEV, "errno {errno}");
            }
            other => panic!("expected NoDevice, got {other:?}"),
        }
        assert!(matches!(
            c.open_device("bad\0name"),
            Err(GroupError::BadDeviceName { .. })
        ));
        assert!(c.open_device(bdf).is_ok());
    }

    #[test]
    #[ignore = "needs a VFIO guest: run tests/vm/run"]
    fn typed_group_in_another_container_is_refused_and_both_stay_usable() {
        let (_, id) = first();
        let c1 = attached(id);
        // A second handle on the same group (as a launcher might pass one).
        let dup = c1
            .groups()
            .next()
            .unwrap()
            .as_fd()
            .try_clone_to_owned()
            .unwrap();
        let second = Group::from_fd(dup, id);
        let err = Container::open().unwrap().attach(second).unwrap_err();
        assert!(
            matches!(err.error, GroupError::AlreadyAttached { group } if group == id),
            "{err}"
        );
        assert_eq!(err.group.id(), id);
        assert!(err.container.groups().is_empty());
        assert!(model_for_config()(c1).is_ok());
    }

    #[test]
    #[ignore = "needs a VFIO guest: run tests/vm/run"]
    fn typed_unsupported_model_hands_the_container_back() {
        let (bdf, id) = first();
        let c = attached(id);
        let wrong = if rig::iommu() == IommuKind::NoIommu {
            c.set_iommu::<Type1v2>().map(drop)
        } else {
            c.set_iommu::<NoIommu>().map(drop)
        };
        let err = wrong.unwrap_err();
        if rig::compat() {
            // iommufd's compatibility container claims NOIOMMU in
            // CHECK_EXTENSION (CONFIG_VFIO_NOIOMMU), so the typed API goes on
            // to SET_IOMMU, which refuses it: not a type1 model and no
            // no-IOMMU group -> EINVAL (Linux 6.12
            // drivers/iommu/iommufd/vfio_compat.c, iommufd_vfio_set_iommu).
            assert!(
                matches!(
                    err.error,
                    ContainerError::Ioctl {
                        ioctl: "VFIO_SET_IOMMU",
                        errno: typed_vfio::Errno::EINVAL
                    }
                ),
                "{}",
                err.error
            );
        } else {
            // With a no-IOMMU group attached, CHECK_EXTENSION(TYPE1v2)
            // answers 0 (on an empty container it answers 1); with an IOMMU
            // group, CHECK_EXTENSION(NOIOMMU) answers 0. Either way the
            // typed API stops before SET_IOMMU.
            let wanted = if rig::iommu() == IommuKind::NoIommu {
                3
            } else {
                8
            };
            assert!(
                matches!(err.error, ContainerError::Unsupported { id, .. } if id == wanted),
                "{}",
                err.error
            );
        }
        // The same container, retried with the right model, works.
        let retry = err.container;
        match rig::iommu() {
            IommuKind::NoIommu => assert!(set_model::<NoIommu>(retry).open_device(&bdf).is_ok()),
            IommuKind::Type1 => assert!(set_model::<Type1>(retry).open_device(&bdf).is_ok()),
            _ => assert!(set_model::<Type1v2>(retry).open_device(&bdf).is_ok()),
        }
    }

    #[test]
    #[ignore = "needs a VFIO guest: run tests/vm/run"]
    fn typed_release_groups_with_an_open_device_is_ebusy_and_keeps_the_model_except_under_compat() {
        fn run<M: typed_vfio::IommuModel>(bdf: &str, id: GroupId) {
            let c = set_model::<M>(attached(id));
            let dev = c.open_device(bdf).unwrap();
            if rig::compat() {
                // iommufd's compatibility container: a group leaves with its
                // device open (only VFIO's own container counts users:
                // Linux 6.12 drivers/vfio/group.c,
                // vfio_group_ioctl_unset_container, EBUSY for
                // group->container only). The device stays attached to the
                // compat IOAS and keeps answering.
                let (unset, groups) = c.release_groups().map_err(|e| e.error).unwrap();
                assert_eq!(groups.len(), 1);
                assert!(!groups[0].status().unwrap().container_set);
                let bar0 = dev.region(0).unwrap();
                assert_eq!(bar0.reg32(0).unwrap(), 0x0100_00ed, "edu ident");
                drop(dev);
                let again = unset.attach(groups.into_iter().next().unwrap()).unwrap();
                assert!(set_model::<M>(again).open_device(bdf).is_ok());
                return;
            }
            let err = c.release_groups().unwrap_err();
            match &err.error {
                GroupError::Ioctl {
                    ioctl,
                    group,
                    errno,
                } => {
                    assert_eq!(*ioctl, "VFIO_GROUP_UNSET_CONTAINER");
                    assert_eq!(*group, id);
                    assert_eq!(*errno, typed_vfio::Errno::EBUSY, "errno {errno}");
                }
                other => panic!("expected EBUSY from UNSET_CONTAINER, got {other}"),
            }
            assert!(err.released.is_empty());
            // Still in its model with its group: a second device opens.
            let c = err.container;
            assert_eq!(c.groups().len(), 1);
            drop(dev);
            let (_, groups) = c.release_groups().map_err(|e| e.error).unwrap();
            assert_eq!(groups.len(), 1);
        }
        let (bdf, id) = first();
        match rig::iommu() {
            IommuKind::NoIommu => run::<NoIommu>(&bdf, id),
            IommuKind::Type1 => run::<Type1>(&bdf, id),
            _ => run::<Type1v2>(&bdf, id),
        }
    }

    #[test]
    #[ignore = "needs a VFIO guest: run tests/vm/run"]
    fn typed_release_groups_returns_to_unset_and_can_start_over() {
        let (_, id) = first();
        let c = attached(id);
        let (unset, groups) = match rig::iommu() {
            IommuKind::NoIommu => set_model::<NoIommu>(c)
                .release_groups()
                .map_err(|e| e.error),
            IommuKind::Type1 => set_model::<Type1>(c).release_groups().map_err(|e| e.error),
            _ => set_model::<Type1v2>(c)
                .release_groups()
                .map_err(|e| e.error),
        }
        .unwrap();
        assert_eq!(groups.len(), 1);
        assert!(!groups[0].status().unwrap().container_set);
        let again = unset.attach(groups.into_iter().next().unwrap()).unwrap();
        assert!(model_for_config()(again).is_ok());
    }
}

pub mod iommu {
    use super::*;

    use crate::rig::sysfs_driver;

    #[test]
    #[ignore = "needs a VFIO guest: run tests/vm/run"]
    fn typed_type1v2_dirty_tracking_reports_the_mapped_pages_the_device_wrote() {
        if rig::iommu() == IommuKind::Type1 {
            // Type1 (v1) has no dirty tracking: the types have no method for
            // it (compile-fail dirty_tracking_on_type1). What the kernel
            // answers, raw: EACCES (vfio_iommu_type1_dirty_pages), or ENOTTY
            // from iommufd's compatibility container, which has none.
            let (c, _dev) = open_first!(Type1);
            let arg: [u32; 2] = [8, typed_vfio::sys::VFIO_IOMMU_DIRTY_PAGES_FLAG_START];
            use std::os::fd::AsRawFd;
            // SAFETY: START reads the 8-byte header only, which `arg` is.
            let ret = unsafe {
                libc::ioctl(
                    c.as_fd().as_raw_fd(),
                    typed_vfio::sys::VFIO_IOMMU_DIRTY_PAGES as _,
                    arg.as_ptr(),
                )
            };
            let errno = typed_vfio::Errno::last();
            let want = if rig::compat() {
                typed_vfio::Errno::ENOTTY
            } else {
                typed_vfio::Errno::EACCES
            };
            assert_eq!(
                (ret, errno),
                (-1, want),
                "DIRTY_PAGES START on a type1 container"
            );
            println!("DIRTY type1: START refused with {errno}");
            return;
        }
        let (c, dev) = open_first!(Type1v2);
        set_bus_master(&dev);
        let page = 4096u64;
        let iova = 0x10_0000u64;
        let buf = DmaBuffer::new(4 * page as usize).unwrap();
        let _m = c.map(&buf, iova, DmaAccess::ReadWrite).unwrap();
        let started = c.start_dirty_tracking();
        if rig::compat() {
            // iommufd's compatibility container has no VFIO_IOMMU_DIRTY_PAGES
            // (vfio_compat.c answers ENOTTY for it).
            match started {
                Err(DmaError::NotSupported { .. }) => {}
                other => panic!("compat: dirty tracking: {other:?}"),
            }
            return;
        }
        started.expect("VFIO_IOMMU_DIRTY_PAGES_FLAG_START");
        edu_dma(&dev, EDU_BUF, iova + 2 * page, 64, true);
        let map = c.dirty_bitmap(iova, 4 * page).expect("GET_BITMAP");
        let dirty: Vec<u64> = map.dirty_iovas().collect();
        println!(
            "DIRTY type1v2: device wrote IOVA {:#x}; dirty {dirty:#x?}",
            iova + 2 * page
        );
        assert!(
            map.is_dirty(iova + 2 * page),
            "the page the device wrote is dirty"
        );
        // edu behind VT-d pins nothing (no pinned-page scope): the kernel
        // counts every mapped page as dirty (update_user_bitmap).
        assert_eq!(map.count(), 4);
        match c.dirty_bitmap(iova, 2 * page) {
            Err(DmaError::Ioctl { errno, .. }) => assert_eq!(errno, typed_vfio::Errno::EINVAL),
            other => panic!("a range cutting a mapping: {other:?}"),
        }
        // Unmap with GET_DIRTY_BITMAP: the mapping's pages, and it is gone.
        let buf2 = DmaBuffer::new(page as usize).unwrap();
        let m2 = c
            .map(&buf2, iova + 0x10_0000, DmaAccess::ReadWrite)
            .unwrap();
        let back = m2
            .unmap_with_dirty_bitmap()
            .expect("unmap with the dirty bitmap");
        assert_eq!((back.pages(), back.count()), (1, 1));
        assert!(!buf2.is_mapped());
        c.stop_dirty_tracking().unwrap();
        match c.dirty_bitmap(iova, 4 * page) {
            Err(DmaError::Ioctl { errno, .. }) => assert_eq!(errno, typed_vfio::Errno::EINVAL),
            other => panic!("a bitmap while not tracking: {other:?}"),
        }
    }

    #[test]
    #[ignore = "needs a VFIO guest: run tests/vm/run"]
    fn typed_non_viable_group_is_refused_then_usable_once_its_mate_is_unbound() {
        let (vfio_dev, mate) = rig::non_viable();
        let mate_driver = rig::driver_of(&mate).expect("the slot mate has a driver");
        assert_eq!(rig::driver_of(&vfio_dev).as_deref(), Some("vfio-pci"));

        // A missing device: no sysfs node, a typed error naming the path.
        match Group::for_pci_device("0000:7f:1f.7") {
            Err(GroupError::Sysfs { path, kind, errno }) => {
                assert!(path.ends_with("0000:7f:1f.7/iommu_group"), "{path:?}");
                assert_eq!(kind, std::io::ErrorKind::NotFound);
                assert_eq!(errno, Some(typed_vfio::Errno::ENOENT));
            }
            other => panic!("expected Sysfs, got {other:?}"),
        }

        let group = Group::for_pci_device(&vfio_dev).expect("the group node opens");
        let id = group.id();
        let status = group.status().unwrap();
        assert!(!status.viable && !status.container_set, "{status:?}");

        // The kernel's answer to attaching it, through the raw layer: EPERM.
        let container = Container::open().unwrap();
        let cfd = std::os::fd::AsRawFd::as_raw_fd(&container.as_fd());
        let gfd = || typed_vfio::sys::GroupFd::new(group.as_fd());
        // SAFETY: a pointer to a live int holding the container fd.
        let raw = unsafe { typed_vfio::sys::ioctl::vfio_group_set_container(gfd(), &cfd) };
        if rig::compat() {
            // iommufd's compatibility container claims DMA ownership at
            // VFIO_GROUP_GET_DEVICE_FD, not at SET_CONTAINER: the attach
            // succeeds, GET_STATUS then says viable, and opening the device
            // is refused (Linux 6.12 drivers/vfio/group.c,
            // vfio_group_ioctl_get_status: "with iommufd
            // VFIO_GROUP_FLAGS_VIABLE could be set but GET_DEVICE_FD will
            // fail due to viability").
            assert_eq!(raw, Ok(0), "raw SET_CONTAINER under compat");
            let st = group.status().unwrap();
            assert!(st.viable && st.container_set, "{st:?}");
            let name = std::ffi::CString::new(vfio_dev.as_str()).unwrap();
            // SAFETY: a live NUL-terminated name; a returned fd is closed.
            let open =
                unsafe { typed_vfio::sys::ioctl::vfio_group_get_device_fd(gfd(), name.as_ptr()) };
            if let Ok(fd) = open {
                // SAFETY: the kernel returned a new fd nothing else owns.
                drop(unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) });
            }
            println!("compat: GET_DEVICE_FD of the non-viable group's device: {open:?}");
            assert_eq!(open.err(), Some(typed_vfio::Errno::EPERM), "GET_DEVICE_FD");
            // SAFETY: the group fd; the request takes no argument.
            let unset = unsafe { typed_vfio::sys::ioctl::vfio_group_unset_container(gfd()) };
            assert_eq!(unset, Ok(0), "raw UNSET_CONTAINER");
        } else {
            assert_eq!(
                raw.err(),
                Some(typed_vfio::Errno::EPERM),
                "raw SET_CONTAINER"
            );
        }

        // The typed attach refuses it by name and hands both back, usable.
        let err = container.attach(group).unwrap_err();
        assert!(
            matches!(err.error, GroupError::NotViable { group } if group == id),
            "{}",
            err.error
        );
        assert!(err.container.groups().is_empty());
        assert!(err.container.supports::<Type1v2>().unwrap());
        assert!(!err.group.status().unwrap().viable);

        // Unbinding the mate's driver makes the group viable: the same
        // objects attach now. The mate is in the group but not bound to
        // vfio-pci: opening it is a typed NoDevice with the kernel's ENODEV.
        sysfs_driver(&mate_driver, &mate, false);
        assert!(err.group.status().unwrap().viable);
        {
            let c = err.container.attach(err.group).expect("attach once viable");
            fn check<M: typed_vfio::IommuModel>(
                c: Container<typed_vfio::Attached>,
                vfio_dev: &str,
                mate: &str,
            ) {
                let c = set_model::<M>(c);
                match c.open_device(mate) {
                    Err(GroupError::NoDevice { name, errno, .. }) => {
                        assert_eq!(name, mate);
                        assert_eq!(errno, typed_vfio::Errno::ENODEV);
                    }
                    other => panic!("expected NoDevice for the unbound mate, got {other:?}"),
                }
                let dev = c
                    .open_device(vfio_dev)
                    .expect("the vfio-pci function opens");
                assert!(dev.info().num_regions > 0, "{:?}", dev.info());
            }
            match rig::iommu() {
                IommuKind::Type1 => check::<Type1>(c, &vfio_dev, &mate),
                _ => check::<Type1v2>(c, &vfio_dev, &mate),
            }
        }
        sysfs_driver(&mate_driver, &mate, true);
        assert_eq!(rig::driver_of(&mate), Some(mate_driver));
        let group = Group::for_pci_device(&vfio_dev).unwrap();
        assert!(
            !group.status().unwrap().viable,
            "not viable again after the rebind"
        );
    }

    #[test]
    #[ignore = "needs a VFIO guest: run tests/vm/run"]
    fn typed_iommu_info_has_ranges_with_the_msi_hole_and_dma_avail() {
        fn run<M: DmaModel>() {
            let (c, _dev) = open_first!(M);
            let info = c.iommu_info().unwrap();
            println!("typed iommu info: {info:?}");
            assert_ne!(info.page_sizes & 0x1000, 0, "{info:?}");
            assert_eq!(info.min_page_size(), 0x1000);
            assert!(info.iova_ranges.len() >= 2, "{info:?}");
            let msi = rig::msi_window(rig::first_group_number()).0;
            assert!(
                info.iova_ranges.iter().all(|r| !r.contains(msi, 0x1000)),
                "MSI window {msi:#x} not excluded"
            );
            assert!(info.dma_avail.is_some_and(|n| n > 0), "{info:?}");
        }
        with_dma_model!(run)
    }

    #[test]
    #[ignore = "needs a VFIO guest: run tests/vm/run"]
    fn typed_dma_round_trip_through_the_iommu_both_directions() {
        fn run<M: DmaModel>() {
            let (c, dev) = open_first!(M);
            set_bus_master(&dev);
            let buf = DmaBuffer::new(4096).unwrap();
            let data = pattern(1024, 7);
            buf.write(0, &data).unwrap();
            let map = c.map(&buf, 0x20_0000, DmaAccess::ReadWrite).unwrap();
            edu_dma(&dev, map.iova(), EDU_BUF, 1024, false);
            edu_dma(&dev, EDU_BUF, map.iova() + 2048, 1024, true);
            let mut back = vec![0u8; 1024];
            buf.read(2048, &mut back).unwrap();
            assert_eq!(back, data, "bytes did not survive RAM -> edu -> RAM");
            assert!(buf.is_mapped());
            drop(map);
            assert!(!buf.is_mapped());
        }
        with_dma_model!(run)
    }

    #[test]
    #[ignore = "needs a VFIO guest: run tests/vm/run"]
    fn typed_dma_is_blocked_after_the_guard_drops() {
        fn run<M: DmaModel>() {
            let (c, dev) = open_first!(M);
            set_bus_master(&dev);
            let src = DmaBuffer::new(4096).unwrap();
            src.write(0, &pattern(512, 99)).unwrap();
            let map = c.map(&src, 0x30_0000, DmaAccess::DeviceReads).unwrap();
            edu_dma(&dev, map.iova(), EDU_BUF, 512, false);
            drop(map);
            let dst = DmaBuffer::new(4096).unwrap();
            dst.fill(0xAA);
            let iova = {
                let guard = c.map(&dst, 0x40_0000, DmaAccess::DeviceWrites).unwrap();
                guard.iova()
            }; // unmapped here
            edu_dma(&dev, EDU_BUF, iova, 512, true);
            let mut after = vec![0u8; 512];
            dst.read(0, &mut after).unwrap();
            assert!(
                after.iter().all(|&b| b == 0xAA),
                "DMA reached an unmapped IOVA"
            );
        }
        with_dma_model!(run)
    }

    #[test]
    #[ignore = "needs a VFIO guest: run tests/vm/run"]
    fn typed_map_errors_name_their_values_and_map_unmap_allocates_nothing() {
        fn run<M: DmaModel>() {
            let (c, _dev) = open_first!(M);
            let buf = DmaBuffer::new(8192).unwrap();
            assert!(matches!(
                c.map(&buf, 0x1000_0800, DmaAccess::ReadWrite),
                Err(DmaError::Unaligned {
                    iova: 0x1000_0800,
                    size: 8192,
                    page: 0x1000
                })
            ));
            // The group's MSI window is outside every usable range.
            let msi = rig::msi_window(rig::first_group_number()).0;
            assert!(matches!(
                c.map(&buf, msi, DmaAccess::ReadWrite),
                Err(DmaError::OutsideRanges { iova, size: 8192 }) if iova == msi
            ));
            // Bypassing the typed check, the kernel refuses the same range.
            // SAFETY: the kernel refuses the mapping (asserted), so the
            // device never gains access to `buf`.
            let raw = unsafe { c.map_raw(buf.addr() as *mut u8, 8192, msi, DmaAccess::ReadWrite) };
            match raw {
                Err(DmaError::Ioctl {
                    ioctl: "VFIO_IOMMU_MAP_DMA",
                    iova,
                    size: 8192,
                    errno,
                }) if iova == msi => {
                    assert_eq!(errno, typed_vfio::Errno::EINVAL, "errno {errno}")
                }
                other => panic!("expected a MAP_DMA errno, got {other:?}"),
            }
            // Overlapping a live mapping: the kernel's EEXIST.
            let map = c.map(&buf, 0x50_0000, DmaAccess::ReadWrite).unwrap();
            let other = DmaBuffer::new(4096).unwrap();
            match c.map(&other, 0x50_1000, DmaAccess::ReadWrite) {
                Err(DmaError::Ioctl {
                    errno,
                    iova: 0x50_1000,
                    ..
                }) => assert_eq!(errno, typed_vfio::Errno::EEXIST),
                other => panic!("expected EEXIST, got {other:?}"),
            }
            drop(map);
            // Hot path: 1000 map + unmap pairs, no heap allocation.
            let ((), allocs) = crate::alloc_count::allocations(|| {
                for _ in 0..1000 {
                    let m = c.map(&buf, 0x60_0000, DmaAccess::ReadWrite).unwrap();
                    drop(m);
                }
            });
            assert_eq!(allocs, 0, "map/unmap allocated");
            assert!(!buf.is_mapped());
        }
        with_dma_model!(run)
    }

    #[test]
    #[ignore = "needs a VFIO guest: run tests/vm/run"]
    fn typed_two_groups_share_one_container_and_both_devices_dma() {
        fn run<M: DmaModel>() {
            let ids = group_ids();
            let devs = rig::devices();
            assert!(ids.len() >= 2, "need two edu devices");
            let c = attached(ids[0]);
            c.attach_more(Group::open_id(ids[1]).unwrap())
                .map_err(|(_, e)| e)
                .unwrap();
            let c = set_model::<M>(c);
            assert_eq!(c.groups().len(), 2);
            let buf = DmaBuffer::new(4096).unwrap();
            buf.write(0, &pattern(256, 3)).unwrap();
            let map = c.map(&buf, 0x70_0000, DmaAccess::ReadWrite).unwrap();
            for (n, bdf) in devs.iter().take(2).enumerate() {
                let dev = c.open_device(bdf).unwrap();
                set_bus_master(&dev);
                let out = map.iova() + 1024 * (n as u64 + 1);
                edu_dma(&dev, map.iova(), EDU_BUF, 256, false);
                edu_dma(&dev, EDU_BUF, out, 256, true);
                let mut back = vec![0u8; 256];
                buf.read(1024 * (n + 1), &mut back).unwrap();
                assert_eq!(back, pattern(256, 3), "device {bdf}");
            }
        }
        with_dma_model!(run)
    }

    /// `IOMMU_VFIO_IOAS` (`op`: GET, SET or CLEAR) on the container fd, an
    /// iommufd request; the IOAS id the kernel answers (GET).
    fn vfio_ioas(
        c: std::os::fd::BorrowedFd<'_>,
        op: u32,
        id: u32,
    ) -> Result<u32, typed_vfio::Errno> {
        use typed_vfio::sys;
        let mut arg = sys::iommu_vfio_ioas {
            size: std::mem::size_of::<sys::iommu_vfio_ioas>() as u32,
            ioas_id: id,
            op: op as u16,
            __reserved: 0,
        };
        // SAFETY: `arg` is a live, writable iommu_vfio_ioas whose size field
        // is its own size. It only moves which IOAS the compatibility
        // container's requests reach; no memory is handed to the kernel.
        unsafe { sys::ioctl::iommu_vfio_ioas(sys::IommufdFd::new(c), &mut arg) }?;
        Ok(arg.ioas_id)
    }

    /// `VFIO_IOMMU_UNMAP_DMA` of `iova..iova + size` on the container fd;
    /// the bytes unmapped.
    fn raw_unmap(
        c: std::os::fd::BorrowedFd<'_>,
        iova: u64,
        size: u64,
    ) -> Result<u64, typed_vfio::Errno> {
        use typed_vfio::sys;
        let mut arg = sys::vfio_iommu_type1_dma_unmap {
            argsz: std::mem::size_of::<sys::vfio_iommu_type1_dma_unmap>() as u32,
            iova,
            size,
            ..Default::default()
        };
        // SAFETY: a container fd; `arg` is live and writable, argsz = its
        // size. Removing device access is always memory safe.
        unsafe { sys::ioctl::vfio_iommu_unmap_dma(sys::ContainerFd::new(c), &mut arg) }?;
        Ok(arg.size)
    }

    /// The pages of a guard whose unmap failed (an orphan) are released when
    /// the last group leaves only once no mapping can remain. On VFIO's
    /// container the last group takes the IOMMU driver and every mapping
    /// with it (the container then answers EINVAL: no driver, Linux 6.12
    /// drivers/vfio/container.c, __vfio_group_unset_container and
    /// vfio_fops_unl_ioctl). iommufd's compatibility container keeps its
    /// IOAS, mappings and all, with the container fd (drivers/vfio/group.c,
    /// vfio_group_ioctl_unset_container only drops its iommufd_ctx
    /// reference), so `release_groups` unmaps everything there before it
    /// frees the orphan's pages: a device attaching later would otherwise
    /// pin whatever the process then has at the orphan's addresses.
    #[test]
    #[ignore = "needs a VFIO guest: run tests/vm/run"]
    fn typed_release_groups_frees_an_orphan_only_once_no_mapping_remains() {
        fn run<M: DmaModel>() {
            use typed_vfio::sys::{
                IOMMU_VFIO_IOAS_CLEAR, IOMMU_VFIO_IOAS_GET, IOMMU_VFIO_IOAS_SET,
            };
            let (c, dev) = open_first!(M);
            let buf = DmaBuffer::new(4096).unwrap();
            let iova = 0x50_0000;
            let m = c.map(&buf, iova, DmaAccess::ReadWrite).unwrap();
            if rig::compat() {
                // The real kernel fails the guard's unmap when the compat IOAS
                // is taken away from the container for a moment: iommufd's
                // own IOMMU_VFIO_IOAS on the container fd (an iommufd here),
                // then get_compat_ioas's -ENODEV (vfio_compat.c).
                let id = vfio_ioas(c.as_fd(), IOMMU_VFIO_IOAS_GET, 0).expect("IOMMU_VFIO_IOAS GET");
                vfio_ioas(c.as_fd(), IOMMU_VFIO_IOAS_CLEAR, 0).expect("IOMMU_VFIO_IOAS CLEAR");
                drop(m);
                assert_eq!(c.orphaned_mappings(), 1, "the failed unmap left an orphan");
                assert!(buf.is_mapped(), "the orphan's pages are kept");
                vfio_ioas(c.as_fd(), IOMMU_VFIO_IOAS_SET, id).expect("IOMMU_VFIO_IOAS SET");
                drop(dev);
                let (unset, _groups) = c.release_groups().map_err(|e| e.error).unwrap();
                assert!(!buf.is_mapped(), "the orphan's pages are released");
                // ... and the kernel really holds nothing at the orphan's
                // IOVA any more (no group attached: the IOAS answers still).
                assert_eq!(
                    raw_unmap(unset.as_fd(), iova, 4096),
                    Ok(0),
                    "the orphaned mapping is gone from the compat IOAS"
                );
            } else {
                // VFIO's container has no such detour (an unknown request,
                // handed to the type1 driver: ENOTTY) ...
                assert_eq!(
                    vfio_ioas(c.as_fd(), IOMMU_VFIO_IOAS_GET, 0),
                    Err(typed_vfio::Errno::ENOTTY)
                );
                drop(m);
                assert!(!buf.is_mapped());
                drop(dev);
                let (unset, _groups) = c.release_groups().map_err(|e| e.error).unwrap();
                // ... and after the last group left it refuses every IOMMU
                // request with EINVAL: the answer the crate reads as
                // "nothing is mapped any more" when it frees orphans.
                assert_eq!(
                    raw_unmap(unset.as_fd(), iova, 4096),
                    Err(typed_vfio::Errno::EINVAL),
                    "VFIO's container after the last group left"
                );
            }
        }
        with_dma_model!(run)
    }
}

pub mod noiommu {
    use super::*;

    #[test]
    #[ignore = "needs a VFIO guest: run tests/vm/run"]
    fn typed_noiommu_device_has_no_cdev_and_the_error_says_so() {
        use typed_vfio::iommufd::{CdevDevice, IommufdError};
        let (bdf, id) = first();
        assert!(id.noiommu, "{id}");
        // What the kernel leaves: a sysfs vfio-dev entry, no device node.
        let sysfs = rig::sysfs_device(&bdf).join("vfio-dev");
        let entries: Vec<String> = std::fs::read_dir(&sysfs)
            .map(|d| {
                d.filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        let nodes: Vec<String> = std::fs::read_dir("/dev/vfio/devices")
            .map(|d| {
                d.filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        println!(
            "no-IOMMU {bdf}: {} holds {entries:?}; /dev/vfio/devices holds {nodes:?}",
            sysfs.display()
        );
        for r in [
            CdevDevice::path_of_pci_device(&bdf).map(drop),
            CdevDevice::open_pci(&bdf).map(drop),
        ] {
            match r {
                Err(IommufdError::NoIommu { address }) => assert_eq!(address, bdf),
                other => panic!("expected NoIommu, got {other:?}"),
            }
        }
        let e = CdevDevice::open_pci(&bdf).unwrap_err().to_string();
        assert!(e.contains(&bdf) && e.contains("no-IOMMU"), "{e}");
        // Its group path still works.
        let group = Group::for_pci_device(&bdf).expect("the no-IOMMU group opens");
        assert_eq!(group.id(), id);
    }

    #[test]
    #[ignore = "needs a VFIO guest: run tests/vm/run"]
    fn typed_noiommu_dma_to_physical_addresses_both_directions() {
        let (c, dev) = open_first!(NoIommu);
        set_bus_master(&dev);
        let buf = DmaBuffer::new(4096).unwrap();
        let data = pattern(1024, 42);
        buf.write(0, &data).unwrap();
        let phys = buf.physical_pages().unwrap()[0];
        assert!(
            phys + 4096 <= 1 << 28,
            "page {phys:#x} beyond edu's 28-bit DMA mask"
        );
        edu_dma(&dev, phys, EDU_BUF, 1024, false);
        edu_dma(&dev, EDU_BUF, phys + 2048, 1024, true);
        let mut back = vec![0u8; 1024];
        buf.read(2048, &mut back).unwrap();
        assert_eq!(back, data);
        // Teardown order: the device before its container.
        drop(dev);
        drop(c);
    }
}

/// Huge-page DMA buffers (`DmaBuffer::huge`) under real device DMA, the
/// configuration's way: mapped through the container or the IOAS, or by
/// physical address without an IOMMU (one 2 MiB huge page: one physically
/// contiguous run). The guest reserves the pages (`nr_hugepages`).
pub mod huge {
    use super::*;
    use typed_vfio::HugePage;
    use typed_vfio::iommufd::{CdevDevice, Iommufd};

    /// Writes a pattern at `at` of the buffer through edu (RAM -> device ->
    /// RAM at `at + back`), `iova` being where the device sees byte 0.
    fn round_trip(dev: &Device, buf: &DmaBuffer, iova: u64, at: usize, back: usize) {
        let data = pattern(512, 9);
        buf.write(at, &data).unwrap();
        edu_dma(dev, iova + at as u64, EDU_BUF, 512, false);
        edu_dma(dev, EDU_BUF, iova + back as u64, 512, true);
        let mut out = vec![0u8; 512];
        buf.read(back, &mut out).unwrap();
        assert_eq!(
            out, data,
            "DMA through the huge page at {at:#x} -> {back:#x}"
        );
    }

    #[test]
    #[ignore = "needs a VFIO guest: run tests/vm/run"]
    fn typed_a_huge_page_buffer_takes_device_dma() {
        std::fs::write("/proc/sys/vm/nr_hugepages", "4").expect("reserve huge pages");
        let free = HugePage::Size2M
            .free_pages()
            .expect("a 2 MiB pool (HUGETLBFS)");
        assert!(free >= 1, "no 2 MiB page reserved ({free} free)");
        let buf = DmaBuffer::huge(1, HugePage::Size2M).expect("a 2 MiB huge page");
        assert_eq!(buf.len(), 2 << 20);
        assert_eq!(buf.addr() % (2 << 20), 0);
        // Across the whole page: near its start and near its end.
        let (at, back) = (0x1000, (2 << 20) - 0x1000);
        let bdf = first().0;
        match rig::iommu() {
            IommuKind::NoIommu => {
                let (_c, dev) = open_first!(NoIommu);
                set_bus_master(&dev);
                let runs = buf.physical_runs().unwrap();
                println!("HUGE no-IOMMU: physical runs {runs:#x?}");
                assert_eq!(runs.len(), 1, "one huge page is one contiguous run");
                assert_eq!(runs[0].0 % (2 << 20), 0);
                assert!(runs[0].0 + (2 << 20) <= 1 << 28, "beyond edu's DMA mask");
                round_trip(&dev, &buf, runs[0].0, at, back);
            }
            IommuKind::Iommufd => {
                let fd = Iommufd::open().unwrap();
                let ioas = fd.alloc_ioas().unwrap();
                let dev = CdevDevice::open_pci(&bdf).unwrap().bind(&fd).unwrap();
                dev.attach(&ioas).unwrap();
                set_bus_master(&dev);
                let m = ioas.map(&buf, 0x20_0000, DmaAccess::ReadWrite).unwrap();
                round_trip(&dev, &buf, m.iova(), at, back);
                println!("HUGE iommufd: mapped at {:#x}", m.iova());
            }
            _ => {
                fn run<M: typed_vfio::DmaModel + typed_vfio::IommuModel>(
                    buf: &DmaBuffer,
                    at: usize,
                    back: usize,
                ) {
                    let (c, dev) = open_first!(M);
                    set_bus_master(&dev);
                    let m = c.map(buf, 0x20_0000, DmaAccess::ReadWrite).unwrap();
                    round_trip(&dev, buf, m.iova(), at, back);
                    println!("HUGE container: mapped at {:#x}", m.iova());
                }
                match rig::iommu() {
                    IommuKind::Type1 => run::<Type1>(&buf, at, back),
                    _ => run::<Type1v2>(&buf, at, back),
                }
            }
        }
    }
}

pub mod iommufd;
