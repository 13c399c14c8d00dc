//! Oracles for the fuzz targets: reference decoders of the VFIO uapi byte
//! layouts, written from `linux/vfio.h` with plain offsets (independent of
//! the crate's zerocopy mirrors), and buffers at chosen alignments.
//!
//! The seed corpora under `fuzz/corpus/` are written by the ignored test
//! `seeds::write_seed_corpora` (see `fuzz/README.md`).

use typed_vfio::sys;
use zerocopy::IntoBytes;

// The offsets below are the uapi's; fail the build if the bindings disagree.
const _: () = assert!(size_of::<sys::vfio_region_info>() == 32);
const _: () = assert!(size_of::<sys::vfio_iommu_type1_info>() == 24);
const _: () = assert!(size_of::<sys::vfio_device_info>() == 24);
const _: () = assert!(size_of::<sys::vfio_irq_info>() == 16);
const _: () = assert!(size_of::<sys::vfio_iommu_type1_info_cap_migration>() == 32);
const _: () = assert!(size_of::<sys::vfio_iommu_type1_info_dma_avail>() == 12);
const _: () = assert!(size_of::<sys::vfio_region_info_cap_type>() == 16);
const _: () = assert!(size_of::<sys::vfio_iommu_type1_dma_map>() == 32);
const _: () = assert!(size_of::<sys::vfio_iommu_type1_dma_unmap>() == 24);
const _: () = assert!(size_of::<sys::vfio_irq_set>() == 20);

/// Native-endian `u16` at `at`, if inside `b`.
pub fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(
        b.get(at..at.checked_add(2)?)?.try_into().ok()?,
    ))
}

/// Native-endian `u32` at `at`, if inside `b`.
pub fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(
        b.get(at..at.checked_add(4)?)?.try_into().ok()?,
    ))
}

/// Native-endian `i32` at `at`, if inside `b`.
pub fn i32_at(b: &[u8], at: usize) -> Option<i32> {
    u32_at(b, at).map(|v| v as i32)
}

/// Native-endian `u64` at `at`, if inside `b`.
pub fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_ne_bytes(
        b.get(at..at.checked_add(8)?)?.try_into().ok()?,
    ))
}

/// A copy of some bytes starting `shift` bytes past an 8-aligned address:
/// decoders must not depend on where the kernel's buffer lies.
pub struct Shifted {
    store: Vec<u64>,
    shift: usize,
    len: usize,
}

impl Shifted {
    /// Copies `data` to `shift` (mod 8) bytes past an 8-aligned address.
    pub fn new(data: &[u8], shift: usize) -> Shifted {
        let shift = shift % 8;
        let mut store = vec![0u64; (shift + data.len()).div_ceil(8)];
        store.as_mut_bytes()[shift..shift + data.len()].copy_from_slice(data);
        Shifted {
            store,
            shift,
            len: data.len(),
        }
    }

    /// The copied bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.store.as_bytes()[self.shift..self.shift + self.len]
    }
}

/// One capability as the reference walk sees it: its id and byte range.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RefCap {
    /// `vfio_info_cap_header.id`.
    pub id: u16,
    /// Where its header starts.
    pub offset: usize,
    /// One past its last byte: the next capability, or the buffer's end.
    pub end: usize,
}

/// The capability chain in `buf` from `first`, per the documented rules:
/// every header (8 bytes: id u16, version u16, next u32) inside `buf`, at a
/// multiple of 4, at or past `fixed` for the first and past the previous
/// header for the others; `next == 0` ends it. A capability's bytes run to
/// `next` when that is forward and inside `buf`, else to the end. Returns
/// the capabilities read and whether the walk ended on an error.
pub fn ref_walk(buf: &[u8], first: u32, fixed: usize) -> (Vec<RefCap>, bool) {
    let mut out = Vec::new();
    if first == 0 {
        return (out, false);
    }
    let mut at = first as usize;
    let mut min = fixed;
    loop {
        let header_fits = buf.len().checked_sub(at).is_some_and(|room| room >= 8);
        if at < min || !at.is_multiple_of(4) || !header_fits {
            return (out, true);
        }
        let id = u16_at(buf, at).unwrap();
        let next = u32_at(buf, at + 4).unwrap() as usize;
        let end = if next > at && next <= buf.len() {
            next
        } else {
            buf.len()
        };
        out.push(RefCap {
            id,
            offset: at,
            end,
        });
        if next == 0 {
            return (out, false);
        }
        min = at + 8;
        at = next;
    }
}

