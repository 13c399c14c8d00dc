//! The smaller device features on the simulator: `VFIO_DEVICE_IOEVENTFD`,
//! INTx unmask by eventfd, low power entry and exit. The guest suite runs
//! the same on the real kernel (`typed::common::typed_ioeventfd_*`).

use std::os::fd::AsFd;

use nix::sys::eventfd::{EfdFlags, EventFd};
use typed_vfio::sim::Simulator;
use typed_vfio::{Device, DeviceError, Errno, IoEventData, PciIrq, Type1v2};

const LIVENESS: u64 = 0x04;
const IRQ_RAISE: u64 = 0x60;
const IRQ_ACK: u64 = 0x64;

fn eventfd() -> EventFd {
    EventFd::from_value_and_flags(0, EfdFlags::EFD_CLOEXEC | EfdFlags::EFD_NONBLOCK).unwrap()
}

fn with_device(f: impl FnOnce(&Device)) {
    let sim = Simulator::new();
    let c = sim
        .open_container()
        .unwrap()
        .attach(sim.open_group(1).unwrap())
        .unwrap()
        .set_iommu::<Type1v2>()
        .unwrap();
    f(&c.open_device("0000:01:00.0").unwrap());
}

fn errno<T: std::fmt::Debug>(r: Result<T, DeviceError>) -> Errno {
    match r {
        Err(DeviceError::IndexedIoctl { errno, .. }) => errno,
        other => panic!("expected an ioctl error, got {other:?}"),
    }
}

#[test]
#[cfg_attr(miri, ignore = "polls eventfds")]
fn an_ioeventfd_writes_its_value_when_signalled() {
    with_device(|d| {
        let bar0 = d.region(0).unwrap();
        let e = eventfd();
        let data = IoEventData::U32(0x1234_5678);
        bar0.add_ioeventfd(LIVENESS, data, e.as_fd()).unwrap();
        assert_eq!(
            errno(bar0.add_ioeventfd(LIVENESS, data, e.as_fd())),
            Errno::EEXIST
        );
        // A different value at the same place is another ioeventfd.
        bar0.add_ioeventfd(LIVENESS, IoEventData::U32(1), eventfd().as_fd())
            .unwrap();
        bar0.write_u32(LIVENESS, 0).unwrap();
        assert_eq!(bar0.read_u32(LIVENESS).unwrap(), !0);
        e.write(1).unwrap();
        e.write(1).unwrap();
        assert_eq!(bar0.read_u32(LIVENESS).unwrap(), !0x1234_5678);
        bar0.remove_ioeventfd(LIVENESS, data).unwrap();
        assert_eq!(errno(bar0.remove_ioeventfd(LIVENESS, data)), Errno::ENODEV);
        bar0.write_u32(LIVENESS, 0).unwrap();
        e.write(1).unwrap();
        assert_eq!(
            bar0.read_u32(LIVENESS).unwrap(),
            !0,
            "a removed ioeventfd wrote"
        );
        // Checked before the kernel: past the region.
        assert!(matches!(
            bar0.add_ioeventfd(bar0.info().size - 2, data, e.as_fd()),
            Err(DeviceError::OutOfBounds { .. })
        ));
        // Not a BAR: the kernel refuses.
        let config = d.pci_config().unwrap();
        assert_eq!(
            errno(config.add_ioeventfd(0, IoEventData::U8(0), e.as_fd())),
            Errno::EINVAL
        );
    });
}

#[test]
#[cfg_attr(miri, ignore = "polls eventfds")]
fn an_unmask_eventfd_unmasks_intx() {
    with_device(|d| {
        let intx = PciIrq::Intx as u32;
        let (trigger, unmask) = (eventfd(), eventfd());
        // Before INTx is enabled there is nothing to unmask.
        assert!(matches!(
            d.set_irq_unmask_eventfd(intx, 0, Some(unmask.as_fd())),
            Err(DeviceError::IrqNotEnabled { .. })
        ));
        d.set_irq_eventfd(intx, 0, trigger.as_fd()).unwrap();
        d.set_irq_unmask_eventfd(intx, 0, Some(unmask.as_fd()))
            .unwrap();
        let bar0 = d.region(0).unwrap();
        bar0.write_u32(IRQ_RAISE, 1).unwrap();
        assert_eq!(trigger.read().unwrap(), 1);
        bar0.write_u32(IRQ_ACK, 1).unwrap();
        bar0.write_u32(IRQ_RAISE, 1).unwrap();
        assert!(trigger.read().is_err(), "automasked INTx got through");
        unmask.write(1).unwrap();
        // The next entry into the kernel sees the signal.
        let _ = bar0.read_u32(0).unwrap();
        assert_eq!(trigger.read().unwrap(), 1, "not unmasked");
        d.set_irq_unmask_eventfd(intx, 0, None).unwrap();
        // MSI has no unmask.
        assert!(
            d.set_irq_unmask_eventfd(PciIrq::Msi as u32, 0, Some(unmask.as_fd()))
                .is_err()
        );
    });
}

#[test]
fn low_power_entry_and_exit() {
    with_device(|d| {
        d.low_power_entry().unwrap();
        d.low_power_exit().unwrap();
        assert_eq!(d.region(0).unwrap().read_u32(0).unwrap(), 0x0100_00ed);
    });
}
