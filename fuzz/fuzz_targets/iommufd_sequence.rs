//! Sequences of typed-API operations on the iommufd/cdev path of a fresh
//! simulated kernel (`Simulator::new()`: two edu devices, each in its own
//! group), with injected faults between them: IOASes allocated, destroyed
//! and dropped; devices opened, bound, attached, moved and detached; buffers
//! mapped at fixed and kernel-chosen IOVAs and unmapped. Every operation is
//! applied when the current state has it and skipped otherwise.
//!
//! The reference model: per IOAS, the ranges the simulator must hold (live
//! guards, plus ranges whose unmap failed); the ranges of IOASes whose
//! destruction failed linger until the end. After each step the simulator
//! holds exactly those (as a multiset: two IOASes may map the same IOVA),
//! each live guard's range among them. A failed destroy hands the IOAS back
//! and it goes on being used. At the end, with everything dropped, no
//! mapping is left and the process has the fds it had before the input.
#![no_main]

use std::collections::HashMap;
use std::iter::Peekable;
use std::vec::IntoIter;

use arbitrary::Arbitrary;
use fuzz_oracle::Faults;
use libfuzzer_sys::fuzz_target;
use typed_vfio::iommufd::{BoundDevice, Ioas, IoasMapping, Iommufd};
use typed_vfio::sim::Simulator;
use typed_vfio::{DmaAccess, DmaBuffer, Errno};

/// Operations per input, at most.
const MAX_OPS: usize = 64;
/// Live guards, IOASes and bound devices, at most.
const MAX_GUARDS: usize = 8;
const MAX_IOAS: usize = 3;
const MAX_DEVICES: usize = 3;

/// Buffer sizes (one buffer each, allocated per input).
const BUFFERS: [usize; 3] = [0x1000, 0x2000, 0x1_0000];

/// IOVAs, good and bad: aligned, overlapping the first, unaligned, in the
/// x86 MSI window, past the aperture, wrapping, zero; `None`: the kernel
/// chooses.
const IOVAS: [Option<u64>; 8] = [
    Some(0x10_0000),
    Some(0x10_1000),
    Some(0x10_0123),
    Some(0xfee0_0000),
    Some(0x100_0000_0000),
    Some(u64::MAX - 0xfff),
    Some(0),
    None,
];

/// Allowed-IOVA lists: none, a window, the MSI window, overlapping ones.
const ALLOWED: [&[(u64, u64)]; 4] = [
    &[],
    &[(0x800_0000, 0x80f_ffff)],
    &[(0xfee0_0000, 0xfeef_ffff)],
    &[(0x800_0000, 0x80f_ffff), (0x808_0000, 0x8ff_ffff)],
];

const DEVICES: [&str; 3] = ["0000:01:00.0", "0000:02:00.0", "bogus"];

/// Requests faults may be injected on.
const REQUESTS: [&str; 15] = [
    "open",
    "IOMMU_IOAS_ALLOC",
    "IOMMU_DESTROY",
    "IOMMU_IOAS_MAP",
    "IOMMU_IOAS_UNMAP",
    "IOMMU_IOAS_IOVA_RANGES",
    "IOMMU_IOAS_COPY",
    "IOMMU_IOAS_ALLOW_IOVAS",
    "VFIO_DEVICE_BIND_IOMMUFD",
    "VFIO_DEVICE_ATTACH_IOMMUFD_PT",
    "VFIO_DEVICE_DETACH_IOMMUFD_PT",
    "VFIO_DEVICE_GET_INFO",
    "VFIO_DEVICE_SET_IRQS",
    "VFIO_DEVICE_RESET",
    "pwrite",
];

const ERRNOS: [Errno; 6] = [
    Errno::EIO,
    Errno::ENOMEM,
    Errno::EBUSY,
    Errno::EINVAL,
    Errno::EFAULT,
    Errno::ENOSPC,
];

