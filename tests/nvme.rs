//! MSI-X (`Msix`) and the user-space NVMe driver (examples/nvme/driver.rs)
//! on the simulator's NVMe controller.

use std::os::fd::AsFd;

use nix::sys::eventfd::{EfdFlags, EventFd};
use typed_vfio::iova::IovaAllocator;
use typed_vfio::sim::{SimDevice, SimGroup, Simulator};
use typed_vfio::{Container, DeviceError, DmaAccess, DmaBuffer, PciIrq, Type1v2};

#[path = "../examples/nvme/driver.rs"]
#[allow(dead_code)]
mod driver;

use driver::{Arena, Completion, Config, Controller, NvmeError};

const ADDR: &str = "0000:02:00.0";
const MSIX: u32 = PciIrq::Msix as u32;

fn sim_with(device: SimDevice) -> (Simulator, Container<Type1v2>) {
    let sim = Simulator::builder()
        .group(SimGroup::new(1).device(device))
        .build()
        .unwrap();
    let container = sim
        .open_container()
        .unwrap()
        .attach(sim.open_group(1).unwrap())
        .unwrap()
        .set_iommu::<Type1v2>()
        .unwrap();
    (sim, container)
}

fn efd() -> EventFd {
    EventFd::from_flags(EfdFlags::EFD_NONBLOCK).unwrap()
}

#[test]
fn msix_enables_a_subset_and_refuses_growth_when_noresize() {
    let (_sim, container) = sim_with(SimDevice::nvme(ADDR));
    let device = container.open_device(ADDR).unwrap();
    let info = device.irq_info(MSIX).unwrap();
    assert_eq!(info.count, 17);
    assert!(info.noresize());
    let (a, b, c) = (efd(), efd(), efd());
    let mut msix = device
        .enable_msix(&[Some(a.as_fd()), None, Some(b.as_fd())])
        .unwrap();
    assert_eq!(msix.allocated(), 3);
    assert!(msix.eventfd(1).is_none() && msix.eventfd(2).is_some());
    // Arm vector 1 inside the allocated set; vector 3 is beyond it.
    msix.set(1, Some(c.as_fd())).unwrap();
    msix.trigger(1).unwrap();
    assert_eq!(c.read().unwrap(), 1);
    assert!(matches!(
        msix.set(3, Some(c.as_fd())),
        Err(DeviceError::IrqNoResize {
            vector: 3,
            allocated: 3,
            ..
        })
    ));
    // Disarming beyond the set allocates nothing and is fine.
    msix.set(5, None).unwrap();
    assert!(matches!(
        msix.set(17, None),
        Err(DeviceError::IrqRange { .. })
    ));
    // The index is the handle's while it lives.
    assert!(matches!(
        device.disable_irq(MSIX),
        Err(DeviceError::IrqOwned { .. })
    ));
    assert!(matches!(
        device.set_irq_eventfd(MSIX, 0, a.as_fd()),
        Err(DeviceError::IrqOwned { .. })
    ));
    assert!(matches!(
        device.enable_msix(&[Some(a.as_fd())]),
        Err(DeviceError::IrqOwned { .. })
    ));
    msix.disable().map_err(|(_, e)| e).unwrap();
    // Disabled: the kernel refuses a loopback, and the index is free again.
    assert!(device.trigger_irq(MSIX, 0, 1).is_err());
    let again = device.enable_msix(&[Some(a.as_fd())]).unwrap();
    drop(again);
    device.set_irq_eventfd(MSIX, 0, a.as_fd()).unwrap();
    device.disable_irq(MSIX).unwrap();
}

#[test]
fn msix_grows_a_live_set_where_the_kernel_allocates_dynamically() {
    let (_sim, container) = sim_with(SimDevice::nvme(ADDR).msix_resizable(true));
    let device = container.open_device(ADDR).unwrap();
    assert!(!device.irq_info(MSIX).unwrap().noresize());
    let (a, b) = (efd(), efd());
    let mut msix = device.enable_msix(&[Some(a.as_fd())]).unwrap();
    assert!(msix.resizable());
    msix.set(9, Some(b.as_fd())).unwrap();
    assert_eq!(msix.allocated(), 10);
    msix.trigger(9).unwrap();
    assert_eq!(b.read().unwrap(), 1);
    msix.trigger(0).unwrap();
    assert_eq!(a.read().unwrap(), 1);
}

