//! One scenario suite, written once, run on the real kernel (the guest rig,
//! `tests/vm_guest/`) and on the simulated kernel (`tests/sim_diff.rs`).
//! Each scenario records what it observes — values and errno names, never
//! addresses or group numbers, which differ between machines — as
//! `key = value` lines. The real kernel's record is committed
//! (`tests/scenarios/linux-6.12.txt`); the simulator's must equal it except
//! for the keys listed, with a reason, in [`DEVIATIONS`].

#![allow(dead_code)]

use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::eventfd::{EfdFlags, EventFd};
use typed_vfio::{
    Container, ContainerError, Device, DeviceError, DmaAccess, DmaBuffer, DmaError, DmaModel,
    Group, GroupError, IommuModel, NoIommu, PciIrq, Type1, Type1v2, Unset,
};

/// Keys where the simulator knowingly differs from Linux 6.12 + QEMU 7.2.
pub const DEVIATIONS: &[(&str, &str)] = &[(
    "device.region0.mmap",
    "a process cannot trap its own MMIO: the simulated BAR0 has no MMAP flag",
)];

/// The IOMMU model a configuration uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Type1,
    Type1v2,
    NoIommu,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Type1 => "type1",
            Kind::Type1v2 => "type1v2",
            Kind::NoIommu => "noiommu",
        }
    }
}

/// Where the scenarios get their VFIO objects.
pub trait Env {
    fn kind(&self) -> Kind;
    /// Two edu devices, each in its own group, behind its own root port.
    fn devices(&self) -> Vec<String>;
    fn open_container(&self) -> Result<Container<Unset>, ContainerError>;
    fn open_group_of(&self, address: &str) -> Result<Group, GroupError>;
    /// How long to wait before concluding that no interrupt comes.
    fn quiet(&self) -> Duration;
}

/// The observations of one run, in order.
#[derive(Default)]
pub struct Record(pub Vec<(String, String)>);

impl Record {
    fn note(&mut self, key: &str, value: impl ToString) {
        self.0.push((key.to_owned(), value.to_string()));
    }

    /// `config key = value` lines.
    pub fn lines(&self, config: &str) -> Vec<String> {
        self.0
            .iter()
            .map(|(k, v)| format!("{config} {k} = {v}"))
            .collect()
    }
}

fn errno_name(e: nix::errno::Errno) -> String {
    format!("{e:?}")
}

fn dev<T>(r: Result<T, DeviceError>) -> String {
    match r {
        Ok(_) => "ok".into(),
        Err(DeviceError::Ioctl { errno, .. } | DeviceError::IndexedIoctl { errno, .. }) => {
            errno_name(errno)
        }
        Err(e) => format!("typed: {}", variant(&format!("{e:?}"))),
    }
}

fn grp<T>(r: Result<T, GroupError>) -> String {
    match r {
        Ok(_) => "ok".into(),
        Err(
            GroupError::Ioctl { errno, .. }
            | GroupError::NoDevice { errno, .. }
            | GroupError::Open { errno, .. },
        ) => errno_name(errno),
        Err(e) => format!("typed: {}", variant(&format!("{e:?}"))),
    }
}

fn con<T>(r: Result<T, ContainerError>) -> String {
    match r {
        Ok(_) => "ok".into(),
        Err(ContainerError::Ioctl { errno, .. } | ContainerError::Open { errno, .. }) => {
            errno_name(errno)
        }
        Err(ContainerError::Unsupported { id, .. }) => format!("unsupported {id}"),
        Err(e) => format!("typed: {}", variant(&format!("{e:?}"))),
    }
}

fn dma<T>(r: Result<T, DmaError>) -> String {
    match r {
        Ok(_) => "ok".into(),
        Err(DmaError::Ioctl { errno, .. }) => errno_name(errno),
        Err(e) => format!("typed: {}", variant(&format!("{e:?}"))),
    }
}

fn unmapped(r: Result<u64, DmaError>) -> String {
    match r {
        Ok(n) => format!("{n:#x}"),
        Err(e) => dma::<()>(Err(e)),
    }
}

fn variant(debug: &str) -> &str {
    debug
        .split(|c: char| !c.is_alphanumeric() && c != '_')
        .next()
        .unwrap_or(debug)
}

fn eventfd() -> EventFd {
    EventFd::from_value_and_flags(0, EfdFlags::EFD_CLOEXEC | EfdFlags::EFD_NONBLOCK).unwrap()
}

