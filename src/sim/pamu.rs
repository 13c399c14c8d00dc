//! The Freescale PAMU ("type2") IOMMU driver of the simulated kernel, as the
//! Freescale/NXP SDK kernels shipped it (`vfio_iommu_fsl_pamu.c` over
//! `fsl_pamu_domain.c`): one aperture split into a power-of-two number of
//! equal windows, DMA mappings of whole windows, MSI-bank doorbells mapped
//! into windows, the domain enabled by the first DMA mapping.
//!
//! Two modes: [`PamuMode::Strict`] returns every error;
//! [`PamuMode::Sdk`] swallows them where the shipped code does (`SET_ATTR`,
//! `MAP_MSI_BANK`, `UNMAP_MSI_BANK` return 0 on error; `GET_ATTR` of an
//! unknown attribute returns 0 with the struct unchanged; a `MAP_DMA`
//! smaller than a window maps nothing and returns 0; a remainder past the
//! last whole window is ignored).

use std::collections::BTreeMap;

use nix::errno::Errno;

use super::iommu::Mapping;
use crate::sys;
use crate::sys::layout::{PAMU_ATTR_INFO as U, PAMU_BANK_IOVA};

/// The sizes the SDK driver checks `argsz` against (`sizeof` of its structs).
const ATTR_SIZE: usize = size_of::<sys::vfio_pamu_attr>();
const BANK_MAP_SIZE: usize = size_of::<sys::vfio_pamu_msi_bank_map>();

/// How the simulated PAMU driver reports errors.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PamuMode {
    /// Every error is returned (what the driver should have done).
    Strict,
    /// The shipped SDK driver: `SET_ATTR`, `MAP_MSI_BANK` and
    /// `UNMAP_MSI_BANK` return 0 on error, `GET_ATTR` of an unknown
    /// attribute returns 0 with the struct unchanged, a `MAP_DMA` smaller
    /// than a window maps nothing and returns 0, and a remainder past the
    /// last whole window is ignored.
    Sdk,
}

/// The default aperture: [0, 2^36 - 1], reported but not configured.
pub(crate) const DEFAULT_APERTURE_END: u64 = (1 << 36) - 1;
/// The hardware's window maximum.
pub(crate) const MAX_WINDOWS: u32 = 256;

fn word(b: &[u8], at: usize) -> Result<u32, Errno> {
    let w = b.get(at..at + 4).ok_or(Errno::EFAULT)?;
    Ok(u32::from_ne_bytes([w[0], w[1], w[2], w[3]]))
}

fn dword(b: &[u8], at: usize) -> Result<u64, Errno> {
    let w = b.get(at..at + 8).ok_or(Errno::EFAULT)?;
    Ok(u64::from_ne_bytes([
        w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7],
    ]))
}

fn put(b: &mut [u8], at: usize, v: &[u8]) -> Result<(), Errno> {
    b.get_mut(at..at + v.len())
        .ok_or(Errno::EFAULT)?
        .copy_from_slice(v);
    Ok(())
}

/// What a window holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Window {
    /// Part of the DMA mapping that starts at this IOVA.
    Dma(u64),
    /// MSI bank `index`'s doorbell, mapped at this IOVA.
    Msi { index: u32, iova: u64 },
}

/// One PAMU container (`struct vfio_iommu` of the SDK driver).
#[derive(Debug)]
pub(crate) struct Pamu {
    mode: PamuMode,
    banks: u32,
    start: u64,
    end: u64,
    geometry_set: bool,
    windows: u32,
    windows_set: bool,
    stash: Option<(u32, u32)>,
    /// The DMA mappings, by IOVA.
    dma: BTreeMap<u64, Mapping>,
    /// Window index → what it holds.
    slots: BTreeMap<u64, Window>,
    enabled: bool,
}

