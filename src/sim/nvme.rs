//! A small NVMe controller (NVM Express Base 1.4 register and queue model,
//! as QEMU's `nvme` device presents it to a driver): the controller
//! registers, the admin queue, I/O queue pairs created by the driver,
//! Identify (controller, namespace, active namespace list), Set/Get Features
//! (Number of Queues), Read, Write and Flush on one in-memory namespace, PRP
//! lists, and one MSI-X vector per completion queue.
//!
//! Commands run when their submission queue's tail doorbell is written, in
//! that write: the model has no clock. The machine carries out the DMA
//! (through the device's IOMMU) and the interrupts ([`Bus`]).
//!
//! For fuzzing, the controller can be *hostile* ([`Nvme::hostile`]): a byte
//! script then corrupts the capability register, the Identify data and each
//! completion entry it posts, as a broken or malicious device would.

/// The controller's vendor and device IDs (QEMU's: Red Hat, NVMe).
pub(crate) const VENDOR: u16 = 0x1b36;
pub(crate) const DEVICE: u16 = 0x0010;
/// BAR0's size, its registers, doorbells and MSI-X table and PBA.
pub(crate) const BAR0_SIZE: u64 = 0x4000;
pub(crate) const MSIX_TABLE: u32 = 0x2000;
pub(crate) const MSIX_PBA: u32 = 0x3000;
/// MSI-X table size: one vector for the admin queue and each I/O queue.
pub(crate) const MSIX_VECTORS: u32 = 17;
/// I/O queue pairs the controller offers.
const IO_QUEUES: u16 = 16;
/// Largest queue (entries, 0-based in CAP.MQES).
const MQES: u64 = 1023;
/// The namespace: 512-byte blocks.
const LBA_SHIFT: u32 = 9;
/// Maximum data transfer: 2^MDTS pages of 4 KiB (128 KiB).
const MDTS: u8 = 5;
const PAGE: u64 = 4096;

const CC_EN: u32 = 1;
const CSTS_RDY: u32 = 1;
const CSTS_CFS: u32 = 2;
const CSTS_SHST_DONE: u32 = 2 << 2;

/// Status codes (type << 8 | code).
const SC_SUCCESS: u16 = 0x000;
const SC_INVALID_OPCODE: u16 = 0x001;
const SC_INVALID_FIELD: u16 = 0x002;
const SC_DATA_TRANSFER: u16 = 0x004;
const SC_INVALID_NS: u16 = 0x00b;
const SC_INVALID_PRP_OFFSET: u16 = 0x013;
const SC_LBA_RANGE: u16 = 0x080;
const SC_CQ_INVALID: u16 = 0x100;
const SC_INVALID_QID: u16 = 0x101;
const SC_INVALID_QSIZE: u16 = 0x102;
const SC_INVALID_VECTOR: u16 = 0x108;
const SC_INVALID_DELETION: u16 = 0x10c;

/// What the controller needs of the machine.
pub(crate) trait Bus {
    /// Reads host memory at a bus address; false on a fault.
    fn dma_read(&mut self, addr: u64, buf: &mut [u8]) -> bool;
    /// Writes host memory at a bus address; false on a fault.
    fn dma_write(&mut self, addr: u64, data: &[u8]) -> bool;
    /// Sends MSI-X vector `vector`.
    fn interrupt(&mut self, vector: u16);
}

#[derive(Clone, Copy, Debug)]
struct Sq {
    base: u64,
    size: u16,
    head: u16,
    tail: u16,
    cq: u16,
}

#[derive(Clone, Copy, Debug)]
struct Cq {
    base: u64,
    size: u16,
    head: u16,
    tail: u16,
    phase: bool,
    vector: Option<u16>,
}

/// The controller.
#[derive(Debug)]
pub(crate) struct Nvme {
    cc: u32,
    csts: u32,
    aqa: u32,
    asq: u64,
    acq: u64,
    sqs: Vec<Option<Sq>>,
    cqs: Vec<Option<Cq>>,
    disk: Vec<u8>,
    /// The hostile script and how far it has been read.
    hostile: Option<(Vec<u8>, usize)>,
}