/// The eventfd's counter once it fires within `wait`, or 0.
fn fired(e: &EventFd, wait: Duration) -> u64 {
    let mut fds = [PollFd::new(e.as_fd(), PollFlags::POLLIN)];
    let ms = u16::try_from(wait.as_millis()).unwrap_or(u16::MAX);
    match poll(&mut fds, PollTimeout::from(ms)) {
        Ok(1) => e.read().unwrap_or(0),
        _ => 0,
    }
}

const TIMEOUT: Duration = Duration::from_secs(5);
const EDU_BUF: u64 = 0x40000;

fn edu_dma(d: &Device, src: u64, dst: u64, count: u32, cmd: u32) {
    let bar0 = d.region(0).unwrap();
    bar0.write_u32(0x80, src as u32).unwrap();
    bar0.write_u32(0x88, dst as u32).unwrap();
    bar0.write_u32(0x90, count).unwrap();
    bar0.write_u32(0x98, 1 | cmd).unwrap();
    let t = Instant::now();
    while bar0.read_u32(0x98).unwrap() & 1 != 0 && t.elapsed() < TIMEOUT {
        std::thread::sleep(Duration::from_millis(5));
    }
}

macro_rules! by_model {
    ($env:expr, $f:ident ( $($arg:expr),* )) => {
        match $env.kind() {
            Kind::Type1 => $f::<Type1>($($arg),*),
            Kind::Type1v2 => $f::<Type1v2>($($arg),*),
            Kind::NoIommu => $f::<NoIommu>($($arg),*),
        }
    };
}

fn open_model<M: IommuModel>(env: &dyn Env, i: usize) -> (Container<M>, Device) {
    let address = &env.devices()[i];
    let c = env
        .open_container()
        .unwrap()
        .attach(env.open_group_of(address).unwrap())
        .unwrap()
        .set_iommu::<M>()
        .unwrap();
    let d = c.open_device(address).unwrap();
    (c, d)
}

/// Runs every scenario for `env`'s configuration.
pub fn run(env: &dyn Env) -> Record {
    let mut r = Record::default();
    containers_and_groups(env, &mut r);
    by_model!(env, device_basics(env, &mut r));
    by_model!(env, interrupts(env, &mut r));
    by_model!(env, resets_and_names(env, &mut r));
    match env.kind() {
        Kind::Type1 => dma_scenarios::<Type1>(env, &mut r),
        Kind::Type1v2 => dma_scenarios::<Type1v2>(env, &mut r),
        Kind::NoIommu => {}
    }
    r
}

fn containers_and_groups(env: &dyn Env, r: &mut Record) {
    let c = env.open_container().unwrap();
    r.note("container.type1", c.supports::<Type1>().unwrap());
    r.note("container.type1v2", c.supports::<Type1v2>().unwrap());
    r.note("container.noiommu", c.supports::<NoIommu>().unwrap());
    r.note(
        "container.unknown_extension",
        c.check_extension(0x7fff).unwrap(),
    );
    let address = env.devices()[0].clone();
    let g = env.open_group_of(&address).unwrap();
    let s = g.status().unwrap();
    r.note(
        "group.fresh",
        format!("viable {} set {}", s.viable, s.container_set),
    );
    r.note("group.second_open", grp(env.open_group_of(&address)));
    let c = c.attach(g).unwrap();
    let s = c.groups()[0].status().unwrap();
    r.note(
        "group.attached",
        format!("viable {} set {}", s.viable, s.container_set),
    );
    r.note(
        "container.attached.type1v2",
        c.supports::<Type1v2>().unwrap(),
    );
    let dup = c.groups()[0].as_fd().try_clone_to_owned().unwrap();
    let second = Group::from_fd(dup, c.groups()[0].id());
    let err = env.open_container().unwrap().attach(second).unwrap_err();
    r.note("group.in_another_container", grp::<()>(Err(err.error)));
    drop(err.group);
    let wrong = match env.kind() {
        Kind::NoIommu => c.set_iommu::<Type1v2>().map(drop),
        _ => c.set_iommu::<NoIommu>().map(drop),
    };
    let err = wrong.unwrap_err();
    r.note("container.wrong_model", con::<()>(Err(err.error)));
    let c = err.container;
    fn release<M: IommuModel>(
        c: Container<typed_vfio::Attached>,
    ) -> (Container<Unset>, Vec<Group>) {
        c.set_iommu::<M>()
            .unwrap()
            .release_groups()
            .map_err(|e| e.error)
            .unwrap()
    }
    let (unset, groups) = by_model!(env, release(c));
    let s = groups[0].status().unwrap();
    r.note(
        "group.released",
        format!("viable {} set {}", s.viable, s.container_set),
    );
    drop(unset);
    drop(groups);
}

