//! Not part of the API; for fuzz targets only.
//!
//! Thin wrappers over the crate's pure decoders (of bytes the kernel writes)
//! and encoders (of arguments the crate sends), so that `fuzz/` can drive
//! them without the crate exposing its internals. Nothing here is stable,
//! and nothing here issues a system call.

use crate::caps;
use crate::device::{self, IrqData};
use crate::dma;
use crate::kernel::{self, Arg, req};
use crate::{DeviceInfo, DmaAccess, HotResetDevice, IommuInfo, IrqInfo, RegionInfo};

use crate::sys::IntoBytes;

/// `RegionInfo` from `VFIO_DEVICE_GET_REGION_INFO`'s bytes.
pub fn parse_region_info(buf: &[u8]) -> Result<RegionInfo, &'static str> {
    RegionInfo::parse(buf)
}

/// `IommuInfo` from `VFIO_IOMMU_GET_INFO`'s bytes.
pub fn parse_iommu_info(buf: &[u8]) -> Result<IommuInfo, &'static str> {
    IommuInfo::parse(buf)
}

/// `DeviceInfo` from `VFIO_DEVICE_GET_INFO`'s fixed struct.
pub fn parse_device_info(buf: &[u8]) -> Result<DeviceInfo, &'static str> {
    DeviceInfo::parse(buf)
}

/// The capability ids of a `VFIO_DEVICE_GET_INFO` answer.
pub fn parse_device_capability_ids(buf: &[u8]) -> Result<Vec<u16>, &'static str> {
    DeviceInfo::parse_capability_ids(buf)
}

/// `IrqInfo` from `VFIO_DEVICE_GET_IRQ_INFO`'s bytes, for IRQ `index`.
pub fn parse_irq_info(index: u32, buf: &[u8]) -> Result<IrqInfo, &'static str> {
    IrqInfo::parse(index, buf)
}

/// The `count` the kernel put in a `VFIO_DEVICE_GET_PCI_HOT_RESET_INFO`
/// answer (read on `ENOSPC`).
pub fn hot_reset_info_count(buf: &[u8]) -> Result<u32, &'static str> {
    device::hot_reset_info_count(buf)
}

/// The devices of a successful `VFIO_DEVICE_GET_PCI_HOT_RESET_INFO` answer.
pub fn parse_hot_reset_info(buf: &[u8]) -> Result<Vec<HotResetDevice>, &'static str> {
    device::parse_hot_reset_info(buf).map(|answer| answer.devices)
}

/// A successful `VFIO_DEVICE_GET_PCI_HOT_RESET_INFO` answer read as a bound
/// cdev's ([`BoundDevice::hot_reset_info`](crate::iommufd::BoundDevice::hot_reset_info)
/// does): device ids and ownership.
pub fn parse_cdev_hot_reset_info(
    buf: &[u8],
) -> Result<crate::iommufd::CdevHotResetInfo, &'static str> {
    device::parse_hot_reset_info(buf).and_then(crate::iommufd::CdevHotResetInfo::from_answer)
}

/// Decodes an `IOMMU_GET_HW_INFO` answer (`head`: the `iommu_hw_info` the
/// kernel wrote back; `data`: the driver data it filled) as
/// [`Iommufd::hw_info`](crate::iommufd::Iommufd::hw_info) does.
pub fn parse_hw_info(head: &[u8], data: &[u8]) -> Result<crate::iommufd::HwInfo, &'static str> {
    crate::iommufd::HwInfo::parse(head, data)
}

/// The `VFIO_DEVICE_PCI_HOT_RESET` argument for these group fds.
pub fn encode_hot_reset(fds: &[i32]) -> Vec<u8> {
    device::encode_hot_reset(fds)
}

/// One capability the chain walker yielded, located in the walked buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CapView {
    /// The capability id.
    pub id: u16,
    /// Where its bytes start in the buffer (as the walker's subslice lies
    /// in it; a value past the buffer would mean the walker left it).
    pub offset: usize,
    /// How many bytes it was given.
    pub len: usize,
}

