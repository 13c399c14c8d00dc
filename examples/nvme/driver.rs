//! A user-space NVMe driver written against typed-vfio's public API only.
//!
//! It brings a controller up (disable, admin queue, enable, each step bound
//! by CAP.TO), identifies it and namespace 1, creates I/O queue pairs, reads
//! and writes blocks through PRP lists with polled or MSI-X completion, and
//! shuts it down leaving it reset. Everything the device writes (CAP,
//! CSTS, Identify data, completion entries) is untrusted: every field is
//! bounded before it sizes, indexes or ends anything, and a field out of
//! bounds is [`NvmeError::Malformed`].
//!
//! Memory: one [`DmaBuffer`] arena, mapped once by the caller (through the
//! IOMMU, or by physical address under no-IOMMU: [`Arena`]), is carved into
//! the queues, a page for Identify, and per command slot a PRP-list page and
//! a data buffer. An I/O allocates nothing; in polled mode it makes no
//! system call when the BAR is mmap-ed (doorbells are MMIO stores and
//! completions are read from DMA memory).
//!
//! Byte order: NVMe structures are little-endian; every access goes through
//! the `_le` accessors of [`DmaBuffer`] and [`MappedRegion`] (little-endian,
//! PCI's order), so the driver reads the same on big-endian hosts.

use std::fmt;
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use typed_vfio::{Device, DeviceError, DmaBuffer, DmaError, MappedRegion, Msix, Region};

/// The host page: NVMe memory page size 4 KiB (CC.MPS = 0).
pub const PAGE: usize = 4096;
const SQE: usize = 64;
const CQE: usize = 16;
/// Admin queue depth.
const ADMIN_DEPTH: u16 = 32;

/// What can go wrong.
#[derive(Debug)]
pub enum NvmeError {
    /// A VFIO device request failed.
    Vfio(DeviceError),
    /// DMA memory access failed.
    Dma(DmaError),
    /// The controller did not do `what` within `waited`.
    Timeout {
        what: &'static str,
        waited: Duration,
    },
    /// The controller reports Controller Fatal Status (CSTS.CFS).
    Fatal,
    /// A device-written field out of bounds, or a completion that matches
    /// no outstanding command.
    Malformed { what: &'static str, value: u64 },
    /// The controller lacks something this driver needs.
    Unsupported { what: &'static str, value: u64 },
    /// A command completed with an error status (`sct << 8 | sc`).
    Command { opcode: u8, status: u16 },
    /// Blocks outside the namespace.
    LbaOutOfRange {
        lba: u64,
        blocks: u64,
        capacity: u64,
    },
    /// A transfer larger than one command slot or the controller's MDTS.
    TransferTooLarge { bytes: usize, max: usize },
    /// A caller's buffer of the wrong length for the blocks asked.
    BadBuffer { bytes: usize, expected: usize },
    /// Every slot of the queue is in use.
    QueueFull,
    /// The arena is too small for the queues asked for.
    ArenaTooSmall { needed: usize, have: usize },
    /// The arena's bus address of an offset is unknown (a no-IOMMU page
    /// the pagemap did not give).
    NoBusAddress { offset: usize },
    /// Waiting for an interrupt failed.
    Wait(nix::errno::Errno),
}

impl fmt::Display for NvmeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NvmeError::Vfio(e) => write!(f, "vfio: {e}"),
            NvmeError::Dma(e) => write!(f, "dma: {e}"),
            NvmeError::Timeout { what, waited } => write!(f, "timeout after {waited:?}: {what}"),
            NvmeError::Fatal => write!(f, "controller fatal status (CSTS.CFS)"),
            NvmeError::Malformed { what, value } => {
                write!(f, "device wrote a malformed {what} ({value:#x})")
            }
            NvmeError::Unsupported { what, value } => write!(f, "unsupported {what} ({value:#x})"),
            NvmeError::Command { opcode, status } => {
                write!(f, "command {opcode:#04x} failed with status {status:#05x}")
            }
            NvmeError::LbaOutOfRange {
                lba,
                blocks,
                capacity,
            } => write!(
                f,
                "blocks {lba}+{blocks} outside the namespace's {capacity}"
            ),
            NvmeError::TransferTooLarge { bytes, max } => {
                write!(f, "transfer of {bytes} bytes exceeds {max}")
            }
            NvmeError::BadBuffer { bytes, expected } => {
                write!(f, "buffer of {bytes} bytes for a transfer of {expected}")
            }
            NvmeError::QueueFull => write!(f, "queue full"),
            NvmeError::ArenaTooSmall { needed, have } => {
                write!(f, "DMA arena of {have} bytes, {needed} needed")
            }
            NvmeError::NoBusAddress { offset } => {
                write!(f, "no bus address for arena offset {offset:#x}")
            }
            NvmeError::Wait(e) => write!(f, "waiting for an interrupt: {e}"),
        }
    }
}

impl std::error::Error for NvmeError {}

impl From<DeviceError> for NvmeError {
    fn from(e: DeviceError) -> Self {
        NvmeError::Vfio(e)
    }
}

impl From<DmaError> for NvmeError {
    fn from(e: DmaError) -> Self {
        NvmeError::Dma(e)
    }
}

/// How the arena's bytes are reached by the device.
#[derive(Debug)]
enum Bus {
    /// Mapped contiguously at an IOVA.
    Iova(u64),
    /// No IOMMU: physical runs `(address, length)` in buffer order.
    Physical(Vec<(u64, usize)>),
}

