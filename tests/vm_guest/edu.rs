//! QEMU's `edu` device (docs/specs/edu.rst) and small helpers over the raw
//! layer (`typed_vfio::sys`) for the guest tests in [`crate::raw`].
//!
//! Everything here talks to the kernel through `sys::ioctl::*` with the fd
//! classes `sys::ContainerFd` / `GroupFd` / `DeviceFd`, plus `libc` for the
//! plumbing (eventfd, poll, mmap, mlock). Owned fds are `File`s / `OwnedFd`s,
//! so every fd is closed on drop, panics included.

#![allow(dead_code)]

use std::ffi::CString;
use std::fs::{File, OpenOptions};
use std::io;
use std::mem::size_of;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::FileExt;
use std::os::unix::fs::OpenOptionsExt;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use typed_vfio::sys;
use typed_vfio::sys::{FromBytes, IntoBytes, SliceBytes};

use crate::rig::{self, IommuKind};

// --- edu BAR0 registers ----------------------------------------------------------

/// Whether edu's BAR0 registers are big-endian. QEMU declares edu's MMIO
/// `DEVICE_NATIVE_ENDIAN` (hw/misc/edu.c): its registers are in the guest
/// CPU's byte order, so big-endian on a big-endian guest (PowerPC), unlike a
/// real PCI device. vfio-pci hands BAR bytes over in the device's byte order
/// on every host, so `pread` and `mmap` see the same bytes. Config space is
/// genuinely little-endian everywhere.
pub const EDU_BIG_ENDIAN: bool = cfg!(target_endian = "big");

/// Whether a 64-bit access to edu's DMA registers reaches edu as one access.
/// On a 32-bit CPU a 64-bit MMIO store splits in two 32-bit ones (and
/// vfio-pci's 8-byte `pread`/`pwrite` path needs `ioread64`/`iowrite64`,
/// which 32-bit PowerPC kernels lack), while edu takes a 32-bit write at a DMA
/// register's low address as the whole register: there the helpers write
/// one 32-bit value, which edu's 28-bit DMA addresses and counts fit.
pub const EDU_DMA_REGS_64: bool = cfg!(target_pointer_width = "64");

/// 0x00 (RO): identification, 0xRRrr00edu: major 1, minor 0.
pub const REG_IDENT: u64 = 0x00;
/// The value of [`REG_IDENT`] for QEMU's edu 1.0.
pub const EDU_IDENT: u32 = 0x0100_00ed;
/// 0x04 (RW): liveness check, reads back the bitwise inverse of the value written.
pub const REG_LIVENESS: u64 = 0x04;
/// 0x08 (RW): factorial; write n, read n! once status bit 0 clears.
pub const REG_FACTORIAL: u64 = 0x08;
/// 0x20 (RW): status; bit 0 (RO) factorial computing, bit 7 raise IRQ 0x1 when done.
pub const REG_STATUS: u64 = 0x20;
pub const STATUS_COMPUTING: u32 = 0x01;
pub const STATUS_IRQ_FACT: u32 = 0x80;
/// 0x24 (RO): interrupt status.
pub const REG_IRQ_STATUS: u64 = 0x24;
/// 0x60 (WO): raise interrupt: the value is ORed into the interrupt status.
pub const REG_IRQ_RAISE: u64 = 0x60;
/// 0x64 (WO): acknowledge interrupt: the value is cleared from the interrupt status.
pub const REG_IRQ_ACK: u64 = 0x64;
/// 0x80 (RW, 64-bit): DMA source address.
pub const REG_DMA_SRC: u64 = 0x80;
/// 0x88 (RW, 64-bit): DMA destination address.
pub const REG_DMA_DST: u64 = 0x88;
/// 0x90 (RW, 64-bit): DMA transfer count in bytes.
pub const REG_DMA_COUNT: u64 = 0x90;
/// 0x98 (RW, 64-bit): DMA command.
pub const REG_DMA_CMD: u64 = 0x98;
/// DMA command bit 0: start (reads 1 while the transfer runs).
pub const DMA_CMD_START: u64 = 0x1;
/// DMA command bit 1: direction; 0 = RAM to device, 1 = device to RAM.
pub const DMA_CMD_TO_RAM: u64 = 0x2;
/// DMA command bit 2: raise interrupt [`DMA_IRQ`] when done.
pub const DMA_CMD_IRQ: u64 = 0x4;
/// The interrupt status bit a DMA with [`DMA_CMD_IRQ`] raises.
pub const DMA_IRQ: u32 = 0x100;
/// Device address of edu's 4 KiB DMA buffer.
pub const EDU_DMA_BUF: u64 = 0x40000;
/// At most this many bytes per transfer: QEMU 7.2's edu aborts on a full 4 KiB one.
pub const MAX_DMA: usize = 2048;
/// edu's default DMA mask: 28 bits.
pub const DMA_LIMIT: u64 = 1 << 28;
/// BAR0 size.
pub const BAR0_SIZE: u64 = 1 << 20;