const UNMAP: &str = "IOMMU_IOAS_UNMAP";
const DESTROY: &str = "IOMMU_DESTROY";
const ATTACH: &str = "VFIO_DEVICE_ATTACH_IOMMUFD_PT";

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Op {
    AllocIoas,
    DropIoas(u8),
    DestroyIoas(u8),
    UnmapAll(u8),
    Ranges(u8),
    Bind(u8),
    DropDevice(u8),
    Attach { device: u8, ioas: u8 },
    Detach(u8),
    Map { ioas: u8, buffer: u8, iova: u8 },
    DropMapping { index: u8, explicit: bool },
    Copy { source: u8, ioas: u8, iova: u8 },
    Allow { ioas: u8, ranges: u8 },
    BusMaster(u8),
    Reset(u8),
    Fault { request: u8, nth: u8, errno: u8 },
}

impl Op {
    /// Needs an IOAS by value or `&mut`: not while a guard borrows one.
    fn exclusive(self) -> bool {
        matches!(
            self,
            Op::AllocIoas | Op::DropIoas(_) | Op::DestroyIoas(_) | Op::UnmapAll(_)
        )
    }
}

fn pick<T: Copy>(list: &[T], i: u8) -> T {
    list[i as usize % list.len()]
}

/// A bound device and the IOAS (by id) the model says it is attached to.
struct Dev {
    dev: BoundDevice,
    attached: Option<u32>,
}

/// Everything but the IOASes and the guards.
struct World {
    sim: Simulator,
    faults: Faults,
    devices: Vec<Dev>,
    /// Per IOAS id: the ranges the simulator must hold.
    expected: HashMap<u32, Vec<(u64, u64)>>,
    /// Ranges of IOASes whose destruction failed: they stay until the end.
    lingering: Vec<(u64, u64)>,
    trace: bool,
}

impl World {
    fn check(&mut self, guards: &[(u32, u64, u64)]) {
        self.faults.sync(&self.sim);
        let mut live: Vec<(u64, u64)> = self
            .sim
            .mappings()
            .iter()
            .map(|m| (m.iova, m.size))
            .collect();
        let mut want: Vec<(u64, u64)> = self.expected.values().flatten().copied().collect();
        want.extend(self.lingering.iter().copied());
        if self.trace {
            eprintln!("  guards {guards:x?} sim {live:x?} model {want:x?}");
        }
        for &(id, iova, size) in guards {
            let ranges = self.expected.get(&id).map(Vec::as_slice).unwrap_or(&[]);
            assert!(
                ranges.contains(&(iova, size)),
                "guard {iova:#x}+{size:#x} of IOAS {id} not in the model"
            );
        }
        live.sort_unstable();
        want.sort_unstable();
        assert_eq!(live, want, "the simulator's mappings differ from the model");
    }

    fn forget(&mut self, id: u32, range: (u64, u64)) {
        let list = self.expected.get_mut(&id).expect("a known IOAS");
        let at = list
            .iter()
            .position(|&e| e == range)
            .expect("a known range");
        list.swap_remove(at);
    }

    fn device(&mut self, i: u8) -> Option<&mut Dev> {
        if self.devices.is_empty() {
            return None;
        }
        let n = self.devices.len();
        Some(&mut self.devices[i as usize % n])
    }

    /// Whether a device sits on IOAS `id` (then its destruction is refused).
    fn in_use(&self, id: u32) -> bool {
        self.devices.iter().any(|d| d.attached == Some(id))
    }