impl Pamu {
    pub(crate) fn new(mode: PamuMode, banks: u32) -> Self {
        Pamu {
            mode,
            banks,
            start: 0,
            end: DEFAULT_APERTURE_END,
            geometry_set: false,
            windows: MAX_WINDOWS,
            windows_set: false,
            stash: None,
            dma: BTreeMap::new(),
            slots: BTreeMap::new(),
            enabled: false,
        }
    }

    fn size(&self) -> u64 {
        self.end - self.start + 1
    }

    fn window_size(&self) -> u64 {
        self.size() / u64::from(self.windows.max(1))
    }

    /// The window that contains `iova`, if it is inside the aperture.
    fn window_of(&self, iova: u64) -> Option<u64> {
        (iova >= self.start && iova <= self.end).then(|| (iova - self.start) / self.window_size())
    }

    /// Errors become 0 in SDK mode for the calls whose errors it swallows.
    fn swallow(&self, r: Result<(), Errno>) -> Result<(), Errno> {
        match (self.mode, r) {
            (PamuMode::Sdk, Err(_)) => Ok(()),
            (_, r) => r,
        }
    }

    /// `VFIO_IOMMU_PAMU_GET_ATTR`.
    pub(crate) fn get_attr(&self, arg: &mut [u8]) -> Result<(), Errno> {
        if (word(arg, 0)? as usize) < ATTR_SIZE {
            return Err(Errno::EINVAL);
        }
        match word(arg, 8)? {
            sys::VFIO_ATTR_GEOMETRY => {
                put(arg, U, &self.start.to_ne_bytes())?;
                put(arg, U + 8, &self.end.to_ne_bytes())
            }
            sys::VFIO_ATTR_WINDOWS => put(arg, U, &self.windows.to_ne_bytes()),
            sys::VFIO_ATTR_PAMU_STASH => {
                let (cpu, cache) = self.stash.ok_or(Errno::EINVAL)?;
                put(arg, U, &cpu.to_ne_bytes())?;
                put(arg, U + 4, &cache.to_ne_bytes())
            }
            _ if self.mode == PamuMode::Sdk => Ok(()),
            _ => Err(Errno::EINVAL),
        }
    }

    /// `VFIO_IOMMU_PAMU_SET_ATTR` (argsz is checked even in SDK mode).
    pub(crate) fn set_attr(&mut self, arg: &[u8]) -> Result<(), Errno> {
        if (word(arg, 0)? as usize) < ATTR_SIZE {
            return Err(Errno::EINVAL);
        }
        let r = self.set_attr_inner(arg);
        self.swallow(r)
    }

    fn set_attr_inner(&mut self, arg: &[u8]) -> Result<(), Errno> {
        match word(arg, 8)? {
            sys::VFIO_ATTR_GEOMETRY => {
                let (start, end) = (dword(arg, U)?, dword(arg, U + 8)?);
                if self.enabled {
                    return Err(Errno::EBUSY);
                }
                let size = end
                    .checked_sub(start)
                    .and_then(|d| d.checked_add(1))
                    .ok_or(Errno::EINVAL)?;
                if !size.is_power_of_two() || size < 4096 || !start.is_multiple_of(size) {
                    return Err(Errno::EINVAL);
                }
                self.start = start;
                self.end = end;
                self.geometry_set = true;
                self.windows_set = false;
                self.windows = MAX_WINDOWS;
                self.slots.clear();
                Ok(())
            }
            sys::VFIO_ATTR_WINDOWS => {
                let n = word(arg, U)?;
                if !self.geometry_set {
                    return Err(Errno::EINVAL);
                }
                if self.enabled {
                    return Err(Errno::EBUSY);
                }
                if !n.is_power_of_two() || n > MAX_WINDOWS {
                    return Err(Errno::EINVAL);
                }
                self.windows = n;
                self.windows_set = true;
                self.slots.clear();
                Ok(())
            }
            sys::VFIO_ATTR_PAMU_STASH => {
                let (cpu, cache) = (word(arg, U)?, word(arg, U + 4)?);
                if !self.windows_set {
                    return Err(Errno::EINVAL);
                }
                if !(sys::VFIO_PAMU_STASH_L1..=sys::VFIO_PAMU_STASH_L3).contains(&cache) {
                    return Err(Errno::EINVAL);
                }
                self.stash = Some((cpu, cache));
                Ok(())
            }
            _ => Err(Errno::EINVAL),
        }
    }