// --- PCI config space -----------------------------------------------------------------

pub const PCI_VENDOR_ID: u64 = 0x00;
pub const PCI_DEVICE_ID: u64 = 0x02;
pub const PCI_COMMAND: u64 = 0x04;
pub const PCI_COMMAND_MEMORY: u16 = 0x2;
pub const PCI_COMMAND_MASTER: u16 = 0x4;

/// How long any wait for the device or an interrupt may take (TCG is slow,
/// an edu DMA takes ~100 ms of timer time).
pub const TIMEOUT: Duration = Duration::from_secs(5);

// --- errno helpers -----------------------------------------------------------------------

/// `nix::Result` of an ioctl, with the errno spelled out on failure.
pub fn expect_ok(what: &str, r: nix::Result<i32>) -> i32 {
    match r {
        Ok(v) => v,
        Err(e) => panic!("{what}: {e} ({})", e as i32),
    }
}

/// Asserts that `r` failed with exactly `want`.
pub fn expect_errno<T: std::fmt::Debug>(what: &str, r: nix::Result<T>, want: Errno) {
    match r {
        Ok(v) => panic!("{what}: succeeded ({v:?}), wanted {want} ({})", want as i32),
        Err(e) => {
            println!("{what}: {e} ({})", e as i32);
            assert_eq!(e, want, "{what}: got {e}, wanted {want}");
        }
    }
}

// --- container / group ------------------------------------------------------------------

fn open_rw(path: &str) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_CLOEXEC)
        .open(path)
}

/// Opens `/dev/vfio/vfio`.
pub fn open_container() -> File {
    open_rw(rig::VFIO_CONTAINER).unwrap_or_else(|e| panic!("open {}: {e}", rig::VFIO_CONTAINER))
}

/// Opens `/dev/vfio/<name>`.
pub fn open_group(name: &str) -> File {
    let path = rig::group_path(name);
    open_rw(path.to_str().expect("utf-8 path"))
        .unwrap_or_else(|e| panic!("open {}: {e}", path.display()))
}

/// Tags a container file.
pub fn cfd(f: &File) -> sys::ContainerFd<'_> {
    sys::ContainerFd::new(f.as_fd())
}

/// Tags a group file.
pub fn gfd(f: &File) -> sys::GroupFd<'_> {
    sys::GroupFd::new(f.as_fd())
}

/// Tags a device file.
pub fn dfd(f: &File) -> sys::DeviceFd<'_> {
    sys::DeviceFd::new(f.as_fd())
}

/// `VFIO_GROUP_GET_STATUS`: the flags.
pub fn group_flags(group: &File) -> u32 {
    let mut st = sys::vfio_group_status {
        argsz: size_of::<sys::vfio_group_status>() as u32,
        flags: 0,
    };
    // SAFETY: `group` is a VFIO group fd; `st` is a live, writable
    // vfio_group_status whose argsz is its own size.
    let r = unsafe { sys::ioctl::vfio_group_get_status(gfd(group), &mut st) };
    expect_ok("VFIO_GROUP_GET_STATUS", r);
    st.flags
}

/// `VFIO_GROUP_SET_CONTAINER`.
pub fn set_container(group: &File, container: &File) -> nix::Result<i32> {
    let fd: libc::c_int = container.as_raw_fd();
    // SAFETY: `group` is a VFIO group fd; the argument points to a live c_int
    // holding an open container fd.
    unsafe { sys::ioctl::vfio_group_set_container(gfd(group), &fd) }
}

/// `VFIO_GROUP_UNSET_CONTAINER`.
pub fn unset_container(group: &File) -> nix::Result<i32> {
    // SAFETY: `group` is a VFIO group fd; the request takes no argument.
    unsafe { sys::ioctl::vfio_group_unset_container(gfd(group)) }
}

/// `VFIO_CHECK_EXTENSION`.
pub fn check_extension(container: &File, ext: u32) -> nix::Result<i32> {
    // SAFETY: `container` is /dev/vfio/vfio; an integer argument.
    unsafe { sys::ioctl::vfio_check_extension(cfd(container), ext as libc::c_int) }
}

/// The IOMMU model id this configuration uses.
pub fn iommu_model() -> u32 {
    match rig::iommu() {
        IommuKind::Type1 => sys::VFIO_TYPE1_IOMMU,
        IommuKind::Type1v2 => sys::VFIO_TYPE1v2_IOMMU,
        IommuKind::NoIommu => sys::VFIO_NOIOMMU_IOMMU,
        IommuKind::Iommufd => panic!("the raw container tests do not run under iommufd"),
    }
}

/// `VFIO_SET_IOMMU` with `model`.
pub fn set_iommu(container: &File, model: u32) -> nix::Result<i32> {
    // SAFETY: `container` is /dev/vfio/vfio; an integer argument.
    unsafe { sys::ioctl::vfio_set_iommu(cfd(container), model as libc::c_int) }
}

