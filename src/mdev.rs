//! Mediated devices (mdev): creating and removing them through sysfs.
//!
//! A parent driver (the kernel's `mtty` sample, a GPU's vGPU driver)
//! registers under `/sys/class/mdev_bus/<parent>`, offering device types in
//! `mdev_supported_types/<type>/`. Writing a UUID into a type's `create`
//! makes an mdev at `/sys/bus/mdev/devices/<uuid>`; writing `1` into its
//! `remove` ends it. The mdev sits in an IOMMU group of its own on the
//! emulated IOMMU (`/dev/vfio/N`), opened like any group with the UUID as
//! the device name, or through its cdev (`vfio-dev/vfioN`) on iommufd.
//!
//! sysfs is read as untrusted: names and numbers are parsed, never assumed.

use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};

use thiserror::Error;

use crate::group::GroupId;

/// The sysfs directory of mdev parents.
pub const MDEV_BUS_CLASS: &str = "/sys/class/mdev_bus";
/// The sysfs directory of mdevs.
pub const MDEV_DEVICES: &str = "/sys/bus/mdev/devices";

/// Why an mdev operation failed.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum MdevError {
    /// A sysfs read or write failed.
    #[error("{path}: {kind}{}", errno.map(|e| format!(" ({e})")).unwrap_or_default())]
    Sysfs {
        /// The path.
        path: PathBuf,
        /// What went wrong (`NotFound`: no such parent, type or mdev).
        kind: std::io::ErrorKind,
        /// The errno, when a system call failed (`EEXIST`: the UUID is in
        /// use; `EINVAL`: no instance available).
        errno: Option<crate::Errno>,
    },
    /// sysfs said something that does not parse.
    #[error("{path}: unexpected contents: {what}")]
    Malformed {
        /// The path.
        path: PathBuf,
        /// What was wrong.
        what: &'static str,
    },
    /// A UUID string that is not one.
    #[error("not a UUID: {0:?}")]
    BadUuid(String),
}

fn sysfs_error(path: &Path, error: std::io::Error) -> MdevError {
    MdevError::Sysfs {
        path: path.to_owned(),
        kind: error.kind(),
        errno: error.raw_os_error().map(crate::Errno::from_raw),
    }
}

/// Reads a small sysfs attribute (at most 4 KiB, sysfs' page), trimmed.
fn read_attr(path: &Path) -> Result<String, MdevError> {
    let file = std::fs::File::open(path).map_err(|e| sysfs_error(path, e))?;
    let mut text = String::new();
    file.take(4096)
        .read_to_string(&mut text)
        .map_err(|e| sysfs_error(path, e))?;
    Ok(text.trim().to_owned())
}

fn write_attr(path: &Path, value: &str) -> Result<(), MdevError> {
    std::fs::write(path, value).map_err(|e| sysfs_error(path, e))
}

/// An mdev's UUID.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct MdevUuid([u8; 16]);

impl MdevUuid {
    /// A random (version 4) UUID, from `/dev/urandom`.
    pub fn random() -> Result<MdevUuid, MdevError> {
        let path = Path::new("/dev/urandom");
        let mut b = [0u8; 16];
        std::fs::File::open(path)
            .and_then(|mut f| f.read_exact(&mut b))
            .map_err(|e| sysfs_error(path, e))?;
        b[6] = (b[6] & 0x0f) | 0x40;
        b[8] = (b[8] & 0x3f) | 0x80;
        Ok(MdevUuid(b))
    }

    /// Parses `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx` (either case).
    pub fn parse(s: &str) -> Result<MdevUuid, MdevError> {
        let bad = || MdevError::BadUuid(s.to_owned());
        let groups: Vec<&str> = s.split('-').collect();
        let lens = [8, 4, 4, 4, 12];
        if groups.len() != 5 || groups.iter().zip(lens).any(|(g, l)| g.len() != l) {
            return Err(bad());
        }
        let hex: String = groups.concat();
        let mut b = [0u8; 16];
        for (i, slot) in b.iter_mut().enumerate() {
            let pair = hex.get(2 * i..2 * i + 2).ok_or_else(bad)?;
            *slot = u8::from_str_radix(pair, 16).map_err(|_| bad())?;
        }
        Ok(MdevUuid(b))
    }
}

impl fmt::Display for MdevUuid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, b) in self.0.iter().enumerate() {
            if matches!(i, 4 | 6 | 8 | 10) {
                f.write_str("-")?;
            }
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

/// A parent device offering mdev types.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MdevParent {
    dir: PathBuf,
    /// Where mdevs appear (`/sys/bus/mdev/devices`, or a test tree's).
    devices: PathBuf,
}

