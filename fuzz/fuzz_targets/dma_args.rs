//! `VFIO_IOMMU_MAP_DMA` / `VFIO_IOMMU_UNMAP_DMA` argument encoding: the bytes
//! decode back (uapi layout), `argsz` is their length, MAP_DMA never passes
//! the safe path, UNMAP_DMA passes it exactly when no flag would make the
//! kernel follow a user pointer (GET_DIRTY_BITMAP, VADDR), and the unmapped
//! size reads back.
#![no_main]

use arbitrary::Arbitrary;
use fuzz_oracle::{u32_at, u64_at};
use libfuzzer_sys::fuzz_target;
use typed_vfio::DmaAccess;
use typed_vfio::fuzzing::{self, SeamRequest};
use typed_vfio::sys;

#[derive(Arbitrary, Debug)]
struct Input {
    vaddr: u64,
    size: u64,
    iova: u64,
    access: u8,
    unmap_flags: u32,
    reply: Vec<u8>,
}

fuzz_target!(|input: Input| {
    let access = match input.access % 3 {
        0 => DmaAccess::DeviceReads,
        1 => DmaAccess::DeviceWrites,
        _ => DmaAccess::ReadWrite,
    };
    let flags = fuzzing::dma_access_flags(access);
    let expected = match access {
        DmaAccess::DeviceReads => 1,
        DmaAccess::DeviceWrites => 2,
        DmaAccess::ReadWrite => 3,
    };
    assert_eq!(flags, expected);

    // vfio_iommu_type1_dma_map: argsz, flags, vaddr, iova, size.
    let map = fuzzing::encode_map_dma(input.vaddr, input.size, input.iova, access);
    assert_eq!(map.len(), 32);
    assert_eq!(u32_at(&map, 0), Some(32));
    assert_eq!(u32_at(&map, 4), Some(flags));
    assert_eq!(u64_at(&map, 8), Some(input.vaddr));
    assert_eq!(u64_at(&map, 16), Some(input.iova));
    assert_eq!(u64_at(&map, 24), Some(input.size));
    assert!(
        fuzzing::check_shape(SeamRequest::MapDma, &map).is_err(),
        "MAP_DMA on the safe path"
    );

    // vfio_iommu_type1_dma_unmap: argsz, flags, iova, size.
    let unmap = fuzzing::encode_unmap_dma(input.iova, input.size, input.unmap_flags);
    assert_eq!(unmap.len(), 24);
    assert_eq!(u32_at(&unmap, 0), Some(24));
    assert_eq!(u32_at(&unmap, 4), Some(input.unmap_flags));
    assert_eq!(u64_at(&unmap, 8), Some(input.iova));
    assert_eq!(u64_at(&unmap, 16), Some(input.size));
    assert_eq!(fuzzing::unmapped_size(&unmap), input.size);
    let pointer_flags = sys::VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP | sys::VFIO_DMA_UNMAP_FLAG_VADDR;
    assert_eq!(pointer_flags, 0x5);
    let accepted = fuzzing::check_shape(SeamRequest::UnmapDma, &unmap).is_ok();
    assert_eq!(
        accepted,
        input.unmap_flags & pointer_flags == 0,
        "flags {:#x}",
        input.unmap_flags
    );

    // The kernel writes the unmapped size back; anything but a whole
    // argument reads as 0.
    let n = fuzzing::unmapped_size(&input.reply);
    if input.reply.len() == 24 {
        assert_eq!(Some(n), u64_at(&input.reply, 16));
    } else {
        assert_eq!(n, 0);
    }
});
