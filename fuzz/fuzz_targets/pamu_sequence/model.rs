//! Sequences of typed-API operations on the PAMU ("type2") path of a fresh
//! simulated QorIQ SoC (groups 1 and 2; edu devices `0000:01:00.0` and
//! `0000:01:00.1` in group 1, `0000:02:00.0` in group 2; 0 to 3 MSI banks,
//! PAMU id 2 or 7, or an x86 machine without a PAMU), with injected faults
//! between them. Every operation applies when the current typestate has it
//! and is skipped otherwise.
//!
//! Each input runs in both simulator modes (strict, SDK). A reference model
//! kept here predicts every operation's exact typed outcome (its error value,
//! with the ioctl and errno of an injected fault) and every request the crate
//! sends; it holds the kernel's side (per container: geometry, windows,
//! stash, DMA mappings, window slots, MSI banks; groups, device files, IRQ
//! state) and the crate's side (stage, aperture, windows, its window and bank
//! records, each device's MSI gate). After every step: the simulator's call
//! counts, DMA mappings (with their access) and enabled state equal the
//! model's; the crate's getters (`pamu_id`, `max_windows`, `aperture`,
//! `windows`, `window_size`, `windows_in_use`, and `geometry`,
//! `window_count`, `msi_bank_count` read from the kernel) equal it; every
//! live DMA guard's range is in `sim.mappings()` and every live MSI-bank
//! guard's bank is in the model's kernel windows (the simulator exposes no
//! MSI windows: they are observed through the kernel's MSI check when MSI is
//! enabled and through `EBUSY` on colliding maps); a failed transition hands
//! the container back (its groups as the model says) and it goes on being
//! used. The outcomes of both modes are equal up to the first operation on
//! which the SDK driver behaves differently (an error it swallows, a partial
//! `MAP_DMA`), and that operation is the same in both. At the end, with
//! everything dropped: no mapping, `pamu_enabled()` false, and the process
//! has the fds it had before the input. On the x86 machine no PAMU request
//! and no `SET_IOMMU` is ever sent.
//!
//! `PAMU_SEQUENCE_TRACE=1` prints each step; `PAMU_SEQUENCE_WRITE_SEEDS=DIR`
//! writes the seed inputs into DIR and exits (see fuzz/README.md).
//!
//! This file is the model and the driver; the cargo-fuzz target
//! (`fuzz_targets/pamu_sequence.rs`) and the replay of the committed inputs
//! on foreign architectures under qemu-user (`fuzz/replay/`, run by
//! `tests/cross/run`) both include it.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::fmt::Debug;
use std::iter::Peekable;
use std::ops::Range;
use std::os::fd::AsFd;
use std::path::PathBuf;
use std::rc::Rc;
use std::vec::IntoIter;

use arbitrary::{Arbitrary, Unstructured};
use nix::sys::eventfd::{EfdFlags, EventFd};
use typed_vfio::sim::{PamuMode, SimDevice, SimGroup, Simulator};
use typed_vfio::type2::{Fresh, HasGeometry, Ready, Type2Stage};
use typed_vfio::{
    Aperture, Attached, CONTAINER_PATH, Container, ContainerError, ContiguousBuffer, Device,
    DeviceError, DmaAccess, DmaError, Errno, Group, GroupError, GroupId, MsiBankMapping, PamuId,
    PamuMapping, PamuPlatform, StashCache, Type2, Type2Error, Unset, WindowHolder,
};

// ---- the input ---------------------------------------------------------------------

/// Operations per input, at most.
const MAX_OPS: usize = 64;
/// Live guards (DMA and MSI bank), at most.
const MAX_GUARDS: usize = 8;
/// Open device handles, at most.
const MAX_DEVICES: usize = 4;

#[derive(Arbitrary, Debug, Clone, PartialEq)]
pub(crate) struct Input {
    platform: Platform,
    /// MSI banks: this modulo 4.
    banks: u8,
    ops: Vec<Op>,
}

/// The machine: a QorIQ SoC whose PAMU answers to id 2 (SDK 3.8.13) or 7
/// (OpenIL), or an x86 machine (type1 only, no PAMU node).
#[derive(Arbitrary, Debug, Clone, Copy, PartialEq)]
enum Platform {
    Sdk,
    OpenIl,
    X86,
}

/// Where the `PamuPlatform` proof comes from.
#[derive(Arbitrary, Debug, Clone, Copy, PartialEq)]
enum Token {
    /// The simulated device tree (`Simulator::pamu_platform`).
    Sim,
    /// The documented opt-in (`PamuPlatform::assume_present`).
    AssumePresent,
    /// This host's device tree (`PamuPlatform::detect`).
    Host,
}

#[derive(Arbitrary, Debug, Clone, Copy, PartialEq)]
enum Access {
    Read,
    Write,
    ReadWrite,
}

#[derive(Arbitrary, Debug, Clone, Copy, PartialEq)]
enum Cache {
    L1,
    L2,
    L3,
}

#[derive(Arbitrary, Debug, Clone, Copy, PartialEq)]
enum Op {
    OpenContainer,
    OpenGroup(u8),
    DropGroup(u8),
    Attach(u8),
    AttachMore(u8),
    SetIommuType2(Token),
    SetGeometry {
        start: u8,
        size: u8,
    },
    SetWindows(u8),
    SetStash {
        cpu: u8,
        cache: Cache,
    },
    Geometry,
    WindowCount,
    BankCount,
    MapDma {
        buffer: u8,
        iova: u8,
        access: Access,
    },
    MapBank {
        index: u8,
        iova: u8,
    },
    DropGuard {
        index: u8,
        explicit: bool,
    },
    OpenDevice(u8),
    DropDevice(u8),
    SetMsi(u8),
    SetIntx(u8),
    DisableIrq {
        device: u8,
        msi: bool,
    },
    TriggerMsi(u8),
    Reset(u8),
    Release,
    DropContainer,
    Fault {
        request: u8,
        nth: u8,
        errno: u8,
    },
}

impl Op {
    /// Needs a `Ready` container by value or `&mut`: not while a guard
    /// borrows it.
    fn exclusive(self) -> bool {
        matches!(
            self,
            Op::SetGeometry { .. }
                | Op::SetWindows(_)
                | Op::SetStash { .. }
                | Op::AttachMore(_)
                | Op::Release
                | Op::DropContainer
        )
    }
}

fn pick<T: Copy>(list: &[T], i: u8) -> T {
    list[i as usize % list.len()]
}

/// Aperture starts and sizes, good and bad (not a power of two, below
/// 4 KiB, zero), up to the top of the IOVA space.
const STARTS: [u64; 8] = [
    0,
    0x100_0000,
    0x1000,
    0x10_0000,
    0x40_0000,
    1 << 63,
    u64::MAX - 0xfff,
    0x8000_0000,
];
const SIZES: [u64; 10] = [
    0x1000,
    0x4000,
    0x1_0000,
    0x10_0000,
    0x40_0000,
    1 << 36,
    0x3000,
    0,
    0x800,
    1 << 63,
];
/// Window counts, good and bad.
const WINDOWS: [u32; 14] = [1, 2, 4, 8, 16, 32, 64, 128, 256, 0, 3, 12, 512, 255];
/// IOVAs that do not depend on the aperture.
const ABSOLUTE: [u64; 8] = [
    0,
    0x1000,
    u64::MAX - 0xfff,
    u64::MAX,
    1 << 63,
    0x100_0000,
    0xfee0_0000,
    0x10_0000,
];

/// Simulated contiguous buffers (length, contiguity): whole windows of
/// several sizes, a fragmented one, a partial one.
const BUFFERS: [(usize, u64); 8] = [
    (0x1000, 0x1000),
    (0x2000, 0x1000),
    (0x1_0000, 0x1_0000),
    (0x2_0000, 0x1_0000),
    (0x1_0000, 0x4000),
    (0x4_0000, 0x4_0000),
    (0x3000, 0x1000),
    (0x10_0000, 0x10_0000),
];

const GROUP_NUMBERS: [u32; 3] = [1, 2, 3];
const DEVICE_NAMES: [&str; 4] = [
    "0000:01:00.0",
    "0000:01:00.1",
    "0000:02:00.0",
    "0000:03:00.0",
];
/// The group (index into `GROUP_NUMBERS`) of each simulated device.
const DEVICE_GROUP: [usize; 3] = [0, 0, 1];

const OPEN: &str = "open";
const API_VERSION: &str = "VFIO_GET_API_VERSION";
const CHECK_EXTENSION: &str = "VFIO_CHECK_EXTENSION";
const SET_IOMMU: &str = "VFIO_SET_IOMMU";
const MAP_DMA: &str = "VFIO_IOMMU_MAP_DMA";
const UNMAP_DMA: &str = "VFIO_IOMMU_UNMAP_DMA";
const GET_ATTR: &str = "VFIO_IOMMU_PAMU_GET_ATTR";
const SET_ATTR: &str = "VFIO_IOMMU_PAMU_SET_ATTR";
const BANK_COUNT: &str = "VFIO_IOMMU_PAMU_GET_MSI_BANK_COUNT";
const MAP_BANK: &str = "VFIO_IOMMU_PAMU_MAP_MSI_BANK";
const UNMAP_BANK: &str = "VFIO_IOMMU_PAMU_UNMAP_MSI_BANK";
const GET_STATUS: &str = "VFIO_GROUP_GET_STATUS";
const SET_CONTAINER: &str = "VFIO_GROUP_SET_CONTAINER";
const UNSET_CONTAINER: &str = "VFIO_GROUP_UNSET_CONTAINER";
const GET_DEVICE_FD: &str = "VFIO_GROUP_GET_DEVICE_FD";
const DEVICE_INFO: &str = "VFIO_DEVICE_GET_INFO";
const SET_IRQS: &str = "VFIO_DEVICE_SET_IRQS";
const RESET: &str = "VFIO_DEVICE_RESET";

/// Requests faults may be injected on (names the simulator knows).
const REQUESTS: [&str; 18] = [
    SET_ATTR,
    GET_ATTR,
    BANK_COUNT,
    MAP_BANK,
    UNMAP_BANK,
    MAP_DMA,
    UNMAP_DMA,
    SET_IRQS,
    SET_IOMMU,
    CHECK_EXTENSION,
    OPEN,
    API_VERSION,
    GET_STATUS,
    SET_CONTAINER,
    UNSET_CONTAINER,
    GET_DEVICE_FD,
    DEVICE_INFO,
    RESET,
];
const PAMU_REQUESTS: [&str; 5] = [SET_ATTR, GET_ATTR, BANK_COUNT, MAP_BANK, UNMAP_BANK];