/// One mdev type of a parent (`mdev_supported_types/<id>`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MdevType {
    /// Its directory name (`mtty-1`).
    pub id: String,
    /// Its `name` attribute, if it has one.
    pub name: Option<String>,
    /// `available_instances`.
    pub available: u32,
    /// `device_api` (`vfio-pci`).
    pub device_api: String,
    dir: PathBuf,
}

impl MdevParent {
    /// The parent registered as `/sys/class/mdev_bus/<name>` (`mtty`).
    pub fn by_name(name: &str) -> Result<MdevParent, MdevError> {
        if name.is_empty() || name.contains('/') || name == "." || name == ".." {
            return Err(MdevError::Malformed {
                path: Path::new(MDEV_BUS_CLASS).join(name),
                what: "not a parent name",
            });
        }
        Self::at(Path::new(MDEV_BUS_CLASS).join(name), MDEV_DEVICES)
    }

    /// The parent whose sysfs directory is `dir`, its mdevs appearing in
    /// `devices` (another sysfs root: containers, tests).
    pub fn at(
        dir: impl Into<PathBuf>,
        devices: impl Into<PathBuf>,
    ) -> Result<MdevParent, MdevError> {
        let dir = dir.into();
        let types = dir.join("mdev_supported_types");
        if !types.is_dir() {
            return Err(MdevError::Sysfs {
                path: types,
                kind: std::io::ErrorKind::NotFound,
                errno: None,
            });
        }
        Ok(MdevParent {
            dir,
            devices: devices.into(),
        })
    }

    /// Whether any parent of this name is registered.
    pub fn exists(name: &str) -> bool {
        Self::by_name(name).is_ok()
    }

    /// The types it offers, sorted by id (at most 256 read).
    pub fn types(&self) -> Result<Vec<MdevType>, MdevError> {
        let root = self.dir.join("mdev_supported_types");
        let entries = std::fs::read_dir(&root).map_err(|e| sysfs_error(&root, e))?;
        let mut out = Vec::new();
        for entry in entries.take(256) {
            let entry = entry.map_err(|e| sysfs_error(&root, e))?;
            let Some(id) = entry.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            let dir = root.join(&id);
            let available_path = dir.join("available_instances");
            let available =
                read_attr(&available_path)?
                    .parse()
                    .map_err(|_| MdevError::Malformed {
                        path: available_path,
                        what: "available_instances is not a number",
                    })?;
            out.push(MdevType {
                name: read_attr(&dir.join("name")).ok(),
                device_api: read_attr(&dir.join("device_api"))?,
                available,
                id,
                dir,
            });
        }
        out.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(out)
    }

    /// Creates an mdev of type `ty` with `uuid` (`create`).
    pub fn create(&self, ty: &MdevType, uuid: MdevUuid) -> Result<Mdev, MdevError> {
        write_attr(&ty.dir.join("create"), &uuid.to_string())?;
        Ok(Mdev {
            uuid,
            dir: self.devices.join(uuid.to_string()),
            remove_on_drop: true,
        })
    }
}

/// A mediated device; removed when dropped unless [`keep`](Mdev::keep) was
/// called.
#[derive(Debug)]
pub struct Mdev {
    uuid: MdevUuid,
    dir: PathBuf,
    remove_on_drop: bool,
}

impl Mdev {
    /// Its UUID: the device name to open it by in its group.
    pub fn uuid(&self) -> MdevUuid {
        self.uuid
    }

    /// The name [`Container::open_device`](crate::Container::open_device)
    /// takes.
    pub fn name(&self) -> String {
        self.uuid.to_string()
    }

    /// Its sysfs directory.
    pub fn sysfs(&self) -> &Path {
        &self.dir
    }

