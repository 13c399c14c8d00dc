//! The iommufd + device cdev scenarios (configuration `custom-iommufd` on
//! the real kernel, [`Kind::Iommufd`] on the simulator): objects and their
//! ids, IOVA ranges as attach and detach change them, mapping rules and
//! their errnos, DMA through an IOAS, interrupts on a bound cdev, two
//! devices and two IOASes.

use std::os::fd::AsFd;

use typed_vfio::iommufd::{BindError, BoundDevice, Ioas, IoasRanges, Iommufd, IommufdError};
use typed_vfio::{DmaAccess, DmaBuffer, PciIrq, sys};

use super::{
    ApiError, At, EDU_BUF, Env, Failure, Record, dma, edu_dma, eventfd, fired, grp, past_ranges,
};

impl From<IommufdError> for ApiError {
    fn from(e: IommufdError) -> Self {
        ApiError::Iommufd(e)
    }
}

impl From<BindError> for ApiError {
    fn from(e: BindError) -> Self {
        ApiError::Iommufd(e.error)
    }
}

/// An iommufd result: `ok`, the errno name, or the typed error's variant.
pub fn ifd<T>(r: Result<T, IommufdError>) -> String {
    match r {
        Ok(_) => "ok".into(),
        Err(IommufdError::Ioctl { errno, .. } | IommufdError::Open { errno, .. }) => {
            super::errno_name(errno)
        }
        Err(e) => format!("typed: {}", super::variant(&format!("{e:?}"))),
    }
}

fn ranges(r: &IoasRanges) -> String {
    let list: Vec<String> = r
        .ranges
        .iter()
        .map(|x| format!("{:#x}..={:#x}", x.start, x.end))
        .collect();
    format!("align {:#x} [{}]", r.alignment, list.join(", "))
}

fn bind(env: &dyn Env, fd: &Iommufd, i: usize) -> Result<BoundDevice, Failure> {
    let address = &env.devices()[i];
    let cdev = env.open_cdev(address).at("open the cdev")?;
    cdev.bind(fd).at("bind the cdev")
}

fn iova_ranges(ioas: &Ioas<'_>, step: &str) -> Result<String, Failure> {
    Ok(ranges(&ioas.iova_ranges().at(step)?))
}

