//! Raw-layer scenarios on iommufd and the VFIO device cdev (configuration
//! `custom-iommufd`): `sys::ioctl::*` on `IommufdFd` and `DeviceFd`, the
//! generated structs, and nothing of the typed API. `tests/vm/run` runs this
//! module only there.

use std::fs::{File, OpenOptions};
use std::mem::size_of;
use std::os::fd::{AsFd, AsRawFd};

use nix::errno::Errno;
use typed_vfio::sys;

use crate::edu::*;
use crate::rig;

fn ifd(f: &File) -> sys::IommufdFd<'_> {
    sys::IommufdFd::new(f.as_fd())
}

fn open_rw(path: &std::path::Path) -> File {
    OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap_or_else(|e| panic!("open {}: {e}", path.display()))
}

/// The cdev node of `bdf`, from sysfs `vfio-dev/vfioN`.
fn cdev(bdf: &str) -> File {
    let dir = rig::sysfs_device(bdf).join("vfio-dev");
    let name = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .find(|n| n.starts_with("vfio"))
        .unwrap_or_else(|| panic!("no vfioN under {}", dir.display()));
    open_rw(&std::path::Path::new("/dev/vfio/devices").join(name))
}

fn ioas_alloc(fd: &File) -> u32 {
    let mut a = sys::iommu_ioas_alloc {
        size: size_of::<sys::iommu_ioas_alloc>() as u32,
        ..Default::default()
    };
    // SAFETY: `fd` is an iommufd; `a` is live and writable, `size` its size.
    expect_ok("IOMMU_IOAS_ALLOC", unsafe {
        sys::ioctl::iommu_ioas_alloc(ifd(fd), &mut a)
    });
    a.out_ioas_id
}

fn destroy(fd: &File, id: u32) -> nix::Result<i32> {
    let d = sys::iommu_destroy {
        size: size_of::<sys::iommu_destroy>() as u32,
        id,
    };
    // SAFETY: `fd` is an iommufd; `d` is live.
    unsafe { sys::ioctl::iommu_destroy(ifd(fd), &d) }
}

fn bind(dev: &File, fd: &File) -> nix::Result<u32> {
    // The 7.2 struct, its appended `token_uuid_ptr` zero: 6.12 reads the
    // first 16 bytes of it.
    let mut b = sys::vfio_device_bind_iommufd {
        argsz: size_of::<sys::vfio_device_bind_iommufd>() as u32,
        iommufd: fd.as_raw_fd(),
        ..Default::default()
    };
    // SAFETY: `dev` is a cdev; `b` is live and writable, no flags.
    unsafe { sys::ioctl::vfio_device_bind_iommufd(dfd(dev), &mut b) }?;
    Ok(b.out_devid)
}

fn attach(dev: &File, pt: u32) -> nix::Result<u32> {
    let mut a = sys::vfio_device_attach_iommufd_pt {
        argsz: size_of::<sys::vfio_device_attach_iommufd_pt>() as u32,
        pt_id: pt,
        ..Default::default()
    };
    // SAFETY: `dev` is a bound cdev; `a` is live and writable, no flags.
    unsafe { sys::ioctl::vfio_device_attach_iommufd_pt(dfd(dev), &mut a) }?;
    Ok(a.pt_id)
}

fn detach(dev: &File) -> nix::Result<i32> {
    let d = sys::vfio_device_detach_iommufd_pt {
        argsz: size_of::<sys::vfio_device_detach_iommufd_pt>() as u32,
        ..Default::default()
    };
    // SAFETY: `dev` is a bound cdev; `d` is live.
    unsafe { sys::ioctl::vfio_device_detach_iommufd_pt(dfd(dev), &d) }
}

