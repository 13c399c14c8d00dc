//! The simulated kernel's state and its request dispatch: the VFIO core
//! (container, groups, device files), with the type1 and no-IOMMU drivers
//! and vfio-pci devices behind it. Requests arrive exactly as the host
//! kernel gets them: an fd, a request code, the argument bytes.

use std::collections::HashMap;
use std::ffi::c_int;
use std::os::fd::{AsFd, BorrowedFd, IntoRawFd, OwnedFd};
use std::path::Path;
use std::sync::{Mutex, MutexGuard};

use nix::errno::Errno;

use super::edu::{BAR0_SIZE, Edu};
use super::iommu::{Type1, dword};
use super::iommufd::{Ictx, Ioas, UserMemory, X86_MSI_WINDOW};
use super::migration::MigDevice;
use super::os::{self, FdKey};
use super::pamu::{Pamu, PamuMode};
use super::pci::{CONFIG_SIZE, IoEventFd, IrqType, PciDevice};
use super::{DmaFault, DmaFaultReason, SimBuilder};
use crate::kernel::Arg;
use crate::sys;

/// The requests the simulator answers, by fd class, with their C names
/// (request numbers are reused across classes).
const CONTAINER_REQUESTS: &[(u32, &str)] = &[
    (sys::VFIO_GET_API_VERSION, "VFIO_GET_API_VERSION"),
    (sys::VFIO_CHECK_EXTENSION, "VFIO_CHECK_EXTENSION"),
    (sys::VFIO_SET_IOMMU, "VFIO_SET_IOMMU"),
    (sys::VFIO_IOMMU_GET_INFO, "VFIO_IOMMU_GET_INFO"),
    (sys::VFIO_IOMMU_MAP_DMA, "VFIO_IOMMU_MAP_DMA"),
    (sys::VFIO_IOMMU_UNMAP_DMA, "VFIO_IOMMU_UNMAP_DMA"),
    (sys::VFIO_IOMMU_PAMU_GET_ATTR, "VFIO_IOMMU_PAMU_GET_ATTR"),
    (sys::VFIO_IOMMU_PAMU_SET_ATTR, "VFIO_IOMMU_PAMU_SET_ATTR"),
    (
        sys::VFIO_IOMMU_PAMU_GET_MSI_BANK_COUNT,
        "VFIO_IOMMU_PAMU_GET_MSI_BANK_COUNT",
    ),
    (
        sys::VFIO_IOMMU_PAMU_MAP_MSI_BANK,
        "VFIO_IOMMU_PAMU_MAP_MSI_BANK",
    ),
    (
        sys::VFIO_IOMMU_PAMU_UNMAP_MSI_BANK,
        "VFIO_IOMMU_PAMU_UNMAP_MSI_BANK",
    ),
    // The number of PAMU_GET_MSI_BANK_COUNT too: the container's IOMMU
    // driver tells them apart (`request_name`), as in the kernel.
    (sys::VFIO_IOMMU_DIRTY_PAGES, "VFIO_IOMMU_DIRTY_PAGES"),
];
const GROUP_REQUESTS: &[(u32, &str)] = &[
    (sys::VFIO_GROUP_GET_STATUS, "VFIO_GROUP_GET_STATUS"),
    (sys::VFIO_GROUP_SET_CONTAINER, "VFIO_GROUP_SET_CONTAINER"),
    (
        sys::VFIO_GROUP_UNSET_CONTAINER,
        "VFIO_GROUP_UNSET_CONTAINER",
    ),
    (sys::VFIO_GROUP_GET_DEVICE_FD, "VFIO_GROUP_GET_DEVICE_FD"),
];
const DEVICE_REQUESTS: &[(u32, &str)] = &[
    (sys::VFIO_DEVICE_GET_INFO, "VFIO_DEVICE_GET_INFO"),
    (
        sys::VFIO_DEVICE_GET_REGION_INFO,
        "VFIO_DEVICE_GET_REGION_INFO",
    ),
    (sys::VFIO_DEVICE_GET_IRQ_INFO, "VFIO_DEVICE_GET_IRQ_INFO"),
    (sys::VFIO_DEVICE_SET_IRQS, "VFIO_DEVICE_SET_IRQS"),
    (sys::VFIO_DEVICE_RESET, "VFIO_DEVICE_RESET"),
    (
        sys::VFIO_DEVICE_GET_PCI_HOT_RESET_INFO,
        "VFIO_DEVICE_GET_PCI_HOT_RESET_INFO",
    ),
    (sys::VFIO_DEVICE_PCI_HOT_RESET, "VFIO_DEVICE_PCI_HOT_RESET"),
    (sys::VFIO_DEVICE_FEATURE, "VFIO_DEVICE_FEATURE"),
    (sys::VFIO_DEVICE_IOEVENTFD, "VFIO_DEVICE_IOEVENTFD"),
    (sys::VFIO_DEVICE_BIND_IOMMUFD, "VFIO_DEVICE_BIND_IOMMUFD"),
    (
        sys::VFIO_DEVICE_ATTACH_IOMMUFD_PT,
        "VFIO_DEVICE_ATTACH_IOMMUFD_PT",
    ),
    (
        sys::VFIO_DEVICE_DETACH_IOMMUFD_PT,
        "VFIO_DEVICE_DETACH_IOMMUFD_PT",
    ),
];
const IOMMUFD_REQUESTS: &[(u32, &str)] = &[
    (sys::IOMMU_DESTROY, "IOMMU_DESTROY"),
    (sys::IOMMU_IOAS_ALLOC, "IOMMU_IOAS_ALLOC"),
    (sys::IOMMU_IOAS_IOVA_RANGES, "IOMMU_IOAS_IOVA_RANGES"),
    (sys::IOMMU_IOAS_MAP, "IOMMU_IOAS_MAP"),
    (sys::IOMMU_IOAS_UNMAP, "IOMMU_IOAS_UNMAP"),
    (sys::IOMMU_OPTION, "IOMMU_OPTION"),
    (sys::IOMMU_GET_HW_INFO, "IOMMU_GET_HW_INFO"),
    (sys::IOMMU_HWPT_ALLOC, "IOMMU_HWPT_ALLOC"),
    (sys::IOMMU_IOAS_ALLOW_IOVAS, "IOMMU_IOAS_ALLOW_IOVAS"),
    (sys::IOMMU_IOAS_COPY, "IOMMU_IOAS_COPY"),
];
/// On a migration data fd.
const MIG_DATA_REQUESTS: &[(u32, &str)] =
    &[(sys::VFIO_MIG_GET_PRECOPY_INFO, "VFIO_MIG_GET_PRECOPY_INFO")];
/// The syscalls that can be failed by name too.
/// `migration_step` is no syscall: a fault injected on it fails one step
/// of a migration state transition in the device's driver, which leaves the
/// device in ERROR.
const SYSCALLS: &[&str] = &["open", "pread", "pwrite", "read", "write", "migration_step"];

/// Whether `name` is something [`Machine`] counts and can fail.
pub(crate) fn known_request(name: &str) -> Option<&'static str> {
    CONTAINER_REQUESTS
        .iter()
        .chain(GROUP_REQUESTS)
        .chain(DEVICE_REQUESTS)
        .chain(IOMMUFD_REQUESTS)
        .chain(MIG_DATA_REQUESTS)
        .map(|&(_, n)| n)
        .chain(SYSCALLS.iter().copied())
        .find(|n| *n == name)
}

/// What an open simulated file is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Container(usize),
    Group(usize),
    /// A device file from `VFIO_GROUP_GET_DEVICE_FD`.
    Device(usize),
    /// An open `/dev/iommu`.
    Iommufd(usize),
    /// An open device cdev (`/dev/vfio/devices/vfioN`), by file.
    Cdev(usize),
    /// A migration data fd: its device and the file's generation.
    MigData(usize, u64),
}

/// An open cdev file: its device and, once bound, its iommufd context and
/// device id.
#[derive(Debug)]
struct CdevFile {
    device: usize,
    bound: Option<(usize, u32)>,
}

#[derive(Debug)]
struct Object {
    /// The simulator's end of the object's pipe.
    own_end: OwnedFd,
    kind: Kind,
}

/// The IOMMU driver a container was set to.
#[derive(Debug)]
enum Driver {
    Type1(Type1),
    NoIommu,
    Pamu(Pamu),
}

#[derive(Debug, Default)]
struct ContainerObj {
    /// Its fd is open (a container lives on while groups hold it).
    open: bool,
    groups: Vec<usize>,
    driver: Option<Driver>,
    noiommu: bool,
}

#[derive(Debug)]
struct GroupObj {
    number: u32,
    noiommu: bool,
    viable: bool,
    devices: Vec<usize>,
    /// The group node is open (`opened_file`).
    opened: bool,
    /// ... and every fd of it is closed, but device files still hold it.
    closing: bool,
    container: Option<usize>,
    /// Open device files (the kernel's `container_users - 1`).
    device_files: usize,
    /// The group's reserved IOVA regions (inclusive), beside the x86 MSI
    /// window every group has.
    reserved: Vec<(u64, u64)>,
    /// Bound cdevs of its devices (`cdev_device_open_cnt`): the group node
    /// cannot be opened meanwhile.
    cdev_bound: usize,
}

#[derive(Debug)]
struct Fault {
    name: &'static str,
    countdown: u64,
    errno: Errno,
}

/// The simulated kernel's whole state.
#[derive(Debug)]
pub(crate) struct State {
    noiommu_mode: bool,
    /// A PAMU platform: its mode, MSI bank count and the PAMU IOMMU id.
    pamu: Option<(PamuMode, u32, u32)>,
    dma_entry_limit: u32,
    objects: HashMap<FdKey, Object>,
    containers: Vec<Option<ContainerObj>>,
    groups: Vec<GroupObj>,
    devices: Vec<PciDevice>,
    ictxs: Vec<Option<Ictx>>,
    cdevs: Vec<Option<CdevFile>>,
    faults: Vec<Fault>,
    calls: HashMap<&'static str, u64>,
    pub(crate) dma_faults: Vec<DmaFault>,
}

/// A simulated kernel.
#[derive(Debug)]
pub(crate) struct Machine {
    state: Mutex<State>,
}

fn word(b: &[u8], at: usize) -> Result<u32, Errno> {
    let w = b.get(at..at + 4).ok_or(Errno::EFAULT)?;
    Ok(u32::from_ne_bytes([w[0], w[1], w[2], w[3]]))
}

fn put(b: &mut [u8], at: usize, v: &[u8]) -> Result<(), Errno> {
    b.get_mut(at..at + v.len())
        .ok_or(Errno::EFAULT)?
        .copy_from_slice(v);
    Ok(())
}

fn input<'a>(arg: &'a Arg<'_>) -> Result<&'a [u8], Errno> {
    match arg {
        Arg::In(b) => Ok(b),
        Arg::InOut(b) => Ok(b),
        Arg::None | Arg::Int(_) => Err(Errno::EFAULT),
    }
}

fn inout<'a>(arg: &'a mut Arg<'_>) -> Result<&'a mut [u8], Errno> {
    match arg {
        Arg::InOut(b) => Ok(b),
        _ => Err(Errno::EFAULT),
    }
}

fn int_arg(arg: &Arg<'_>) -> u64 {
    match arg {
        // The kernel sees an unsigned long.
        Arg::Int(v) => *v as i64 as u64,
        _ => 0,
    }
}

