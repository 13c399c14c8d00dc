//! Checks of the rig itself (std and the raw `sys` layer, no typed API): the
//! guest set up what the real tests rely on, and the container behind
//! `/dev/vfio/vfio` is the one the configuration says (VFIO's own, or
//! iommufd's compatibility container under `tvfio.compat=1`).

use std::fs;
use std::mem::size_of;
use std::os::fd::AsFd;
use std::os::unix::fs::FileTypeExt;

use nix::errno::Errno;
use typed_vfio::sys;

use crate::edu::{expect_errno, open_container, open_group, set_container, unset_container};
use crate::rig::{self, IommuKind};

#[test]
#[ignore = "needs a VFIO guest: run tests/vm/run"]
fn environment_describes_the_configuration() {
    let name = rig::config();
    assert!(!name.is_empty(), "TVFIO_CONFIG is empty");
    let iommu = rig::iommu();
    let pairs = rig::devices_with_groups();
    for (bdf, group) in &pairs {
        // DDDD:BB:DD.F
        let b = bdf.as_bytes();
        assert!(
            b.len() == 12 && b[4] == b':' && b[7] == b':' && b[10] == b'.',
            "{bdf:?} is not a PCI address"
        );
        let number = match iommu {
            IommuKind::NoIommu => group.strip_prefix("noiommu-").unwrap_or_else(|| {
                panic!("no-IOMMU mode, but group {group:?} is not named noiommu-N")
            }),
            _ => group.as_str(),
        };
        assert!(
            number.parse::<u32>().is_ok(),
            "group {group:?}: not a group number"
        );
    }
    println!("config {name}, iommu {iommu:?}, devices/groups {pairs:?}");
}

#[test]
#[ignore = "needs a VFIO guest: run tests/vm/run"]
fn vfio_container_node_is_a_char_device() {
    let meta = fs::metadata(rig::VFIO_CONTAINER)
        .unwrap_or_else(|e| panic!("{}: {e}", rig::VFIO_CONTAINER));
    assert!(
        meta.file_type().is_char_device(),
        "{} is not a character device",
        rig::VFIO_CONTAINER
    );
}

#[test]
#[ignore = "needs a VFIO guest: run tests/vm/run"]
fn every_group_has_a_char_device_node() {
    let groups = rig::groups();
    assert!(!groups.is_empty(), "TVFIO_GROUPS is empty");
    for g in &groups {
        let path = rig::group_path(g);
        let meta = fs::metadata(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert!(
            meta.file_type().is_char_device(),
            "{} is not a character device",
            path.display()
        );
    }
    // one group per device: each edu sits behind its own root port
    let mut sorted = groups.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(
        sorted.len(),
        groups.len(),
        "devices share a group: {groups:?}"
    );
}

#[test]
#[ignore = "needs a VFIO guest: run tests/vm/run"]
fn devices_are_edu_bound_to_vfio_pci() {
    for (bdf, group) in rig::devices_with_groups() {
        assert_eq!(
            rig::read_sysfs_hex(&bdf, "vendor"),
            u32::from(rig::EDU_VENDOR),
            "{bdf}: vendor"
        );
        assert_eq!(
            rig::read_sysfs_hex(&bdf, "device"),
            u32::from(rig::EDU_DEVICE),
            "{bdf}: device"
        );

        let dev = rig::sysfs_device(&bdf);
        let driver = fs::read_link(dev.join("driver"))
            .unwrap_or_else(|e| panic!("{bdf}: driver link: {e} (not bound to any driver)"));
        assert_eq!(
            driver.file_name().and_then(|n| n.to_str()),
            Some("vfio-pci"),
            "{bdf}: bound to {}",
            driver.display()
        );

        // the group named for this device is the device's iommu_group
        let iommu_group = fs::read_link(dev.join("iommu_group"))
            .unwrap_or_else(|e| panic!("{bdf}: iommu_group link: {e}"));
        let number = iommu_group
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_owned();
        assert!(
            group == number || group == format!("noiommu-{number}"),
            "{bdf}: TVFIO_GROUPS says {group}, sysfs iommu_group is {number}"
        );
    }
}

/// `IOMMU_VFIO_IOAS` with `IOMMU_VFIO_IOAS_GET` on the container fd: an
/// iommufd request, which only an iommufd answers.
fn compat_ioas_id(container: &fs::File) -> nix::Result<u32> {
    let mut arg = sys::iommu_vfio_ioas {
        size: size_of::<sys::iommu_vfio_ioas>() as u32,
        ioas_id: 0,
        op: sys::IOMMU_VFIO_IOAS_GET as u16,
        __reserved: 0,
    };
    // SAFETY: `arg` is a live, writable iommu_vfio_ioas whose size field is
    // its own size; the kernel writes at most that. On a VFIO container fd
    // (not an iommufd) the kernel refuses the unknown request.
    unsafe {
        sys::ioctl::iommu_vfio_ioas(sys::IommufdFd::new(container.as_fd()), &mut arg)?;
    }
    Ok(arg.ioas_id)
}

/// `tvfio.compat=1` exactly when `/dev/vfio/vfio` is iommufd's VFIO
/// compatibility container: it then answers iommufd's own `IOMMU_VFIO_IOAS`
/// (ENODEV while no group has created the compat IOAS, the IOAS id once one
/// has; drivers/iommu/iommufd/vfio_compat.c, iommufd_vfio_ioas), and
/// `/dev/iommu` exists beside it. VFIO's own container passes the unknown
/// request to its IOMMU driver, and has none before `VFIO_SET_IOMMU`: EINVAL
/// (drivers/vfio/container.c, vfio_fops_unl_ioctl). Fails on the wrong kernel
/// either way round.
#[test]
#[ignore = "needs a VFIO guest: run tests/vm/run"]
fn the_container_is_iommufds_exactly_in_compat_mode() {
    let compat = rig::compat();
    let c = open_container();
    let (_, g) = &rig::devices_with_groups()[0];
    let group = open_group(g);
    if compat {
        let meta = fs::metadata("/dev/iommu").unwrap_or_else(|e| panic!("/dev/iommu: {e}"));
        assert!(
            meta.file_type().is_char_device(),
            "/dev/iommu is not a character device"
        );
        expect_errno(
            "IOMMU_VFIO_IOAS GET, no group yet",
            compat_ioas_id(&c),
            Errno::ENODEV,
        );
        set_container(&group, &c).expect("VFIO_GROUP_SET_CONTAINER");
        let id = compat_ioas_id(&c).expect("IOMMU_VFIO_IOAS GET with a group attached");
        println!("compat container: the group's attach created IOAS {id}");
        assert_ne!(id, 0, "IOAS id 0");
        unset_container(&group).expect("VFIO_GROUP_UNSET_CONTAINER");
    } else {
        expect_errno(
            "IOMMU_VFIO_IOAS GET on VFIO's container",
            compat_ioas_id(&c),
            Errno::EINVAL,
        );
        set_container(&group, &c).expect("VFIO_GROUP_SET_CONTAINER");
        expect_errno(
            "IOMMU_VFIO_IOAS GET on VFIO's container with a group",
            compat_ioas_id(&c),
            Errno::EINVAL,
        );
        unset_container(&group).expect("VFIO_GROUP_UNSET_CONTAINER");
    }
}