    /// `VFIO_IOMMU_PAMU_GET_MSI_BANK_COUNT`: the count is the return value.
    pub(crate) fn bank_count(&self) -> u32 {
        self.banks
    }

    /// `VFIO_IOMMU_PAMU_MAP_MSI_BANK`.
    pub(crate) fn map_msi_bank(&mut self, arg: &[u8]) -> Result<(), Errno> {
        if (word(arg, 0)? as usize) < BANK_MAP_SIZE {
            return Err(Errno::EINVAL);
        }
        let r = self.map_msi_inner(arg);
        self.swallow(r)
    }

    fn map_msi_inner(&mut self, arg: &[u8]) -> Result<(), Errno> {
        let (flags, index, iova) = (word(arg, 4)?, word(arg, 8)?, dword(arg, PAMU_BANK_IOVA)?);
        let rw = sys::VFIO_DMA_MAP_FLAG_READ | sys::VFIO_DMA_MAP_FLAG_WRITE;
        if flags & rw == 0 || flags & !rw != 0 {
            return Err(Errno::EINVAL);
        }
        if index >= self.banks {
            return Err(Errno::ENODEV);
        }
        if !self.windows_set {
            return Err(Errno::EINVAL);
        }
        let w = self.window_of(iova).ok_or(Errno::EINVAL)?;
        if self.slots.contains_key(&w) {
            return Err(Errno::EBUSY);
        }
        if self
            .slots
            .values()
            .any(|s| matches!(s, Window::Msi { index: i, .. } if *i == index))
        {
            return Err(Errno::EEXIST);
        }
        self.slots.insert(w, Window::Msi { index, iova });
        Ok(())
    }

    /// `VFIO_IOMMU_PAMU_UNMAP_MSI_BANK`.
    pub(crate) fn unmap_msi_bank(&mut self, arg: &[u8]) -> Result<(), Errno> {
        if (word(arg, 0)? as usize) < 16 {
            return Err(Errno::EINVAL);
        }
        let iova = dword(arg, 8)?;
        let hit = self
            .slots
            .iter()
            .find(|(_, s)| matches!(s, Window::Msi { iova: i, .. } if *i == iova))
            .map(|(w, _)| *w);
        let r = match hit {
            Some(w) => {
                self.slots.remove(&w);
                Ok(())
            }
            None => Err(Errno::EINVAL),
        };
        self.swallow(r)
    }

    /// `VFIO_IOMMU_MAP_DMA`; `mapped` says whether process memory is there.
    pub(crate) fn map(
        &mut self,
        arg: &[u8],
        mapped: impl Fn(u64, u64) -> bool,
    ) -> Result<(), Errno> {
        if (word(arg, 0)? as usize) < 32 {
            return Err(Errno::EINVAL);
        }
        let (flags, vaddr, iova, size) = (
            word(arg, 4)?,
            dword(arg, 8)?,
            dword(arg, 16)?,
            dword(arg, 24)?,
        );
        let rw = sys::VFIO_DMA_MAP_FLAG_READ | sys::VFIO_DMA_MAP_FLAG_WRITE;
        if flags & rw == 0 || flags & !rw != 0 || !self.windows_set {
            return Err(Errno::EINVAL);
        }
        let ws = self.window_size();
        let first = self.window_of(iova).ok_or(Errno::EINVAL)?;
        if !(iova - self.start).is_multiple_of(ws) {
            return Err(Errno::EINVAL);
        }
        let mut count = size / ws;
        if count == 0 || size % ws != 0 {
            if self.mode == PamuMode::Sdk {
                if count == 0 {
                    return Ok(()); // maps nothing
                }
                // the remainder past the last whole window is ignored
            } else {
                return Err(Errno::EINVAL);
            }
        }
        if first + count > u64::from(self.windows) {
            if self.mode == PamuMode::Strict {
                return Err(Errno::EINVAL);
            }
            count = u64::from(self.windows) - first;
        }
        let mapped_size = count * ws;
        if (first..first + count).any(|w| self.slots.contains_key(&w)) {
            return Err(Errno::EBUSY);
        }
        if !mapped(vaddr, mapped_size) {
            return Err(Errno::EFAULT);
        }
        for w in first..first + count {
            self.slots.insert(w, Window::Dma(iova));
        }
        self.dma.insert(
            iova,
            Mapping {
                iova,
                size: mapped_size,
                vaddr,
                read: flags & sys::VFIO_DMA_MAP_FLAG_READ != 0,
                write: flags & sys::VFIO_DMA_MAP_FLAG_WRITE != 0,
            },
        );
        self.enabled = true;
        Ok(())
    }

