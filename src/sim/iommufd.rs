//! iommufd of the simulated kernel (`drivers/iommu/iommufd`, Linux 6.12,
//! on an Intel IOMMU as QEMU's `intel-iommu` models it): one context per
//! open `/dev/iommu`, holding IOASes, paging HWPTs and bound devices as
//! numbered objects, with the io_pagetable's rules for mapping, unmapping,
//! reserved ranges, the kernel's IOVA allocator and the alignment that
//! attached domains impose.
//!
//! The VFIO side (cdev files, bind, attach requests, device DMA) is in
//! `machine.rs`; this module answers the requests on the iommufd itself and
//! the attach/detach operations the VFIO side forwards.

use std::collections::BTreeMap;

use nix::errno::Errno;

use super::iommu::Mapping;
use crate::sys::{self, FromBytes, IntoBytes};

/// The CPU page size the model assumes (x86's).
pub(crate) const PAGE: u64 = 4096;
/// `ULONG_MAX` of the simulated kernel, an x86_64 one whatever the host
/// (a 32-bit process on it still sees 64-bit IOVAs).
const ULONG_MAX: u64 = u64::MAX;
/// The VT-d domain's aperture end: QEMU's default 39-bit address width.
const APERTURE_END: u64 = 0x7f_ffff_ffff;
/// The IOMMU_RESV_MSI region every device behind the Intel IOMMU has.
pub(crate) const X86_MSI_WINDOW: (u64, u64) = (0xfee0_0000, 0xfeef_ffff);
/// QEMU 7.2's `intel-iommu,intremap=on` capability registers, as Linux 6.12
/// reports them (recorded in the rig).
const VTD_CAP_REG: u64 = 0x00d2_008c_2226_0206;
const VTD_ECAP_REG: u64 = 0x00f0_0f4a;
/// `ecap_nest`: bit 26 of the extended capability register.
const VTD_ECAP_NEST: u64 = 1 << 26;

/// The user memory a request names (a pointer the crate passed), reached
/// the way the kernel's `copy_to_user` / `copy_from_user` would. The
/// machine implements it; `Err(EFAULT)` where the memory is not there.
pub(crate) trait UserMemory {
    /// Writes `data` at user address `addr`.
    fn write(&mut self, addr: u64, data: &[u8]) -> Result<(), Errno>;
    /// Reads `out.len()` bytes at user address `addr`.
    fn read(&mut self, addr: u64, out: &mut [u8]) -> Result<(), Errno>;
    /// Whether `addr..addr + len` can be pinned (is mapped).
    fn pinnable(&self, addr: u64, len: u64) -> bool;
}

/// Who put a reserved range into an IOAS.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Owner {
    /// A domain (HWPT) on the IOAS: outside its aperture.
    Domain(u32),
    /// An attached device (by iommufd device id): its reserved regions.
    Device(u32),
}

#[derive(Clone, Copy, Debug)]
struct Reserved {
    start: u64,
    last: u64,
    owner: Owner,
}

/// An IOAS (`struct iommufd_ioas` with its `io_pagetable`).
#[derive(Debug, Default)]
pub(crate) struct Ioas {
    /// Areas by IOVA.
    areas: BTreeMap<u64, Mapping>,
    /// Per area (by IOVA): whether its pages were taken writable (the
    /// `iopt_pages` of the first map, shared by its copies).
    pages_writable: BTreeMap<u64, bool>,
    /// The `allowed_itree` (inclusive ranges), empty: everything.
    allowed: Vec<(u64, u64)>,
    reserved: Vec<Reserved>,
    /// Domains (paging HWPTs) filled from this IOAS.
    domains: u32,
    disable_large_pages: bool,
}

#[derive(Debug)]
enum Obj {
    Ioas(Ioas),
    /// A paging HWPT on an IOAS; `auto`: made by an attach to the IOAS.
    Hwpt {
        ioas: u32,
        auto: bool,
        devices: u32,
    },
    /// A bound device (`struct iommufd_device`); `hwpt`: the HWPT it is
    /// attached to; `reserved`: its reserved regions.
    Device {
        hwpt: Option<u32>,
        reserved: Vec<(u64, u64)>,
    },
}

/// One iommufd context (an open `/dev/iommu`).
#[derive(Debug, Default)]
pub(crate) struct Ictx {
    /// Its fd is open (the context lives on while bound devices hold it).
    pub(crate) open: bool,
    objects: BTreeMap<u32, Obj>,
    /// `IOPT_PAGES_ACCOUNT_MM` (the rlimit charged per process).
    account_mm: bool,
}

/// `v >= ULONG_MAX`: the kernel's check that a `__u64` fits its
/// `unsigned long` arithmetic (on x86_64: `v == u64::MAX`).
#[allow(clippy::absurd_extreme_comparisons)]
fn ulong_overflow(v: u64) -> bool {
    v >= ULONG_MAX
}

fn overlaps(a: (u64, u64), b: (u64, u64)) -> bool {
    a.0 <= b.1 && b.0 <= a.1
}

/// `ALIGN(x, a) | offset`, wrapping as the kernel's `unsigned long` does.
fn align_up(x: u64, a: u64, offset: u64) -> u64 {
    (x.wrapping_add(a - 1) & !(a - 1)) | offset
}