/// `VFIO_GROUP_GET_DEVICE_FD` for `name`; the new fd as a `File`.
pub fn get_device_fd(group: &File, name: &str) -> nix::Result<File> {
    let c = CString::new(name).expect("no NUL in a device name");
    // SAFETY: `group` is a VFIO group fd; `c` is a live NUL-terminated string.
    let fd = unsafe { sys::ioctl::vfio_group_get_device_fd(gfd(group), c.as_ptr()) }?;
    // SAFETY: on success the kernel returned a new fd that nothing else owns.
    Ok(unsafe { File::from_raw_fd(fd) })
}

// --- one or more devices, set up -----------------------------------------------------------

/// A container with groups attached and the configuration's IOMMU set, and
/// the devices opened. Drops devices, then groups, then the container.
pub struct Vfio {
    pub devices: Vec<Device>,
    pub groups: Vec<File>,
    pub container: File,
}

impl Vfio {
    /// The first `n` edu devices, their groups in one container.
    pub fn open(n: usize) -> Vfio {
        let pairs = rig::devices_with_groups();
        assert!(
            pairs.len() >= n,
            "need {n} edu devices, the rig has {}",
            pairs.len()
        );
        let container = open_container();
        let mut groups = Vec::new();
        for (_, g) in &pairs[..n] {
            let group = open_group(g);
            let flags = group_flags(&group);
            assert!(
                flags & sys::VFIO_GROUP_FLAGS_VIABLE != 0,
                "group {g} is not viable (flags {flags:#x})"
            );
            expect_ok(
                &format!("VFIO_GROUP_SET_CONTAINER {g}"),
                set_container(&group, &container),
            );
            groups.push(group);
        }
        expect_ok("VFIO_SET_IOMMU", set_iommu(&container, iommu_model()));
        let mut devices = Vec::new();
        for (i, (bdf, _)) in pairs[..n].iter().enumerate() {
            let file = get_device_fd(&groups[i], bdf)
                .unwrap_or_else(|e| panic!("VFIO_GROUP_GET_DEVICE_FD {bdf}: {e}"));
            devices.push(Device::new(file, bdf));
        }
        Vfio {
            devices,
            groups,
            container,
        }
    }

    /// The first device.
    pub fn dev(&self) -> &Device {
        &self.devices[0]
    }
}

/// A device fd with its config and BAR0 region offsets.
pub struct Device {
    pub file: File,
    pub bdf: String,
    pub config: sys::vfio_region_info,
    pub bar0: sys::vfio_region_info,
}

/// `VFIO_DEVICE_GET_REGION_INFO` for `index` (fixed part only).
pub fn region_info(dev: &File, index: u32) -> nix::Result<sys::vfio_region_info> {
    let mut info = sys::vfio_region_info {
        argsz: size_of::<sys::vfio_region_info>() as u32,
        index,
        ..Default::default()
    };
    // SAFETY: `dev` is a VFIO device fd; `info` is live and writable and its
    // argsz is its own size.
    unsafe { sys::ioctl::vfio_device_get_region_info(dfd(dev), &mut info) }?;
    Ok(info)
}

/// `VFIO_DEVICE_GET_INFO` (fixed part only).
pub fn device_info(dev: &File) -> nix::Result<sys::vfio_device_info> {
    let mut info = sys::vfio_device_info {
        argsz: size_of::<sys::vfio_device_info>() as u32,
        ..Default::default()
    };
    // SAFETY: `dev` is a VFIO device fd; `info` is live, writable, argsz = its size.
    unsafe { sys::ioctl::vfio_device_get_info(dfd(dev), &mut info) }?;
    Ok(info)
}

/// `VFIO_DEVICE_GET_IRQ_INFO` for `index`.
pub fn irq_info(dev: &File, index: u32) -> nix::Result<sys::vfio_irq_info> {
    let mut info = sys::vfio_irq_info {
        argsz: size_of::<sys::vfio_irq_info>() as u32,
        index,
        ..Default::default()
    };
    // SAFETY: `dev` is a VFIO device fd; `info` is live, writable, argsz = its size.
    unsafe { sys::ioctl::vfio_device_get_irq_info(dfd(dev), &mut info) }?;
    Ok(info)
}

/// `struct vfio_irq_set` with room for one eventfd.
#[repr(C)]
struct IrqSetOne {
    argsz: u32,
    flags: u32,
    index: u32,
    start: u32,
    count: u32,
    data: i32,
}

/// `struct vfio_irq_set` without data.
#[repr(C)]
struct IrqSetNone {
    argsz: u32,
    flags: u32,
    index: u32,
    start: u32,
    count: u32,
}