#[test]
fn enabling_more_vectors_than_the_platform_has_is_typed_and_enables_nothing() {
    let (_sim, container) = sim_with(SimDevice::nvme(ADDR).msix_available(2));
    let device = container.open_device(ADDR).unwrap();
    let fds: Vec<EventFd> = (0..4).map(|_| efd()).collect();
    let borrowed: Vec<_> = fds.iter().map(|f| Some(f.as_fd())).collect();
    match device.enable_msix(&borrowed) {
        Err(DeviceError::IrqVectorsShort {
            wanted: 4,
            available: 2,
            ..
        }) => {}
        other => panic!("expected IrqVectorsShort, got {other:?}"),
    }
    // Nothing was enabled: the raw path gives the same, and two work.
    assert!(matches!(
        device.set_irq_eventfds(MSIX, 0, &borrowed),
        Err(DeviceError::IrqVectorsShort { .. })
    ));
    let msix = device.enable_msix(&borrowed[..2]).unwrap();
    msix.trigger(1).unwrap();
    assert_eq!(fds[1].read().unwrap(), 1);
}

#[test]
fn a_vfio_reset_keeps_the_triggers_and_rearm_reissues_them() {
    let (_sim, container) = sim_with(SimDevice::nvme(ADDR));
    let device = container.open_device(ADDR).unwrap();
    let a = efd();
    let mut msix = device.enable_msix(&[Some(a.as_fd())]).unwrap();
    device.reset().unwrap();
    msix.trigger(0).unwrap();
    assert_eq!(a.read().unwrap(), 1, "still armed after VFIO_DEVICE_RESET");
    msix.reset_device().unwrap();
    msix.trigger(0).unwrap();
    assert_eq!(a.read().unwrap(), 1, "armed after reset_device");
    msix.rearm().unwrap();
    msix.trigger(0).unwrap();
    assert_eq!(a.read().unwrap(), 1);
}

/// The driver's settings here: 32 slots, or 2 under Miri (whose every
/// atomic word of a 660 KiB arena costs).
fn settings() -> Config {
    Config {
        depth: if cfg!(miri) { 2 } else { 32 },
        ..Config::default()
    }
}

/// Runs `f` with a controller on a simulated NVMe built from `device`.
fn with_controller<T>(
    device: SimDevice,
    config: Config,
    f: impl FnOnce(Result<Controller<'_, '_>, NvmeError>) -> T,
) -> T {
    let (_sim, container) = sim_with(device);
    let dev = container.open_device(ADDR).unwrap();
    let buffer = DmaBuffer::new(config.arena_bytes()).unwrap();
    let mut iovas = IovaAllocator::for_container(&container.iommu_info().unwrap()).unwrap();
    let _guard = iovas.alloc(1 << 21, 1 << 21).unwrap();
    let block = iovas.alloc(buffer.len() as u64, 1 << 21).unwrap();
    let mapping = container
        .map(&buffer, block.iova(), DmaAccess::ReadWrite)
        .unwrap();
    f(Controller::new(
        &dev,
        Arena::mapped(&buffer, mapping.iova()),
        config,
    ))
}

#[test]
fn the_driver_writes_reads_back_and_takes_interrupts_on_the_simulated_controller() {
    for completion in [Completion::Polled, Completion::Msix] {
        let config = Config {
            completion,
            queues: 2,
            ..settings()
        };
        with_controller(SimDevice::nvme(ADDR).blocks(4096), config, |c| {
            let mut c = c.unwrap();
            assert_eq!(c.namespace.blocks, 4096);
            assert_eq!(c.namespace.block_size, 512);
            assert_eq!(c.controller.mdts, Some(128 * 1024));
            assert_eq!(c.max_transfer(), 16 * 1024, "bounded by the slot");
            let data: Vec<u8> = (0..16384u32).map(|i| (i * 7 + 3) as u8).collect();
            // 16 KiB: four pages, so a PRP list.
            c.write(100, &data).unwrap();
            let mut back = vec![0u8; 16384];
            c.read(100, &mut back).unwrap();
            assert_eq!(data, back);
            // Queue 1 (the second pair) sees the same namespace.
            c.submit_io(1, 1, false, 100, 4096).unwrap();
            let mut got = 0;
            while got == 0 {
                c.wait(1, |d| assert_eq!(d.slot, 1)).unwrap();
                got += 1;
            }
            let mut first = vec![0u8; 4096];
            c.slot_read(1, 1, &mut first).unwrap();
            assert_eq!(&first[..], &data[..4096]);
            let interrupts = c.take_interrupts(0) + c.take_interrupts(1);
            match completion {
                Completion::Polled => assert_eq!(interrupts, 0),
                Completion::Msix => assert!(interrupts >= 3, "{interrupts}"),
            }
            assert!(matches!(
                c.read(4095, &mut back),
                Err(NvmeError::LbaOutOfRange { .. })
            ));
            assert!(matches!(
                c.read(0, &mut [0u8; 100]),
                Err(NvmeError::BadBuffer { .. })
            ));
            c.reset().unwrap();
            c.read(100, &mut back).unwrap();
            assert_eq!(data, back, "the namespace survives a reset");
            c.shutdown().unwrap();
        });
    }
}