/// `struct`'s fields from the argument bytes (the kernel copied them in).
fn read<T: FromBytes>(arg: &[u8]) -> Result<T, Errno> {
    T::read_from_prefix(arg)
        .map(|(v, _)| v)
        .map_err(|_| Errno::EFAULT)
}

/// Writes the struct back (`iommufd_ucmd_respond`: at most `size` bytes).
fn respond<T: IntoBytes>(arg: &mut [u8], value: &T) -> Result<(), Errno> {
    let bytes = value.as_bytes();
    let n = bytes.len().min(arg.len());
    arg[..n].copy_from_slice(&bytes[..n]);
    Ok(())
}

impl Ioas {
    fn alignment(&self) -> u64 {
        if self.domains > 0 || self.disable_large_pages {
            PAGE
        } else {
            1
        }
    }

    fn area_in(&self, start: u64, last: u64) -> Option<&Mapping> {
        self.areas
            .values()
            .find(|m| overlaps((m.iova, m.iova + (m.size - 1)), (start, last)))
    }

    fn reserved_in(&self, start: u64, last: u64) -> bool {
        self.reserved
            .iter()
            .any(|r| overlaps((r.start, r.last), (start, last)))
    }

    /// `iopt_reserve_iova`.
    fn reserve(&mut self, start: u64, last: u64, owner: Owner) -> Result<(), Errno> {
        let allowed = self.allowed.iter().any(|&a| overlaps(a, (start, last)));
        if self.area_in(start, last).is_some() || allowed {
            return Err(Errno::EADDRINUSE);
        }
        self.reserved.push(Reserved { start, last, owner });
        Ok(())
    }

    fn unreserve(&mut self, owner: Owner) {
        self.reserved.retain(|r| r.owner != owner);
    }

    /// The ranges (inclusive, sorted, merged) that reserved ranges and areas
    /// cover.
    fn used(&self) -> Vec<(u64, u64)> {
        let mut all: Vec<(u64, u64)> = self.reserved.iter().map(|r| (r.start, r.last)).collect();
        all.extend(self.areas.values().map(|m| (m.iova, m.iova + (m.size - 1))));
        merge(all)
    }

    /// `iopt_alloc_iova`: the kernel's choice of IOVA.
    fn alloc_iova(&self, uptr: u64, length: u64) -> Result<u64, Errno> {
        let page_offset = uptr % PAGE;
        if length == 0 || length >= ULONG_MAX / 2 {
            return Err(Errno::EOVERFLOW);
        }
        let pow = length.next_power_of_two();
        let alignment = if uptr == 0 {
            pow
        } else {
            pow.min(1u64 << uptr.trailing_zeros())
        };
        if alignment < self.alignment() {
            return Err(Errno::EINVAL);
        }
        let window = (PAGE, ULONG_MAX - PAGE);
        let spans: Vec<(u64, u64)> = if self.allowed.is_empty() {
            vec![window]
        } else {
            merge(self.allowed.clone())
                .into_iter()
                .filter(|&a| overlaps(a, window))
                .map(|(s, e)| (s.max(window.0), e.min(window.1)))
                .collect()
        };
        let fits = |start: u64, last: u64| -> Option<u64> {
            if last - start < length - 1 {
                return None;
            }
            let start = align_up(start, alignment, page_offset);
            (start <= last && last - start >= length - 1).then_some(start)
        };
        let used = self.used();
        for (s, e) in spans {
            let Some(s) = fits(s, e) else { continue };
            for (hs, he) in holes(&used, s, e) {
                if let Some(iova) = fits(hs, he) {
                    return Ok(iova);
                }
            }
        }
        Err(Errno::ENOSPC)
    }

    /// `iopt_check_iova`.
    fn check_iova(&self, iova: u64, length: u64) -> Result<(), Errno> {
        if iova & (self.alignment() - 1) != 0 {
            return Err(Errno::EINVAL);
        }
        let last = iova.checked_add(length - 1).ok_or(Errno::EOVERFLOW)?;
        if self.reserved_in(iova, last) {
            return Err(Errno::EINVAL);
        }
        if self.area_in(iova, last).is_some() {
            return Err(Errno::EEXIST);
        }
        Ok(())
    }

    /// `iopt_map_pages` for one area of process memory at `uptr`.
    fn map(
        &mut self,
        uptr: u64,
        length: u64,
        iova: Option<u64>,
        read: bool,
        write: bool,
        mem: &dyn UserMemory,
    ) -> Result<u64, Errno> {
        // One slice of fresh pages, writable as the map asks.
        self.map_pages(&[(uptr, length, write)], length, iova, (read, write), mem)
    }

    fn insert_area(&mut self, m: Mapping, pages_writable: bool) {
        self.areas.insert(m.iova, m);
        self.pages_writable.insert(m.iova, pages_writable);
    }