    /// `VFIO_IOMMU_UNMAP_DMA`: the mappings inside `iova..iova + size`;
    /// writes the unmapped size back.
    pub(crate) fn unmap(&mut self, arg: &mut [u8]) -> Result<(), Errno> {
        if (word(arg, 0)? as usize) < 24 || word(arg, 4)? != 0 {
            return Err(Errno::EINVAL);
        }
        let (iova, size) = (dword(arg, 8)?, dword(arg, 16)?);
        let last = iova.checked_add(size.max(1) - 1).ok_or(Errno::EINVAL)?;
        let hits: Vec<Mapping> = self
            .dma
            .values()
            .filter(|m| m.iova >= iova && m.iova + (m.size - 1) <= last)
            .copied()
            .collect();
        let mut unmapped = 0;
        for m in hits {
            self.dma.remove(&m.iova);
            self.slots.retain(|_, s| *s != Window::Dma(m.iova));
            unmapped += m.size;
        }
        if self.dma.is_empty() {
            self.enabled = false;
        }
        put(arg, 16, &unmapped.to_ne_bytes())
    }

    /// The mapping that translates `iova` (only while the domain is enabled).
    pub(crate) fn translate(&self, iova: u64) -> Option<Mapping> {
        if !self.enabled {
            return None;
        }
        self.dma
            .range(..=iova)
            .next_back()
            .map(|(_, m)| *m)
            .filter(|m| iova <= m.iova + (m.size - 1))
    }

    /// Whether MSI bank `index`'s doorbell is mapped in some window (what
    /// the kernel searches for when it composes an MSI message).
    pub(crate) fn doorbell_mapped(&self, index: u32) -> bool {
        self.slots
            .values()
            .any(|s| matches!(s, Window::Msi { index: i, .. } if *i == index))
    }

    /// Every DMA mapping, in IOVA order.
    pub(crate) fn mappings(&self) -> impl Iterator<Item = &Mapping> {
        self.dma.values()
    }

    /// Every MSI-bank mapping: (bank, first IOVA of its window, window
    /// size), in window order.
    pub(crate) fn msi_mappings(&self) -> impl Iterator<Item = (u32, u64, u64)> + '_ {
        let ws = self.window_size();
        self.slots.iter().filter_map(move |(w, s)| match s {
            Window::Msi { index, .. } => Some((*index, self.start + w * ws, ws)),
            Window::Dma(_) => None,
        })
    }

    /// Whether the domain is enabled (a DMA mapping exists).
    pub(crate) fn enabled(&self) -> bool {
        self.enabled
    }
}

#[cfg(test)]
mod tests {
    //! The driver's rules on raw argument bytes, in both modes.
    use super::*;

