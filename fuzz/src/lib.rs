//! Oracles for the fuzz targets: reference decoders of the VFIO uapi byte
//! layouts, written from `linux/vfio.h` with plain offsets (independent of
//! the crate's zerocopy mirrors), and buffers at chosen alignments.
//!
//! The seed corpora under `fuzz/corpus/` are the real kernel's answers,
//! captured byte for byte by the guest rig (`tests/vm/run --update-seeds`,
//! files `seed-linux-*`), plus one synthetic seed written by the ignored
//! test `seeds::write_synthetic_seeds` (see `fuzz/README.md` and [`seeds`]).

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

/// Seed corpora.
///
/// The kernel's answers are not typed here: the guest rig captures them
/// byte for byte (`tests/vm_guest/seeds.rs` prints them, `tests/vm/run
/// --update-seeds` writes `corpus/<target>/seed-linux-*`, and every rig run
/// fails when the real kernel's answer no longer matches the committed
/// file). What stays here is the one seed the rig cannot observe (the edu
/// device has no MSI-X BAR, so no region capabilities), clearly synthetic,
/// and the test that the committed captures decode as the rig saw them.
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

    /// SYNTHETIC, not observed on the rig (the edu device has no MSI-X
    /// BAR): a region answer shaped like vfio-pci's for a BAR holding an
    /// MSI-X table, with a sparse-mmap capability (two areas around the
    /// table), a type capability and MSIX_MAPPABLE, in a 256-byte buffer.
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

    /// A `cap_chain` input: `first` (u32), `fixed` (u8), then the buffer
    /// (the rig's guest builds its `cap_chain` seeds the same way).
    pub fn cap_chain_input(first: u32, fixed: u8, buf: &[u8]) -> Vec<u8> {
        let mut b = Bytes::default().u32(first).0;
        b.push(fixed);
        b.extend_from_slice(buf);
        b
    }

    /// The committed seed `corpus/<target>/<name>`.
    pub fn committed(target: &str, name: &str) -> Vec<u8> {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("corpus")
            .join(target)
            .join(name);
        std::fs::read(&path).unwrap_or_else(|e| {
            panic!(
                "{}: {e} (the rig's seeds are captured by `tests/vm/run --update-seeds`)",
                path.display()
            )
        })
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

        /// Writes the synthetic seeds `fuzz/corpus/*/seed-synthetic-*` (the
        /// kernel's answers, `seed-linux-*`, come from the rig). Run by hand:
        /// `cargo test --manifest-path fuzz/Cargo.toml --lib -- --ignored`.
        #[test]
        #[ignore]
        fn write_synthetic_seeds() {
            let sparse = region_with_caps();
            put("region_info", "seed-synthetic-msix-bar-caps", &sparse);
            put(
                "cap_chain",
                "seed-synthetic-region-caps",
                &cap_chain_input(32, 32, &sparse),
            );
        }

        /// The committed synthetic seeds are what [`region_with_caps`] builds.
        #[test]
        fn synthetic_seeds_are_current() {
            let sparse = region_with_caps();
            assert_eq!(
                committed("region_info", "seed-synthetic-msix-bar-caps"),
                sparse
            );
            assert_eq!(
                committed("cap_chain", "seed-synthetic-region-caps"),
                cap_chain_input(32, 32, &sparse)
            );
            let region = crate::ref_region(&sparse).unwrap();
            assert_eq!(region.sparse, Some(vec![(0, 0x1000), (0x3000, 0x1000)]));
            assert_eq!(region.region_type, Some((0x8086_0000, 1)));
            assert!(region.msix_mappable);
        }

        const K: &str = "seed-linux-6.12";

        fn seed(target: &str, what: &str) -> Vec<u8> {
            committed(target, &format!("{K}-{what}"))
        }

        fn ranges(info: &typed_vfio::IommuInfo) -> Vec<(u64, u64)> {
            info.iova_ranges.iter().map(|r| (r.start, r.end)).collect()
        }

        /// The captured kernel answers say what the rig saw on Linux 6.12
        /// (edu devices behind PCIe root ports, QEMU's intel-iommu), read by
        /// the crate's parsers and by the reference decoders alike.
        #[test]
        fn seeds_decode_as_the_rig_saw_them() {
            // VFIO_IOMMU_GET_INFO, fresh type1/type1v2 container.
            let bytes = seed("iommu_info", "iommu-info");
            assert_eq!(bytes.len(), 256, "the crate's buffer");
            assert_eq!(crate::u32_at(&bytes, 0), Some(256), "argsz as offered");
            assert_eq!(crate::u32_at(&bytes, 4), Some(0x3), "PGSIZES | CAPS");
            let want = vec![(0, 0xfedf_ffff), (0xfef0_0000, 0x7f_ffff_ffff)];
            let r = crate::ref_iommu(&bytes).unwrap();
            assert_eq!(r.page_sizes, 0x4020_1000);
            assert_eq!(r.ranges, want);
            assert_eq!(r.dma_avail, Some(65535));
            assert_eq!(r.migration, Some((0, 0x1000, 0x1000_0000)));
            let info = typed_vfio::fuzzing::parse_iommu_info(&bytes).unwrap();
            assert_eq!(info.page_sizes, 0x4020_1000);
            assert_eq!(ranges(&info), want);
            assert_eq!(info.dma_avail, Some(65535));
            assert_eq!(info.migration, r.migration);

            // ... with one page mapped: one mapping fewer available.
            let mapped = seed("iommu_info", "iommu-info-one-mapping");
            let info = typed_vfio::fuzzing::parse_iommu_info(&mapped).unwrap();
            assert_eq!(ranges(&info), want);
            assert_eq!(info.dma_avail, Some(65534));
            assert_eq!(crate::ref_iommu(&mapped).unwrap().dma_avail, Some(65534));

            // cap_chain: the IOMMU info's chain, from cap_offset 24.
            let chain = seed("cap_chain", "iommu-info");
            assert_eq!(chain, cap_chain_input(24, 24, &bytes));
            let (caps, failed) = crate::ref_walk(&bytes, 24, 24);
            assert!(!failed);
            let ids: Vec<u16> = caps.iter().map(|c| c.id).collect();
            assert_eq!(ids, vec![2, 3, 1], "MIGRATION, DMA_AVAIL, IOVA_RANGE");

            // iommufd's VFIO compatibility container (tests/vm/README.md,
            // compat-*): DMA_AVAIL a constant U32_MAX, no MIGRATION, the
            // chain DMA_AVAIL then IOVA_RANGE; before a device has attached
            // the compat IOAS, no domain (page sizes: every multiple of
            // 4 KiB) and no reserved region (one range, all of it).
            let group_only = seed("iommu_info", "compat-iommu-info");
            let device_open = seed("iommu_info", "compat-iommu-info-device-open");
            for (what, bytes, page_sizes, want) in [
                ("group only", &group_only, !0xfffu64, vec![(0, u64::MAX)]),
                ("device open", &device_open, 0x4020_1000, want.clone()),
            ] {
                assert_eq!(bytes.len(), 256, "{what}: the crate's buffer");
                assert_eq!(crate::u32_at(bytes, 4), Some(0x3), "{what}: PGSIZES | CAPS");
                let r = crate::ref_iommu(bytes).unwrap();
                assert_eq!(r.page_sizes, page_sizes, "{what}");
                assert_eq!(r.ranges, want, "{what}");
                assert_eq!(r.dma_avail, Some(u32::MAX), "{what}");
                assert_eq!(r.migration, None, "{what}");
                let info = typed_vfio::fuzzing::parse_iommu_info(bytes).unwrap();
                assert_eq!(info.page_sizes, page_sizes, "{what}");
                assert_eq!(ranges(&info), want, "{what}");
                assert_eq!(info.dma_avail, Some(u32::MAX), "{what}");
                assert_eq!(info.migration, None, "{what}");
                let (caps, failed) = crate::ref_walk(bytes, 24, 24);
                assert!(!failed, "{what}");
                let ids: Vec<u16> = caps.iter().map(|c| c.id).collect();
                assert_eq!(ids, vec![3, 1], "{what}: DMA_AVAIL, IOVA_RANGE");
            }
            let chain = seed("cap_chain", "compat-iommu-info-device-open");
            // the chain the crate walks ends at the argsz iommufd wrote (88)
            let argsz = crate::u32_at(&device_open, 0).unwrap() as usize;
            assert_eq!(
                argsz, 88,
                "compat argsz: the fixed struct and both capabilities"
            );
            assert_eq!(chain, cap_chain_input(24, 24, &device_open[..argsz]));

            // VFIO_DEVICE_GET_INFO: PCI | RESET, 9 regions, 5 IRQ indexes.
            for what in ["edu-device-info", "edu-device-info-buf4096"] {
                let bytes = seed("device_info", what);
                let d = typed_vfio::fuzzing::parse_device_info(&bytes).unwrap();
                assert_eq!((d.flags, d.num_regions, d.num_irqs), (0x3, 9, 5), "{what}");
                let ids = typed_vfio::fuzzing::parse_device_capability_ids(&bytes).unwrap();
                assert!(ids.is_empty(), "{what}: capabilities {ids:?}");
            }

            // Regions: BAR0 1 MiB (read, write, mmap), config space, the
            // other BARs and the ROM empty; the kernel refuses VGA.
            let region = |what: &str| {
                let bytes = seed("region_info", what);
                let ours = typed_vfio::fuzzing::parse_region_info(&bytes).unwrap();
                let theirs = crate::ref_region(&bytes).unwrap();
                assert_eq!(
                    (ours.index, ours.flags, ours.size, ours.offset),
                    theirs.head,
                    "{what}"
                );
                assert_eq!(ours.sparse, None, "{what}");
                theirs.head
            };
            assert_eq!(region("edu-region-0-bar0"), (0, 0x7, 0x10_0000, 0));
            for i in 1..=5u32 {
                let head = region(&format!("edu-region-{i}-bar{i}"));
                assert_eq!(head, (i, 0, 0, u64::from(i) << 40), "BAR{i}");
            }
            assert_eq!(region("edu-region-6-rom"), (6, 0, 0, 6 << 40));
            assert_eq!(region("edu-region-7-config"), (7, 0x3, 0x100, 7 << 40));

            // IRQs: INTx (eventfd, maskable, automasked), MSI and MSI-X
            // (eventfd, noresize; edu has one MSI vector and no MSI-X), and
            // the device request IRQ; no ERR IRQ (edu is not PCIe).
            for (what, index, flags, count) in [
                ("edu-irq-0-intx", 0, 0x7, 1),
                ("edu-irq-1-msi", 1, 0x9, 1),
                ("edu-irq-2-msix", 2, 0x9, 0),
                ("edu-irq-4-req", 4, 0x9, 1),
            ] {
                let bytes = seed("device_info", what);
                let irq = typed_vfio::fuzzing::parse_irq_info(index, &bytes).unwrap();
                assert_eq!((irq.flags, irq.count), (flags, count), "{what}");
            }

            // Hot reset: the device (0000:01:00.0) alone on its root port's
            // bus, in its own group; the group numbers differ with and
            // without an IOMMU, hence two seeds.
            let group = |what: &str| {
                let bytes = seed("device_info", what);
                assert_eq!(bytes.len(), 76, "{what}: the crate's buffer");
                assert_eq!(crate::u32_at(&bytes, 0), Some(76), "{what}: argsz");
                let devs = typed_vfio::fuzzing::parse_hot_reset_info(&bytes).unwrap();
                assert_eq!(devs.len(), 1, "{what}");
                let d = &devs[0];
                assert_eq!((d.segment, d.bus, d.devfn), (0, 1, 0), "{what}");
                d.group_id
            };
            assert_eq!(group("noiommu-edu-hot-reset-info"), 0);
            assert_ne!(group("iommu-edu-hot-reset-info"), 0);
        }

        /// Every committed capture decodes the same way in the crate and in
        /// the reference decoder (what the fuzz targets assert on each input).
        #[test]
        fn every_captured_seed_decodes() {
            let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
            let mut seen = 0;
            for target in ["iommu_info", "region_info"] {
                for entry in std::fs::read_dir(dir.join(target)).unwrap() {
                    let path = entry.unwrap().path();
                    let name = path.file_name().unwrap().to_str().unwrap().to_owned();
                    if !name.starts_with("seed-linux-") {
                        continue;
                    }
                    // The 32-bit PowerPC guest's answers are big-endian:
                    // they decode as the kernel meant them on a big-endian
                    // host only (elsewhere they are plain fuzz inputs).
                    if name.contains("-ppc32-") != cfg!(target_endian = "big") {
                        continue;
                    }
                    let bytes = std::fs::read(&path).unwrap();
                    if target == "iommu_info" {
                        let ours = typed_vfio::fuzzing::parse_iommu_info(&bytes).unwrap();
                        let theirs = crate::ref_iommu(&bytes).unwrap();
                        assert_eq!(ranges(&ours), theirs.ranges, "{name}");
                        assert_eq!(ours.dma_avail, theirs.dma_avail, "{name}");
                    } else {
                        let ours = typed_vfio::fuzzing::parse_region_info(&bytes).unwrap();
                        let theirs = crate::ref_region(&bytes).unwrap();
                        assert_eq!(
                            (ours.index, ours.flags, ours.size, ours.offset),
                            theirs.head,
                            "{name}"
                        );
                    }
                    seen += 1;
                }
            }
            assert!(seen >= 2, "no captured seeds under {}", dir.display());
        }
    }
}

