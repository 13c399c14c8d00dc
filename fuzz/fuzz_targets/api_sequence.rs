//! Sequences of typed-API operations on a fresh simulated kernel
//! (`Simulator::new()`: groups 1 and 2, an edu device in each), with
//! injected faults between them. Every operation is applied when the
//! current state has it and skipped otherwise. After each step: every live
//! `DmaMapping` guard's range is in `sim.mappings()`, and the simulator
//! holds exactly the mappings a small reference model expects (guards plus
//! ranges whose unmap failed, plus, while a device keeps a dropped
//! container's group attached, that container's leftovers). A failed
//! transition hands its objects back and they go on being used. At the end,
//! with everything dropped, no mapping is left and the process has the fds
//! it had before the input.
#![no_main]

use std::iter::Peekable;
use std::os::fd::AsFd;
use std::vec::IntoIter;

use arbitrary::Arbitrary;
use fuzz_oracle::Faults;
use libfuzzer_sys::fuzz_target;
use nix::sys::eventfd::{EfdFlags, EventFd};
use typed_vfio::sim::Simulator;
use typed_vfio::{
    Attached, Container, DmaAccess, DmaBuffer, DmaMapping, DmaModel, Errno, Group, GroupError,
    IommuModel, NoIommu, Type1, Type1v2, Unset,
};

/// Operations per input, at most.
const MAX_OPS: usize = 64;
/// Live mapping guards, at most.
const MAX_GUARDS: usize = 8;
/// Open devices, at most.
const MAX_DEVICES: usize = 4;

/// Buffer sizes (one buffer each, allocated per input).
const BUFFERS: [usize; 3] = [0x1000, 0x2000, 0x1_0000];

/// IOVAs, good and bad: aligned, overlapping the first two, unaligned, in
/// the x86 MSI hole, past the address width, overflowing, zero.
const IOVAS: [u64; 8] = [
    0x10_0000,
    0x20_0000,
    0x10_1000,
    0x10_0123,
    0xfee0_0000,
    0x100_0000_0000,
    u64::MAX - 0xfff,
    0,
];

const GROUPS: [u32; 3] = [1, 2, 3];
const DEVICES: [&str; 4] = ["0000:01:00.0", "0000:02:00.0", "0000:03:00.0", "bogus"];

/// Requests faults may be injected on.
const REQUESTS: [&str; 16] = [
    "open",
    "VFIO_GET_API_VERSION",
    "VFIO_CHECK_EXTENSION",
    "VFIO_SET_IOMMU",
    "VFIO_IOMMU_GET_INFO",
    "VFIO_IOMMU_MAP_DMA",
    "VFIO_IOMMU_UNMAP_DMA",
    "VFIO_GROUP_GET_STATUS",
    "VFIO_GROUP_SET_CONTAINER",
    "VFIO_GROUP_UNSET_CONTAINER",
    "VFIO_GROUP_GET_DEVICE_FD",
    "VFIO_DEVICE_GET_INFO",
    "VFIO_DEVICE_GET_REGION_INFO",
    "VFIO_DEVICE_GET_IRQ_INFO",
    "VFIO_DEVICE_SET_IRQS",
    "VFIO_DEVICE_RESET",
];

const ERRNOS: [Errno; 7] = [
    Errno::EIO,
    Errno::ENOMEM,
    Errno::EBUSY,
    Errno::EINVAL,
    Errno::EFAULT,
    Errno::ENOSPC,
    Errno::EPERM,
];