    /// Operations that need no exclusive IOAS access; false if `op` is not
    /// one.
    fn shared(&mut self, op: Op, fd: &Iommufd, ioases: &[Ioas<'_>]) -> bool {
        match op {
            Op::Ranges(i) => {
                if let Some(ioas) = pick_ioas(ioases, i) {
                    if let Ok(r) = ioas.iova_ranges() {
                        assert!(r.ranges.windows(2).all(|w| w[0].end < w[1].start));
                        assert!(r.alignment.is_power_of_two());
                    }
                }
            }
            Op::Allow { ioas, ranges } => {
                if let Some(ioas) = pick_ioas(ioases, ioas) {
                    let list: Vec<typed_vfio::IovaRange> = pick(&ALLOWED, ranges)
                        .iter()
                        .map(|&(start, end)| typed_vfio::IovaRange { start, end })
                        .collect();
                    let _ = ioas.allow_iovas(&list);
                }
            }
            Op::Bind(d) => {
                if self.devices.len() < MAX_DEVICES
                    && let Ok(cdev) = self.sim.open_cdev(pick(&DEVICES, d))
                {
                    match cdev.bind(fd) {
                        Ok(dev) => self.devices.push(Dev {
                            dev,
                            attached: None,
                        }),
                        Err(e) => drop(e.device),
                    }
                }
            }
            Op::DropDevice(i) => {
                if !self.devices.is_empty() {
                    let i = i as usize % self.devices.len();
                    drop(self.devices.swap_remove(i));
                }
            }
            Op::Attach { device, ioas } => {
                if let Some(target) = pick_ioas(ioases, ioas) {
                    let id = target.id();
                    self.faults.sync(&self.sim);
                    let Some(d) = self.device(device) else {
                        return true;
                    };
                    let result = d.dev.attach(target);
                    if result.is_ok() {
                        d.attached = Some(id);
                    }
                    let (calls, fired) = self.faults.since(&self.sim, ATTACH);
                    assert_eq!(calls, 1, "one ATTACH per attach");
                    if fired == 1 {
                        assert!(result.is_err(), "a faulted attach succeeded");
                    }
                }
            }
            Op::Detach(i) => {
                if let Some(d) = self.device(i)
                    && d.dev.detach().is_ok()
                {
                    d.attached = None;
                }
            }
            Op::BusMaster(i) => {
                if let Some(d) = self.device(i) {
                    let _ = d.dev.set_bus_master(i % 2 == 0);
                }
            }
            Op::Reset(i) => {
                if let Some(d) = self.device(i) {
                    let _ = d.dev.reset();
                }
            }
            Op::Fault {
                request,
                nth,
                errno,
            } => {
                let name = pick(&REQUESTS, request);
                let nth = (nth % 4) as u64 + 1;
                self.sim
                    .inject_fault(name, nth, pick(&ERRNOS, errno))
                    .expect("a known request");
                self.faults.inject(&self.sim, name, nth);
            }
            _ => return false,
        }
        true
    }
}

fn pick_ioas<'a, 'f>(ioases: &'a [Ioas<'f>], i: u8) -> Option<&'a Ioas<'f>> {
    (!ioases.is_empty()).then(|| &ioases[i as usize % ioases.len()])
}

/// Maps a buffer into an IOAS; the guard goes to `guards`, its IOAS's id
/// to `owners`, its range to the model.
fn map<'a, 'f>(
    ioases: &'a [Ioas<'f>],
    buffers: &'a [DmaBuffer],
    w: &mut World,
    guards: &mut Vec<IoasMapping<'a, 'f, 'a>>,
    owners: &mut Vec<u32>,
    (ioas, buffer, iova): (u8, u8, u8),
) {
    let Some(target) = pick_ioas(ioases, ioas) else {
        return;
    };
    if guards.len() >= MAX_GUARDS {
        return;
    }
    let buffer = &buffers[buffer as usize % buffers.len()];
    let result = match pick(&IOVAS, iova) {
        Some(iova) => target.map(buffer, iova, DmaAccess::ReadWrite),
        None => target.map_anywhere(buffer, DmaAccess::ReadWrite),
    };
    if let Ok(guard) = result {
        if let Some(iova) = pick(&IOVAS, iova) {
            assert_eq!(guard.iova(), iova);
        }
        assert_eq!(guard.size(), buffer.len() as u64);
        assert!(buffer.is_mapped());
        w.expected
            .entry(target.id())
            .or_default()
            .push((guard.iova(), guard.size()));
        guards.push(guard);
        owners.push(target.id());
    }
}