impl Nvme {
    /// A controller with a namespace of `blocks` 512-byte blocks, zeroed.
    pub(crate) fn new(blocks: u64) -> Self {
        Nvme {
            cc: 0,
            csts: 0,
            aqa: 0,
            asq: 0,
            acq: 0,
            sqs: vec![None; usize::from(IO_QUEUES) + 1],
            cqs: vec![None; usize::from(IO_QUEUES) + 1],
            disk: vec![0; (blocks << LBA_SHIFT) as usize],
            hostile: None,
        }
    }

    /// Makes the controller hostile: `script` drives its corruptions.
    pub(crate) fn hostile(&mut self, script: Vec<u8>) {
        // The first eight bytes are CAP's; the rest drive the events.
        self.hostile = Some((script, 8));
    }

    /// The next script byte (0 once it is used up, or when not hostile).
    fn evil(&mut self) -> u8 {
        match &mut self.hostile {
            Some((s, at)) if *at < s.len() => {
                *at += 1;
                s[*at - 1]
            }
            _ => 0,
        }
    }

    fn blocks(&self) -> u64 {
        (self.disk.len() >> LBA_SHIFT) as u64
    }

    /// CAP: MQES, contiguous queues required, a 7.5 s timeout, doorbell
    /// stride 4, the NVM command set, 4 KiB to 64 KiB pages.
    fn cap(&self) -> u64 {
        let cap = MQES | 1 << 16 | 15 << 24 | 1 << 37 | 4 << 52;
        match &self.hostile {
            // The script's first eight bytes, xored in.
            Some((s, _)) => {
                let mut x = [0u8; 8];
                for (d, b) in x.iter_mut().zip(s) {
                    *d = *b;
                }
                cap ^ u64::from_le_bytes(x)
            }
            None => cap,
        }
    }

    /// A controller-level reset (CC.EN cleared, or a function reset): the
    /// queues go, the namespace stays.
    pub(crate) fn reset(&mut self) {
        self.cc = 0;
        self.csts = 0;
        self.aqa = 0;
        self.asq = 0;
        self.acq = 0;
        self.sqs.iter_mut().for_each(|q| *q = None);
        self.cqs.iter_mut().for_each(|q| *q = None);
    }

    /// An MMIO read of `size` bytes at `addr` (registers; the MSI-X table is
    /// vfio-pci's and reads as 0 here).
    pub(crate) fn read(&self, addr: u64, size: usize) -> u64 {
        let reg = |v: u64| {
            let shift = (addr & 7) * 8;
            let v = v >> shift;
            if size >= 8 {
                v
            } else {
                v & ((1u64 << (size * 8)) - 1)
            }
        };
        match addr & !7 {
            0x00 => reg(self.cap()),
            0x08 => reg(0x0001_0400), // VS 1.4; INTMS reads 0
            0x10 => reg(u64::from(self.cc) << 32),
            0x18 => reg(u64::from(self.csts) << 32),
            0x20 => reg(u64::from(self.aqa) << 32),
            0x28 => reg(self.asq),
            0x30 => reg(self.acq),
            _ => 0,
        }
    }

    /// An MMIO write of `size` bytes at `addr`.
    pub(crate) fn write(&mut self, addr: u64, size: usize, value: u64, bus: &mut dyn Bus) {
        let set64 = |old: u64| -> u64 {
            let shift = (addr & 7) * 8;
            let mask = if size >= 8 {
                u64::MAX
            } else {
                ((1u64 << (size * 8)) - 1) << shift
            };
            (old & !mask) | ((value << shift) & mask)
        };
        match addr {
            0x14 => self.set_cc(value as u32, bus),
            0x24 => self.aqa = value as u32,
            0x28..=0x2f => self.asq = set64(self.asq),
            0x30..=0x37 => self.acq = set64(self.acq),
            0x1000..0x2000 if size == 4 && addr.is_multiple_of(4) => {
                let n = (addr - 0x1000) / 4;
                let qid = (n / 2) as usize;
                if n.is_multiple_of(2) {
                    self.sq_doorbell(qid, value as u16, bus);
                } else {
                    self.cq_doorbell(qid, value as u16);
                }
            }
            _ => {}
        }
    }

