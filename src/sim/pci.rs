//! vfio-pci's view of an edu device: the virtualised config space and the
//! interrupt state (`vfio_pci_core` + `vfio_pci_intrs`, Linux 6.12).

use std::os::fd::OwnedFd;

use super::edu::{BAR0_SIZE, Edu};
use super::os;

/// Config space size (conventional PCI).
pub(crate) const CONFIG_SIZE: usize = 256;
/// The command register and its bits.
const COMMAND: usize = 0x04;
const COMMAND_MASTER: u8 = 0x04;
/// The command register as vfio-pci leaves it on open: memory decoding on,
/// Bus Master off.
const COMMAND_ON_OPEN: u16 = 0x0002;
/// The MSI capability (QEMU places edu's at 0x40) and its control word.
const MSI_CAP: usize = 0x40;
const MSI_CONTROL: usize = MSI_CAP + 2;

/// Which interrupt type vfio-pci has enabled (`vdev->irq_type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum IrqType {
    None,
    Intx,
    Msi,
    Msix,
}

/// One simulated vfio-pci device with an edu behind it.
#[derive(Debug)]
pub(crate) struct PciDevice {
    pub(crate) name: String,
    pub(crate) group: usize,
    pub(crate) segment: u16,
    pub(crate) bus: u8,
    pub(crate) devfn: u8,
    pub(crate) reset_works: bool,
    /// Open device files.
    pub(crate) files: usize,
    pub(crate) config: [u8; CONFIG_SIZE],
    wmask: [u8; CONFIG_SIZE],
    pub(crate) irq: IrqType,
    pub(crate) intx_trigger: Option<OwnedFd>,
    pub(crate) intx_masked: bool,
    pub(crate) msi: Vec<Option<OwnedFd>>,
    pub(crate) req: Option<OwnedFd>,
    pub(crate) edu: Edu,
    /// Migration v2, for a device built `migratable`.
    pub(crate) mig: Option<super::migration::MigDevice>,
    /// INTx's unmask eventfd (`DATA_EVENTFD | ACTION_UNMASK`).
    pub(crate) intx_unmask: Option<OwnedFd>,
    /// `VFIO_DEVICE_IOEVENTFD`s.
    pub(crate) ioeventfds: Vec<IoEventFd>,
    /// DMA logging (a migratable device): the logged IOVA ranges and the
    /// 4 KiB pages written there since the last report.
    pub(crate) dma_log: Option<DmaLog>,
    /// An NVMe controller instead of the edu (`SimDevice::nvme`).
    pub(crate) nvme: Option<Box<super::nvme::Nvme>>,
    /// MSI-X can grow while enabled (no `NORESIZE`).
    pub(crate) msix_resizable: bool,
    /// MSI-X vectors the platform can allocate.
    pub(crate) msix_available: u32,
}

/// A device's DMA log: the logged `(iova, length)` ranges, and the 4 KiB
/// page numbers written there since the last report.
pub(crate) type DmaLog = (Vec<(u64, u64)>, std::collections::BTreeSet<u64>);

/// One `VFIO_DEVICE_IOEVENTFD`: when `fd` is signalled, `data` (its low
/// `size` bytes, little-endian) is written at `pos` of BAR `bar`.
#[derive(Debug)]
pub(crate) struct IoEventFd {
    pub(crate) bar: u32,
    pub(crate) pos: u64,
    pub(crate) size: usize,
    pub(crate) data: u64,
    pub(crate) fd: OwnedFd,
}

fn put16(b: &mut [u8], at: usize, v: u16) {
    b[at..at + 2].copy_from_slice(&v.to_le_bytes());
}

fn put32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

impl PciDevice {
    pub(crate) fn new(
        name: String,
        group: usize,
        (segment, bus, devfn): (u16, u8, u8),
        reset_works: bool,
        bar_base: u32,
    ) -> Self {
        let mut config = [0u8; CONFIG_SIZE];
        put16(&mut config, 0x00, 0x1234); // vendor: QEMU
        put16(&mut config, 0x02, 0x11e8); // device: edu
        put16(&mut config, COMMAND, COMMAND_ON_OPEN);
        put16(&mut config, 0x06, 0x0010); // status: capability list
        config[0x08] = 0x10; // revision
        config[0x0b] = 0xff; // class: PCI_CLASS_OTHERS
        put32(&mut config, 0x10, bar_base); // BAR0: 32-bit memory
        put16(&mut config, 0x2c, 0x1af4); // subsystem vendor
        put16(&mut config, 0x2e, 0x1100); // subsystem
        config[0x34] = MSI_CAP as u8;
        config[0x3c] = 0xff; // interrupt line
        config[0x3d] = 0x01; // interrupt pin INTA
        config[MSI_CAP] = 0x05; // MSI, end of list
        put16(&mut config, MSI_CONTROL, 0x0080); // 64-bit, one vector
        let mut wmask = [0u8; CONFIG_SIZE];
        put16(&mut wmask, COMMAND, 0x0547); // IO MEM MASTER PARITY SERR INTX_DISABLE
        put32(&mut wmask, 0x10, !(BAR0_SIZE as u32 - 1)); // BAR0 sizing
        wmask[0x3c] = 0xff;
        PciDevice {
            name,
            group,
            segment,
            bus,
            devfn,
            reset_works,
            files: 0,
            config,
            wmask,
            irq: IrqType::None,
            intx_trigger: None,
            intx_masked: false,
            msi: Vec::new(),
            req: None,
            edu: Edu::new(),
            mig: None,
            intx_unmask: None,
            ioeventfds: Vec::new(),
            dma_log: None,
            nvme: None,
            msix_resizable: false,
            msix_available: 0,
        }
    }