/// Unmaps one guard (by `unmap` or by drop); a failed unmap leaves its range
/// mapped (the IOAS keeps the pages as an orphan), which the model keeps.
fn unmap_guard(w: &mut World, guard: IoasMapping<'_, '_, '_>, id: u32, explicit: bool) {
    w.faults.sync(&w.sim);
    let range = (guard.iova(), guard.size());
    let result = if explicit {
        Some(guard.unmap())
    } else {
        drop(guard);
        None
    };
    let (calls, fired) = w.faults.since(&w.sim, UNMAP);
    assert_eq!(calls, 1, "one IOAS_UNMAP per guard");
    if let Some(result) = result {
        assert_eq!(result.is_err(), fired == 1, "unmap result {result:?}");
    }
    if fired == 0 {
        w.forget(id, range);
    }
}

/// While guards borrow the IOASes: applies operations until the last guard
/// is gone or one needs an IOAS exclusively (left in `ops`, guards unmapped
/// first).
fn mapped(
    fd: &Iommufd,
    ioases: &[Ioas<'_>],
    buffers: &[DmaBuffer],
    w: &mut World,
    ops: &mut Peekable<IntoIter<Op>>,
    first: (u8, u8, u8),
) {
    let mut guards: Vec<IoasMapping<'_, '_, '_>> = Vec::new();
    let mut owners: Vec<u32> = Vec::new();
    map(ioases, buffers, w, &mut guards, &mut owners, first);
    let ranges = |g: &Vec<IoasMapping<'_, '_, '_>>, o: &Vec<u32>| {
        g.iter()
            .zip(o)
            .map(|(m, &id)| (id, m.iova(), m.size()))
            .collect::<Vec<_>>()
    };
    w.check(&ranges(&guards, &owners));
    while !guards.is_empty() {
        let Some(&op) = ops.peek() else { break };
        if op.exclusive() {
            break;
        }
        ops.next();
        if w.trace {
            eprintln!("{op:?} (mapped)");
        }
        match op {
            Op::Map { ioas, buffer, iova } => {
                map(
                    ioases,
                    buffers,
                    w,
                    &mut guards,
                    &mut owners,
                    (ioas, buffer, iova),
                );
            }
            Op::Copy { source, ioas, iova } => {
                let Some(dst) = pick_ioas(ioases, ioas) else {
                    continue;
                };
                if guards.len() >= MAX_GUARDS {
                    continue;
                }
                let src = &guards[source as usize % guards.len()];
                let size = src.size();
                let result = match pick(&IOVAS, iova) {
                    Some(at) => dst.copy(src, at, DmaAccess::ReadWrite),
                    None => dst.copy_anywhere(src, DmaAccess::ReadWrite),
                };
                if let Ok(copy) = result {
                    if let Some(at) = pick(&IOVAS, iova) {
                        assert_eq!(copy.iova(), at);
                    }
                    assert_eq!(copy.size(), size);
                    w.expected
                        .entry(dst.id())
                        .or_default()
                        .push((copy.iova(), copy.size()));
                    owners.push(dst.id());
                    guards.push(copy);
                }
            }
            Op::DropMapping { index, explicit } => {
                let i = index as usize % guards.len();
                let g = guards.remove(i);
                let id = owners.remove(i);
                unmap_guard(w, g, id, explicit);
            }
            op => {
                w.shared(op, fd, ioases);
            }
        }
        w.check(&ranges(&guards, &owners));
    }
    while let Some(g) = guards.pop() {
        let id = owners.pop().expect("an owner per guard");
        unmap_guard(w, g, id, true);
        w.check(&ranges(&guards, &owners));
    }
}

/// Drops or destroys IOAS `i`; a refused destruction (a device on it, or an
/// injected fault) hands it back when destroyed explicitly, and leaves its
/// ranges in the kernel when dropped.
fn retire(ioases: &mut Vec<Ioas<'_>>, w: &mut World, i: u8, explicit: bool) {
    if ioases.is_empty() {
        return;
    }
    let ioas = ioases.swap_remove(i as usize % ioases.len());
    let id = ioas.id();
    w.faults.sync(&w.sim);
    let busy = w.in_use(id);
    let handed_back = if explicit {
        match ioas.destroy() {
            Ok(()) => None,
            Err(e) => Some(e.ioas),
        }
    } else {
        drop(ioas);
        None
    };
    let (calls, fired) = w.faults.since(&w.sim, DESTROY);
    assert_eq!(calls, 1, "one DESTROY per IOAS");
    let refused = busy || fired == 1;
    match handed_back {
        Some(ioas) => {
            assert!(refused, "a destroy failed for no reason");
            assert_eq!(ioas.id(), id);
            ioases.push(ioas);
        }
        None if explicit => assert!(!refused, "a refused destroy succeeded"),
        None => {
            let ranges = w.expected.remove(&id).unwrap_or_default();
            if refused {
                w.lingering.extend(ranges);
            }
        }
    }
    if !refused && let Some(ranges) = w.expected.remove(&id) {
        // Destroyed: every range went with it.
        drop(ranges);
    }
}