    /// `iopt_get_pages`: the slices of the areas that cover `iova` and
    /// `length` bytes after it without a hole: (vaddr, length, writable).
    fn get_pages(&self, iova: u64, length: u64) -> Result<Vec<(u64, u64, bool)>, Errno> {
        if length == 0 {
            return Err(Errno::EINVAL);
        }
        let last = iova.checked_add(length - 1).ok_or(Errno::EOVERFLOW)?;
        let mut out = Vec::new();
        let mut at = iova;
        loop {
            let m = self.translate(at).ok_or(Errno::ENOENT)?;
            let m_last = m.iova + (m.size - 1);
            let end = m_last.min(last);
            let writable = self.pages_writable.get(&m.iova).copied().unwrap_or(m.write);
            out.push((m.vaddr + (at - m.iova), end - at + 1, writable));
            if end == last {
                return Ok(out);
            }
            at = end + 1;
        }
    }

    /// `iopt_map_pages`: slices of process memory (vaddr, length, pages
    /// writable), one per area (`IOAS_MAP` maps one, `IOAS_COPY` the slices
    /// the source's areas hold).
    fn map_pages(
        &mut self,
        pages: &[(u64, u64, bool)],
        length: u64,
        iova: Option<u64>,
        (read, write): (bool, bool),
        mem: &dyn UserMemory,
    ) -> Result<u64, Errno> {
        if length & (self.alignment() - 1) != 0 || length == 0 {
            return Err(Errno::EINVAL);
        }
        let first = pages.first().map_or(0, |p| p.0);
        let start = match iova {
            None => self.alloc_iova(first, length)?,
            Some(iova) => {
                self.check_iova(iova, length)?;
                iova
            }
        };
        for &(vaddr, _, writable) in pages {
            if write && !writable {
                return Err(Errno::EPERM);
            }
            if (vaddr % PAGE) & (self.alignment() - 1) != 0 {
                return Err(Errno::EINVAL);
            }
        }
        // Pages are pinned only to fill domains; without one an area is a
        // lazy reference.
        if self.domains > 0
            && pages
                .iter()
                .any(|&(v, l, _)| !mem.pinnable(v & !(PAGE - 1), l))
        {
            return Err(Errno::EFAULT);
        }
        let mut at = start;
        for &(vaddr, len, writable) in pages {
            self.insert_area(
                Mapping {
                    iova: at,
                    size: len,
                    vaddr,
                    read,
                    write,
                },
                writable,
            );
            // The last slice may end at the top of the IOVA space (the
            // range was checked not to wrap): the next start is unused.
            at = at.wrapping_add(len);
        }
        Ok(start)
    }

    /// `iopt_unmap_iova_range`: whole areas inside `start..=last`, lowest
    /// first; the first one that sticks out stops it with `ENOENT`.
    fn unmap(&mut self, start: u64, last: u64) -> (u64, Result<(), Errno>) {
        let mut unmapped = 0u64;
        while let Some(m) = self.area_in(start, last).copied() {
            let m_last = m.iova + (m.size - 1);
            if m.iova < start || m_last > last {
                return (unmapped, Err(Errno::ENOENT));
            }
            self.areas.remove(&m.iova);
            self.pages_writable.remove(&m.iova);
            unmapped += m.size;
        }
        let rc = if unmapped > 0 {
            Ok(())
        } else {
            Err(Errno::ENOENT)
        };
        (unmapped, rc)
    }

    /// `iopt_check_iova_alignment` for page alignment: whether an area's
    /// IOVA, length or page offset is not page-aligned (`EADDRINUSE` when
    /// the alignment would rise to a page).
    fn misaligned_for_pages(&self) -> bool {
        self.areas
            .values()
            .any(|m| (m.iova | m.size | (m.vaddr % PAGE)) & (PAGE - 1) != 0)
    }

    /// `iopt_table_add_domain`: a VT-d domain (4 KiB pages, the 39-bit
    /// aperture) joins, and is filled (its pages pinned).
    fn add_domain(&mut self, hwpt: u32, mem: &dyn UserMemory) -> Result<(), Errno> {
        if self.alignment() < PAGE && self.misaligned_for_pages() {
            return Err(Errno::EADDRINUSE);
        }
        if let Err(e) = self.reserve(APERTURE_END + 1, ULONG_MAX, Owner::Domain(hwpt)) {
            self.unreserve(Owner::Domain(hwpt));
            return Err(e);
        }
        let unpinnable = self
            .areas
            .values()
            .any(|m| !mem.pinnable(m.vaddr & !(PAGE - 1), m.size));
        if unpinnable {
            self.unreserve(Owner::Domain(hwpt));
            return Err(Errno::EFAULT);
        }
        self.domains += 1;
        Ok(())
    }

    fn remove_domain(&mut self, hwpt: u32) {
        self.domains = self.domains.saturating_sub(1);
        self.unreserve(Owner::Domain(hwpt));
    }

    /// The area translating `iova`, if any.
    pub(crate) fn translate(&self, iova: u64) -> Option<Mapping> {
        self.areas
            .range(..=iova)
            .next_back()
            .map(|(_, m)| *m)
            .filter(|m| iova <= m.iova + (m.size - 1))
    }

    pub(crate) fn mappings(&self) -> impl Iterator<Item = &Mapping> {
        self.areas.values()
    }
}

