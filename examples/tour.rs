//! A narrated tour of VFIO through `typed_vfio`.
//!
//!     cargo run --example tour                 # on the simulated kernel
//!     cargo run --example tour -- 0000:01:00.0 # on a real edu device bound to vfio-pci
//!
//! Both runs take the same steps through the same code: only where the
//! container and the group come from differs. The second part takes the
//! kernel's current interface, iommufd and the device cdev, through the same
//! device (on a real kernel it needs `/dev/iommu` and the device's cdev:
//! `CONFIG_IOMMUFD` and `CONFIG_VFIO_DEVICE_CDEV`; without them it says so).

use std::error::Error;
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::eventfd::{EfdFlags, EventFd};
use typed_vfio::iommufd::{CdevDevice, Iommufd, IommufdError};
use typed_vfio::sim::Simulator;
use typed_vfio::{
    Container, ContainerError, Device, DmaAccess, DmaBuffer, Group, GroupError, PciIrq, Type1,
    Type1v2, Unset,
};

/// The PAMU (type2) walkthrough, shown on the simulated kernel only.
#[path = "type2_msi.rs"]
mod type2_msi;

/// Where the VFIO objects come from.
enum Kernel {
    /// `/dev/vfio` of the running kernel.
    Host,
    /// An in-process simulated kernel.
    Sim(Simulator),
}

impl Kernel {
    fn open_container(&self) -> Result<Container<Unset>, ContainerError> {
        match self {
            Kernel::Host => Container::open(),
            Kernel::Sim(sim) => sim.open_container(),
        }
    }

    fn open_group_of(&self, address: &str) -> Result<Group, GroupError> {
        match self {
            Kernel::Host => Group::for_pci_device(address),
            Kernel::Sim(sim) => sim.open_group_of(address),
        }
    }

    fn open_iommufd(&self) -> Result<Iommufd, IommufdError> {
        match self {
            Kernel::Host => Iommufd::open(),
            Kernel::Sim(sim) => sim.open_iommufd(),
        }
    }

    fn open_cdev(&self, address: &str) -> Result<CdevDevice, IommufdError> {
        match self {
            Kernel::Host => CdevDevice::open_pci(address),
            Kernel::Sim(sim) => sim.open_cdev(address),
        }
    }
}

// QEMU's edu device, BAR0 (docs/specs/edu.rst).
const IDENT: u64 = 0x00;
const LIVENESS: u64 = 0x04;
const FACTORIAL: u64 = 0x08;
const IRQ_STATUS: u64 = 0x24;
const IRQ_RAISE: u64 = 0x60;
const IRQ_ACK: u64 = 0x64;
const DMA_SRC: u64 = 0x80;
const DMA_DST: u64 = 0x88;
const DMA_COUNT: u64 = 0x90;
const DMA_CMD: u64 = 0x98;
const EDU_BUF: u64 = 0x40000;

fn step(n: u32, what: &str) {
    println!("\n{n}. {what}");
}