/// Parses `SSSS:BB:DD.F`.
pub(crate) fn parse_address(a: &str) -> Option<(u16, u8, u8)> {
    let (seg, rest) = a.split_once(':')?;
    let (bus, rest) = rest.split_once(':')?;
    let (dev, func) = rest.split_once('.')?;
    if seg.len() != 4 || bus.len() != 2 || dev.len() != 2 || func.len() != 1 {
        return None;
    }
    let seg = u16::from_str_radix(seg, 16).ok()?;
    let bus = u8::from_str_radix(bus, 16).ok()?;
    let dev = u8::from_str_radix(dev, 16).ok()?;
    let func = u8::from_str_radix(func, 16).ok()?;
    (dev < 32 && func < 8).then_some((seg, bus, dev << 3 | func))
}

impl Machine {
    /// Builds the machine a (validated) builder describes.
    pub(crate) fn new(b: &SimBuilder) -> Machine {
        let mut groups = Vec::new();
        let mut devices = Vec::new();
        for (gi, g) in b.groups.iter().enumerate() {
            let mut members = Vec::new();
            for d in &g.devices {
                let addr = parse_address(&d.address).unwrap_or((0, 0, 0));
                let base = 0xfe00_0000u32.wrapping_sub((devices.len() as u32) << 20);
                members.push(devices.len());
                let mut dev = PciDevice::new(d.address.clone(), gi, addr, d.reset, base);
                dev.mig = d.migration.map(MigDevice::new);
                if let Some(n) = &d.nvme {
                    let mut nvme = super::nvme::Nvme::new(n.blocks);
                    if let Some(script) = &n.hostile {
                        nvme.hostile(script.clone());
                    }
                    dev.make_nvme(nvme, n.resizable, n.available);
                }
                devices.push(dev);
            }
            groups.push(GroupObj {
                number: g.number,
                noiommu: g.noiommu,
                viable: g.viable,
                devices: members,
                opened: false,
                closing: false,
                container: None,
                device_files: 0,
                reserved: g.reserved.clone(),
                cdev_bound: 0,
            });
        }
        Machine {
            state: Mutex::new(State {
                noiommu_mode: b.groups.iter().any(|g| g.noiommu),
                pamu: b.pamu.map(|mode| (mode, b.msi_banks, b.pamu_id)),
                dma_entry_limit: b.dma_entry_limit,
                objects: HashMap::new(),
                containers: Vec::new(),
                groups,
                devices,
                ictxs: Vec::new(),
                cdevs: Vec::new(),
                faults: Vec::new(),
                calls: HashMap::new(),
                dma_faults: Vec::new(),
            }),
        }
    }

    /// The state, locked, with every closed file released first.
    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state.sweep();
        state.service_eventfds();
        state
    }

    /// Whether `fd` is one of this machine's objects.
    pub(crate) fn owns(&self, fd: BorrowedFd<'_>) -> bool {
        let Ok(key) = os::key_of(fd) else {
            return false;
        };
        self.lock().objects.contains_key(&key)
    }

    /// `open(2)` of a node under `/dev/vfio`.
    pub(crate) fn open(&self, path: &Path) -> Result<OwnedFd, Errno> {
        let mut s = self.lock();
        s.count("open")?;
        if path == Path::new(crate::iommufd::IOMMUFD_PATH) {
            let i = s.ictxs.len();
            let fd = s.new_object(Kind::Iommufd(i))?;
            s.ictxs.push(Some(Ictx::new()));
            return Ok(fd);
        }
        if let Some(n) = path
            .strip_prefix("/dev/vfio/devices")
            .ok()
            .and_then(|p| p.to_str())
            .and_then(|p| p.strip_prefix("vfio"))
        {
            // vfioN: the device registered N-th; no-IOMMU devices have none.
            let d: usize = n
                .parse()
                .ok()
                .filter(|_| !n.starts_with('+'))
                .ok_or(Errno::ENOENT)?;
            let dev = s.devices.get(d).ok_or(Errno::ENOENT)?;
            if s.groups[dev.group].noiommu {
                return Err(Errno::ENOENT);
            }
            let c = s.cdevs.len();
            let fd = s.new_object(Kind::Cdev(c))?;
            s.cdevs.push(Some(CdevFile {
                device: d,
                bound: None,
            }));
            return Ok(fd);
        }
        let name = path
            .strip_prefix("/dev/vfio")
            .ok()
            .and_then(|p| p.to_str())
            .ok_or(Errno::ENOENT)?;
        if name == "vfio" {
            let id = s.containers.len();
            let fd = s.new_object(Kind::Container(id))?;
            s.containers.push(Some(ContainerObj {
                open: true,
                ..ContainerObj::default()
            }));
            return Ok(fd);
        }
        let (noiommu, number) = match name.strip_prefix("noiommu-") {
            Some(n) => (true, n),
            None => (false, name),
        };
        let number: u32 = number.parse().map_err(|_| Errno::ENOENT)?;
        let gi = s
            .groups
            .iter()
            .position(|g| g.number == number && g.noiommu == noiommu)
            .ok_or(Errno::ENOENT)?;
        let group = &s.groups[gi];
        if group.devices.is_empty() {
            return Err(Errno::ENODEV);
        }
        if group.opened || group.cdev_bound > 0 {
            return Err(Errno::EBUSY);
        }
        let fd = s.new_object(Kind::Group(gi))?;
        s.groups[gi].opened = true;
        s.groups[gi].closing = false;
        Ok(fd)
    }

    /// An ioctl on one of this machine's fds.
    ///
    /// # Safety
    ///
    /// As for `Kernel::ioctl_unchecked`: a `VFIO_IOMMU_MAP_DMA` argument's
    /// `vaddr..vaddr + size` must be process memory that the simulated
    /// device may read and write (volatile, from the thread that starts a
    /// DMA) until it is unmapped; the simulator's DMA engine accesses it.
    /// The other user pointers a request carries (iommufd's arrays, the
    /// dirty bitmaps of `VFIO_IOMMU_DIRTY_PAGES` and DMA logging reports,
    /// DMA logging's ranges) must name memory valid for the accesses the
    /// kernel makes there, as many bytes as the request says.
    pub(crate) unsafe fn ioctl(
        &self,
        fd: BorrowedFd<'_>,
        code: u32,
        mut arg: Arg<'_>,
    ) -> Result<c_int, Errno> {
        let key = os::key_of(fd).map_err(|_| Errno::EBADF)?;
        let mut s = self.lock();
        let kind = s.objects.get(&key).map(|o| o.kind).ok_or(Errno::ENOTTY)?;
        let table = match kind {
            Kind::Container(_) => CONTAINER_REQUESTS,
            Kind::Group(_) => GROUP_REQUESTS,
            Kind::Device(_) | Kind::Cdev(_) => DEVICE_REQUESTS,
            Kind::Iommufd(_) => IOMMUFD_REQUESTS,
            Kind::MigData(..) => MIG_DATA_REQUESTS,
        };
        let name = table.iter().find(|&&(c, _)| c == code).map(|&(_, n)| n);
        // VFIO_BASE + 17 is type1's DIRTY_PAGES and the PAMU driver's
        // GET_MSI_BANK_COUNT: the container's driver decides.
        let name = match (kind, name) {
            (Kind::Container(c), Some("VFIO_IOMMU_PAMU_GET_MSI_BANK_COUNT"))
                if matches!(
                    s.containers
                        .get(c)
                        .and_then(Option::as_ref)
                        .map(|c| &c.driver),
                    Some(Some(Driver::Type1(_)))
                ) =>
            {
                Some("VFIO_IOMMU_DIRTY_PAGES")
            }
            (_, name) => name,
        };
        if let Some(name) = name
            && let Err(errno) = s.count(name)
        {
            // The SDK PAMU driver turns every error of these into 0.
            return if s.swallows(kind, name) {
                Ok(0)
            } else {
                Err(errno)
            };
        }
        if let Kind::Cdev(c) = kind
            && name != Some("VFIO_DEVICE_BIND_IOMMUFD")
            && s.cdev_device(c).is_none()
        {
            // Only BIND_IOMMUFD until the bind grants access.
            return Err(Errno::EINVAL);
        }
        let Some(name) = name else {
            return s.unknown_request(kind);
        };
        match kind {
            Kind::Container(c) => s.container_ioctl(c, name, &mut arg),
            Kind::Group(g) => s.group_ioctl(g, name, &mut arg),
            Kind::Device(d) => match name {
                // BIND_IOMMUFD is for cdev fds only; attach and detach
                // reach vfio-pci's own ioctl, which knows neither.
                "VFIO_DEVICE_BIND_IOMMUFD" => {
                    word(input(&arg)?, 12)?;
                    Err(Errno::EINVAL)
                }
                "VFIO_DEVICE_ATTACH_IOMMUFD_PT" | "VFIO_DEVICE_DETACH_IOMMUFD_PT" => {
                    Err(Errno::ENOTTY)
                }
                _ => s.device_ioctl(d, name, &mut arg),
            },
            Kind::Cdev(c) => s.cdev_ioctl(c, name, &mut arg),
            Kind::MigData(d, generation) => {
                // VFIO_MIG_GET_PRECOPY_INFO, the one request of the file.
                let b = inout(&mut arg)?;
                if (word(b, 0)? as usize) < 24 {
                    return Err(Errno::EINVAL);
                }
                let mig = s.devices[d].mig.as_ref().ok_or(Errno::ENOTTY)?;
                let (initial, dirty) = mig.precopy_info(generation)?;
                put(b, 8, &initial.to_ne_bytes())?;
                put(b, 16, &dirty.to_ne_bytes())?;
                Ok(0)
            }
            Kind::Iommufd(i) => {
                let ictx = s
                    .ictxs
                    .get_mut(i)
                    .and_then(Option::as_mut)
                    .ok_or(Errno::EBADF)?;
                // SAFETY: our caller's contract covers the user pointers the
                // iommufd requests carry (IOVA_RANGES' `allowed_iovas` and
                // GET_HW_INFO's `data_uptr` name memory the kernel may write,
                // ALLOW_IOVAS' `allowed_iovas` memory it may read, as many
                // bytes as the request says).
                let mut mem = unsafe { Process::new() };
                ictx.ioctl(name, inout(&mut arg)?, &mut mem)?;
                Ok(0)
            }
        }
    }

    /// `pread(2)` on a simulated fd.
    pub(crate) fn pread(
        &self,
        fd: BorrowedFd<'_>,
        buf: &mut [u8],
        offset: u64,
    ) -> Result<usize, Errno> {
        let key = os::key_of(fd).map_err(|_| Errno::EBADF)?;
        let mut s = self.lock();
        s.count("pread")?;
        match s.objects.get(&key).map(|o| o.kind) {
            Some(Kind::Device(d)) => s.device_rw(d, offset, Rw::Read(buf)),
            Some(Kind::Cdev(c)) => match s.cdev_device(c) {
                Some(d) => s.device_rw(d, offset, Rw::Read(buf)),
                None => Err(Errno::EINVAL),
            },
            // The container and group nodes have no read method.
            _ => Err(Errno::EINVAL),
        }
    }

    /// `read(2)` on a simulated fd (migration data fds).
    pub(crate) fn read(&self, fd: BorrowedFd<'_>, buf: &mut [u8]) -> Result<usize, Errno> {
        let key = os::key_of(fd).map_err(|_| Errno::EBADF)?;
        let mut s = self.lock();
        s.count("read")?;
        match s.objects.get(&key).map(|o| o.kind) {
            Some(Kind::MigData(d, generation)) => s.devices[d]
                .mig
                .as_mut()
                .ok_or(Errno::EINVAL)?
                .read(generation, buf),
            // The VFIO nodes have no read method.
            _ => Err(Errno::EINVAL),
        }
    }

    /// `write(2)` on a simulated fd (migration data fds).
    pub(crate) fn write(&self, fd: BorrowedFd<'_>, buf: &[u8]) -> Result<usize, Errno> {
        let key = os::key_of(fd).map_err(|_| Errno::EBADF)?;
        let mut s = self.lock();
        s.count("write")?;
        match s.objects.get(&key).map(|o| o.kind) {
            Some(Kind::MigData(d, generation)) => s.devices[d]
                .mig
                .as_mut()
                .ok_or(Errno::EINVAL)?
                .write(generation, buf),
            _ => Err(Errno::EINVAL),
        }
    }

    /// `pwrite(2)` on a simulated fd.
    pub(crate) fn pwrite(
        &self,
        fd: BorrowedFd<'_>,
        buf: &[u8],
        offset: u64,
    ) -> Result<usize, Errno> {
        let key = os::key_of(fd).map_err(|_| Errno::EBADF)?;
        let mut s = self.lock();
        s.count("pwrite")?;
        match s.objects.get(&key).map(|o| o.kind) {
            Some(Kind::Device(d)) => s.device_rw(d, offset, Rw::Write(buf)),
            Some(Kind::Cdev(c)) => match s.cdev_device(c) {
                Some(d) => s.device_rw(d, offset, Rw::Write(buf)),
                None => Err(Errno::EINVAL),
            },
            _ => Err(Errno::EINVAL),
        }
    }
}

