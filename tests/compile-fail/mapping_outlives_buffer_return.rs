// Kernel rule: a DMA mapping must not outlive the memory it maps (the device
// keeps access until VFIO_IOMMU_UNMAP_DMA). A `DmaMapping` cannot be
// returned from a function whose `DmaBuffer` is a local that is freed on
// return.
use typed_vfio::{Container, DmaAccess, DmaBuffer, DmaError, DmaMapping, Type1v2};

pub fn map_scratch(container: &Container<Type1v2>) -> Result<DmaMapping<'_>, DmaError> {
    let buffer = DmaBuffer::new(1 << 16)?;
    let mapping = container.map(&buffer, 0x20_0000, DmaAccess::ReadWrite)?;
    Ok(mapping) //~ ERROR E0515 buffer
}
