//! IOMMU groups (`/dev/vfio/N`, `/dev/vfio/noiommu-N`).

use std::ffi::CString;
use std::fmt;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use crate::sys::{FromBytes, IntoBytes};

use crate::device::Device;
use crate::error::GroupError;
use crate::kernel::{Arg, Kernel, req};
use crate::sys;

/// A group's id: its number and whether it is a no-IOMMU group.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct GroupId {
    /// The group number (the basename of sysfs `iommu_group`).
    pub number: u32,
    /// A no-IOMMU group (`/dev/vfio/noiommu-N`).
    pub noiommu: bool,
}

impl GroupId {
    /// An IOMMU-backed group.
    pub fn new(number: u32) -> Self {
        GroupId {
            number,
            noiommu: false,
        }
    }

    /// A no-IOMMU group.
    pub fn noiommu(number: u32) -> Self {
        GroupId {
            number,
            noiommu: true,
        }
    }

    /// The group's node under `/dev/vfio`.
    pub fn path(&self) -> PathBuf {
        PathBuf::from(format!("/dev/vfio/{self}"))
    }
}

impl fmt::Display for GroupId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.noiommu {
            write!(f, "noiommu-{}", self.number)
        } else {
            write!(f, "{}", self.number)
        }
    }
}

/// What `VFIO_GROUP_GET_STATUS` reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GroupStatus {
    /// Every device of the group is bound to a VFIO driver (or none).
    pub viable: bool,
    /// The group is attached to a container.
    pub container_set: bool,
}

/// An open IOMMU group.
///
/// ```
/// use typed_vfio::{GroupId, sim::Simulator};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let sim = Simulator::new();
/// let group = sim.open_group(1)?; // Group::open(1) on a host
/// assert_eq!(group.id(), GroupId::new(1));
/// let status = group.status()?;
/// assert!(status.viable && !status.container_set);
/// // A group node opens once at a time: the kernel says EBUSY.
/// assert!(sim.open_group(1).is_err());
/// # Ok(())
/// # }
/// ```
pub struct Group {
    fd: OwnedFd,
    id: GroupId,
    kernel: Kernel,
}

impl fmt::Debug for Group {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Group")
            .field("id", &self.id)
            .field("fd", &self.fd)
            .finish()
    }
}

impl Group {
    /// Opens group `number` (`/dev/vfio/N`).
    pub fn open(number: u32) -> Result<Group, GroupError> {
        Self::open_id(GroupId::new(number))
    }

    /// Opens a no-IOMMU group (`/dev/vfio/noiommu-N`).
    pub fn open_noiommu(number: u32) -> Result<Group, GroupError> {
        Self::open_id(GroupId::noiommu(number))
    }

    /// Opens the group with this id.
    pub fn open_id(id: GroupId) -> Result<Group, GroupError> {
        Self::open_in(Kernel::host(), id)
    }

    /// Opens the group node `id` of `kernel`.
    pub(crate) fn open_in(kernel: Kernel, id: GroupId) -> Result<Group, GroupError> {
        let path = id.path();
        let fd = kernel
            .open(&path)
            .map_err(|errno| GroupError::Open { path, errno })?;
        Ok(Group { fd, id, kernel })
    }

    /// Opens the group of a PCI device by its address (`0000:01:00.0`), read
    /// from sysfs `iommu_group`; a no-IOMMU group is recognised by its node
    /// (see [`id_of_pci_device`](Self::id_of_pci_device)).
    pub fn for_pci_device(address: &str) -> Result<Group, GroupError> {
        Self::open_id(Self::id_of_pci_device(address)?)
    }

    /// The group id of a PCI device, from sysfs: its number, and whether it
    /// is a no-IOMMU group, which is when `/dev/vfio/N` does not exist but
    /// `/dev/vfio/noiommu-N` does (with neither, as on a kernel without the
    /// group interface, it is not one).
    pub fn id_of_pci_device(address: &str) -> Result<GroupId, GroupError> {
        let link = Path::new("/sys/bus/pci/devices")
            .join(address)
            .join("iommu_group");
        let target = std::fs::read_link(&link).map_err(|error| GroupError::Sysfs {
            path: link.clone(),
            kind: error.kind(),
            errno: error.raw_os_error().map(crate::Errno::from_raw),
        })?;
        let number = target
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.parse::<u32>().ok())
            .ok_or_else(|| GroupError::Sysfs {
                path: link.clone(),
                kind: std::io::ErrorKind::InvalidData,
                errno: None,
            })?;
        let plain = GroupId::new(number);
        let noiommu = GroupId::noiommu(number);
        if !plain.path().exists() && noiommu.path().exists() {
            Ok(noiommu)
        } else {
            Ok(plain)
        }
    }

    /// Adopts an already-open group fd (privilege separation).
    pub fn from_fd(fd: OwnedFd, id: GroupId) -> Group {
        Group {
            kernel: Kernel::for_fd(fd.as_fd()),
            fd,
            id,
        }
    }

    /// The group's id.
    pub fn id(&self) -> GroupId {
        self.id
    }

    /// The group fd, borrowed.
    pub fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Viability and container status (`VFIO_GROUP_GET_STATUS`).
    #[doc(alias = "VFIO_GROUP_GET_STATUS")]
    pub fn status(&self) -> Result<GroupStatus, GroupError> {
        let mut status = sys::vfio_group_status::new_zeroed();
        status.argsz = size_of::<sys::vfio_group_status>() as u32;
        self.kernel
            .ioctl(
                self.fd.as_fd(),
                req::VFIO_GROUP_GET_STATUS,
                Arg::InOut(status.as_mut_bytes()),
            )
            .map_err(|errno| GroupError::Ioctl {
                ioctl: req::VFIO_GROUP_GET_STATUS.name,
                group: self.id,
                errno,
            })?;
        let status = sys::vfio_group_status::read_from_bytes(status.as_bytes()).unwrap_or(status);
        Ok(GroupStatus {
            viable: status.flags & sys::VFIO_GROUP_FLAGS_VIABLE != 0,
            container_set: status.flags & sys::VFIO_GROUP_FLAGS_CONTAINER_SET != 0,
        })
    }

    /// Opens a device of this group by name (`VFIO_GROUP_GET_DEVICE_FD`),
    /// then reads its info. Reached through
    /// [`Container::open_device`](crate::Container::open_device), which
    /// exists only once an IOMMU model is set, as the kernel requires.
    pub(crate) fn open_device(&self, name: &str) -> Result<Device, GroupError> {
        let cname =
            CString::new(name).map_err(|_| GroupError::BadDeviceName { name: name.into() })?;
        let fd = self
            .kernel
            .ioctl(
                self.fd.as_fd(),
                req::VFIO_GROUP_GET_DEVICE_FD,
                Arg::In(cname.as_bytes_with_nul()),
            )
            .map_err(|errno| GroupError::NoDevice {
                name: name.into(),
                group: self.id,
                errno,
            })?;
        let fd = self.kernel.adopt_fd(fd);
        Ok(Device::from_kernel_fd(self.kernel.clone(), fd)?)
    }
}

impl AsFd for Group {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}