/// [`State::count`], on the two fields it needs (so that a device can be
/// borrowed meanwhile).
fn count_call(
    calls: &mut HashMap<&'static str, u64>,
    faults: &mut Vec<Fault>,
    name: &'static str,
) -> Result<(), Errno> {
    *calls.entry(name).or_insert(0) += 1;
    let mut fired = None;
    faults.retain_mut(|f| {
        if f.name != name {
            return true;
        }
        f.countdown = f.countdown.saturating_sub(1);
        if f.countdown == 0 && fired.is_none() {
            fired = Some(f.errno);
            false
        } else {
            if f.countdown == 0 {
                // Due at the same call as one that fired: due next call.
                f.countdown = 1;
            }
            true
        }
    });
    fired.map_or(Ok(()), Err)
}

/// A region access.
enum Rw<'a> {
    Read(&'a mut [u8]),
    Write(&'a [u8]),
}

impl State {
    /// Counts a call of `name` and fires an injected fault due now.
    ///
    /// Every pending fault of `name` counts every call of it, the failed ones
    /// included, so faults injected for the 1st and the 2nd call fail the
    /// first two calls. When several are due at one call, the earliest
    /// injected fires and the others stay due (they fail the next calls).
    fn count(&mut self, name: &'static str) -> Result<(), Errno> {
        count_call(&mut self.calls, &mut self.faults, name)
    }

    pub(crate) fn inject(&mut self, name: &'static str, nth: u64, errno: Errno) {
        self.faults.push(Fault {
            name,
            countdown: nth,
            errno,
        });
    }

    pub(crate) fn clear_faults(&mut self) {
        self.faults.clear();
    }

    pub(crate) fn calls(&self, name: &str) -> u64 {
        self.calls.get(name).copied().unwrap_or(0)
    }

    /// Every request called so far, with its count, sorted by name.
    pub(crate) fn call_counts(&self) -> Vec<(&'static str, u64)> {
        let mut all: Vec<(&'static str, u64)> = self.calls.iter().map(|(&n, &c)| (n, c)).collect();
        all.sort_unstable();
        all
    }

    #[cfg(feature = "type2")]
    pub(crate) fn has_pamu(&self) -> bool {
        self.pamu.is_some()
    }

    /// Whether some PAMU container's domain is enabled.
    pub(crate) fn pamu_enabled(&self) -> bool {
        self.containers.iter().flatten().any(|c| match &c.driver {
            Some(Driver::Pamu(p)) => p.enabled(),
            _ => false,
        })
    }

    pub(crate) fn group_id_of(&self, number: u32) -> Option<crate::GroupId> {
        self.groups
            .iter()
            .find(|g| g.number == number)
            .map(|g| crate::GroupId {
                number: g.number,
                noiommu: g.noiommu,
            })
    }

    /// Every group with its devices' addresses, in description order.
    pub(crate) fn group_list(&self) -> Vec<(crate::GroupId, Vec<String>)> {
        self.groups
            .iter()
            .map(|g| {
                let id = crate::GroupId {
                    number: g.number,
                    noiommu: g.noiommu,
                };
                let devices = g.devices.iter().map(|&d| self.devices[d].name.clone());
                (id, devices.collect())
            })
            .collect()
    }

    pub(crate) fn group_of_device(&self, name: &str) -> Option<crate::GroupId> {
        let d = self.devices.iter().find(|d| d.name == name)?;
        let g = &self.groups[d.group];
        Some(crate::GroupId {
            number: g.number,
            noiommu: g.noiommu,
        })
    }

    /// A device's position in the description, and whether its group is a
    /// no-IOMMU group.
    pub(crate) fn device_index(&self, name: &str) -> Option<(usize, bool)> {
        let d = self.devices.iter().position(|d| d.name == name)?;
        Some((d, self.groups[self.devices[d].group].noiommu))
    }

    /// Every live mapping of every container and IOAS.
    pub(crate) fn mappings(&self) -> Vec<super::SimMapping> {
        let dma = |m: &super::iommu::Mapping| super::SimMapping {
            iova: m.iova,
            size: m.size,
            vaddr: m.vaddr,
            device_reads: m.read,
            device_writes: m.write,
            msi_bank: None,
        };
        let mut out = Vec::new();
        for c in self.containers.iter().flatten() {
            match &c.driver {
                Some(Driver::Type1(t)) => out.extend(t.mappings().map(dma)),
                Some(Driver::Pamu(p)) => {
                    let mut all: Vec<_> = p.mappings().map(dma).collect();
                    all.extend(
                        p.msi_mappings()
                            .map(|(index, iova, size)| super::SimMapping {
                                iova,
                                size,
                                vaddr: 0,
                                device_reads: true,
                                device_writes: true,
                                msi_bank: Some(index),
                            }),
                    );
                    all.sort_by_key(|m| m.iova);
                    out.extend(all);
                }
                _ => {}
            }
        }
        for ictx in self.ictxs.iter().flatten() {
            out.extend(ictx.mappings().map(dma));
        }
        out
    }

    /// Whether an injected error of `name` on this object is swallowed (the
    /// SDK PAMU driver's `SET_ATTR`, `MAP_MSI_BANK`, `UNMAP_MSI_BANK`).
    fn swallows(&self, kind: Kind, name: &str) -> bool {
        let Kind::Container(c) = kind else {
            return false;
        };
        let sdk = matches!(
            self.containers
                .get(c)
                .and_then(Option::as_ref)
                .map(|c| &c.driver),
            Some(Some(Driver::Pamu(_)))
        ) && matches!(self.pamu, Some((PamuMode::Sdk, _, _)));
        sdk && matches!(
            name,
            "VFIO_IOMMU_PAMU_SET_ATTR"
                | "VFIO_IOMMU_PAMU_MAP_MSI_BANK"
                | "VFIO_IOMMU_PAMU_UNMAP_MSI_BANK"
        )
    }

    /// The PAMU driver of the container device `d` is in, if it has one.
    fn pamu_of_device(&self, d: usize) -> Option<&Pamu> {
        let c = self.groups[self.devices[d].group].container?;
        match &self.containers.get(c)?.as_ref()?.driver {
            Some(Driver::Pamu(p)) => Some(p),
            _ => None,
        }
    }

    fn new_object(&mut self, kind: Kind) -> Result<OwnedFd, Errno> {
        let (user, own_end) = os::object_pair()?;
        let key = os::key_of(user.as_fd())?;
        self.objects.insert(key, Object { own_end, kind });
        Ok(user)
    }

    /// Releases the objects whose every fd was closed, as the kernel's
    /// `release` methods would have: device files first, then groups (held
    /// open by their device files), then containers.
    fn sweep(&mut self) {
        let mut closed: Vec<(FdKey, Kind)> = self
            .objects
            .iter()
            .filter(|(_, o)| os::peer_closed(&o.own_end))
            .map(|(k, o)| (*k, o.kind))
            .collect();
        if closed.is_empty() {
            return;
        }
        closed.sort_by_key(|(_, k)| match k {
            Kind::MigData(..) | Kind::Device(_) | Kind::Cdev(_) => 0,
            Kind::Group(_) => 1,
            Kind::Container(_) => 2,
            Kind::Iommufd(_) => 3,
        });
        for (key, kind) in closed {
            self.objects.remove(&key);
            match kind {
                Kind::Device(d) => {
                    let dev = &mut self.devices[d];
                    dev.files -= 1;
                    if dev.files == 0 {
                        dev.disable();
                    }
                    let g = dev.group;
                    self.groups[g].device_files -= 1;
                    self.settle_group(g);
                }
                Kind::Group(g) => {
                    self.groups[g].closing = true;
                    self.settle_group(g);
                }
                Kind::Container(c) => {
                    if let Some(Some(cont)) = self.containers.get_mut(c) {
                        cont.open = false;
                    }
                    self.settle_container(c);
                }
                Kind::Cdev(c) => self.release_cdev(c),
                // Closing a data fd changes no state (the file stays the
                // device's until a transition or reset disables it).
                Kind::MigData(..) => {}
                Kind::Iommufd(i) => {
                    if let Some(Some(ictx)) = self.ictxs.get_mut(i) {
                        ictx.open = false;
                    }
                    self.settle_ictx(i);
                }
            }
        }
    }

    /// A closed group node is released once no device file holds it.
    fn settle_group(&mut self, g: usize) {
        let group = &self.groups[g];
        if group.closing && group.device_files == 0 {
            self.detach(g);
            let group = &mut self.groups[g];
            group.opened = false;
            group.closing = false;
        }
    }

    fn settle_container(&mut self, c: usize) {
        if let Some(slot) = self.containers.get_mut(c)
            && slot
                .as_ref()
                .is_some_and(|x| !x.open && x.groups.is_empty())
        {
            *slot = None;
        }
    }

    /// `vfio_group_detach_container`: the last group out releases the IOMMU
    /// driver, dropping every mapping.
    fn detach(&mut self, g: usize) {
        let Some(c) = self.groups[g].container.take() else {
            return;
        };
        if let Some(Some(cont)) = self.containers.get_mut(c) {
            cont.groups.retain(|&x| x != g);
            if cont.groups.is_empty() {
                cont.driver = None;
            } else if let Some(Driver::Type1(t)) = &mut cont.driver {
                let resv: Vec<(u64, u64)> = cont
                    .groups
                    .iter()
                    .flat_map(|&x| self.groups[x].reserved.iter().copied())
                    .collect();
                t.refresh_reserved(&resv);
            }
        }
        self.settle_container(c);
    }

    fn container(&mut self, c: usize) -> Result<&mut ContainerObj, Errno> {
        self.containers
            .get_mut(c)
            .and_then(Option::as_mut)
            .ok_or(Errno::EBADF)
    }

    // ---- iommufd and the device cdev ---------------------------------------------

    /// The device a cdev file gives access to, once bound.
    fn cdev_device(&self, c: usize) -> Option<usize> {
        let file = self.cdevs.get(c)?.as_ref()?;
        file.bound.map(|_| file.device)
    }

    /// The IOMMU reserved regions of device `d` (inclusive): the x86 MSI
    /// window, and its group's own.
    fn device_reserved(&self, d: usize) -> Vec<(u64, u64)> {
        let mut all = vec![X86_MSI_WINDOW];
        all.extend(self.groups[self.devices[d].group].reserved.iter().copied());
        all
    }

    fn cdev_ioctl(
        &mut self,
        c: usize,
        name: &'static str,
        arg: &mut Arg<'_>,
    ) -> Result<c_int, Errno> {
        let Some(file) = self.cdevs.get(c).and_then(Option::as_ref) else {
            return Err(Errno::EBADF);
        };
        let (d, bound) = (file.device, file.bound);
        match name {
            "VFIO_DEVICE_BIND_IOMMUFD" => {
                let b = inout(arg)?;
                let (argsz, flags, fd) = (word(b, 0)?, word(b, 4)?, word(b, 8)? as c_int);
                word(b, 12)?;
                // 6.12 reads offsetofend(out_devid) = 16 bytes whatever
                // `argsz` says beyond that, so the 24-byte struct of newer
                // headers binds; it knows no flags (VFIO_DEVICE_BIND_FLAG_TOKEN
                // came later).
                if argsz < 16 || flags != 0 || fd < 0 {
                    return Err(Errno::EINVAL);
                }
                // vfio_device_block_group
                let g = self.devices[d].group;
                if self.groups[g].opened {
                    return Err(Errno::EBUSY);
                }
                if bound.is_some() {
                    return Err(Errno::EINVAL);
                }
                let key = os::key_of_raw(fd)?;
                let Some(Kind::Iommufd(i)) = self.objects.get(&key).map(|o| o.kind) else {
                    return Err(Errno::EBADFD);
                };
                // vfio_df_open: the cdev path opens a device once.
                if self.devices[d].files != 0 {
                    return Err(Errno::EINVAL);
                }
                if !self.groups[g].viable {
                    // iommu_device_claim_dma_owner: a kernel driver owns
                    // DMA of the group.
                    return Err(Errno::EPERM);
                }
                let reserved = self.device_reserved(d);
                let ictx = self
                    .ictxs
                    .get_mut(i)
                    .and_then(Option::as_mut)
                    .ok_or(Errno::EBADFD)?;
                let devid = ictx.bind(reserved);
                put(b, 12, &devid.to_ne_bytes())?;
                self.devices[d].disable();
                self.devices[d].files = 1;
                self.groups[g].cdev_bound += 1;
                if let Some(Some(file)) = self.cdevs.get_mut(c) {
                    file.bound = Some((i, devid));
                }
                Ok(0)
            }
            "VFIO_DEVICE_ATTACH_IOMMUFD_PT" | "VFIO_DEVICE_DETACH_IOMMUFD_PT" => {
                let b = inout(arg)?;
                let (argsz, flags) = (word(b, 0)?, word(b, 4)?);
                let attach = name == "VFIO_DEVICE_ATTACH_IOMMUFD_PT";
                let min = if attach { 12 } else { 8 };
                if argsz < min || flags != 0 {
                    return Err(Errno::EINVAL);
                }
                let Some((i, devid)) = bound else {
                    return Err(Errno::EINVAL);
                };
                let ictx = self
                    .ictxs
                    .get_mut(i)
                    .and_then(Option::as_mut)
                    .ok_or(Errno::EINVAL)?;
                if attach {
                    let pt_id = word(b, 8)?;
                    let mem = Process::pin_only();
                    let hwpt = ictx.attach(devid, pt_id, &mem)?;
                    put(b, 8, &hwpt.to_ne_bytes())?;
                } else {
                    ictx.detach(devid);
                }
                Ok(0)
            }
            "VFIO_DEVICE_GET_PCI_HOT_RESET_INFO" | "VFIO_DEVICE_PCI_HOT_RESET" => {
                let Some((i, _)) = bound else {
                    return Err(Errno::EINVAL);
                };
                self.cdev_hot_reset(d, i, name == "VFIO_DEVICE_PCI_HOT_RESET", arg)
            }
            _ => self.device_ioctl(d, name, arg),
        }
    }

    /// How iommufd context `i` holds device `p` for a hot reset: its device
    /// id if bound to `i`, `VFIO_PCI_DEVID_OWNED` if another device of its
    /// group is, else `VFIO_PCI_DEVID_NOT_OWNED`.
    fn reset_owner(&self, p: usize, i: usize) -> u32 {
        let bound_to = |d: usize| {
            self.cdevs
                .iter()
                .flatten()
                .find(|f| f.device == d)
                .and_then(|f| f.bound)
                .filter(|&(ctx, _)| ctx == i)
                .map(|(_, devid)| devid)
        };
        if let Some(devid) = bound_to(p) {
            return devid;
        }
        let g = self.devices[p].group;
        if self.groups[g]
            .devices
            .iter()
            .any(|&x| bound_to(x).is_some())
        {
            sys::VFIO_PCI_DEVID_OWNED
        } else {
            sys::VFIO_PCI_DEVID_NOT_OWNED as u32
        }
    }

    /// The cdev forms of `GET_PCI_HOT_RESET_INFO` (device ids) and
    /// `PCI_HOT_RESET` (no group fds: ownership by the iommufd `i`).
    fn cdev_hot_reset(
        &mut self,
        d: usize,
        i: usize,
        reset: bool,
        arg: &mut Arg<'_>,
    ) -> Result<c_int, Errno> {
        let not_owned = sys::VFIO_PCI_DEVID_NOT_OWNED as u32;
        if reset {
            let b = input(arg)?;
            let (argsz, flags, count) = (word(b, 0)?, word(b, 4)?, word(b, 8)?);
            if argsz < 12 || flags != 0 || count != 0 {
                return Err(Errno::EINVAL);
            }
            if !self.devices[d].reset_works {
                return Err(Errno::ENODEV);
            }
            let peers = self.bus_peers(d);
            if peers.iter().any(|&p| self.reset_owner(p, i) == not_owned) {
                return Err(Errno::EINVAL);
            }
            return Ok(0);
        }
        let b = inout(arg)?;
        let argsz = word(b, 0)? as usize;
        if argsz < 12 {
            return Err(Errno::EINVAL);
        }
        if !self.devices[d].reset_works {
            return Err(Errno::ENODEV);
        }
        let peers = self.bus_peers(d);
        let owners: Vec<u32> = peers.iter().map(|&p| self.reset_owner(p, i)).collect();
        let mut flags = sys::VFIO_PCI_HOT_RESET_FLAG_DEV_ID;
        if owners.iter().all(|&o| o != not_owned) {
            flags |= sys::VFIO_PCI_HOT_RESET_FLAG_DEV_ID_OWNED;
        }
        put(b, 4, &flags.to_ne_bytes())?;
        put(b, 8, &(peers.len() as u32).to_ne_bytes())?;
        if argsz < 12 + 8 * peers.len() {
            return Err(Errno::ENOSPC);
        }
        for (k, (&p, &owner)) in peers.iter().zip(&owners).enumerate() {
            let dev = &self.devices[p];
            let at = 12 + 8 * k;
            put(b, at, &owner.to_ne_bytes())?;
            put(b, at + 4, &dev.segment.to_ne_bytes())?;
            put(b, at + 6, &[dev.bus, dev.devfn])?;
        }
        Ok(0)
    }

    /// A closed cdev file: unbound (detached, its device object gone, the
    /// device closed, the group unblocked).
    fn release_cdev(&mut self, c: usize) {
        let Some(file) = self.cdevs.get_mut(c).and_then(Option::take) else {
            return;
        };
        if let Some((i, devid)) = file.bound {
            if let Some(Some(ictx)) = self.ictxs.get_mut(i) {
                ictx.unbind(devid);
            }
            let dev = &mut self.devices[file.device];
            dev.files = 0;
            dev.disable();
            let g = dev.group;
            self.groups[g].cdev_bound -= 1;
            self.settle_ictx(i);
        }
    }

    /// A closed iommufd is released once no bound device holds it.
    fn settle_ictx(&mut self, i: usize) {
        if let Some(slot) = self.ictxs.get_mut(i)
            && slot.as_ref().is_some_and(|x| !x.open && !x.has_devices())
        {
            *slot = None;
        }
    }

    /// Where device `d`'s DMA goes when it is bound through a cdev: `Some`
    /// of the IOAS it is attached to, or `Some(None)` while it is bound
    /// but attached to nothing (DMA blocked).
    /// (A function of the two fields, so a DMA can borrow the device's
    /// buffer meanwhile.)
    fn cdev_dma<'s>(
        cdevs: &[Option<CdevFile>],
        ictxs: &'s [Option<Ictx>],
        d: usize,
    ) -> Option<Option<&'s Ioas>> {
        let (i, devid) = cdevs.iter().flatten().find(|f| f.device == d)?.bound?;
        let ictx = ictxs.get(i)?.as_ref()?;
        Some(ictx.dma_ioas(devid))
    }

    fn unknown_request(&self, kind: Kind) -> Result<c_int, Errno> {
        match kind {
            // Unknown container requests go to the driver; none yet: EINVAL.
            Kind::Container(c) => match self.containers.get(c).and_then(Option::as_ref) {
                Some(ContainerObj {
                    driver: Some(_), ..
                }) => Err(Errno::ENOTTY),
                _ => Err(Errno::EINVAL),
            },
            Kind::Group(_) | Kind::Device(_) | Kind::Cdev(_) | Kind::MigData(..) => {
                Err(Errno::ENOTTY)
            }
            // iommufd_fops_ioctl passes other numbers to its VFIO
            // compatibility ioctl, which knows none of them either.
            Kind::Iommufd(_) => Err(Errno::ENOTTY),
        }
    }

    // ---- container ---------------------------------------------------------------

    /// `VFIO_CHECK_EXTENSION` of one driver (type1 is always loaded; the
    /// no-IOMMU driver answers only in no-IOMMU mode).
    fn driver_extension(&self, noiommu_driver: bool, set: Option<&Driver>, id: u64) -> c_int {
        if noiommu_driver {
            return c_int::from(self.noiommu_mode && id == u64::from(sys::VFIO_NOIOMMU_IOMMU));
        }
        if let Some((_, _, pamu_id)) = self.pamu {
            // A QorIQ SoC: the PAMU driver is the only IOMMU driver.
            return c_int::from(id == u64::from(pamu_id));
        }
        match id {
            x if x == u64::from(sys::VFIO_TYPE1_IOMMU)
                || x == u64::from(sys::VFIO_TYPE1v2_IOMMU)
                || x == u64::from(sys::VFIO_TYPE1_NESTING_IOMMU)
                || x == u64::from(sys::VFIO_UNMAP_ALL) =>
            {
                1
            }
            x if x == u64::from(sys::VFIO_UPDATE_VADDR) => c_int::from(set.is_some()),
            _ => 0,
        }
    }

    fn container_ioctl(
        &mut self,
        c: usize,
        name: &'static str,
        arg: &mut Arg<'_>,
    ) -> Result<c_int, Errno> {
        let limit = self.dma_entry_limit;
        match name {
            "VFIO_GET_API_VERSION" => Ok(sys::VFIO_API_VERSION as c_int),
            "VFIO_CHECK_EXTENSION" => {
                let id = int_arg(arg);
                let cont = self.container(c)?;
                let has_groups = !cont.groups.is_empty();
                let noiommu = cont.noiommu;
                let cont = self.containers[c].as_ref().ok_or(Errno::EBADF)?;
                match &cont.driver {
                    Some(Driver::Type1(_) | Driver::Pamu(_)) => {
                        Ok(self.driver_extension(false, cont.driver.as_ref(), id))
                    }
                    Some(Driver::NoIommu) => Ok(self.driver_extension(true, None, id)),
                    None => {
                        for noiommu_driver in [false, true] {
                            if has_groups && noiommu != noiommu_driver {
                                continue;
                            }
                            let r = self.driver_extension(noiommu_driver, None, id);
                            if r > 0 {
                                return Ok(r);
                            }
                        }
                        Ok(0)
                    }
                }
            }
            "VFIO_SET_IOMMU" => {
                let id = int_arg(arg);
                let noiommu_mode = self.noiommu_mode;
                let pamu = self.pamu;
                let groups: Vec<Vec<(u64, u64)>> =
                    self.groups.iter().map(|g| g.reserved.clone()).collect();
                let cont = self.container(c)?;
                if cont.groups.is_empty() || cont.driver.is_some() {
                    return Err(Errno::EINVAL);
                }
                let mut ret = Err(Errno::ENODEV);
                for noiommu_driver in [false, true] {
                    if cont.noiommu != noiommu_driver {
                        continue;
                    }
                    if noiommu_driver {
                        if noiommu_mode && id == u64::from(sys::VFIO_NOIOMMU_IOMMU) {
                            cont.driver = Some(Driver::NoIommu);
                            ret = Ok(0);
                        }
                    } else if let Some((mode, banks, pamu_id)) = pamu {
                        if id == u64::from(pamu_id) {
                            cont.driver = Some(Driver::Pamu(Pamu::new(mode, banks)));
                            ret = Ok(0);
                        } else {
                            // Other ids: no driver takes them.
                            ret = Err(Errno::EINVAL);
                        }
                    } else if id == u64::from(sys::VFIO_TYPE1_IOMMU)
                        || id == u64::from(sys::VFIO_TYPE1v2_IOMMU)
                    {
                        let v2 = id == u64::from(sys::VFIO_TYPE1v2_IOMMU);
                        let mut t = Type1::new(v2, limit);
                        for &x in &cont.groups {
                            t.attach_reserved(&groups[x])?;
                        }
                        cont.driver = Some(Driver::Type1(t));
                        ret = Ok(0);
                    }
                    // VFIO_TYPE1_NESTING_IOMMU: the Intel IOMMU cannot nest
                    // (the attach fails), so no driver takes it: ENODEV.
                }
                ret
            }
            "VFIO_IOMMU_DIRTY_PAGES" => {
                let cont = self.container(c)?;
                match &mut cont.driver {
                    Some(Driver::Type1(t)) => {
                        // SAFETY: our caller's contract covers the bitmap
                        // pointer (GET_BITMAP's `data`: memory the kernel
                        // may read and write, `bitmap.size` bytes).
                        let mut mem = unsafe { Process::new() };
                        t.dirty_pages(input(arg)?, &mut mem).map(|_| 0)
                    }
                    None => Err(Errno::EINVAL),
                    // Not a type1 request for the others.
                    Some(_) => Err(Errno::ENOTTY),
                }
            }
            "VFIO_IOMMU_GET_INFO" | "VFIO_IOMMU_MAP_DMA" | "VFIO_IOMMU_UNMAP_DMA" => {
                let cont = self.container(c)?;
                match &mut cont.driver {
                    None => Err(Errno::EINVAL),
                    Some(Driver::NoIommu) => Err(Errno::ENOTTY),
                    Some(Driver::Pamu(p)) => {
                        match name {
                            "VFIO_IOMMU_GET_INFO" => return Err(Errno::ENOTTY),
                            "VFIO_IOMMU_MAP_DMA" => {
                                let page = super::iommu::MIN_PAGE;
                                p.map(input(arg)?, |a, l| os::is_mapped(a, l, page))?
                            }
                            _ => p.unmap(inout(arg)?)?,
                        }
                        Ok(0)
                    }
                    Some(Driver::Type1(t)) => {
                        match name {
                            "VFIO_IOMMU_GET_INFO" => t.get_info(inout(arg)?)?,
                            "VFIO_IOMMU_MAP_DMA" => {
                                let page = super::iommu::MIN_PAGE;
                                t.map(input(arg)?, |a, l| os::is_mapped(a, l, page))?
                            }
                            _ => {
                                // SAFETY: our caller's contract covers the
                                // dirty bitmap GET_DIRTY_BITMAP names.
                                let mut mem = unsafe { Process::new() };
                                t.unmap(inout(arg)?, &mut mem)?
                            }
                        }
                        Ok(0)
                    }
                }
            }
            "VFIO_IOMMU_PAMU_GET_ATTR"
            | "VFIO_IOMMU_PAMU_SET_ATTR"
            | "VFIO_IOMMU_PAMU_GET_MSI_BANK_COUNT"
            | "VFIO_IOMMU_PAMU_MAP_MSI_BANK"
            | "VFIO_IOMMU_PAMU_UNMAP_MSI_BANK" => {
                let cont = self.container(c)?;
                let Some(Driver::Pamu(p)) = &mut cont.driver else {
                    // Another driver (or none) gets these numbers: to it they
                    // are other requests, or none.
                    return self.unknown_request(Kind::Container(c));
                };
                match name {
                    "VFIO_IOMMU_PAMU_GET_ATTR" => p.get_attr(inout(arg)?)?,
                    "VFIO_IOMMU_PAMU_SET_ATTR" => p.set_attr(input(arg)?)?,
                    "VFIO_IOMMU_PAMU_GET_MSI_BANK_COUNT" => {
                        return Ok(c_int::try_from(p.bank_count()).unwrap_or(c_int::MAX));
                    }
                    "VFIO_IOMMU_PAMU_MAP_MSI_BANK" => p.map_msi_bank(input(arg)?)?,
                    _ => p.unmap_msi_bank(input(arg)?)?,
                }
                Ok(0)
            }
            _ => Err(Errno::ENOTTY),
        }
    }

    // ---- group ---------------------------------------------------------------------

    fn group_ioctl(
        &mut self,
        g: usize,
        name: &'static str,
        arg: &mut Arg<'_>,
    ) -> Result<c_int, Errno> {
        match name {
            "VFIO_GROUP_GET_STATUS" => {
                let b = inout(arg)?;
                if word(b, 0)? < 8 {
                    return Err(Errno::EINVAL);
                }
                let group = &self.groups[g];
                let flags = if group.container.is_some() {
                    sys::VFIO_GROUP_FLAGS_VIABLE | sys::VFIO_GROUP_FLAGS_CONTAINER_SET
                } else if group.viable {
                    sys::VFIO_GROUP_FLAGS_VIABLE
                } else {
                    0
                };
                put(b, 4, &flags.to_ne_bytes())?;
                Ok(0)
            }
            "VFIO_GROUP_SET_CONTAINER" => {
                let raw = word(input(arg)?, 0)? as c_int;
                let key = os::key_of_raw(raw)?;
                if self.groups[g].container.is_some() {
                    return Err(Errno::EINVAL);
                }
                let Some(Kind::Container(c)) = self.objects.get(&key).map(|o| o.kind) else {
                    return Err(Errno::EBADFD);
                };
                let (noiommu, viable) = (self.groups[g].noiommu, self.groups[g].viable);
                let reserved = self.groups[g].reserved.clone();
                let cont = self.container(c)?;
                if !cont.groups.is_empty() && cont.noiommu != noiommu {
                    return Err(Errno::EPERM);
                }
                if !noiommu && !viable {
                    // iommu_group_claim_dma_owner: a driver other than vfio
                    // owns a device of the group.
                    return Err(Errno::EPERM);
                }
                if let Some(Driver::Type1(t)) = &mut cont.driver {
                    // The model is set: the group joins its IOMMU domain now.
                    t.attach_reserved(&reserved)?;
                }
                cont.noiommu = noiommu;
                cont.groups.push(g);
                self.groups[g].container = Some(c);
                Ok(0)
            }
            "VFIO_GROUP_UNSET_CONTAINER" => {
                let group = &self.groups[g];
                if group.container.is_none() {
                    return Err(Errno::EINVAL);
                }
                if group.device_files != 0 {
                    return Err(Errno::EBUSY);
                }
                self.detach(g);
                Ok(0)
            }
            "VFIO_GROUP_GET_DEVICE_FD" => {
                let b = input(arg)?;
                let len = b.iter().position(|&x| x == 0).ok_or(Errno::EFAULT)?;
                let wanted = &b[..len];
                let mut found = None;
                for &d in &self.groups[g].devices {
                    let name = self.devices[d].name.as_bytes();
                    if wanted == name {
                        found = Some(d);
                        break;
                    }
                    // "<address> vf_token=<uuid>": edu is neither a PF nor
                    // a VF, so any token (or a malformed one) is EINVAL.
                    if wanted.starts_with(name) && wanted.get(name.len()) == Some(&b' ') {
                        return Err(Errno::EINVAL);
                    }
                }
                let d = found.ok_or(Errno::ENODEV)?;
                let has_driver = self.groups[g]
                    .container
                    .and_then(|c| self.containers.get(c).and_then(Option::as_ref))
                    .is_some_and(|c| c.driver.is_some());
                if !has_driver {
                    return Err(Errno::EINVAL);
                }
                let fd = self.new_object(Kind::Device(d))?;
                let dev = &mut self.devices[d];
                if dev.files == 0 {
                    dev.disable();
                }
                dev.files += 1;
                self.groups[g].device_files += 1;
                Ok(fd.into_raw_fd())
            }
            _ => Err(Errno::ENOTTY),
        }
    }

    // ---- device --------------------------------------------------------------------

    /// `vfio_pci_get_irq_count`.
    fn irq_count(&self, d: usize, index: u32) -> u32 {
        let dev = &self.devices[d];
        match index {
            sys::VFIO_PCI_INTX_IRQ_INDEX => u32::from(dev.config[0x3d] != 0),
            // edu has MSI and no MSI-X, the NVMe controller the reverse.
            sys::VFIO_PCI_MSI_IRQ_INDEX => u32::from(dev.nvme.is_none()),
            sys::VFIO_PCI_MSIX_IRQ_INDEX if dev.nvme.is_some() => super::nvme::MSIX_VECTORS,
            sys::VFIO_PCI_REQ_IRQ_INDEX => 1,
            // Conventional PCI has no AER.
            _ => 0,
        }
    }

    fn bus_peers(&self, d: usize) -> Vec<usize> {
        let dev = &self.devices[d];
        (0..self.devices.len())
            .filter(|&x| self.devices[x].segment == dev.segment && self.devices[x].bus == dev.bus)
            .collect()
    }

    fn device_ioctl(
        &mut self,
        d: usize,
        name: &'static str,
        arg: &mut Arg<'_>,
    ) -> Result<c_int, Errno> {
        match name {
            "VFIO_DEVICE_GET_INFO" => {
                let b = inout(arg)?;
                let argsz = word(b, 0)? as usize;
                if argsz < 16 {
                    return Err(Errno::EINVAL);
                }
                let mut flags = sys::VFIO_DEVICE_FLAGS_PCI;
                if self.devices[d].reset_works {
                    flags |= sys::VFIO_DEVICE_FLAGS_RESET;
                }
                let mut out = [0u8; 24];
                out[0..4].copy_from_slice(&(argsz as u32).to_ne_bytes());
                out[4..8].copy_from_slice(&flags.to_ne_bytes());
                out[8..12].copy_from_slice(&sys::VFIO_PCI_NUM_REGIONS.to_ne_bytes());
                out[12..16].copy_from_slice(&sys::VFIO_PCI_NUM_IRQS.to_ne_bytes());
                put(b, 0, &out[..argsz.min(24)])?;
                Ok(0)
            }
            "VFIO_DEVICE_GET_REGION_INFO" => {
                let b = inout(arg)?;
                if word(b, 0)? < 32 {
                    return Err(Errno::EINVAL);
                }
                let index = word(b, 8)?;
                let rw = sys::VFIO_REGION_INFO_FLAG_READ | sys::VFIO_REGION_INFO_FLAG_WRITE;
                let (flags, size) = match index {
                    sys::VFIO_PCI_BAR0_REGION_INDEX => (rw, self.devices[d].bar0_size()),
                    sys::VFIO_PCI_CONFIG_REGION_INDEX => (rw, CONFIG_SIZE as u64),
                    i if i <= sys::VFIO_PCI_ROM_REGION_INDEX => (0, 0),
                    _ => return Err(Errno::EINVAL), // VGA (none) and beyond
                };
                let offset = u64::from(index) << 40;
                put(b, 4, &flags.to_ne_bytes())?;
                put(b, 16, &size.to_ne_bytes())?;
                put(b, 24, &offset.to_ne_bytes())?;
                Ok(0)
            }
            "VFIO_DEVICE_GET_IRQ_INFO" => {
                let b = inout(arg)?;
                let index = word(b, 8)?;
                if word(b, 0)? < 16 || index >= sys::VFIO_PCI_NUM_IRQS {
                    return Err(Errno::EINVAL);
                }
                if index == sys::VFIO_PCI_ERR_IRQ_INDEX {
                    return Err(Errno::EINVAL); // not PCIe
                }
                let mut flags = sys::VFIO_IRQ_INFO_EVENTFD;
                if index == sys::VFIO_PCI_INTX_IRQ_INDEX {
                    flags |= sys::VFIO_IRQ_INFO_MASKABLE | sys::VFIO_IRQ_INFO_AUTOMASKED;
                } else if index != sys::VFIO_PCI_MSIX_IRQ_INDEX || !self.devices[d].msix_resizable {
                    // MSI-X without dynamic allocation, and everything else.
                    flags |= sys::VFIO_IRQ_INFO_NORESIZE;
                }
                put(b, 4, &flags.to_ne_bytes())?;
                put(b, 12, &self.irq_count(d, index).to_ne_bytes())?;
                Ok(0)
            }
            "VFIO_DEVICE_SET_IRQS" => self.set_irqs(d, input(arg)?),
            "VFIO_DEVICE_RESET" => {
                if !self.devices[d].reset_works {
                    return Err(Errno::EINVAL);
                }
                // QEMU's edu has no reset handler and vfio-pci restores the
                // config space around the reset: nothing visible changes,
                // but for migration, which returns to RUNNING.
                if let Some(mig) = &mut self.devices[d].mig {
                    mig.reset();
                }
                // pci_try_reset_function saves the function's state and
                // restores it after: config space and MSI-X stay (and so
                // vfio-pci's triggers); the NVMe controller itself resets.
                if let Some(nvme) = &mut self.devices[d].nvme {
                    nvme.reset();
                }
                Ok(0)
            }
            "VFIO_DEVICE_GET_PCI_HOT_RESET_INFO" => {
                let b = inout(arg)?;
                let argsz = word(b, 0)? as usize;
                if argsz < 12 {
                    return Err(Errno::EINVAL);
                }
                if !self.devices[d].reset_works {
                    return Err(Errno::ENODEV);
                }
                let peers = self.bus_peers(d);
                put(b, 4, &0u32.to_ne_bytes())?;
                put(b, 8, &(peers.len() as u32).to_ne_bytes())?;
                if argsz < 12 + 8 * peers.len() {
                    return Err(Errno::ENOSPC);
                }
                for (i, &p) in peers.iter().enumerate() {
                    let dev = &self.devices[p];
                    let at = 12 + 8 * i;
                    put(b, at, &self.groups[dev.group].number.to_ne_bytes())?;
                    put(b, at + 4, &dev.segment.to_ne_bytes())?;
                    put(b, at + 6, &[dev.bus, dev.devfn])?;
                }
                Ok(0)
            }
            "VFIO_DEVICE_PCI_HOT_RESET" => {
                let b = input(arg)?;
                let (argsz, flags, count) = (word(b, 0)?, word(b, 4)?, word(b, 8)?);
                if argsz < 12 || flags != 0 || count == 0 {
                    return Err(Errno::EINVAL);
                }
                if !self.devices[d].reset_works {
                    return Err(Errno::ENODEV);
                }
                let peers = self.bus_peers(d);
                if count as usize > peers.len() {
                    return Err(Errno::EINVAL);
                }
                let mut owned = Vec::new();
                for i in 0..count as usize {
                    let raw = word(b, 12 + 4 * i)? as c_int;
                    let key = os::key_of_raw(raw)?;
                    match self.objects.get(&key).map(|o| o.kind) {
                        Some(Kind::Group(g)) => owned.push(g),
                        _ => return Err(Errno::EINVAL),
                    }
                }
                if peers
                    .iter()
                    .any(|&p| !owned.contains(&self.devices[p].group))
                {
                    return Err(Errno::EINVAL);
                }
                Ok(0)
            }
            "VFIO_DEVICE_FEATURE" => self.device_feature(d, arg),
            "VFIO_DEVICE_IOEVENTFD" => self.ioeventfd(d, input(arg)?),
            _ => Err(Errno::ENOTTY),
        }
    }

    /// `VFIO_DEVICE_IOEVENTFD` (`vfio_pci_core_ioctl_ioeventfd`,
    /// `vfio_pci_ioeventfd`): adds, or with fd -1 removes, an ioeventfd on a
    /// BAR.
    fn ioeventfd(&mut self, d: usize, b: &[u8]) -> Result<c_int, Errno> {
        let (argsz, flags) = (word(b, 0)?, word(b, 4)?);
        let (offset, data) = (dword(b, 8)?, dword(b, 16)?);
        let fd = word(b, 24)? as i32;
        let size = flags & sys::VFIO_DEVICE_IOEVENTFD_SIZE_MASK;
        if argsz < 28 || flags & !sys::VFIO_DEVICE_IOEVENTFD_SIZE_MASK != 0 {
            return Err(Errno::EINVAL);
        }
        if size.count_ones() != 1 || fd < -1 {
            return Err(Errno::EINVAL);
        }
        let (bar, pos, size) = (
            (offset >> 40) as u32,
            offset & ((1 << 40) - 1),
            size as usize,
        );
        if bar > sys::VFIO_PCI_BAR5_REGION_INDEX {
            return Err(Errno::EINVAL);
        }
        let len = if bar == sys::VFIO_PCI_BAR0_REGION_INDEX {
            BAR0_SIZE
        } else {
            0
        };
        if pos.checked_add(size as u64).is_none_or(|end| end > len) {
            return Err(Errno::EINVAL);
        }
        let dev = &mut self.devices[d];
        let same = |e: &IoEventFd| e.bar == bar && e.pos == pos && e.size == size && e.data == data;
        if let Some(i) = dev.ioeventfds.iter().position(same) {
            if fd == -1 {
                dev.ioeventfds.remove(i);
                return Ok(0);
            }
            return Err(Errno::EEXIST);
        }
        if fd < 0 {
            return Err(Errno::ENODEV);
        }
        if dev.ioeventfds.len() >= 1000 {
            return Err(Errno::ENOSPC);
        }
        let fd = os::eventfd_ref(fd)?;
        dev.ioeventfds.push(IoEventFd {
            bar,
            pos,
            size,
            data,
            fd,
        });
        Ok(0)
    }

    /// What the kernel's virqfds do when their eventfd is signalled, done on
    /// entry into the simulator (it has no thread of its own): an INTx
    /// unmask eventfd unmasks, an ioeventfd writes its data.
    fn service_eventfds(&mut self) {
        for d in 0..self.devices.len() {
            let dev = &mut self.devices[d];
            if dev.intx_unmask.as_ref().is_some_and(os::eventfd_take) {
                dev.unmask_intx();
            }
            let writes: Vec<(u64, Vec<u8>)> = dev
                .ioeventfds
                .iter()
                .filter(|e| os::eventfd_take(&e.fd))
                .map(|e| {
                    let offset = u64::from(e.bar) << 40 | e.pos;
                    // vfio-pci's accessors keep the host's byte order: the
                    // device gets the value's bytes as a native u8/u16/u32/
                    // u64 holds them.
                    let bytes = match e.size {
                        1 => vec![e.data as u8],
                        2 => (e.data as u16).to_ne_bytes().to_vec(),
                        4 => (e.data as u32).to_ne_bytes().to_vec(),
                        _ => e.data.to_ne_bytes().to_vec(),
                    };
                    (offset, bytes)
                })
                .collect();
            for (offset, bytes) in writes {
                // As the kernel's write, it cannot fail back to anyone.
                let _ = self.device_rw(d, offset, Rw::Write(&bytes));
            }
        }
    }

    /// `VFIO_DEVICE_FEATURE` (`vfio_ioctl_device_feature`): low power entry
    /// and exit (set only, no data), and migration v2 on a migratable
    /// device.
    fn device_feature(&mut self, d: usize, arg: &mut Arg<'_>) -> Result<c_int, Errno> {
        let (get, set, probe) = (
            sys::VFIO_DEVICE_FEATURE_GET,
            sys::VFIO_DEVICE_FEATURE_SET,
            sys::VFIO_DEVICE_FEATURE_PROBE,
        );
        let b = input(arg)?;
        let (argsz, flags) = (word(b, 0)?, word(b, 4)?);
        if argsz < 8 || flags & !(sys::VFIO_DEVICE_FEATURE_MASK | get | set | probe) != 0 {
            return Err(Errno::EINVAL);
        }
        if flags & probe == 0 && flags & get != 0 && flags & set != 0 {
            return Err(Errno::EINVAL);
        }
        // vfio_check_feature: whether to go on (false: a successful probe).
        let payload = (argsz - 8) as usize;
        let check = |ops: u32, minsz: usize| -> Result<bool, Errno> {
            if flags & (get | set) & !ops != 0 {
                Err(Errno::EINVAL)
            } else if flags & probe != 0 {
                Ok(false)
            } else if flags & (get | set) == 0 || payload < minsz {
                Err(Errno::EINVAL)
            } else {
                Ok(true)
            }
        };
        let feature = flags & sys::VFIO_DEVICE_FEATURE_MASK;
        let migratable = self.devices[d].mig.is_some();
        match feature {
            // DMA logging (vfio_ioctl_device_feature_logging_*): the
            // migratable edu's driver logs the pages its DMA writes.
            sys::VFIO_DEVICE_FEATURE_DMA_LOGGING_START if migratable => {
                if !check(set, 24)? {
                    return Ok(0);
                }
                let (page_size, n, ranges) = (dword(b, 8)?, word(b, 16)?, dword(b, 24)?);
                if n == 0 {
                    return Err(Errno::EINVAL);
                }
                if n > 256 {
                    return Err(Errno::E2BIG);
                }
                // SAFETY: our caller's contract covers `ranges`: `n`
                // 16-byte ranges the kernel reads.
                let mut mem = unsafe { Process::new() };
                let mut got: Vec<(u64, u64)> = Vec::new();
                for i in 0..u64::from(n) {
                    let mut r = [0u8; 16];
                    mem.read(ranges.wrapping_add(16 * i), &mut r)?;
                    let (iova, len) = (dword(&r, 0)?, dword(&r, 8)?);
                    let aligned = |x: u64| x & page_size.wrapping_sub(1) == 0;
                    if !aligned(iova) || !aligned(len) {
                        return Err(Errno::EINVAL);
                    }
                    if iova.checked_add(len).is_none() {
                        return Err(Errno::EOVERFLOW);
                    }
                    if got.iter().any(|&(s, l)| iova < s + l && s < iova + len) {
                        return Err(Errno::EINVAL);
                    }
                    got.push((iova, len));
                }
                self.devices[d].dma_log = Some((got, std::collections::BTreeSet::new()));
                Ok(0)
            }
            sys::VFIO_DEVICE_FEATURE_DMA_LOGGING_STOP if migratable => {
                if check(set, 0)? {
                    self.devices[d].dma_log = None;
                }
                Ok(0)
            }
            sys::VFIO_DEVICE_FEATURE_DMA_LOGGING_REPORT if migratable => {
                if !check(get, 32)? {
                    return Ok(0);
                }
                let (iova, length, page_size, bitmap) =
                    (dword(b, 8)?, dword(b, 16)?, dword(b, 24)?, dword(b, 32)?);
                if page_size < 4096 || !page_size.is_power_of_two() {
                    return Err(Errno::EINVAL);
                }
                if iova.checked_add(length).is_none() {
                    return Err(Errno::EOVERFLOW);
                }
                if length == 0 {
                    return Err(Errno::EINVAL);
                }
                let pages = length.div_ceil(page_size);
                let Some((_, dirty)) = self.devices[d].dma_log.as_mut() else {
                    return Err(Errno::EINVAL);
                };
                let mut words = vec![0u64; pages.div_ceil(64) as usize];
                let shift = page_size.trailing_zeros() - 12;
                let first = iova >> 12;
                let last = (iova + length - 1) >> 12;
                let reported: Vec<u64> = dirty.range(first..=last).copied().collect();
                for p in reported {
                    dirty.remove(&p);
                    let bit = (p - first) >> shift;
                    words[(bit / 64) as usize] |= 1 << (bit % 64);
                }
                let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_ne_bytes()).collect();
                // SAFETY: our caller's contract covers `bitmap`: one bit per
                // page of the range, in whole u64 words, written.
                let mut mem = unsafe { Process::new() };
                mem.write(bitmap, &bytes)?;
                Ok(0)
            }
            sys::VFIO_DEVICE_FEATURE_LOW_POWER_ENTRY
            | sys::VFIO_DEVICE_FEATURE_LOW_POWER_ENTRY_WITH_WAKEUP
            | sys::VFIO_DEVICE_FEATURE_LOW_POWER_EXIT => check(set, 0).map(|_| 0),
            sys::VFIO_DEVICE_FEATURE_MIGRATION if migratable => {
                if check(get, 8)? {
                    let mig_flags = self.devices[d].mig.as_ref().map_or(0, |m| m.flags);
                    put(inout(arg)?, 8, &u64::from(mig_flags).to_ne_bytes())?;
                }
                Ok(0)
            }
            sys::VFIO_DEVICE_FEATURE_MIG_DATA_SIZE if migratable => {
                if check(get, 8)? {
                    let size = self.devices[d]
                        .mig
                        .as_ref()
                        .map_or(0, |m| m.stop_copy_size());
                    put(inout(arg)?, 8, &size.to_ne_bytes())?;
                }
                Ok(0)
            }
            sys::VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE if migratable => {
                if !check(get | set, 8)? {
                    return Ok(0);
                }
                if flags & get != 0 {
                    let state = self.devices[d].mig.as_ref().map_or(0, |m| m.state);
                    let b = inout(arg)?;
                    put(b, 8, &state.to_ne_bytes())?;
                    put(b, 12, &(-1i32).to_ne_bytes())?;
                    return Ok(0);
                }
                let wanted = word(input(arg)?, 8)?;
                let (calls, faults) = (&mut self.calls, &mut self.faults);
                let mut step = || count_call(calls, faults, "migration_step");
                let dev = &mut self.devices[d];
                let Some(mig) = dev.mig.as_mut() else {
                    return Err(Errno::ENOTTY);
                };
                let made = mig.set_state(&mut dev.edu, wanted, &mut step);
                let raw = match made {
                    Ok(Some(generation)) => {
                        let fd = self.new_object(Kind::MigData(d, generation))?;
                        fd.into_raw_fd()
                    }
                    Ok(None) | Err(_) => -1,
                };
                put(inout(arg)?, 12, &raw.to_ne_bytes())?;
                made.map(|_| 0)
            }
            _ => Err(Errno::ENOTTY),
        }
    }

    /// On a PAMU container, whether device `d`'s MSI bank (bank `d` modulo
    /// the bank count) has its doorbell mapped; elsewhere always true.
    fn msi_doorbell_ok(&self, d: usize) -> bool {
        match self.pamu_of_device(d) {
            Some(p) if p.bank_count() > 0 => p.doorbell_mapped(d as u32 % p.bank_count()),
            Some(_) => false,
            None => true,
        }
    }

    fn set_irqs(&mut self, d: usize, b: &[u8]) -> Result<c_int, Errno> {
        let (argsz, flags, index, start, count) = (
            word(b, 0)?,
            word(b, 4)?,
            word(b, 8)?,
            word(b, 12)?,
            word(b, 16)?,
        );
        let max = self.irq_count(d, index);
        let data_mask = sys::VFIO_IRQ_SET_DATA_TYPE_MASK;
        let action_mask = sys::VFIO_IRQ_SET_ACTION_TYPE_MASK;
        if argsz < 20
            || index >= sys::VFIO_PCI_NUM_IRQS
            || count >= u32::MAX - start
            || flags & !(data_mask | action_mask) != 0
        {
            return Err(Errno::EINVAL);
        }
        if start >= max || start + count > max {
            return Err(Errno::EINVAL);
        }
        let elem = match flags & data_mask {
            sys::VFIO_IRQ_SET_DATA_NONE => 0usize,
            sys::VFIO_IRQ_SET_DATA_BOOL => 1,
            sys::VFIO_IRQ_SET_DATA_EVENTFD => 4,
            _ => return Err(Errno::EINVAL),
        };
        let len = elem * count as usize;
        if elem != 0 && (argsz as usize - 20) < len {
            return Err(Errno::EINVAL);
        }
        let data = b.get(20..20 + len).ok_or(Errno::EFAULT)?;
        let fds: Vec<c_int> = data
            .chunks_exact(4)
            .map(|c| i32::from_ne_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        let none = flags & sys::VFIO_IRQ_SET_DATA_NONE != 0;
        let boolean = flags & sys::VFIO_IRQ_SET_DATA_BOOL != 0;
        let eventfd = flags & sys::VFIO_IRQ_SET_DATA_EVENTFD != 0;
        let action = flags & action_mask;
        let dev = &mut self.devices[d];
        match (index, action) {
            (sys::VFIO_PCI_INTX_IRQ_INDEX, sys::VFIO_IRQ_SET_ACTION_MASK) => {
                if dev.irq != IrqType::Intx || start != 0 || count != 1 {
                    return Err(Errno::EINVAL);
                }
                if eventfd {
                    return Err(Errno::ENOTTY);
                }
                if none || data[0] != 0 {
                    dev.intx_masked = true;
                }
                Ok(0)
            }
            (sys::VFIO_PCI_INTX_IRQ_INDEX, sys::VFIO_IRQ_SET_ACTION_UNMASK) => {
                if dev.irq != IrqType::Intx || start != 0 || count != 1 {
                    return Err(Errno::EINVAL);
                }
                if eventfd {
                    // The unmask eventfd (a virqfd): watched on every entry
                    // into the simulator (service_eventfds); -1 removes it.
                    dev.intx_unmask = if fds[0] >= 0 {
                        Some(os::eventfd_ref(fds[0])?)
                    } else {
                        None
                    };
                } else if none || data[0] != 0 {
                    dev.unmask_intx();
                }
                Ok(0)
            }
            (sys::VFIO_PCI_INTX_IRQ_INDEX, sys::VFIO_IRQ_SET_ACTION_TRIGGER) => {
                if dev.irq == IrqType::Intx && count == 0 && none {
                    dev.irq = IrqType::None;
                    dev.intx_trigger = None;
                    dev.intx_masked = false;
                    return Ok(0);
                }
                if !matches!(dev.irq, IrqType::Intx | IrqType::None) || start != 0 || count != 1 {
                    return Err(Errno::EINVAL);
                }
                if eventfd {
                    let trigger = if fds[0] >= 0 {
                        Some(os::eventfd_ref(fds[0])?)
                    } else {
                        None
                    };
                    if dev.irq != IrqType::Intx {
                        dev.irq = IrqType::Intx;
                        dev.intx_masked = false;
                    }
                    dev.intx_trigger = trigger;
                    dev.deliver();
                    return Ok(0);
                }
                if dev.irq != IrqType::Intx {
                    return Err(Errno::EINVAL);
                }
                if none || data[0] != 0 {
                    dev.send_intx();
                }
                Ok(0)
            }
            (
                sys::VFIO_PCI_MSI_IRQ_INDEX | sys::VFIO_PCI_MSIX_IRQ_INDEX,
                sys::VFIO_IRQ_SET_ACTION_TRIGGER,
            ) => {
                let msix = index == sys::VFIO_PCI_MSIX_IRQ_INDEX;
                let ty = if msix { IrqType::Msix } else { IrqType::Msi };
                if dev.irq == ty && count == 0 && none {
                    dev.irq = IrqType::None;
                    dev.msi.clear();
                    return Ok(0);
                }
                if !(dev.irq == ty || dev.irq == IrqType::None) {
                    return Err(Errno::EINVAL);
                }
                if eventfd && dev.irq == IrqType::None && !self.msi_doorbell_ok(d) {
                    // The PAMU domain has no window mapping this device's
                    // MSI bank: composing the MSI message fails.
                    return Err(Errno::EINVAL);
                }
                let dev = &mut self.devices[d];
                if eventfd {
                    let enabling = dev.irq == IrqType::None;
                    if enabling {
                        // vfio_msi_enable: all of 0..start + count, or
                        // nothing and the count the platform has.
                        let available = if msix { dev.msix_available } else { 1 };
                        if start + count > available {
                            return Ok(available as c_int);
                        }
                        dev.irq = ty;
                        dev.msi = (0..start + count).map(|_| None).collect();
                    }
                    // vfio_msi_set_block: vector by vector; a vector not
                    // allocated is allocated only for MSI-X with dynamic
                    // allocation; on failure the block's vectors so far are
                    // disarmed (and MSI disabled again if this enabled it).
                    let mut failed = None;
                    for (i, &fd) in fds.iter().enumerate() {
                        let v = start as usize + i;
                        if fd < 0 {
                            if let Some(slot) = dev.msi.get_mut(v) {
                                *slot = None;
                            }
                            continue;
                        }
                        if v >= dev.msi.len() {
                            if msix && dev.msix_resizable {
                                dev.msi.resize_with(v + 1, || None);
                            } else {
                                failed = Some((i, Errno::EINVAL));
                                break;
                            }
                        }
                        match os::eventfd_ref(fd) {
                            Ok(r) => dev.msi[v] = Some(r),
                            Err(e) => {
                                failed = Some((i, e));
                                break;
                            }
                        }
                    }
                    if let Some((upto, e)) = failed {
                        for v in start as usize..start as usize + upto {
                            if let Some(slot) = dev.msi.get_mut(v) {
                                *slot = None;
                            }
                        }
                        if enabling {
                            dev.irq = IrqType::None;
                            dev.msi.clear();
                        }
                        return Err(e);
                    }
                    return Ok(0);
                }
                if dev.irq != ty {
                    return Err(Errno::EINVAL);
                }
                for i in 0..count as usize {
                    let fire = none || data.get(i).is_some_and(|&b| b != 0);
                    if fire && let Some(Some(fd)) = dev.msi.get(start as usize + i) {
                        os::signal(fd);
                    }
                }
                Ok(0)
            }
            (sys::VFIO_PCI_REQ_IRQ_INDEX, sys::VFIO_IRQ_SET_ACTION_TRIGGER) => {
                if start != 0 || count > 1 {
                    return Err(Errno::EINVAL);
                }
                if none {
                    if let Some(fd) = &dev.req {
                        if count > 0 {
                            os::signal(fd);
                        } else {
                            dev.req = None;
                        }
                        return Ok(0);
                    }
                    return Err(Errno::EINVAL);
                }
                if count == 0 {
                    return Err(Errno::EINVAL);
                }
                if boolean {
                    if data[0] != 0
                        && let Some(fd) = &dev.req
                    {
                        os::signal(fd);
                    }
                    return Ok(0);
                }
                match fds[0] {
                    -1 => dev.req = None,
                    fd if fd >= 0 => dev.req = Some(os::eventfd_ref(fd)?),
                    _ => {}
                }
                Ok(0)
            }
            _ => Err(Errno::ENOTTY),
        }
    }

    fn device_rw(&mut self, d: usize, offset: u64, rw: Rw<'_>) -> Result<usize, Errno> {
        let index = offset >> 40;
        let pos = offset & ((1 << 40) - 1);
        match index as u32 {
            sys::VFIO_PCI_CONFIG_REGION_INDEX => {
                let len = match &rw {
                    Rw::Read(b) => b.len(),
                    Rw::Write(b) => b.len(),
                };
                let end = pos.checked_add(len as u64).ok_or(Errno::EFAULT)?;
                if pos >= CONFIG_SIZE as u64 || end > CONFIG_SIZE as u64 {
                    return Err(Errno::EFAULT);
                }
                let dev = &mut self.devices[d];
                match rw {
                    Rw::Read(b) => {
                        for (i, x) in b.iter_mut().enumerate() {
                            *x = dev.config_read(pos as usize + i);
                        }
                    }
                    Rw::Write(b) => {
                        for (i, &x) in b.iter().enumerate() {
                            dev.config_write(pos as usize + i, x);
                        }
                        dev.deliver();
                    }
                }
                Ok(len)
            }
            sys::VFIO_PCI_BAR0_REGION_INDEX => {
                let size = self.devices[d].bar0_size();
                if pos >= size {
                    return Err(Errno::EINVAL);
                }
                let room = (size - pos) as usize;
                match rw {
                    Rw::Read(b) => {
                        let n = b.len().min(room);
                        let dev = &self.devices[d];
                        each_access(pos, n, |at, width, i| {
                            let v = match &dev.nvme {
                                Some(nvme) => nvme.read(at, width),
                                None => dev.edu.read(at, width),
                            };
                            b[i..i + width].copy_from_slice(&v.to_le_bytes()[..width]);
                        });
                        Ok(n)
                    }
                    Rw::Write(b) if self.devices[d].nvme.is_some() => {
                        let n = b.len().min(room);
                        each_access(pos, n, |at, width, i| {
                            let mut v = [0u8; 8];
                            v[..width].copy_from_slice(&b[i..i + width]);
                            self.nvme_write(d, at, width, u64::from_le_bytes(v));
                        });
                        Ok(n)
                    }
                    Rw::Write(b) => {
                        let n = b.len().min(room);
                        each_access(pos, n, |at, width, i| {
                            let mut v = [0u8; 8];
                            v[..width].copy_from_slice(&b[i..i + width]);
                            let msi = self.devices[d].msi_enabled();
                            self.devices[d]
                                .edu
                                .write(at, width, u64::from_le_bytes(v), msi);
                            self.service(d);
                        });
                        Ok(n)
                    }
                }
            }
            _ => Err(Errno::EINVAL),
        }
    }

    /// Runs a DMA the device started and delivers its interrupts.
    fn service(&mut self, d: usize) {
        if let Some(req) = self.devices[d].edu.dma_pending {
            self.run_dma(d, req);
            let msi = self.devices[d].msi_enabled();
            self.devices[d].edu.finish_dma(msi);
        }
        self.devices[d].deliver();
    }

    fn fault(&mut self, d: usize, address: u64, len: u64, to_ram: bool, reason: DmaFaultReason) {
        let device = self.devices[d].name.clone();
        if let Some(last) = self.dma_faults.last_mut()
            && last.device == device
            && last.reason == reason
            && last.device_writes == to_ram
            && last.address + last.len == address
        {
            last.len += len;
            return;
        }
        self.dma_faults.push(DmaFault {
            device,
            address,
            len,
            device_writes: to_ram,
            reason,
        });
    }

    /// Carries out an edu DMA through the container's IOMMU.
    fn run_dma(&mut self, d: usize, req: super::edu::DmaRequest) {
        let Some(range) = Edu::buffer_range(&req) else {
            self.fault(
                d,
                req.device,
                req.count,
                req.to_ram,
                DmaFaultReason::OutsideDeviceBuffer,
            );
            return;
        };
        // The buffer's bytes travel through a copy: a faulted part of a
        // DMA to the device leaves the buffer as it was.
        let mut bytes = self.devices[d].edu.buf[range.clone()].to_vec();
        let data = if req.to_ram {
            DmaData::ToRam(&bytes)
        } else {
            DmaData::FromRam(&mut bytes)
        };
        self.dma_copy(d, req.host, data);
        if !req.to_ram {
            self.devices[d].edu.buf[range].copy_from_slice(&bytes);
        }
    }

    /// A DMA by device `d` at bus address `iova` through its IOMMU (the
    /// container's, or its cdev's IOAS): what could be moved is, the rest is
    /// recorded as faults. True when all of it moved.
    fn dma_copy(&mut self, d: usize, iova: u64, mut data: DmaData<'_>) -> bool {
        let (to_ram, count) = match &data {
            DmaData::ToRam(b) => (true, b.len() as u64),
            DmaData::FromRam(b) => (false, b.len() as u64),
        };
        if !self.devices[d].bus_master() {
            self.fault(d, iova, count, to_ram, DmaFaultReason::BusMasterOff);
            return false;
        }
        let c = self.groups[self.devices[d].group].container;
        let driver = c
            .and_then(|c| self.containers.get(c).and_then(Option::as_ref))
            .and_then(|c| c.driver.as_ref());
        let cdev = Self::cdev_dma(&self.cdevs, &self.ictxs, d);
        let translate = |iova| match (cdev, driver) {
            (Some(ioas), _) => ioas.and_then(|io| io.translate(iova)),
            (None, Some(Driver::Type1(t))) => t.translate(iova),
            (None, Some(Driver::Pamu(p))) => p.translate(iova),
            _ => None,
        };
        if cdev.is_none() && !matches!(driver, Some(Driver::Type1(_) | Driver::Pamu(_))) {
            self.fault(d, iova, count, to_ram, DmaFaultReason::NoIommu);
            return false;
        }
        let page = super::iommu::MIN_PAGE;
        let mut faults = Vec::new();
        let mut done = 0u64;
        while done < count {
            let at_iova = match iova.checked_add(done) {
                Some(a) => a,
                None => {
                    faults.push((iova, count - done, DmaFaultReason::Unmapped));
                    break;
                }
            };
            let left = count - done;
            let to_page_end = page - (at_iova & (page - 1));
            let Some(m) = translate(at_iova) else {
                let len = left.min(to_page_end);
                faults.push((at_iova, len, DmaFaultReason::Unmapped));
                done += len;
                continue;
            };
            let len = left.min(m.size - (at_iova - m.iova));
            if !(if to_ram { m.write } else { m.read }) {
                faults.push((at_iova, len, DmaFaultReason::NotPermitted));
                done += len;
                continue;
            }
            let vaddr = m.vaddr + (at_iova - m.iova);
            if to_ram && let Some((ranges, dirty)) = self.devices[d].dma_log.as_mut() {
                // The driver logs the pages it writes inside its ranges.
                for p in at_iova >> 12..=(at_iova + len - 1) >> 12 {
                    if ranges.iter().any(|&(s, l)| p << 12 >= s && p << 12 < s + l) {
                        dirty.insert(p);
                    }
                }
            }
            let span = done as usize..(done + len) as usize;
            match &mut data {
                DmaData::ToRam(b) => {
                    // SAFETY: `vaddr..vaddr + len` lies inside a live IOMMU
                    // mapping with device-write access (checked just above);
                    // whoever issued its MAP_DMA promised (`Machine::ioctl`'s
                    // contract) that this process memory stays valid and may
                    // be written by the device until unmapped, and the state
                    // lock we hold keeps the mapping from being removed
                    // meanwhile.
                    unsafe { os::write_process(vaddr, &b[span]) };
                }
                DmaData::FromRam(b) => {
                    // SAFETY: as above, for a mapping with device-read access.
                    unsafe { os::read_process(vaddr, &mut b[span]) };
                }
            }
            done += len;
        }
        let clean = faults.is_empty();
        for (iova, len, reason) in faults {
            self.fault(d, iova, len, to_ram, reason);
        }
        clean
    }

    /// An MMIO write to an NVMe controller's BAR0: the controller runs with
    /// the machine as its bus (DMA through the IOMMU, MSI-X).
    fn nvme_write(&mut self, d: usize, at: u64, width: usize, value: u64) {
        let Some(mut nvme) = self.devices[d].nvme.take() else {
            return;
        };
        nvme.write(at, width, value, &mut NvmeBus { state: self, d });
        self.devices[d].nvme = Some(nvme);
    }
}