    const MODES: [PamuMode; 2] = [PamuMode::Strict, PamuMode::Sdk];
    /// The argsz of a whole `vfio_pamu_attr` / `vfio_pamu_msi_bank_map` on
    /// this target (32 / 24; 28 / 20 on i386).
    const A: u32 = ATTR_SIZE as u32;
    const B: u32 = BANK_MAP_SIZE as u32;

    fn attr(argsz: u32, attribute: u32, a: u64, b: u64) -> Vec<u8> {
        let mut v = vec![0u8; ATTR_SIZE];
        v[0..4].copy_from_slice(&argsz.to_ne_bytes());
        v[8..12].copy_from_slice(&attribute.to_ne_bytes());
        if attribute == sys::VFIO_ATTR_GEOMETRY {
            v[U..U + 8].copy_from_slice(&a.to_ne_bytes());
            v[U + 8..U + 16].copy_from_slice(&b.to_ne_bytes());
        } else {
            v[U..U + 4].copy_from_slice(&(a as u32).to_ne_bytes());
            v[U + 4..U + 8].copy_from_slice(&(b as u32).to_ne_bytes());
        }
        v
    }

    fn geometry(start: u64, end: u64) -> Vec<u8> {
        attr(A, sys::VFIO_ATTR_GEOMETRY, start, end)
    }

    fn windows(n: u32) -> Vec<u8> {
        attr(A, sys::VFIO_ATTR_WINDOWS, u64::from(n), 0)
    }

    fn bank(argsz: u32, flags: u32, index: u32, iova: u64) -> Vec<u8> {
        let mut v = vec![0u8; BANK_MAP_SIZE];
        v[0..4].copy_from_slice(&argsz.to_ne_bytes());
        v[4..8].copy_from_slice(&flags.to_ne_bytes());
        v[8..12].copy_from_slice(&index.to_ne_bytes());
        v[PAMU_BANK_IOVA..PAMU_BANK_IOVA + 8].copy_from_slice(&iova.to_ne_bytes());
        v
    }

    fn unbank(iova: u64) -> Vec<u8> {
        let mut v = vec![0u8; 16];
        v[0..4].copy_from_slice(&16u32.to_ne_bytes());
        v[8..16].copy_from_slice(&iova.to_ne_bytes());
        v
    }

    fn dma(argsz: u32, flags: u32, iova: u64, size: u64) -> Vec<u8> {
        let mut v = vec![0u8; 32];
        v[0..4].copy_from_slice(&argsz.to_ne_bytes());
        v[4..8].copy_from_slice(&flags.to_ne_bytes());
        v[8..16].copy_from_slice(&0x7000_0000u64.to_ne_bytes());
        v[16..24].copy_from_slice(&iova.to_ne_bytes());
        v[24..32].copy_from_slice(&size.to_ne_bytes());
        v
    }

    fn undma(flags: u32, iova: u64, size: u64) -> Vec<u8> {
        let mut v = vec![0u8; 24];
        v[0..4].copy_from_slice(&24u32.to_ne_bytes());
        v[4..8].copy_from_slice(&flags.to_ne_bytes());
        v[8..16].copy_from_slice(&iova.to_ne_bytes());
        v[16..24].copy_from_slice(&size.to_ne_bytes());
        v
    }

    const RW: u32 = sys::VFIO_DMA_MAP_FLAG_READ | sys::VFIO_DMA_MAP_FLAG_WRITE;

    /// 1 MiB at 0, 16 windows of 64 KiB.
    fn configured(mode: PamuMode) -> Pamu {
        let mut p = Pamu::new(mode, 2);
        p.set_attr(&geometry(0, 0xf_ffff)).unwrap();
        p.set_attr(&windows(16)).unwrap();
        p
    }

    /// Strict: the errno; SDK: swallowed (0) and no effect.
    fn swallowed(mode: PamuMode, r: Result<(), Errno>, errno: Errno) {
        match mode {
            PamuMode::Strict => assert_eq!(r, Err(errno)),
            PamuMode::Sdk => assert_eq!(r, Ok(())),
        }
    }

