//! Fault injection on the simulated kernel: every fallible transition,
//! failed at its ioctl, returns a typed error naming the ioctl and errno,
//! hands back the object it consumed (usable for a retry), and leaks no fd.
//!
//! One test in its own binary: it counts `/proc/self/fd`, which other tests
//! running in parallel threads would disturb.

use typed_vfio::sim::Simulator;
use typed_vfio::{
    ContainerError, DeviceError, DmaAccess, DmaBuffer, DmaError, Errno, GroupError, Type1v2,
};

/// Open fds of this process. The simulator releases a closed object's own
/// end at its next call, so it is asked something first.
fn fds(sim: &Simulator) -> usize {
    let _ = sim.calls("open");
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

#[test]
#[cfg_attr(miri, ignore = "reads /proc/self/fd")]
fn every_failed_transition_hands_back_its_object_and_leaks_no_fd() {
    let sim = Simulator::new();

    // open: the container node.
    let n = fds(&sim);
    sim.inject_fault("open", 1, Errno::ENFILE).unwrap();
    assert!(matches!(
        sim.open_container(),
        Err(ContainerError::Open {
            errno: Errno::ENFILE,
            ..
        })
    ));
    // GET_API_VERSION fails after the open: the fd is closed again.
    sim.inject_fault("VFIO_GET_API_VERSION", 1, Errno::EIO)
        .unwrap();
    assert!(matches!(
        sim.open_container(),
        Err(ContainerError::Ioctl {
            ioctl: "VFIO_GET_API_VERSION",
            errno: Errno::EIO
        })
    ));
    assert_eq!(fds(&sim), n, "open failures leaked an fd");

    // SET_CONTAINER: container and group come back; the retry works.
    let container = sim.open_container().unwrap();
    let group = sim.open_group(1).unwrap();
    let n = fds(&sim);
    sim.inject_fault("VFIO_GROUP_SET_CONTAINER", 1, Errno::ENOMEM)
        .unwrap();
    let err = container.attach(group).unwrap_err();
    assert!(matches!(
        err.error,
        GroupError::Ioctl {
            ioctl: "VFIO_GROUP_SET_CONTAINER",
            errno: Errno::ENOMEM,
            ..
        }
    ));
    assert!(!err.group.status().unwrap().container_set);
    assert_eq!(fds(&sim), n);
    let attached = err.container.attach(err.group).unwrap();

    // SET_IOMMU: the attached container comes back.
    sim.inject_fault("VFIO_SET_IOMMU", 1, Errno::ENOMEM)
        .unwrap();
    let err = attached.set_iommu::<Type1v2>().unwrap_err();
    assert!(matches!(
        err.error,
        ContainerError::Ioctl {
            ioctl: "VFIO_SET_IOMMU",
            errno: Errno::ENOMEM
        }
    ));
    assert_eq!(err.container.groups().len(), 1);
    assert_eq!(fds(&sim), n);
    let c = err.container.set_iommu::<Type1v2>().unwrap();

    // GET_DEVICE_FD, then GET_INFO on the new device fd (which is closed).
    sim.inject_fault("VFIO_GROUP_GET_DEVICE_FD", 1, Errno::EMFILE)
        .unwrap();
    assert!(matches!(
        c.open_device("0000:01:00.0"),
        Err(GroupError::NoDevice {
            errno: Errno::EMFILE,
            ..
        })
    ));
    sim.inject_fault("VFIO_DEVICE_GET_INFO", 1, Errno::EIO)
        .unwrap();
    assert!(matches!(
        c.open_device("0000:01:00.0"),
        Err(GroupError::Device(DeviceError::Ioctl {
            ioctl: "VFIO_DEVICE_GET_INFO",
            errno: Errno::EIO
        }))
    ));
    assert_eq!(fds(&sim), n, "a failed device open leaked an fd");

    // GET_INFO (read once for the DMA checks), then MAP_DMA.
    let buf = DmaBuffer::new(4096).unwrap();
    sim.inject_fault("VFIO_IOMMU_GET_INFO", 1, Errno::EIO)
        .unwrap();
    assert!(matches!(
        c.map(&buf, 0x10_0000, DmaAccess::ReadWrite),
        Err(DmaError::Info(ContainerError::Ioctl {
            errno: Errno::EIO,
            ..
        }))
    ));
    sim.inject_fault("VFIO_IOMMU_MAP_DMA", 1, Errno::ENOMEM)
        .unwrap();
    assert!(matches!(
        c.map(&buf, 0x10_0000, DmaAccess::ReadWrite),
        Err(DmaError::Ioctl {
            ioctl: "VFIO_IOMMU_MAP_DMA",
            errno: Errno::ENOMEM,
            ..
        })
    ));
    assert!(!buf.is_mapped());
    assert!(sim.mappings().is_empty());
    let m = c.map(&buf, 0x10_0000, DmaAccess::ReadWrite).unwrap();
    drop(m);
    assert_eq!(fds(&sim), n);

    // SET_IRQS with an eventfd: the simulator's reference is dropped when
    // the trigger is torn down.
    let dev = c.open_device("0000:01:00.0").unwrap();
    let e = nix::sys::eventfd::EventFd::new().unwrap();
    let with_dev = fds(&sim);
    sim.inject_fault("VFIO_DEVICE_SET_IRQS", 1, Errno::EIO)
        .unwrap();
    assert!(
        dev.set_irq_eventfd(1, 0, std::os::fd::AsFd::as_fd(&e))
            .is_err()
    );
    assert_eq!(fds(&sim), with_dev);
    dev.set_irq_eventfd(1, 0, std::os::fd::AsFd::as_fd(&e))
        .unwrap();
    assert_eq!(
        fds(&sim),
        with_dev + 1,
        "the kernel holds its own reference"
    );
    dev.disable_irq(1).unwrap();
    assert_eq!(fds(&sim), with_dev);
    drop(e);
    drop(dev);

    // UNSET_CONTAINER: the container comes back in its state with its group.
    sim.inject_fault("VFIO_GROUP_UNSET_CONTAINER", 1, Errno::EIO)
        .unwrap();
    let err = c.release_groups().unwrap_err();
    assert!(matches!(
        err.error,
        GroupError::Ioctl {
            ioctl: "VFIO_GROUP_UNSET_CONTAINER",
            errno: Errno::EIO,
            ..
        }
    ));
    assert_eq!(err.container.groups().len(), 1);
    assert_eq!(fds(&sim), n);
    let (unset, groups) = err.container.release_groups().map_err(|e| e.error).unwrap();
    drop((unset, groups));
    // Each simulated object is two fds (the caller's end and the simulator's).
    assert_eq!(fds(&sim), n - 4, "container and group released");
}