/// The driver's DMA memory: a buffer the caller has made reachable by the
/// device, and how.
#[derive(Debug)]
pub struct Arena<'b> {
    buf: &'b DmaBuffer,
    bus: Bus,
}

impl<'b> Arena<'b> {
    /// A buffer the caller mapped at `iova` (type1, type1v2, iommufd), for
    /// as long as the arena lives.
    pub fn mapped(buf: &'b DmaBuffer, iova: u64) -> Self {
        Arena {
            buf,
            bus: Bus::Iova(iova),
        }
    }

    /// A buffer reached by physical address (no-IOMMU), from
    /// `/proc/self/pagemap` ([`DmaBuffer::physical_runs`]).
    pub fn physical(buf: &'b DmaBuffer) -> std::io::Result<Self> {
        Ok(Arena {
            buf,
            bus: Bus::Physical(buf.physical_runs()?),
        })
    }

    /// The bus address of arena offset `offset`, valid for the rest of its
    /// page.
    fn bus(&self, offset: usize) -> Result<u64, NvmeError> {
        let none = NvmeError::NoBusAddress { offset };
        match &self.bus {
            Bus::Iova(iova) => iova.checked_add(offset as u64).ok_or(none),
            Bus::Physical(runs) => {
                let mut at = 0usize;
                for &(phys, len) in runs {
                    if offset < at + len {
                        return phys.checked_add((offset - at) as u64).ok_or(none);
                    }
                    at += len;
                }
                Err(none)
            }
        }
    }
}

/// BAR0: mmap-ed when the kernel allows, else through `pread`/`pwrite`.
#[derive(Debug)]
enum Bar<'d> {
    Mapped(MappedRegion<'d>),
    Pio(Region<'d>),
}

impl Bar<'_> {
    fn r32(&self, off: u64) -> Result<u32, NvmeError> {
        Ok(match self {
            Bar::Mapped(m) => m.read_u32(off)?,
            Bar::Pio(r) => r.read_u32(off)?,
        })
    }

    fn w32(&self, off: u64, v: u32) -> Result<(), NvmeError> {
        match self {
            Bar::Mapped(m) => m.write_u32(off, v)?,
            Bar::Pio(r) => r.write_u32(off, v)?,
        }
        Ok(())
    }

    /// A 64-bit register as two 32-bit accesses, low half first (NVMe
    /// allows it, and 32-bit hosts have no single 64-bit access).
    fn r64(&self, off: u64) -> Result<u64, NvmeError> {
        let lo = self.r32(off)?;
        let hi = self.r32(off + 4)?;
        Ok(u64::from(lo) | u64::from(hi) << 32)
    }

    fn w64(&self, off: u64, v: u64) -> Result<(), NvmeError> {
        self.w32(off, v as u32)?;
        self.w32(off + 4, (v >> 32) as u32)
    }
}

const REG_CAP: u64 = 0x00;
const REG_VS: u64 = 0x08;
const REG_CC: u64 = 0x14;
const REG_CSTS: u64 = 0x1c;
const REG_AQA: u64 = 0x24;
const REG_ASQ: u64 = 0x28;
const REG_ACQ: u64 = 0x30;
const CSTS_RDY: u32 = 1;
const CSTS_CFS: u32 = 2;
const CSTS_SHST_MASK: u32 = 3 << 2;
const CSTS_SHST_DONE: u32 = 2 << 2;

/// How completions are waited for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Completion {
    /// Spin on the completion queue's phase tag: no system call.
    Polled,
    /// Block on the queue's MSI-X vector's eventfd.
    Msix,
}

/// One submission/completion queue pair and its command slots.
#[derive(Debug)]
struct QueuePair {
    qid: u16,
    depth: u16,
    /// Arena offsets of the SQ and CQ.
    sq: usize,
    cq: usize,
    sq_tail: u16,
    /// The controller's SQ head, from the last completion.
    sq_head: u16,
    cq_head: u16,
    phase: bool,
    /// Per slot: its PRP-list page and data buffer offsets, and whether a
    /// command is outstanding (its opcode).
    slots: Vec<Slot>,
    /// The MSI-X vector, when interrupt-driven.
    vector: Option<u16>,
    /// Interrupts taken from the vector's eventfd while waiting.
    interrupts: u64,
}

#[derive(Clone, Copy, Debug)]
struct Slot {
    prp_list: usize,
    data: usize,
    busy: Option<u8>,
}

/// A completed command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Done {
    /// The slot (command id) it used.
    pub slot: u16,
    /// DW0 of the completion.
    pub result: u32,
}

/// What Identify Controller said, bounded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ControllerInfo {
    pub vid: u16,
    pub serial: String,
    pub model: String,
    pub firmware: String,
    /// Largest transfer, bytes (MDTS; `None`: no limit).
    pub mdts: Option<usize>,
    /// Namespaces (NN).
    pub namespaces: u32,
}

/// What Identify Namespace said, bounded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NamespaceInfo {
    pub nsid: u32,
    /// Blocks (NSZE).
    pub blocks: u64,
    /// Block size, bytes (512 to 4096).
    pub block_size: usize,
}

/// Driver settings.
#[derive(Clone, Copy, Debug)]
pub struct Config {
    /// I/O queue pairs.
    pub queues: u16,
    /// Slots (outstanding commands) per I/O queue, at most 64; the queue
    /// has one entry more.
    pub depth: u16,
    /// Data buffer per slot, bytes (a multiple of the page).
    pub slot_bytes: usize,
    /// How completions are waited for.
    pub completion: Completion,
    /// How long one command may take.
    pub command_timeout: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            queues: 1,
            depth: 32,
            slot_bytes: 4 * PAGE,
            completion: Completion::Polled,
            command_timeout: Duration::from_secs(5),
        }
    }
}