    fn set_cc(&mut self, cc: u32, bus: &mut dyn Bus) {
        let was = self.cc & CC_EN != 0;
        let now = cc & CC_EN != 0;
        if was && !now {
            let aqa = (self.aqa, self.asq, self.acq);
            self.reset();
            // The admin queue registers survive a controller reset.
            (self.aqa, self.asq, self.acq) = aqa;
            return;
        }
        self.cc = cc;
        if !was && now {
            let sqs = (self.aqa & 0xfff) as u16;
            let cqs = (self.aqa >> 16 & 0xfff) as u16;
            let mps = cc >> 7 & 0xf;
            let bad = sqs == 0
                || cqs == 0
                || !self.asq.is_multiple_of(PAGE)
                || !self.acq.is_multiple_of(PAGE)
                || self.asq == 0
                || self.acq == 0
                || mps != 0
                || cc >> 4 & 7 != 0;
            if bad {
                self.csts |= CSTS_CFS;
                return;
            }
            self.sqs[0] = Some(Sq {
                base: self.asq,
                size: sqs + 1,
                head: 0,
                tail: 0,
                cq: 0,
            });
            self.cqs[0] = Some(Cq {
                base: self.acq,
                size: cqs + 1,
                head: 0,
                tail: 0,
                phase: true,
                vector: Some(0),
            });
            self.csts = CSTS_RDY;
        }
        if now && cc >> 14 & 3 != 0 {
            self.csts |= CSTS_SHST_DONE;
        }
        let _ = bus;
    }

    fn cq_doorbell(&mut self, qid: usize, head: u16) {
        if let Some(Some(cq)) = self.cqs.get_mut(qid)
            && head < cq.size
        {
            cq.head = head;
        }
    }

