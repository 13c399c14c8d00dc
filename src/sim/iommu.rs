//! The type1 IOMMU driver of the simulated kernel (`vfio_iommu_type1`, as
//! Linux 6.12 behaves on an Intel IOMMU with interrupt remapping): page
//! sizes, usable IOVA ranges with the x86 MSI hole, DMA_AVAIL accounting,
//! `MAP_DMA` / `UNMAP_DMA` with the v1 and v2 unmap rules, and the
//! `GET_INFO` capability chain laid out as the kernel lays it out.

use std::collections::BTreeMap;

use nix::errno::Errno;

use crate::sys;

/// Page sizes the simulated IOMMU supports (4 KiB, 2 MiB, 1 GiB).
pub(crate) const PGSIZE_BITMAP: u64 = 0x4020_1000;
/// The smallest of them.
pub(crate) const MIN_PAGE: u64 = 1 << PGSIZE_BITMAP.trailing_zeros();
/// Usable IOVA ranges (inclusive): everything below the x86 MSI window
/// 0xfee00000..=0xfeefffff, and above it up to the 39-bit address width.
pub(crate) const IOVA_RANGES: [(u64, u64); 2] = [(0, 0xfedf_ffff), (0xfef0_0000, 0x7f_ffff_ffff)];
/// The default of the `dma_entry_limit` module parameter.
pub(crate) const DMA_ENTRY_LIMIT: u32 = 65535;
/// `DIRTY_BITMAP_SIZE_MAX`: the bitmap bytes for `INT_MAX` pages.
const DIRTY_BITMAP_SIZE_MAX: u64 = ((i32::MAX as u64).next_multiple_of(64)) / 8;

/// One `vfio_dma`: a mapping of process memory at an IOVA.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Mapping {
    pub(crate) iova: u64,
    pub(crate) size: u64,
    pub(crate) vaddr: u64,
    pub(crate) read: bool,
    pub(crate) write: bool,
}

/// A type1 IOMMU context (`struct vfio_iommu`).
#[derive(Debug)]
pub(crate) struct Type1 {
    pub(crate) v2: bool,
    pub(crate) dma: BTreeMap<u64, Mapping>,
    pub(crate) avail: u32,
    /// `VFIO_IOMMU_DIRTY_PAGES_FLAG_START` is in effect.
    dirty_tracking: bool,
    /// The usable IOVA ranges (inclusive): [`IOVA_RANGES`] less the reserved
    /// regions of the attached groups (`vfio_iommu_resv_exclude`).
    ranges: Vec<(u64, u64)>,
}

/// `ranges` less `resv` (inclusive ranges on both sides).
fn exclude(ranges: &[(u64, u64)], resv: &[(u64, u64)]) -> Vec<(u64, u64)> {
    let mut out = ranges.to_vec();
    for &(rs, re) in resv {
        let mut next = Vec::with_capacity(out.len() + 1);
        for (s, e) in out {
            if re < s || rs > e {
                next.push((s, e));
                continue;
            }
            if rs > s {
                next.push((s, rs - 1));
            }
            if re < e {
                next.push((re + 1, e));
            }
        }
        out = next;
    }
    out
}