fn step<'f>(
    fd: &'f Iommufd,
    ioases: &mut Vec<Ioas<'f>>,
    w: &mut World,
    buffers: &[DmaBuffer],
    op: Op,
    ops: &mut Peekable<IntoIter<Op>>,
) {
    match op {
        Op::AllocIoas => {
            if ioases.len() < MAX_IOAS
                && let Ok(ioas) = fd.alloc_ioas()
            {
                assert!(!w.expected.contains_key(&ioas.id()), "an id in use");
                w.expected.insert(ioas.id(), Vec::new());
                ioases.push(ioas);
            }
        }
        Op::DropIoas(i) => retire(ioases, w, i, false),
        Op::DestroyIoas(i) => retire(ioases, w, i, true),
        Op::UnmapAll(i) => {
            if !ioases.is_empty() {
                let n = ioases.len();
                let ioas = &mut ioases[i as usize % n];
                let id = ioas.id();
                if let Ok(bytes) = ioas.unmap_all() {
                    let list = w.expected.entry(id).or_default();
                    let total: u64 = list.iter().map(|&(_, s)| s).sum();
                    assert_eq!(bytes, total, "unmap_all reported {bytes:#x}");
                    list.clear();
                }
            }
        }
        Op::Map { ioas, buffer, iova } => mapped(fd, ioases, buffers, w, ops, (ioas, buffer, iova)),
        op => {
            w.shared(op, fd, ioases);
        }
    }
}

fn fds(sim: Option<&Simulator>) -> usize {
    if let Some(sim) = sim {
        let _ = sim.calls("open");
    }
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

fuzz_target!(|input: Vec<Op>| {
    let before = fds(None);
    let sim = Simulator::new();
    let with_sim = fds(Some(&sim));
    let buffers: Vec<DmaBuffer> = BUFFERS
        .iter()
        .map(|&n| DmaBuffer::new(n).expect("buffer"))
        .collect();
    let fd = sim.open_iommufd().expect("open the simulated /dev/iommu");
    let mut w = World {
        sim: sim.clone(),
        faults: Faults::new(&REQUESTS),
        devices: Vec::new(),
        expected: HashMap::new(),
        lingering: Vec::new(),
        trace: std::env::var_os("API_SEQUENCE_TRACE").is_some(),
    };
    let mut ops = input
        .into_iter()
        .take(MAX_OPS)
        .collect::<Vec<_>>()
        .into_iter()
        .peekable();
    let mut ioases: Vec<Ioas<'_>> = Vec::new();
    while let Some(op) = ops.next() {
        if w.trace {
            eprintln!("{op:?}");
        }
        step(&fd, &mut ioases, &mut w, &buffers, op, &mut ops);
        w.check(&[]);
    }

    // Teardown: the devices, then the IOASes (destroyable now), then the
    // iommufd, which takes whatever lingered with it.
    w.devices.clear();
    w.sim.clear_faults();
    w.faults.pending.clear();
    w.check(&[]);
    while !ioases.is_empty() {
        retire(&mut ioases, &mut w, 0, false);
        w.check(&[]);
    }
    drop(ioases);
    drop(fd);
    let left = w.sim.mappings();
    assert!(left.is_empty(), "mappings left after teardown: {left:x?}");
    drop(w);
    assert_eq!(fds(Some(&sim)), with_sim, "fds leaked (simulator alive)");
    drop(buffers);
    drop(sim);
    assert_eq!(fds(None), before, "fds leaked");
});