fn device_basics<M: IommuModel>(env: &dyn Env, r: &mut Record) {
    let (_c, d) = open_model::<M>(env, 0);
    let i = d.info();
    r.note(
        "device.info",
        format!(
            "flags {:#x} regions {} irqs {}",
            i.flags, i.num_regions, i.num_irqs
        ),
    );
    for index in 0..=i.num_regions {
        let key = format!("device.region{index}");
        match d.region(index) {
            Ok(reg) => {
                let info = reg.info();
                r.note(
                    &key,
                    format!(
                        "size {:#x} read {} write {}",
                        info.size,
                        info.readable(),
                        info.writable()
                    ),
                );
                if info.size > 0 && index < 6 {
                    r.note(&format!("{key}.mmap"), info.mappable());
                }
            }
            Err(e) => r.note(&key, dev::<()>(Err(e))),
        }
    }
    for index in 0..=i.num_irqs {
        let v = match d.irq_info(index) {
            Ok(q) => format!("flags {:#x} count {}", q.flags, q.count),
            Err(e) => dev::<()>(Err(e)),
        };
        r.note(&format!("device.irq{index}"), v);
    }
    let cfg = d.pci_config().unwrap();
    r.note("config.ids", format!("{:#010x}", cfg.read_u32(0).unwrap()));
    r.note("config.size", cfg.info().size);
    d.set_bus_master(true).unwrap();
    r.note("config.master_on", d.pci_command().unwrap() & 4 != 0);
    d.set_bus_master(false).unwrap();
    r.note("config.master_off", d.pci_command().unwrap() & 4 != 0);
    let bar0 = d.region(0).unwrap();
    r.note("bar0.ident", format!("{:#x}", bar0.read_u32(0).unwrap()));
    bar0.write_u32(4, 0x1234_5678).unwrap();
    r.note("bar0.liveness", format!("{:#x}", bar0.read_u32(4).unwrap()));
    r.note(
        "bar0.read_u16_ident",
        format!("{:#x}", bar0.read_u16(0).unwrap()),
    );
    r.note(
        "bar0.read_u32_unused",
        format!("{:#x}", bar0.read_u32(0x40).unwrap()),
    );
    bar0.write_u32(0x20, 0).unwrap();
    bar0.write_u32(8, 10).unwrap();
    let t = Instant::now();
    while bar0.read_u32(0x20).unwrap() & 1 != 0 && t.elapsed() < TIMEOUT {
        std::thread::sleep(Duration::from_millis(1));
    }
    r.note("bar0.factorial10", bar0.read_u32(8).unwrap());
    r.note("bar0.read_past_end", dev(bar0.read_u32(1 << 20)));
}

