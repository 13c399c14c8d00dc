// Kernel rule: once mapped (VFIO_IOMMU_MAP_DMA) the device may write the
// buffer at any moment, so no `&[u8]` into DMA memory may exist (a shared
// reference asserts the bytes do not change). `DmaBuffer` has no `as_slice`.
use typed_vfio::DmaBuffer;

pub fn checksum(buffer: &DmaBuffer) -> u32 {
    let bytes: &[u8] = buffer.as_slice(); //~ ERROR E0599 as_slice
    bytes.iter().map(|&b| u32::from(b)).sum()
}
