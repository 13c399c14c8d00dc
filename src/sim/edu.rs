//! QEMU's `edu` educational PCI device (docs/specs/edu.rst), as QEMU 7.2
//! implements it: BAR0 registers, the factorial unit, the interrupt status
//! register, and the DMA engine's registers and 4 KiB buffer. The DMA
//! itself is carried out by the machine, which owns the IOMMU.

/// The value of the identification register (version 1.0).
pub(crate) const IDENT: u32 = 0x0100_00ed;
/// The device address of the DMA buffer, and its size.
pub(crate) const DMA_BUF_ADDR: u64 = 0x40000;
pub(crate) const DMA_BUF_SIZE: usize = 4096;
/// The DMA mask edu applies to host addresses (28 bits by default).
pub(crate) const DMA_MASK: u64 = (1 << 28) - 1;
/// BAR0's size.
pub(crate) const BAR0_SIZE: u64 = 1 << 20;

const STATUS_COMPUTING: u32 = 0x01;
const STATUS_IRQFACT: u32 = 0x80;
const FACT_IRQ: u32 = 0x1;
const DMA_IRQ: u32 = 0x100;
const DMA_RUN: u64 = 0x1;
const DMA_TO_RAM: u64 = 0x2;
const DMA_RAISE_IRQ: u64 = 0x4;

/// `n!` modulo 2^32, as edu's wrapping 32-bit loop computes it, in bounded
/// time: from 34 on, `n!` has at least 32 factors of two (17 + 8 + 4 + 2 +
/// 1 in 34!), so the wrapped product is 0 and no loop needs to run.
pub(crate) fn factorial_u32(n: u32) -> u32 {
    if n >= 34 {
        return 0;
    }
    (1..=n).fold(1u32, |acc, i| acc.wrapping_mul(i))
}

/// A DMA the engine was told to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct DmaRequest {
    /// Device to RAM (else RAM to device).
    pub(crate) to_ram: bool,
    /// The host-side (IOVA) address, after the DMA mask.
    pub(crate) host: u64,
    /// The device-side address as programmed (must lie in the buffer).
    pub(crate) device: u64,
    /// Byte count.
    pub(crate) count: u64,
}

/// The edu device's state.
#[derive(Debug)]
pub(crate) struct Edu {
    addr4: u32,
    fact: u32,
    status: u32,
    pub(crate) irq_status: u32,
    dma_src: u64,
    dma_dst: u64,
    dma_cnt: u64,
    dma_cmd: u64,
    pub(crate) buf: Box<[u8; DMA_BUF_SIZE]>,
    /// The INTx pin level (`pci_set_irq`).
    pub(crate) intx_level: bool,
    /// MSIs sent (`msi_notify`) and not yet delivered by the machine.
    pub(crate) msi_sent: u32,
    /// A DMA started and not yet carried out by the machine.
    pub(crate) dma_pending: Option<DmaRequest>,
}

impl Edu {
    pub(crate) fn new() -> Self {
        Edu {
            addr4: 0,
            fact: 0,
            status: 0,
            irq_status: 0,
            dma_src: 0,
            dma_dst: 0,
            dma_cnt: 0,
            dma_cmd: 0,
            buf: Box::new([0; DMA_BUF_SIZE]),
            intx_level: false,
            msi_sent: 0,
            dma_pending: None,
        }
    }

    /// The registers a migration stream carries: liveness, factorial,
    /// status, interrupt status.
    pub(crate) fn saved_regs(&self) -> [u32; 4] {
        [self.addr4, self.fact, self.status, self.irq_status]
    }

    /// Restores what [`saved_regs`](Self::saved_regs) gave.
    pub(crate) fn load_regs(&mut self, [addr4, fact, status, irq_status]: [u32; 4]) {
        self.addr4 = addr4;
        self.fact = fact;
        self.status = status;
        self.irq_status = irq_status;
    }

    pub(crate) fn raise(&mut self, value: u32, msi: bool) {
        self.irq_status |= value;
        if self.irq_status != 0 {
            if msi {
                self.msi_sent += 1;
            } else {
                self.intx_level = true;
            }
        }
    }

