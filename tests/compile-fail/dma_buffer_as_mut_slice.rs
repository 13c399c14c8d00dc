// Kernel rule: once mapped (VFIO_IOMMU_MAP_DMA) the device may write the
// buffer at any moment, so no `&mut [u8]` into DMA memory may exist (it
// would assert exclusive, unchanging access). `DmaBuffer` has no
// `as_mut_slice`; contents are reached by copies and volatile accessors.
use typed_vfio::DmaBuffer;

pub fn fill_descriptor(buffer: &mut DmaBuffer) {
    let bytes: &mut [u8] = buffer.as_mut_slice(); //~ ERROR E0599 as_mut_slice
    bytes[..4].copy_from_slice(&0xdead_beef_u32.to_le_bytes());
}