fn interrupts<M: IommuModel>(env: &dyn Env, r: &mut Record) {
    let (_c, d) = open_model::<M>(env, 0);
    let bar0 = d.region(0).unwrap();
    let (msi, intx) = (PciIrq::Msi as u32, PciIrq::Intx as u32);
    let e = eventfd();
    let e2 = eventfd();
    let two = [Some(e.as_fd()), Some(e2.as_fd())];
    r.note("irq.msi_two_vectors", dev(d.set_irq_eventfds(msi, 0, &two)));
    r.note(
        "irq.msix_set",
        dev(d.set_irq_eventfd(PciIrq::Msix as u32, 0, e.as_fd())),
    );
    r.note(
        "irq.err_set",
        dev(d.set_irq_eventfd(PciIrq::Err as u32, 0, e.as_fd())),
    );
    r.note("irq.msi_disable_unset", dev(d.disable_irq(msi)));
    r.note("irq.intx_unmask_unset", dev(d.unmask_irq(intx, 0, 1)));
    r.note(
        "irq.req_loopback_unset",
        dev(d.trigger_irq(PciIrq::Req as u32, 0, 1)),
    );
    let (sock, _peer) = nix::unistd::pipe().unwrap();
    r.note(
        "irq.msi_not_an_eventfd",
        dev(d.set_irq_eventfd(msi, 0, sock.as_fd())),
    );
    // MSI.
    bar0.write_u32(0x64, u32::MAX).unwrap();
    d.set_irq_eventfd(msi, 0, e.as_fd()).unwrap();
    r.note("irq.msi_mask", dev(d.mask_irq(msi, 0, 1)));
    r.note(
        "irq.intx_while_msi",
        dev(d.set_irq_eventfd(intx, 0, e2.as_fd())),
    );
    bar0.write_u32(0x60, 0x8).unwrap();
    r.note("irq.msi_without_master", fired(&e, env.quiet()));
    bar0.write_u32(0x64, 0x8).unwrap();
    d.set_bus_master(true).unwrap();
    bar0.write_u32(0x60, 0x10).unwrap();
    r.note("irq.msi_with_master", fired(&e, TIMEOUT));
    r.note("irq.status", format!("{:#x}", bar0.read_u32(0x24).unwrap()));
    bar0.write_u32(0x64, 0x10).unwrap();
    for _ in 0..10 {
        d.trigger_irq(msi, 0, 1).unwrap();
    }
    r.note("irq.msi_loopback10", fired(&e, TIMEOUT));
    d.trigger_irq_bool(msi, 0, &[false]).unwrap();
    r.note("irq.msi_bool_false", fired(&e, env.quiet()));
    r.note("irq.msi_disable", dev(d.disable_irq(msi)));
    bar0.write_u32(0x60, 0x40).unwrap();
    r.note("irq.msi_after_disable", fired(&e, env.quiet()));
    bar0.write_u32(0x64, u32::MAX).unwrap();
    // INTx.
    d.set_irq_eventfd(intx, 0, e.as_fd()).unwrap();
    bar0.write_u32(0x60, 0x1).unwrap();
    r.note("intx.first", fired(&e, TIMEOUT));
    bar0.write_u32(0x64, 0x1).unwrap();
    bar0.write_u32(0x60, 0x2).unwrap();
    r.note("intx.while_automasked", fired(&e, env.quiet()));
    d.unmask_irq(intx, 0, 1).unwrap();
    r.note("intx.pending_at_unmask", fired(&e, TIMEOUT));
    bar0.write_u32(0x64, 0x2).unwrap();
    d.unmask_irq(intx, 0, 1).unwrap();
    r.note("intx.nothing_raised", fired(&e, env.quiet()));
    bar0.write_u32(0x60, 0x4).unwrap();
    r.note("intx.third", fired(&e, TIMEOUT));
    bar0.write_u32(0x64, 0x4).unwrap();
    d.unmask_irq(intx, 0, 1).unwrap();
    d.mask_irq(intx, 0, 1).unwrap();
    bar0.write_u32(0x60, 0x1).unwrap();
    r.note("intx.user_masked", fired(&e, env.quiet()));
    d.unmask_irq(intx, 0, 1).unwrap();
    r.note("intx.after_user_unmask", fired(&e, TIMEOUT));
    d.trigger_irq(intx, 0, 1).unwrap();
    r.note("intx.loopback", fired(&e, TIMEOUT));
    bar0.write_u32(0x64, u32::MAX).unwrap();
    r.note("intx.disable", dev(d.disable_irq(intx)));
    d.set_bus_master(false).unwrap();
}

fn resets_and_names<M: IommuModel>(env: &dyn Env, r: &mut Record) {
    let (c, d) = open_model::<M>(env, 0);
    r.note("reset", dev(d.reset()));
    let bar0 = d.region(0).unwrap();
    r.note(
        "reset.ident_after",
        format!("{:#x}", bar0.read_u32(0).unwrap()),
    );
    let info = d.pci_hot_reset_info().unwrap();
    let own = c.groups()[0].id().number;
    r.note(
        "hot_reset.info",
        format!(
            "count {} own_group {}",
            info.len(),
            info.iter().all(|x| x.group_id == own)
        ),
    );
    r.note("hot_reset.own_group", dev(d.pci_hot_reset(c.groups())));
    r.note("hot_reset.no_group", dev(d.pci_hot_reset(&[])));
    let other = env.open_group_of(&env.devices()[1]).unwrap();
    r.note("hot_reset.other_group", dev(d.pci_hot_reset([&other])));
    let lp = d.probe_feature(3).unwrap();
    r.note(
        "feature.low_power",
        format!("get {} set {}", lp.get, lp.set),
    );
    let mig = d.probe_feature(1).unwrap();
    r.note(
        "feature.migration",
        format!("get {} set {}", mig.get, mig.set),
    );
    r.note(
        "feature.info_caps",
        format!("{:?}", d.info_capability_ids().unwrap()),
    );
    r.note("name.unknown", grp(c.open_device("0000:42:00.0")));
    let token = format!(
        "{} vf_token=00000000-0000-0000-0000-000000000000",
        env.devices()[0]
    );
    r.note("name.vf_token", grp(c.open_device(&token)));
    r.note("name.second_fd", grp(c.open_device(&env.devices()[0])));
    let err = c.release_groups().unwrap_err();
    r.note("release.with_open_device", grp::<()>(Err(err.error)));
    drop(d);
    r.note(
        "release.after_close",
        grp(err.container.release_groups().map_err(|e| e.error)),
    );
}