    #[test]
    fn defaults_and_argsz_minimums() {
        for mode in MODES {
            let mut p = Pamu::new(mode, 3);
            let mut g = attr(A, sys::VFIO_ATTR_GEOMETRY, 1, 1);
            p.get_attr(&mut g).unwrap();
            assert_eq!(dword(&g, U).unwrap(), 0);
            assert_eq!(dword(&g, U + 8).unwrap(), (1 << 36) - 1);
            let mut w = attr(A, sys::VFIO_ATTR_WINDOWS, 0, 0);
            p.get_attr(&mut w).unwrap();
            assert_eq!(word(&w, U).unwrap(), 256);
            assert_eq!(p.bank_count(), 3);
            // Below the minimum argsz: EINVAL in both modes.
            assert_eq!(p.get_attr(&mut attr(A - 1, 0, 0, 0)), Err(Errno::EINVAL));
            assert_eq!(p.set_attr(&attr(A - 1, 0, 0, 0xfff)), Err(Errno::EINVAL));
            assert_eq!(p.map_msi_bank(&bank(B - 1, RW, 0, 0)), Err(Errno::EINVAL));
            let mut u = unbank(0);
            u[0..4].copy_from_slice(&15u32.to_ne_bytes());
            assert_eq!(p.unmap_msi_bank(&u), Err(Errno::EINVAL));
            assert_eq!(
                p.map(&dma(31, RW, 0, 0x1000), |_, _| true),
                Err(Errno::EINVAL)
            );
            let mut ud = undma(0, 0, 0x1000);
            ud[0..4].copy_from_slice(&23u32.to_ne_bytes());
            assert_eq!(p.unmap(&mut ud), Err(Errno::EINVAL));
        }
    }

    #[test]
    fn get_attr_of_an_unknown_attribute() {
        let p = Pamu::new(PamuMode::Strict, 1);
        assert_eq!(p.get_attr(&mut attr(A, 9, 5, 6)), Err(Errno::EINVAL));
        let p = Pamu::new(PamuMode::Sdk, 1);
        let mut a = attr(A, 9, 5, 6);
        let before = a.clone();
        assert_eq!(p.get_attr(&mut a), Ok(()));
        assert_eq!(a, before, "struct unchanged");
    }

    #[test]
    fn geometry_rules() {
        for mode in MODES {
            let mut p = Pamu::new(mode, 1);
            for (start, end) in [(0, 0x2fff), (0, 0x7ff), (0x1000, 0x2fff), (5, 4)] {
                swallowed(mode, p.set_attr(&geometry(start, end)), Errno::EINVAL);
                assert!(!p.geometry_set);
            }
            p.set_attr(&geometry(0x10_0000, 0x1f_ffff)).unwrap();
            assert!(p.geometry_set && p.start == 0x10_0000);
        }
    }

    #[test]
    fn windows_and_stash_rules() {
        for mode in MODES {
            let mut p = Pamu::new(mode, 1);
            let stash = attr(A, sys::VFIO_ATTR_PAMU_STASH, 0, 2);
            swallowed(mode, p.set_attr(&windows(4)), Errno::EINVAL); // before geometry
            assert!(!p.windows_set);
            p.set_attr(&geometry(0, 0xf_ffff)).unwrap();
            swallowed(mode, p.set_attr(&stash), Errno::EINVAL); // before windows
            assert!(p.stash.is_none());
            for bad in [0, 3, 512] {
                swallowed(mode, p.set_attr(&windows(bad)), Errno::EINVAL);
                assert!(!p.windows_set);
            }
            p.set_attr(&windows(16)).unwrap();
            p.set_attr(&stash).unwrap();
            assert_eq!(p.stash, Some((0, 2)));
            // EBUSY while enabled.
            p.map(&dma(32, RW, 0, 0x1_0000), |_, _| true).unwrap();
            swallowed(mode, p.set_attr(&windows(8)), Errno::EBUSY);
            swallowed(mode, p.set_attr(&geometry(0, 0xfff)), Errno::EBUSY);
            assert_eq!((p.windows, p.end), (16, 0xf_ffff));
        }
    }

