//! Device info, IRQ info and PCI hot-reset info decoding (the group path's
//! reading and a bound cdev's) over the same arbitrary bytes: never a panic,
//! the reference decoder's answer, independent of alignment; and the
//! `PCI_HOT_RESET` argument built from fds
//! taken from the bytes round-trips and passes the seam's shape check.
#![no_main]

use fuzz_oracle::{RefCap, Shifted, i32_at, ref_walk, u16_at, u32_at};
use libfuzzer_sys::fuzz_target;
use typed_vfio::fuzzing::{self, SeamRequest};
use typed_vfio::iommufd::HotResetOwner;

fuzz_target!(|data: &[u8]| {
    let buf = Shifted::new(data, 0);
    let bytes = buf.bytes();
    let odd = Shifted::new(data, 1 + data.len() % 2 * 3);

    // VFIO_DEVICE_GET_INFO: argsz, flags, num_regions, num_irqs, cap_offset.
    let info = fuzzing::parse_device_info(bytes);
    assert_eq!(info, fuzzing::parse_device_info(odd.bytes()));
    match info {
        Ok(info) => {
            assert!(data.len() >= 24);
            assert_eq!(
                (info.flags, info.num_regions, info.num_irqs),
                (
                    u32_at(data, 4).unwrap(),
                    u32_at(data, 8).unwrap(),
                    u32_at(data, 12).unwrap()
                )
            );
            let ids = fuzzing::parse_device_capability_ids(bytes);
            assert_eq!(ids, fuzzing::parse_device_capability_ids(odd.bytes()));
            let expected = if info.flags & 0x80 == 0 {
                Some(Vec::new())
            } else {
                let len = (u32_at(data, 0).unwrap() as usize).min(data.len());
                let (caps, failed) = ref_walk(&data[..len], u32_at(data, 16).unwrap(), 24);
                (!failed).then(|| caps.iter().map(|c: &RefCap| c.id).collect())
            };
            assert_eq!(ids.ok(), expected);
        }
        Err(_) => assert!(data.len() < 24),
    }

    // VFIO_DEVICE_GET_IRQ_INFO: argsz, flags, index, count.
    let index = u32_at(data, 8).unwrap_or(0);
    match fuzzing::parse_irq_info(index, bytes) {
        Ok(irq) => {
            assert!(data.len() >= 16);
            assert_eq!(
                (irq.index, irq.flags, irq.count),
                (index, u32_at(data, 4).unwrap(), u32_at(data, 12).unwrap())
            );
            let _ = (
                irq.eventfd(),
                irq.maskable(),
                irq.automasked(),
                irq.noresize(),
            );
        }
        Err(_) => assert!(data.len() < 16),
    }

    // VFIO_DEVICE_GET_PCI_HOT_RESET_INFO: argsz, flags, count, then count
    // devices of 8 bytes (group id u32, segment u16, bus u8, devfn u8).
    let count = fuzzing::hot_reset_info_count(bytes);
    assert_eq!(count.ok(), u32_at(data, 8));
    let devices = fuzzing::parse_hot_reset_info(bytes);
    assert_eq!(
        devices,
        fuzzing::parse_hot_reset_info(odd.bytes()),
        "decoding depends on alignment"
    );
    match &devices {
        Ok(devices) => {
            assert_eq!(devices.len() as u64, u64::from(count.unwrap()));
            assert!(12 + 8 * devices.len() <= data.len());
            for (i, d) in devices.iter().enumerate() {
                let at = 12 + 8 * i;
                assert_eq!(d.group_id, u32_at(data, at).unwrap());
                assert_eq!(d.segment, u16_at(data, at + 4).unwrap());
                assert_eq!((d.bus, d.devfn), (data[at + 6], data[at + 7]));
            }
        }
        Err(_) => {
            if let Ok(count) = count {
                assert!(12 + 8 * u64::from(count) > data.len() as u64);
            }
        }
    }

    // The same answer read as a bound cdev's: ids are device ids (flag
    // DEV_ID, bit 0), 0 is VFIO_PCI_DEVID_OWNED, u32::MAX (-1) NOT_OWNED;
    // DEV_ID_OWNED (bit 1) may not stand beside a device not owned.
    let cdev = fuzzing::parse_cdev_hot_reset_info(bytes);
    assert_eq!(cdev, fuzzing::parse_cdev_hot_reset_info(odd.bytes()));
    if let Ok(info) = &cdev {
        let flags = u32_at(data, 4).unwrap();
        assert_ne!(flags & 1, 0, "group ids read as device ids");
        assert_eq!(info.all_owned, flags & 2 != 0);
        let groups = devices
            .as_ref()
            .expect("the cdev reading decoded what the group one refused");
        assert_eq!(info.devices.len(), groups.len());
        for (c, g) in info.devices.iter().zip(groups) {
            assert_eq!((c.segment, c.bus, c.devfn), (g.segment, g.bus, g.devfn));
            let owner = match g.group_id {
                0 => HotResetOwner::GroupOwned,
                u32::MAX => HotResetOwner::NotOwned,
                id => HotResetOwner::Bound(id),
            };
            assert_eq!(c.owner, owner);
            assert!(!info.all_owned || owner != HotResetOwner::NotOwned);
        }
    } else if let (Ok(groups), Some(flags)) = (&devices, u32_at(data, 4)) {
        // Refused only for group ids or a false all-owned claim.
        assert!(
            flags & 1 == 0 || (flags & 2 != 0 && groups.iter().any(|g| g.group_id == u32::MAX))
        );
    }

    // VFIO_DEVICE_PCI_HOT_RESET: argsz, flags 0, count, then the group fds.
    let fds: Vec<i32> = (0..data.len() / 4)
        .map(|i| i32_at(data, 4 * i).unwrap())
        .collect();
    let arg = fuzzing::encode_hot_reset(&fds);
    assert_eq!(arg.len(), 12 + 4 * fds.len());
    assert_eq!(u32_at(&arg, 0), Some(arg.len() as u32));
    assert_eq!(u32_at(&arg, 4), Some(0));
    assert_eq!(u32_at(&arg, 8), Some(fds.len() as u32));
    let back: Vec<i32> = (0..fds.len())
        .map(|i| i32_at(&arg, 12 + 4 * i).unwrap())
        .collect();
    assert_eq!(back, fds);
    assert_eq!(fuzzing::check_shape(SeamRequest::PciHotReset, &arg), Ok(()));
});