/// Objects, ids, ranges, options, hw info, HWPTs and the group/cdev
/// exclusion.
pub fn iommufd_objects(env: &dyn Env, r: &mut Record) -> Result<(), Failure> {
    let fd = env.open_iommufd().at("open /dev/iommu")?;
    r.note(
        "iommufd.rlimit_per_user",
        fd.rlimit_per_user().at("option")?,
    );
    let ioas = fd.alloc_ioas().at("alloc an IOAS")?;
    r.note("iommufd.ioas.id", ioas.id());
    r.note("iommufd.ioas.ranges_fresh", iova_ranges(&ioas, "ranges")?);
    r.note("iommufd.ioas.huge_pages", ioas.huge_pages().at("option")?);
    r.note(
        "iommufd.rlimit_set_with_objects",
        ifd(fd.set_rlimit_per_user(false)),
    );
    let address = env.devices()[0].clone();
    // The group is open: the cdev opens but cannot bind (the device comes
    // back); closed again, it binds.
    let group = env.open_group_of(&address).at("open the group")?;
    let cdev = env.open_cdev(&address).at("open the cdev")?;
    let cdev = match cdev.bind(&fd) {
        Ok(_) => return Err(super::unexpected("bind", "bound while the group was open")),
        Err(e) => {
            r.note("iommufd.bind_while_group_open", ifd::<()>(Err(e.error)));
            e.device
                .ok_or_else(|| super::unexpected("bind", "device not handed back"))?
        }
    };
    drop(group);
    let dev = cdev.bind(&fd).at("bind")?;
    r.note("iommufd.devid", dev.devid());
    r.note(
        "iommufd.group_open_while_bound",
        grp(env.open_group_of(&address)),
    );
    let hwpt = dev.attach(&ioas).at("attach")?;
    r.note("iommufd.attach.pt", hwpt);
    r.note(
        "iommufd.ioas.ranges_attached",
        iova_ranges(&ioas, "ranges")?,
    );
    r.note(
        "iommufd.attach_again.pt",
        ifd(dev.attach(&ioas).map(|p| p == hwpt)),
    );
    let ioas = match ioas.destroy() {
        Ok(()) => return Err(super::unexpected("destroy", "destroyed an IOAS in use")),
        Err(e) => {
            r.note("iommufd.destroy_in_use", ifd::<()>(Err(e.error)));
            e.ioas
        }
    };
    let info = fd.hw_info(&dev).at("hw info")?;
    r.note(
        "iommufd.hw_info",
        format!("{:x?} caps {:#x}", info.data, info.capabilities),
    );
    r.note("iommufd.hw_info.pasid", info.max_pasid_log2);
    r.note(
        "iommufd.hwpt.nest_parent",
        ifd(fd
            .alloc_hwpt(&dev, &ioas, sys::IOMMU_HWPT_ALLOC_NEST_PARENT)
            .map(drop)),
    );
    r.note(
        "iommufd.hwpt.dirty_tracking",
        ifd(fd
            .alloc_hwpt(&dev, &ioas, sys::IOMMU_HWPT_ALLOC_DIRTY_TRACKING)
            .map(drop)),
    );
    {
        let step = "a paging HWPT";
        let manual = fd.alloc_hwpt(&dev, &ioas, 0).at(step)?;
        r.note("iommufd.hwpt.id", manual.id());
        r.note(
            "iommufd.hwpt.attach",
            dev.attach_hwpt(&manual).at(step)? == manual.id(),
        );
        let back = dev.attach(&ioas).at(step)?;
        r.note("iommufd.hwpt.replaced_by_ioas.pt", back);
        dev.detach().at(step)?;
        // The HWPT's domain still covers the IOAS: its aperture is reserved;
        // the device's MSI window went with the device.
        r.note("iommufd.ioas.ranges_hwpt_only", iova_ranges(&ioas, step)?);
        r.note("iommufd.detach_again", ifd(dev.detach()));
    }
    r.note(
        "iommufd.ioas.ranges_detached",
        iova_ranges(&ioas, "ranges")?,
    );
    let second = fd.alloc_ioas().at("a second IOAS")?;
    r.note("iommufd.ioas2.id", second.id());
    drop(second);
    let third = fd.alloc_ioas().at("a third IOAS")?;
    r.note("iommufd.ioas3.id_reused", third.id());
    drop(third);
    drop(dev);
    // Unbound again: the group opens.
    r.note(
        "iommufd.group_open_after_unbind",
        grp(env.open_group_of(&address)),
    );
    Ok(())
}

