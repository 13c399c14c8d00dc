//! In-guest benchmark, run by the VM rig (`tests/vm/run`) on a real kernel:
//! 10,000 `MAP_DMA`+`UNMAP_DMA` pairs and 10,000 loopback IRQ triggers
//! through the typed API, through the raw `sys` calls, and through rust-vmm's
//! `vfio-ioctls`, in the same guest run. Each measurement is repeated in
//! interleaved rounds and the median is reported, with the ratios the
//! project's goals are stated in (typed/raw ≤ 1.03, typed/vfio-ioctls ≤ 1.0).
//!
//! Outside the guest (no `TVFIO_DEVICES`), it says so and exits non-zero.
//!
//! `TVFIO_BENCH_COUNT="CONTENDER MAPS TRIGGERS"` runs one contender once with
//! that many operations and prints nothing else: `benches/icount` uses it
//! to count instructions with callgrind against a stand-in VFIO
//! (`benches/vfio_shim.c`) on a machine without VFIO.

use std::hint::black_box;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use typed_vfio::{Container, DmaAccess, DmaBuffer, Group, GroupId, PciIrq, Type1v2, sys};

const N: u32 = 10_000;
/// Where vfio-ioctls looks for the device (`TVFIO_SYSFS_DEVICES` overrides
/// it for `benches/icount`).
const SYSFS_DEVICES: &str = "/sys/bus/pci/devices";
const ROUNDS: usize = 15;
const IOVA: u64 = 0x20_0000;