/// What the reference decoder makes of `VFIO_DEVICE_GET_REGION_INFO` bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RefRegion {
    /// index, flags, size, offset.
    pub head: (u32, u32, u64, u64),
    /// Sparse areas (offset, size) of the last sparse-mmap capability.
    pub sparse: Option<Vec<(u64, u64)>>,
    /// (type, subtype) of the last type capability.
    pub region_type: Option<(u32, u32)>,
    /// An MSI-X mappable capability was present.
    pub msix_mappable: bool,
}

/// Reference decode of region info; `None` where the bytes must be refused.
pub fn ref_region(buf: &[u8]) -> Option<RefRegion> {
    let argsz = u32_at(buf, 0)?;
    let flags = u32_at(buf, 4)?;
    let index = u32_at(buf, 8)?;
    let cap_offset = u32_at(buf, 12)?;
    let size = u64_at(buf, 16)?;
    let offset = u64_at(buf, 24)?;
    let mut out = RefRegion {
        head: (index, flags, size, offset),
        sparse: None,
        region_type: None,
        msix_mappable: false,
    };
    if flags & 8 == 0 {
        return Some(out);
    }
    let buf = &buf[..(argsz as usize).min(buf.len())];
    let (caps, failed) = ref_walk(buf, cap_offset, 32);
    for c in caps {
        let cap = &buf[c.offset..c.end];
        match c.id {
            1 => {
                let nr = u32_at(cap, 8)? as u64;
                u32_at(cap, 12)?;
                if 16 + nr * 16 > cap.len() as u64 {
                    return None;
                }
                let mut areas = Vec::new();
                for i in 0..nr as usize {
                    let (o, s) = (u64_at(cap, 16 + 16 * i)?, u64_at(cap, 24 + 16 * i)?);
                    if o.checked_add(s)? > size {
                        return None;
                    }
                    areas.push((o, s));
                }
                out.sparse = Some(areas);
            }
            2 => out.region_type = Some((u32_at(cap, 8)?, u32_at(cap, 12)?)),
            3 => out.msix_mappable = true,
            _ => {}
        }
    }
    if failed { None } else { Some(out) }
}

/// What the reference decoder makes of `VFIO_IOMMU_GET_INFO` bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RefIommu {
    /// Page-size bitmap, 0 without `VFIO_IOMMU_INFO_PGSIZES`.
    pub page_sizes: u64,
    /// Inclusive IOVA ranges of the last IOVA-range capability.
    pub ranges: Vec<(u64, u64)>,
    /// DMA_AVAIL.
    pub dma_avail: Option<u32>,
    /// Migration (flags, pgsize bitmap, max dirty bitmap size).
    pub migration: Option<(u32, u64, u64)>,
}

/// Reference decode of IOMMU info; `None` where the bytes must be refused.
pub fn ref_iommu(buf: &[u8]) -> Option<RefIommu> {
    let argsz = u32_at(buf, 0)?;
    let flags = u32_at(buf, 4)?;
    let pgsizes = u64_at(buf, 8)?;
    let cap_offset = u32_at(buf, 16)?;
    u32_at(buf, 20)?;
    let mut out = RefIommu {
        page_sizes: if flags & 1 != 0 { pgsizes } else { 0 },
        ranges: Vec::new(),
        dma_avail: None,
        migration: None,
    };
    if flags & 2 == 0 {
        return Some(out);
    }
    let buf = &buf[..(argsz as usize).min(buf.len())];
    let (caps, failed) = ref_walk(buf, cap_offset, 24);
    for c in caps {
        let cap = &buf[c.offset..c.end];
        match c.id {
            1 => {
                let nr = u32_at(cap, 8)? as u64;
                u32_at(cap, 12)?;
                if 16 + nr * 16 > cap.len() as u64 {
                    return None;
                }
                out.ranges = (0..nr as usize)
                    .map(|i| {
                        (
                            u64_at(cap, 16 + 16 * i).unwrap(),
                            u64_at(cap, 24 + 16 * i).unwrap(),
                        )
                    })
                    .collect();
            }
            2 => {
                u64_at(cap, 24)?;
                out.migration = Some((u32_at(cap, 8)?, u64_at(cap, 16)?, u64_at(cap, 24)?));
            }
            3 => out.dma_avail = Some(u32_at(cap, 8)?),
            _ => {}
        }
    }
    if failed { None } else { Some(out) }
}