/// Programs one edu DMA and waits for the engine (about 100 ms on QEMU, at
/// once on the simulator).
fn edu_dma(
    dev: &Device,
    src: u64,
    dst: u64,
    count: u32,
    to_ram: bool,
) -> Result<(), Box<dyn Error>> {
    let bar0 = dev.region(0)?;
    bar0.write_u32(DMA_SRC, src as u32)?;
    bar0.write_u32(DMA_DST, dst as u32)?;
    bar0.write_u32(DMA_COUNT, count)?;
    bar0.write_u32(DMA_CMD, 1 | if to_ram { 2 } else { 0 })?;
    let start = Instant::now();
    while bar0.read_u32(DMA_CMD)? & 1 != 0 {
        if start.elapsed() > Duration::from_secs(5) {
            return Err("the edu DMA did not finish".into());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    Ok(())
}

fn tour(kernel: &Kernel, address: &str) -> Result<(), Box<dyn Error>> {
    step(1, "Open the container (/dev/vfio/vfio): an IOMMU context.");
    let container = kernel.open_container()?;
    println!(
        "   API version checked; type1: {}, type1v2: {}",
        container.supports::<Type1>()?,
        container.supports::<Type1v2>()?
    );

    step(2, &format!("Open the IOMMU group of {address}."));
    let group = kernel.open_group_of(address)?;
    let status = group.status()?;
    println!(
        "   group {}: viable {}, in a container {}",
        group.id(),
        status.viable,
        status.container_set
    );

    step(
        3,
        "Attach the group, then choose the IOMMU model (type1v2).",
    );
    let container = container.attach(group)?.set_iommu::<Type1v2>()?;
    let info = container.iommu_info()?;
    println!("   IOMMU page sizes {:#x}", info.page_sizes);
    for r in &info.iova_ranges {
        println!("   usable IOVAs {:#x}..={:#x}", r.start, r.end);
    }
    println!("   mappings available: {:?}", info.dma_avail);

    step(4, "Open the device and look at it.");
    let dev = container.open_device(address)?;
    let di = dev.info();
    println!(
        "   PCI: {}, resettable: {}, {} regions, {} IRQ indexes",
        di.is_pci(),
        di.can_reset(),
        di.num_regions,
        di.num_irqs
    );
    for index in 0..di.num_regions {
        match dev.region(index) {
            Ok(r) if r.info().size > 0 => println!(
                "   region {index}: {:#x} bytes, read {} write {} mmap {}",
                r.info().size,
                r.info().readable(),
                r.info().writable(),
                r.info().mappable()
            ),
            Ok(_) => {}
            Err(e) => println!("   region {index}: {e}"),
        }
    }
    for index in 0..di.num_irqs {
        match dev.irq_info(index) {
            Ok(i) => println!(
                "   IRQ index {index}: {} vector(s), flags {:#x}",
                i.count, i.flags
            ),
            Err(e) => println!("   IRQ index {index}: {e}"),
        }
    }
    let config = dev.pci_config()?;
    println!(
        "   config space: vendor {:#06x} device {:#06x}",
        config.read_u16(0)?,
        config.read_u16(2)?
    );

    step(5, "Talk to BAR0 (pread/pwrite through the device fd).");
    let bar0 = dev.region(0)?;
    println!("   ident {:#010x}", bar0.read_u32(IDENT)?);
    bar0.write_u32(LIVENESS, 0x1234_5678)?;
    println!(
        "   liveness: wrote 0x12345678, read {:#010x}",
        bar0.read_u32(LIVENESS)?
    );
    bar0.write_u32(FACTORIAL, 10)?;
    std::thread::sleep(Duration::from_millis(10));
    println!("   factorial of 10: {}", bar0.read_u32(FACTORIAL)?);

    step(
        6,
        "Map a DMA buffer at IOVA 0x100000 and round-trip it through the device.",
    );
    let buffer = DmaBuffer::new(4096)?;
    let message = b"hello from typed-vfio, via the IOMMU and back";
    buffer.write(0, message)?;
    let mapping = container.map(&buffer, 0x10_0000, DmaAccess::ReadWrite)?;
    println!(
        "   mapped {:#x} bytes at IOVA {:#x}",
        mapping.size(),
        mapping.iova()
    );
    dev.set_bus_master(true)?;
    let n = message.len() as u32;
    edu_dma(&dev, mapping.iova(), EDU_BUF, n, false)?;
    println!(
        "   device read {n} bytes from IOVA {:#x} into its buffer",
        mapping.iova()
    );
    edu_dma(&dev, EDU_BUF, mapping.iova() + 2048, n, true)?;
    let mut back = vec![0u8; message.len()];
    buffer.read(2048, &mut back)?;
    println!(
        "   device wrote them back at IOVA {:#x}: {:?}",
        mapping.iova() + 2048,
        String::from_utf8_lossy(&back)
    );
    if back != message {
        return Err("the DMA round trip changed the bytes".into());
    }

    step(7, "An MSI through an eventfd.");
    let eventfd = EventFd::from_value_and_flags(0, EfdFlags::EFD_CLOEXEC | EfdFlags::EFD_NONBLOCK)?;
    dev.set_irq_eventfd(PciIrq::Msi as u32, 0, eventfd.as_fd())?;
    bar0.write_u32(IRQ_RAISE, 0x1)?;
    let mut fds = [PollFd::new(eventfd.as_fd(), PollFlags::POLLIN)];
    let ready = poll(&mut fds, PollTimeout::from(2000u16))?;
    let count = if ready == 1 { eventfd.read()? } else { 0 };
    println!(
        "   raised interrupt 0x1: eventfd counter {count}, irq status {:#x}",
        bar0.read_u32(IRQ_STATUS)?
    );
    bar0.write_u32(IRQ_ACK, 0x1)?;
    if count == 0 {
        return Err("no MSI arrived".into());
    }

    step(8, "Unmap, and see the IOMMU block the device.");
    drop(mapping);
    buffer.fill(0xaa);
    edu_dma(&dev, EDU_BUF, 0x10_0000, 64, true)?;
    let mut after = [0u8; 64];
    buffer.read(0, &mut after)?;
    println!(
        "   DMA to the unmapped IOVA 0x100000: buffer untouched: {}",
        after.iter().all(|&b| b == 0xaa)
    );
    if let Kernel::Sim(sim) = kernel {
        for fault in sim.take_dma_faults() {
            println!(
                "   the simulated IOMMU recorded a fault: {} bytes at {:#x} ({:?})",
                fault.len, fault.address, fault.reason
            );
        }
    }

    step(
        9,
        "Tear down: interrupts off, device closed, group released.",
    );
    dev.disable_irq(PciIrq::Msi as u32)?;
    dev.set_bus_master(false)?;
    drop(dev);
    let (_container, groups) = container.release_groups().map_err(|e| e.error)?;
    println!(
        "   released group(s) {:?}; the container is back to Unset",
        groups
            .iter()
            .map(|g| g.id().to_string())
            .collect::<Vec<_>>()
    );
    Ok(())
}

/// The same device through iommufd and its cdev: bind, attach to an IOAS,
/// a kernel-chosen IOVA, DMA both ways, an MSI, and detach.
fn iommufd_tour(kernel: &Kernel, address: &str, first: u32) -> Result<(), Box<dyn Error>> {
    let mut n = first;
    let mut next = |what: &str| {
        step(n, what);
        n += 1;
    };
    next("iommufd: open /dev/iommu and allocate an IOAS (an I/O address space).");
    let fd = match kernel.open_iommufd() {
        Ok(fd) => fd,
        Err(e @ IommufdError::Open { .. }) if matches!(kernel, Kernel::Host) => {
            println!("   no iommufd on this kernel ({e}): the iommufd part is skipped");
            return Ok(());
        }
        Err(e) => return Err(e.into()),
    };
    let ioas = fd.alloc_ioas()?;
    println!("   IOAS {}", ioas.id());

    next(&format!(
        "Open {address}'s cdev and bind it to the iommufd."
    ));
    let cdev = kernel.open_cdev(address)?;
    let dev = cdev.bind(&fd)?;
    println!(
        "   bound: device id {}; until now the cdev could do nothing else",
        dev.devid()
    );

    next("Attach the device to the IOAS: its DMA goes through the IOAS now.");
    let hwpt = dev.attach(&ioas)?;
    println!("   attached, through the kernel's page table {hwpt}");
    let ranges = ioas.iova_ranges()?;
    for r in &ranges.ranges {
        println!("   usable IOVAs {:#x}..={:#x}", r.start, r.end);
    }
    println!("   IOVA alignment {:#x}", ranges.alignment);

    next("Map a buffer where the kernel chooses, and round-trip it through the device.");
    let buffer = DmaBuffer::new(4096)?;
    let message = b"hello from typed-vfio, via iommufd and back";
    buffer.write(0, message)?;
    let mapping = ioas.map_anywhere(&buffer, DmaAccess::ReadWrite)?;
    println!(
        "   the kernel mapped {:#x} bytes at IOVA {:#x}",
        mapping.size(),
        mapping.iova()
    );
    dev.set_bus_master(true)?;
    let len = message.len() as u32;
    edu_dma(&dev, mapping.iova(), EDU_BUF, len, false)?;
    edu_dma(&dev, EDU_BUF, mapping.iova() + 2048, len, true)?;
    let mut back = vec![0u8; message.len()];
    buffer.read(2048, &mut back)?;
    println!("   device wrote back: {:?}", String::from_utf8_lossy(&back));
    if back != message {
        return Err("the DMA round trip through the IOAS changed the bytes".into());
    }

    next("An MSI from the bound device.");
    let eventfd = EventFd::from_value_and_flags(0, EfdFlags::EFD_CLOEXEC | EfdFlags::EFD_NONBLOCK)?;
    dev.set_irq_eventfd(PciIrq::Msi as u32, 0, eventfd.as_fd())?;
    let bar0 = dev.region(0)?;
    bar0.write_u32(IRQ_RAISE, 0x1)?;
    let mut fds = [PollFd::new(eventfd.as_fd(), PollFlags::POLLIN)];
    let ready = poll(&mut fds, PollTimeout::from(2000u16))?;
    let count = if ready == 1 { eventfd.read()? } else { 0 };
    bar0.write_u32(IRQ_ACK, 0x1)?;
    println!("   eventfd counter {count}");
    if count == 0 {
        return Err("no MSI arrived through the cdev".into());
    }
    dev.disable_irq(PciIrq::Msi as u32)?;

    next("Detach: the device's DMA is blocked, the mapping stays in the IOAS.");
    dev.detach()?;
    buffer.fill(0xaa);
    edu_dma(&dev, EDU_BUF, mapping.iova(), 64, true)?;
    let mut after = [0u8; 64];
    buffer.read(0, &mut after)?;
    let untouched = after.iter().all(|&b| b == 0xaa);
    println!("   DMA while detached: buffer untouched: {untouched}");
    if !untouched {
        return Err("a detached device reached the IOAS".into());
    }
    dev.set_bus_master(false)?;
    drop(mapping);
    drop(dev);
    println!("   iommufd tour: DMA round trip through the IOAS ok");
    Ok(())
}

fn main() -> Result<(), Box<dyn Error>> {
    let (kernel, address) = match std::env::args().nth(1) {
        Some(address) => {
            println!("typed-vfio tour on the running kernel, device {address}");
            (Kernel::Host, address)
        }
        None => {
            println!(
                "typed-vfio tour on the simulated kernel (pass a PCI address bound to vfio-pci for a real one)"
            );
            (Kernel::Sim(Simulator::new()), "0000:01:00.0".to_owned())
        }
    };
    tour(&kernel, &address)?;
    iommufd_tour(&kernel, &address, 10)?;
    if let Kernel::Sim(_) = kernel {
        println!(
            "\n16. The Freescale PAMU (type2) IOMMU, on a simulated QorIQ SoC with the SDK kernel's quirks:"
        );
        type2_msi::walkthrough(typed_vfio::sim::PamuMode::Sdk)?;
    }
    println!("\nDone.");
    Ok(())
}
