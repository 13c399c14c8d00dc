//! Error types, one enum per family of operations.
//!
//! Every kernel failure carries the ioctl (or syscall) name and the errno, and
//! the values the caller passed that the failure is about. Transitions that
//! consume an object hand it back inside their error.

use std::path::PathBuf;

pub use nix::errno::Errno;
use thiserror::Error;

/// Opening or configuring a container.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum ContainerError {
    /// `open(2)` of the container node failed.
    #[error("open {path}: {errno}")]
    Open {
        /// The node opened.
        path: PathBuf,
        /// The errno.
        errno: Errno,
    },
    /// A container ioctl failed.
    #[error("{ioctl} failed: {errno}")]
    Ioctl {
        /// The request, by its C name.
        ioctl: &'static str,
        /// The errno.
        errno: Errno,
    },
    /// The kernel speaks another VFIO API version.
    #[error("VFIO_GET_API_VERSION returned {found}, expected {expected}")]
    ApiVersion {
        /// What the kernel reported.
        found: i32,
        /// `VFIO_API_VERSION`.
        expected: i32,
    },
    /// `VFIO_CHECK_EXTENSION` says the kernel lacks this IOMMU model.
    #[error("the kernel does not offer IOMMU model {model} (id {id})")]
    Unsupported {
        /// The model's name.
        model: &'static str,
        /// Its kernel id.
        id: u32,
    },
    /// Bytes the kernel returned did not parse.
    #[error("{ioctl} returned malformed data: {what}")]
    Malformed {
        /// The request.
        ioctl: &'static str,
        /// What was wrong.
        what: &'static str,
    },
    /// The container has no group with this id.
    #[error("group {0} is not attached to this container")]
    NoSuchGroup(crate::GroupId),
}

/// Opening a group, querying it, or attaching it.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum GroupError {
    /// `open(2)` of the group node failed.
    #[error("open {path}: {errno}")]
    Open {
        /// The node opened.
        path: PathBuf,
        /// The errno.
        errno: Errno,
    },
    /// Reading sysfs to find a device's group failed.
    #[error("{path}: {kind}{}", errno.map(|e| format!(" ({e})")).unwrap_or_default())]
    Sysfs {
        /// The sysfs path read.
        path: PathBuf,
        /// What went wrong (`NotFound`: no such device or no IOMMU group;
        /// `InvalidData`: the link does not name a group number).
        kind: std::io::ErrorKind,
        /// The errno, when the failure came from a system call.
        errno: Option<Errno>,
    },
    /// A group ioctl failed.
    #[error("{ioctl} failed on group {group}: {errno}")]
    Ioctl {
        /// The request, by its C name.
        ioctl: &'static str,
        /// The group.
        group: crate::GroupId,
        /// The errno.
        errno: Errno,
    },
    /// Not every device of the group is bound to a VFIO driver (or none).
    #[error("group {group} is not viable: bind every device in it to vfio-pci")]
    NotViable {
        /// The group.
        group: crate::GroupId,
    },
    /// The group already belongs to a container.
    #[error("group {group} is already attached to a container")]
    AlreadyAttached {
        /// The group.
        group: crate::GroupId,
    },
    /// A device name with an interior NUL.
    #[error("device name {name:?} contains a NUL byte")]
    BadDeviceName {
        /// The name given.
        name: String,
    },
    /// `VFIO_GROUP_GET_DEVICE_FD` failed for this name.
    #[error("VFIO_GROUP_GET_DEVICE_FD {name:?} on group {group}: {errno}")]
    NoDevice {
        /// The name asked for.
        name: String,
        /// The group.
        group: crate::GroupId,
        /// The errno the kernel gave for the name.
        errno: Errno,
    },
    /// The device opened, but reading its info failed.
    #[error(transparent)]
    Device(#[from] DeviceError),
}