/// A DMA's data: to host memory, or from it.
enum DmaData<'a> {
    ToRam(&'a [u8]),
    FromRam(&'a mut [u8]),
}

/// The machine as an NVMe controller's bus.
struct NvmeBus<'a> {
    state: &'a mut State,
    d: usize,
}

impl super::nvme::Bus for NvmeBus<'_> {
    fn dma_read(&mut self, addr: u64, buf: &mut [u8]) -> bool {
        self.state.dma_copy(self.d, addr, DmaData::FromRam(buf))
    }

    fn dma_write(&mut self, addr: u64, data: &[u8]) -> bool {
        self.state.dma_copy(self.d, addr, DmaData::ToRam(data))
    }

    fn interrupt(&mut self, vector: u16) {
        // An MSI-X message is a memory write: Bus Master on, MSI-X enabled
        // and the vector armed.
        let dev = &self.state.devices[self.d];
        if dev.irq == IrqType::Msix
            && dev.bus_master()
            && let Some(Some(fd)) = dev.msi.get(usize::from(vector))
        {
            os::signal(fd);
        }
    }
}

/// Splits an MMIO access as vfio-pci 6.12 does (`vfio_pci_core_do_io_rw`):
/// naturally aligned 4-, 2- and 1-byte accesses; `f(address, width, index
/// into the buffer)`.
fn each_access(pos: u64, n: usize, mut f: impl FnMut(u64, usize, usize)) {
    let mut i = 0;
    while i < n {
        let at = pos + i as u64;
        let left = n - i;
        let width = if left >= 4 && at.is_multiple_of(4) {
            4
        } else if left >= 2 && at.is_multiple_of(2) {
            2
        } else {
            1
        };
        f(at, width, i);
        i += width;
    }
}

