//! What the guest's `/init` (tests/vm/init.sh) tells the tests, via the
//! environment:
//!
//! - `TVFIO_CONFIG`: configuration name, e.g. `custom-type1v2`;
//! - `TVFIO_IOMMU`: `type1`, `type1v2`, `noiommu` or `iommufd`;
//! - `TVFIO_COMPAT`: `1` when `/dev/vfio/vfio` is iommufd's VFIO
//!   compatibility container (the compat kernel: `IOMMUFD_VFIO_CONTAINER=y`,
//!   no `VFIO_CONTAINER`), `0` otherwise;
//! - `TVFIO_DEVICES`: space-separated PCI addresses of the edu devices bound
//!   to vfio-pci, e.g. `0000:01:00.0 0000:02:00.0`;
//! - `TVFIO_GROUPS`: the matching group node names under `/dev/vfio`, in the
//!   same order, e.g. `5 6` or `noiommu-0 noiommu-1`.
//! - `TVFIO_NONVIABLE`: two PCI addresses, functions 0 and 1 of one slot and
//!   so of one IOMMU group: a `pci-testdev` bound to vfio-pci and a
//!   `virtio-rng` bound to virtio-pci, which makes the group not viable.
//!
//! The helpers panic with a clear message when a variable is missing: these
//! tests only make sense inside the guest.

#![allow(dead_code)]

use std::env;
use std::path::PathBuf;

/// The edu device's PCI vendor and device IDs.
pub const EDU_VENDOR: u16 = 0x1234;
pub const EDU_DEVICE: u16 = 0x11e8;

/// The VFIO container node.
pub const VFIO_CONTAINER: &str = "/dev/vfio/vfio";

/// Which IOMMU backend the configuration asks the tests to use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IommuKind {
    /// `VFIO_TYPE1_IOMMU` through the container.
    Type1,
    /// `VFIO_TYPE1v2_IOMMU` through the container.
    Type1v2,
    /// `VFIO_NOIOMMU_IOMMU`: no IOMMU, group nodes are `noiommu-N`.
    NoIommu,
    /// iommufd + VFIO device cdev (`custom-iommufd`).
    Iommufd,
}

fn var(name: &str) -> String {
    match env::var(name) {
        Ok(v) => v,
        Err(e) => panic!("{name}: {e} (these tests run in the guest of tests/vm/run)"),
    }
}

fn list(name: &str) -> Vec<String> {
    var(name).split_whitespace().map(str::to_owned).collect()
}

/// `TVFIO_CONFIG`.
pub fn config() -> String {
    var("TVFIO_CONFIG")
}

/// `TVFIO_IOMMU`.
pub fn iommu() -> IommuKind {
    match var("TVFIO_IOMMU").as_str() {
        "type1" => IommuKind::Type1,
        "type1v2" => IommuKind::Type1v2,
        "noiommu" => IommuKind::NoIommu,
        "iommufd" => IommuKind::Iommufd,
        other => panic!("TVFIO_IOMMU: unknown value {other:?}"),
    }
}

/// `TVFIO_COMPAT`: whether the container is iommufd's VFIO compatibility
/// container (`drivers/iommu/iommufd/vfio_compat.c`) rather than VFIO's own
/// (`drivers/vfio/container.c`). Tests branch on it where the two answer
/// differently, and assert compat's answer there.
pub fn compat() -> bool {
    match var("TVFIO_COMPAT").as_str() {
        "1" => true,
        "0" => false,
        other => panic!("TVFIO_COMPAT: want 0 or 1, got {other:?}"),
    }
}

/// `TVFIO_DEVICES`: PCI addresses (`DDDD:BB:DD.F`) of the edu devices.
pub fn devices() -> Vec<String> {
    list("TVFIO_DEVICES")
}

/// `TVFIO_GROUPS`: group node names, in the order of [`devices`].
pub fn groups() -> Vec<String> {
    list("TVFIO_GROUPS")
}

/// `TVFIO_NONVIABLE`: (the function bound to vfio-pci, its slot mate bound
/// to a kernel driver).
pub fn non_viable() -> (String, String) {
    match &list("TVFIO_NONVIABLE")[..] {
        [vfio, mate] => (vfio.clone(), mate.clone()),
        other => panic!("TVFIO_NONVIABLE: want two PCI addresses, got {other:?}"),
    }
}