/// Seed corpora: the real kernel's answers as the guest rig observed them.
pub mod seeds {
    /// Little builder of native-endian byte strings.
    #[derive(Default)]
    pub struct Bytes(pub Vec<u8>);

    impl Bytes {
        /// Appends a u16.
        pub fn u16(mut self, v: u16) -> Self {
            self.0.extend_from_slice(&v.to_ne_bytes());
            self
        }
        /// Appends a u32.
        pub fn u32(mut self, v: u32) -> Self {
            self.0.extend_from_slice(&v.to_ne_bytes());
            self
        }
        /// Appends a u64.
        pub fn u64(mut self, v: u64) -> Self {
            self.0.extend_from_slice(&v.to_ne_bytes());
            self
        }
        /// Appends a capability header.
        pub fn cap(self, id: u16, version: u16, next: u32) -> Self {
            self.u16(id).u16(version).u32(next)
        }
    }

    /// `VFIO_IOMMU_GET_INFO` on Linux 6.12 (type1v2, an x86 guest with an
    /// emulated IOMMU): MIGRATION, DMA_AVAIL and IOVA_RANGE capabilities,
    /// in the crate's 256-byte buffer (`argsz` set to the 120 bytes used).
    pub fn iommu_info_6_12() -> Vec<u8> {
        let mut b = Bytes::default()
            .u32(120) // argsz
            .u32(0x3) // flags: PGSIZES | CAPS
            .u64(0x4020_1000) // iova_pgsizes
            .u32(24) // cap_offset
            .u32(0) // pad
            .cap(2, 1, 56) // MIGRATION @24
            .u32(0) // flags
            .u32(0) // pad
            .u64(0x1000) // pgsize_bitmap
            .u64(0x1000_0000) // max_dirty_bitmap_size
            .cap(3, 1, 72) // DMA_AVAIL @56
            .u32(65535)
            .u32(0) // padding to 72
            .cap(1, 1, 0) // IOVA_RANGE @72
            .u32(2) // nr_iovas
            .u32(0) // reserved
            .u64(0)
            .u64(0xfedf_ffff)
            .u64(0xfef0_0000)
            .u64(0x7f_ffff_ffff)
            .0;
        b.resize(256, 0);
        b
    }

    /// `VFIO_DEVICE_GET_REGION_INFO` for a region with no capabilities, in
    /// the crate's 256-byte buffer (the kernel writes back the fixed
    /// struct only, leaving `argsz` as offered).
    pub fn region(index: u32, flags: u32, size: u64, offset: u64) -> Vec<u8> {
        let mut b = Bytes::default()
            .u32(256)
            .u32(flags)
            .u32(index)
            .u32(0)
            .u64(size)
            .u64(offset)
            .0;
        b.resize(256, 0);
        b
    }

    /// Not observed on the rig (the edu device has no MSI-X BAR): a region
    /// answer shaped like vfio-pci's for a BAR holding an MSI-X table, with
    /// a sparse-mmap capability (two areas around the table), a type
    /// capability and MSIX_MAPPABLE, in a 256-byte buffer.
    pub fn region_with_caps() -> Vec<u8> {
        let mut b = Bytes::default()
            .u32(104) // argsz
            .u32(0xf) // READ | WRITE | MMAP | CAPS
            .u32(2)
            .u32(32) // cap_offset
            .u64(0x4000)
            .u64(0x20_0000_0000)
            .cap(1, 1, 80) // SPARSE_MMAP @32
            .u32(2)
            .u32(0)
            .u64(0)
            .u64(0x1000)
            .u64(0x3000)
            .u64(0x1000)
            .cap(2, 1, 96) // TYPE @80
            .u32(0x8086_0000)
            .u32(1)
            .cap(3, 1, 0) // MSIX_MAPPABLE @96
            .0;
        b.resize(256, 0);
        b
    }