/// This process's memory as the iommufd requests reach it: `copy_to_user`
/// into the buffers the crate names, and page pinning.
struct Process {
    writable: bool,
}

impl Process {
    /// # Safety
    ///
    /// Every address handed to [`UserMemory::write`] (`read`) must name
    /// memory the caller of the request allowed the kernel to write (read),
    /// as much of it as accessed (the `Kernel::ioctl_unchecked` contract of
    /// the request).
    unsafe fn new() -> Self {
        Process { writable: true }
    }

    /// Pinning checks only: any write fails with `EFAULT`.
    fn pin_only() -> Self {
        Process { writable: false }
    }
}

impl UserMemory for Process {
    fn read(&mut self, addr: u64, out: &mut [u8]) -> Result<(), Errno> {
        if !self.writable {
            return Err(Errno::EFAULT);
        }
        if addr.checked_add(out.len() as u64).is_none() {
            return Err(Errno::EFAULT);
        }
        // SAFETY: `Process::new`'s contract: the request's caller lent
        // these bytes for the kernel to read; byte-sized atomic loads.
        unsafe { os::read_process(addr, out) };
        Ok(())
    }

    fn write(&mut self, addr: u64, data: &[u8]) -> Result<(), Errno> {
        if !self.writable {
            return Err(Errno::EFAULT);
        }
        if addr.checked_add(data.len() as u64).is_none() {
            return Err(Errno::EFAULT);
        }
        // SAFETY: `Process::new`'s contract: the request's caller allowed
        // the kernel to write these bytes (they are in a buffer it named
        // and exclusively lent for the call); byte-sized atomic stores.
        unsafe { os::write_process(addr, data) };
        Ok(())
    }

    fn pinnable(&self, addr: u64, len: u64) -> bool {
        os::is_mapped(addr, len, super::iommu::MIN_PAGE)
    }
}