impl Config {
    /// Arena bytes these settings need.
    pub fn arena_bytes(&self) -> usize {
        let admin = 3 * PAGE;
        let pair = 2 * PAGE + usize::from(self.depth) * (PAGE + self.slot_bytes);
        admin + usize::from(self.queues) * pair
    }
}

/// An enabled NVMe controller with its I/O queues.
#[derive(Debug)]
pub struct Controller<'d, 'b> {
    device: &'d Device,
    bar: Bar<'d>,
    arena: Arena<'b>,
    stride: u64,
    timeout: Duration,
    config: Config,
    admin: QueuePair,
    io: Vec<QueuePair>,
    identify_page: usize,
    msix: Option<Msix<'d>>,
    events: Vec<nix::sys::eventfd::EventFd>,
    pub controller: ControllerInfo,
    pub namespace: NamespaceInfo,
    max_transfer: usize,
}

fn le16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}
fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}
fn le64(b: &[u8], at: usize) -> u64 {
    u64::from(le32(b, at)) | u64::from(le32(b, at + 4)) << 32
}

/// Text fields of Identify: ASCII, space padded; anything else shown as '?'.
fn text(b: &[u8]) -> String {
    b.iter()
        .map(|&c| {
            if c.is_ascii_graphic() || c == b' ' {
                c as char
            } else {
                '?'
            }
        })
        .collect::<String>()
        .trim_end()
        .to_owned()
}

impl<'d, 'b> Controller<'d, 'b> {
    /// Brings the controller up: disable, admin queue, enable, Identify,
    /// Number of Queues, and `config.queues` I/O queue pairs (with MSI-X
    /// vectors 1.. when `config.completion` is [`Completion::Msix`]).
    pub fn new(device: &'d Device, arena: Arena<'b>, config: Config) -> Result<Self, NvmeError> {
        if config.depth == 0 || config.depth > 64 || config.queues == 0 {
            return Err(NvmeError::Unsupported {
                what: "queue settings",
                value: u64::from(config.depth),
            });
        }
        if config.slot_bytes == 0
            || !config.slot_bytes.is_multiple_of(PAGE)
            || config.slot_bytes > 512 * PAGE
        {
            return Err(NvmeError::Unsupported {
                what: "slot size",
                value: config.slot_bytes as u64,
            });
        }
        let needed = config.arena_bytes();
        if arena.buf.len() < needed {
            return Err(NvmeError::ArenaTooSmall {
                needed,
                have: arena.buf.len(),
            });
        }
        let region = device.region(0)?; // BAR0
        let bar = match region.mmap() {
            Ok(m) => Bar::Mapped(m),
            Err(DeviceError::NotPermitted { .. }) => Bar::Pio(region),
            Err(e) => return Err(e.into()),
        };
        let cap = bar.r64(REG_CAP)?;
        let mqes = (cap & 0xffff) as u16;
        if mqes == 0 {
            return Err(NvmeError::Malformed {
                what: "CAP.MQES",
                value: 0,
            });
        }
        if cap >> 37 & 1 == 0 {
            return Err(NvmeError::Unsupported {
                what: "command sets (CAP.CSS without NVM)",
                value: cap >> 37 & 0xff,
            });
        }
        if cap >> 48 & 0xf != 0 {
            return Err(NvmeError::Unsupported {
                what: "CAP.MPSMIN above 4 KiB",
                value: cap >> 48 & 0xf,
            });
        }
        let dstrd = (cap >> 32 & 0xf) as u32;
        // CAP.TO is in 500 ms units; 0 read as the least.
        let to = (cap >> 24 & 0xff).max(1);
        let timeout = Duration::from_millis(500 * to);
        // Queue depths within what the controller takes (MQES is 0-based).
        let admin_depth = ADMIN_DEPTH.min(mqes.saturating_add(1));
        let io_depth = (config.depth + 1).min(mqes.saturating_add(1));
        if io_depth < 2 || admin_depth < 2 {
            return Err(NvmeError::Malformed {
                what: "CAP.MQES",
                value: u64::from(mqes),
            });
        }
        let _vs = bar.r32(REG_VS)?;

        // Layout.
        let admin = QueuePair::new(0, admin_depth, 0, PAGE, &[], None);
        let identify_page = 2 * PAGE;
        let mut off = 3 * PAGE;
        let mut io = Vec::with_capacity(usize::from(config.queues));
        for q in 0..config.queues {
            let sq = off;
            let cq = off + PAGE;
            off += 2 * PAGE;
            let mut slots = Vec::with_capacity(usize::from(io_depth - 1));
            for _ in 0..io_depth - 1 {
                slots.push(Slot {
                    prp_list: off,
                    data: off + PAGE,
                    busy: None,
                });
                off += PAGE + config.slot_bytes;
            }
            let vector = (config.completion == Completion::Msix).then_some(q + 1);
            io.push(QueuePair::new(q + 1, io_depth, sq, cq, &slots, vector));
        }
        arena.buf.fill(0);

        let mut ctrl = Controller {
            device,
            bar,
            arena,
            stride: 4u64 << dstrd,
            timeout,
            config,
            admin,
            io: Vec::new(),
            identify_page,
            msix: None,
            events: Vec::new(),
            controller: ControllerInfo {
                vid: 0,
                serial: String::new(),
                model: String::new(),
                firmware: String::new(),
                mdts: None,
                namespaces: 0,
            },
            namespace: NamespaceInfo {
                nsid: 0,
                blocks: 0,
                block_size: 512,
            },
            max_transfer: config.slot_bytes,
        };
        ctrl.disable()?;
        device.set_bus_master(true)?;
        if config.completion == Completion::Msix {
            ctrl.enable_msix()?;
        }
        ctrl.enable()?;
        ctrl.identify()?;
        ctrl.set_queues()?;
        for qp in io {
            ctrl.create_pair(&qp)?;
            ctrl.io.push(qp);
        }
        Ok(ctrl)
    }