    /// Its IOMMU group (the basename of sysfs `iommu_group`).
    pub fn group(&self) -> Result<GroupId, MdevError> {
        let link = self.dir.join("iommu_group");
        let target = std::fs::read_link(&link).map_err(|e| sysfs_error(&link, e))?;
        let number = target
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.parse::<u32>().ok())
            .ok_or(MdevError::Malformed {
                path: link,
                what: "iommu_group does not name a group number",
            })?;
        Ok(GroupId::new(number))
    }

    /// Its VFIO cdev node (`/dev/vfio/devices/vfioN`, from sysfs
    /// `vfio-dev/vfioN`; needs `CONFIG_VFIO_DEVICE_CDEV`).
    pub fn cdev_path(&self) -> Result<PathBuf, MdevError> {
        let dir = self.dir.join("vfio-dev");
        let entries = std::fs::read_dir(&dir).map_err(|e| sysfs_error(&dir, e))?;
        let mut names: Vec<String> = entries
            .take(64)
            .filter_map(|e| e.ok())
            .filter_map(|e| e.file_name().to_str().map(str::to_owned))
            .filter(|n| {
                n.strip_prefix("vfio")
                    .is_some_and(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))
            })
            .collect();
        names.sort();
        match names.as_slice() {
            [one] => Ok(Path::new("/dev/vfio/devices").join(one)),
            _ => Err(MdevError::Malformed {
                path: dir,
                what: "not exactly one vfioN entry",
            }),
        }
    }

    /// Removes the mdev (`remove`).
    pub fn remove(mut self) -> Result<(), MdevError> {
        self.remove_on_drop = false;
        write_attr(&self.dir.join("remove"), "1")
    }

    /// Leaves the mdev in place when dropped.
    pub fn keep(mut self) -> MdevUuid {
        self.remove_on_drop = false;
        self.uuid
    }
}

impl Drop for Mdev {
    fn drop(&mut self) {
        if self.remove_on_drop {
            // Best effort: Drop cannot report (the error path is `remove`).
            let _ = write_attr(&self.dir.join("remove"), "1");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuids_parse_and_print() {
        let s = "83b8f4f2-509f-382f-3c1e-e6bfe0fa1001";
        let u = MdevUuid::parse(s).unwrap();
        assert_eq!(u.to_string(), s);
        assert_eq!(MdevUuid::parse(&s.to_uppercase()).unwrap(), u);
        for bad in [
            "",
            "83b8f4f2509f382f3c1ee6bfe0fa1001",
            "83b8f4f2-509f-382f-3c1e-e6bfe0fa100g",
            "83b8f4f2-509f-382f-3c1e-e6bfe0fa10011",
        ] {
            assert!(MdevUuid::parse(bad).is_err(), "{bad}");
        }
        let r = MdevUuid::random().unwrap();
        assert_eq!(MdevUuid::parse(&r.to_string()).unwrap(), r);
        assert_eq!(r.0[6] >> 4, 4);
    }

    #[test]
    fn a_sysfs_shaped_tree() {
        let root = std::env::temp_dir().join(format!("tvfio-mdev-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let ty = root.join("parent/mdev_supported_types/mtty-2");
        std::fs::create_dir_all(&ty).unwrap();
        std::fs::write(ty.join("name"), "Dual-port-serial\n").unwrap();
        std::fs::write(ty.join("available_instances"), "12\n").unwrap();
        std::fs::write(ty.join("device_api"), "vfio-pci\n").unwrap();
        let devices = root.join("devices");
        std::fs::create_dir_all(&devices).unwrap();
        let parent = MdevParent::at(root.join("parent"), &devices).unwrap();
        let types = parent.types().unwrap();
        assert_eq!(types.len(), 1);
        assert_eq!(types[0].id, "mtty-2");
        assert_eq!(types[0].name.as_deref(), Some("Dual-port-serial"));
        assert_eq!(types[0].available, 12);
        assert_eq!(types[0].device_api, "vfio-pci");
        let uuid = MdevUuid::random().unwrap();
        let mdev = parent.create(&types[0], uuid).unwrap();
        assert_eq!(
            std::fs::read_to_string(ty.join("create")).unwrap(),
            uuid.to_string()
        );
        // The kernel would make the device directory with its group link.
        std::fs::create_dir_all(mdev.sysfs().join("vfio-dev/vfio3")).unwrap();
        std::os::unix::fs::symlink(
            "../../kernel/iommu_groups/7",
            mdev.sysfs().join("iommu_group"),
        )
        .unwrap();
        assert_eq!(mdev.group().unwrap(), GroupId::new(7));
        assert_eq!(
            mdev.cdev_path().unwrap(),
            Path::new("/dev/vfio/devices/vfio3")
        );
        let dir = mdev.sysfs().to_owned();
        mdev.remove().unwrap();
        assert_eq!(std::fs::read_to_string(dir.join("remove")).unwrap(), "1");
        // A malformed count is an error, not a panic.
        std::fs::write(ty.join("available_instances"), "many\n").unwrap();
        assert!(matches!(parent.types(), Err(MdevError::Malformed { .. })));
        assert!(MdevParent::by_name("../etc").is_err());
        std::fs::remove_dir_all(&root).unwrap();
    }
}
