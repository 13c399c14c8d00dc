//! PCI hot reset of a device opened through its cdev.
//!
//! On the group path a hot reset proves that the caller owns every device
//! it would reset by passing their groups' fds. A cdev-opened device proves
//! it with its iommufd instead: `VFIO_DEVICE_PCI_HOT_RESET` with an empty
//! fd array (the kernel refuses group fds from a cdev, and an empty array
//! from a group-opened device, both `EINVAL`). Its
//! `VFIO_DEVICE_GET_PCI_HOT_RESET_INFO` answers device ids instead of
//! group ids (`VFIO_PCI_HOT_RESET_FLAG_DEV_ID`): each affected device's id
//! in the iommufd if it is bound to it, `VFIO_PCI_DEVID_OWNED` if it is not
//! but its IOMMU group is (a device of the group is bound to it), and
//! `VFIO_PCI_DEVID_NOT_OWNED` otherwise; `VFIO_PCI_HOT_RESET_FLAG_DEV_ID_OWNED`
//! says that none is not owned, which is when the reset is allowed.
//!
//! The answer is decoded once, by the group path's decoder
//! (`device::parse_hot_reset_info`); this module only reads its ids as
//! device ids.

use super::BoundDevice;
use crate::device::{HotResetAnswer, HotResetDevice};
use crate::error::DeviceError;
use crate::kernel::req;
use crate::sys;

/// How a device a cdev hot reset would reset stands with the iommufd the
/// resetting device is bound to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum HotResetOwner {
    /// Bound to the iommufd: its device id there.
    Bound(u32),
    /// Not bound to it, but its IOMMU group is owned by it (another device
    /// of the group is bound): `VFIO_PCI_DEVID_OWNED`.
    GroupOwned,
    /// Neither (another iommufd's, a group-opened device's, or a device no
    /// VFIO driver has): `VFIO_PCI_DEVID_NOT_OWNED`. The reset is refused
    /// while such a device is affected.
    NotOwned,
}

impl HotResetOwner {
    /// Decodes a `devid` of a `VFIO_PCI_HOT_RESET_FLAG_DEV_ID` answer.
    fn from_devid(devid: u32) -> HotResetOwner {
        // VFIO_PCI_DEVID_NOT_OWNED is -1 in a __u32 field.
        const NOT_OWNED: u32 = sys::VFIO_PCI_DEVID_NOT_OWNED as u32;
        match devid {
            sys::VFIO_PCI_DEVID_OWNED => HotResetOwner::GroupOwned,
            NOT_OWNED => HotResetOwner::NotOwned,
            id => HotResetOwner::Bound(id),
        }
    }

    /// Whether the iommufd owns the device (bound, or its group owned).
    pub fn owned(&self) -> bool {
        !matches!(self, HotResetOwner::NotOwned)
    }
}

/// A device a cdev hot reset would reset.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CdevHotResetDevice {
    /// How it stands with the resetting device's iommufd.
    pub owner: HotResetOwner,
    /// PCI segment.
    pub segment: u16,
    /// PCI bus.
    pub bus: u8,
    /// PCI device/function.
    pub devfn: u8,
}

/// What a cdev hot reset would reset, as
/// `VFIO_DEVICE_GET_PCI_HOT_RESET_INFO` reports it on a bound cdev.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CdevHotResetInfo {
    /// The affected devices, the resetting one among them.
    pub devices: Vec<CdevHotResetDevice>,
    /// `VFIO_PCI_HOT_RESET_FLAG_DEV_ID_OWNED`: the iommufd owns every
    /// affected device, so [`BoundDevice::hot_reset`] may succeed.
    pub all_owned: bool,
}