/// `VFIO_DEVICE_SET_IRQS` with DATA_EVENTFD | ACTION_TRIGGER for vector 0 of `index`.
pub fn irq_set_eventfd(dev: &File, index: u32, efd: &EventFd) -> nix::Result<i32> {
    let set = IrqSetOne {
        argsz: size_of::<IrqSetOne>() as u32,
        flags: sys::VFIO_IRQ_SET_DATA_EVENTFD | sys::VFIO_IRQ_SET_ACTION_TRIGGER,
        index,
        start: 0,
        count: 1,
        data: efd.fd.as_raw_fd(),
    };
    // SAFETY: `dev` is a VFIO device fd; `set` has vfio_irq_set's layout
    // (5 u32 then the data) followed by one s32 eventfd that stays open for
    // the call; argsz covers exactly that.
    unsafe { sys::ioctl::vfio_device_set_irqs(dfd(dev), (&raw const set).cast()) }
}

/// `VFIO_DEVICE_SET_IRQS` with DATA_NONE and `action` on `index`, `start`, `count`.
pub fn irq_set_none(
    dev: &File,
    index: u32,
    action: u32,
    start: u32,
    count: u32,
) -> nix::Result<i32> {
    let set = IrqSetNone {
        argsz: size_of::<IrqSetNone>() as u32,
        flags: sys::VFIO_IRQ_SET_DATA_NONE | action,
        index,
        start,
        count,
    };
    // SAFETY: `dev` is a VFIO device fd; `set` has vfio_irq_set's fixed
    // layout and argsz is its size (DATA_NONE carries no data).
    unsafe { sys::ioctl::vfio_device_set_irqs(dfd(dev), (&raw const set).cast()) }
}

/// Tears down every trigger of `index` (DATA_NONE | ACTION_TRIGGER, count 0).
pub fn irq_disable(dev: &File, index: u32) -> nix::Result<i32> {
    irq_set_none(dev, index, sys::VFIO_IRQ_SET_ACTION_TRIGGER, 0, 0)
}

impl Device {
    pub fn new(file: File, bdf: &str) -> Device {
        let config = region_info(&file, sys::VFIO_PCI_CONFIG_REGION_INDEX)
            .unwrap_or_else(|e| panic!("{bdf}: config region info: {e}"));
        let bar0 = region_info(&file, sys::VFIO_PCI_BAR0_REGION_INDEX)
            .unwrap_or_else(|e| panic!("{bdf}: BAR0 region info: {e}"));
        Device {
            file,
            bdf: bdf.to_owned(),
            config,
            bar0,
        }
    }

    fn pread(&self, base: u64, off: u64, buf: &mut [u8], what: &str) {
        let n = self
            .file
            .read_at(buf, base + off)
            .unwrap_or_else(|e| panic!("{}: pread {what} {off:#x}: {e}", self.bdf));
        assert_eq!(n, buf.len(), "{}: short pread {what} {off:#x}", self.bdf);
    }

    fn pwrite(&self, base: u64, off: u64, buf: &[u8], what: &str) {
        let n = self
            .file
            .write_at(buf, base + off)
            .unwrap_or_else(|e| panic!("{}: pwrite {what} {off:#x}: {e}", self.bdf));
        assert_eq!(n, buf.len(), "{}: short pwrite {what} {off:#x}", self.bdf);
    }

    pub fn cfg_read16(&self, off: u64) -> u16 {
        let mut b = [0u8; 2];
        self.pread(self.config.offset, off, &mut b, "config");
        u16::from_le_bytes(b)
    }

    pub fn cfg_read32(&self, off: u64) -> u32 {
        let mut b = [0u8; 4];
        self.pread(self.config.offset, off, &mut b, "config");
        u32::from_le_bytes(b)
    }

    pub fn cfg_write16(&self, off: u64, v: u16) {
        self.pwrite(self.config.offset, off, &v.to_le_bytes(), "config");
    }

    /// Sets or clears Bus Master (and sets Memory Space) in the command register.
    pub fn set_bus_master(&self, on: bool) {
        let cmd = self.cfg_read16(PCI_COMMAND);
        let new = if on {
            cmd | PCI_COMMAND_MASTER | PCI_COMMAND_MEMORY
        } else {
            cmd & !PCI_COMMAND_MASTER
        };
        self.cfg_write16(PCI_COMMAND, new);
    }

    /// An edu register through `pread` (in edu's byte order, [`EDU_BIG_ENDIAN`]).
    pub fn read32(&self, off: u64) -> u32 {
        let mut b = [0u8; 4];
        self.pread(self.bar0.offset, off, &mut b, "BAR0");
        if EDU_BIG_ENDIAN {
            u32::from_be_bytes(b)
        } else {
            u32::from_le_bytes(b)
        }
    }

    pub fn write32(&self, off: u64, v: u32) {
        let b = if EDU_BIG_ENDIAN {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        };
        self.pwrite(self.bar0.offset, off, &b, "BAR0");
    }