    /// MSI-X: vector 0 (admin, unused: the admin queue is polled) and one
    /// per I/O queue, each with its own eventfd.
    fn enable_msix(&mut self) -> Result<(), NvmeError> {
        use nix::sys::eventfd::{EfdFlags, EventFd};
        let n = usize::from(self.config.queues) + 1;
        let mut events = Vec::with_capacity(n);
        for _ in 0..n {
            events.push(EventFd::from_flags(EfdFlags::EFD_NONBLOCK).map_err(NvmeError::Wait)?);
        }
        let fds: Vec<_> = events.iter().map(|e| Some(e.as_fd())).collect();
        self.msix = Some(self.device.enable_msix(&fds)?);
        self.events = events;
        Ok(())
    }

    /// Interrupts queue `q`'s MSI-X vector has signalled since last asked
    /// (its eventfd's counter, drained); 0 when polled.
    pub fn take_interrupts(&mut self, q: usize) -> u64 {
        let Some(qp) = self.io.get_mut(q) else {
            return 0;
        };
        let Some(v) = qp.vector else {
            return 0;
        };
        let pending = self
            .events
            .get(usize::from(v))
            .and_then(|e| e.read().ok())
            .unwrap_or(0);
        std::mem::take(&mut qp.interrupts) + pending
    }

    /// The admin queues' first entries, for diagnostics: each CQE's DW2 and
    /// DW3, each SQE's DW0, and the driver's heads and phase.
    pub fn admin_dump(&self) -> String {
        let mut out = format!(
            "sq_tail {} sq_head {} cq_head {} phase {}; CQ:",
            self.admin.sq_tail, self.admin.sq_head, self.admin.cq_head, self.admin.phase
        );
        for i in 0..6 {
            let at = self.admin.cq + i * CQE;
            let dw2 = self.arena.buf.read_u32_le(at + 8).unwrap_or(0);
            let dw3 = self.arena.buf.read_u32_le(at + 12).unwrap_or(0);
            out += &format!(" [{dw2:08x} {dw3:08x}]");
        }
        out += "; SQ:";
        for i in 0..6 {
            let dw0 = self
                .arena
                .buf
                .read_u32_le(self.admin.sq + i * SQE)
                .unwrap_or(0);
            out += &format!(" {dw0:08x}");
        }
        out
    }