    fn lower(&mut self, value: u32, msi: bool) {
        self.irq_status &= !value;
        if self.irq_status == 0 && !msi {
            self.intx_level = false;
        }
    }

    /// An MMIO read of `size` bytes (1, 2, 4 or 8) at `addr`.
    pub(crate) fn read(&self, addr: u64, size: usize) -> u64 {
        // edu accepts only 4- and 8-byte accesses (`.valid.min_access_size
        // = 4`): QEMU's memory core answers narrower reads with 0 without
        // asking the device (found by the differential check).
        if size < 4 {
            return 0;
        }
        let ones = u64::MAX;
        if size != 4 && (addr < 0x80 || size != 8) {
            return ones;
        }
        match addr {
            0x00 => u64::from(IDENT),
            0x04 => u64::from(self.addr4),
            0x08 => u64::from(self.fact),
            0x20 => u64::from(self.status),
            0x24 => u64::from(self.irq_status),
            0x80 => self.dma_src,
            0x88 => self.dma_dst,
            0x90 => self.dma_cnt,
            0x98 => self.dma_cmd,
            _ => ones,
        }
    }

    /// An MMIO write of `size` bytes at `addr`; `msi` says whether MSI is
    /// enabled on the device (edu then signals by MSI instead of INTx).
    pub(crate) fn write(&mut self, addr: u64, size: usize, value: u64, msi: bool) {
        if size != 4 && (addr < 0x80 || size != 8) {
            return;
        }
        let running = self.dma_cmd & DMA_RUN != 0;
        match addr {
            0x04 => self.addr4 = !(value as u32),
            0x08 if self.status & STATUS_COMPUTING == 0 => {
                // The factorial unit runs at once (QEMU runs it on a
                // thread; the result is the same, 32-bit wrapping).
                self.fact = factorial_u32(value as u32);
                if self.status & STATUS_IRQFACT != 0 {
                    self.raise(FACT_IRQ, msi);
                }
            }
            0x20 => {
                if value as u32 & STATUS_IRQFACT != 0 {
                    self.status |= STATUS_IRQFACT;
                } else {
                    self.status &= !STATUS_IRQFACT;
                }
            }
            0x60 => self.raise(value as u32, msi),
            0x64 => self.lower(value as u32, msi),
            0x80 if !running => self.dma_src = value,
            0x88 if !running => self.dma_dst = value,
            0x90 if !running => self.dma_cnt = value,
            0x98 if value & DMA_RUN != 0 && !running => {
                self.dma_cmd = value;
                let to_ram = value & DMA_TO_RAM != 0;
                let (host, device) = if to_ram {
                    (self.dma_dst, self.dma_src)
                } else {
                    (self.dma_src, self.dma_dst)
                };
                self.dma_pending = Some(DmaRequest {
                    to_ram,
                    host: host & DMA_MASK,
                    device,
                    count: self.dma_cnt,
                });
            }
            _ => {}
        }
    }

    /// The device-buffer range of a DMA, if it lies inside the buffer
    /// (QEMU's edu aborts the whole VM otherwise).
    pub(crate) fn buffer_range(req: &DmaRequest) -> Option<std::ops::Range<usize>> {
        let end = req.device.checked_add(req.count)?;
        if req.device < DMA_BUF_ADDR || end > DMA_BUF_ADDR + DMA_BUF_SIZE as u64 {
            return None;
        }
        let start = (req.device - DMA_BUF_ADDR) as usize;
        Some(start..start + req.count as usize)
    }

    /// Ends the running DMA: clears the run bit, raises the DMA interrupt
    /// when the command asked for it.
    pub(crate) fn finish_dma(&mut self, msi: bool) {
        self.dma_pending = None;
        self.dma_cmd &= !DMA_RUN;
        if self.dma_cmd & DMA_RAISE_IRQ != 0 {
            self.raise(DMA_IRQ, msi);
        }
    }
}