/// Sorts and merges inclusive ranges.
fn merge(mut v: Vec<(u64, u64)>) -> Vec<(u64, u64)> {
    v.sort_unstable();
    let mut out: Vec<(u64, u64)> = Vec::with_capacity(v.len());
    for (s, e) in v {
        match out.last_mut() {
            Some(last) if s <= last.1.saturating_add(1) => last.1 = last.1.max(e),
            _ => out.push((s, e)),
        }
    }
    out
}

/// The holes of `used` (sorted, merged) inside `lo..=hi`.
fn holes(used: &[(u64, u64)], lo: u64, hi: u64) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    let mut at = Some(lo);
    for &(s, e) in used {
        let Some(a) = at else { break };
        if e < a {
            continue;
        }
        if s > hi {
            break;
        }
        if s > a {
            out.push((a, s - 1));
        }
        at = e.checked_add(1);
    }
    if let Some(a) = at
        && a <= hi
    {
        out.push((a, hi));
    }
    out
}

impl Ictx {
    pub(crate) fn new() -> Self {
        Ictx {
            open: true,
            ..Ictx::default()
        }
    }

    /// `xa_alloc` with `XA_FLAGS_ALLOC1`: the lowest free id from 1.
    fn next_id(&self) -> u32 {
        let mut id = 1;
        for &k in self.objects.keys() {
            if k != id {
                break;
            }
            id += 1;
        }
        id
    }

    fn ioas(&self, id: u32) -> Result<&Ioas, Errno> {
        match self.objects.get(&id) {
            Some(Obj::Ioas(i)) => Ok(i),
            _ => Err(Errno::ENOENT),
        }
    }

    fn ioas_mut(&mut self, id: u32) -> Result<&mut Ioas, Errno> {
        match self.objects.get_mut(&id) {
            Some(Obj::Ioas(i)) => Ok(i),
            _ => Err(Errno::ENOENT),
        }
    }

    /// Whether any device is still bound (they keep the context alive).
    pub(crate) fn has_devices(&self) -> bool {
        self.objects
            .values()
            .any(|o| matches!(o, Obj::Device { .. }))
    }

    /// Every area of every IOAS, in id then IOVA order.
    pub(crate) fn mappings(&self) -> impl Iterator<Item = &Mapping> {
        self.objects
            .values()
            .flat_map(|o| match o {
                Obj::Ioas(i) => Some(i.mappings()),
                _ => None,
            })
            .flatten()
    }

    /// The IOAS device `devid`'s DMA goes through, if it is attached.
    pub(crate) fn dma_ioas(&self, devid: u32) -> Option<&Ioas> {
        let Some(Obj::Device { hwpt: Some(h), .. }) = self.objects.get(&devid) else {
            return None;
        };
        let Some(Obj::Hwpt { ioas, .. }) = self.objects.get(h) else {
            return None;
        };
        self.ioas(*ioas).ok()
    }

    /// `iommufd_device_bind`: a new device object; its id.
    pub(crate) fn bind(&mut self, reserved: Vec<(u64, u64)>) -> u32 {
        let id = self.next_id();
        self.objects.insert(
            id,
            Obj::Device {
                hwpt: None,
                reserved,
            },
        );
        id
    }

    /// `iommufd_device_unbind` (the cdev closed): detached, then gone.
    pub(crate) fn unbind(&mut self, devid: u32) {
        self.detach(devid);
        self.objects.remove(&devid);
    }

    /// The device's reserved regions join the IOAS (`EADDRINUSE` over an
    /// area or an allowed range).
    fn enforce_device_resv(&mut self, devid: u32, ioas: u32) -> Result<(), Errno> {
        let resv = match self.objects.get(&devid) {
            Some(Obj::Device { reserved, .. }) => reserved.clone(),
            _ => return Err(Errno::ENOENT),
        };
        let io = self.ioas_mut(ioas)?;
        for (s, e) in resv {
            if let Err(err) = io.reserve(s, e, Owner::Device(devid)) {
                io.unreserve(Owner::Device(devid));
                return Err(err);
            }
        }
        Ok(())
    }

    fn hwpt_ioas(&self, hwpt: u32) -> Option<u32> {
        match self.objects.get(&hwpt) {
            Some(Obj::Hwpt { ioas, .. }) => Some(*ioas),
            _ => None,
        }
    }

    /// A new paging HWPT on `ioas`, its domain added (`hwpt_paging_alloc`).
    fn alloc_hwpt(&mut self, ioas: u32, auto: bool, mem: &dyn UserMemory) -> Result<u32, Errno> {
        let id = self.next_id();
        self.ioas_mut(ioas)?.add_domain(id, mem)?;
        self.objects.insert(
            id,
            Obj::Hwpt {
                ioas,
                auto,
                devices: 0,
            },
        );
        Ok(id)
    }

    /// Destroys a HWPT: its domain leaves its IOAS.
    fn drop_hwpt(&mut self, hwpt: u32) {
        if let Some(Obj::Hwpt { ioas, .. }) = self.objects.remove(&hwpt)
            && let Ok(io) = self.ioas_mut(ioas)
        {
            io.remove_domain(hwpt);
        }
    }