    /// The MSI-X handle, when interrupt-driven.
    pub fn msix(&mut self) -> Option<&mut Msix<'d>> {
        self.msix.as_mut()
    }

    fn csts(&self) -> Result<u32, NvmeError> {
        self.bar.r32(REG_CSTS)
    }

    /// Waits (bounded by CAP.TO) until `done(CSTS)`; CFS is fatal when
    /// `fatal_cfs`.
    fn wait_csts(
        &self,
        what: &'static str,
        fatal_cfs: bool,
        done: impl Fn(u32) -> bool,
    ) -> Result<(), NvmeError> {
        let start = Instant::now();
        loop {
            let csts = self.csts()?;
            if csts == u32::MAX {
                // All ones: the device is gone (or its BAR unreadable).
                return Err(NvmeError::Malformed {
                    what: "CSTS (all ones)",
                    value: u64::from(csts),
                });
            }
            if fatal_cfs && csts & CSTS_CFS != 0 {
                return Err(NvmeError::Fatal);
            }
            if done(csts) {
                return Ok(());
            }
            if start.elapsed() > self.timeout {
                return Err(NvmeError::Timeout {
                    what,
                    waited: self.timeout,
                });
            }
            std::thread::sleep(Duration::from_micros(100));
        }
    }

    /// CC.EN = 0 and CSTS.RDY = 0: the controller reset, its queues gone.
    fn disable(&mut self) -> Result<(), NvmeError> {
        let cc = self.bar.r32(REG_CC)?;
        if cc & 1 != 0 {
            self.bar.w32(REG_CC, cc & !1)?;
        }
        self.wait_csts("CSTS.RDY to clear", false, |c| c & CSTS_RDY == 0)
    }

    fn enable(&mut self) -> Result<(), NvmeError> {
        if self.arena.bus(0)? == 0 {
            // A zeroed register or descriptor reads 0: controllers refuse
            // an admin queue there (QEMU's does).
            return Err(NvmeError::Unsupported {
                what: "arena at bus address 0",
                value: 0,
            });
        }
        let depth = u32::from(self.admin.depth - 1);
        self.bar.w32(REG_AQA, depth << 16 | depth)?;
        self.bar.w64(REG_ASQ, self.arena.bus(self.admin.sq)?)?;
        self.bar.w64(REG_ACQ, self.arena.bus(self.admin.cq)?)?;
        // EN, NVM command set, 4 KiB pages, round robin, 64-byte SQEs,
        // 16-byte CQEs.
        self.bar.w32(REG_CC, 1 | 6 << 16 | 4 << 20)?;
        self.wait_csts("CSTS.RDY to set", true, |c| c & CSTS_RDY != 0)
    }

    fn doorbell(&self, qid: u16, cq: bool, value: u16) -> Result<(), NvmeError> {
        let index = 2 * u64::from(qid) + u64::from(cq);
        self.bar.w32(0x1000 + index * self.stride, u32::from(value))
    }

    /// Writes a command into the queue's next entry and rings its doorbell
    /// (admin commands).
    fn submit(&mut self, admin: bool, q: usize, cmd: &[u32; 16]) -> Result<(), NvmeError> {
        self.enqueue(admin, q, cmd)?;
        let qp = if admin { &self.admin } else { &self.io[q] };
        // MappedRegion's store is ordered after the entry's (its I/O
        // barrier).
        self.doorbell(qp.qid, false, qp.sq_tail)
    }

    /// Writes a command into the queue's next entry (no doorbell).
    fn enqueue(&mut self, admin: bool, q: usize, cmd: &[u32; 16]) -> Result<(), NvmeError> {
        let (sq, depth, tail, head) = {
            let qp = if admin { &self.admin } else { &self.io[q] };
            (qp.sq, qp.depth, qp.sq_tail, qp.sq_head)
        };
        let next = (tail + 1) % depth;
        if next == head {
            return Err(NvmeError::QueueFull);
        }
        let at = sq + usize::from(tail) * SQE;
        for (i, dw) in cmd.iter().enumerate() {
            self.arena.buf.write_u32_le(at + 4 * i, *dw)?;
        }
        if admin {
            self.admin.sq_tail = next;
        } else {
            self.io[q].sq_tail = next;
        }
        Ok(())
    }

    /// The next completion of a queue, if the device has posted one; its
    /// fields checked against the queue.
    fn reap(&mut self, admin: bool, q: usize) -> Result<Option<(u16, u16, u32)>, NvmeError> {
        let qp = if admin {
            &mut self.admin
        } else {
            &mut self.io[q]
        };
        let at = qp.cq + usize::from(qp.cq_head) * CQE;
        let dw3 = self.arena.buf.read_u32_le(at + 12)?;
        if (dw3 >> 16 & 1 != 0) != qp.phase {
            return Ok(None);
        }
        let result = self.arena.buf.read_u32_le(at)?;
        let dw2 = self.arena.buf.read_u32_le(at + 8)?;
        let sq_head = (dw2 & 0xffff) as u16;
        let sqid = (dw2 >> 16) as u16;
        let cid = (dw3 & 0xffff) as u16;
        let status = (dw3 >> 17) as u16 & 0x7fff;
        // Consumed whatever it says: the entry is the device's word.
        qp.cq_head += 1;
        if qp.cq_head == qp.depth {
            qp.cq_head = 0;
            qp.phase = !qp.phase;
        }
        let (qid, depth) = (qp.qid, qp.depth);
        if sqid != qid {
            return Err(NvmeError::Malformed {
                what: "completion SQ id",
                value: u64::from(sqid),
            });
        }
        if sq_head >= depth {
            return Err(NvmeError::Malformed {
                what: "completion SQ head",
                value: u64::from(sq_head),
            });
        }
        let qp = if admin {
            &mut self.admin
        } else {
            &mut self.io[q]
        };
        qp.sq_head = sq_head;
        Ok(Some((cid, status, result)))
    }

    /// Runs one admin command to completion (polled, bounded).
    fn admin_cmd(&mut self, cmd: [u32; 16]) -> Result<u32, NvmeError> {
        let opcode = cmd[0] as u8;
        let cid = (cmd[0] >> 16) as u16;
        self.submit(true, 0, &cmd)?;
        let start = Instant::now();
        let mut spins = 0u32;
        loop {
            let reaped = self.reap(true, 0);
            if !matches!(reaped, Ok(None)) {
                self.ring_cq(true, 0)?;
            }
            if let Some((got, status, result)) = reaped? {
                if got != cid {
                    // The value: the command id, the status above it.
                    return Err(NvmeError::Malformed {
                        what: "admin completion command id (and status)",
                        value: u64::from(got) | u64::from(status) << 16,
                    });
                }
                if status != 0 {
                    return Err(NvmeError::Command { opcode, status });
                }
                return Ok(result);
            }
            spins = spins.wrapping_add(1);
            if spins.is_multiple_of(1024) {
                self.check_alive(start, "admin command")?;
            }
            std::hint::spin_loop();
        }
    }

    fn check_alive(&self, start: Instant, what: &'static str) -> Result<(), NvmeError> {
        if self.csts()? & CSTS_CFS != 0 {
            return Err(NvmeError::Fatal);
        }
        if start.elapsed() > self.config.command_timeout {
            return Err(NvmeError::Timeout {
                what,
                waited: self.config.command_timeout,
            });
        }
        Ok(())
    }

    fn identify(&mut self) -> Result<(), NvmeError> {
        let page = self.arena.bus(self.identify_page)?;
        let mut id = [0u8; PAGE];
        // Controller (CNS 1).
        let mut cmd = [0u32; 16];
        cmd[0] = 0x06 | 1 << 16;
        cmd[6] = page as u32;
        cmd[7] = (page >> 32) as u32;
        cmd[10] = 1;
        self.admin_cmd(cmd)?;
        self.arena.buf.read(self.identify_page, &mut id)?;
        let mdts = id[77];
        let sqes = id[512];
        let cqes = id[513];
        if sqes & 0xf > 6 || sqes >> 4 < 6 || cqes & 0xf > 4 || cqes >> 4 < 4 {
            return Err(NvmeError::Unsupported {
                what: "queue entry sizes (SQES/CQES)",
                value: u64::from(sqes) << 8 | u64::from(cqes),
            });
        }
        let nn = le32(&id, 516);
        if nn == 0 {
            return Err(NvmeError::Malformed {
                what: "Identify NN",
                value: 0,
            });
        }
        // MDTS is a power of two of the minimum page (4 KiB here); 0 is
        // no limit. Bounded by what a slot holds either way.
        let mdts_bytes = match mdts {
            0 => None,
            m => Some(PAGE.checked_shl(u32::from(m)).unwrap_or(usize::MAX)),
        };
        self.max_transfer =
            mdts_bytes.map_or(self.config.slot_bytes, |m| m.min(self.config.slot_bytes));
        self.controller = ControllerInfo {
            vid: le16(&id, 0),
            serial: text(&id[4..24]),
            model: text(&id[24..64]),
            firmware: text(&id[64..72]),
            mdts: mdts_bytes,
            namespaces: nn,
        };
        // Namespace 1 (CNS 0).
        self.arena.buf.write(self.identify_page, &[0u8; PAGE])?;
        let mut cmd = [0u32; 16];
        cmd[0] = 0x06 | 2 << 16;
        cmd[1] = 1;
        cmd[6] = page as u32;
        cmd[7] = (page >> 32) as u32;
        cmd[10] = 0;
        self.admin_cmd(cmd)?;
        self.arena.buf.read(self.identify_page, &mut id)?;
        let nsze = le64(&id, 0);
        let nlbaf = id[25];
        let flbas = id[26] & 0xf;
        if flbas > nlbaf || nlbaf > 63 {
            return Err(NvmeError::Malformed {
                what: "Identify Namespace FLBAS/NLBAF",
                value: u64::from(flbas) << 8 | u64::from(nlbaf),
            });
        }
        let lbaf = 128 + 4 * usize::from(flbas);
        let lbads = id[lbaf + 2];
        if !(9..=12).contains(&lbads) || le16(&id, lbaf) != 0 {
            return Err(NvmeError::Unsupported {
                what: "LBA format (block size 512..4096 without metadata)",
                value: u64::from(lbads),
            });
        }
        let block_size = 1usize << lbads;
        if nsze == 0 || nsze.checked_mul(block_size as u64).is_none() {
            return Err(NvmeError::Malformed {
                what: "Identify Namespace NSZE",
                value: nsze,
            });
        }
        if self.max_transfer < block_size {
            return Err(NvmeError::Unsupported {
                what: "MDTS below one block",
                value: u64::from(mdts),
            });
        }
        self.namespace = NamespaceInfo {
            nsid: 1,
            blocks: nsze,
            block_size,
        };
        Ok(())
    }

    fn set_queues(&mut self) -> Result<(), NvmeError> {
        let n = u32::from(self.config.queues - 1);
        let mut cmd = [0u32; 16];
        cmd[0] = 0x09 | 3 << 16;
        cmd[10] = 0x07;
        cmd[11] = n << 16 | n;
        let got = self.admin_cmd(cmd)?;
        let (sqs, cqs) = (got & 0xffff, got >> 16);
        if sqs < n || cqs < n {
            return Err(NvmeError::Unsupported {
                what: "I/O queue count",
                value: u64::from(sqs.min(cqs)) + 1,
            });
        }
        Ok(())
    }

    fn create_pair(&mut self, qp: &QueuePair) -> Result<(), NvmeError> {
        let size = u32::from(qp.depth - 1) << 16 | u32::from(qp.qid);
        let cq = self.arena.bus(qp.cq)?;
        let mut cmd = [0u32; 16];
        cmd[0] = 0x05 | 4 << 16;
        cmd[6] = cq as u32;
        cmd[7] = (cq >> 32) as u32;
        cmd[10] = size;
        cmd[11] = 1 | qp.vector.map_or(0, |v| 2 | u32::from(v) << 16);
        self.admin_cmd(cmd)?;
        let sq = self.arena.bus(qp.sq)?;
        let mut cmd = [0u32; 16];
        cmd[0] = 0x01 | 5 << 16;
        cmd[6] = sq as u32;
        cmd[7] = (sq >> 32) as u32;
        cmd[10] = size;
        cmd[11] = 1 | u32::from(qp.qid) << 16;
        self.admin_cmd(cmd)?;
        Ok(())
    }

    /// The largest transfer, bytes.
    pub fn max_transfer(&self) -> usize {
        self.max_transfer
    }

    /// Slots per I/O queue.
    pub fn depth(&self) -> u16 {
        self.io.first().map_or(0, |q| q.depth - 1)
    }

    fn check_range(&self, lba: u64, bytes: usize) -> Result<u64, NvmeError> {
        let bs = self.namespace.block_size;
        if bytes == 0 || !bytes.is_multiple_of(bs) {
            return Err(NvmeError::BadBuffer {
                bytes,
                expected: bytes.div_ceil(bs).max(1) * bs,
            });
        }
        if bytes > self.max_transfer {
            return Err(NvmeError::TransferTooLarge {
                bytes,
                max: self.max_transfer,
            });
        }
        let blocks = (bytes / bs) as u64;
        if lba
            .checked_add(blocks)
            .is_none_or(|end| end > self.namespace.blocks)
        {
            return Err(NvmeError::LbaOutOfRange {
                lba,
                blocks,
                capacity: self.namespace.blocks,
            });
        }
        Ok(blocks)
    }

    /// Submits a read (opcode 0x02) or write (0x01) of `bytes` at `lba` on
    /// queue `q` in slot `slot`; a write's data must already be in the
    /// slot's buffer ([`slot_write`](Self::slot_write)).
    pub fn submit_io(
        &mut self,
        q: usize,
        slot: u16,
        write: bool,
        lba: u64,
        bytes: usize,
    ) -> Result<(), NvmeError> {
        self.queue_io(q, slot, write, lba, bytes)?;
        self.ring_sq(q)
    }

    /// Writes an SQ tail doorbell: the commands queued with
    /// [`queue_io`](Self::queue_io) go to the device.
    pub fn ring_sq(&self, q: usize) -> Result<(), NvmeError> {
        let qp = &self.io[q];
        // MappedRegion's store is ordered after the entries' (its I/O
        // barrier).
        self.doorbell(qp.qid, false, qp.sq_tail)
    }

    /// As [`submit_io`](Self::submit_io), without the doorbell: a batch of
    /// commands, then one [`ring_sq`](Self::ring_sq).
    pub fn queue_io(
        &mut self,
        q: usize,
        slot: u16,
        write: bool,
        lba: u64,
        bytes: usize,
    ) -> Result<(), NvmeError> {
        let blocks = self.check_range(lba, bytes)?;
        let s = *self.io[q]
            .slots
            .get(usize::from(slot))
            .ok_or(NvmeError::QueueFull)?;
        if s.busy.is_some() {
            return Err(NvmeError::QueueFull);
        }
        let (prp1, prp2) = self.prps(s, bytes)?;
        let opcode: u8 = if write { 0x01 } else { 0x02 };
        let mut cmd = [0u32; 16];
        cmd[0] = u32::from(opcode) | u32::from(slot) << 16;
        cmd[1] = self.namespace.nsid;
        cmd[6] = prp1 as u32;
        cmd[7] = (prp1 >> 32) as u32;
        cmd[8] = prp2 as u32;
        cmd[9] = (prp2 >> 32) as u32;
        cmd[10] = lba as u32;
        cmd[11] = (lba >> 32) as u32;
        cmd[12] = (blocks - 1) as u32;
        self.enqueue(false, q, &cmd)?;
        self.io[q].slots[usize::from(slot)].busy = Some(opcode);
        Ok(())
    }

    /// PRP1 and PRP2 for `bytes` of a slot's data buffer: the first page,
    /// then the second page or the slot's PRP list of the rest.
    fn prps(&self, s: Slot, bytes: usize) -> Result<(u64, u64), NvmeError> {
        let prp1 = self.arena.bus(s.data)?;
        let pages = bytes.div_ceil(PAGE);
        let prp2 = match pages {
            1 => 0,
            2 => self.arena.bus(s.data + PAGE)?,
            n => {
                // One list page holds 512 entries: slots are at most 512
                // pages (checked in `new`), so no chaining is needed.
                for i in 1..n {
                    let e = self.arena.bus(s.data + i * PAGE)?;
                    self.arena.buf.write_u64_le(s.prp_list + 8 * (i - 1), e)?;
                }
                self.arena.bus(s.prp_list)?
            }
        };
        Ok((prp1, prp2))
    }

    /// Copies `data` into a slot's buffer (before a write).
    pub fn slot_write(&self, q: usize, slot: u16, data: &[u8]) -> Result<(), NvmeError> {
        let s = self.io[q]
            .slots
            .get(usize::from(slot))
            .ok_or(NvmeError::QueueFull)?;
        if data.len() > self.config.slot_bytes {
            return Err(NvmeError::TransferTooLarge {
                bytes: data.len(),
                max: self.config.slot_bytes,
            });
        }
        self.arena.buf.write(s.data, data)?;
        Ok(())
    }

    /// Copies a slot's buffer into `out` (after a read).
    pub fn slot_read(&self, q: usize, slot: u16, out: &mut [u8]) -> Result<(), NvmeError> {
        let s = self.io[q]
            .slots
            .get(usize::from(slot))
            .ok_or(NvmeError::QueueFull)?;
        if out.len() > self.config.slot_bytes {
            return Err(NvmeError::TransferTooLarge {
                bytes: out.len(),
                max: self.config.slot_bytes,
            });
        }
        self.arena.buf.read(s.data, out)?;
        Ok(())
    }

    /// Takes every completion queue `q` has posted, calling `f` for each;
    /// returns how many. A completion naming no outstanding slot is
    /// [`NvmeError::Malformed`].
    pub fn poll(&mut self, q: usize, f: impl FnMut(Done)) -> Result<usize, NvmeError> {
        let head = self.io[q].cq_head;
        let taken = self.take(q, f);
        // One CQ head doorbell for the batch (the entries consumed, even
        // when one of them was malformed).
        if self.io[q].cq_head != head {
            self.ring_cq(false, q)?;
        }
        taken
    }

    /// Writes a queue's CQ head doorbell.
    fn ring_cq(&self, admin: bool, q: usize) -> Result<(), NvmeError> {
        let qp = if admin { &self.admin } else { &self.io[q] };
        self.doorbell(qp.qid, true, qp.cq_head)
    }

    fn take(&mut self, q: usize, mut f: impl FnMut(Done)) -> Result<usize, NvmeError> {
        let mut n = 0;
        // Bounded: a queue holds `depth` entries; more in one call would
        // be the device posting without room.
        for _ in 0..self.io[q].depth {
            let Some((cid, status, result)) = self.reap(false, q)? else {
                break;
            };
            let slot = self.io[q]
                .slots
                .get_mut(usize::from(cid))
                .ok_or(NvmeError::Malformed {
                    what: "completion command id",
                    value: u64::from(cid),
                })?;
            let Some(opcode) = slot.busy.take() else {
                return Err(NvmeError::Malformed {
                    what: "completion of an idle command id",
                    value: u64::from(cid),
                });
            };
            if status != 0 {
                return Err(NvmeError::Command { opcode, status });
            }
            f(Done { slot: cid, result });
            n += 1;
        }
        Ok(n)
    }

    /// Waits until queue `q` has completions and takes them (polled:
    /// spinning, the clock read every 4096 spins; MSI-X: blocking on the
    /// queue's eventfd). Bounded by the command timeout.
    pub fn wait(&mut self, q: usize, mut f: impl FnMut(Done)) -> Result<usize, NvmeError> {
        let mut start: Option<Instant> = None;
        let mut spins = 0u32;
        loop {
            let n = self.poll(q, &mut f)?;
            if n > 0 {
                return Ok(n);
            }
            match self.io[q].vector {
                None => {
                    spins = spins.wrapping_add(1);
                    if spins.is_multiple_of(4096) {
                        let s = *start.get_or_insert_with(Instant::now);
                        self.check_alive(s, "I/O completion")?;
                    }
                    std::hint::spin_loop();
                }
                Some(v) => {
                    let s = *start.get_or_insert_with(Instant::now);
                    self.io[q].interrupts += self.block(usize::from(v))?;
                    self.check_alive(s, "I/O completion (MSI-X)")?;
                }
            }
        }
    }

    /// Blocks on vector `v`'s eventfd for up to 100 ms, then drains it:
    /// the interrupts it had.
    fn block(&self, v: usize) -> Result<u64, NvmeError> {
        use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
        let ev = &self.events[v];
        let mut fds = [PollFd::new(ev.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::from(100u8)) {
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(NvmeError::Wait(e)),
        }
        match ev.read() {
            Ok(n) => Ok(n),
            Err(nix::errno::Errno::EAGAIN) => Ok(0),
            Err(e) => Err(NvmeError::Wait(e)),
        }
    }

    /// Reads `out.len()` bytes at `lba` (one command, queue 0).
    pub fn read(&mut self, lba: u64, out: &mut [u8]) -> Result<(), NvmeError> {
        self.submit_io(0, 0, false, lba, out.len())?;
        self.wait_slot(0)?;
        self.slot_read(0, 0, out)
    }

    /// Writes `data` at `lba` (one command, queue 0).
    pub fn write(&mut self, lba: u64, data: &[u8]) -> Result<(), NvmeError> {
        self.check_range(lba, data.len())?;
        self.slot_write(0, 0, data)?;
        self.submit_io(0, 0, true, lba, data.len())?;
        self.wait_slot(0)
    }

    fn wait_slot(&mut self, slot: u16) -> Result<(), NvmeError> {
        let mut done = false;
        // Bounded by the command timeout inside `wait`.
        while !done {
            self.wait(0, |d| done |= d.slot == slot)?;
        }
        Ok(())
    }

    /// Controller reset through VFIO (`VFIO_DEVICE_RESET`), then up again:
    /// admin queue, Identify, I/O queues. With MSI-X, the triggers are the
    /// ones armed before (vfio-pci keeps them over a function reset); the
    /// handle re-arms them anyway (see `Msix::reset_device`).
    pub fn reset(&mut self) -> Result<(), NvmeError> {
        match &mut self.msix {
            Some(m) => m.reset_device()?,
            None => self.device.reset()?,
        }
        self.reinit()
    }

    /// Reset with the device's own register (CC.EN = 0), then up again.
    pub fn controller_reset(&mut self) -> Result<(), NvmeError> {
        self.disable()?;
        self.reinit()
    }

    fn reinit(&mut self) -> Result<(), NvmeError> {
        self.disable()?;
        self.arena.buf.fill(0);
        self.admin.restart();
        for qp in &mut self.io {
            qp.restart();
        }
        self.device.set_bus_master(true)?;
        self.enable()?;
        self.identify()?;
        self.set_queues()?;
        let io = std::mem::take(&mut self.io);
        let mut result = Ok(());
        for qp in &io {
            if result.is_ok() {
                result = self.create_pair(qp);
            }
        }
        self.io = io;
        result
    }

    /// Normal shutdown (CC.SHN, bounded by CAP.TO), then CC.EN = 0: the
    /// controller is left reset, and Bus Master off.
    pub fn shutdown(mut self) -> Result<(), NvmeError> {
        let cc = self.bar.r32(REG_CC)?;
        self.bar.w32(REG_CC, (cc & !(3 << 14)) | 1 << 14)?;
        self.wait_csts("shutdown (CSTS.SHST)", true, |c| {
            c & CSTS_SHST_MASK == CSTS_SHST_DONE
        })?;
        self.disable()?;
        if let Some(m) = self.msix.take() {
            m.disable().map_err(|(_, e)| e)?;
        }
        self.device.set_bus_master(false)?;
        Ok(())
    }
}

impl QueuePair {
    fn new(
        qid: u16,
        depth: u16,
        sq: usize,
        cq: usize,
        slots: &[Slot],
        vector: Option<u16>,
    ) -> Self {
        QueuePair {
            qid,
            depth,
            sq,
            cq,
            sq_tail: 0,
            sq_head: 0,
            cq_head: 0,
            phase: true,
            slots: slots.to_vec(),
            vector,
            interrupts: 0,
        }
    }

    fn restart(&mut self) {
        self.sq_tail = 0;
        self.sq_head = 0;
        self.cq_head = 0;
        self.phase = true;
        for s in &mut self.slots {
            s.busy = None;
        }
    }
}
