//! The iommufd part of the in-guest benchmark (`TVFIO_IOMMU=iommufd`, the
//! rig's `custom-iommufd` configuration): `IOMMU_IOAS_MAP`+`IOMMU_IOAS_UNMAP`
//! pairs of a one-page [`DmaBuffer`] at a fixed IOVA through the typed API
//! (`Ioas::map` and the guard's drop), through the raw `sys` calls, and
//! through rust-vmm's `iommufd-ioctls` (the crate cloud-hypervisor's VFIO
//! cdev path maps through); and MSI loopback triggers on the bound cdev,
//! typed and raw. The method is the container part's (see the crate-level
//! comment of `main.rs`): contenders live at once, short batches, the order
//! rotating every cycle, two sessions (one on each edu device), paired
//! ratios.
//!
//! All three map into the same IOAS, with the same bound device attached,
//! so every contender's map and unmap reach the same real IOMMU page table
//! (the VT-d's invalidations included) and the kernel's work is the same:
//! the ratios measure what each library adds in user space. The raw calls
//! go to the typed objects' fd and ids; iommufd-ioctls gets its own
//! `IommuFd` over a duplicate of that fd (`IommuFd::new_from_fd`) and maps
//! by the IOAS id, as cloud-hypervisor's `VfioIommufd` does. (In an
//! earlier design iommufd-ioctls had its own iommufd, IOAS and device: the
//! ratio then swung between 0.96 and 1.02 from run to run with where each
//! IOAS's kernel objects happened to be, which hid the user-space
//! difference it is meant to show.) They map the same one-page buffer at
//! the same IOVA, in turn.

use std::fs::File;
use std::hint::black_box;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use iommufd_bindings::iommufd::{
    iommu_ioas_map, iommu_ioas_unmap, iommufd_ioas_map_flags_IOMMU_IOAS_MAP_FIXED_IOVA,
    iommufd_ioas_map_flags_IOMMU_IOAS_MAP_READABLE,
    iommufd_ioas_map_flags_IOMMU_IOAS_MAP_WRITEABLE,
};
use iommufd_ioctls::IommuFd;
use nix::sys::eventfd::EventFd;
use typed_vfio::iommufd::{BoundDevice, CdevDevice, Ioas, Iommufd};
use typed_vfio::{DmaAccess, DmaBuffer, sys};

use super::{BATCH, IOVA, MSI, Results, ns_per_op, report, turns};

const PAGE: u64 = 4096;

/// The cdev node of `bdf`: the crate's sysfs lookup, or under
/// `TVFIO_SYSFS_DEVICES` (`benches/icount`'s fake sysfs) the same lookup
/// there.
fn cdev(bdf: &str) -> PathBuf {
    let Ok(root) = std::env::var("TVFIO_SYSFS_DEVICES") else {
        return CdevDevice::path_of_pci_device(bdf).unwrap();
    };
    let dir = Path::new(&root).join(bdf).join("vfio-dev");
    let entry = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .next()
        .expect("no vfioN entry")
        .unwrap();
    Path::new("/dev/vfio/devices").join(entry.file_name())
}

/// The typed API: an IOAS, the device bound and attached to it with MSI
/// routed to an eventfd, a one-page buffer. (Field order is drop order:
/// the device unbinds before the IOAS is destroyed.)
struct Typed<'f> {
    dev: BoundDevice,
    ioas: Ioas<'f>,
    buf: DmaBuffer,
    _efd: EventFd,
}