    fn set_device_hwpt(&mut self, devid: u32, to: Option<u32>) {
        if let Some(Obj::Device { hwpt, .. }) = self.objects.get_mut(&devid) {
            *hwpt = to;
        }
        if let Some(h) = to
            && let Some(Obj::Hwpt { devices, .. }) = self.objects.get_mut(&h)
        {
            *devices += 1;
        }
    }

    /// The device leaves `hwpt` (already unlinked from the device): its
    /// reserved regions leave the HWPT's IOAS unless `keep_resv`, and an
    /// automatic HWPT with no device left is destroyed.
    fn leave_hwpt(&mut self, devid: u32, hwpt: u32, keep_resv: bool) {
        let Some(Obj::Hwpt {
            ioas,
            auto,
            devices,
        }) = self.objects.get_mut(&hwpt)
        else {
            return;
        };
        *devices = devices.saturating_sub(1);
        let (ioas, gone) = (*ioas, *auto && *devices == 0);
        if !keep_resv && let Ok(io) = self.ioas_mut(ioas) {
            io.unreserve(Owner::Device(devid));
        }
        if gone {
            self.drop_hwpt(hwpt);
        }
    }

    /// `vfio_iommufd_physical_attach_ioas`: attach (or replace) device
    /// `devid` to object `pt_id`; the HWPT id it is attached to.
    pub(crate) fn attach(
        &mut self,
        devid: u32,
        pt_id: u32,
        mem: &dyn UserMemory,
    ) -> Result<u32, Errno> {
        let current = match self.objects.get(&devid) {
            Some(Obj::Device { hwpt, .. }) => *hwpt,
            _ => return Err(Errno::EINVAL),
        };
        enum Target {
            Ioas,
            Hwpt(u32),
        }
        let target = match self.objects.get(&pt_id) {
            None => return Err(Errno::ENOENT),
            Some(Obj::Ioas(_)) => Target::Ioas,
            Some(Obj::Hwpt { ioas, .. }) => Target::Hwpt(*ioas),
            Some(Obj::Device { .. }) => return Err(Errno::EINVAL),
        };
        let old_ioas = current.and_then(|h| self.hwpt_ioas(h));
        let (hwpt, ioas) = match target {
            Target::Hwpt(ioas) => (pt_id, ioas),
            Target::Ioas => {
                // An automatic HWPT of that IOAS, if there is one.
                let existing = self.objects.iter().find_map(|(&id, o)| match o {
                    Obj::Hwpt {
                        ioas, auto: true, ..
                    } if *ioas == pt_id => Some(id),
                    _ => None,
                });
                match existing {
                    Some(h) => (h, pt_id),
                    None => {
                        // A new one: on a first attach the device's
                        // reserved regions go in before the domain, on a
                        // replace after it.
                        let moving = old_ioas != Some(pt_id);
                        if current.is_none() {
                            self.enforce_device_resv(devid, pt_id)?;
                            match self.alloc_hwpt(pt_id, true, mem) {
                                Ok(h) => {
                                    self.set_device_hwpt(devid, Some(h));
                                    return Ok(h);
                                }
                                Err(e) => {
                                    if let Ok(io) = self.ioas_mut(pt_id) {
                                        io.unreserve(Owner::Device(devid));
                                    }
                                    return Err(e);
                                }
                            }
                        }
                        let h = self.alloc_hwpt(pt_id, true, mem)?;
                        if moving && let Err(e) = self.enforce_device_resv(devid, pt_id) {
                            self.drop_hwpt(h);
                            return Err(e);
                        }
                        self.set_device_hwpt(devid, Some(h));
                        if let Some(old) = current {
                            self.leave_hwpt(devid, old, !moving);
                        }
                        return Ok(h);
                    }
                }
            }
        };
        if current == Some(hwpt) {
            return Ok(hwpt);
        }
        let moving = old_ioas != Some(ioas);
        if moving {
            self.enforce_device_resv(devid, ioas)?;
        }
        self.set_device_hwpt(devid, Some(hwpt));
        if let Some(old) = current {
            self.leave_hwpt(devid, old, !moving);
        }
        Ok(hwpt)
    }

    /// `vfio_iommufd_physical_detach_ioas` (nothing if not attached).
    pub(crate) fn detach(&mut self, devid: u32) {
        let current = match self.objects.get(&devid) {
            Some(Obj::Device { hwpt, .. }) => *hwpt,
            _ => None,
        };
        if let Some(h) = current {
            if let Some(Obj::Device { hwpt, .. }) = self.objects.get_mut(&devid) {
                *hwpt = None;
            }
            self.leave_hwpt(devid, h, false);
        }
    }