fn dma_scenarios<M: DmaModel>(env: &dyn Env, r: &mut Record) {
    let (c, d) = open_model::<M>(env, 0);
    let info = c.iommu_info().unwrap();
    r.note("iommu.page_sizes", format!("{:#x}", info.page_sizes));
    let ranges: Vec<String> = info
        .iova_ranges
        .iter()
        .map(|x| format!("{:#x}..={:#x}", x.start, x.end))
        .collect();
    r.note("iommu.ranges", ranges.join(" "));
    r.note("iommu.dma_avail", format!("{:?}", info.dma_avail));
    r.note("iommu.migration", format!("{:x?}", info.migration));
    let buf = DmaBuffer::new(8192).unwrap();
    r.note(
        "map.unaligned",
        dma(c.map(&buf, 0x1000_0800, DmaAccess::ReadWrite)),
    );
    r.note(
        "map.msi_window",
        dma(c.map(&buf, 0xfee0_0000, DmaAccess::ReadWrite)),
    );
    let raw = |vaddr: usize, size: u64, iova: u64| {
        // SAFETY: each of these is refused by the kernel (recorded and
        // compared), so the device never gains access to the memory.
        let r = unsafe { c.map_raw(vaddr as *mut u8, size, iova, DmaAccess::ReadWrite) };
        if r.is_ok() {
            let _ = c.unmap_raw(iova, size);
        }
        dma(r)
    };
    r.note("raw.msi_window", raw(buf.addr(), 8192, 0xfee0_0000));
    r.note("raw.past_ranges", raw(buf.addr(), 4096, 0x80_0000_0000));
    r.note("raw.iova_unaligned", raw(buf.addr(), 4096, 0x10_0100));
    r.note("raw.size_unaligned", raw(buf.addr(), 0x800, 0x10_0000));
    r.note(
        "raw.vaddr_unaligned",
        raw(buf.addr() + 0x10, 4096, 0x10_0000),
    );
    r.note("raw.size_zero", raw(buf.addr(), 0, 0x10_0000));
    let gone = DmaBuffer::new(4096).unwrap().addr();
    r.note("raw.unmapped_vaddr", raw(gone, 4096, 0x10_0000));
    {
        let m = c.map(&buf, 0x50_0000, DmaAccess::ReadWrite).unwrap();
        let other = DmaBuffer::new(4096).unwrap();
        r.note(
            "map.overlap",
            dma(c.map(&other, 0x50_1000, DmaAccess::ReadWrite)),
        );
        r.note(
            "map.avail_with_one",
            format!("{:?}", c.iommu_info().unwrap().dma_avail),
        );
        // Bisecting unmaps: v2 refuses, v1 unmaps the whole mapping when the
        // range covers its first IOVA, nothing when it starts inside.
        r.note(
            "unmap.second_page",
            unmapped(c.unmap_raw(0x50_1000, 0x1000)),
        );
        r.note("unmap.first_page", unmapped(c.unmap_raw(0x50_0000, 0x1000)));
        r.note("unmap.rest", unmapped(c.unmap_raw(0x50_0000, 0x2000)));
        drop(m); // nothing left to unmap: the kernel answers 0 bytes
    }
    // A DMA round trip, then a DMA to the unmapped IOVA.
    d.set_bus_master(true).unwrap();
    let data: Vec<u8> = (0..256u32).map(|i| (i * 7 + 1) as u8).collect();
    let b2 = DmaBuffer::new(4096).unwrap();
    b2.write(0, &data).unwrap();
    let iova = {
        let m = c.map(&b2, 0x20_0000, DmaAccess::ReadWrite).unwrap();
        edu_dma(&d, m.iova(), EDU_BUF, 256, 0);
        edu_dma(&d, EDU_BUF, m.iova() + 2048, 256, 2);
        let mut back = vec![0u8; 256];
        b2.read(2048, &mut back).unwrap();
        r.note("dma.round_trip", back == data);
        m.iova()
    };
    {
        let m = c.map(&b2, 0x20_0000, DmaAccess::ReadWrite).unwrap();
        let e = eventfd();
        d.set_irq_eventfd(PciIrq::Msi as u32, 0, e.as_fd()).unwrap();
        edu_dma(&d, m.iova(), EDU_BUF, 64, 4);
        r.note("dma.completion_msi", fired(&e, TIMEOUT));
        let bar0 = d.region(0).unwrap();
        r.note(
            "dma.completion_status",
            format!("{:#x}", bar0.read_u32(0x24).unwrap()),
        );
        bar0.write_u32(0x64, u32::MAX).unwrap();
        d.disable_irq(PciIrq::Msi as u32).unwrap();
        d.set_bus_master(false).unwrap();
        b2.fill(0x5a);
        edu_dma(&d, EDU_BUF, m.iova(), 256, 2);
        let mut after = vec![0u8; 4096];
        b2.read(0, &mut after).unwrap();
        r.note(
            "dma.without_master_untouched",
            after.iter().all(|&b| b == 0x5a),
        );
        d.set_bus_master(true).unwrap();
        drop(m);
    }
    b2.fill(0xaa);
    edu_dma(&d, EDU_BUF, iova, 256, 2);
    let mut after = vec![0u8; 4096];
    b2.read(0, &mut after).unwrap();
    r.note(
        "dma.after_unmap_untouched",
        after.iter().all(|&b| b == 0xaa),
    );
    d.set_bus_master(false).unwrap();
    let mut c = c;
    drop(d);
    // A second group joins the container that has its model and mappings;
    // its device reaches the container's mappings too.
    c.attach_more(env.open_group_of(&env.devices()[1]).unwrap())
        .map_err(|(_, e)| e)
        .unwrap();
    {
        let d2 = c.open_device(&env.devices()[1]).unwrap();
        d2.set_bus_master(true).unwrap();
        b2.write(0, &data).unwrap();
        let m = c.map(&b2, 0x70_0000, DmaAccess::ReadWrite).unwrap();
        edu_dma(&d2, m.iova(), EDU_BUF, 256, 0);
        edu_dma(&d2, EDU_BUF, m.iova() + 1024, 256, 2);
        let mut back = vec![0u8; 256];
        b2.read(1024, &mut back).unwrap();
        r.note("dma.second_group_round_trip", back == data);
        d2.set_bus_master(false).unwrap();
    }
    let a = DmaBuffer::new(4096).unwrap();
    // SAFETY: unmap_all below removes the mapping before `a` is dropped.
    unsafe { c.map_raw(a.addr() as *mut u8, 4096, 0x60_0000, DmaAccess::ReadWrite) }.unwrap();
    r.note("unmap_all", unmapped(c.unmap_all()));
    r.note(
        "unmap_all.avail",
        format!("{:?}", c.iommu_info().unwrap().dma_avail),
    );
}

/// Compares a simulator record with the real kernel's; returns the
/// differences not listed in [`DEVIATIONS`].
pub fn compare(config: &str, real: &[String], sim: &[String]) -> Vec<String> {
    let parse = |lines: &[String]| -> Vec<(String, String)> {
        lines
            .iter()
            .filter_map(|l| l.strip_prefix(config)?.strip_prefix(' '))
            .filter_map(|l| {
                let (k, v) = l.split_once(" = ")?;
                Some((k.to_owned(), v.to_owned()))
            })
            .collect()
    };
    let (real, sim) = (parse(real), parse(sim));
    let mut out = Vec::new();
    for (k, v) in &real {
        let allowed = DEVIATIONS.iter().any(|(d, _)| d == k);
        match sim.iter().find(|(sk, _)| sk == k) {
            Some((_, sv)) if sv == v => {}
            Some((_, sv)) if !allowed => out.push(format!("{config} {k}: real {v}, sim {sv}")),
            None if !allowed => out.push(format!("{config} {k}: real {v}, sim has none")),
            _ => {}
        }
    }
    for (k, v) in &sim {
        if !real.iter().any(|(rk, _)| rk == k) {
            out.push(format!("{config} {k}: sim {v}, real has none"));
        }
    }
    out
}