/// Device queries, region access, interrupts and resets.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum DeviceError {
    /// Masking or unmasking an IRQ the kernel has not enabled: vfio-pci masks
    /// and unmasks only while the IRQ has an eventfd trigger
    /// ([`Device::set_irq_eventfd`](crate::Device::set_irq_eventfd)), and
    /// answers `EINVAL` otherwise.
    #[error(
        "{ioctl} ({action}) of IRQ {index} failed: {errno}: the IRQ is not enabled; set an eventfd trigger first"
    )]
    IrqNotEnabled {
        /// The request.
        ioctl: &'static str,
        /// The IRQ index.
        index: u32,
        /// `"mask"` or `"unmask"`.
        action: &'static str,
        /// The kernel's errno (`EINVAL`).
        errno: Errno,
    },
    /// A reset while the device has a live migration handle: it would move
    /// the device to RUNNING behind the handle; reset through the handle
    /// (`Migration::reset`) or drop it first.
    #[error("{ioctl} refused: the device has a live migration handle")]
    MigrationActive {
        /// The request.
        ioctl: &'static str,
    },
    /// The running kernel, or the device's driver, does not know this
    /// request or feature (`ENOTTY`): an older kernel, or a driver without
    /// it (DMA logging, low power, ioeventfds on a device that has none).
    #[error("{ioctl}: not supported by this kernel or device driver (ENOTTY)")]
    NotSupported {
        /// The request (and feature).
        ioctl: &'static str,
    },
    /// A device ioctl failed.
    #[error("{ioctl} failed: {errno}")]
    Ioctl {
        /// The request, by its C name.
        ioctl: &'static str,
        /// The errno.
        errno: Errno,
    },
    /// A region- or IRQ-indexed ioctl failed.
    #[error("{ioctl} (index {index}) failed: {errno}")]
    IndexedIoctl {
        /// The request, by its C name.
        ioctl: &'static str,
        /// The region or IRQ index.
        index: u32,
        /// The errno.
        errno: Errno,
    },
    /// Bytes the kernel returned did not parse.
    #[error("{ioctl} returned malformed data: {what}")]
    Malformed {
        /// The request.
        ioctl: &'static str,
        /// What was wrong.
        what: &'static str,
    },
    /// The device has no region with this index.
    #[error("region index {index} out of range: the device has {count} regions")]
    NoSuchRegion {
        /// The index asked for.
        index: u32,
        /// The device's region count.
        count: u32,
    },
    /// The device has no IRQ with this index.
    #[error("IRQ index {index} out of range: the device has {count} IRQ indexes")]
    NoSuchIrq {
        /// The index asked for.
        index: u32,
        /// The device's IRQ index count.
        count: u32,
    },
    /// An access outside the region, or misaligned for its width.
    #[error(
        "access of {len} bytes at offset {offset:#x} is outside region {index} (size {size:#x}) or misaligned"
    )]
    OutOfBounds {
        /// The region index.
        index: u32,
        /// The offset asked for.
        offset: u64,
        /// The access length.
        len: u64,
        /// The region size.
        size: u64,
    },
    /// The region does not allow this kind of access.
    #[error("region {index} does not allow {what}")]
    NotPermitted {
        /// The region index.
        index: u32,
        /// `read`, `write` or `mmap`.
        what: &'static str,
    },
    /// `pread`/`pwrite` moved fewer bytes than asked.
    #[error("{syscall} of region {index} at {offset:#x}: {errno}")]
    Io {
        /// `pread` or `pwrite`.
        syscall: &'static str,
        /// The region index.
        index: u32,
        /// The offset.
        offset: u64,
        /// The errno (`EIO` for a short transfer).
        errno: Errno,
    },
    /// `mmap` of a region failed.
    #[error("mmap of region {index} ({len:#x} bytes at {offset:#x}): {errno}")]
    Mmap {
        /// The region index.
        index: u32,
        /// The offset within the region.
        offset: u64,
        /// The length.
        len: u64,
        /// The errno.
        errno: Errno,
    },
    /// MSI/MSI-X on a device of a PAMU ("type2") container before every
    /// MSI bank of the container is mapped: the kernel would fail to compose
    /// the MSI message (`EINVAL`). Checked before `VFIO_DEVICE_SET_IRQS`.
    #[error(
        "IRQ index {index}: MSI needs the PAMU container's MSI banks mapped first ({mapped} of {count} mapped)"
    )]
    MsiBanksUnmapped {
        /// The IRQ index (MSI or MSI-X).
        index: u32,
        /// Banks mapped now.
        mapped: u32,
        /// The container's MSI bank count.
        count: u32,
    },
    /// IRQ vectors outside what the index offers.
    #[error("IRQ index {index}: vectors {start}..{end} exceed its {count} vectors")]
    IrqRange {
        /// The IRQ index.
        index: u32,
        /// First vector.
        start: u32,
        /// One past the last vector.
        end: u64,
        /// Vectors the index has.
        count: u32,
    },
    /// Enabling MSI or MSI-X with more vectors than the platform could
    /// allocate: vfio-pci then enables nothing and answers with the number
    /// it could have had (a positive return, not an errno;
    /// `vfio_msi_enable`). Ask again with at most `available`.
    #[error(
        "{ioctl} (index {index}): {wanted} vectors asked, the platform can allocate {available}; nothing enabled"
    )]
    IrqVectorsShort {
        /// The request.
        ioctl: &'static str,
        /// The IRQ index (MSI or MSI-X).
        index: u32,
        /// Vectors asked for.
        wanted: u32,
        /// Vectors the kernel could allocate.
        available: u32,
    },
    /// Arming an MSI-X vector beyond the ones allocated when MSI-X was
    /// enabled, on a device whose MSI-X cannot grow while enabled
    /// (`VFIO_IRQ_INFO_NORESIZE`: no dynamic MSI-X allocation on this
    /// platform). Disable and enable again with the wider set.
    #[error(
        "IRQ index {index}: vector {vector} is beyond the {allocated} allocated and the index is NORESIZE; re-enable with the wider set"
    )]
    IrqNoResize {
        /// The IRQ index.
        index: u32,
        /// The vector asked for.
        vector: u32,
        /// Vectors allocated now.
        allocated: u32,
    },
    /// A raw trigger change (set, disable) of an IRQ index an
    /// [`Msix`](crate::Msix) handle owns: it would leave the handle
    /// claiming vectors the kernel no longer has. Go through the handle.
    #[error("IRQ index {index} is owned by a live MSI-X handle; change it through the handle")]
    IrqOwned {
        /// The IRQ index.
        index: u32,
    },
}

