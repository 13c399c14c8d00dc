//! `lsvfio`: what a user debugging a VFIO setup wants to see.
//!
//! ```text
//! cargo run --example lsvfio [-- [--sim] [PCI_ADDRESS]]
//! ```
//!
//! Lists the IOMMU groups and their devices (driver, vendor and device id),
//! each group's viability, and the IOMMU info a container reports for it
//! (page sizes, usable IOVA ranges, how many mappings it may still make).
//! With a device's PCI address it also shows that device: its flags, its
//! regions (size, offset, access, capabilities and sparse mmap areas), its
//! IRQ indexes and the device features the kernel offers.
//!
//! On a real machine it reads `/sys/kernel/iommu_groups` and opens
//! `/dev/vfio/*`; `--sim` runs the same code on the simulated kernel (two
//! groups with an edu device each). Without VFIO, or without permission to
//! open its nodes, it says so and exits with status 1. Needs the `sim`
//! feature only for `--sim`'s simulator (this repository's examples have it).

use std::path::Path;
use std::process::ExitCode;

use typed_vfio::sim::Simulator;
use typed_vfio::{
    CONTAINER_PATH, Container, Device, Errno, Group, GroupError, GroupId, IommuInfo, NoIommu,
    Type1, Type1v2, Unset, sys,
};

/// Where the groups come from: the running kernel or a simulator.
enum Machine {
    Host,
    Sim(Simulator),
}

type Error = Box<dyn std::error::Error>;

impl Machine {
    fn groups(&self) -> Result<Vec<(GroupId, Vec<String>)>, Error> {
        match self {
            Machine::Sim(sim) => Ok(sim.groups()),
            Machine::Host => host_groups(),
        }
    }

    fn open_group(&self, id: GroupId) -> Result<Group, GroupError> {
        match self {
            Machine::Sim(sim) => sim.open_group_id(id),
            Machine::Host => Group::open_id(id),
        }
    }

    fn open_container(&self) -> Result<Container<Unset>, Error> {
        Ok(match self {
            Machine::Sim(sim) => sim.open_container()?,
            Machine::Host => Container::open()?,
        })
    }

    /// The driver a device is bound to (sysfs `driver` link).
    fn driver(&self, address: &str) -> String {
        match self {
            Machine::Sim(_) => "vfio-pci (simulated)".into(),
            Machine::Host => std::fs::read_link(format!("/sys/bus/pci/devices/{address}/driver"))
                .ok()
                .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
                .unwrap_or_else(|| "none".into()),
        }
    }

    /// `[vendor:device]` from sysfs (host) or config space (simulator).
    fn ids(&self, address: &str) -> String {
        let read = |f: &str| {
            std::fs::read_to_string(format!("/sys/bus/pci/devices/{address}/{f}"))
                .map(|s| s.trim().trim_start_matches("0x").to_string())
                .unwrap_or_else(|_| "????".into())
        };
        match self {
            Machine::Host => format!(" [{}:{}]", read("vendor"), read("device")),
            Machine::Sim(_) => String::new(),
        }
    }
}

/// `/sys/kernel/iommu_groups/N/devices/*`, sorted by group number.
fn host_groups() -> Result<Vec<(GroupId, Vec<String>)>, Error> {
    let root = Path::new("/sys/kernel/iommu_groups");
    let entries = std::fs::read_dir(root).map_err(|e| {
        format!(
            "{}: {e} (no IOMMU groups: is an IOMMU enabled, or \
             vfio.enable_unsafe_noiommu_mode=1 set?)",
            root.display()
        )
    })?;
    let mut groups = Vec::new();
    for entry in entries {
        let entry = entry?;
        let Some(number) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let mut devices: Vec<String> = std::fs::read_dir(entry.path().join("devices"))?
            .filter_map(|d| d.ok())
            .map(|d| d.file_name().to_string_lossy().into_owned())
            .collect();
        devices.sort();
        let plain = GroupId::new(number);
        let id = if Path::new(&format!("/dev/vfio/noiommu-{number}")).exists()
            && !plain.path().exists()
        {
            GroupId::noiommu(number)
        } else {
            plain
        };
        groups.push((id, devices));
    }
    groups.sort_by_key(|(id, _)| id.number);
    Ok(groups)
}