/// DMA through IOASes: both ways, kernel-chosen IOVAs, the mapping rules,
/// lazy pinning, reserved regions at attach, two devices, two IOASes.
pub fn iommufd_dma(env: &dyn Env, r: &mut Record) -> Result<(), Failure> {
    let fd = env.open_iommufd().at("open /dev/iommu")?;
    let mut ioas = fd.alloc_ioas().at("alloc an IOAS")?;
    let dev = bind(env, &fd, 0)?;
    let step = "attach";
    dev.attach(&ioas).at(step)?;
    dev.set_bus_master(true).at(step)?;
    let buf = DmaBuffer::new(4096).at("buffer")?;
    let data: Vec<u8> = (0..256u32).map(|i| (i * 7 + 3) as u8).collect();
    buf.write(0, &data).at("buffer")?;
    {
        let step = "DMA both ways";
        let m = ioas.map(&buf, 0x20_0000, DmaAccess::ReadWrite).at(step)?;
        edu_dma(env, &dev, m.iova(), EDU_BUF, 256, 0)?;
        edu_dma(env, &dev, EDU_BUF, m.iova() + 2048, 256, 2)?;
        let mut back = vec![0u8; 256];
        buf.read(2048, &mut back).at(step)?;
        r.note("iommufd.dma.round_trip", back == data);
        let other = DmaBuffer::new(4096).at(step)?;
        r.note(
            "iommufd.map.overlap",
            dma(ioas.map(&other, 0x20_0000, DmaAccess::ReadWrite)),
        );
        r.note(
            "iommufd.map.msi_window",
            dma(ioas.map(&other, env.msi_window(), DmaAccess::ReadWrite)),
        );
        r.note(
            "iommufd.map.wraps",
            dma(ioas.map(&other, u64::MAX - 0xfff, DmaAccess::ReadWrite)),
        );
        // Past the attached IOMMU's aperture: 1 << 40 is past VT-d's
        // (39 bits here) but inside QEMU's SMMUv3's (48 bits), where the
        // first IOVA after the last usable range is used instead.
        let beyond = past_ranges(&ioas.iova_ranges().at(step)?.ranges, 1 << 40).max(1 << 40);
        r.note(
            "iommufd.map.beyond_aperture",
            dma(ioas.map(&other, beyond, DmaAccess::ReadWrite)),
        );
        r.note(
            "iommufd.map.misaligned",
            dma(ioas.map(&other, 0x30_0800, DmaAccess::ReadWrite)),
        );
        let anywhere = ioas.map_anywhere(&other, DmaAccess::ReadWrite).at(step)?;
        r.note(
            "iommufd.map_anywhere.iova",
            format!("{:#x}", anywhere.iova()),
        );
        let next = DmaBuffer::new(4096).at(step)?;
        let again = ioas.map_anywhere(&next, DmaAccess::ReadWrite).at(step)?;
        r.note(
            "iommufd.map_anywhere.second",
            format!("{:#x}", again.iova()),
        );
        edu_dma(env, &dev, EDU_BUF, again.iova(), 256, 2)?;
        let mut got = vec![0u8; 256];
        next.read(0, &mut got).at(step)?;
        r.note("iommufd.map_anywhere.dma", got == data);
        r.note(
            "iommufd.unmap.nothing",
            super::unmapped(ioas.unmap_raw(0x900_0000, 0x1000)),
        );
        drop(again);
        drop(anywhere);
        m.unmap().at(step)?;
    }
    {
        let step = "partial unmap";
        let two = DmaBuffer::new(8192).at(step)?;
        let m = ioas.map(&two, 0x40_0000, DmaAccess::ReadWrite).at(step)?;
        r.note(
            "iommufd.unmap.part",
            super::unmapped(ioas.unmap_raw(0x40_0000, 0x1000)),
        );
        r.note(
            "iommufd.unmap.straddle",
            super::unmapped(ioas.unmap_raw(0x3f_f000, 0x2000)),
        );
        m.unmap().at(step)?;
    }
    {
        let step = "DMA after unmap";
        buf.fill(0xaa);
        edu_dma(env, &dev, EDU_BUF, 0x20_0000, 256, 2)?;
        let mut after = vec![0u8; 256];
        buf.read(0, &mut after).at(step)?;
        r.note(
            "iommufd.dma.after_unmap_untouched",
            after.iter().all(|&b| b == 0xaa),
        );
    }
    {
        // Unmapped process memory: refused at once where a domain must be
        // filled, accepted (lazily) by an IOAS no device is attached to,
        // whose first attach then fails to pin it.
        let step = "unmapped memory";
        let page = 0x1000 as *mut u8;
        // SAFETY: nothing is mapped at the page above page zero (below
        // vm.mmap_min_addr), so no device can reach memory of ours; the
        // kernel refuses (EFAULT) or, lazily, records a range it never pins.
        let attached = unsafe { ioas.map_raw(page, 0x1000, Some(0x50_0000), DmaAccess::ReadWrite) };
        r.note("iommufd.map.unmapped_attached", dma(attached));
        let lazy = fd.alloc_ioas().at(step)?;
        // SAFETY: as above.
        let fresh = unsafe { lazy.map_raw(page, 0x1000, Some(0x50_0000), DmaAccess::ReadWrite) };
        r.note("iommufd.map.unmapped_fresh", dma(fresh));
        let other = bind(env, &fd, 1)?;
        r.note("iommufd.attach.unpinnable", ifd(other.attach(&lazy)));
        drop(other);
        drop(lazy);
    }
    {
        // A mapping where the device's MSI window will be reserved.
        let step = "reserved at attach";
        let lazy = fd.alloc_ioas().at(step)?;
        let m = lazy
            .map(&buf, env.msi_window(), DmaAccess::ReadWrite)
            .at(step)?;
        let other = bind(env, &fd, 1)?;
        r.note("iommufd.attach.over_msi_mapping", ifd(other.attach(&lazy)));
        drop(other);
        drop(m);
        drop(lazy);
    }
    {
        let step = "two devices";
        let d2 = bind(env, &fd, 1)?;
        let first = dev.attach(&ioas).at(step)?;
        let pt = d2.attach(&ioas).at(step)?;
        r.note("iommufd.two.same_hwpt", pt == first);
        d2.set_bus_master(true).at(step)?;
        buf.write(0, &data).at(step)?;
        let m = ioas.map(&buf, 0x70_0000, DmaAccess::ReadWrite).at(step)?;
        edu_dma(env, &d2, m.iova(), EDU_BUF, 256, 0)?;
        edu_dma(env, &d2, EDU_BUF, m.iova() + 1024, 256, 2)?;
        let mut back = vec![0u8; 256];
        buf.read(1024, &mut back).at(step)?;
        r.note("iommufd.two.round_trip", back == data);
        let ioas2 = fd.alloc_ioas().at(step)?;
        let moved = d2.attach(&ioas2).at(step)?;
        r.note("iommufd.two.moved_new_hwpt", moved != first);
        buf.fill(0x33);
        edu_dma(env, &d2, EDU_BUF, m.iova(), 256, 2)?;
        let mut after = vec![0u8; 256];
        buf.read(0, &mut after).at(step)?;
        r.note(
            "iommufd.two.other_ioas_untouched",
            after.iter().all(|&b| b == 0x33),
        );
        d2.set_bus_master(false).at(step)?;
        dev.detach().at(step)?;
        buf.fill(0x44);
        edu_dma(env, &dev, EDU_BUF, m.iova(), 256, 2)?;
        buf.read(0, &mut after).at(step)?;
        r.note(
            "iommufd.detached_untouched",
            after.iter().all(|&b| b == 0x44),
        );
        drop(m);
        drop(d2);
        drop(ioas2);
    }
    {
        let step = "huge pages";
        dev.attach(&ioas).at(step)?;
        let m = ioas.map(&buf, 0x20_0000, DmaAccess::ReadWrite).at(step)?;
        r.note(
            "iommufd.huge_pages_off_mapped",
            ifd(ioas.set_huge_pages(false)),
        );
        drop(m);
        r.note(
            "iommufd.huge_pages_off_empty",
            ifd(ioas.set_huge_pages(false)),
        );
        r.note("iommufd.huge_pages_on", ifd(ioas.set_huge_pages(true)));
    }
    let step = "unmap all";
    // SAFETY: `keep` outlives the mapping: unmap_all below removes it (and
    // if that fails, dropping the IOAS before `keep` does).
    let keep = DmaBuffer::new(8192).at(step)?;
    unsafe {
        ioas.map_raw(
            keep.addr() as *mut u8,
            8192,
            Some(0x60_0000),
            DmaAccess::ReadWrite,
        )
    }
    .at(step)?;
    r.note("iommufd.unmap_all", super::unmapped(ioas.unmap_all()));
    r.note("iommufd.unmap_all.empty", super::unmapped(ioas.unmap_all()));
    dev.set_bus_master(false).at(step)?;
    drop(dev);
    drop(ioas);
    drop(keep);
    Ok(())
}

