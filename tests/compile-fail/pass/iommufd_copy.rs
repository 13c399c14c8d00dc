// IOMMU_IOAS_COPY used correctly: a copy outlives its source guard and the
// source IOAS (the kernel's copy stays when the source is unmapped or its
// IOAS destroyed), not its buffer or its destination. Must compile.
use typed_vfio::iommufd::Iommufd;
use typed_vfio::{DmaAccess, DmaBuffer, IovaRange};

pub fn copy() -> Result<(), Box<dyn std::error::Error>> {
    let fd = Iommufd::open()?;
    let dst = fd.alloc_ioas()?;
    dst.allow_iovas(&[IovaRange {
        start: 0x100_0000,
        end: 0x1ff_ffff,
    }])?;
    let buffer = DmaBuffer::new(4096)?;
    let copy = {
        let src = fd.alloc_ioas()?;
        let mapping = src.map(&buffer, 0x10_0000, DmaAccess::ReadWrite)?;
        let copy = dst.copy_anywhere(&mapping, DmaAccess::ReadWrite)?;
        mapping.unmap()?;
        src.destroy().map_err(|e| e.error)?;
        copy
    };
    let _ = copy.iova();
    copy.unmap()?;
    drop(buffer);
    dst.destroy().map_err(|e| e.error)?;
    Ok(())
}
