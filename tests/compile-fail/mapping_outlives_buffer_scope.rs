// Kernel rule: a DMA mapping must not outlive the memory it maps (the device
// keeps access until VFIO_IOMMU_UNMAP_DMA). A `DmaMapping` stored outside
// the scope of its `DmaBuffer` would outlive it: the buffer does not live
// long enough.
use typed_vfio::{Container, DmaAccess, DmaBuffer, Group, Type1v2};

pub fn keep_mapping_past_buffer() -> Result<(), Box<dyn std::error::Error>> {
    let group = Group::open(26)?;
    let container = Container::open()?.attach(group)?.set_iommu::<Type1v2>()?;
    let mapping;
    {
        let buffer = DmaBuffer::new(1 << 16)?;
        mapping = container.map(&buffer, 0x10_0000, DmaAccess::ReadWrite)?; //~ ERROR E0597 buffer
    }
    println!("mapping at {:#x} outlives its buffer", mapping.iova());
    Ok(())
}