    /// A request on the iommufd, by its C name.
    pub(crate) fn ioctl(
        &mut self,
        name: &str,
        arg: &mut [u8],
        mem: &mut dyn UserMemory,
    ) -> Result<(), Errno> {
        // iommufd_fops_ioctl: `size` first, at least the request's minimum.
        let size = read::<u32>(arg)? as usize;
        let min = match name {
            "IOMMU_DESTROY" => size_of::<sys::iommu_destroy>(),
            "IOMMU_IOAS_ALLOC" => size_of::<sys::iommu_ioas_alloc>(),
            "IOMMU_IOAS_IOVA_RANGES" => 16, // offsetofend(.., allowed_iovas)
            "IOMMU_IOAS_MAP" => size_of::<sys::iommu_ioas_map>(),
            "IOMMU_IOAS_UNMAP" => size_of::<sys::iommu_ioas_unmap>(),
            "IOMMU_OPTION" => size_of::<sys::iommu_option>(),
            "IOMMU_GET_HW_INFO" => 24, // offsetofend(.., __reserved)
            "IOMMU_HWPT_ALLOC" => 32,  // offsetofend(.., data_uptr)
            "IOMMU_IOAS_ALLOW_IOVAS" => size_of::<sys::iommu_ioas_allow_iovas>(),
            "IOMMU_IOAS_COPY" => size_of::<sys::iommu_ioas_copy>(),
            _ => return Err(Errno::ENOTTY),
        };
        if size < min {
            return Err(Errno::EINVAL);
        }
        match name {
            "IOMMU_DESTROY" => {
                let cmd: sys::iommu_destroy = read(arg)?;
                self.destroy(cmd.id)
            }
            "IOMMU_IOAS_ALLOC" => {
                let mut cmd: sys::iommu_ioas_alloc = read(arg)?;
                if cmd.flags != 0 {
                    return Err(Errno::EOPNOTSUPP);
                }
                let id = self.next_id();
                self.objects.insert(id, Obj::Ioas(Ioas::default()));
                cmd.out_ioas_id = id;
                respond(arg, &cmd)
            }
            "IOMMU_IOAS_IOVA_RANGES" => {
                let mut cmd: sys::iommu_ioas_iova_ranges = read(arg)?;
                if cmd.__reserved != 0 {
                    return Err(Errno::EOPNOTSUPP);
                }
                let ioas = self.ioas(cmd.ioas_id)?;
                let reserved = merge(ioas.reserved.iter().map(|r| (r.start, r.last)).collect());
                let free = holes(&reserved, 0, ULONG_MAX);
                let max = cmd.num_iovas as usize;
                for (i, &(start, last)) in free.iter().enumerate().take(max) {
                    let elm = sys::iommu_iova_range { start, last };
                    let at = (i as u64)
                        .checked_mul(size_of::<sys::iommu_iova_range>() as u64)
                        .and_then(|o| cmd.allowed_iovas.checked_add(o))
                        .ok_or(Errno::EFAULT)?;
                    mem.write(at, elm.as_bytes())?;
                }
                cmd.num_iovas = u32::try_from(free.len()).unwrap_or(u32::MAX);
                cmd.out_iova_alignment = ioas.alignment();
                respond(arg, &cmd)?;
                if free.len() > max {
                    return Err(Errno::EMSGSIZE);
                }
                Ok(())
            }
            "IOMMU_IOAS_MAP" => {
                let mut cmd: sys::iommu_ioas_map = read(arg)?;
                let (fixed, w, r) = (
                    sys::IOMMU_IOAS_MAP_FIXED_IOVA,
                    sys::IOMMU_IOAS_MAP_WRITEABLE,
                    sys::IOMMU_IOAS_MAP_READABLE,
                );
                if cmd.flags & !(fixed | w | r) != 0 || cmd.__reserved != 0 {
                    return Err(Errno::EOPNOTSUPP);
                }
                if ulong_overflow(cmd.iova) || ulong_overflow(cmd.length) {
                    return Err(Errno::EOVERFLOW);
                }
                if cmd.flags & (w | r) == 0 {
                    return Err(Errno::EINVAL);
                }
                let ioas = self.ioas_mut(cmd.ioas_id)?;
                // iopt_alloc_pages
                if cmd.length > ULONG_MAX - PAGE || cmd.length == 0 {
                    return Err(Errno::EINVAL);
                }
                if cmd.user_va.checked_add(cmd.length).is_none() {
                    return Err(Errno::EOVERFLOW);
                }
                let at = (cmd.flags & fixed != 0).then_some(cmd.iova);
                let iova = ioas.map(
                    cmd.user_va,
                    cmd.length,
                    at,
                    cmd.flags & r != 0,
                    cmd.flags & w != 0,
                    mem,
                )?;
                cmd.iova = iova;
                respond(arg, &cmd)
            }
            "IOMMU_IOAS_ALLOW_IOVAS" => {
                let cmd: sys::iommu_ioas_allow_iovas = read(arg)?;
                if cmd.__reserved != 0 {
                    return Err(Errno::EOPNOTSUPP);
                }
                self.ioas(cmd.ioas_id)?;
                // iommufd_ioas_load_iovas: one entry at a time.
                let mut loaded: Vec<(u64, u64)> = Vec::new();
                let elem = size_of::<sys::iommu_iova_range>() as u64;
                for i in 0..u64::from(cmd.num_iovas) {
                    let at = i
                        .checked_mul(elem)
                        .and_then(|o| cmd.allowed_iovas.checked_add(o))
                        .ok_or(Errno::EFAULT)?;
                    let mut raw = [0u8; size_of::<sys::iommu_iova_range>()];
                    mem.read(at, &mut raw)?;
                    let range: sys::iommu_iova_range = read(&raw)?;
                    if range.start >= range.last {
                        return Err(Errno::EINVAL);
                    }
                    if loaded
                        .iter()
                        .any(|&l| overlaps(l, (range.start, range.last)))
                    {
                        return Err(Errno::EINVAL);
                    }
                    loaded.push((range.start, range.last));
                }
                let ioas = self.ioas_mut(cmd.ioas_id)?;
                // iopt_set_allow_iova: all or nothing.
                if loaded.iter().any(|&(s, e)| ioas.reserved_in(s, e)) {
                    return Err(Errno::EADDRINUSE);
                }
                ioas.allowed = loaded;
                Ok(())
            }
            "IOMMU_IOAS_COPY" => {
                let mut cmd: sys::iommu_ioas_copy = read(arg)?;
                let (fixed, w, r) = (
                    sys::IOMMU_IOAS_MAP_FIXED_IOVA,
                    sys::IOMMU_IOAS_MAP_WRITEABLE,
                    sys::IOMMU_IOAS_MAP_READABLE,
                );
                if cmd.flags & !(fixed | w | r) != 0 {
                    return Err(Errno::EOPNOTSUPP);
                }
                if ulong_overflow(cmd.length)
                    || ulong_overflow(cmd.src_iova)
                    || ulong_overflow(cmd.dst_iova)
                {
                    return Err(Errno::EOVERFLOW);
                }
                if cmd.flags & (w | r) == 0 {
                    return Err(Errno::EINVAL);
                }
                let pages = self
                    .ioas(cmd.src_ioas_id)?
                    .get_pages(cmd.src_iova, cmd.length)?;
                let dst = self.ioas_mut(cmd.dst_ioas_id)?;
                let at = (cmd.flags & fixed != 0).then_some(cmd.dst_iova);
                let prot = (cmd.flags & r != 0, cmd.flags & w != 0);
                cmd.dst_iova = dst.map_pages(&pages, cmd.length, at, prot, mem)?;
                respond(arg, &cmd)
            }
            "IOMMU_IOAS_UNMAP" => {
                let mut cmd: sys::iommu_ioas_unmap = read(arg)?;
                let ioas = self.ioas_mut(cmd.ioas_id)?;
                let unmapped = if cmd.iova == 0 && cmd.length == u64::MAX {
                    match ioas.unmap(0, ULONG_MAX) {
                        (n, Ok(())) => n,
                        (_, Err(Errno::ENOENT)) => 0,
                        (_, Err(e)) => return Err(e),
                    }
                } else {
                    if ulong_overflow(cmd.iova) || ulong_overflow(cmd.length) {
                        return Err(Errno::EOVERFLOW);
                    }
                    if cmd.length == 0 {
                        return Err(Errno::EINVAL);
                    }
                    let last = cmd
                        .iova
                        .checked_add(cmd.length - 1)
                        .ok_or(Errno::EOVERFLOW)?;
                    let (n, rc) = ioas.unmap(cmd.iova, last);
                    rc?;
                    n
                };
                cmd.length = unmapped;
                respond(arg, &cmd)
            }
            "IOMMU_OPTION" => {
                let mut cmd: sys::iommu_option = read(arg)?;
                if cmd.__reserved != 0 {
                    return Err(Errno::EOPNOTSUPP);
                }
                let (get, set) = (
                    sys::IOMMU_OPTION_OP_GET as u16,
                    sys::IOMMU_OPTION_OP_SET as u16,
                );
                match cmd.option_id {
                    sys::IOMMU_OPTION_RLIMIT_MODE => {
                        if cmd.object_id != 0 {
                            return Err(Errno::EOPNOTSUPP);
                        }
                        if cmd.op == get {
                            cmd.val64 = u64::from(self.account_mm);
                        } else if cmd.op == set {
                            // The simulated process has CAP_SYS_RESOURCE.
                            if !self.objects.is_empty() {
                                return Err(Errno::EBUSY);
                            }
                            self.account_mm = match cmd.val64 {
                                0 => false,
                                1 => true,
                                _ => return Err(Errno::EINVAL),
                            };
                        } else {
                            return Err(Errno::EOPNOTSUPP);
                        }
                    }
                    sys::IOMMU_OPTION_HUGE_PAGES => {
                        let ioas = self.ioas_mut(cmd.object_id)?;
                        if cmd.op == get {
                            cmd.val64 = u64::from(!ioas.disable_large_pages);
                        } else if cmd.op == set {
                            match cmd.val64 {
                                0 if ioas.disable_large_pages => {}
                                0 => {
                                    if ioas.domains > 0 && !ioas.areas.is_empty() {
                                        return Err(Errno::EINVAL);
                                    }
                                    if ioas.misaligned_for_pages() {
                                        return Err(Errno::EADDRINUSE);
                                    }
                                    ioas.disable_large_pages = true;
                                }
                                1 => ioas.disable_large_pages = false,
                                _ => return Err(Errno::EINVAL),
                            }
                        } else {
                            return Err(Errno::EOPNOTSUPP);
                        }
                    }
                    _ => return Err(Errno::EOPNOTSUPP),
                }
                // Only val64 is copied back.
                let at = std::mem::offset_of!(sys::iommu_option, val64);
                arg.get_mut(at..at + 8)
                    .ok_or(Errno::EFAULT)?
                    .copy_from_slice(&cmd.val64.to_ne_bytes());
                Ok(())
            }
            "IOMMU_GET_HW_INFO" => {
                let mut cmd: crate::abi::HwInfo = read(arg)?;
                if cmd.flags != 0 || cmd.__reserved.iter().any(|&b| b != 0) {
                    return Err(Errno::EOPNOTSUPP);
                }
                if !matches!(self.objects.get(&cmd.dev_id), Some(Obj::Device { .. })) {
                    return Err(Errno::ENOENT);
                }
                let mut vtd = sys::iommu_hw_info_vtd::new_zeroed();
                // intel_iommu_hw_info reports the SPR17 erratum flag always.
                vtd.flags = sys::IOMMU_HW_INFO_VTD_ERRATA_772415_SPR17;
                vtd.cap_reg = VTD_CAP_REG;
                vtd.ecap_reg = VTD_ECAP_REG;
                let data = vtd.as_bytes();
                let want = cmd.data_len as usize;
                let copy = want.min(data.len());
                mem.write(cmd.data_uptr, &data[..copy])?;
                if copy < want {
                    let at = cmd
                        .data_uptr
                        .checked_add(copy as u64)
                        .ok_or(Errno::EFAULT)?;
                    // clear_user, a page at a time at most
                    let zeros = [0u8; 256];
                    let mut left = want - copy;
                    let mut pos = at;
                    while left > 0 {
                        let n = left.min(zeros.len());
                        mem.write(pos, &zeros[..n])?;
                        pos = pos.checked_add(n as u64).ok_or(Errno::EFAULT)?;
                        left -= n;
                    }
                }
                cmd.data_len = data.len() as u32;
                cmd.data_type = sys::IOMMU_HW_INFO_TYPE_INTEL_VTD;
                cmd.out_capabilities = 0;
                cmd.out_max_pasid_log2 = 0;
                respond(arg, &cmd)
            }
            "IOMMU_HWPT_ALLOC" => {
                let mut cmd: sys::iommu_hwpt_alloc = read(arg)?;
                let (nest, dirty) = (
                    sys::IOMMU_HWPT_ALLOC_NEST_PARENT,
                    sys::IOMMU_HWPT_ALLOC_DIRTY_TRACKING,
                );
                if cmd.flags & !(nest | dirty | sys::IOMMU_HWPT_FAULT_ID_VALID) != 0
                    || cmd.__reserved != 0
                {
                    return Err(Errno::EOPNOTSUPP);
                }
                let none = cmd.data_type == sys::IOMMU_HWPT_DATA_NONE;
                if (none && cmd.data_len != 0) || (!none && cmd.data_len == 0) {
                    return Err(Errno::EINVAL);
                }
                if !matches!(self.objects.get(&cmd.dev_id), Some(Obj::Device { .. })) {
                    return Err(Errno::ENOENT);
                }
                match self.objects.get(&cmd.pt_id) {
                    None => return Err(Errno::ENOENT),
                    Some(Obj::Ioas(_)) => {}
                    // Nested HWPTs need driver data the VT-d model lacks.
                    Some(Obj::Hwpt { .. }) => return Err(Errno::EOPNOTSUPP),
                    Some(Obj::Device { .. }) => return Err(Errno::EINVAL),
                }
                if cmd.flags & !(nest | dirty) != 0 {
                    return Err(Errno::EOPNOTSUPP);
                }
                // No dirty tracking (no SSADS) and no nesting on QEMU's
                // VT-d; no driver data for paging domains.
                if cmd.flags & dirty != 0 || !none {
                    return Err(Errno::EOPNOTSUPP);
                }
                if cmd.flags & nest != 0 && VTD_ECAP_REG & VTD_ECAP_NEST == 0 {
                    return Err(Errno::EOPNOTSUPP);
                }
                let id = self.alloc_hwpt(cmd.pt_id, false, mem)?;
                cmd.out_hwpt_id = id;
                respond(arg, &cmd)
            }
            _ => Err(Errno::ENOTTY),
        }
    }

    /// `IOMMU_DESTROY`: only an object nothing else holds.
    fn destroy(&mut self, id: u32) -> Result<(), Errno> {
        match self.objects.get(&id) {
            None => Err(Errno::ENOENT),
            // The VFIO driver holds a bound device until unbind.
            Some(Obj::Device { .. }) => Err(Errno::EBUSY),
            Some(Obj::Hwpt { devices, .. }) if *devices > 0 => Err(Errno::EBUSY),
            Some(Obj::Hwpt { .. }) => {
                self.drop_hwpt(id);
                Ok(())
            }
            Some(Obj::Ioas(_)) => {
                let held = self
                    .objects
                    .values()
                    .any(|o| matches!(o, Obj::Hwpt { ioas, .. } if *ioas == id));
                if held {
                    return Err(Errno::EBUSY);
                }
                self.objects.remove(&id);
                Ok(())
            }
        }
    }
}