impl<'f> Typed<'f> {
    fn open(fd: &'f Iommufd, bdf: &str) -> Typed<'f> {
        let ioas = fd.alloc_ioas().unwrap();
        let dev = CdevDevice::open(&cdev(bdf)).unwrap().bind(fd).unwrap();
        dev.attach(&ioas).unwrap();
        let efd = EventFd::new().unwrap();
        dev.set_irq_eventfd(MSI, 0, efd.as_fd()).unwrap();
        Typed {
            dev,
            ioas,
            buf: DmaBuffer::new(PAGE as usize).unwrap(),
            _efd: efd,
        }
    }

    fn maps(&self, n: u32) -> f64 {
        ns_per_op(n, || {
            // Inputs opaque, as the raw contender's are; the guard unmaps
            // as it drops.
            let guard = self
                .ioas
                .map(black_box(&self.buf), black_box(IOVA), DmaAccess::ReadWrite)
                .unwrap();
            drop(guard);
        })
    }

    fn triggers(&self, n: u32) -> f64 {
        ns_per_op(n, || self.dev.trigger_irq(MSI, 0, 1).unwrap())
    }
}

impl Drop for Typed<'_> {
    fn drop(&mut self) {
        self.dev.disable_irq(MSI).unwrap();
    }
}

/// The raw `sys` calls on the typed contender's iommufd, IOAS, device and
/// buffer; arguments built per call.
struct Raw;

impl Raw {
    fn maps(&self, fd: &Iommufd, on: &Typed<'_>, n: u32) -> f64 {
        let ifd = sys::IommufdFd::new(fd.as_fd());
        let ioas_id = on.ioas.id();
        ns_per_op(n, || {
            let mut map = sys::iommu_ioas_map {
                size: size_of::<sys::iommu_ioas_map>() as u32,
                flags: sys::IOMMU_IOAS_MAP_FIXED_IOVA
                    | sys::IOMMU_IOAS_MAP_READABLE
                    | sys::IOMMU_IOAS_MAP_WRITEABLE,
                ioas_id,
                __reserved: 0,
                user_va: black_box(on.buf.addr()) as u64,
                length: PAGE,
                iova: black_box(IOVA),
            };
            let mut unmap = sys::iommu_ioas_unmap {
                size: size_of::<sys::iommu_ioas_unmap>() as u32,
                ioas_id,
                iova: IOVA,
                length: PAGE,
            };
            // SAFETY: the buffer outlives the mapping, which is removed
            // right after (no typed guard maps it meanwhile: the
            // contenders take turns); both arguments are complete structs.
            unsafe {
                sys::ioctl::iommu_ioas_map(ifd, &mut map).unwrap();
                sys::ioctl::iommu_ioas_unmap(ifd, &mut unmap).unwrap();
            }
        })
    }

    fn triggers(&self, on: &Typed<'_>, n: u32) -> f64 {
        let dfd = sys::DeviceFd::new(on.dev.as_fd());
        ns_per_op(n, || {
            let trigger = [
                20u32,
                sys::VFIO_IRQ_SET_DATA_NONE | sys::VFIO_IRQ_SET_ACTION_TRIGGER,
                black_box(MSI),
                black_box(0),
                1,
            ];
            // SAFETY: `trigger` is a complete 20-byte vfio_irq_set header.
            unsafe { sys::ioctl::vfio_device_set_irqs(dfd, trigger.as_ptr().cast()).unwrap() };
        })
    }
}

/// rust-vmm's iommufd-ioctls, on the typed contender's iommufd (a
/// duplicate fd), IOAS and buffer. Maps as cloud-hypervisor does (through
/// vfio-ioctls's `VfioIommufd`): `IommuFd::map_iommu_ioas` with a fixed
/// IOVA, `IommuFd::unmap_iommu_ioas`, and a check that all of it went.
struct Vmm {
    iommufd: IommuFd,
    ioas_id: u32,
    addr: usize,
}

impl Vmm {
    fn open(on: &Typed<'_>, fd: &Iommufd) -> Vmm {
        let dup = fd.as_fd().try_clone_to_owned().unwrap();
        Vmm {
            iommufd: IommuFd::new_from_fd(File::from(dup)),
            ioas_id: on.ioas.id(),
            addr: on.buf.addr(),
        }
    }