    /// One of edu's 64-bit DMA registers: one 8-byte `pread`, or, where
    /// 64-bit accesses split ([`EDU_DMA_REGS_64`]), its low 32 bits.
    pub fn read64(&self, off: u64) -> u64 {
        if !EDU_DMA_REGS_64 {
            return u64::from(self.read32(off));
        }
        let mut b = [0u8; 8];
        self.pread(self.bar0.offset, off, &mut b, "BAR0");
        if EDU_BIG_ENDIAN {
            u64::from_be_bytes(b)
        } else {
            u64::from_le_bytes(b)
        }
    }

    pub fn write64(&self, off: u64, v: u64) {
        if !EDU_DMA_REGS_64 {
            let low = u32::try_from(v).unwrap_or_else(|_| {
                panic!("edu register {off:#x} <- {v:#x}: more than 32 bits on a 32-bit CPU")
            });
            return self.write32(off, low);
        }
        let b = if EDU_BIG_ENDIAN {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        };
        self.pwrite(self.bar0.offset, off, &b, "BAR0");
    }

    /// Programs and starts one edu DMA.
    pub fn dma_start(&self, src: u64, dst: u64, count: usize, cmd: u64) {
        assert!(
            count <= MAX_DMA,
            "edu DMA of {count} bytes: QEMU 7.2 aborts on large transfers"
        );
        assert_eq!(
            self.read64(REG_DMA_CMD) & DMA_CMD_START,
            0,
            "{}: a DMA is still running",
            self.bdf
        );
        self.write64(REG_DMA_SRC, src);
        self.write64(REG_DMA_DST, dst);
        self.write64(REG_DMA_COUNT, count as u64);
        self.write64(REG_DMA_CMD, cmd | DMA_CMD_START);
    }

    /// Polls the DMA command register until the start bit clears; false on timeout.
    pub fn dma_wait(&self) -> bool {
        let t0 = Instant::now();
        while t0.elapsed() < TIMEOUT {
            if self.read64(REG_DMA_CMD) & DMA_CMD_START == 0 {
                return true;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        false
    }

    /// RAM (bus address `addr`) → edu buffer + `dev_off`, `count` bytes; waits.
    pub fn dma_to_device(&self, addr: u64, dev_off: u64, count: usize) {
        self.dma_start(addr, EDU_DMA_BUF + dev_off, count, 0);
        assert!(
            self.dma_wait(),
            "{}: RAM→device DMA did not finish in {TIMEOUT:?}",
            self.bdf
        );
    }

    /// edu buffer + `dev_off` → RAM (bus address `addr`), `count` bytes; waits.
    pub fn dma_to_ram(&self, dev_off: u64, addr: u64, count: usize) {
        self.dma_start(EDU_DMA_BUF + dev_off, addr, count, DMA_CMD_TO_RAM);
        assert!(
            self.dma_wait(),
            "{}: device→RAM DMA did not finish in {TIMEOUT:?}",
            self.bdf
        );
    }

    /// Maps BAR0 with mmap on the device fd.
    pub fn mmap_bar0(&self) -> Mmap {
        Mmap::device(&self.file, self.bar0.offset, self.bar0.size as usize)
            .unwrap_or_else(|e| panic!("{}: mmap BAR0: {e}", self.bdf))
    }
}

// --- eventfd ------------------------------------------------------------------------------------

/// A non-blocking eventfd.
pub struct EventFd {
    pub fd: OwnedFd,
}

impl EventFd {
    pub fn new() -> EventFd {
        // SAFETY: plain syscall, no pointers.
        let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        assert!(fd >= 0, "eventfd: {}", io::Error::last_os_error());
        // SAFETY: `fd` is a new fd that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        EventFd { fd }
    }

    /// Waits up to `timeout` for the counter to become non-zero; returns and
    /// resets the counter, or None on timeout.
    pub fn wait(&self, timeout: Duration) -> Option<u64> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let mut pfd = libc::pollfd {
                fd: self.fd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: `pfd` is one live pollfd.
            let r = unsafe { libc::poll(&mut pfd, 1, left.as_millis() as libc::c_int) };
            if r < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                panic!("poll eventfd: {e}");
            }
            if r == 0 {
                return None;
            }
            let mut v = 0u64;
            // SAFETY: reads 8 bytes into `v`, a live u64.
            let n = unsafe { libc::read(self.fd.as_raw_fd(), (&raw mut v).cast(), 8) };
            if n == 8 {
                return Some(v);
            }
            if Instant::now() >= deadline {
                return None;
            }
        }
    }
}

// --- memory ----------------------------------------------------------------------------------------

/// An mmap'ed range: anonymous memory (DMA buffers) or a device region.
pub struct Mmap {
    pub ptr: *mut u8,
    pub len: usize,
}