    fn sq_doorbell(&mut self, qid: usize, tail: u16, bus: &mut dyn Bus) {
        if self.csts & CSTS_RDY == 0 || self.csts & CSTS_CFS != 0 {
            return;
        }
        let Some(Some(sq)) = self.sqs.get_mut(qid) else {
            return;
        };
        if tail >= sq.size {
            return;
        }
        sq.tail = tail;
        // Each command's completion needs room in its CQ; the loop ends
        // when the queue is empty or its CQ is full (then the next doorbell
        // goes on).
        loop {
            let Some(sq) = self.sqs[qid] else { return };
            if sq.head == sq.tail {
                return;
            }
            let cqid = usize::from(sq.cq);
            let Some(cq) = self.cqs[cqid] else { return };
            if (cq.tail + 1) % cq.size == cq.head {
                return;
            }
            let mut cmd = [0u8; 64];
            if !bus.dma_read(sq.base + u64::from(sq.head) * 64, &mut cmd) {
                self.csts |= CSTS_CFS;
                return;
            }
            let head = (sq.head + 1) % sq.size;
            if let Some(s) = self.sqs[qid].as_mut() {
                s.head = head;
            }
            let (status, result) = if qid == 0 {
                self.admin(&cmd, bus)
            } else {
                self.io(&cmd, bus)
            };
            let cid = u16::from_le_bytes([cmd[2], cmd[3]]);
            self.complete(cqid, qid as u16, head, cid, status, result, bus);
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn complete(
        &mut self,
        cqid: usize,
        sqid: u16,
        sq_head: u16,
        mut cid: u16,
        mut status: u16,
        result: u32,
        bus: &mut dyn Bus,
    ) {
        let mut sq_head = sq_head;
        let mut phase_flip = false;
        let act = self.evil();
        if act & 1 != 0 {
            cid = u16::from_le_bytes([self.evil(), self.evil()]);
        }
        if act & 2 != 0 {
            status = u16::from_le_bytes([self.evil(), self.evil()]) & 0x7fff;
        }
        if act & 4 != 0 {
            sq_head = u16::from_le_bytes([self.evil(), self.evil()]);
        }
        if act & 8 != 0 {
            phase_flip = true;
        }
        let Some(cq) = self.cqs[cqid].as_mut() else {
            return;
        };
        let phase = cq.phase ^ phase_flip;
        let mut e = [0u8; 16];
        e[0..4].copy_from_slice(&result.to_le_bytes());
        e[8..10].copy_from_slice(&sq_head.to_le_bytes());
        e[10..12].copy_from_slice(&sqid.to_le_bytes());
        e[12..14].copy_from_slice(&cid.to_le_bytes());
        e[14..16].copy_from_slice(&(status << 1 | u16::from(phase)).to_le_bytes());
        let at = cq.base + u64::from(cq.tail) * 16;
        cq.tail = (cq.tail + 1) % cq.size;
        if cq.tail == 0 {
            cq.phase = !cq.phase;
        }
        let vector = cq.vector;
        if !bus.dma_write(at, &e) {
            self.csts |= CSTS_CFS;
            return;
        }
        if let Some(v) = vector {
            bus.interrupt(v);
        }
    }

    fn admin(&mut self, c: &[u8; 64], bus: &mut dyn Bus) -> (u16, u32) {
        let dw =
            |i: usize| u32::from_le_bytes([c[i * 4], c[i * 4 + 1], c[i * 4 + 2], c[i * 4 + 3]]);
        let (prp1, prp2) = prps(c);
        let (dw10, dw11) = (dw(10), dw(11));
        let qid = (dw10 & 0xffff) as u16;
        let qsize = (dw10 >> 16) as u16;
        match c[0] {
            0x06 => {
                let Some(data) = self.identify(dw10 & 0xff, dw(1)) else {
                    return (SC_INVALID_FIELD, 0);
                };
                (self.transfer_out(prp1, prp2, &data, bus), 0)
            }
            0x05 => {
                // Create I/O Completion Queue.
                let vector = (dw11 >> 16) as u16;
                if qid == 0 || qid > IO_QUEUES || self.cqs[usize::from(qid)].is_some() {
                    return (SC_INVALID_QID, 0);
                }
                if qsize == 0 || u64::from(qsize) > MQES {
                    return (SC_INVALID_QSIZE, 0);
                }
                if dw11 & 1 == 0 || prp1 % PAGE != 0 {
                    return (SC_INVALID_FIELD, 0);
                }
                if u32::from(vector) >= MSIX_VECTORS {
                    return (SC_INVALID_VECTOR, 0);
                }
                self.cqs[usize::from(qid)] = Some(Cq {
                    base: prp1,
                    size: qsize + 1,
                    head: 0,
                    tail: 0,
                    phase: true,
                    vector: (dw11 & 2 != 0).then_some(vector),
                });
                (SC_SUCCESS, 0)
            }
            0x01 => {
                // Create I/O Submission Queue.
                let cq = (dw11 >> 16) as u16;
                if qid == 0 || qid > IO_QUEUES || self.sqs[usize::from(qid)].is_some() {
                    return (SC_INVALID_QID, 0);
                }
                if qsize == 0 || u64::from(qsize) > MQES {
                    return (SC_INVALID_QSIZE, 0);
                }
                if cq == 0 || cq > IO_QUEUES || self.cqs[usize::from(cq)].is_none() {
                    return (SC_CQ_INVALID, 0);
                }
                if dw11 & 1 == 0 || prp1 % PAGE != 0 {
                    return (SC_INVALID_FIELD, 0);
                }
                self.sqs[usize::from(qid)] = Some(Sq {
                    base: prp1,
                    size: qsize + 1,
                    head: 0,
                    tail: 0,
                    cq,
                });
                (SC_SUCCESS, 0)
            }
            0x00 => {
                // Delete I/O Submission Queue.
                match self.sqs.get_mut(usize::from(qid)) {
                    Some(q @ Some(_)) if qid != 0 => {
                        *q = None;
                        (SC_SUCCESS, 0)
                    }
                    _ => (SC_INVALID_QID, 0),
                }
            }
            0x04 => {
                // Delete I/O Completion Queue.
                if qid == 0 || self.cqs.get(usize::from(qid)).is_none_or(Option::is_none) {
                    return (SC_INVALID_QID, 0);
                }
                if self.sqs.iter().flatten().any(|s| s.cq == qid) {
                    return (SC_INVALID_DELETION, 0);
                }
                self.cqs[usize::from(qid)] = None;
                (SC_SUCCESS, 0)
            }
            0x09 | 0x0a if dw10 & 0xff == 0x07 => {
                // Set/Get Features, Number of Queues: what the controller has.
                let n = u32::from(IO_QUEUES - 1);
                (SC_SUCCESS, n | n << 16)
            }
            0x09 | 0x0a => (SC_INVALID_FIELD, 0),
            _ => (SC_INVALID_OPCODE, 0),
        }
    }

    /// Identify data for CNS `cns`, or None for a CNS it does not answer.
    fn identify(&mut self, cns: u32, nsid: u32) -> Option<Vec<u8>> {
        let mut d = vec![0u8; 4096];
        match cns {
            0x00 => {
                if nsid != 1 {
                    return None;
                }
                let n = self.blocks().to_le_bytes();
                d[0..8].copy_from_slice(&n); // NSZE
                d[8..16].copy_from_slice(&n); // NCAP
                d[16..24].copy_from_slice(&n); // NUSE
                d[25] = 0; // NLBAF: one format
                d[26] = 0; // FLBAS: format 0
                d[130] = LBA_SHIFT as u8; // LBAF0.LBADS
            }
            0x01 => {
                d[0..2].copy_from_slice(&VENDOR.to_le_bytes());
                d[2..4].copy_from_slice(&0x1af4u16.to_le_bytes());
                d[4..24].copy_from_slice(b"TVFIO-SIM-0001      ");
                d[24..64].copy_from_slice(b"typed-vfio simulated NVMe controller    ");
                d[64..72].copy_from_slice(b"1.0     ");
                d[77] = MDTS;
                d[80..84].copy_from_slice(&0x0001_0400u32.to_le_bytes());
                d[512] = 0x66; // SQES: 64 bytes
                d[513] = 0x44; // CQES: 16 bytes
                d[516..520].copy_from_slice(&1u32.to_le_bytes()); // NN
            }
            0x02 => {
                d[0..4].copy_from_slice(&1u32.to_le_bytes());
            }
            _ => return None,
        }
        // Hostile: pairs of (offset, value) bytes over the first 256 bytes
        // and the LBA format (the fields a driver sizes things by).
        if self.hostile.is_some() {
            let n = self.evil() % 8;
            for _ in 0..n {
                let at = usize::from(self.evil());
                let at = if at >= 128 { at + 2 } else { at }; // reach LBADS
                d[at] = self.evil();
            }
        }
        Some(d)
    }

    fn io(&mut self, c: &[u8; 64], bus: &mut dyn Bus) -> (u16, u32) {
        let dw =
            |i: usize| u32::from_le_bytes([c[i * 4], c[i * 4 + 1], c[i * 4 + 2], c[i * 4 + 3]]);
        if c[0] != 0x00 && c[0] != 0x01 && c[0] != 0x02 {
            return (SC_INVALID_OPCODE, 0);
        }
        if dw(1) != 1 {
            return (SC_INVALID_NS, 0);
        }
        if c[0] == 0x00 {
            return (SC_SUCCESS, 0);
        }
        let slba = u64::from(dw(10)) | u64::from(dw(11)) << 32;
        let nlb = u64::from(dw(12) & 0xffff) + 1;
        if slba.checked_add(nlb).is_none_or(|end| end > self.blocks()) {
            return (SC_LBA_RANGE, 0);
        }
        let len = nlb << LBA_SHIFT;
        if len > PAGE << MDTS {
            return (SC_INVALID_FIELD, 0);
        }
        let at = (slba << LBA_SHIFT) as usize;
        let (prp1, prp2) = prps(c);
        if c[0] == 0x02 {
            let data = self.disk[at..at + len as usize].to_vec();
            (self.transfer_out(prp1, prp2, &data, bus), 0)
        } else {
            let mut data = vec![0u8; len as usize];
            let status = self.transfer_in(prp1, prp2, &mut data, bus);
            if status == SC_SUCCESS {
                self.disk[at..at + len as usize].copy_from_slice(&data);
            }
            (status, 0)
        }
    }

    /// The pages a transfer of `len` bytes goes to: PRP1 (with an offset),
    /// then PRP2 as the second page or as a PRP list (a list's last entry
    /// chains to the next list page when more entries are needed).
    fn pages(prp1: u64, prp2: u64, len: u64, bus: &mut dyn Bus) -> Result<Vec<(u64, u64)>, u16> {
        let first = (PAGE - prp1 % PAGE).min(len);
        let mut out = vec![(prp1, first)];
        let mut left = len - first;
        if left == 0 {
            return Ok(out);
        }
        if left <= PAGE {
            if !prp2.is_multiple_of(PAGE) {
                return Err(SC_INVALID_PRP_OFFSET);
            }
            out.push((prp2, left));
            return Ok(out);
        }
        if !prp2.is_multiple_of(8) {
            return Err(SC_INVALID_PRP_OFFSET);
        }
        let mut list = prp2;
        // Bounded: at most len / PAGE entries, each list page read once.
        while left > 0 {
            let slots = (PAGE - list % PAGE) / 8;
            let mut page = vec![0u8; (slots * 8) as usize];
            if !bus.dma_read(list, &mut page) {
                return Err(SC_DATA_TRANSFER);
            }
            for (i, e) in page.chunks_exact(8).enumerate() {
                let entry = u64::from_le_bytes(e.try_into().unwrap_or([0; 8]));
                if i as u64 == slots - 1 && left > PAGE {
                    list = entry;
                    if !list.is_multiple_of(8) {
                        return Err(SC_INVALID_PRP_OFFSET);
                    }
                    break;
                }
                if entry % PAGE != 0 {
                    return Err(SC_INVALID_PRP_OFFSET);
                }
                let n = left.min(PAGE);
                out.push((entry, n));
                left -= n;
                if left == 0 {
                    break;
                }
            }
        }
        Ok(out)
    }

    fn transfer_out(&mut self, prp1: u64, prp2: u64, data: &[u8], bus: &mut dyn Bus) -> u16 {
        let pages = match Self::pages(prp1, prp2, data.len() as u64, bus) {
            Ok(p) => p,
            Err(sc) => return sc,
        };
        let mut done = 0usize;
        for (addr, n) in pages {
            if !bus.dma_write(addr, &data[done..done + n as usize]) {
                return SC_DATA_TRANSFER;
            }
            done += n as usize;
        }
        SC_SUCCESS
    }

    fn transfer_in(&mut self, prp1: u64, prp2: u64, data: &mut [u8], bus: &mut dyn Bus) -> u16 {
        let pages = match Self::pages(prp1, prp2, data.len() as u64, bus) {
            Ok(p) => p,
            Err(sc) => return sc,
        };
        let mut done = 0usize;
        for (addr, n) in pages {
            if !bus.dma_read(addr, &mut data[done..done + n as usize]) {
                return SC_DATA_TRANSFER;
            }
            done += n as usize;
        }
        SC_SUCCESS
    }
}

fn prps(c: &[u8; 64]) -> (u64, u64) {
    let q = |i: usize| u64::from_le_bytes(c[i..i + 8].try_into().unwrap_or([0; 8]));
    (q(24), q(32))
}