/// `IOMMU_IOAS_MAP` read-write; the IOVA (the kernel's choice for `None`).
fn map(fd: &File, ioas: u32, mem: &Mmap, iova: Option<u64>) -> nix::Result<u64> {
    let mut flags = sys::IOMMU_IOAS_MAP_READABLE | sys::IOMMU_IOAS_MAP_WRITEABLE;
    if iova.is_some() {
        flags |= sys::IOMMU_IOAS_MAP_FIXED_IOVA;
    }
    let mut m = sys::iommu_ioas_map {
        size: size_of::<sys::iommu_ioas_map>() as u32,
        flags,
        ioas_id: ioas,
        __reserved: 0,
        user_va: mem.addr(),
        length: mem.len as u64,
        iova: iova.unwrap_or(0),
    };
    // SAFETY: `fd` is an iommufd; `m` is live and writable; `mem` stays
    // mapped until every test here unmaps (or destroys) the IOAS, before
    // `mem` is dropped.
    unsafe { sys::ioctl::iommu_ioas_map(ifd(fd), &mut m) }?;
    Ok(m.iova)
}

fn unmap(fd: &File, ioas: u32, iova: u64, length: u64) -> nix::Result<u64> {
    let mut u = sys::iommu_ioas_unmap {
        size: size_of::<sys::iommu_ioas_unmap>() as u32,
        ioas_id: ioas,
        iova,
        length,
    };
    // SAFETY: `fd` is an iommufd; `u` is live and writable.
    unsafe { sys::ioctl::iommu_ioas_unmap(ifd(fd), &mut u) }?;
    Ok(u.length)
}

/// The IOAS's usable ranges and alignment (room for 8 ranges).
fn ranges(fd: &File, ioas: u32) -> (Vec<(u64, u64)>, u64) {
    let mut array = [sys::iommu_iova_range::default(); 8];
    let mut r = sys::iommu_ioas_iova_ranges {
        size: size_of::<sys::iommu_ioas_iova_ranges>() as u32,
        ioas_id: ioas,
        num_iovas: array.len() as u32,
        allowed_iovas: array.as_mut_ptr() as u64,
        ..Default::default()
    };
    // SAFETY: `fd` is an iommufd; `r` is live and writable; `allowed_iovas`
    // names `array`, `num_iovas` entries, exclusively borrowed for the call.
    expect_ok("IOMMU_IOAS_IOVA_RANGES", unsafe {
        sys::ioctl::iommu_ioas_iova_ranges(ifd(fd), &mut r)
    });
    let n = (r.num_iovas as usize).min(array.len());
    (
        array[..n].iter().map(|x| (x.start, x.last)).collect(),
        r.out_iova_alignment,
    )
}

/// A raw iommufd session on the first edu device: iommufd, IOAS, the cdev
/// bound and attached.
fn session() -> (File, u32, Device) {
    let fd = open_rw(std::path::Path::new("/dev/iommu"));
    let ioas = ioas_alloc(&fd);
    let bdf = rig::devices()[0].clone();
    let file = cdev(&bdf);
    let devid = expect_ok(
        "VFIO_DEVICE_BIND_IOMMUFD",
        bind(&file, &fd).map(|d| d as i32),
    );
    assert_ne!(devid, 0, "the kernel gives a device id");
    let pt = attach(&file, ioas).expect("VFIO_DEVICE_ATTACH_IOMMUFD_PT");
    assert_ne!(
        pt, ioas,
        "attach answers the kernel's own HWPT, not the IOAS"
    );
    (fd, ioas, Device::new(file, &bdf))
}