    /// `VFIO_DEVICE_GET_INFO` of the edu device: PCI | RESET, 9 regions,
    /// 5 IRQ indexes, no capabilities.
    pub fn device_info_edu() -> Vec<u8> {
        Bytes::default()
            .u32(24)
            .u32(0x3)
            .u32(9)
            .u32(5)
            .u32(0)
            .u32(0)
            .0
    }

    /// `VFIO_DEVICE_GET_IRQ_INFO` answers.
    pub fn irq_info(index: u32, flags: u32, count: u32) -> Vec<u8> {
        Bytes::default().u32(16).u32(flags).u32(index).u32(count).0
    }

    /// `VFIO_DEVICE_GET_PCI_HOT_RESET_INFO` of the edu device, in the
    /// 76-byte buffer the crate offers (room for 8 devices): one device,
    /// group 4, 0000:01:00.0.
    pub fn hot_reset_info_edu() -> Vec<u8> {
        let mut b = Bytes::default().u32(76).u32(0).u32(1).u32(4).u16(0).0;
        b.extend_from_slice(&[1, 0]); // bus, devfn
        b.resize(76, 0);
        b
    }

    /// A `cap_chain` input: `first` (u32), `fixed` (u8), then the buffer.
    pub fn cap_chain_input(first: u32, fixed: u8, buf: &[u8]) -> Vec<u8> {
        let mut b = Bytes::default().u32(first).0;
        b.push(fixed);
        b.extend_from_slice(buf);
        b
    }

    #[cfg(test)]
    mod tests {
        use super::*;
        use std::path::Path;

        fn put(target: &str, name: &str, bytes: &[u8]) {
            let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("corpus")
                .join(target);
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join(name), bytes).unwrap();
        }

        /// Writes `fuzz/corpus/*/seed-*`. Run by hand:
        /// `cargo test --manifest-path fuzz/Cargo.toml --lib -- --ignored`.
        #[test]
        #[ignore]
        fn write_seed_corpora() {
            let iommu = iommu_info_6_12();
            let bar0 = region(0, 0x7, 0x10_0000, 0);
            let config = region(7, 0x3, 0x100, 0x700_0000_0000);
            let sparse = region_with_caps();
            put("iommu_info", "seed-linux-6.12-type1v2", &iommu);
            put("region_info", "seed-edu-bar0", &bar0);
            put("region_info", "seed-edu-config", &config);
            put("region_info", "seed-synthetic-msix-bar-caps", &sparse);
            put("device_info", "seed-edu-device-info", &device_info_edu());
            put("device_info", "seed-edu-irq-intx", &irq_info(0, 0x7, 1));
            put("device_info", "seed-edu-irq-msi", &irq_info(1, 0x9, 1));
            put(
                "device_info",
                "seed-edu-hot-reset-info",
                &hot_reset_info_edu(),
            );
            put(
                "cap_chain",
                "seed-linux-6.12-iommu-info",
                &cap_chain_input(24, 24, &iommu),
            );
            put(
                "cap_chain",
                "seed-synthetic-region-caps",
                &cap_chain_input(32, 32, &sparse),
            );
        }

        #[test]
        fn seeds_decode_as_the_rig_saw_them() {
            let iommu = crate::ref_iommu(&iommu_info_6_12()).unwrap();
            assert_eq!(
                iommu.ranges,
                vec![(0, 0xfedf_ffff), (0xfef0_0000, 0x7f_ffff_ffff)]
            );
            assert_eq!(iommu.dma_avail, Some(65535));
            assert_eq!(iommu.migration, Some((0, 0x1000, 0x1000_0000)));
            let parsed = typed_vfio::fuzzing::parse_iommu_info(&iommu_info_6_12()).unwrap();
            assert_eq!(parsed.iova_ranges.len(), 2);
            let region = crate::ref_region(&region_with_caps()).unwrap();
            assert_eq!(region.sparse, Some(vec![(0, 0x1000), (0x3000, 0x1000)]));
            assert!(region.msix_mappable);
            let devs = typed_vfio::fuzzing::parse_hot_reset_info(&hot_reset_info_edu()).unwrap();
            assert_eq!((devs[0].group_id, devs[0].bus, devs[0].devfn), (4, 1, 0));
        }
    }
}