    fn maps(&self, n: u32) -> f64 {
        ns_per_op(n, || {
            let map = iommu_ioas_map {
                size: size_of::<iommu_ioas_map>() as u32,
                flags: iommufd_ioas_map_flags_IOMMU_IOAS_MAP_READABLE
                    | iommufd_ioas_map_flags_IOMMU_IOAS_MAP_WRITEABLE
                    | iommufd_ioas_map_flags_IOMMU_IOAS_MAP_FIXED_IOVA,
                ioas_id: self.ioas_id,
                __reserved: 0,
                user_va: black_box(self.addr) as u64,
                length: PAGE,
                iova: black_box(IOVA),
            };
            // (Safe in iommufd-ioctls; the buffer outlives the mapping,
            // which is removed right after.)
            self.iommufd.map_iommu_ioas(&map).unwrap();
            let mut unmap = iommu_ioas_unmap {
                size: size_of::<iommu_ioas_unmap>() as u32,
                ioas_id: self.ioas_id,
                iova: IOVA,
                length: PAGE,
            };
            self.iommufd.unmap_iommu_ioas(&mut unmap).unwrap();
            assert_eq!(unmap.length, PAGE, "IOAS_UNMAP left part of the range");
        })
    }
}

/// Contender names, in the results' order; only the first two trigger.
const NAMES: [&str; 3] = ["typed", "raw", "iommufd-ioctls"];

/// One session, every contender on the IOAS with `device` attached.
fn session(device: &str, out: &mut Results) {
    let fd = Iommufd::open().unwrap();
    let typed = Typed::open(&fd, device);
    let raw = Raw;
    let vmm = Vmm::open(&typed, &fd);
    // Warm up: the first calls fault in code and kernel state.
    let _ = (
        typed.maps(BATCH),
        raw.maps(&fd, &typed, BATCH),
        vmm.maps(BATCH),
    );
    let _ = (typed.triggers(BATCH), raw.triggers(&typed, BATCH));
    turns(&mut out.map, |i| match i {
        0 => typed.maps(BATCH),
        1 => raw.maps(&fd, &typed, BATCH),
        _ => vmm.maps(BATCH),
    });
    turns(&mut out.trigger, |i| match i {
        0 => typed.triggers(BATCH),
        _ => raw.triggers(&typed, BATCH),
    });
    drop(vmm);
    drop(typed);
}

/// `TVFIO_BENCH_COUNT` in iommufd mode: one contender, once, on the first
/// device.
pub(crate) fn count(name: &str, devices: &[&str], maps: u32, triggers: u32) {
    let fd = Iommufd::open().unwrap();
    match name {
        "typed" => {
            let t = Typed::open(&fd, devices[0]);
            t.maps(maps);
            t.triggers(triggers);
        }
        "raw" => {
            let t = Typed::open(&fd, devices[0]);
            let r = Raw;
            r.maps(&fd, &t, maps);
            r.triggers(&t, triggers);
        }
        "iommufd-ioctls" => {
            assert_eq!(triggers, 0, "iommufd-ioctls has no device to trigger");
            let t = Typed::open(&fd, devices[0]);
            Vmm::open(&t, &fd).maps(maps);
        }
        other => panic!("no iommufd contender {other}"),
    }
}

/// The whole iommufd benchmark: two sessions, one on each edu device.
pub(crate) fn run(devices: &[&str]) {
    assert!(devices.len() >= 2, "bench: needs two edu devices");
    let mut r = Results::new(3, 2);
    let start = std::time::Instant::now();
    session(devices[0], &mut r);
    eprintln!(
        "bench: iommufd session 1 of 2 done ({:.1} s)",
        start.elapsed().as_secs_f64()
    );
    session(devices[1], &mut r);
    eprintln!(
        "bench: iommufd session 2 of 2 done ({:.1} s)",
        start.elapsed().as_secs_f64()
    );
    let per_op = BATCH as usize * r.map[0].len();
    println!(
        "bench iommufd: {per_op} IOAS map+unmap pairs per contender and {per_op} MSI triggers \
         for typed and raw (iommufd-ioctls has no device API), in batches of {BATCH}"
    );
    report(&NAMES, &r, &[(1, "1.03"), (2, "1.0")]);
}