    #[test]
    fn msi_bank_rules() {
        for mode in MODES {
            let mut p = configured(mode);
            swallowed(mode, p.map_msi_bank(&bank(B, 0, 0, 0)), Errno::EINVAL);
            swallowed(mode, p.map_msi_bank(&bank(B, RW, 2, 0)), Errno::ENODEV);
            assert!(!p.doorbell_mapped(0));
            p.map_msi_bank(&bank(B, sys::VFIO_DMA_MAP_FLAG_WRITE, 0, 0xf_0123))
                .unwrap();
            assert!(p.doorbell_mapped(0));
            swallowed(
                mode,
                p.map_msi_bank(&bank(B, RW, 1, 0xf_0000)),
                Errno::EBUSY,
            );
            // Unmap names the exact iova.
            swallowed(mode, p.unmap_msi_bank(&unbank(0xf_0000)), Errno::EINVAL);
            assert!(p.doorbell_mapped(0));
            p.unmap_msi_bank(&unbank(0xf_0123)).unwrap();
            assert!(!p.doorbell_mapped(0));
        }
    }

    #[test]
    fn dma_rules() {
        for mode in MODES {
            let mut p = configured(mode);
            let ok = |_, _| true;
            assert_eq!(p.map(&dma(32, 0, 0, 0x1_0000), ok), Err(Errno::EINVAL));
            assert_eq!(
                p.map(&dma(32, RW, 0x1000, 0x1_0000), ok),
                Err(Errno::EINVAL)
            );
            assert_eq!(
                p.map(&dma(32, RW, 0x10_0000, 0x1_0000), ok),
                Err(Errno::EINVAL)
            );
            assert_eq!(
                p.map(&dma(32, RW, 0, 0x1_0000), |_, _| false),
                Err(Errno::EFAULT)
            );
            // Smaller than a window; a remainder past whole windows.
            let small = p.map(&dma(32, RW, 0, 0x8000), ok);
            let rest = p.map(&dma(32, RW, 0x2_0000, 0x1_8000), ok);
            match mode {
                PamuMode::Strict => {
                    assert_eq!(small, Err(Errno::EINVAL));
                    assert_eq!(rest, Err(Errno::EINVAL));
                    assert!(p.dma.is_empty() && !p.enabled);
                    p.map(&dma(32, RW, 0x2_0000, 0x1_0000), ok).unwrap();
                }
                PamuMode::Sdk => {
                    assert_eq!(small, Ok(()));
                    assert_eq!(rest, Ok(()));
                    assert_eq!(p.dma.len(), 1, "the small one mapped nothing");
                    assert_eq!(p.dma[&0x2_0000].size, 0x1_0000, "remainder ignored");
                }
            }
            assert!(p.enabled);
            assert_eq!(
                p.map(&dma(32, RW, 0x2_0000, 0x1_0000), ok),
                Err(Errno::EBUSY)
            );
            p.map_msi_bank(&bank(B, RW, 0, 0x3_0000)).unwrap();
            assert_eq!(
                p.map(&dma(32, RW, 0x3_0000, 0x1_0000), ok),
                Err(Errno::EBUSY)
            );
            assert!(p.translate(0x2_0010).is_some());
            assert_eq!(
                p.unmap(&mut undma(1, 0x2_0000, 0x1_0000)),
                Err(Errno::EINVAL)
            );
            let mut u = undma(0, 0x2_0000, 0x1_0000);
            p.unmap(&mut u).unwrap();
            assert_eq!(dword(&u, 16).unwrap(), 0x1_0000);
            assert!(!p.enabled, "the last unmap disables the domain");
            assert!(p.translate(0x2_0010).is_none());
        }
    }
}