fn main() -> ExitCode {
    let mut sim = false;
    let mut device = None;
    for arg in std::env::args().skip(1) {
        match arg.as_str() {
            "--sim" => sim = true,
            "-h" | "--help" => {
                println!("usage: lsvfio [--sim] [PCI_ADDRESS]");
                return ExitCode::SUCCESS;
            }
            a if a.starts_with('-') => {
                eprintln!("lsvfio: unknown option {a} (usage: lsvfio [--sim] [PCI_ADDRESS])");
                return ExitCode::from(2);
            }
            a => device = Some(a.to_string()),
        }
    }
    let machine = if sim {
        Machine::Sim(Simulator::new())
    } else {
        Machine::Host
    };
    match run(&machine, device.as_deref()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("lsvfio: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(machine: &Machine, chosen: Option<&str>) -> Result<(), Error> {
    if matches!(machine, Machine::Host) && !Path::new(CONTAINER_PATH).exists() {
        return Err(format!(
            "{CONTAINER_PATH} does not exist: no VFIO on this machine (modprobe vfio-pci, \
             and bind a device to it)"
        )
        .into());
    }
    let groups = machine.groups()?;
    if groups.is_empty() {
        println!("no IOMMU groups");
    }
    let mut chosen_group = None;
    for (id, devices) in &groups {
        print!("group {} ({})", id.number, id.path().display());
        if id.noiommu {
            print!(" no-IOMMU");
        }
        println!();
        for d in devices {
            println!(
                "  device {d}{} driver {}",
                machine.ids(d),
                machine.driver(d)
            );
            if Some(d.as_str()) == chosen {
                chosen_group = Some(*id);
            }
        }
        if matches!(machine, Machine::Host) && !id.path().exists() {
            println!(
                "  no VFIO node {}: its devices are not bound to vfio-pci",
                id.path().display()
            );
            continue;
        }
        match machine.open_group(*id) {
            Ok(group) => {
                let status = group.status()?;
                println!(
                    "  viable: {}{}",
                    if status.viable {
                        "yes"
                    } else {
                        "no (a device of the group is bound to a non-VFIO driver)"
                    },
                    if status.container_set {
                        ", in a container"
                    } else {
                        ""
                    }
                );
                if status.viable {
                    match iommu_info(machine, group) {
                        Ok((model, info)) => print_iommu(model, &info),
                        Err(e) => println!("  container: {e}"),
                    }
                }
            }
            Err(e) => println!("  cannot open: {}", explain_group_error(&e)),
        }
    }
    if let Some(address) = chosen {
        let Some(id) = chosen_group else {
            return Err(format!("{address}: no such device in any IOMMU group").into());
        };
        let group = machine
            .open_group(id)
            .map_err(|e| format!("group {}: {}", id.number, explain_group_error(&e)))?;
        let container = machine
            .open_container()?
            .attach(group)
            .map_err(|e| e.error)?;
        if id.noiommu {
            let c = container.set_iommu::<NoIommu>()?;
            show_device(machine, &c.open_device(address)?, address)?;
        } else {
            let c = container.set_iommu::<Type1v2>().map_err(|e| e.error)?;
            show_device(machine, &c.open_device(address)?, address)?;
        }
    }
    Ok(())
}

fn explain_group_error(e: &GroupError) -> String {
    let errno = match e {
        GroupError::Open { errno, .. } => Some(*errno),
        _ => None,
    };
    match errno {
        Some(Errno::EACCES | Errno::EPERM) => {
            format!("{e} (permission denied: run as root, or give your user the group node)")
        }
        Some(Errno::EBUSY) => format!("{e} (busy: another process has the group open)"),
        Some(Errno::ENOENT) => format!("{e} (no node: is the group's device bound to vfio-pci?)"),
        _ => e.to_string(),
    }
}

/// Attaches the group to a fresh container with the best IOMMU model it
/// offers and reads the IOMMU info (none for no-IOMMU).
fn iommu_info(machine: &Machine, group: Group) -> Result<(&'static str, Option<IommuInfo>), Error> {
    let noiommu = group.id().noiommu;
    let attached = machine
        .open_container()?
        .attach(group)
        .map_err(|e| e.error)?;
    if noiommu {
        attached.set_iommu::<NoIommu>()?;
        return Ok(("no-IOMMU", None));
    }
    if attached.supports::<Type1v2>()? {
        let c = attached.set_iommu::<Type1v2>()?;
        return Ok(("type1v2", Some(c.iommu_info()?)));
    }
    let c = attached.set_iommu::<Type1>()?;
    Ok(("type1", Some(c.iommu_info()?)))
}

fn print_iommu(model: &str, info: &Option<IommuInfo>) {
    println!("  container IOMMU: {model}");
    let Some(info) = info else {
        println!("    no IOMMU: DMA goes to physical addresses, unprotected");
        return;
    };
    let sizes: Vec<String> = (0..64)
        .filter(|b| info.page_sizes & (1u64 << b) != 0)
        .map(|b| human(1u64 << b))
        .collect();
    println!(
        "    page sizes: {}",
        if sizes.len() > 6 {
            format!(
                "{} .. {} ({} sizes)",
                sizes[0],
                sizes[sizes.len() - 1],
                sizes.len()
            )
        } else {
            sizes.join(" ")
        }
    );
    for r in &info.iova_ranges {
        println!("    IOVA range {:#x}..={:#x}", r.start, r.end);
    }
    if let Some(n) = info.dma_avail {
        println!("    mappings available: {n}");
    }
    if let Some((flags, pgsizes, max)) = info.migration {
        println!(
            "    dirty tracking: flags {flags:#x}, page sizes {pgsizes:#x}, max bitmap {max} bytes"
        );
    }
}

fn human(n: u64) -> String {
    match n {
        n if n >= 1 << 30 && n % (1 << 30) == 0 => format!("{}G", n >> 30),
        n if n >= 1 << 20 && n % (1 << 20) == 0 => format!("{}M", n >> 20),
        n if n >= 1 << 10 && n % (1 << 10) == 0 => format!("{}K", n >> 10),
        n => n.to_string(),
    }
}

const REGION_NAMES: [&str; 9] = [
    "BAR0", "BAR1", "BAR2", "BAR3", "BAR4", "BAR5", "ROM", "config", "VGA",
];
const IRQ_NAMES: [&str; 5] = ["INTx", "MSI", "MSI-X", "ERR", "REQ"];
const FEATURES: [(u32, &str); 9] = [
    (sys::VFIO_DEVICE_FEATURE_PCI_VF_TOKEN, "PCI_VF_TOKEN"),
    (sys::VFIO_DEVICE_FEATURE_MIGRATION, "MIGRATION"),
    (
        sys::VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE,
        "MIG_DEVICE_STATE",
    ),
    (sys::VFIO_DEVICE_FEATURE_LOW_POWER_ENTRY, "LOW_POWER_ENTRY"),
    (sys::VFIO_DEVICE_FEATURE_LOW_POWER_EXIT, "LOW_POWER_EXIT"),
    (
        sys::VFIO_DEVICE_FEATURE_DMA_LOGGING_START,
        "DMA_LOGGING_START",
    ),
    (
        sys::VFIO_DEVICE_FEATURE_DMA_LOGGING_REPORT,
        "DMA_LOGGING_REPORT",
    ),
    (sys::VFIO_DEVICE_FEATURE_MIG_DATA_SIZE, "MIG_DATA_SIZE"),
    (sys::VFIO_DEVICE_FEATURE_BUS_MASTER, "BUS_MASTER"),
];

fn show_device(machine: &Machine, device: &Device, address: &str) -> Result<(), Error> {
    let info = device.info();
    println!("device {address}{}", machine.ids(address));
    if info.is_pci() {
        let config = device.pci_config()?;
        println!(
            "  config space: vendor {:04x} device {:04x}, command {:#06x}",
            config.read_u16(0)?,
            config.read_u16(2)?,
            device.pci_command()?
        );
    }
    let mut kinds = Vec::new();
    if info.is_pci() {
        kinds.push("PCI");
    }
    if info.is_platform() {
        kinds.push("platform");
    }
    if info.can_reset() {
        kinds.push("reset");
    }
    println!(
        "  flags {:#x} ({}), {} regions, {} IRQ indexes",
        info.flags,
        kinds.join(" "),
        info.num_regions,
        info.num_irqs
    );
    let caps = device.info_capability_ids()?;
    if !caps.is_empty() {
        println!("  info capabilities: {caps:?}");
    }
    for index in 0..info.num_regions {
        let region = match device.region(index) {
            Ok(r) => r,
            Err(e) => {
                println!("  region {index}: not offered ({e})");
                continue;
            }
        };
        let r = region.info();
        let name = REGION_NAMES
            .get(index as usize)
            .copied()
            .unwrap_or("device-specific");
        if r.size == 0 {
            println!("  region {index} {name}: absent");
            continue;
        }
        let mut access = String::new();
        access.push(if r.readable() { 'r' } else { '-' });
        access.push(if r.writable() { 'w' } else { '-' });
        access.push(if r.mappable() { 'm' } else { '-' });
        print!(
            "  region {index} {name}: size {:#x} ({}), offset {:#x}, {access}",
            r.size,
            human(r.size),
            r.offset
        );
        if let Some((ty, sub)) = r.region_type {
            print!(", type {ty}:{sub}");
        }
        if r.msix_mappable {
            print!(", MSI-X table mappable");
        }
        println!();
        if let Some(areas) = &r.sparse {
            for a in areas {
                println!("    sparse mmap area {:#x}+{:#x}", a.offset, a.size);
            }
        }
    }
    for index in 0..info.num_irqs {
        match device.irq_info(index) {
            Ok(irq) => {
                let name = IRQ_NAMES
                    .get(index as usize)
                    .copied()
                    .unwrap_or("device-specific");
                let mut flags = Vec::new();
                for (set, f) in [
                    (irq.eventfd(), "eventfd"),
                    (irq.maskable(), "maskable"),
                    (irq.automasked(), "automasked"),
                    (irq.noresize(), "noresize"),
                ] {
                    if set {
                        flags.push(f);
                    }
                }
                println!(
                    "  irq {index} {name}: {} vector(s) {}",
                    irq.count,
                    flags.join(" ")
                );
            }
            Err(e) => println!("  irq {index}: not offered ({e})"),
        }
    }
    let mut offered = Vec::new();
    for (feature, name) in FEATURES {
        let support = device.probe_feature(feature as u16)?;
        if support.get || support.set {
            let how = match (support.get, support.set) {
                (true, true) => "get/set",
                (true, false) => "get",
                _ => "set",
            };
            offered.push(format!("{name} ({how})"));
        }
    }
    println!(
        "  device features: {}",
        if offered.is_empty() {
            "none".to_string()
        } else {
            offered.join(", ")
        }
    );
    Ok(())
}