fn word(bytes: &[u8], at: usize) -> Result<u32, Errno> {
    let b = bytes.get(at..at + 4).ok_or(Errno::EFAULT)?;
    Ok(u32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
}

/// A `vfio_bitmap` at `at` of an argument (`pgsize`, `size`, then `data`,
/// a pointer as wide as the target's), checked for a range of `size` bytes
/// as the kernel's `verify_bitmap_size` does: its page size, its user
/// address, and a clean bitmap of the words the pages need.
fn user_bitmap(b: &[u8], at: usize, size: u64) -> Result<(u64, u64, Vec<u8>), Errno> {
    let (pgsize, bsize) = (dword(b, at)?, dword(b, at + 8)?);
    let data = if size_of::<usize>() == 8 {
        dword(b, at + 16)?
    } else {
        u64::from(word(b, at + 16)?)
    };
    if pgsize == 0 {
        return Err(Errno::EINVAL);
    }
    let npages = size >> pgsize.trailing_zeros();
    let bytes = npages.div_ceil(64) * 8;
    if npages == 0 || bsize == 0 || npages > i32::MAX as u64 || bsize < bytes {
        return Err(Errno::EINVAL);
    }
    Ok((pgsize, data, vec![0u8; bytes as usize]))
}

/// Sets bits `first..first + count` of a bitmap of native-endian `u64`
/// words (bits past its end are not set).
fn set_pages(map: &mut [u8], first: u64, count: u64) {
    for page in first..first.saturating_add(count) {
        let at = (page / 64 * 8) as usize;
        let Some(word) = map.get_mut(at..at + 8) else {
            return;
        };
        let mut v = u64::from_ne_bytes(word.try_into().unwrap_or_default());
        v |= 1 << (page % 64);
        word.copy_from_slice(&v.to_ne_bytes());
    }
}

pub(crate) fn dword(bytes: &[u8], at: usize) -> Result<u64, Errno> {
    let lo = u64::from(word(bytes, at)?);
    let hi = u64::from(word(bytes, at + 4)?);
    Ok(if cfg!(target_endian = "little") {
        lo | hi << 32
    } else {
        hi | lo << 32
    })
}

fn put(bytes: &mut [u8], at: usize, value: &[u8]) -> Result<(), Errno> {
    bytes
        .get_mut(at..at + value.len())
        .ok_or(Errno::EFAULT)?
        .copy_from_slice(value);
    Ok(())
}

impl Type1 {
    pub(crate) fn new(v2: bool, limit: u32) -> Self {
        Type1 {
            v2,
            dma: BTreeMap::new(),
            avail: limit,
            dirty_tracking: false,
            ranges: IOVA_RANGES.to_vec(),
        }
    }

    /// `VFIO_IOMMU_DIRTY_PAGES` (`vfio_iommu_type1_dirty_pages`). Every
    /// group of the simulator is IOMMU-backed and pins nothing, so while
    /// tracking every page of every mapping is dirty, as the kernel reports
    /// for such groups (`update_user_bitmap`).
    pub(crate) fn dirty_pages(
        &mut self,
        b: &[u8],
        mem: &mut dyn super::iommufd::UserMemory,
    ) -> Result<(), Errno> {
        if !self.v2 {
            return Err(Errno::EACCES);
        }
        let (argsz, flags) = (word(b, 0)?, word(b, 4)?);
        let mask = sys::VFIO_IOMMU_DIRTY_PAGES_FLAG_START
            | sys::VFIO_IOMMU_DIRTY_PAGES_FLAG_STOP
            | sys::VFIO_IOMMU_DIRTY_PAGES_FLAG_GET_BITMAP;
        if argsz < 8 || flags & !mask != 0 || flags.count_ones() != 1 {
            return Err(Errno::EINVAL);
        }
        match flags {
            sys::VFIO_IOMMU_DIRTY_PAGES_FLAG_START => self.dirty_tracking = true,
            sys::VFIO_IOMMU_DIRTY_PAGES_FLAG_STOP => self.dirty_tracking = false,
            _ => {
                // vfio_iommu_type1_dirty_bitmap_get after the 8-byte head:
                // iova, size, then vfio_bitmap { pgsize, size, data }.
                let get = size_of::<sys::vfio_iommu_type1_dirty_bitmap_get>();
                if (argsz as usize) < 8 + get {
                    return Err(Errno::EINVAL);
                }
                let (iova, size) = (dword(b, 8)?, dword(b, 16)?);
                if size == 0 {
                    return Err(Errno::EINVAL);
                }
                let end = iova.checked_add(size - 1).ok_or(Errno::EOVERFLOW)?;
                let (pgsize, data, mut map) = user_bitmap(b, 24, size)?;
                if pgsize != MIN_PAGE || iova % MIN_PAGE != 0 || size % MIN_PAGE != 0 {
                    return Err(Errno::EINVAL);
                }
                if !self.dirty_tracking {
                    return Err(Errno::EINVAL);
                }
                // The range must not cut a mapping at either end.
                let cut = |at: u64, start: bool| {
                    self.translate(at).is_some_and(|m| {
                        if start {
                            m.iova != at
                        } else {
                            m.iova + m.size - 1 != at
                        }
                    })
                };
                if cut(iova, true) || cut(end, false) {
                    return Err(Errno::EINVAL);
                }
                mem.read(data, &mut map)?;
                for m in self
                    .dma
                    .values()
                    .filter(|m| m.iova >= iova && m.iova <= end)
                {
                    set_pages(&mut map, (m.iova - iova) / pgsize, m.size / pgsize);
                }
                mem.write(data, &map)?;
            }
        }
        Ok(())
    }

    /// A group with reserved regions `resv` joins (`vfio_iommu_type1_attach_group`):
    /// `EINVAL` if a mapping overlaps one of them (`vfio_iommu_resv_conflict`)
    /// or nothing usable would be left; else the usable ranges shrink.
    pub(crate) fn attach_reserved(&mut self, resv: &[(u64, u64)]) -> Result<(), Errno> {
        let conflict = self.dma.values().any(|m| {
            let last = m.iova + (m.size - 1);
            resv.iter().any(|&(s, e)| m.iova <= e && last >= s)
        });
        let left = exclude(&self.ranges, resv);
        if conflict || left.is_empty() {
            return Err(Errno::EINVAL);
        }
        self.ranges = left;
        Ok(())
    }

    /// A group left: the usable ranges are recomputed from those of the
    /// groups that stay (`vfio_iommu_resv_refresh`).
    pub(crate) fn refresh_reserved(&mut self, resv: &[(u64, u64)]) {
        self.ranges = exclude(&IOVA_RANGES, resv);
    }

    /// `vfio_find_dma`: the mapping overlapping `iova..iova + size` (size 0:
    /// the one strictly containing `iova` past its first byte).
    fn find(&self, iova: u64, size: u64) -> Option<Mapping> {
        self.dma
            .range(..=iova.saturating_add(size.saturating_sub(1)))
            .next_back()
            .map(|(_, m)| *m)
            .filter(|m| {
                // Inclusive ends: a range may end at the top of the IOVA
                // space, where `iova + size` wraps to 0 (the kernel's u64
                // arithmetic wraps the same way).
                let last = m.iova + (m.size - 1);
                if size == 0 {
                    iova > m.iova && iova <= last
                } else {
                    iova <= last && iova + (size - 1) >= m.iova
                }
            })
            .or_else(|| {
                // Another mapping may start inside the range.
                if size == 0 {
                    return None;
                }
                self.dma
                    .range(iova..iova.saturating_add(size))
                    .next()
                    .map(|(_, m)| *m)
            })
    }

    fn iova_valid(&self, iova: u64, last: u64) -> bool {
        self.ranges.iter().any(|&(s, e)| iova >= s && last <= e)
    }

    /// The mapping that translates `iova`, if any.
    pub(crate) fn translate(&self, iova: u64) -> Option<Mapping> {
        self.dma
            .range(..=iova)
            .next_back()
            .map(|(_, m)| *m)
            .filter(|m| iova <= m.iova + (m.size - 1))
    }

    /// `VFIO_IOMMU_GET_INFO`.
    pub(crate) fn get_info(&self, arg: &mut [u8]) -> Result<(), Errno> {
        let minsz = 16; // offsetofend(vfio_iommu_type1_info, iova_pgsizes)
        let argsz = word(arg, 0)? as usize;
        if argsz < minsz {
            return Err(Errno::EINVAL);
        }
        let fixed = size_of::<sys::vfio_iommu_type1_info>();
        let copy = argsz.min(fixed);
        // The chain, built as vfio_info_add_capability builds it: each
        // capability 8-byte aligned, in order MIGRATION, DMA_AVAIL,
        // IOVA_RANGE; `next` offsets relative to the info struct.
        let mut caps: Vec<u8> = Vec::with_capacity(96);
        let add = |caps: &mut Vec<u8>, id: u32, body: &[u8]| {
            let start = caps.len();
            let len = (8 + body.len()).next_multiple_of(8);
            caps.resize(start + len, 0);
            caps[start..start + 2].copy_from_slice(&(id as u16).to_ne_bytes());
            caps[start + 2..start + 4].copy_from_slice(&1u16.to_ne_bytes());
            caps[start + 8..start + 8 + body.len()].copy_from_slice(body);
            start
        };
        // The migration capability in this target's C layout (its u64s are
        // plain `__u64`: i386 packs them right after `flags`).
        let mut mig = <sys::vfio_iommu_type1_info_cap_migration as sys::FromBytes>::new_zeroed();
        mig.flags = 0;
        mig.pgsize_bitmap = MIN_PAGE;
        mig.max_dirty_bitmap_size = DIRTY_BITMAP_SIZE_MAX;
        let mig = sys::IntoBytes::as_bytes(&mig);
        let header = size_of::<sys::vfio_info_cap_header>();
        let c0 = add(
            &mut caps,
            sys::VFIO_IOMMU_TYPE1_INFO_CAP_MIGRATION,
            &mig[header..],
        );
        let c1 = add(
            &mut caps,
            sys::VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL,
            &self.avail.to_ne_bytes(),
        );
        let mut ranges = Vec::with_capacity(8 + 16 * self.ranges.len());
        ranges.extend_from_slice(&(self.ranges.len() as u32).to_ne_bytes());
        ranges.extend_from_slice(&0u32.to_ne_bytes());
        for &(s, e) in &self.ranges {
            ranges.extend_from_slice(&s.to_ne_bytes());
            ranges.extend_from_slice(&e.to_ne_bytes());
        }
        let c2 = add(
            &mut caps,
            sys::VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE,
            &ranges,
        );
        for (at, next) in [(c0, c1), (c1, c2)] {
            let next = (fixed + next) as u32;
            caps[at + 4..at + 8].copy_from_slice(&next.to_ne_bytes());
        }
        let flags = sys::VFIO_IOMMU_INFO_PGSIZES | sys::VFIO_IOMMU_INFO_CAPS;
        let mut head = [0u8; 24];
        head[0..4].copy_from_slice(&(argsz as u32).to_ne_bytes());
        head[4..8].copy_from_slice(&flags.to_ne_bytes());
        head[8..16].copy_from_slice(&PGSIZE_BITMAP.to_ne_bytes());
        let total = fixed + caps.len();
        if argsz < total {
            head[0..4].copy_from_slice(&(total as u32).to_ne_bytes());
        } else {
            put(arg, fixed, &caps)?;
            head[16..20].copy_from_slice(&(fixed as u32).to_ne_bytes());
        }
        put(arg, 0, &head[..copy])
    }

    /// `VFIO_IOMMU_MAP_DMA`; `mapped` says whether process memory is there
    /// (pinning it fails with `EFAULT` otherwise).
    pub(crate) fn map(
        &mut self,
        arg: &[u8],
        mapped: impl Fn(u64, u64) -> bool,
    ) -> Result<(), Errno> {
        let minsz = 32; // offsetofend(vfio_iommu_type1_dma_map, size)
        let argsz = word(arg, 0)? as usize;
        let flags = word(arg, 4)?;
        let vaddr = dword(arg, 8)?;
        let iova = dword(arg, 16)?;
        let size = dword(arg, 24)?;
        let mask = sys::VFIO_DMA_MAP_FLAG_READ
            | sys::VFIO_DMA_MAP_FLAG_WRITE
            | sys::VFIO_DMA_MAP_FLAG_VADDR;
        if argsz < minsz || flags & !mask != 0 {
            return Err(Errno::EINVAL);
        }
        let set_vaddr = flags & sys::VFIO_DMA_MAP_FLAG_VADDR != 0;
        let write = flags & sys::VFIO_DMA_MAP_FLAG_WRITE != 0;
        let read = flags & sys::VFIO_DMA_MAP_FLAG_READ != 0;
        let prot = read || write;
        if prot == set_vaddr {
            return Err(Errno::EINVAL);
        }
        let page = MIN_PAGE;
        if size == 0 || (size | iova | vaddr) & (page - 1) != 0 {
            return Err(Errno::EINVAL);
        }
        if iova.checked_add(size - 1).is_none() || vaddr.checked_add(size - 1).is_none() {
            return Err(Errno::EINVAL);
        }
        let existing = self.find(iova, size);
        if set_vaddr {
            // Update the vaddr of an exactly matching mapping.
            return match existing {
                Some(m) if m.iova == iova && m.size == size => {
                    if let Some(m) = self.dma.get_mut(&iova) {
                        m.vaddr = vaddr;
                    }
                    Ok(())
                }
                _ => Err(Errno::EINVAL),
            };
        }
        if existing.is_some() {
            return Err(Errno::EEXIST);
        }
        if self.avail == 0 {
            return Err(Errno::ENOSPC);
        }
        if !self.iova_valid(iova, iova + (size - 1)) {
            return Err(Errno::EINVAL);
        }
        if !mapped(vaddr, size) {
            return Err(Errno::EFAULT);
        }
        self.avail -= 1;
        self.dma.insert(
            iova,
            Mapping {
                iova,
                size,
                vaddr,
                read,
                write,
            },
        );
        Ok(())
    }

    /// `VFIO_IOMMU_UNMAP_DMA`: writes the unmapped size back on success.
    pub(crate) fn unmap(
        &mut self,
        arg: &mut [u8],
        mem: &mut dyn super::iommufd::UserMemory,
    ) -> Result<(), Errno> {
        let minsz = 24; // offsetofend(vfio_iommu_type1_dma_unmap, size)
        let argsz = word(arg, 0)? as usize;
        let flags = word(arg, 4)?;
        let iova = dword(arg, 8)?;
        let mut size = dword(arg, 16)?;
        let dirty = sys::VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP;
        let all = sys::VFIO_DMA_UNMAP_FLAG_ALL;
        let vaddr = sys::VFIO_DMA_UNMAP_FLAG_VADDR;
        if argsz < minsz || flags & !(dirty | all | vaddr) != 0 {
            return Err(Errno::EINVAL);
        }
        if flags & dirty != 0 && flags & (all | vaddr) != 0 {
            return Err(Errno::EINVAL);
        }
        // GET_DIRTY_BITMAP: a vfio_bitmap { pgsize, size, data } after the
        // unmap struct, checked as vfio_iommu_type1_unmap_dma does.
        let mut bitmap = None;
        if flags & dirty != 0 {
            if argsz < minsz + size_of::<sys::vfio_bitmap>() {
                return Err(Errno::EINVAL);
            }
            let (pgsize, data, map) = user_bitmap(arg, 24, size)?;
            if !self.dirty_tracking || pgsize != MIN_PAGE {
                return Err(Errno::EINVAL);
            }
            bitmap = Some((data, map));
        }
        let unmap_all = flags & all != 0;
        let page = MIN_PAGE;
        if iova & (page - 1) != 0 {
            return Err(Errno::EINVAL);
        }
        if unmap_all {
            if iova != 0 || size != 0 {
                return Err(Errno::EINVAL);
            }
            size = u64::MAX;
        } else if size == 0 || size & (page - 1) != 0 || iova.checked_add(size - 1).is_none() {
            return Err(Errno::EINVAL);
        }
        let last = iova.saturating_add(size - 1);
        if self.v2 && !unmap_all {
            if self.find(iova, 1).is_some_and(|m| m.iova != iova) {
                return Err(Errno::EINVAL);
            }
            if self
                .find(last, 0)
                .is_some_and(|m| m.iova + (m.size - 1) != last)
            {
                return Err(Errno::EINVAL);
            }
        }
        let mut unmapped = 0u64;
        let hits: Vec<Mapping> = self
            .dma
            .values()
            .filter(|m| m.iova <= last && m.iova + (m.size - 1) >= iova)
            .copied()
            .collect();
        for m in hits {
            if !self.v2 && iova > m.iova {
                // v1: an unmap starting inside a mapping unmaps nothing more.
                break;
            }
            if flags & vaddr != 0 {
                // Invalidating vaddrs is not simulated as a separate state:
                // report the size as the kernel does, keep the mapping.
                unmapped += m.size;
                continue;
            }
            if let Some((_, map)) = bitmap.as_mut() {
                // Every page of the mapping is dirty (update_user_bitmap,
                // for a group that pins nothing).
                set_pages(map, (m.iova - iova) / MIN_PAGE, m.size / MIN_PAGE);
            }
            unmapped += m.size;
            self.dma.remove(&m.iova);
            self.avail += 1;
        }
        if let Some((data, map)) = bitmap {
            mem.write(data, &map)?;
        }
        put(arg, 16, &unmapped.to_ne_bytes())
    }

    /// Every mapping, in IOVA order.
    pub(crate) fn mappings(&self) -> impl Iterator<Item = &Mapping> {
        self.dma.values()
    }
}