/// The name of the driver `bdf` is bound to, if any.
pub fn driver_of(bdf: &str) -> Option<String> {
    let link = std::fs::read_link(sysfs_device(bdf).join("driver")).ok()?;
    Some(link.file_name()?.to_string_lossy().into_owned())
}

/// Binds (`bind`) or unbinds `bdf` and the driver `driver` through sysfs.
pub fn sysfs_driver(driver: &str, bdf: &str, bind: bool) {
    let op = if bind { "bind" } else { "unbind" };
    let path = format!("/sys/bus/pci/drivers/{driver}/{op}");
    std::fs::write(&path, bdf).unwrap_or_else(|e| panic!("{path} <- {bdf}: {e}"));
}

/// Sets (or, with `None`, clears) the driver `bdf` binds to, whatever the
/// drivers' id tables say (sysfs `driver_override`).
pub fn driver_override(bdf: &str, driver: Option<&str>) {
    let path = sysfs_device(bdf).join("driver_override");
    let value = driver.unwrap_or("\n");
    std::fs::write(&path, value).unwrap_or_else(|e| panic!("{} <- {value:?}: {e}", path.display()));
}

/// The PCI bus and devfn of `DDDD:BB:DD.F`.
pub fn bus_devfn(bdf: &str) -> (u8, u8) {
    let parse = || -> Option<(u8, u8)> {
        let (_, rest) = bdf.split_once(':')?;
        let (bus, rest) = rest.split_once(':')?;
        let (dev, func) = rest.split_once('.')?;
        let dev = u8::from_str_radix(dev, 16).ok()?;
        let func = u8::from_str_radix(func, 16).ok()?;
        Some((u8::from_str_radix(bus, 16).ok()?, dev << 3 | func))
    };
    parse().unwrap_or_else(|| panic!("not a PCI address: {bdf:?}"))
}

/// `/dev/vfio/<name>` for a group node name from [`groups`].
pub fn group_path(name: &str) -> PathBuf {
    PathBuf::from("/dev/vfio").join(name)
}

/// `/sys/bus/pci/devices/<bdf>`.
pub fn sysfs_device(bdf: &str) -> PathBuf {
    PathBuf::from("/sys/bus/pci/devices").join(bdf)
}

/// (device, group) pairs; panics if the lists differ in length or are empty.
pub fn devices_with_groups() -> Vec<(String, String)> {
    let d = devices();
    let g = groups();
    assert!(
        !d.is_empty(),
        "TVFIO_DEVICES is empty: no edu device was bound"
    );
    assert_eq!(
        d.len(),
        g.len(),
        "TVFIO_DEVICES {d:?} and TVFIO_GROUPS {g:?} differ in length"
    );
    d.into_iter().zip(g).collect()
}

/// The group's MSI doorbell window, inclusive: the `msi` line of sysfs
/// `/sys/kernel/iommu_groups/<group>/reserved_regions` (`start end type`,
/// hex). x86's interrupt-remapping window is `0xfee00000..=0xfeefffff`; an
/// ARM SMMU's software MSI region is elsewhere (`0x8000000..=0x80fffff` in
/// QEMU's `virt`), so no test hard-codes it.
pub fn msi_window(group: u32) -> (u64, u64) {
    let path = format!("/sys/kernel/iommu_groups/{group}/reserved_regions");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {path}: {e}"));
    let hex = |s: &str| {
        u64::from_str_radix(s.trim_start_matches("0x"), 16)
            .unwrap_or_else(|e| panic!("{path}: {s:?}: {e}"))
    };
    text.lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            let (start, end, kind) = (w.next()?, w.next()?, w.next()?);
            (kind == "msi").then(|| (hex(start), hex(end)))
        })
        .next()
        .unwrap_or_else(|| panic!("{path} lists no msi region: {text:?}"))
}

/// The group number of the first edu device's group.
pub fn first_group_number() -> u32 {
    let (_, g) = &devices_with_groups()[0];
    g.trim_start_matches("noiommu-")
        .parse()
        .unwrap_or_else(|e| panic!("group name {g:?}: {e}"))
}