/// DMA mapping and IOMMU queries.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum DmaError {
    /// The running kernel's IOMMU driver does not know this request
    /// (`ENOTTY`): dirty tracking on iommufd's VFIO compatibility container,
    /// or on a kernel without it.
    #[error("{ioctl}: not supported by this kernel's IOMMU driver (ENOTTY)")]
    NotSupported {
        /// The request.
        ioctl: &'static str,
    },
    /// A DMA ioctl failed.
    #[error("{ioctl} iova {iova:#x} size {size:#x}: {errno}")]
    Ioctl {
        /// The request, by its C name.
        ioctl: &'static str,
        /// The IOVA.
        iova: u64,
        /// The size.
        size: u64,
        /// The errno.
        errno: Errno,
    },
    /// IOVA or size not aligned to the IOMMU's smallest page.
    #[error("iova {iova:#x} / size {size:#x} not aligned to the IOMMU page size {page:#x}")]
    Unaligned {
        /// The IOVA.
        iova: u64,
        /// The size.
        size: u64,
        /// The smallest page size the IOMMU supports.
        page: u64,
    },
    /// A zero-sized mapping, or one whose end overflows.
    #[error("iova {iova:#x} size {size:#x} is empty or wraps")]
    BadRange {
        /// The IOVA.
        iova: u64,
        /// The size.
        size: u64,
    },
    /// The range is not inside one of the IOMMU's usable IOVA ranges.
    #[error("iova {iova:#x} size {size:#x} is outside the IOMMU's IOVA ranges")]
    OutsideRanges {
        /// The IOVA.
        iova: u64,
        /// The size.
        size: u64,
    },
    /// The kernel unmapped less than the whole mapping (an iommufd
    /// `IOMMU_IOAS_UNMAP` answers how much it removed): the rest may still
    /// be mapped, so the pages are kept.
    #[error("{ioctl} iova {iova:#x} size {size:#x}: only {unmapped:#x} bytes were unmapped")]
    PartialUnmap {
        /// The request, by its C name.
        ioctl: &'static str,
        /// The IOVA.
        iova: u64,
        /// The mapping's size.
        size: u64,
        /// The bytes the kernel says it unmapped.
        unmapped: u64,
    },
    /// A copy of a mapping guard refused before the call: its range was
    /// unmapped behind its back (an iommufd `unmap_raw` covering it, or its
    /// own unmap that failed), so it may map other memory by now.
    #[error(
        "{ioctl} iova {iova:#x} size {size:#x}: the guard's range was unmapped behind its back"
    )]
    Stale {
        /// The request, by its C name.
        ioctl: &'static str,
        /// The source guard's IOVA.
        iova: u64,
        /// Its size.
        size: u64,
    },
    /// A request naming two IOASes of different iommufds (an iommufd
    /// request names its objects by id within the one iommufd it is issued
    /// on), refused before the call.
    #[error("{ioctl}: the source and destination IOAS belong to different iommufds")]
    OtherIommufd {
        /// The request, by its C name.
        ioctl: &'static str,
    },
    /// The buffer is smaller than the size asked.
    #[error("a buffer of {len:#x} bytes cannot back a mapping of {size:#x}")]
    BufferTooSmall {
        /// The buffer's length.
        len: usize,
        /// The size asked.
        size: u64,
    },
    /// An access outside a DMA buffer, or misaligned for its width.
    #[error(
        "access of {len} bytes at offset {offset:#x} is outside the DMA buffer (size {size:#x}) or misaligned"
    )]
    OutOfBounds {
        /// The offset asked for.
        offset: u64,
        /// The access length.
        len: u64,
        /// The buffer size.
        size: u64,
    },
    /// Allocating a DMA buffer failed.
    #[error("mmap of a {len:#x}-byte DMA buffer: {errno}")]
    Alloc {
        /// Bytes asked for.
        len: usize,
        /// The errno.
        errno: Errno,
    },
}