impl Mmap {
    /// Anonymous, private, read-write, zero-filled, page-aligned.
    pub fn anon(len: usize) -> Mmap {
        // SAFETY: anonymous mapping at a kernel-chosen address; no fd.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert_ne!(
            p,
            libc::MAP_FAILED,
            "mmap anon {len}: {}",
            io::Error::last_os_error()
        );
        Mmap { ptr: p.cast(), len }
    }

    /// A shared mapping of `len` bytes at `offset` of a device fd.
    pub fn device(f: &File, offset: u64, len: usize) -> io::Result<Mmap> {
        // SAFETY: maps a VFIO region at a kernel-chosen address; no existing
        // memory is affected.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                f.as_raw_fd(),
                offset as libc::off_t,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(Mmap { ptr: p.cast(), len })
    }

    pub fn addr(&self) -> u64 {
        self.ptr as u64
    }

    /// Volatile 32-bit read at `off` (MMIO, or memory a device writes).
    pub fn read32(&self, off: usize) -> u32 {
        assert!(off + 4 <= self.len && off.is_multiple_of(4));
        // SAFETY: in bounds and aligned (checked); the mapping is live.
        unsafe { self.ptr.wrapping_add(off).cast::<u32>().read_volatile() }
    }

    /// Volatile 32-bit write at `off`.
    pub fn write32(&self, off: usize, v: u32) {
        assert!(off + 4 <= self.len && off.is_multiple_of(4));
        // SAFETY: in bounds and aligned (checked); the mapping is live and writable.
        unsafe { self.ptr.wrapping_add(off).cast::<u32>().write_volatile(v) }
    }

    /// Volatile copy out of `[off, off + len)`.
    pub fn read_bytes(&self, off: usize, len: usize) -> Vec<u8> {
        assert!(off + len <= self.len);
        // SAFETY: every byte is in bounds (checked) of a live mapping.
        (0..len)
            .map(|i| unsafe { self.ptr.wrapping_add(off + i).read_volatile() })
            .collect()
    }

    /// Volatile copy into `[off, off + data.len())`.
    pub fn write_bytes(&self, off: usize, data: &[u8]) {
        assert!(off + data.len() <= self.len);
        for (i, b) in data.iter().enumerate() {
            // SAFETY: in bounds (checked) of a live, writable mapping.
            unsafe { self.ptr.wrapping_add(off + i).write_volatile(*b) }
        }
    }

    /// Fills the whole mapping with `b`.
    pub fn fill(&self, b: u8) {
        // SAFETY: the whole live, writable mapping.
        unsafe { std::ptr::write_bytes(self.ptr, b, self.len) }
    }

    /// Locks the mapping in RAM (no-IOMMU DMA: physical pages must not move).
    pub fn mlock(&self) {
        // SAFETY: locks our own live mapping.
        let r = unsafe { libc::mlock(self.ptr.cast(), self.len) };
        assert_eq!(r, 0, "mlock: {}", io::Error::last_os_error());
    }

    /// Physical address of byte `off` from /proc/self/pagemap (root only).
    pub fn phys_addr(&self, off: usize) -> u64 {
        let page = page_size();
        let vaddr = self.addr() + off as u64;
        let f = File::open("/proc/self/pagemap").expect("open /proc/self/pagemap");
        let mut e = [0u8; 8];
        f.read_exact_at(&mut e, vaddr / page * 8)
            .expect("read /proc/self/pagemap");
        // pagemap entries are u64s in the CPU's byte order
        let entry = u64::from_ne_bytes(e);
        assert!(
            entry & (1 << 63) != 0,
            "page of {vaddr:#x} not present (pagemap {entry:#x})"
        );
        let pfn = entry & ((1 << 55) - 1);
        assert_ne!(pfn, 0, "pagemap hides PFNs (not root?)");
        pfn * page + vaddr % page
    }
}

impl Drop for Mmap {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the mapping this value owns; nothing borrows
        // it past this point.
        unsafe { libc::munmap(self.ptr.cast(), self.len) };
    }
}

pub fn page_size() -> u64 {
    // SAFETY: plain syscall.
    unsafe { libc::sysconf(libc::_SC_PAGESIZE) as u64 }
}

// --- type1 DMA mapping --------------------------------------------------------------------------

/// `VFIO_IOMMU_MAP_DMA` read-write.
pub fn map_dma(container: &File, vaddr: u64, iova: u64, size: u64) -> nix::Result<i32> {
    let map = sys::vfio_iommu_type1_dma_map {
        argsz: size_of::<sys::vfio_iommu_type1_dma_map>() as u32,
        flags: sys::VFIO_DMA_MAP_FLAG_READ | sys::VFIO_DMA_MAP_FLAG_WRITE,
        vaddr,
        iova,
        size,
    };
    // SAFETY: `container` is a type1 container; `map` is live; the caller
    // keeps `vaddr..vaddr+size` mapped (and expects device writes there)
    // until it unmaps the range.
    unsafe { sys::ioctl::vfio_iommu_map_dma(cfd(container), &map) }
}

