//! Real-kernel scenarios through the raw layer only (`typed_vfio::sys`:
//! `sys::ioctl::*` on `ContainerFd` / `GroupFd` / `DeviceFd`, the generated
//! structs), with the helpers in [`crate::edu`].
//!
//! - [`common`]: every configuration (type1, type1v2, no-IOMMU);
//! - [`iommu`]: type1 and type1v2 only (`tests/vm/run` passes
//!   `--skip raw::iommu::` to the no-IOMMU guest);
//! - [`noiommu`]: no-IOMMU only (the IOMMU guests get `--skip raw::noiommu::`);
//! - [`iommufd`]: iommufd and the device cdev only (`custom-iommufd`).
//!
//! Each test opens its own container, groups and devices and closes them
//! (drop order: mappings, devices, groups, container), so the order the
//! tests run in does not matter.

mod common;
mod iommu;
mod iommufd;
mod noiommu;