#[test]
fn hostile_completions_and_identify_data_give_typed_errors() {
    // CAP with MQES 0: nothing can be sized from it.
    let mut script = vec![0u8; 8];
    script[0] = 0xff;
    script[1] = 0x03; // xor MQES 0x3ff to 0
    with_controller(SimDevice::nvme(ADDR).hostile(script), settings(), |c| {
        assert!(
            matches!(
                c,
                Err(NvmeError::Malformed {
                    what: "CAP.MQES",
                    ..
                })
            ),
            "{c:?}"
        );
    });
    // Events: each Identify's data first (a count of offset/value pairs),
    // then each completion (what to corrupt). The first completion's
    // command id corrupted:
    let mut script = vec![0u8; 8];
    script.extend([0, 1, 0x34, 0x12]); // Identify untouched, then the cid
    with_controller(SimDevice::nvme(ADDR).hostile(script), settings(), |c| {
        assert!(matches!(c, Err(NvmeError::Malformed { .. })), "{c:?}");
    });
    // The first completion's status: an error.
    let mut script = vec![0u8; 8];
    script.extend([0, 2, 0x81, 0x00]);
    with_controller(SimDevice::nvme(ADDR).hostile(script), settings(), |c| {
        assert!(
            matches!(
                c,
                Err(NvmeError::Command {
                    opcode: 0x06,
                    status: 0x81
                })
            ),
            "{c:?}"
        );
    });
    // The first completion's phase wrong: it never arrives, and the wait is
    // bounded.
    let mut script = vec![0u8; 8];
    script.extend([0, 8]);
    let config = Config {
        command_timeout: std::time::Duration::from_millis(200),
        ..settings()
    };
    with_controller(SimDevice::nvme(ADDR).hostile(script), config, |c| {
        assert!(matches!(c, Err(NvmeError::Timeout { .. })), "{c:?}");
    });
    let mut script = vec![0u8; 8];
    // Identify Controller: no change; its completion clean; Identify
    // Namespace: one pair, LBADS (offset 130 = 128 + 2) to 20.
    script.extend([0, 0, 1, 128, 20]);
    with_controller(SimDevice::nvme(ADDR).hostile(script), settings(), |c| {
        assert!(
            matches!(
                c,
                Err(NvmeError::Unsupported { .. } | NvmeError::Malformed { .. })
            ),
            "{c:?}"
        );
    });
}

#[test]
fn a_controller_that_cannot_reach_its_queues_reports_fatal_status() {
    // The arena mapped at one IOVA, the driver told another: the
    // controller's first fetch of the admin queue faults, it sets CFS, and
    // the driver reports it (not a hang, not a timeout).
    let (sim, container) = sim_with(SimDevice::nvme(ADDR));
    let dev = container.open_device(ADDR).unwrap();
    let config = settings();
    let buffer = DmaBuffer::new(config.arena_bytes()).unwrap();
    let mapping = container
        .map(&buffer, 1 << 30, DmaAccess::ReadWrite)
        .unwrap();
    let c = Controller::new(&dev, Arena::mapped(&buffer, 2 << 30), config);
    assert!(matches!(c, Err(NvmeError::Fatal)), "{c:?}");
    assert!(
        !sim.take_dma_faults().is_empty(),
        "the device's DMA faulted"
    );
    drop(mapping);
}