/// `VFIO_IOMMU_UNMAP_DMA`; the size the kernel reports unmapped.
pub fn unmap_dma(container: &File, iova: u64, size: u64) -> nix::Result<u64> {
    let mut unmap = sys::vfio_iommu_type1_dma_unmap {
        argsz: size_of::<sys::vfio_iommu_type1_dma_unmap>() as u32,
        iova,
        size,
        ..Default::default()
    };
    // SAFETY: `container` is a type1 container; `unmap` is live, writable and
    // argsz is its fixed size (no dirty bitmap).
    unsafe { sys::ioctl::vfio_iommu_unmap_dma(cfd(container), &mut unmap) }?;
    Ok(unmap.size)
}

/// `VFIO_IOMMU_GET_INFO` in two calls (size, then with room for the
/// capabilities); the whole buffer as bytes (the info header first).
pub fn iommu_info_bytes(container: &File) -> Vec<u8> {
    let mut info = sys::vfio_iommu_type1_info {
        argsz: size_of::<sys::vfio_iommu_type1_info>() as u32,
        ..Default::default()
    };
    // SAFETY: type1 container; `info` is live, writable, argsz = its size.
    expect_ok("VFIO_IOMMU_GET_INFO (size)", unsafe {
        sys::ioctl::vfio_iommu_get_info(cfd(container), &mut info)
    });
    let need = info.argsz as usize;
    assert!(need >= size_of::<sys::vfio_iommu_type1_info>());
    // u64-aligned buffer
    let mut buf = vec![0u64; need.div_ceil(8)];
    let hdr = sys::vfio_iommu_type1_info {
        argsz: need as u32,
        ..Default::default()
    };
    buf.as_mut_bytes()[..size_of::<sys::vfio_iommu_type1_info>()].copy_from_slice(hdr.as_bytes());
    // SAFETY: type1 container; the buffer is live, writable, 8-aligned, at
    // least `need` bytes, starts with a vfio_iommu_type1_info whose argsz is `need`.
    let r = unsafe { sys::ioctl::vfio_iommu_get_info(cfd(container), buf.as_mut_ptr().cast()) };
    expect_ok("VFIO_IOMMU_GET_INFO (full)", r);
    let mut bytes = buf.as_bytes().to_vec();
    bytes.truncate(need);
    bytes
}

/// Reads a `T` at `off` of `bytes`.
pub fn read_at<T: FromBytes>(bytes: &[u8], off: usize) -> T {
    T::read_from_prefix(&bytes[off..])
        .unwrap_or_else(|_| panic!("short buffer at {off}"))
        .0
}

/// Walks a VFIO capability chain starting at `first` (offsets from the start
/// of `bytes`): (id, version, offset) of each capability.
pub fn walk_caps(bytes: &[u8], first: u32) -> Vec<(u16, u16, usize)> {
    let mut out = Vec::new();
    let mut off = first as usize;
    while off != 0 {
        assert!(
            off + size_of::<sys::vfio_info_cap_header>() <= bytes.len(),
            "capability at {off} past the end"
        );
        assert!(out.len() < 64, "capability chain loops");
        let h: sys::vfio_info_cap_header = read_at(bytes, off);
        out.push((h.id, h.version, off));
        off = h.next as usize;
    }
    out
}

/// A deterministic, position-dependent byte pattern (never all one value).
pub fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ ((i >> 8) as u8))
        .collect()
}

/// Group number of a group node name (`5` or `noiommu-0`).
pub fn group_number(name: &str) -> u32 {
    name.trim_start_matches("noiommu-")
        .parse()
        .unwrap_or_else(|e| panic!("group {name:?}: {e}"))
}

/// PCI (bus, devfn) of `DDDD:BB:DD.F`.
pub fn bus_devfn(bdf: &str) -> (u16, u8, u8) {
    let seg = u16::from_str_radix(&bdf[0..4], 16).expect("segment");
    let bus = u8::from_str_radix(&bdf[5..7], 16).expect("bus");
    let dev = u8::from_str_radix(&bdf[8..10], 16).expect("device");
    let func = u8::from_str_radix(&bdf[11..12], 16).expect("function");
    (seg, bus, (dev << 3) | func)
}

// --- a DMA buffer addressed the configuration's way ------------------------------------------

/// Anonymous memory the device can reach: mapped at `iova` through the
/// container (type1/type1v2; unmapped on drop) or locked in RAM and addressed
/// physically (no-IOMMU).
pub struct DmaBuf<'a> {
    pub mem: Mmap,
    pub iova: Option<u64>,
    container: &'a File,
}

