//! Placeholder checks of the rig itself (std only, no typed-vfio API): the
//! guest set up what the real tests will rely on.

use std::fs;
use std::os::unix::fs::FileTypeExt;

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