const UNMAP: &str = "VFIO_IOMMU_UNMAP_DMA";

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Model {
    Type1,
    Type1v2,
    NoIommu,
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Access {
    Read,
    Write,
    ReadWrite,
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Op {
    OpenContainer,
    OpenGroup(u8),
    DropGroup(u8),
    Attach(u8),
    AttachMore(u8),
    SetIommu(Model),
    OpenDevice(u8),
    DropDevice(u8),
    Map {
        buffer: u8,
        iova: u8,
        access: Access,
    },
    DropMapping {
        index: u8,
        explicit: bool,
    },
    UnmapAll,
    SetIrq {
        device: u8,
        index: u8,
        vector: u8,
    },
    DisableIrq {
        device: u8,
        index: u8,
    },
    TriggerIrq {
        device: u8,
        index: u8,
        start: u8,
        count: u8,
    },
    MaskIrq {
        device: u8,
        index: u8,
    },
    UnmaskIrq {
        device: u8,
        index: u8,
    },
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
    /// Needs the container by value or `&mut`: not while a guard borrows it.
    fn exclusive(self) -> bool {
        matches!(
            self,
            Op::OpenContainer
                | Op::Attach(_)
                | Op::AttachMore(_)
                | Op::SetIommu(_)
                | Op::UnmapAll
                | Op::Release
                | Op::DropContainer
        )
    }
}

fn pick<T: Copy>(list: &[T], i: u8) -> T {
    list[i as usize % list.len()]
}

/// The container, in whichever state it is.
enum Cont {
    None,
    Unset(Container<Unset>),
    Attached(Container<Attached>),
    Type1(Container<Type1>),
    Type1v2(Container<Type1v2>),
    NoIommu(Container<NoIommu>),
}

impl Cont {
    fn group_count(&self) -> Option<usize> {
        match self {
            Cont::None => None,
            Cont::Unset(c) => Some(c.groups().len()),
            Cont::Attached(c) => Some(c.groups().len()),
            Cont::Type1(c) => Some(c.groups().len()),
            Cont::Type1v2(c) => Some(c.groups().len()),
            Cont::NoIommu(c) => Some(c.groups().len()),
        }
    }
}

/// Everything but the container and the guards.
struct World {
    sim: Simulator,
    faults: Faults,
    groups: Vec<Group>,
    devices: Vec<typed_vfio::Device>,
    eventfds: Vec<EventFd>,
    /// Mappings of the current container the simulator must hold.
    expected: Vec<(u64, u64)>,
    /// Mappings of dropped containers, which may linger while a device
    /// keeps their group attached.
    lingering: Vec<(u64, u64)>,
    /// `API_SEQUENCE_TRACE` is set: print each step's state.
    trace: bool,
}

type Opener<'a> = &'a dyn Fn(&str) -> Result<typed_vfio::Device, GroupError>;

impl World {
    /// The invariants, with `guards` the ranges of the live guards.
    fn check(&mut self, guards: &[(u64, u64)]) {
        self.faults.sync(&self.sim);
        let live: Vec<(u64, u64)> = self
            .sim
            .mappings()
            .iter()
            .map(|m| (m.iova, m.size))
            .collect();
        if self.trace {
            eprintln!(
                "  guards {guards:x?} sim {live:x?} devices {} groups {}",
                self.devices.len(),
                self.groups.len()
            );
        }
        if self.devices.is_empty() {
            self.lingering.clear();
        }
        for g in guards {
            assert!(self.expected.contains(g), "guard {g:x?} not in the model");
            assert!(live.contains(g), "guard {g:x?} not in the simulator");
        }
        for e in &self.expected {
            assert!(
                live.contains(e),
                "expected mapping {e:x?} missing: {live:x?}"
            );
        }
        for m in &live {
            assert!(
                self.expected.contains(m) || self.lingering.contains(m),
                "unknown mapping {m:x?}; expected {:x?}, lingering {:x?}",
                self.expected,
                self.lingering
            );
        }
    }

    fn forget(&mut self, range: (u64, u64)) {
        let at = self.expected.iter().position(|&e| e == range).unwrap();
        self.expected.swap_remove(at);
    }

    /// Operations that need no container, or only `open`; false if `op`
    /// is not one.
    fn shared(&mut self, op: Op, open: Option<Opener<'_>>) -> bool {
        match op {
            Op::OpenGroup(g) => {
                if let Ok(group) = self.sim.open_group(pick(&GROUPS, g)) {
                    self.groups.push(group);
                }
            }
            Op::DropGroup(i) => {
                if !self.groups.is_empty() {
                    let i = i as usize % self.groups.len();
                    drop(self.groups.swap_remove(i));
                }
            }
            Op::OpenDevice(d) => {
                if let Some(open) = open
                    && self.devices.len() < MAX_DEVICES
                    && let Ok(device) = open(pick(&DEVICES, d))
                {
                    self.devices.push(device);
                }
            }
            Op::DropDevice(i) => {
                if !self.devices.is_empty() {
                    let i = i as usize % self.devices.len();
                    drop(self.devices.swap_remove(i));
                }
            }
            Op::SetIrq {
                device,
                index,
                vector,
            } => {
                if let Some(dev) = self.device(device) {
                    let efd = EventFd::from_value_and_flags(
                        0,
                        EfdFlags::EFD_CLOEXEC | EfdFlags::EFD_NONBLOCK,
                    )
                    .expect("eventfd");
                    let _ =
                        dev.set_irq_eventfd((index % 5) as u32, (vector % 3) as u32, efd.as_fd());
                    // The kernel holds its own reference; keeping ours a
                    // while exercises both orders of closing.
                    if self.eventfds.len() < 4 {
                        self.eventfds.push(efd);
                    }
                }
            }
            Op::DisableIrq { device, index } => {
                if let Some(dev) = self.device(device) {
                    let _ = dev.disable_irq((index % 5) as u32);
                }
            }
            Op::TriggerIrq {
                device,
                index,
                start,
                count,
            } => {
                if let Some(dev) = self.device(device) {
                    let _ =
                        dev.trigger_irq((index % 5) as u32, (start % 3) as u32, (count % 3) as u32);
                }
            }
            Op::MaskIrq { device, index } => {
                if let Some(dev) = self.device(device) {
                    let _ = dev.mask_irq((index % 5) as u32, 0, 1);
                }
            }
            Op::UnmaskIrq { device, index } => {
                if let Some(dev) = self.device(device) {
                    let _ = dev.unmask_irq((index % 5) as u32, 0, 1);
                }
            }
            Op::Reset(device) => {
                if let Some(dev) = self.device(device) {
                    let _ = dev.reset();
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

    fn device(&self, i: u8) -> Option<&typed_vfio::Device> {
        if self.devices.is_empty() {
            None
        } else {
            Some(&self.devices[i as usize % self.devices.len()])
        }
    }
}

/// Maps `buffer` at `iova`; the guard goes to `guards` and the model.
fn map<'a, M: DmaModel>(
    c: &'a Container<M>,
    buffers: &'a [DmaBuffer],
    w: &mut World,
    guards: &mut Vec<DmaMapping<'a>>,
    (buffer, iova, access): (u8, u8, Access),
) {
    if guards.len() >= MAX_GUARDS {
        return;
    }
    let buffer = &buffers[buffer as usize % buffers.len()];
    let iova = pick(&IOVAS, iova);
    let access = match access {
        Access::Read => DmaAccess::DeviceReads,
        Access::Write => DmaAccess::DeviceWrites,
        Access::ReadWrite => DmaAccess::ReadWrite,
    };
    if let Ok(guard) = c.map(buffer, iova, access) {
        assert_eq!((guard.iova(), guard.size()), (iova, buffer.len() as u64));
        assert!(buffer.is_mapped());
        w.expected.push((iova, buffer.len() as u64));
        guards.push(guard);
    }
}

/// Unmaps one guard (by `unmap` or by drop); a failed unmap leaves its range
/// mapped (the container keeps the pages as an orphan), which the model then
/// keeps.
fn unmap_guard(w: &mut World, guard: DmaMapping<'_>, explicit: bool) {
    w.faults.sync(&w.sim);
    let range = (guard.iova(), guard.size());
    let before = w.sim.calls(UNMAP);
    let result = if explicit {
        Some(guard.unmap())
    } else {
        drop(guard);
        None
    };
    assert_eq!(w.sim.calls(UNMAP), before + 1, "one UNMAP_DMA per guard");
    w.faults.seen.insert(UNMAP, before + 1);
    let fired = w.faults.call(UNMAP);
    if let Some(result) = result {
        assert_eq!(result.is_err(), fired, "unmap result {result:?}");
    }
    if !fired {
        w.forget(range);
    }
}

/// While guards borrow `c`: applies operations until the last guard is
/// gone or one needs `c` exclusively (left in `ops`, guards unmapped first).
fn mapped<M: DmaModel>(
    c: &Container<M>,
    buffers: &[DmaBuffer],
    w: &mut World,
    ops: &mut Peekable<IntoIter<Op>>,
    first: (u8, u8, Access),
) {
    let mut guards = Vec::new();
    map(c, buffers, w, &mut guards, first);
    let ranges =
        |g: &Vec<DmaMapping<'_>>| g.iter().map(|m| (m.iova(), m.size())).collect::<Vec<_>>();
    w.check(&ranges(&guards));
    while !guards.is_empty() {
        let Some(&op) = ops.peek() else { break };
        if op.exclusive() {
            break;
        }
        ops.next();
        match op {
            Op::Map {
                buffer,
                iova,
                access,
            } => map(c, buffers, w, &mut guards, (buffer, iova, access)),
            Op::DropMapping { index, explicit } => {
                let g = guards.remove(index as usize % guards.len());
                unmap_guard(w, g, explicit);
            }
            op => {
                let open = |name: &str| c.open_device(name);
                w.shared(op, Some(&open));
            }
        }
        w.check(&ranges(&guards));
    }
    while let Some(g) = guards.pop() {
        unmap_guard(w, g, true);
        w.check(&ranges(&guards));
    }
}

/// Attaches one more free group to a container that has groups.
fn attach_more<S: typed_vfio::HasGroups>(c: &mut Container<S>, w: &mut World, i: u8) {
    if w.groups.is_empty() {
        return;
    }
    let group = w.groups.swap_remove(i as usize % w.groups.len());
    let (id, n) = (group.id(), c.groups().len());
    if let Err((group, _)) = c.attach_more(group) {
        assert_eq!(group.id(), id);
        assert_eq!(c.groups().len(), n);
        w.groups.push(group);
    } else {
        assert_eq!(c.groups().len(), n + 1);
    }
}

/// `release_groups`: on success the container comes back unset with every
/// group; on failure in its state with the groups that stayed.
fn release<S: typed_vfio::HasGroups>(
    c: Container<S>,
    w: &mut World,
    wrap: fn(Container<S>) -> Cont,
) -> Cont {
    let n = c.groups().len();
    match c.release_groups() {
        Ok((c, groups)) => {
            assert_eq!(groups.len(), n);
            assert!(c.groups().is_empty());
            w.groups.extend(groups);
            w.expected.clear();
            Cont::Unset(c)
        }
        Err(e) => {
            assert_eq!(e.container.groups().len() + e.released.len(), n);
            assert!(!e.container.groups().is_empty());
            w.groups.extend(e.released);
            wrap(e.container)
        }
    }
}

fn set_iommu<M: IommuModel>(c: Container<Attached>, wrap: fn(Container<M>) -> Cont) -> Cont {
    let n = c.groups().len();
    match c.set_iommu::<M>() {
        Ok(c) => {
            assert_eq!(c.groups().len(), n);
            wrap(c)
        }
        Err(e) => {
            assert_eq!(e.container.groups().len(), n);
            Cont::Attached(e.container)
        }
    }
}

fn unmap_all<M: DmaModel>(c: &mut Container<M>, w: &mut World) {
    if let Ok(bytes) = c.unmap_all() {
        let total: u64 = w.expected.iter().map(|&(_, s)| s).sum();
        assert_eq!(bytes, total, "unmap_all reported {bytes:#x}");
        w.expected.clear();
    }
}

/// Applies one operation outside any mapping scope.
fn step(
    cont: Cont,
    w: &mut World,
    buffers: &[DmaBuffer],
    op: Op,
    ops: &mut Peekable<IntoIter<Op>>,
) -> Cont {
    match (op, cont) {
        (Op::OpenContainer, Cont::None) => match w.sim.open_container() {
            Ok(c) => Cont::Unset(c),
            Err(_) => Cont::None,
        },
        (Op::Attach(i), Cont::Unset(c)) if !w.groups.is_empty() => {
            let group = w.groups.swap_remove(i as usize % w.groups.len());
            let id = group.id();
            match c.attach(group) {
                Ok(c) => {
                    assert_eq!(c.groups().len(), 1);
                    Cont::Attached(c)
                }
                Err(e) => {
                    assert_eq!(e.group.id(), id);
                    assert!(e.container.groups().is_empty());
                    w.groups.push(e.group);
                    Cont::Unset(e.container)
                }
            }
        }
        (Op::AttachMore(i), mut cont) => {
            match &mut cont {
                Cont::Attached(c) => attach_more(c, w, i),
                Cont::Type1(c) => attach_more(c, w, i),
                Cont::Type1v2(c) => attach_more(c, w, i),
                Cont::NoIommu(c) => attach_more(c, w, i),
                Cont::None | Cont::Unset(_) => {}
            }
            cont
        }
        (Op::SetIommu(m), Cont::Attached(c)) => match m {
            Model::Type1 => set_iommu(c, Cont::Type1),
            Model::Type1v2 => set_iommu(c, Cont::Type1v2),
            Model::NoIommu => set_iommu(c, Cont::NoIommu),
        },
        (
            Op::Map {
                buffer,
                iova,
                access,
            },
            cont,
        ) => {
            let first = (buffer, iova, access);
            match &cont {
                Cont::Type1(c) => mapped(c, buffers, w, ops, first),
                Cont::Type1v2(c) => mapped(c, buffers, w, ops, first),
                _ => {}
            }
            cont
        }
        (Op::UnmapAll, mut cont) => {
            match &mut cont {
                Cont::Type1(c) => unmap_all(c, w),
                Cont::Type1v2(c) => unmap_all(c, w),
                _ => {}
            }
            cont
        }
        (Op::Release, cont) => match cont {
            Cont::Attached(c) => release(c, w, Cont::Attached),
            Cont::Type1(c) => release(c, w, Cont::Type1),
            Cont::Type1v2(c) => release(c, w, Cont::Type1v2),
            Cont::NoIommu(c) => release(c, w, Cont::NoIommu),
            other => other,
        },
        (Op::DropContainer, cont) => {
            drop(cont);
            w.lingering.append(&mut w.expected);
            Cont::None
        }
        (op, cont) => {
            match &cont {
                Cont::Type1(c) => w.shared(op, Some(&|n: &str| c.open_device(n))),
                Cont::Type1v2(c) => w.shared(op, Some(&|n: &str| c.open_device(n))),
                Cont::NoIommu(c) => w.shared(op, Some(&|n: &str| c.open_device(n))),
                _ => w.shared(op, None),
            };
            cont
        }
    }
}

/// Open fds of this process (after a simulator call, which releases the
/// simulator's end of closed objects).
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
    let mut w = World {
        sim: sim.clone(),
        faults: Faults::new(&REQUESTS),
        groups: Vec::new(),
        devices: Vec::new(),
        eventfds: Vec::new(),
        expected: Vec::new(),
        lingering: Vec::new(),
        trace: std::env::var_os("API_SEQUENCE_TRACE").is_some(),
    };
    let mut ops = input
        .into_iter()
        .take(MAX_OPS)
        .collect::<Vec<_>>()
        .into_iter()
        .peekable();
    let mut cont = Cont::None;
    while let Some(op) = ops.next() {
        if w.trace {
            eprintln!("{op:?}");
        }
        let groups = cont.group_count();
        cont = step(cont, &mut w, &buffers, op, &mut ops);
        if let (Some(n), Some(m)) = (groups, cont.group_count())
            && !matches!(op, Op::Attach(_) | Op::AttachMore(_) | Op::Release)
        {
            assert_eq!(n, m, "{op:?} changed the container's groups");
        }
        w.check(&[]);
    }

    // Teardown: the container, the devices, the groups, the eventfds.
    drop(cont);
    w.lingering.append(&mut w.expected);
    w.check(&[]);
    w.devices.clear();
    w.check(&[]);
    assert!(w.sim.mappings().is_empty(), "mappings left after teardown");
    w.groups.clear();
    w.eventfds.clear();
    drop(w);
    assert_eq!(fds(Some(&sim)), with_sim, "fds leaked (simulator alive)");
    drop(buffers);
    drop(sim);
    assert_eq!(fds(None), before, "fds leaked");
});