    /// Turns the function into QEMU's NVMe controller (1b36:0010, class
    /// 01:08:02): a 64-bit BAR0 with the registers, doorbells and MSI-X
    /// table, an MSI-X capability and no MSI.
    pub(crate) fn make_nvme(&mut self, nvme: super::nvme::Nvme, resizable: bool, available: u32) {
        use super::nvme::{BAR0_SIZE, DEVICE, MSIX_PBA, MSIX_TABLE, MSIX_VECTORS, VENDOR};
        let c = &mut self.config;
        put16(c, 0x00, VENDOR);
        put16(c, 0x02, DEVICE);
        c[0x08] = 0x02; // revision
        c[0x09] = 0x02; // NVM Express
        c[0x0a] = 0x08; // non-volatile memory controller
        c[0x0b] = 0x01; // mass storage
        let base = u32::from_le_bytes([c[0x10], c[0x11], c[0x12], c[0x13]]);
        put32(c, 0x10, (base & !(BAR0_SIZE as u32 - 1)) | 0x4); // 64-bit memory
        put32(c, 0x14, 0);
        c[MSI_CAP] = 0x11; // MSI-X, end of list
        c[MSI_CAP + 1] = 0;
        put16(c, MSI_CONTROL, (MSIX_VECTORS - 1) as u16);
        put32(c, MSI_CAP + 4, MSIX_TABLE);
        put32(c, MSI_CAP + 8, MSIX_PBA);
        put32(&mut self.wmask, 0x10, !(BAR0_SIZE as u32 - 1));
        self.nvme = Some(Box::new(nvme));
        self.msix_resizable = resizable;
        self.msix_available = available;
    }

    /// BAR0's size.
    pub(crate) fn bar0_size(&self) -> u64 {
        if self.nvme.is_some() {
            super::nvme::BAR0_SIZE
        } else {
            BAR0_SIZE
        }
    }

    pub(crate) fn bus_master(&self) -> bool {
        self.config[COMMAND] & COMMAND_MASTER != 0
    }

    pub(crate) fn msi_enabled(&self) -> bool {
        self.irq == IrqType::Msi
    }

    pub(crate) fn config_read(&self, at: usize) -> u8 {
        let byte = self.config[at];
        if at == MSI_CONTROL + 1 && self.nvme.is_some() {
            // MSI-X Enable.
            byte | if self.irq == IrqType::Msix { 0x80 } else { 0 }
        } else if at == MSI_CONTROL {
            byte | u8::from(self.msi_enabled())
        } else {
            byte
        }
    }

    pub(crate) fn config_write(&mut self, at: usize, value: u8) {
        let mask = self.wmask[at];
        self.config[at] = (self.config[at] & !mask) | (value & mask);
    }

    /// What `vfio_pci_core_disable` does when the last device file closes
    /// (and `vfio_pci_core_enable` finds on the next open): interrupts off,
    /// Bus Master off.
    pub(crate) fn disable(&mut self) {
        self.irq = IrqType::None;
        self.intx_trigger = None;
        self.intx_masked = false;
        self.msi.clear();
        self.req = None;
        self.intx_unmask = None;
        self.ioeventfds.clear();
        self.dma_log = None;
        // vfio_pci_core_disable resets the function.
        if let Some(nvme) = &mut self.nvme {
            nvme.reset();
        }
        put16(&mut self.config, COMMAND, COMMAND_ON_OPEN);
        // Opening the device (as a reset) returns it to RUNNING.
        if let Some(mig) = &mut self.mig {
            mig.reset();
        }
    }

    /// Delivers what the device signalled: MSIs (only with Bus Master on:
    /// an MSI is a memory write), and the INTx level through vfio's
    /// automasking.
    pub(crate) fn deliver(&mut self) {
        let sent = std::mem::take(&mut self.edu.msi_sent);
        if self.irq == IrqType::Msi
            && self.bus_master()
            && let Some(Some(fd)) = self.msi.first()
        {
            for _ in 0..sent {
                os::signal(fd);
            }
        }
        if self.irq == IrqType::Intx && self.edu.intx_level && !self.intx_masked {
            self.intx_masked = true;
            if let Some(fd) = &self.intx_trigger {
                os::signal(fd);
            }
        }
    }

    /// `vfio_send_intx_eventfd`: a loopback trigger, masked or not.
    pub(crate) fn send_intx(&self) {
        if self.irq == IrqType::Intx
            && let Some(fd) = &self.intx_trigger
        {
            os::signal(fd);
        }
    }

    /// `vfio_pci_intx_unmask`: a still-asserted line is re-sent and stays
    /// masked.
    pub(crate) fn unmask_intx(&mut self) {
        if self.intx_masked {
            if self.edu.intx_level {
                self.send_intx();
            } else {
                self.intx_masked = false;
            }
        }
    }
}