/// Reads a sysfs hex attribute such as `vendor` (`0x1234\n`).
pub fn read_sysfs_hex(bdf: &str, attr: &str) -> u32 {
    let path = sysfs_device(bdf).join(attr);
    let text =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    let t = text.trim();
    let digits = t
        .strip_prefix("0x")
        .unwrap_or_else(|| panic!("{}: not hex: {t:?}", path.display()));
    u32::from_str_radix(digits, 16).unwrap_or_else(|e| panic!("{}: {t:?}: {e}", path.display()))
}

/// The device's reset methods as the kernel lists them (sysfs
/// `reset_method`, e.g. `["bus"]` for edu behind a root port). The attribute
/// is hidden when the device has none (`reset_method_attrs_are_visible`,
/// drivers/pci/pci.c): then empty. edu has no function-level reset, so on a
/// root bus (QEMU's ppce500) it has none at all, vfio-pci does not set
/// `VFIO_DEVICE_FLAGS_RESET`, and `VFIO_DEVICE_RESET` fails with EINVAL
/// (`vfio_pci_ioctl_reset`: `!vdev->reset_works`).
pub fn reset_methods(bdf: &str) -> Vec<String> {
    let path = sysfs_device(bdf).join("reset_method");
    match std::fs::read_to_string(&path) {
        Ok(text) => text.split_whitespace().map(str::to_owned).collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => panic!("read {}: {e}", path.display()),
    }
}

/// Whether the device sits on a root bus (its sysfs parent is the host
/// bridge's `pciDDDD:BB`, not a bridge device). There no bus can be reset
/// (`pci_probe_reset_bus` refuses a root bus), so vfio-pci's
/// `VFIO_DEVICE_GET_PCI_HOT_RESET_INFO` and `VFIO_DEVICE_PCI_HOT_RESET`
/// answer ENODEV (`vfio_pci_ioctl_get_pci_hot_reset_info`,
/// `vfio_pci_ioctl_pci_hot_reset`, Linux 6.12), edu having no slot.
pub fn on_root_bus(bdf: &str) -> bool {
    let path = sysfs_device(bdf);
    let real = std::fs::canonicalize(&path)
        .unwrap_or_else(|e| panic!("canonicalize {}: {e}", path.display()));
    let parent = real
        .parent()
        .and_then(|p| p.file_name())
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    parent.starts_with("pci")
}

/// Whether VFIO's type1 IOMMU driver is in the kernel (built in or
/// loaded: `/sys/module/vfio_iommu_type1`, which its module parameters
/// create either way). `VFIO_CONTAINER` selects it on x86, s390 and ARM
/// only (drivers/vfio/Kconfig), so a PowerPC kernel has none, and the
/// container answers `CHECK_EXTENSION(TYPE1*)` with 0 there.
pub fn has_type1_driver() -> bool {
    std::path::Path::new("/sys/module/vfio_iommu_type1").exists()
}

/// The running kernel's `(major, minor)`, from `/proc/sys/kernel/osrelease`
/// (`6.12.117+deb12-cloud-amd64`, `7.2.12`): where kernel versions answer
/// differently, the tests expect each version's answer.
pub fn kernel_version() -> (u32, u32) {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .unwrap_or_else(|e| panic!("read /proc/sys/kernel/osrelease: {e}"));
    let mut parts = release.trim().split(|c: char| !c.is_ascii_digit());
    match (parts.next().map(str::parse), parts.next().map(str::parse)) {
        (Some(Ok(major)), Some(Ok(minor))) => (major, minor),
        _ => panic!("kernel release {release:?}: no major.minor"),
    }
}

/// `TVFIO_LE_DEVICE`: the address and group node name of a genuinely
/// little-endian PCI device bound to vfio-pci (QEMU's nvme, on the PowerPC
/// machines).
pub fn le_device() -> (String, String) {
    match &list("TVFIO_LE_DEVICE")[..] {
        [address, group] => (address.clone(), group.clone()),
        other => panic!("TVFIO_LE_DEVICE: want an address and a group, got {other:?}"),
    }
}