const ERRNOS: [Errno; 8] = [
    Errno::EIO,
    Errno::ENOMEM,
    Errno::EBUSY,
    Errno::EINVAL,
    Errno::EFAULT,
    Errno::ENODEV,
    Errno::EPERM,
    Errno::ENOSPC,
];

/// `VFIO_ATTR_*` and the crate's names for them.
const GEOMETRY: u32 = 0;
const WINDOWS_ATTR: u32 = 1;
const STASH: u32 = 2;
const ATTR_NAMES: [&str; 3] = ["GEOMETRY", "WINDOWS", "PAMU_STASH"];

const INTX: u32 = 0;
const MSI: u32 = 1;

// ---- the model: injected faults ------------------------------------------------------

/// Calls per request and the pending injected faults, counted as the
/// simulator counts them (every pending fault of a request counts every call
/// of it; a call fires at most one, the earliest injected, and the others due
/// then stay due for the next call).
#[derive(Default)]
struct Calls {
    counts: BTreeMap<&'static str, u64>,
    pending: Vec<(&'static str, u64, Errno)>,
}

impl Calls {
    fn call(&mut self, name: &'static str) -> Option<Errno> {
        *self.counts.entry(name).or_insert(0) += 1;
        let mut fired = None;
        self.pending.retain_mut(|(n, countdown, errno)| {
            if *n != name {
                return true;
            }
            *countdown = countdown.saturating_sub(1);
            if *countdown == 0 && fired.is_none() {
                fired = Some(*errno);
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

    fn pending_on(&self, name: &str) -> bool {
        self.pending.iter().any(|p| p.0 == name)
    }
}

// ---- the model: the kernel's PAMU driver (shared/type2.md) ---------------------------

const HW_WINDOWS: u32 = 256;
const DEFAULT_END: u64 = (1 << 36) - 1;

/// What a kernel window holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Slot {
    Dma(u64),
    Bank { index: u32, iova: u64 },
}

/// One PAMU container's kernel state.
#[derive(Debug)]
struct KPamu {
    start: u64,
    end: u64,
    geometry_set: bool,
    windows: u32,
    windows_set: bool,
    stash: Option<(u32, u32)>,
    /// iova → (size, device reads, device writes).
    dma: BTreeMap<u64, (u64, bool, bool)>,
    /// window → what holds it.
    slots: BTreeMap<u64, Slot>,
}

impl KPamu {
    fn new() -> KPamu {
        KPamu {
            start: 0,
            end: DEFAULT_END,
            geometry_set: false,
            windows: HW_WINDOWS,
            windows_set: false,
            stash: None,
            dma: BTreeMap::new(),
            slots: BTreeMap::new(),
        }
    }

    /// The domain is enabled from the first DMA mapping to the last unmap.
    fn enabled(&self) -> bool {
        !self.dma.is_empty()
    }

    fn window_size(&self) -> u64 {
        let size = u128::from(self.end) - u128::from(self.start) + 1;
        (size / u128::from(self.windows.max(1))) as u64
    }

    fn window_of(&self, iova: u64) -> Option<u64> {
        (self.start..=self.end)
            .contains(&iova)
            .then(|| (iova - self.start) / self.window_size())
    }

    fn set_geometry(&mut self, start: u64, end: u64) -> Result<(), Errno> {
        if self.enabled() {
            return Err(Errno::EBUSY);
        }
        if end < start {
            return Err(Errno::EINVAL);
        }
        let size = u128::from(end) - u128::from(start) + 1;
        if !size.is_power_of_two() || size < 4096 || u128::from(start) % size != 0 {
            return Err(Errno::EINVAL);
        }
        self.start = start;
        self.end = end;
        self.geometry_set = true;
        self.windows = HW_WINDOWS;
        self.windows_set = false;
        self.slots.clear();
        Ok(())
    }

    fn set_windows(&mut self, n: u32) -> Result<(), Errno> {
        if !self.geometry_set {
            return Err(Errno::EINVAL);
        }
        if self.enabled() {
            return Err(Errno::EBUSY);
        }
        if !n.is_power_of_two() || n > HW_WINDOWS {
            return Err(Errno::EINVAL);
        }
        self.windows = n;
        self.windows_set = true;
        self.slots.clear();
        Ok(())
    }

    fn set_stash(&mut self, cpu: u32, cache: u32) -> Result<(), Errno> {
        if !self.windows_set || !(1..=3).contains(&cache) {
            return Err(Errno::EINVAL);
        }
        self.stash = Some((cpu, cache));
        Ok(())
    }

    fn get(&self, attribute: u32) -> Result<(u64, u64), Errno> {
        match attribute {
            GEOMETRY => Ok((self.start, self.end)),
            WINDOWS_ATTR => Ok((u64::from(self.windows), 0)),
            _ => self
                .stash
                .map(|(cpu, cache)| (u64::from(cpu), u64::from(cache)))
                .ok_or(Errno::EINVAL),
        }
    }

    fn map_bank(&mut self, banks: u32, index: u32, iova: u64) -> Result<(), Errno> {
        if index >= banks {
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
            .any(|s| matches!(s, Slot::Bank { index: i, .. } if *i == index))
        {
            return Err(Errno::EEXIST);
        }
        self.slots.insert(w, Slot::Bank { index, iova });
        Ok(())
    }

    fn unmap_bank(&mut self, iova: u64) -> Result<(), Errno> {
        let hit = self
            .slots
            .iter()
            .find(|(_, s)| matches!(s, Slot::Bank { iova: i, .. } if *i == iova))
            .map(|(w, _)| *w)
            .ok_or(Errno::EINVAL)?;
        self.slots.remove(&hit);
        Ok(())
    }

    /// `MAP_DMA`: the size mapped (`None`: nothing, SDK mode), and whether
    /// the answer depended on the mode.
    fn map_dma(
        &mut self,
        mode: PamuMode,
        iova: u64,
        size: u64,
        (reads, writes): (bool, bool),
    ) -> (Result<Option<u64>, Errno>, bool) {
        let sdk = mode == PamuMode::Sdk;
        if !self.windows_set {
            return (Err(Errno::EINVAL), false);
        }
        let ws = self.window_size();
        let Some(first) = self.window_of(iova) else {
            return (Err(Errno::EINVAL), false);
        };
        if !(iova - self.start).is_multiple_of(ws) {
            return (Err(Errno::EINVAL), false);
        }
        let mut quirk = false;
        let mut count = size / ws;
        if count == 0 || !size.is_multiple_of(ws) {
            quirk = true;
            if !sdk {
                return (Err(Errno::EINVAL), true);
            }
            if count == 0 {
                return (Ok(None), true);
            }
        }
        if first + count > u64::from(self.windows) {
            quirk = true;
            if !sdk {
                return (Err(Errno::EINVAL), true);
            }
            count = u64::from(self.windows) - first;
        }
        if (first..first + count).any(|w| self.slots.contains_key(&w)) {
            return (Err(Errno::EBUSY), quirk);
        }
        for w in first..first + count {
            self.slots.insert(w, Slot::Dma(iova));
        }
        self.dma.insert(iova, (count * ws, reads, writes));
        (Ok(Some(count * ws)), quirk)
    }

    /// `UNMAP_DMA`: the mappings wholly inside the range.
    fn unmap_dma(&mut self, iova: u64, size: u64) {
        let last = u128::from(iova) + u128::from(size) - 1;
        let hits: Vec<u64> = self
            .dma
            .iter()
            .filter(|(a, (s, _, _))| **a >= iova && u128::from(**a) + u128::from(*s) - 1 <= last)
            .map(|(a, _)| *a)
            .collect();
        for a in hits {
            self.dma.remove(&a);
            self.slots.retain(|_, s| *s != Slot::Dma(a));
        }
    }
}

// ---- the model: containers, groups, devices in the kernel ------------------------------

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum Irq {
    #[default]
    None,
    Intx,
    Msi,
}

#[derive(Debug)]
struct KCont {
    fd_open: bool,
    groups: Vec<usize>,
    pamu: Option<KPamu>,
}

#[derive(Debug, Default)]
struct KGroup {
    opened: bool,
    closing: bool,
    attached: Option<usize>,
    device_files: usize,
}

#[derive(Debug, Default)]
struct KDev {
    files: usize,
    irq: Irq,
}

#[derive(Debug, Default)]
struct Kern {
    conts: Vec<Option<KCont>>,
    groups: [KGroup; 2],
    devs: [KDev; 3],
}

impl Kern {
    fn cont(&mut self, c: usize) -> &mut KCont {
        self.conts[c].as_mut().expect("a live kernel container")
    }

    fn settle_container(&mut self, c: usize) {
        if self.conts[c]
            .as_ref()
            .is_some_and(|k| !k.fd_open && k.groups.is_empty())
        {
            self.conts[c] = None;
        }
    }

    /// The last group out drops the IOMMU driver with every mapping.
    fn detach(&mut self, g: usize) {
        if let Some(c) = self.groups[g].attached.take() {
            let k = self.cont(c);
            k.groups.retain(|&x| x != g);
            if k.groups.is_empty() {
                k.pamu = None;
            }
            self.settle_container(c);
        }
    }

    fn settle_group(&mut self, g: usize) {
        let group = &self.groups[g];
        if group.closing && group.device_files == 0 {
            self.detach(g);
            self.groups[g].opened = false;
            self.groups[g].closing = false;
        }
    }

    fn close_group(&mut self, g: usize) {
        self.groups[g].closing = true;
        self.settle_group(g);
    }

    fn close_container(&mut self, c: usize) {
        self.cont(c).fd_open = false;
        self.settle_container(c);
    }

    fn open_device(&mut self, d: usize) {
        let dev = &mut self.devs[d];
        if dev.files == 0 {
            dev.irq = Irq::None;
        }
        dev.files += 1;
        self.groups[DEVICE_GROUP[d]].device_files += 1;
    }

    fn close_device(&mut self, d: usize) {
        let dev = &mut self.devs[d];
        dev.files -= 1;
        if dev.files == 0 {
            dev.irq = Irq::None;
        }
        let g = DEVICE_GROUP[d];
        self.groups[g].device_files -= 1;
        self.settle_group(g);
    }

    /// The PAMU state of the container device `d`'s group is in.
    fn pamu_of_device(&self, d: usize) -> Option<&KPamu> {
        let c = self.groups[DEVICE_GROUP[d]].attached?;
        self.conts[c].as_ref()?.pamu.as_ref()
    }
}

// ---- the model: the crate's side ---------------------------------------------------------

/// The crate's window and bank records (one per PAMU container; devices
/// opened through it share it as their MSI gate).
#[derive(Debug, Default)]
struct Occ {
    /// `None`: the bank count is not known yet.
    banks: Option<Vec<Option<u64>>>,
    windows: Vec<(u64, WindowHolder)>,
}

#[derive(Debug)]
struct T2 {
    id: u32,
    max: u32,
    /// (start, size).
    aperture: Option<(u64, u64)>,
    windows: u32,
    occ: Rc<RefCell<Occ>>,
}

impl T2 {
    fn ap(&self) -> (u64, u64) {
        self.aperture.expect("Ready has an aperture")
    }
    fn ws(&self) -> u64 {
        self.ap().1 / u64::from(self.windows.max(1))
    }
    fn contains(&self, iova: u64, len: u64) -> bool {
        let (start, size) = self.ap();
        len > 0
            && iova >= start
            && u128::from(iova) + u128::from(len) <= u128::from(start) + u128::from(size)
    }
    fn window_of(&self, iova: u64) -> Option<u64> {
        self.contains(iova, 1)
            .then(|| (iova - self.ap().0) / self.ws())
    }
    fn outside(&self, iova: u64, size: u64) -> Type2Error {
        let (start, len) = self.ap();
        Type2Error::OutsideAperture {
            iova,
            size,
            start,
            end: start + (len - 1),
        }
    }
}

/// A live DMA guard, as the model sees it.
#[derive(Debug, Clone)]
struct DModel {
    iova: u64,
    size: u64,
    windows: Range<u64>,
    buffer: usize,
    /// What the kernel mapped at `iova` for it (`None`: nothing).
    kernel: Option<u64>,
}

/// A live MSI-bank guard, as the model sees it.
#[derive(Debug, Clone)]
struct BModel {
    index: u32,
    iova: u64,
    window: u64,
    /// The SDK kernel swallowed its failure: nothing is mapped.
    phantom: bool,
}

// ---- the harness ------------------------------------------------------------------------

/// The pool of simulated contiguous buffers, shared by every input (a
/// buffer whose unmap failed stays marked mapped and would leak its pages if
/// dropped), with the model's count of the crate's mapping counter.
struct Pooled {
    buffer: ContiguousBuffer,
    mapped: Cell<u64>,
}

thread_local! {
    static POOL: &'static [Pooled] = Box::leak(
        BUFFERS
            .iter()
            .map(|&(len, chunk)| Pooled {
                buffer: Simulator::new()
                    .contiguous_buffer(len, chunk)
                    .expect("a simulated contiguous buffer"),
                mapped: Cell::new(0),
            })
            .collect::<Vec<_>>()
            .into_boxed_slice(),
    );
}

fn pool() -> &'static [Pooled] {
    POOL.with(|p| *p)
}

struct HDev {
    device: Device,
    index: usize,
    gate: Rc<RefCell<Occ>>,
}

/// Everything but the container and the guards.
struct World {
    sim: Simulator,
    mode: PamuMode,
    platform: Platform,
    banks: u32,
    calls: Calls,
    k: Kern,
    /// The crate's container in the kernel, and its groups in attach order.
    cur: Option<usize>,
    cgroups: Vec<usize>,
    /// Pool buffers of guards whose unmap failed: the container keeps their
    /// pages until the last group leaves it.
    orphans: Vec<usize>,
    t2: Option<T2>,
    /// Free group handles and their index.
    groups: Vec<(Group, usize)>,
    devices: Vec<HDev>,
    /// The eventfd MSI vector 0 of each device was last routed to.
    msi_efd: [Option<EventFd>; 3],
    outs: Vec<String>,
    /// The first operation on which the SDK driver differs from strict.
    quirk_at: Option<usize>,
    trace: bool,
}

fn fmt<T: Debug, E: Debug>(r: &Result<T, E>) -> String {
    match r {
        Ok(v) => format!("ok {v:?}"),
        Err(e) => format!("err {e:?}"),
    }
}

fn access_of(a: Access) -> (DmaAccess, (bool, bool)) {
    match a {
        Access::Read => (DmaAccess::DeviceReads, (true, false)),
        Access::Write => (DmaAccess::DeviceWrites, (false, true)),
        Access::ReadWrite => (DmaAccess::ReadWrite, (true, true)),
    }
}

fn group_id(g: usize) -> GroupId {
    GroupId::new(GROUP_NUMBERS[g])
}

impl World {
    fn call(&mut self, name: &'static str) -> Option<Errno> {
        self.calls.call(name)
    }

    fn strict(&self) -> bool {
        self.mode == PamuMode::Strict
    }

    /// The SDK driver answers differently from here on.
    fn quirk(&mut self) {
        if self.quirk_at.is_none() {
            self.quirk_at = Some(self.outs.len());
        }
    }

    fn kpamu(&mut self) -> &mut KPamu {
        let c = self.cur.expect("a container");
        self.k
            .cont(c)
            .pamu
            .as_mut()
            .expect("a PAMU driver behind a type2 container")
    }

    fn t2(&self) -> &T2 {
        self.t2.as_ref().expect("a type2 container")
    }

    /// Records an outcome, checking it against the model's.
    fn outcome(&mut self, op: Op, got: String, want: String) {
        if self.trace {
            eprintln!("  {op:?} -> {got}");
        }
        assert_eq!(got, want, "{op:?}: the crate and the model disagree");
        self.outs.push(got);
    }

    fn skip(&mut self, op: Op) {
        if self.trace {
            eprintln!("  {op:?} skipped");
        }
        self.outs.push("skip".into());
    }

    // ---- predictions of the crate's calls ---------------------------------------------

    fn m_get_attr(&mut self, attribute: u32) -> Result<(u64, u64), Type2Error> {
        let r = match self.call(GET_ATTR) {
            Some(errno) => Err(errno),
            None => self.kpamu().get(attribute),
        };
        r.map_err(|errno| Type2Error::Ioctl {
            ioctl: GET_ATTR,
            what: "attribute",
            value: u64::from(attribute),
            errno,
        })
    }

    /// `SET_ATTR` and its read-back.
    fn m_set_attr(&mut self, attribute: u32, v: (u64, u64)) -> Result<(), Type2Error> {
        let name = ATTR_NAMES[attribute as usize];
        let r = match self.call(SET_ATTR) {
            Some(errno) => Err(errno),
            None => {
                let p = self.kpamu();
                match attribute {
                    GEOMETRY => p.set_geometry(v.0, v.1),
                    WINDOWS_ATTR => p.set_windows(v.0 as u32),
                    _ => p.set_stash(v.0 as u32, v.1 as u32),
                }
            }
        };
        if let Err(errno) = r {
            self.quirk();
            if self.strict() {
                return Err(Type2Error::Ioctl {
                    ioctl: SET_ATTR,
                    what: name,
                    value: v.0,
                    errno,
                });
            }
        }
        let read = self.m_get_attr(attribute)?;
        if read != v {
            return Err(Type2Error::NotApplied {
                attribute: name,
                wrote: v,
                read,
            });
        }
        Ok(())
    }

    /// `SET_ATTR` proved: when `v` is what `GET_ATTR` reports already, the
    /// crate sets and verifies `probe` first (or cannot verify at all).
    fn m_set_attr_proved(
        &mut self,
        attribute: u32,
        v: (u64, u64),
        probe: Option<(u64, u64)>,
    ) -> Result<(), Type2Error> {
        if self.m_get_attr(attribute).ok() == Some(v) {
            let probe = probe.filter(|p| *p != v).ok_or(Type2Error::Unverifiable {
                attribute: ATTR_NAMES[attribute as usize],
            })?;
            self.m_set_attr(attribute, probe)?;
        }
        self.m_set_attr(attribute, v)
    }

    /// The crate refuses to reconfigure while it records a held window.
    fn m_check_unmapped(&self) -> Result<(), Type2Error> {
        let occ = self.t2().occ.clone();
        let o = occ.borrow();
        match o.windows.iter().min_by_key(|(w, _)| *w) {
            Some(&(window, holder)) => Err(Type2Error::MappingsAlive { window, holder }),
            None => Ok(()),
        }
    }

    /// `GET_MSI_BANK_COUNT`, checked against the window maximum `max`.
    fn m_bank_count_max(&mut self, max: u32) -> Result<u32, Type2Error> {
        match self.call(BANK_COUNT) {
            Some(errno) => Err(Type2Error::Ioctl {
                ioctl: BANK_COUNT,
                what: "none",
                value: 0,
                errno,
            }),
            None if self.banks > max => Err(Type2Error::BankCount {
                count: self.banks,
                max,
            }),
            None => Ok(self.banks),
        }
    }

    fn m_bank_count(&mut self) -> Result<u32, Type2Error> {
        let max = self.t2().max;
        self.m_bank_count_max(max)
    }

    fn m_set_iommu(&mut self) -> Result<(), ContainerError> {
        let platform = self.platform;
        let offered =
            |id: u32| matches!((platform, id), (Platform::Sdk, 2) | (Platform::OpenIl, 7));
        let mut id = None;
        for candidate in [7, 2] {
            if let Some(errno) = self.call(CHECK_EXTENSION) {
                return Err(ContainerError::Ioctl {
                    ioctl: CHECK_EXTENSION,
                    errno,
                });
            }
            if offered(candidate) {
                id = Some(candidate);
                break;
            }
        }
        let Some(id) = id else {
            return Err(ContainerError::Unsupported {
                model: "VFIO_FSL_PAMU_IOMMU",
                id: 2,
            });
        };
        if let Some(errno) = self.call(SET_IOMMU) {
            return Err(ContainerError::Ioctl {
                ioctl: SET_IOMMU,
                errno,
            });
        }
        let c = self.cur.expect("a container");
        self.k.cont(c).pamu = Some(KPamu::new());
        // The window maximum (256 if the read fails) and the bank count
        // (unknown if the read fails: asked again when a bank is mapped).
        let max = match self.call(GET_ATTR) {
            Some(_) => HW_WINDOWS,
            None => self.kpamu().windows.min(HW_WINDOWS),
        };
        let banks = self
            .m_bank_count_max(max)
            .ok()
            .map(|n| vec![None; n as usize]);
        self.t2 = Some(T2 {
            id,
            max,
            aperture: None,
            windows: 0,
            occ: Rc::new(RefCell::new(Occ {
                banks,
                windows: Vec::new(),
            })),
        });
        Ok(())
    }

    fn m_set_geometry(&mut self, start: u64, size: u64) -> Result<(), Type2Error> {
        self.m_check_unmapped()?;
        let v = (start, start + (size - 1));
        let probe = if v == (0, 4095) { (0, 8191) } else { (0, 4095) };
        self.m_set_attr_proved(GEOMETRY, v, Some(probe))?;
        let t2 = self.t2.as_mut().expect("type2");
        t2.aperture = Some((start, size));
        t2.windows = 0;
        Ok(())
    }

    fn m_set_windows(&mut self, n: u32) -> Result<(), Type2Error> {
        let max = self.t2().max;
        if !n.is_power_of_two() || n > max {
            return Err(Type2Error::WindowCount { windows: n, max });
        }
        self.m_check_unmapped()?;
        let probe = match n {
            1 if max >= 2 => Some((2, 0)),
            1 => None,
            _ => Some((1, 0)),
        };
        self.m_set_attr_proved(WINDOWS_ATTR, (u64::from(n), 0), probe)?;
        let t2 = self.t2.as_mut().expect("type2");
        t2.windows = n;
        Ok(())
    }

    fn m_map_bank(&mut self, index: u32, iova: u64) -> Result<BModel, Type2Error> {
        let occ = self.t2().occ.clone();
        if occ.borrow().banks.is_none() {
            let n = self.m_bank_count()?;
            occ.borrow_mut().banks = Some(vec![None; n as usize]);
        }
        {
            let o = occ.borrow();
            let banks = o.banks.as_ref().expect("known");
            match banks.get(index as usize) {
                None => {
                    return Err(Type2Error::BankIndex {
                        index,
                        count: banks.len() as u32,
                    });
                }
                Some(Some(at)) => return Err(Type2Error::BankMapped { index, iova: *at }),
                Some(None) => {}
            }
        }
        let Some(window) = self.t2().window_of(iova) else {
            return Err(self.t2().outside(iova, 4096));
        };
        if let Some(&(w, holder)) = occ.borrow().windows.iter().find(|(w, _)| *w == window) {
            return Err(Type2Error::WindowBusy {
                iova,
                window: w,
                holder,
            });
        }
        let banks = self.banks;
        let r = match self.call(MAP_BANK) {
            Some(errno) => Err(errno),
            None => self.kpamu().map_bank(banks, index, iova),
        };
        let mut phantom = false;
        if let Err(errno) = r {
            self.quirk();
            if self.strict() {
                return Err(Type2Error::Ioctl {
                    ioctl: MAP_BANK,
                    what: "bank",
                    value: u64::from(index),
                    errno,
                });
            }
            phantom = true;
        }
        let mut o = occ.borrow_mut();
        o.banks.as_mut().expect("known")[index as usize] = Some(iova);
        o.windows.push((window, WindowHolder::MsiBank { index }));
        Ok(BModel {
            index,
            iova,
            window,
            phantom,
        })
    }

    fn m_unmap_bank(&mut self, g: &BModel) -> Result<(), Type2Error> {
        let r = match self.call(UNMAP_BANK) {
            Some(errno) => Err(errno),
            None => self.kpamu().unmap_bank(g.iova),
        };
        if let Err(errno) = r {
            self.quirk();
            if self.strict() {
                // A reported failure: the crate keeps the bank recorded (its
                // doorbell may still be mapped).
                return Err(Type2Error::Ioctl {
                    ioctl: UNMAP_BANK,
                    what: "iova",
                    value: g.iova,
                    errno,
                });
            }
        }
        // Reported done (the SDK kernel reports every unmap done): the crate
        // forgets the bank.
        let occ = self.t2().occ.clone();
        let mut o = occ.borrow_mut();
        if let Some(slot) = o.banks.as_mut().and_then(|b| b.get_mut(g.index as usize)) {
            *slot = None;
        }
        o.windows.retain(|(w, _)| *w != g.window);
        Ok(())
    }

    fn m_map_dma(
        &mut self,
        buffer: usize,
        iova: u64,
        access: Access,
    ) -> Result<DModel, Type2Error> {
        let p = &pool()[buffer];
        let (len, chunk) = (p.buffer.len() as u64, p.buffer.contiguity());
        let t2 = self.t2();
        let (start, _) = t2.ap();
        let ws = t2.ws();
        if !t2.contains(iova, len) {
            return Err(t2.outside(iova, len));
        }
        if !(iova - start).is_multiple_of(ws) {
            return Err(Type2Error::WindowUnaligned {
                iova,
                window_size: ws,
            });
        }
        if !len.is_multiple_of(ws) {
            return Err(Type2Error::PartialWindows {
                size: len,
                window_size: ws,
            });
        }
        if chunk < ws {
            return Err(Type2Error::NotContiguous {
                contiguity: chunk,
                window_size: ws,
            });
        }
        let first = (iova - start) / ws;
        let windows = first..first + len / ws;
        let occ = t2.occ.clone();
        if let Some(&(w, holder)) = occ
            .borrow()
            .windows
            .iter()
            .find(|(w, _)| windows.contains(w))
        {
            return Err(Type2Error::WindowBusy {
                iova,
                window: w,
                holder,
            });
        }
        let ioctl_err = |errno| {
            Type2Error::Dma(DmaError::Ioctl {
                ioctl: MAP_DMA,
                iova,
                size: len,
                errno,
            })
        };
        if let Some(errno) = self.call(MAP_DMA) {
            return Err(ioctl_err(errno));
        }
        let mode = self.mode;
        let (r, quirk) = self.kpamu().map_dma(mode, iova, len, access_of(access).1);
        if quirk {
            self.quirk();
        }
        let kernel = r.map_err(ioctl_err)?;
        occ.borrow_mut()
            .windows
            .extend(windows.clone().map(|w| (w, WindowHolder::Dma { iova })));
        p.mapped.set(p.mapped.get() + 1);
        Ok(DModel {
            iova,
            size: len,
            windows,
            buffer,
            kernel,
        })
    }

    fn m_unmap_dma(&mut self, g: &DModel) -> Result<(), Type2Error> {
        if let Some(errno) = self.call(UNMAP_DMA) {
            // The windows stay recorded, the buffer stays marked mapped and
            // the container keeps its pages (an orphan).
            self.orphans.push(g.buffer);
            return Err(Type2Error::Dma(DmaError::Ioctl {
                ioctl: UNMAP_DMA,
                iova: g.iova,
                size: g.size,
                errno,
            }));
        }
        self.kpamu().unmap_dma(g.iova, g.size);
        self.t2()
            .occ
            .borrow_mut()
            .windows
            .retain(|(w, _)| !g.windows.contains(w));
        let p = &pool()[g.buffer];
        p.mapped.set(p.mapped.get() - 1);
        Ok(())
    }

    /// `GET_STATUS` then `SET_CONTAINER` of a free group.
    fn m_attach(&mut self, g: usize) -> Result<(), GroupError> {
        let group = group_id(g);
        if let Some(errno) = self.call(GET_STATUS) {
            return Err(GroupError::Ioctl {
                ioctl: GET_STATUS,
                group,
                errno,
            });
        }
        assert!(self.k.groups[g].attached.is_none(), "a free group is free");
        if let Some(errno) = self.call(SET_CONTAINER) {
            return Err(GroupError::Ioctl {
                ioctl: SET_CONTAINER,
                group,
                errno,
            });
        }
        let c = self.cur.expect("a container");
        self.k.groups[g].attached = Some(c);
        self.k.cont(c).groups.push(g);
        self.cgroups.push(g);
        Ok(())
    }

    /// `release_groups`: `UNSET_CONTAINER` from the last group.
    fn m_release(&mut self) -> (Result<(), GroupError>, Vec<usize>) {
        let mut released = Vec::new();
        let mut result = Ok(());
        while let Some(g) = self.cgroups.pop() {
            let errno = match self.call(UNSET_CONTAINER) {
                Some(errno) => Some(errno),
                None if self.k.groups[g].device_files > 0 => Some(Errno::EBUSY),
                None => None,
            };
            if let Some(errno) = errno {
                self.cgroups.push(g);
                result = Err(GroupError::Ioctl {
                    ioctl: UNSET_CONTAINER,
                    group: group_id(g),
                    errno,
                });
                break;
            }
            self.k.detach(g);
            released.push(g);
        }
        released.reverse();
        if result.is_ok() {
            self.t2 = None;
            // The last group left: every mapping is gone; the orphans go
            // once the crate's unmap-all confirms it.
            self.last_group_left();
        }
        (result, released)
    }

    /// The container's `Drop`: `UNSET_CONTAINER` on each group (errors
    /// ignored), then its group fds and its fd close.
    fn m_drop_container(&mut self) {
        let Some(c) = self.cur.take() else { return };
        let groups = std::mem::take(&mut self.cgroups);
        let mut all_left = true;
        for &g in &groups {
            if self.call(UNSET_CONTAINER).is_none() && self.k.groups[g].device_files == 0 {
                self.k.detach(g);
            } else {
                all_left = false;
            }
        }
        if all_left {
            self.last_group_left();
            // Whatever that unmap answered, the container is gone.
            self.orphans.clear();
        } else {
            // The kernel may still map them: the pages stay leaked.
            self.orphans.clear();
        }
        for &g in &groups {
            self.k.close_group(g);
        }
        self.k.close_container(c);
        self.t2 = None;
    }

    /// Every group has left: with orphans pending, the crate unmaps
    /// everything (`UNMAP_DMA` with `FLAG_ALL`), which the driverless
    /// container refuses with `EINVAL`; that answer (or success) frees the
    /// orphans' pages, any other keeps them leaked.
    fn last_group_left(&mut self) {
        if self.orphans.is_empty() {
            return;
        }
        if matches!(self.call(UNMAP_DMA), None | Some(Errno::EINVAL)) {
            self.release_orphans();
        }
    }

    fn release_orphans(&mut self) {
        for b in std::mem::take(&mut self.orphans) {
            let p = &pool()[b];
            p.mapped.set(p.mapped.get() - 1);
        }
    }

    fn m_open_device(&mut self, name_index: usize) -> Result<usize, GroupError> {
        let name = DEVICE_NAMES[name_index];
        let mut last = None;
        for g in self.cgroups.clone() {
            let errno = match self.call(GET_DEVICE_FD) {
                Some(errno) => errno,
                None if name_index < 3 && DEVICE_GROUP[name_index] == g => {
                    self.k.open_device(name_index);
                    if let Some(errno) = self.call(DEVICE_INFO) {
                        self.k.close_device(name_index);
                        return Err(GroupError::Device(DeviceError::Ioctl {
                            ioctl: DEVICE_INFO,
                            errno,
                        }));
                    }
                    return Ok(name_index);
                }
                None => Errno::ENODEV,
            };
            last = Some(GroupError::NoDevice {
                name: name.into(),
                group: group_id(g),
                errno,
            });
        }
        Err(last.unwrap_or(GroupError::BadDeviceName { name: name.into() }))
    }

    /// What enabling (`enable`) or disabling IRQ `index` of kernel device
    /// `d` through `VFIO_DEVICE_SET_IRQS` gives, and its effect on the model.
    fn set_irqs_want(&mut self, d: usize, index: u32, enable: bool) -> Result<(), DeviceError> {
        self.set_irqs_errno(d, index, enable)
            .map_or(Ok(()), |errno| {
                Err(DeviceError::IndexedIoctl {
                    ioctl: SET_IRQS,
                    index,
                    errno,
                })
            })
    }

    fn set_irqs_errno(&mut self, d: usize, index: u32, enable: bool) -> Option<Errno> {
        if let Some(errno) = self.call(SET_IRQS) {
            return Some(errno);
        }
        let doorbell = match self.k.pamu_of_device(d) {
            Some(p) if self.banks > 0 => p
                .slots
                .values()
                .any(|s| matches!(s, Slot::Bank { index: i, .. } if *i == d as u32 % self.banks)),
            Some(_) => false,
            None => true,
        };
        let dev = &mut self.k.devs[d];
        match (index, enable, dev.irq) {
            (MSI, true, Irq::Intx) => Some(Errno::EINVAL),
            (MSI, true, Irq::None) if !doorbell => Some(Errno::EINVAL),
            (MSI, true, _) => {
                dev.irq = Irq::Msi;
                None
            }
            (INTX, true, Irq::Msi) => Some(Errno::EINVAL),
            (INTX, true, _) => {
                dev.irq = Irq::Intx;
                None
            }
            (MSI, false, Irq::Msi) | (INTX, false, Irq::Intx) => {
                dev.irq = Irq::None;
                None
            }
            _ => Some(Errno::EINVAL),
        }
    }

    // ---- operations that need no container, or any type2 one ----------------------------

    fn device(&self, i: u8) -> Option<usize> {
        (!self.devices.is_empty()).then(|| i as usize % self.devices.len())
    }

    /// Group, device and fault operations; false if `op` is not one.
    fn shared(&mut self, op: Op) -> bool {
        match op {
            Op::OpenGroup(i) => {
                let g = i as usize % GROUP_NUMBERS.len();
                let path = GroupId::new(GROUP_NUMBERS[g]).path();
                let want = match self.call(OPEN) {
                    Some(errno) => Err(errno),
                    None if g >= 2 => Err(Errno::ENOENT),
                    None if self.k.groups[g].opened => Err(Errno::EBUSY),
                    None => {
                        self.k.groups[g].opened = true;
                        self.k.groups[g].closing = false;
                        Ok(GroupId::new(GROUP_NUMBERS[g]))
                    }
                }
                .map_err(|errno| GroupError::Open { path, errno });
                let got = self.sim.open_group(GROUP_NUMBERS[g]);
                let gotf = fmt(&got.as_ref().map(|group| group.id()));
                self.outcome(op, gotf, fmt(&want));
                if let Ok(group) = got {
                    self.groups.push((group, g));
                }
            }
            Op::DropGroup(i) if !self.groups.is_empty() => {
                let (group, g) = self.groups.swap_remove(i as usize % self.groups.len());
                drop(group);
                self.k.close_group(g);
                self.outcome(op, "ok ()".into(), "ok ()".into());
            }
            Op::DropDevice(i) => {
                let Some(i) = self.device(i) else {
                    self.skip(op);
                    return true;
                };
                let dev = self.devices.swap_remove(i);
                drop(dev.device);
                self.k.close_device(dev.index);
                self.outcome(op, "ok ()".into(), "ok ()".into());
            }
            Op::SetMsi(i) => {
                let Some(i) = self.device(i) else {
                    self.skip(op);
                    return true;
                };
                let d = self.devices[i].index;
                let want = {
                    let gate = self.devices[i].gate.borrow();
                    let (mapped, count) = match &gate.banks {
                        Some(b) => (b.iter().flatten().count() as u32, b.len() as u32),
                        None => (0, 0),
                    };
                    if count == 0 || mapped < count {
                        Some(DeviceError::MsiBanksUnmapped {
                            index: MSI,
                            mapped,
                            count,
                        })
                    } else {
                        None
                    }
                };
                let want = match want {
                    Some(e) => Err(e),
                    None => self.set_irqs_want(d, MSI, true),
                };
                let efd = eventfd();
                let got = self.devices[i].device.set_irq_eventfd(MSI, 0, efd.as_fd());
                if got.is_ok() {
                    self.msi_efd[d] = Some(efd);
                }
                self.outcome(op, fmt(&got), fmt(&want));
            }
            Op::SetIntx(i) => {
                let Some(i) = self.device(i) else {
                    self.skip(op);
                    return true;
                };
                let d = self.devices[i].index;
                let want = self.set_irqs_want(d, INTX, true);
                let efd = eventfd();
                let got = self.devices[i].device.set_irq_eventfd(INTX, 0, efd.as_fd());
                // The kernel holds its own reference.
                drop(efd);
                self.outcome(op, fmt(&got), fmt(&want));
            }
            Op::DisableIrq { device, msi } => {
                let Some(i) = self.device(device) else {
                    self.skip(op);
                    return true;
                };
                let d = self.devices[i].index;
                let index = if msi { MSI } else { INTX };
                let want = self.set_irqs_want(d, index, false);
                let got = self.devices[i].device.disable_irq(index);
                self.outcome(op, fmt(&got), fmt(&want));
            }
            Op::TriggerMsi(i) => {
                let Some(i) = self.device(i) else {
                    self.skip(op);
                    return true;
                };
                let d = self.devices[i].index;
                let want = match self.call(SET_IRQS) {
                    Some(errno) => Err(errno),
                    None if self.k.devs[d].irq == Irq::Msi => Ok(()),
                    None => Err(Errno::EINVAL),
                }
                .map_err(|errno| DeviceError::IndexedIoctl {
                    ioctl: SET_IRQS,
                    index: MSI,
                    errno,
                });
                let got = self.devices[i].device.trigger_irq(MSI, 0, 1);
                if got.is_ok() {
                    let efd = self.msi_efd[d].as_ref().expect("MSI routed to an eventfd");
                    assert_eq!(efd.read().ok(), Some(1), "the MSI reached its eventfd");
                }
                self.outcome(op, fmt(&got), fmt(&want));
            }
            Op::Reset(i) => {
                let Some(i) = self.device(i) else {
                    self.skip(op);
                    return true;
                };
                let want = match self.call(RESET) {
                    Some(errno) => Err(DeviceError::Ioctl {
                        ioctl: RESET,
                        errno,
                    }),
                    None => Ok(()),
                };
                let got = self.devices[i].device.reset();
                self.outcome(op, fmt(&got), fmt(&want));
            }
            Op::Fault {
                request,
                nth,
                errno,
            } => {
                let name = pick(&REQUESTS, request);
                let nth = u64::from(nth % 4) + 1;
                let errno = pick(&ERRNOS, errno);
                self.sim
                    .inject_fault(name, nth, errno)
                    .expect("a request the simulator knows");
                self.calls.pending.push((name, nth, errno));
                self.outcome(op, "ok ()".into(), "ok ()".into());
            }
            _ => return false,
        }
        true
    }

    /// Operations on a type2 container at any stage; false if `op` is not one.
    fn t2_shared<G: Type2Stage>(&mut self, c: &Container<Type2<G>>, op: Op) -> bool {
        match op {
            Op::Geometry => {
                let want = self.m_get_attr(GEOMETRY);
                let got = c.geometry();
                self.outcome(op, fmt(&got), fmt(&want));
            }
            Op::WindowCount => {
                let want = self.m_get_attr(WINDOWS_ATTR).map(|v| v.0 as u32);
                let got = c.window_count();
                self.outcome(op, fmt(&got), fmt(&want));
            }
            Op::BankCount => {
                let want = self.m_bank_count();
                let got = c.msi_bank_count();
                self.outcome(op, fmt(&got), fmt(&want));
            }
            Op::OpenDevice(i) if self.devices.len() < MAX_DEVICES => {
                let name_index = i as usize % DEVICE_NAMES.len();
                let want = self.m_open_device(name_index);
                let got = c.open_device(DEVICE_NAMES[name_index]);
                self.outcome(op, fmt(&got.as_ref().map(|_| name_index)), fmt(&want));
                if let Ok(device) = got {
                    self.devices.push(HDev {
                        device,
                        index: name_index,
                        gate: self.t2().occ.clone(),
                    });
                }
            }
            op => return self.shared(op),
        }
        true
    }

    // ---- invariants -------------------------------------------------------------------

    /// The simulator against the kernel model: every request's call count,
    /// the DMA mappings, the enabled state.
    fn check_kernel(&mut self) {
        let want: Vec<(&str, u64)> = self.calls.counts.iter().map(|(n, c)| (*n, *c)).collect();
        assert_eq!(self.sim.call_counts(), want, "the requests sent");
        let mappings = self.sim.mappings();
        let mut live: Vec<(u64, u64, bool, bool)> = mappings
            .iter()
            .filter(|m| m.msi_bank.is_none())
            .map(|m| (m.iova, m.size, m.device_reads, m.device_writes))
            .collect();
        live.sort_unstable();
        // MSI-bank mappings: (bank, window start, window size).
        let mut banks: Vec<(u32, u64, u64)> = mappings
            .iter()
            .filter_map(|m| m.msi_bank.map(|b| (b, m.iova, m.size)))
            .collect();
        banks.sort_unstable();
        let mut want_banks: Vec<(u32, u64, u64)> = self
            .k
            .conts
            .iter()
            .flatten()
            .filter_map(|c| c.pamu.as_ref())
            .flat_map(|p| {
                let ws = p.window_size();
                p.slots.iter().filter_map(move |(w, s)| match s {
                    Slot::Bank { index, .. } => Some((*index, p.start + w * ws, ws)),
                    Slot::Dma(_) => None,
                })
            })
            .collect();
        want_banks.sort_unstable();
        assert_eq!(banks, want_banks, "the simulator's MSI-bank mappings");
        let mut want: Vec<(u64, u64, bool, bool)> = self
            .k
            .conts
            .iter()
            .flatten()
            .filter_map(|c| c.pamu.as_ref())
            .flat_map(|p| p.dma.iter().map(|(&i, &(s, r, w))| (i, s, r, w)))
            .collect();
        want.sort_unstable();
        assert_eq!(live, want, "the simulator's mappings");
        let enabled = self
            .k
            .conts
            .iter()
            .flatten()
            .filter_map(|c| c.pamu.as_ref())
            .any(KPamu::enabled);
        assert_eq!(self.sim.pamu_enabled(), enabled, "pamu_enabled");
        for p in pool() {
            assert_eq!(p.buffer.buffer().is_mapped(), p.mapped.get() > 0);
        }
        if self.platform == Platform::X86 {
            for name in PAMU_REQUESTS.iter().chain([&SET_IOMMU]) {
                assert_eq!(self.sim.calls(name), 0, "{name} sent on x86");
            }
        }
    }

    /// A type2 container's getters against the model (the kernel is read
    /// only when no fault is pending on the request).
    fn check_t2<G: Type2Stage>(&mut self, c: &Container<Type2<G>>) {
        let t2 = self.t2();
        assert_eq!(c.pamu_id(), t2.id);
        assert_eq!(c.max_windows(), t2.max);
        assert_eq!(c.groups().len(), self.cgroups.len());
        if !self.calls.pending_on(GET_ATTR) {
            let want = self.m_get_attr(GEOMETRY);
            assert_eq!(fmt(&c.geometry()), fmt(&want), "geometry");
            let want = self.m_get_attr(WINDOWS_ATTR).map(|v| v.0 as u32);
            assert_eq!(fmt(&c.window_count()), fmt(&want), "window count");
        }
        if !self.calls.pending_on(BANK_COUNT) {
            let want = self.m_bank_count();
            assert_eq!(fmt(&c.msi_bank_count()), fmt(&want), "bank count");
        }
    }

    fn check_ready(&mut self, c: &Container<Type2<Ready>>, guards: &[(Guard<'_>, GModel)]) {
        self.check_t2(c);
        let t2 = self.t2();
        let (start, size) = t2.ap();
        assert_eq!((c.aperture().start(), c.aperture().size()), (start, size));
        assert_eq!(c.windows(), t2.windows);
        assert_eq!(c.window_size(), t2.ws());
        let mut want = t2.occ.borrow().windows.clone();
        want.sort_by_key(|(w, _)| *w);
        assert_eq!(c.windows_in_use(), want, "windows in use");
        let live: Vec<(u64, u64)> = self
            .sim
            .mappings()
            .iter()
            .map(|m| (m.iova, m.size))
            .collect();
        let cur = self.cur.expect("a container");
        let k = self.k.conts[cur]
            .as_ref()
            .and_then(|c| c.pamu.as_ref())
            .expect("a PAMU container");
        for (guard, model) in guards {
            match (guard, model) {
                (Guard::Dma(g), GModel::Dma(m)) => {
                    assert_eq!(
                        (g.iova(), g.size(), g.windows()),
                        (m.iova, m.size, m.windows.clone())
                    );
                    if let Some(size) = m.kernel {
                        assert!(
                            live.contains(&(m.iova, size)),
                            "guard {m:x?} not in {live:x?}"
                        );
                        assert!(pool()[m.buffer].buffer.buffer().is_mapped());
                    }
                }
                (Guard::Bank(g), GModel::Bank(m)) => {
                    assert_eq!(
                        (g.index(), g.iova(), g.window()),
                        (m.index, m.iova, m.window)
                    );
                    let present = k.slots.values().any(|s| {
                        *s == Slot::Bank {
                            index: m.index,
                            iova: m.iova,
                        }
                    });
                    // A phantom (a map the SDK kernel swallowed) may find
                    // the bank left there by an unmap it swallowed.
                    assert!(present || m.phantom, "bank guard {m:x?} not mapped");
                }
                _ => unreachable!("guards and models are paired"),
            }
        }
    }
}

// ---- the container and its guards --------------------------------------------------------

enum Cont {
    None,
    Unset(Container<Unset>),
    Attached(Container<Attached>),
    Fresh(Container<Type2<Fresh>>),
    Geo(Container<Type2<HasGeometry>>),
    Ready(Container<Type2<Ready>>),
}

enum Guard<'a> {
    Dma(PamuMapping<'a>),
    Bank(MsiBankMapping<'a>),
}

#[derive(Debug)]
enum GModel {
    Dma(DModel),
    Bank(BModel),
}

/// Drops or unmaps one guard, checking the answer against the model's.
fn unmap_guard(w: &mut World, guard: Guard<'_>, model: GModel, explicit: bool) -> String {
    match (guard, model) {
        (Guard::Dma(g), GModel::Dma(m)) => {
            let want = w.m_unmap_dma(&m);
            if explicit {
                let got = g.unmap();
                assert_eq!(fmt(&got), fmt(&want), "unmap of {m:x?}");
                fmt(&got)
            } else {
                drop(g);
                "dropped".into()
            }
        }
        (Guard::Bank(g), GModel::Bank(m)) => {
            let want = w.m_unmap_bank(&m);
            if explicit {
                let got = g.unmap();
                assert_eq!(fmt(&got), fmt(&want), "unmap of {m:x?}");
                fmt(&got)
            } else {
                drop(g);
                "dropped".into()
            }
        }
        _ => unreachable!("guards and models are paired"),
    }
}

/// The aperture-relative IOVA an operation names.
fn iova_of(t2: &T2, sel: u8) -> u64 {
    if sel >> 5 == 7 {
        return ABSOLUTE[(sel & 7) as usize];
    }
    let n = u64::from(t2.windows);
    let k = match sel & 7 {
        0 => 0,
        1 => 1,
        2 => 2,
        3 => 3,
        4 => n.wrapping_sub(1),
        5 => n,
        6 => n.wrapping_sub(2),
        _ => u64::MAX,
    };
    let offset = [0, 0, 0x1000, 0x123][((sel >> 3) & 3) as usize];
    t2.ap()
        .0
        .wrapping_add(k.wrapping_mul(t2.ws()))
        .wrapping_add(offset)
}

/// A `Ready` container: applies operations while guards may borrow it, until
/// one needs it exclusively (left in `ops`) or the input ends; the guards
/// are dropped on the way out.
fn ready_scope(c: &Container<Type2<Ready>>, w: &mut World, ops: &mut Peekable<IntoIter<Op>>) {
    let mut guards: Vec<(Guard<'_>, GModel)> = Vec::new();
    while let Some(&op) = ops.peek() {
        if op.exclusive() {
            break;
        }
        ops.next();
        if w.trace {
            eprintln!("{op:?}");
        }
        match op {
            Op::MapDma {
                buffer,
                iova,
                access,
            } if guards.len() < MAX_GUARDS => {
                let buffer = buffer as usize % BUFFERS.len();
                let iova = iova_of(w.t2(), iova);
                let want = w.m_map_dma(buffer, iova, access);
                let got = c.map(&pool()[buffer].buffer, iova, access_of(access).0);
                let gotf = fmt(&got.as_ref().map(|g| (g.iova(), g.size(), g.windows())));
                let wantf = fmt(&want.as_ref().map(|m| (m.iova, m.size, m.windows.clone())));
                w.outcome(op, gotf, wantf);
                if let (Ok(g), Ok(m)) = (got, want) {
                    guards.push((Guard::Dma(g), GModel::Dma(m)));
                }
            }
            Op::MapBank { index, iova } if guards.len() < MAX_GUARDS => {
                let index = u32::from(index % 5);
                let iova = iova_of(w.t2(), iova);
                let want = w.m_map_bank(index, iova);
                let got = c.map_msi_bank(index, iova);
                let gotf = fmt(&got.as_ref().map(|g| (g.index(), g.iova(), g.window())));
                let wantf = fmt(&want.as_ref().map(|m| (m.index, m.iova, m.window)));
                w.outcome(op, gotf, wantf);
                if let (Ok(g), Ok(m)) = (got, want) {
                    guards.push((Guard::Bank(g), GModel::Bank(m)));
                }
            }
            Op::DropGuard { index, explicit } if !guards.is_empty() => {
                let (g, m) = guards.remove(index as usize % guards.len());
                let got = unmap_guard(w, g, m, explicit);
                w.outcome(op, got.clone(), got);
            }
            op => {
                if !w.t2_shared(c, op) {
                    w.skip(op);
                }
            }
        }
        w.check_kernel();
        w.check_ready(c, &guards);
    }
    while let Some((g, m)) = guards.pop() {
        unmap_guard(w, g, m, false);
        w.check_kernel();
        w.check_ready(c, &guards);
    }
}

/// The aperture an operation names, checked by `Aperture::new` against the
/// model (the outcome is recorded if it is refused), with the model's
/// prediction of `set_geometry` with it.
fn aperture(w: &mut World, op: Op, (start, size): (u64, u64)) -> Option<(Aperture, String)> {
    match Aperture::new(start, size) {
        Ok(a) => {
            assert!(
                size.is_power_of_two() && size >= 4096 && start.is_multiple_of(size),
                "Aperture::new accepted {start:#x}+{size:#x}"
            );
            Some((a, fmt(&w.m_set_geometry(start, size))))
        }
        Err(e) => {
            let end = u128::from(start) + u128::from(size);
            let want = if size == 0
                || !size.is_power_of_two()
                || size < 4096
                || end > u128::from(u64::MAX) + 1
            {
                Type2Error::ApertureSize { start, size }
            } else {
                Type2Error::ApertureUnaligned { start, size }
            };
            w.outcome(op, format!("err {e:?}"), format!("err {want:?}"));
            None
        }
    }
}

/// A `set_geometry` or `set_windows` answer: on failure the container
/// comes back in its stage (`back`).
fn transition<G: Type2Stage, T>(
    w: &mut World,
    op: Op,
    want: String,
    got: Result<T, typed_vfio::Type2TransitionError<G>>,
    done: fn(T) -> Cont,
    back: fn(Container<Type2<G>>) -> Cont,
) -> Cont {
    match got {
        Ok(c) => {
            w.outcome(op, "ok ()".into(), want);
            done(c)
        }
        Err(e) => {
            w.outcome(op, format!("err {:?}", e.error), want);
            back(e.container)
        }
    }
}

fn attach_more<S: typed_vfio::HasGroups>(w: &mut World, op: Op, c: &mut Container<S>, i: u8) {
    if w.groups.is_empty() {
        w.skip(op);
        return;
    }
    let (group, g) = w.groups.swap_remove(i as usize % w.groups.len());
    let want = w.m_attach(g);
    let got = c.attach_more(group);
    match got {
        Ok(()) => w.outcome(op, "ok ()".into(), fmt(&want)),
        Err((group, e)) => {
            assert_eq!(group.id(), group_id(g), "the group came back");
            w.outcome(op, format!("err {e:?}"), fmt(&want));
            w.groups.push((group, g));
        }
    }
}

fn release<S: typed_vfio::HasGroups>(
    w: &mut World,
    op: Op,
    c: Container<S>,
    back: fn(Container<S>) -> Cont,
) -> Cont {
    let (want, released) = w.m_release();
    let released_ids: Vec<GroupId> = released.iter().map(|&g| group_id(g)).collect();
    match c.release_groups() {
        Ok((c, groups)) => {
            w.outcome(op, "ok ()".into(), fmt(&want));
            assert_eq!(
                groups.iter().map(Group::id).collect::<Vec<_>>(),
                released_ids
            );
            w.groups.extend(groups.into_iter().zip(released));
            Cont::Unset(c)
        }
        Err(e) => {
            w.outcome(op, format!("err {:?}", e.error), fmt(&want));
            assert_eq!(
                e.released.iter().map(Group::id).collect::<Vec<_>>(),
                released_ids
            );
            let stayed: Vec<GroupId> = w.cgroups.iter().map(|&g| group_id(g)).collect();
            assert_eq!(
                e.container.groups().map(Group::id).collect::<Vec<_>>(),
                stayed
            );
            w.groups.extend(e.released.into_iter().zip(released));
            back(e.container)
        }
    }
}

/// Applies one operation outside any guard scope.
fn step(cont: Cont, w: &mut World, op: Op) -> Cont {
    match (op, cont) {
        (Op::OpenContainer, Cont::None) => {
            let want = match w.call(OPEN) {
                Some(errno) => Err(ContainerError::Open {
                    path: PathBuf::from(CONTAINER_PATH),
                    errno,
                }),
                None => match w.call(API_VERSION) {
                    Some(errno) => Err(ContainerError::Ioctl {
                        ioctl: API_VERSION,
                        errno,
                    }),
                    None => Ok(()),
                },
            };
            let got = w.sim.open_container();
            w.outcome(op, fmt(&got.as_ref().map(|_| ())), fmt(&want));
            match got {
                Ok(c) => {
                    w.k.conts.push(Some(KCont {
                        fd_open: true,
                        groups: Vec::new(),
                        pamu: None,
                    }));
                    w.cur = Some(w.k.conts.len() - 1);
                    Cont::Unset(c)
                }
                Err(_) => Cont::None,
            }
        }
        (Op::Attach(i), Cont::Unset(c)) if !w.groups.is_empty() => {
            let (group, g) = w.groups.swap_remove(i as usize % w.groups.len());
            let want = w.m_attach(g);
            match c.attach(group) {
                Ok(c) => {
                    w.outcome(op, "ok ()".into(), fmt(&want));
                    Cont::Attached(c)
                }
                Err(e) => {
                    w.outcome(op, format!("err {:?}", e.error), fmt(&want));
                    assert_eq!(e.group.id(), group_id(g), "the group came back");
                    assert!(e.container.groups().is_empty());
                    w.groups.push((e.group, g));
                    Cont::Unset(e.container)
                }
            }
        }
        (Op::AttachMore(i), mut cont) => {
            match &mut cont {
                Cont::Attached(c) => attach_more(w, op, c, i),
                Cont::Fresh(c) => attach_more(w, op, c, i),
                Cont::Geo(c) => attach_more(w, op, c, i),
                Cont::Ready(c) => attach_more(w, op, c, i),
                Cont::None | Cont::Unset(_) => w.skip(op),
            }
            cont
        }
        (Op::SetIommuType2(token), Cont::Attached(c)) => {
            let platform = match token {
                Token::Sim => {
                    let want: Result<(), Type2Error> = match w.platform {
                        Platform::X86 => Err(Type2Error::NoPamuNode {
                            searched: vec![PathBuf::from("/sim/device-tree/soc/iommu@20000")],
                        }),
                        _ => Ok(()),
                    };
                    let got = w.sim.pamu_platform();
                    if got.is_err() {
                        w.outcome(op, fmt(&got.map(drop)), fmt(&want));
                        return Cont::Attached(c);
                    }
                    assert!(want.is_ok(), "a PAMU node on x86");
                    got.ok()
                }
                // SAFETY: the simulated kernel is no POWER host: its ids 2
                // and 7 reach the simulated PAMU or nothing.
                Token::AssumePresent => Some(unsafe { PamuPlatform::assume_present() }),
                Token::Host => match PamuPlatform::detect() {
                    Ok(p) => Some(p),
                    Err(e) => {
                        assert!(matches!(e, Type2Error::NoPamuNode { .. }));
                        let got = format!("err {e:?}");
                        w.outcome(op, got.clone(), got);
                        return Cont::Attached(c);
                    }
                },
            };
            let platform = platform.expect("a platform proof");
            let groups = c.groups().len();
            let want = w.m_set_iommu();
            match c.set_iommu_type2(platform) {
                Ok(c) => {
                    w.outcome(op, "ok ()".into(), fmt(&want));
                    assert_eq!(c.groups().len(), groups);
                    Cont::Fresh(c)
                }
                Err(e) => {
                    w.outcome(op, format!("err {:?}", e.error), fmt(&want));
                    assert_eq!(e.container.groups().len(), groups);
                    Cont::Attached(e.container)
                }
            }
        }
        (
            Op::SetGeometry { start, size },
            cont @ (Cont::Fresh(_) | Cont::Geo(_) | Cont::Ready(_)),
        ) => {
            let ap = (pick(&STARTS, start), pick(&SIZES, size));
            let Some((a, want)) = aperture(w, op, ap) else {
                return cont;
            };
            match cont {
                Cont::Fresh(c) => {
                    transition(w, op, want, c.set_geometry(a), Cont::Geo, Cont::Fresh)
                }
                Cont::Geo(c) => transition(w, op, want, c.set_geometry(a), Cont::Geo, Cont::Geo),
                Cont::Ready(c) => {
                    transition(w, op, want, c.set_geometry(a), Cont::Geo, Cont::Ready)
                }
                _ => unreachable!(),
            }
        }
        (Op::SetWindows(n), Cont::Geo(c)) => {
            let n = pick(&WINDOWS, n);
            let want = fmt(&w.m_set_windows(n));
            transition(w, op, want, c.set_windows(n), Cont::Ready, Cont::Geo)
        }
        (Op::SetWindows(n), Cont::Ready(c)) => {
            let n = pick(&WINDOWS, n);
            let want = fmt(&w.m_set_windows(n));
            transition(w, op, want, c.set_windows(n), Cont::Ready, Cont::Ready)
        }
        (Op::SetStash { cpu, cache }, Cont::Ready(mut c)) => {
            let (sc, level) = match cache {
                Cache::L1 => (StashCache::L1, 1),
                Cache::L2 => (StashCache::L2, 2),
                Cache::L3 => (StashCache::L3, 3),
            };
            let other = if level == 1 { 2 } else { 1 };
            let want = w.m_set_attr_proved(
                STASH,
                (u64::from(cpu), level),
                Some((u64::from(cpu), other)),
            );
            let got = c.set_stash(u32::from(cpu), sc);
            w.outcome(op, fmt(&got), fmt(&want));
            Cont::Ready(c)
        }
        (Op::Release, cont) => match cont {
            Cont::Attached(c) => release(w, op, c, Cont::Attached),
            Cont::Fresh(c) => release(w, op, c, Cont::Fresh),
            Cont::Geo(c) => release(w, op, c, Cont::Geo),
            Cont::Ready(c) => release(w, op, c, Cont::Ready),
            other => {
                w.skip(op);
                other
            }
        },
        (Op::DropContainer, cont) => {
            if matches!(cont, Cont::None) {
                w.skip(op);
            } else {
                drop(cont);
                w.m_drop_container();
                w.outcome(op, "ok ()".into(), "ok ()".into());
            }
            Cont::None
        }
        (op, cont) => {
            let done = match &cont {
                Cont::Fresh(c) => w.t2_shared(c, op),
                Cont::Geo(c) => w.t2_shared(c, op),
                Cont::Ready(c) => w.t2_shared(c, op),
                _ => w.shared(op),
            };
            if !done {
                w.skip(op);
            }
            cont
        }
    }
}

fn check(w: &mut World, cont: &Cont) {
    w.check_kernel();
    match cont {
        Cont::Fresh(c) => w.check_t2(c),
        Cont::Geo(c) => w.check_t2(c),
        Cont::Ready(c) => w.check_ready(c, &[]),
        Cont::Unset(c) => assert!(c.groups().is_empty()),
        Cont::Attached(c) => assert_eq!(c.groups().len(), w.cgroups.len()),
        Cont::None => {}
    }
}

/// Open fds of this process (after a simulator call, which releases the
/// simulator's end of closed objects).
fn fds(sim: Option<&Simulator>) -> usize {
    if let Some(sim) = sim {
        let _ = sim.calls(OPEN);
    }
    std::fs::read_dir("/proc/self/fd")
        .expect("/proc/self/fd")
        .count()
}

fn simulator(platform: Platform, mode: PamuMode, banks: u32) -> Simulator {
    let b = Simulator::builder()
        .group(
            SimGroup::new(1)
                .device(SimDevice::edu(DEVICE_NAMES[0]))
                .device(SimDevice::edu(DEVICE_NAMES[1])),
        )
        .group(SimGroup::new(2).device(SimDevice::edu(DEVICE_NAMES[2])));
    let b = match platform {
        Platform::Sdk => b.pamu(mode).pamu_id(PamuId::Sdk).msi_banks(banks),
        Platform::OpenIl => b.pamu(mode).pamu_id(PamuId::OpenIl).msi_banks(banks),
        Platform::X86 => b,
    };
    b.build().expect("a valid machine")
}

/// Runs the input in one mode: its outcomes and where the SDK driver's
/// behaviour first mattered.
fn run(input: &Input, mode: PamuMode) -> (Vec<String>, Option<usize>) {
    let before = fds(None);
    let banks = u32::from(input.banks % 4);
    let sim = simulator(input.platform, mode, banks);
    let with_sim = fds(Some(&sim));
    let mut w = World {
        sim: sim.clone(),
        mode,
        platform: input.platform,
        banks,
        calls: Calls::default(),
        k: Kern::default(),
        cur: None,
        cgroups: Vec::new(),
        orphans: Vec::new(),
        t2: None,
        groups: Vec::new(),
        devices: Vec::new(),
        msi_efd: [None, None, None],
        outs: Vec::new(),
        quirk_at: None,
        trace: std::env::var_os("PAMU_SEQUENCE_TRACE").is_some(),
    };
    if w.trace {
        eprintln!("== {:?} {mode:?}, {banks} banks", input.platform);
    }
    let mut ops = input
        .ops
        .iter()
        .copied()
        .take(MAX_OPS)
        .collect::<Vec<_>>()
        .into_iter()
        .peekable();
    let mut cont = Cont::None;
    loop {
        if let Cont::Ready(c) = &cont {
            ready_scope(c, &mut w, &mut ops);
            check(&mut w, &cont);
        }
        let Some(op) = ops.next() else { break };
        if w.trace {
            eprintln!("{op:?}");
        }
        cont = step(cont, &mut w, op);
        check(&mut w, &cont);
    }

    // Teardown: the container, the devices (which may keep a dropped
    // container's groups, and so its mappings, alive), the groups.
    drop(cont);
    w.m_drop_container();
    w.check_kernel();
    while let Some(dev) = w.devices.pop() {
        drop(dev.device);
        w.k.close_device(dev.index);
        w.check_kernel();
    }
    assert!(sim.mappings().is_empty(), "mappings left after teardown");
    assert!(!sim.pamu_enabled(), "a PAMU domain still enabled");
    for (group, g) in std::mem::take(&mut w.groups) {
        drop(group);
        w.k.close_group(g);
    }
    assert!(w.k.conts.iter().all(Option::is_none), "{:?}", w.k.conts);
    let (outs, quirk_at) = (std::mem::take(&mut w.outs), w.quirk_at);
    drop(w);
    assert_eq!(fds(Some(&sim)), with_sim, "fds leaked (simulator alive)");
    drop(sim);
    assert_eq!(fds(None), before, "fds leaked");
    (outs, quirk_at)
}

// ---- seeds ----------------------------------------------------------------------------------

/// The `arbitrary` encoding of an input (arbitrary 1.x: an enum is a
/// little-endian `u32` scaled onto its variants, the last field takes the
/// rest, each element of the op list is preceded by a byte with bit 0 set).
fn encode(input: &Input) -> Vec<u8> {
    fn tag(out: &mut Vec<u8>, i: u64, n: u64) {
        out.extend_from_slice(&((i << 32).div_ceil(n) as u32).to_le_bytes());
    }
    let mut out = Vec::new();
    tag(&mut out, input.platform as u64, 3);
    out.push(input.banks);
    for op in &input.ops {
        out.push(1);
        let (i, fields): (u64, Vec<u8>) = match *op {
            Op::OpenContainer => (0, vec![]),
            Op::OpenGroup(a) => (1, vec![a]),
            Op::DropGroup(a) => (2, vec![a]),
            Op::Attach(a) => (3, vec![a]),
            Op::AttachMore(a) => (4, vec![a]),
            Op::SetIommuType2(t) => {
                tag(&mut out, 5, 25);
                tag(&mut out, t as u64, 3);
                continue;
            }
            Op::SetGeometry { start, size } => (6, vec![start, size]),
            Op::SetWindows(a) => (7, vec![a]),
            Op::SetStash { cpu, cache } => {
                tag(&mut out, 8, 25);
                out.push(cpu);
                tag(&mut out, cache as u64, 3);
                continue;
            }
            Op::Geometry => (9, vec![]),
            Op::WindowCount => (10, vec![]),
            Op::BankCount => (11, vec![]),
            Op::MapDma {
                buffer,
                iova,
                access,
            } => {
                tag(&mut out, 12, 25);
                out.extend([buffer, iova]);
                tag(&mut out, access as u64, 3);
                continue;
            }
            Op::MapBank { index, iova } => (13, vec![index, iova]),
            Op::DropGuard { index, explicit } => (14, vec![index, u8::from(explicit)]),
            Op::OpenDevice(a) => (15, vec![a]),
            Op::DropDevice(a) => (16, vec![a]),
            Op::SetMsi(a) => (17, vec![a]),
            Op::SetIntx(a) => (18, vec![a]),
            Op::DisableIrq { device, msi } => (19, vec![device, u8::from(msi)]),
            Op::TriggerMsi(a) => (20, vec![a]),
            Op::Reset(a) => (21, vec![a]),
            Op::Release => (22, vec![]),
            Op::DropContainer => (23, vec![]),
            Op::Fault {
                request,
                nth,
                errno,
            } => (24, vec![request, nth, errno]),
        };
        tag(&mut out, i, 25);
        out.extend(fields);
    }
    out
}

fn request(name: &str) -> u8 {
    REQUESTS
        .iter()
        .position(|r| *r == name)
        .expect("a listed request") as u8
}

fn errno(e: Errno) -> u8 {
    ERRNOS.iter().position(|x| *x == e).expect("a listed errno") as u8
}

/// The committed seeds: (name, input).
fn seeds() -> Vec<(&'static str, Input)> {
    use Op::*;
    // 1 MiB at 16 MiB (STARTS[1], SIZES[3]); 16 windows of 64 KiB
    // (WINDOWS[4]); IOVA selectors: 0 window 0, 4 the last window, 6 the one
    // before; BUFFERS[3] is two 64 KiB windows.
    let setup = [
        OpenContainer,
        OpenGroup(0),
        Attach(0),
        SetIommuType2(Token::Sim),
        BankCount,
        SetGeometry { start: 1, size: 3 },
        Geometry,
        SetWindows(4),
        WindowCount,
    ];
    let full = Input {
        platform: Platform::Sdk,
        banks: 2,
        ops: setup
            .iter()
            .copied()
            .chain([
                OpenDevice(0),
                SetMsi(0),
                MapBank { index: 0, iova: 4 },
                MapBank { index: 1, iova: 6 },
                MapDma {
                    buffer: 3,
                    iova: 0,
                    access: Access::ReadWrite,
                },
                SetMsi(0),
                TriggerMsi(0),
                DisableIrq {
                    device: 0,
                    msi: true,
                },
                SetIntx(0),
                Reset(0),
                DropGuard {
                    index: 2,
                    explicit: true,
                },
                DropGuard {
                    index: 0,
                    explicit: false,
                },
                DropDevice(0),
                SetStash {
                    cpu: 1,
                    cache: Cache::L2,
                },
                Release,
                DropContainer,
            ])
            .collect(),
    };
    let faults = Input {
        platform: Platform::OpenIl,
        banks: 1,
        ops: setup
            .iter()
            .copied()
            .chain([
                Fault {
                    request: request(MAP_BANK),
                    nth: 0,
                    errno: errno(Errno::ENOMEM),
                },
                MapBank { index: 0, iova: 4 },
                OpenDevice(0),
                SetMsi(0),
                Fault {
                    request: request(UNMAP_DMA),
                    nth: 0,
                    errno: errno(Errno::EIO),
                },
                MapDma {
                    buffer: 2,
                    iova: 1,
                    access: Access::Read,
                },
                DropGuard {
                    index: 1,
                    explicit: true,
                },
                Fault {
                    request: request(SET_ATTR),
                    nth: 0,
                    errno: errno(Errno::EBUSY),
                },
                SetWindows(3),
                SetWindows(2),
                Fault {
                    request: request(GET_ATTR),
                    nth: 1,
                    errno: errno(Errno::EIO),
                },
                SetGeometry { start: 1, size: 3 },
                DropDevice(0),
                DropContainer,
            ])
            .collect(),
    };
    let bad = Input {
        platform: Platform::Sdk,
        banks: 3,
        ops: [
            OpenContainer,
            OpenGroup(1),
            OpenGroup(0),
            Attach(0),
            AttachMore(0),
            SetIommuType2(Token::AssumePresent),
            SetGeometry { start: 2, size: 6 },
            SetGeometry { start: 2, size: 2 },
            SetGeometry { start: 6, size: 0 },
            SetWindows(9),
            SetWindows(12),
            SetWindows(0),
            MapBank { index: 3, iova: 0 },
            MapBank { index: 0, iova: 5 },
            MapBank {
                index: 0,
                iova: 0x10,
            },
            MapDma {
                buffer: 0,
                iova: 0,
                access: Access::Write,
            },
            MapDma {
                buffer: 4,
                iova: 0,
                access: Access::Write,
            },
            MapDma {
                buffer: 7,
                iova: 0xe2,
                access: Access::Write,
            },
            OpenDevice(2),
            SetMsi(0),
            Release,
            DropDevice(0),
            Release,
            DropContainer,
        ]
        .to_vec(),
    };
    vec![
        ("seed-sdk-full-cycle", full),
        ("seed-openil-faults", faults),
        ("seed-sdk-bad-values", bad),
    ]
}

/// The seeds, each encoded, checked to decode back to itself and run clean.
pub(crate) fn checked_seeds() -> Vec<(&'static str, Vec<u8>)> {
    let mut out = Vec::new();
    for (name, input) in seeds() {
        let bytes = encode(&input);
        let back = Input::arbitrary_take_rest(Unstructured::new(&bytes))
            .unwrap_or_else(|e| panic!("{name}: does not decode: {e}"));
        assert_eq!(back, input, "{name}: the encoding does not round-trip");
        one(&input);
        out.push((name, bytes));
    }
    out
}

/// `PAMU_SEQUENCE_WRITE_SEEDS=DIR`: writes the seeds (checked to decode back
/// to themselves and to run clean) and exits.
fn write_seeds() {
    let Some(dir) = std::env::var_os("PAMU_SEQUENCE_WRITE_SEEDS") else {
        return;
    };
    let dir = PathBuf::from(dir);
    std::fs::create_dir_all(&dir).expect("the seed directory");
    for (name, bytes) in checked_seeds() {
        std::fs::write(dir.join(name), &bytes).expect("write a seed");
        eprintln!("wrote {}", dir.join(name).display());
    }
    std::process::exit(0);
}

pub(crate) fn one(input: &Input) {
    if input.platform == Platform::X86 {
        run(input, PamuMode::Strict);
        return;
    }
    let (strict, strict_at) = run(input, PamuMode::Strict);
    let (sdk, sdk_at) = run(input, PamuMode::Sdk);
    assert_eq!(strict_at, sdk_at, "the modes part at different operations");
    let n = strict_at.unwrap_or(strict.len());
    assert_eq!(
        strict[..n],
        sdk[..n],
        "strict and SDK outcomes differ before the SDK driver's behaviour mattered"
    );
}

/// Once per process, before the first input: the buffer pool, and the
/// seeds written if asked (`PAMU_SEQUENCE_WRITE_SEEDS`).
pub(crate) fn init() {
    let _ = pool();
    write_seeds();
}

/// A non-blocking, close-on-exec eventfd.
fn eventfd() -> EventFd {
    EventFd::from_value_and_flags(0, EfdFlags::EFD_CLOEXEC | EfdFlags::EFD_NONBLOCK)
        .expect("eventfd")
}