#[test]
#[ignore = "needs a VFIO guest: run tests/vm/run"]
fn raw_iommufd_dma_both_ways_then_blocked_after_unmap_and_after_detach() {
    let (fd, ioas, dev) = session();
    let (usable, align) = ranges(&fd, ioas);
    assert_eq!(
        align,
        page_size(),
        "an attached VT-d domain aligns to pages"
    );
    let msi = rig::msi_window(rig::first_group_number()).0;
    assert!(
        usable.iter().all(|&(s, e)| msi < s || msi > e),
        "the MSI window is usable: {usable:x?}"
    );
    dev.set_bus_master(true);
    let mem = Mmap::anon(4096);
    let data = pattern(512, fresh_seed());
    mem.write_bytes(0, &data);
    let iova = map(&fd, ioas, &mem, Some(0x20_0000)).expect("IOMMU_IOAS_MAP");
    assert_eq!(iova, 0x20_0000);
    dev.dma_to_device(iova, 0, data.len());
    dev.dma_to_ram(0, iova + 2048, data.len());
    assert_eq!(mem.read_bytes(2048, data.len()), data, "RAM -> edu -> RAM");
    // A kernel-chosen IOVA is inside the usable ranges and reaches memory.
    let other = Mmap::anon(4096);
    let chosen = map(&fd, ioas, &other, None).expect("IOMMU_IOAS_MAP anywhere");
    assert!(
        usable
            .iter()
            .any(|&(s, e)| chosen >= s && chosen + 4095 <= e)
    );
    dev.dma_to_ram(0, chosen, data.len());
    assert_eq!(other.read_bytes(0, data.len()), data);
    // Unmapped: the device's write reaches nothing.
    assert_eq!(unmap(&fd, ioas, 0x20_0000, 4096), Ok(4096));
    mem.fill(0xaa);
    dev.dma_to_ram(0, 0x20_0000, 256);
    assert!(
        mem.read_bytes(0, 256).iter().all(|&b| b == 0xaa),
        "DMA after unmap"
    );
    // Detached: the kernel-chosen mapping is still in the IOAS, unreachable.
    expect_ok("VFIO_DEVICE_DETACH_IOMMUFD_PT", detach(&dev.file));
    other.fill(0x55);
    dev.dma_to_ram(0, chosen, 256);
    assert!(
        other.read_bytes(0, 256).iter().all(|&b| b == 0x55),
        "DMA while detached"
    );
    dev.set_bus_master(false);
    assert_eq!(unmap(&fd, ioas, 0, u64::MAX), Ok(4096), "unmap-all");
    expect_ok("IOMMU_DESTROY", destroy(&fd, ioas));
}

#[test]
#[ignore = "needs a VFIO guest: run tests/vm/run"]
fn raw_iommufd_errors_carry_the_kernels_errno() {
    let (fd, ioas, dev) = session();
    let mem = Mmap::anon(8192);
    map(&fd, ioas, &mem, Some(0x40_0000)).expect("IOMMU_IOAS_MAP");
    expect_errno(
        "overlapping map",
        map(&fd, ioas, &mem, Some(0x40_1000)),
        Errno::EEXIST,
    );
    let msi = rig::msi_window(rig::first_group_number()).0;
    expect_errno(
        "map in the MSI window",
        map(&fd, ioas, &mem, Some(msi)),
        Errno::EINVAL,
    );
    expect_errno(
        "map that wraps",
        map(&fd, ioas, &mem, Some(u64::MAX - 0xfff)),
        Errno::EOVERFLOW,
    );
    expect_errno(
        "partial unmap",
        unmap(&fd, ioas, 0x40_0000, 4096),
        Errno::ENOENT,
    );
    expect_errno(
        "unmap of nothing",
        unmap(&fd, ioas, 0x90_0000, 4096),
        Errno::ENOENT,
    );
    expect_errno("destroy in use", destroy(&fd, ioas), Errno::EBUSY);
    expect_errno("destroy unknown", destroy(&fd, 0x7fff), Errno::ENOENT);
    expect_errno(
        "attach to nothing",
        attach(&dev.file, 0x7fff),
        Errno::ENOENT,
    );
    expect_errno("bind twice", bind(&dev.file, &fd), Errno::EINVAL);
    // The group cannot be opened while the cdev is bound.
    let (_, group) = &rig::devices_with_groups()[0];
    let err = OpenOptions::new()
        .read(true)
        .write(true)
        .open(rig::group_path(group))
        .expect_err("opened the group of a bound cdev");
    assert_eq!(err.raw_os_error(), Some(libc::EBUSY), "{err}");
    // An unbound cdev answers nothing but bind.
    let second = cdev(&rig::devices()[1]);
    expect_errno(
        "region info before bind",
        region_info(&second, 0),
        Errno::EINVAL,
    );
    assert_eq!(unmap(&fd, ioas, 0x40_0000, 8192), Ok(8192));
}