/// The simulator's pending injected faults, counted down as it does (per
/// request; a call fires at most one, and a fault due at the same call as
/// one that fired is due at the next), so an API-sequence harness knows
/// which of its calls failed. `requests`: every name faults may be
/// injected on (the ones [`sync`](Faults::sync) accounts for).
pub struct Faults {
    requests: &'static [&'static str],
    pub pending: Vec<(&'static str, u64)>,
    pub seen: std::collections::HashMap<&'static str, u64>,
}

impl Faults {
    pub fn new(requests: &'static [&'static str]) -> Faults {
        Faults {
            requests,
            pending: Vec::new(),
            seen: std::collections::HashMap::new(),
        }
    }

    pub fn inject(&mut self, sim: &typed_vfio::sim::Simulator, name: &'static str, nth: u64) {
        self.sync(sim);
        self.pending.push((name, nth));
    }

    /// One call of `name`: whether it fired a fault.
    pub fn call(&mut self, name: &str) -> bool {
        let mut fired = false;
        self.pending.retain_mut(|(n, countdown)| {
            if *n != name {
                return true;
            }
            *countdown = countdown.saturating_sub(1);
            if *countdown == 0 && !fired {
                fired = true;
                false
            } else {
                if *countdown == 0 {
                    *countdown = 1;
                }
                true
            }
        });
        fired
    }

    /// Accounts for the calls made since the last sync.
    pub fn sync(&mut self, sim: &typed_vfio::sim::Simulator) {
        for &name in self.requests {
            let now = sim.calls(name);
            let before = self.seen.insert(name, now).unwrap_or(0);
            assert!(now >= before, "{name}: call count went back");
            for _ in before..now {
                self.call(name);
            }
        }
    }

    /// Calls of `name` since the last sync, and how many of them fired.
    pub fn since(&mut self, sim: &typed_vfio::sim::Simulator, name: &'static str) -> (u64, u64) {
        let now = sim.calls(name);
        let before = self.seen.insert(name, now).unwrap_or(0);
        let mut fired = 0;
        for _ in before..now {
            fired += u64::from(self.call(name));
        }
        (now - before, fired)
    }
}