/// MSI and INTx on a bound cdev, and reset.
pub fn iommufd_interrupts(env: &dyn Env, r: &mut Record) -> Result<(), Failure> {
    let fd = env.open_iommufd().at("open /dev/iommu")?;
    let ioas = fd.alloc_ioas().at("alloc an IOAS")?;
    let dev = bind(env, &fd, 0)?;
    dev.attach(&ioas).at("attach")?;
    let step = "interrupts";
    let bar0 = dev.region(0).at(step)?;
    r.note(
        "iommufd.ident",
        format!("{:#x}", bar0.read_u32(0).at(step)?),
    );
    let (msi, intx) = (PciIrq::Msi as u32, PciIrq::Intx as u32);
    let e = eventfd();
    bar0.write_u32(0x64, u32::MAX).at(step)?;
    dev.set_bus_master(true).at(step)?;
    dev.set_irq_eventfd(msi, 0, e.as_fd()).at(step)?;
    bar0.write_u32(0x60, 0x10).at(step)?;
    r.note("iommufd.msi", fired(&e, env.timeout()));
    bar0.write_u32(0x64, 0x10).at(step)?;
    dev.trigger_irq(msi, 0, 1).at(step)?;
    r.note("iommufd.msi_loopback", fired(&e, env.timeout()));
    dev.disable_irq(msi).at(step)?;
    dev.set_irq_eventfd(intx, 0, e.as_fd()).at(step)?;
    bar0.write_u32(0x60, 0x1).at(step)?;
    r.note("iommufd.intx", fired(&e, env.timeout()));
    bar0.write_u32(0x64, u32::MAX).at(step)?;
    dev.unmask_irq(intx, 0, 1).at(step)?;
    dev.disable_irq(intx).at(step)?;
    dev.set_bus_master(false).at(step)?;
    r.note("iommufd.reset", super::dev(dev.reset()));
    Ok(())
}