impl<'a> DmaBuf<'a> {
    /// `len` bytes (a multiple of the page size), zero-filled. `iova` is used
    /// only with an IOMMU.
    pub fn new(vfio: &'a Vfio, len: usize, iova: u64) -> DmaBuf<'a> {
        let mem = Mmap::anon(len);
        mem.fill(0);
        let iova = if rig::iommu() == IommuKind::NoIommu {
            mem.mlock();
            None
        } else {
            assert!(
                iova + len as u64 <= DMA_LIMIT,
                "IOVA beyond edu's 28-bit DMA mask"
            );
            expect_ok(
                "VFIO_IOMMU_MAP_DMA",
                map_dma(&vfio.container, mem.addr(), iova, len as u64),
            );
            Some(iova)
        };
        DmaBuf {
            mem,
            iova,
            container: &vfio.container,
        }
    }

    /// The bus address the device uses for `[off, off + len)`; with no IOMMU
    /// the range must not cross a page (pages are not contiguous).
    pub fn bus(&self, off: usize, len: usize) -> u64 {
        assert!(off + len <= self.mem.len);
        match self.iova {
            Some(iova) => iova + off as u64,
            None => {
                let page = page_size() as usize;
                assert_eq!(
                    off / page,
                    (off + len - 1) / page,
                    "no-IOMMU DMA must stay within one page"
                );
                let phys = self.mem.phys_addr(off);
                assert!(
                    phys + len as u64 <= DMA_LIMIT,
                    "physical address {phys:#x} beyond edu's DMA mask"
                );
                phys
            }
        }
    }
}

impl Drop for DmaBuf<'_> {
    fn drop(&mut self) {
        if let Some(iova) = self.iova {
            // unmap before `mem` is munmapped (fields drop after this)
            if let Err(e) = unmap_dma(self.container, iova, self.mem.len as u64) {
                eprintln!("VFIO_IOMMU_UNMAP_DMA {iova:#x} on drop: {e}");
            }
        }
    }
}

/// A seed that differs between runs and tests, so stale device buffers
/// never match by accident.
pub fn fresh_seed() -> u8 {
    let ns = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    (ns ^ (ns >> 8) ^ (ns >> 16)) as u8 | 1
}

// --- edu registers through the typed API ------------------------------------------------

/// edu's BAR0 registers through the typed API's [`typed_vfio::Region`] and
/// [`typed_vfio::MappedRegion`], in edu's byte order ([`EDU_BIG_ENDIAN`]:
/// the `_be` accessors on a big-endian guest) and with the 64-bit DMA
/// registers written as one 32-bit value where 64-bit accesses split
/// ([`EDU_DMA_REGS_64`]).
pub trait EduRegs {
    fn reg32(&self, off: u64) -> Result<u32, typed_vfio::DeviceError>;
    fn set_reg32(&self, off: u64, v: u32) -> Result<(), typed_vfio::DeviceError>;
    fn reg64_full(&self, off: u64) -> Result<u64, typed_vfio::DeviceError>;
    fn set_reg64_full(&self, off: u64, v: u64) -> Result<(), typed_vfio::DeviceError>;

    /// A 64-bit DMA register (its low 32 bits where 64-bit accesses split).
    fn reg64(&self, off: u64) -> Result<u64, typed_vfio::DeviceError> {
        if EDU_DMA_REGS_64 {
            self.reg64_full(off)
        } else {
            self.reg32(off).map(u64::from)
        }
    }
    /// Writes a 64-bit DMA register (one 32-bit store where 64-bit
    /// accesses split: `v` must then fit in 32 bits).
    fn set_reg64(&self, off: u64, v: u64) -> Result<(), typed_vfio::DeviceError> {
        if EDU_DMA_REGS_64 {
            self.set_reg64_full(off, v)
        } else {
            let low = u32::try_from(v).unwrap_or_else(|_| {
                panic!("edu register {off:#x} <- {v:#x}: more than 32 bits on a 32-bit CPU")
            });
            self.set_reg32(off, low)
        }
    }
}

macro_rules! edu_regs {
    ($t:ty) => {
        impl EduRegs for $t {
            fn reg32(&self, off: u64) -> Result<u32, typed_vfio::DeviceError> {
                if EDU_BIG_ENDIAN {
                    self.read_u32_be(off)
                } else {
                    self.read_u32(off)
                }
            }
            fn set_reg32(&self, off: u64, v: u32) -> Result<(), typed_vfio::DeviceError> {
                if EDU_BIG_ENDIAN {
                    self.write_u32_be(off, v)
                } else {
                    self.write_u32(off, v)
                }
            }
            fn reg64_full(&self, off: u64) -> Result<u64, typed_vfio::DeviceError> {
                if EDU_BIG_ENDIAN {
                    self.read_u64_be(off)
                } else {
                    self.read_u64(off)
                }
            }
            fn set_reg64_full(&self, off: u64, v: u64) -> Result<(), typed_vfio::DeviceError> {
                if EDU_BIG_ENDIAN {
                    self.write_u64_be(off, v)
                } else {
                    self.write_u64(off, v)
                }
            }
        }
    };
}
edu_regs!(typed_vfio::Region<'_>);
edu_regs!(typed_vfio::MappedRegion<'_>);