fn ns_per_op(n: u32, f: &mut dyn FnMut()) -> f64 {
    let start = Instant::now();
    for _ in 0..n {
        f();
    }
    start.elapsed().as_nanos() as f64 / f64::from(n.max(1))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

struct Contender {
    name: &'static str,
    map_unmap: Vec<f64>,
    trigger: Vec<f64>,
}

fn main() {
    let (Ok(devices), Ok(groups)) = (
        std::env::var("TVFIO_DEVICES"),
        std::env::var("TVFIO_GROUPS"),
    ) else {
        eprintln!("bench: not in the VFIO guest (TVFIO_DEVICES unset): run tests/vm/run");
        std::process::exit(2);
    };
    let bdf = devices
        .split_whitespace()
        .next()
        .expect("a device")
        .to_string();
    let group: u32 = groups
        .split_whitespace()
        .next()
        .expect("a group")
        .parse()
        .expect("IOMMU group");

    if let Ok(spec) = std::env::var("TVFIO_BENCH_COUNT") {
        let words: Vec<&str> = spec.split_whitespace().collect();
        let [name, maps, triggers] = words[..] else {
            panic!("TVFIO_BENCH_COUNT: CONTENDER MAPS TRIGGERS");
        };
        let (maps, triggers) = (maps.parse().unwrap(), triggers.parse().unwrap());
        match name {
            "typed" => drop(typed(&bdf, group, maps, triggers)),
            "raw" => drop(raw(&bdf, group, maps, triggers)),
            "vfio-ioctls" => drop(rust_vmm(&bdf, maps, triggers)),
            other => panic!("no contender {other}"),
        }
        return;
    }

    let mut all = [
        Contender {
            name: "typed",
            map_unmap: vec![],
            trigger: vec![],
        },
        Contender {
            name: "raw",
            map_unmap: vec![],
            trigger: vec![],
        },
        Contender {
            name: "vfio-ioctls",
            map_unmap: vec![],
            trigger: vec![],
        },
    ];
    for round in 0..ROUNDS {
        // Each round starts with another contender, so none always runs
        // right after the same one.
        for k in 0..all.len() {
            let c = &mut all[(round + k) % 3];
            let (m, t) = match c.name {
                "typed" => typed(&bdf, group, N, N),
                "raw" => raw(&bdf, group, N, N),
                _ => rust_vmm(&bdf, N, N),
            };
            c.map_unmap.push(m);
            c.trigger.push(t);
        }
        eprintln!("bench: round {} of {ROUNDS} done", round + 1);
    }
    let med: Vec<(f64, f64)> = all
        .iter()
        .map(|c| (median(c.map_unmap.clone()), median(c.trigger.clone())))
        .collect();
    for (c, (m, t)) in all.iter().zip(&med) {
        println!(
            "bench {:<12} map+unmap {m:>9.0} ns/pair   irq trigger {t:>9.0} ns/op",
            c.name
        );
    }
    // Two estimates of each ratio: of the medians, and the median of the
    // rounds' own ratios (each pairs measurements made moments apart, so a
    // slow drift of the machine cancels out).
    let paired = |a: &[f64], b: &[f64]| median(a.iter().zip(b).map(|(x, y)| x / y).collect());
    for (other, label) in [(1, "raw        "), (2, "vfio-ioctls")] {
        let goal = if other == 1 { "1.03" } else { "1.0" };
        println!(
            "bench ratio typed/{label}  map+unmap {:.3} (paired {:.3})   irq trigger {:.3} (paired {:.3})   (goal <= {goal})",
            med[0].0 / med[other].0,
            paired(&all[0].map_unmap, &all[other].map_unmap),
            med[0].1 / med[other].1,
            paired(&all[0].trigger, &all[other].trigger),
        );
    }
}

fn typed(bdf: &str, group: u32, maps: u32, triggers: u32) -> (f64, f64) {
    let c = Container::open()
        .unwrap()
        .attach(Group::open_id(GroupId::new(group)).unwrap())
        .unwrap()
        .set_iommu::<Type1v2>()
        .unwrap();
    let dev = c.open_device(bdf).unwrap();
    let buf = DmaBuffer::new(4096).unwrap();
    drop(c.map(&buf, IOVA, DmaAccess::ReadWrite).unwrap()); // warm the info cache
    let map = ns_per_op(maps, &mut || {
        drop(black_box(c.map(&buf, IOVA, DmaAccess::ReadWrite).unwrap()))
    });
    let efd = nix::sys::eventfd::EventFd::new().unwrap();
    dev.set_irq_eventfd(PciIrq::Msi as u32, 0, efd.as_fd())
        .unwrap();
    let trig = ns_per_op(triggers, &mut || {
        dev.trigger_irq(PciIrq::Msi as u32, 0, 1).unwrap()
    });
    dev.disable_irq(PciIrq::Msi as u32).unwrap();
    (map, trig)
}

fn raw(bdf: &str, group: u32, maps: u32, triggers: u32) -> (f64, f64) {
    let open = |p: &str| -> OwnedFd {
        std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(p)
            .unwrap()
            .into()
    };
    let container = open("/dev/vfio/vfio");
    let group_fd = open(&format!("/dev/vfio/{group}"));
    let cfd = sys::ContainerFd::new(container.as_fd());
    let gfd = sys::GroupFd::new(group_fd.as_fd());
    let raw_c = container.as_raw_fd();
    let cstr = std::ffi::CString::new(bdf).unwrap();
    // SAFETY: each call passes a pointer to a live, correctly sized argument
    // on the fd class the request belongs to.
    let dev = unsafe {
        sys::ioctl::vfio_group_set_container(gfd, &raw_c).unwrap();
        sys::ioctl::vfio_set_iommu(cfd, sys::VFIO_TYPE1v2_IOMMU as i32).unwrap();
        OwnedFd::from_raw_fd(sys::ioctl::vfio_group_get_device_fd(gfd, cstr.as_ptr()).unwrap())
    };
    let dfd = sys::DeviceFd::new(dev.as_fd());
    let buf = DmaBuffer::new(4096).unwrap();
    // Arguments are built per call, as a caller of the raw layer does (and
    // as the typed API and vfio-ioctls do): only the ioctl plumbing differs.
    let map = ns_per_op(maps, &mut || {
        let map_arg = sys::vfio_iommu_type1_dma_map {
            argsz: size_of::<sys::vfio_iommu_type1_dma_map>() as u32,
            flags: sys::VFIO_DMA_MAP_FLAG_READ | sys::VFIO_DMA_MAP_FLAG_WRITE,
            vaddr: black_box(buf.addr()) as u64,
            iova: black_box(IOVA),
            size: 4096,
        };
        let mut unmap = sys::vfio_iommu_type1_dma_unmap {
            argsz: size_of::<sys::vfio_iommu_type1_dma_unmap>() as u32,
            flags: 0,
            iova: IOVA,
            size: 4096,
            data: Default::default(),
        };
        // SAFETY: `buf` outlives the mapping, which is removed right after.
        unsafe {
            sys::ioctl::vfio_iommu_map_dma(cfd, &map_arg).unwrap();
            sys::ioctl::vfio_iommu_unmap_dma(cfd, &mut unmap).unwrap();
        }
    });
    let efd = nix::sys::eventfd::EventFd::new().unwrap();
    let mut set = [0u32; 6];
    set[..5].copy_from_slice(&[
        24,
        sys::VFIO_IRQ_SET_DATA_EVENTFD | sys::VFIO_IRQ_SET_ACTION_TRIGGER,
        1,
        0,
        1,
    ]);
    set[5] = efd.as_fd().as_raw_fd() as u32;
    // SAFETY: `set` is a vfio_irq_set header plus one eventfd (argsz 24).
    unsafe { sys::ioctl::vfio_device_set_irqs(dfd, set.as_ptr().cast()).unwrap() };
    let trig = ns_per_op(triggers, &mut || {
        let trigger = [
            20u32,
            sys::VFIO_IRQ_SET_DATA_NONE | sys::VFIO_IRQ_SET_ACTION_TRIGGER,
            black_box(1),
            black_box(0),
            1,
        ];
        // SAFETY: `trigger` is a complete 20-byte vfio_irq_set header.
        unsafe { sys::ioctl::vfio_device_set_irqs(dfd, trigger.as_ptr().cast()).unwrap() };
    });
    let disable = [
        20u32,
        sys::VFIO_IRQ_SET_DATA_NONE | sys::VFIO_IRQ_SET_ACTION_TRIGGER,
        1,
        0,
        0,
    ];
    // SAFETY: as above.
    unsafe {
        sys::ioctl::vfio_device_set_irqs(dfd, disable.as_ptr().cast()).unwrap();
        drop(dev);
        sys::ioctl::vfio_group_unset_container(gfd).unwrap();
    }
    (map, trig)
}

fn rust_vmm(bdf: &str, maps: u32, triggers: u32) -> (f64, f64) {
    use vfio_ioctls::{VfioContainer, VfioDevice};
    let container = Arc::new(VfioContainer::new(None).unwrap());
    let root = std::env::var("TVFIO_SYSFS_DEVICES").unwrap_or_else(|_| SYSFS_DEVICES.into());
    let sysfs = Path::new(&root).join(bdf);
    let dev = VfioDevice::new(&sysfs, container.clone(), false).unwrap();
    let buf = DmaBuffer::new(4096).unwrap();
    let map = ns_per_op(maps, &mut || {
        // SAFETY: `buf` outlives the mapping, which is removed right after.
        unsafe {
            container
                .vfio_dma_map(IOVA, 4096, buf.addr() as *mut u8)
                .unwrap()
        };
        container.vfio_dma_unmap(IOVA, 4096).unwrap();
    });
    let efd = vmm_sys_util::eventfd::EventFd::new(0).unwrap();
    dev.enable_msi(vec![&efd]).unwrap();
    let trig = ns_per_op(triggers, &mut || {
        dev.trigger_irq(PciIrq::Msi as u32, 0).unwrap()
    });
    dev.disable_msi().unwrap();
    (map, trig)
}