/// Allowed IOVAs, copies between IOASes, and hot reset through the cdev.
pub fn iommufd_copy_allow_reset(env: &dyn Env, r: &mut Record) -> Result<(), Failure> {
    use typed_vfio::IovaRange;
    let range = |start, end| IovaRange { start, end };
    let fd = env.open_iommufd().at("open /dev/iommu")?;
    let src = fd.alloc_ioas().at("alloc an IOAS")?;
    let dst = fd.alloc_ioas().at("alloc a second IOAS")?;
    let dev = bind(env, &fd, 0)?;
    let buf = DmaBuffer::new(4096).at("buffer")?;
    let data: Vec<u8> = (0..256u32).map(|i| (i * 5 + 1) as u8).collect();
    buf.write(0, &data).at("buffer")?;
    {
        let step = "allowed IOVAs";
        src.allow_iovas(&[range(0x800_0000, 0x80f_ffff)]).at(step)?;
        let m = src.map_anywhere(&buf, DmaAccess::ReadWrite).at(step)?;
        r.note("iommufd.allow.map_anywhere", format!("{:#x}", m.iova()));
        drop(m);
        r.note(
            "iommufd.allow.one_byte",
            ifd(src.allow_iovas(&[range(0x900_0000, 0x900_0000)])),
        );
        r.note(
            "iommufd.allow.overlapping",
            ifd(src.allow_iovas(&[range(0x800_0000, 0x80f_ffff), range(0x808_0000, 0x8ff_ffff)])),
        );
        // Allowed where the device reserves its MSI window: the attach fails.
        // (The 16 MiB around it: VT-d 0xfe000000..=0xfeffffff.)
        let around_msi = env.msi_window() & !0xff_ffff;
        src.allow_iovas(&[range(around_msi, around_msi + 0xff_ffff)])
            .at(step)?;
        r.note("iommufd.allow.attach_over_allowed", ifd(dev.attach(&src)));
        src.allow_iovas(&[]).at(step)?;
        dev.attach(&src).at(step)?;
        r.note(
            "iommufd.allow.over_reserved",
            ifd(src.allow_iovas(&[range(around_msi, around_msi + 0xff_ffff)])),
        );
        // A bound past 4 GiB: a 32-bit program refuses it itself (the
        // kernel's unsigned long may be as narrow as its own), so only a
        // 64-bit one observes the kernel (see `WIDE_ONLY`).
        if cfg!(target_pointer_width = "64") {
            // Just past the attached IOMMU's last usable IOVA (VT-d here:
            // 0x80_0000_0000, 39 bits; QEMU's SMMUv3: 1 << 48).
            let past = past_ranges(&src.iova_ranges().at(step)?.ranges, 0x80_0000_0000);
            r.note(
                "iommufd.allow.past_aperture",
                ifd(src.allow_iovas(&[range(past, past.saturating_add(0xffff))])),
            );
        }
        src.allow_iovas(&[]).at(step)?;
    }
    {
        let step = "copies";
        dev.set_bus_master(true).at(step)?;
        let m = src.map(&buf, 0x20_0000, DmaAccess::ReadWrite).at(step)?;
        dev.attach(&dst).at(step)?;
        let copy = dst.copy(&m, 0x30_0000, DmaAccess::ReadWrite).at(step)?;
        edu_dma(env, &dev, 0x30_0000, EDU_BUF, 256, 0)?;
        edu_dma(env, &dev, EDU_BUF, 0x30_0000 + 1024, 256, 2)?;
        let mut back = vec![0u8; 256];
        buf.read(1024, &mut back).at(step)?;
        r.note("iommufd.copy.dma", back == data);
        r.note(
            "iommufd.copy.over_copy",
            dma(dst.copy(&m, 0x30_0000, DmaAccess::ReadWrite)),
        );
        r.note(
            "iommufd.copy.msi_window",
            dma(dst.copy(&m, env.msi_window(), DmaAccess::ReadWrite)),
        );
        let anywhere = dst.copy_anywhere(&m, DmaAccess::DeviceReads).at(step)?;
        r.note("iommufd.copy.anywhere", format!("{:#x}", anywhere.iova()));
        let ro_buf = DmaBuffer::new(4096).at(step)?;
        let ro = src
            .map(&ro_buf, 0x50_0000, DmaAccess::DeviceReads)
            .at(step)?;
        r.note(
            "iommufd.copy.write_of_read_only",
            dma(dst.copy(&ro, 0x60_0000, DmaAccess::ReadWrite)),
        );
        r.note(
            "iommufd.copy.read_of_read_only",
            dma(dst.copy(&ro, 0x60_0000, DmaAccess::DeviceReads).map(drop)),
        );
        // The copy stays when the source goes.
        drop(ro);
        m.unmap().at(step)?;
        buf.fill(0x11);
        edu_dma(env, &dev, EDU_BUF, 0x30_0000, 256, 2)?;
        buf.read(0, &mut back).at(step)?;
        r.note("iommufd.copy.outlives_source", back == data);
        drop(anywhere);
        copy.unmap().at(step)?;
        buf.fill(0x22);
        edu_dma(env, &dev, EDU_BUF, 0x30_0000, 256, 2)?;
        buf.read(0, &mut back).at(step)?;
        r.note(
            "iommufd.copy.unmapped_blocks",
            back.iter().all(|&b| b == 0x22),
        );
        dev.set_bus_master(false).at(step)?;
    }
    {
        let step = "hot reset";
        let info = dev.hot_reset_info().at(step)?;
        let owners: Vec<String> = info
            .devices
            .iter()
            .map(|d| format!("{:?}", d.owner))
            .collect();
        r.note(
            "iommufd.hot_reset_info",
            format!("all owned {} [{}]", info.all_owned, owners.join(", ")),
        );
        r.note("iommufd.hot_reset", super::dev(dev.hot_reset()));
    }
    drop(dev);
    drop(dst);
    drop(src);
    Ok(())
}