/// Walks the capability chain of `buf` from `first`, with no capability
/// allowed inside the first `fixed` bytes.
pub fn walk_cap_chain(
    buf: &[u8],
    first: u32,
    fixed: usize,
) -> impl Iterator<Item = Result<CapView, &'static str>> + '_ {
    let base = buf.as_ptr() as usize;
    caps::chain(buf, first, fixed).map(move |c| {
        c.map(|c| CapView {
            id: c.id,
            offset: (c.bytes.as_ptr() as usize).wrapping_sub(base),
            len: c.bytes.len(),
        })
    })
}

/// The data of a `VFIO_DEVICE_SET_IRQS` argument.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IrqSetData {
    /// `DATA_NONE` over this many vectors.
    None(u32),
    /// `DATA_BOOL`, one flag per vector.
    Bool(Vec<bool>),
    /// `DATA_EVENTFD`, one fd per vector (-1 de-assigns).
    EventFds(Vec<i32>),
}

/// Encodes a `VFIO_DEVICE_SET_IRQS` argument as the device methods do
/// (`action` is a `VFIO_IRQ_SET_ACTION_*` flag).
pub fn encode_irq_set(
    index: u32,
    action: u32,
    start: u32,
    data: &IrqSetData,
) -> Result<Vec<u8>, &'static str> {
    let data = match data {
        IrqSetData::None(count) => IrqData::None(*count),
        IrqSetData::Bool(b) => IrqData::Bool(b),
        IrqSetData::EventFds(f) => IrqData::EventFds(f),
    };
    let mut buf = vec![0u8; device::irq_set_len(data)];
    device::encode_irq_set(&mut buf, index, action, start, data)?;
    Ok(buf)
}

/// The `VFIO_IOMMU_MAP_DMA` argument's bytes.
pub fn encode_map_dma(vaddr: u64, size: u64, iova: u64, access: DmaAccess) -> Vec<u8> {
    dma::map_dma_arg(vaddr, size, iova, access)
        .as_bytes()
        .to_vec()
}

/// The `VFIO_DMA_MAP_FLAG_*` bits of an access mode.
pub fn dma_access_flags(access: DmaAccess) -> u32 {
    access.flags()
}

/// The `VFIO_IOMMU_UNMAP_DMA` argument's bytes.
pub fn encode_unmap_dma(iova: u64, size: u64, flags: u32) -> Vec<u8> {
    dma::unmap_dma_arg(iova, size, flags).as_bytes().to_vec()
}

/// The unmapped size read back from an `VFIO_IOMMU_UNMAP_DMA` argument.
pub fn unmapped_size(arg: &[u8]) -> u64 {
    dma::unmapped_size(arg)
}

/// Requests whose argument shape the fuzz targets check.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SeamRequest {
    /// `VFIO_DEVICE_SET_IRQS`.
    SetIrqs,
    /// `VFIO_IOMMU_MAP_DMA` (never allowed on the safe path).
    MapDma,
    /// `VFIO_IOMMU_UNMAP_DMA`.
    UnmapDma,
    /// `VFIO_DEVICE_PCI_HOT_RESET`.
    PciHotReset,
}

/// Whether the kernel seam's safe path would accept `bytes` as the
/// argument of `request` (the check made before every safe ioctl).
pub fn check_shape(request: SeamRequest, bytes: &[u8]) -> Result<(), &'static str> {
    let request = match request {
        SeamRequest::SetIrqs => req::VFIO_DEVICE_SET_IRQS,
        SeamRequest::MapDma => req::VFIO_IOMMU_MAP_DMA,
        SeamRequest::UnmapDma => req::VFIO_IOMMU_UNMAP_DMA,
        SeamRequest::PciHotReset => req::VFIO_DEVICE_PCI_HOT_RESET,
    };
    kernel::check_shape(request.shape, &Arg::In(bytes))
}

/// Decodes an `IOMMU_IOAS_IOVA_RANGES` answer (`head`: the fixed struct the
/// kernel wrote back; `array`: the range entries it filled) as
/// [`Ioas::iova_ranges`](crate::iommufd::Ioas::iova_ranges) does.
pub fn parse_ioas_iova_ranges(
    head: &[u8],
    array: &[u8],
) -> Result<crate::iommufd::IoasRanges, &'static str> {
    crate::iommufd::parse_iova_ranges(head, array)
}