impl CdevHotResetInfo {
    /// Reads a decoded answer's ids as device ids. Untrusted: the answer
    /// must say they are (`FLAG_DEV_ID`), and must not claim every device
    /// owned while listing one that is not.
    pub(crate) fn from_answer(answer: HotResetAnswer) -> Result<CdevHotResetInfo, &'static str> {
        if answer.flags & sys::VFIO_PCI_HOT_RESET_FLAG_DEV_ID == 0 {
            return Err("the answer carries group ids, not device ids");
        }
        let devices: Vec<CdevHotResetDevice> = answer
            .devices
            .iter()
            .map(|d: &HotResetDevice| CdevHotResetDevice {
                owner: HotResetOwner::from_devid(d.group_id),
                segment: d.segment,
                bus: d.bus,
                devfn: d.devfn,
            })
            .collect();
        let all_owned = answer.flags & sys::VFIO_PCI_HOT_RESET_FLAG_DEV_ID_OWNED != 0;
        if all_owned && devices.iter().any(|d| !d.owner.owned()) {
            return Err("every device claimed owned, one listed not owned");
        }
        Ok(CdevHotResetInfo { devices, all_owned })
    }
}

impl BoundDevice {
    /// The devices a PCI hot reset of this device would reset, and how
    /// each stands with this device's iommufd
    /// (`VFIO_DEVICE_GET_PCI_HOT_RESET_INFO` on the cdev: device ids).
    /// `ENODEV` when the device has no slot or bus reset.
    #[doc(alias = "VFIO_DEVICE_GET_PCI_HOT_RESET_INFO")]
    pub fn hot_reset_info(&self) -> Result<CdevHotResetInfo, DeviceError> {
        let answer = self.device.query_pci_hot_reset_info()?;
        CdevHotResetInfo::from_answer(answer).map_err(|what| DeviceError::Malformed {
            ioctl: req::VFIO_DEVICE_GET_PCI_HOT_RESET_INFO.name,
            what,
        })
    }

    /// PCI hot reset (`VFIO_DEVICE_PCI_HOT_RESET` with no group fds: the
    /// iommufd proves ownership). The kernel refuses (`EINVAL`) unless
    /// every affected device is owned by this device's iommufd (see
    /// [`hot_reset_info`](Self::hot_reset_info)'s `all_owned`), and
    /// answers `ENODEV` without a slot or bus reset.
    #[doc(alias = "VFIO_DEVICE_PCI_HOT_RESET")]
    pub fn hot_reset(&self) -> Result<(), DeviceError> {
        self.device.issue_pci_hot_reset(&[])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dev(id: u32, devfn: u8) -> HotResetDevice {
        HotResetDevice {
            group_id: id,
            segment: 0,
            bus: 3,
            devfn,
        }
    }

    #[test]
    fn device_ids_decode_owned_and_not_owned() {
        let flags = sys::VFIO_PCI_HOT_RESET_FLAG_DEV_ID;
        let answer = HotResetAnswer {
            flags,
            devices: vec![dev(7, 0), dev(0, 1), dev(u32::MAX, 2)],
        };
        let info = CdevHotResetInfo::from_answer(answer).unwrap();
        assert!(!info.all_owned);
        assert_eq!(
            info.devices.iter().map(|d| d.owner).collect::<Vec<_>>(),
            [
                HotResetOwner::Bound(7),
                HotResetOwner::GroupOwned,
                HotResetOwner::NotOwned
            ]
        );
        assert_eq!((info.devices[2].bus, info.devices[2].devfn), (3, 2));
        let owned = HotResetAnswer {
            flags: flags | sys::VFIO_PCI_HOT_RESET_FLAG_DEV_ID_OWNED,
            devices: vec![dev(7, 0), dev(0, 1)],
        };
        assert!(CdevHotResetInfo::from_answer(owned).unwrap().all_owned);
    }

    #[test]
    fn group_ids_and_contradictions_are_refused() {
        let groups = HotResetAnswer {
            flags: 0,
            devices: vec![dev(5, 0)],
        };
        assert!(CdevHotResetInfo::from_answer(groups).is_err());
        let lying = HotResetAnswer {
            flags: sys::VFIO_PCI_HOT_RESET_FLAG_DEV_ID | sys::VFIO_PCI_HOT_RESET_FLAG_DEV_ID_OWNED,
            devices: vec![dev(7, 0), dev(u32::MAX, 1)],
        };
        assert!(CdevHotResetInfo::from_answer(lying).is_err());
    }
}
