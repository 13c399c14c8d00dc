//! The user-space NVMe driver (examples/nvme/driver.rs) on QEMU's nvme
//! device, whose namespace is a raw image file on the host: through type1v2,
//! iommufd and the cdev, or no-IOMMU with physical addresses (on x86 and
//! on the big-endian PowerPC guests), with polled and MSI-X completion, a
//! VFIO reset in between, and where the guest kernel has its nvme driver
//! (the stock kernel's module), the kernel reading the blocks the
//! user-space driver wrote.

use std::os::unix::fs::OpenOptionsExt;
use std::time::{Duration, Instant};

use nix::sys::eventfd::{EfdFlags, EventFd};
use std::os::fd::AsFd;
use typed_vfio::iommufd::{CdevDevice, Iommufd};
use typed_vfio::iova::IovaAllocator;
use typed_vfio::{
    Container, Device, DeviceError, DmaAccess, DmaBuffer, Group, GroupId, NoIommu, PciIrq, Type1v2,
};

#[path = "../../examples/nvme/driver.rs"]
#[allow(dead_code)]
pub mod driver;

use crate::alloc_count;
use crate::rig::{self, IommuKind};
use driver::{Arena, Completion, Config, Controller, NvmeError};

/// The LBAs the pattern tests write (4 KiB each, 512-byte blocks).
const PATTERN_LBAS: [u64; 4] = [0, 8, 64, 1000];

/// The pattern at `lba`: every byte derived from the LBA, the offset and
/// `seed`, so that a block from elsewhere (or an earlier run) does not pass.
pub fn pattern(seed: u8, lba: u64, out: &mut [u8]) {
    for (i, b) in out.iter_mut().enumerate() {
        *b = (lba as u8).wrapping_mul(31) ^ (i as u8).wrapping_add((lba >> 8) as u8) ^ seed;
    }
}

/// The nvme's address and group (`TVFIO_LE_DEVICE`: QEMU's nvme).
fn nvme() -> (String, GroupId) {
    let (address, group) = rig::le_device();
    let id = match group.strip_prefix("noiommu-") {
        Some(n) => GroupId::noiommu(n.parse().unwrap()),
        None => GroupId::new(group.parse().unwrap()),
    };
    (address, id)
}

/// Runs `f` with the nvme open and an arena of `bytes` reachable by it, as
/// this configuration's IOMMU does it.
pub fn with_nvme<T>(bytes: usize, f: impl FnOnce(&Device, Arena<'_>) -> T) -> T {
    let (address, group) = nvme();
    let buffer = DmaBuffer::new(bytes).expect("DMA arena");
    match rig::iommu() {
        IommuKind::Type1 | IommuKind::Type1v2 => {
            let container = Container::open()
                .unwrap()
                .attach(Group::open_id(group).expect("open the nvme's group"))
                .unwrap()
                .set_iommu::<Type1v2>()
                .unwrap();
            let device = container.open_device(&address).expect("open the nvme");
            let mut iovas = IovaAllocator::for_container(&container.iommu_info().unwrap()).unwrap();
            let _guard = iovas.alloc(1 << 21, 1 << 21).unwrap(); // IOVA 0 unused
            let block = iovas.alloc(buffer.len() as u64, 1 << 21).unwrap();
            let mapping = container
                .map(&buffer, block.iova(), DmaAccess::ReadWrite)
                .expect("map the arena");
            f(&device, Arena::mapped(&buffer, mapping.iova()))
        }
        IommuKind::NoIommu => {
            let container = Container::open()
                .unwrap()
                .attach(Group::open_id(group).expect("open the nvme's group"))
                .unwrap()
                .set_iommu::<NoIommu>()
                .unwrap();
            let device = container.open_device(&address).expect("open the nvme");
            let arena = Arena::physical(&buffer).expect("physical addresses (pagemap)");
            f(&device, arena)
        }
        IommuKind::Iommufd => {
            let fd = Iommufd::open().expect("open /dev/iommu");
            let ioas = fd.alloc_ioas().unwrap();
            let device = CdevDevice::open_pci(&address)
                .expect("the nvme's cdev")
                .bind(&fd)
                .expect("bind");
            device.attach(&ioas).expect("attach");
            let mut iovas = IovaAllocator::for_ioas(&ioas.iova_ranges().unwrap()).unwrap();
            let _guard = iovas.alloc(1 << 21, 1 << 21).unwrap();
            let block = iovas.alloc(buffer.len() as u64, 1 << 21).unwrap();
            let mapping = ioas
                .map(&buffer, block.iova(), DmaAccess::ReadWrite)
                .expect("map the arena");
            f(&device, Arena::mapped(&buffer, mapping.iova()))
        }
    }
}

fn config(completion: Completion) -> Config {
    Config {
        completion,
        ..Config::default()
    }
}

/// Writes the pattern at [`PATTERN_LBAS`] and reads it back.
fn write_and_check(c: &mut Controller<'_, '_>, seed: u8) {
    let mut block = vec![0u8; 4096];
    let mut back = vec![0u8; 4096];
    for &lba in &PATTERN_LBAS {
        pattern(seed, lba, &mut block);
        c.write(lba, &block)
            .unwrap_or_else(|e| panic!("write at {lba}: {e}"));
    }
    for &lba in &PATTERN_LBAS {
        pattern(seed, lba, &mut block);
        c.read(lba, &mut back)
            .unwrap_or_else(|e| panic!("read at {lba}: {e}"));
        assert_eq!(block, back, "LBA {lba} reads back what was written");
    }
}

#[test]
#[ignore = "needs a VFIO guest: run tests/vm/run"]
fn polled_driver_identifies_writes_and_reads_back_then_shuts_down() {
    with_nvme(config(Completion::Polled).arena_bytes(), |device, arena| {
        let mut c = Controller::new(device, arena, config(Completion::Polled))
            .unwrap_or_else(|e| panic!("controller bring-up: {e}"));
        println!(
            "nvme: vid {:#06x} model '{}' serial '{}' mdts {:?}; namespace {} blocks of {}; {}",
            c.controller.vid,
            c.controller.model,
            c.controller.serial,
            c.controller.mdts,
            c.namespace.blocks,
            c.namespace.block_size,
            rig::config()
        );
        assert_eq!(
            c.controller.vid, 0x1b36,
            "QEMU's vendor id, read little-endian"
        );
        assert_eq!(c.controller.serial, "tvfio");
        assert!(
            c.namespace.blocks >= 2048,
            "the 8 MiB image: {} blocks",
            c.namespace.blocks
        );
        write_and_check(&mut c, 0x5a);

        // 16 reads in flight, then reaped.
        let per = (4096 / c.namespace.block_size) as u64;
        for slot in 0..16u16 {
            c.submit_io(0, slot, false, u64::from(slot) * per, 4096)
                .unwrap();
        }
        let mut done = 0;
        let start = Instant::now();
        while done < 16 {
            done += c.wait(0, |_| {}).unwrap();
            assert!(start.elapsed() < Duration::from_secs(20));
        }
        let mut block = vec![0u8; 4096];
        let mut back = vec![0u8; 4096];
        c.slot_read(0, 0, &mut back).unwrap();
        pattern(0x5a, 0, &mut block);
        assert_eq!(block, back, "slot 0 read LBA 0");

        // Typed refusals before the device is asked.
        assert!(matches!(
            c.read(c.namespace.blocks, &mut back),
            Err(NvmeError::LbaOutOfRange { .. })
        ));
        let mut big = vec![0u8; c.max_transfer() + c.namespace.block_size];
        assert!(matches!(
            c.read(0, &mut big),
            Err(NvmeError::TransferTooLarge { .. })
        ));

        c.shutdown().unwrap_or_else(|e| panic!("shutdown: {e}"));
        // Left reset: CC.EN and CSTS.RDY clear.
        let bar0 = device.region(0).unwrap();
        assert_eq!(bar0.read_u32(0x14).unwrap() & 1, 0, "CC.EN clear");
        assert_eq!(bar0.read_u32(0x1c).unwrap() & 1, 0, "CSTS.RDY clear");
        // The same registers through a Register32 of BAR0's mmap.
        let mapped = bar0.mmap().expect("BAR0 mmap");
        let cc = mapped.register32(0x14).expect("CC as a Register32");
        let vs = mapped.register32(0x08).unwrap();
        assert_eq!(vs.read(), bar0.read_u32(0x08).unwrap(), "VS read alike");
        cc.write(0);
        assert_eq!(cc.read() & 1, 0);
        assert!(
            mapped.register32(0x16).is_err(),
            "a misaligned register is refused"
        );
    });
}

#[test]
#[ignore = "needs a VFIO guest: run tests/vm/run"]
fn msix_completion_signals_the_queue_eventfd_and_survives_a_vfio_reset() {
    with_nvme(config(Completion::Msix).arena_bytes(), |device, arena| {
        let mut c = Controller::new(device, arena, config(Completion::Msix))
            .unwrap_or_else(|e| panic!("controller bring-up with MSI-X: {e}"));
        let _ = c.take_interrupts(0);
        write_and_check(&mut c, 0xa5);
        let before = c.take_interrupts(0);
        println!("nvme MSI-X: {before} interrupts on queue 1's vector for 8 commands");
        assert!(before > 0, "the I/O queue's vector signalled its eventfd");

        // VFIO_DEVICE_RESET without re-arming: vfio-pci keeps the triggers
        // and the PCI core restores the MSI-X table around the reset, so
        // interrupts keep coming (what Msix's docs state).
        let (bdf, _) = nvme();
        println!("nvme reset methods: {:?}", rig::reset_methods(&bdf));
        device.reset().expect("VFIO_DEVICE_RESET");
        if let Err(e) = c.controller_reset() {
            panic!("bring-up after the reset: {e:?}; admin: {}", c.admin_dump());
        }
        let mut back = vec![0u8; 4096];
        let _ = c.take_interrupts(0);
        c.read(0, &mut back).unwrap();
        let after = c.take_interrupts(0);
        println!("nvme MSI-X after VFIO_DEVICE_RESET (not re-armed): {after} interrupts");
        assert!(
            after > 0,
            "interrupts arrive after a function reset without re-arming"
        );

        // And through the handle: reset, re-arm, bring-up.
        c.reset().expect("reset through Msix::reset_device");
        c.read(0, &mut back).unwrap();
        assert!(c.take_interrupts(0) > 0, "interrupts after reset_device");
        let mut block = vec![0u8; 4096];
        pattern(0xa5, 0, &mut block);
        assert_eq!(block, back, "the namespace kept its data over the resets");
        c.shutdown().unwrap();
    });
}

#[test]
#[ignore = "needs a VFIO guest: run tests/vm/run"]
fn msix_grows_where_the_kernel_allows_and_is_typed_noresize_where_not() {
    with_nvme(4096, |device, _arena| {
        let info = device.irq_info(PciIrq::Msix as u32).unwrap();
        println!(
            "nvme MSI-X: {} vectors, NORESIZE {} ({})",
            info.count,
            info.noresize(),
            rig::config()
        );
        assert!(info.count >= 2, "QEMU's nvme has a vector per queue");
        let (a, b) = (
            EventFd::from_flags(EfdFlags::EFD_NONBLOCK).unwrap(),
            EventFd::from_flags(EfdFlags::EFD_NONBLOCK).unwrap(),
        );
        let mut msix = device.enable_msix(&[Some(a.as_fd())]).unwrap();
        assert_eq!(msix.allocated(), 1);
        assert!(matches!(
            device.disable_irq(PciIrq::Msix as u32),
            Err(DeviceError::IrqOwned { .. })
        ));
        let grown = msix.set(1, Some(b.as_fd()));
        if info.noresize() {
            assert!(
                matches!(
                    grown,
                    Err(DeviceError::IrqNoResize {
                        vector: 1,
                        allocated: 1,
                        ..
                    })
                ),
                "NORESIZE: {grown:?}"
            );
        } else {
            grown.expect("dynamic MSI-X: vector 1 added to the live set");
            assert_eq!(msix.allocated(), 2);
            msix.trigger(1).unwrap();
            assert_eq!(b.read().unwrap(), 1, "the added vector signals its eventfd");
        }
        msix.trigger(0).unwrap();
        assert_eq!(a.read().unwrap(), 1);
        // More than the table: refused before the kernel.
        assert!(matches!(
            msix.set(info.count, Some(b.as_fd())),
            Err(DeviceError::IrqRange { .. })
        ));
        msix.disable().map_err(|(_, e)| e).unwrap();
        // Disabled: a loopback trigger of MSI-X is refused by the kernel.
        assert!(device.trigger_irq(PciIrq::Msix as u32, 0, 1).is_err());
    });
}

#[test]
#[ignore = "needs a VFIO guest: run tests/vm/run"]
fn a_polled_io_allocates_nothing() {
    with_nvme(config(Completion::Polled).arena_bytes(), |device, arena| {
        let mut c = Controller::new(device, arena, config(Completion::Polled)).unwrap();
        let mut back = vec![0u8; 4096];
        c.read(0, &mut back).unwrap(); // warm
        let (result, allocs) = alloc_count::allocations(|| {
            for i in 0..64u64 {
                c.read(i * 8 % 2048, &mut back)?;
            }
            Ok::<(), NvmeError>(())
        });
        result.unwrap();
        println!("nvme: {allocs} heap allocations in 64 polled 4 KiB reads");
        assert_eq!(allocs, 0, "a polled I/O allocates nothing");
        c.shutdown().unwrap();
    });
}

/// The block device the kernel's nvme driver made for `bdf`, waited for.
fn kernel_block_device(bdf: &str) -> std::path::PathBuf {
    let start = Instant::now();
    loop {
        let nvme_dir = rig::sysfs_device(bdf).join("nvme");
        if let Ok(ctrls) = std::fs::read_dir(&nvme_dir) {
            for ctrl in ctrls.flatten() {
                let name = ctrl.file_name().to_string_lossy().into_owned();
                let ns = format!("{name}n1");
                let dev = std::path::PathBuf::from(format!("/dev/{ns}"));
                if ctrl.path().join(&ns).exists() && dev.exists() {
                    return dev;
                }
            }
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the kernel's nvme driver made no namespace for {bdf}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
#[ignore = "needs a VFIO guest: run tests/vm/run"]
fn the_kernel_nvme_driver_reads_the_blocks_the_user_space_driver_wrote() {
    let (bdf, _) = nvme();
    assert!(
        std::path::Path::new("/sys/bus/pci/drivers/nvme").exists(),
        "this configuration's kernel has no nvme driver (the test belongs to stock-type1v2)"
    );
    // Seeded by the time, so blocks from an earlier run cannot pass.
    let seed = (std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
        % 251) as u8
        | 1;
    with_nvme(config(Completion::Polled).arena_bytes(), |device, arena| {
        let mut c = Controller::new(device, arena, config(Completion::Polled)).unwrap();
        write_and_check(&mut c, seed);
        c.shutdown().unwrap();
    });
    // vfio-pci to nvme.
    rig::sysfs_driver("vfio-pci", &bdf, false);
    rig::driver_override(&bdf, Some("nvme"));
    std::fs::write("/sys/bus/pci/drivers_probe", &bdf).unwrap();
    let dev = kernel_block_device(&bdf);
    println!("nvme: {bdf} now the kernel's {}", dev.display());
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECT)
        .open(&dev)
        .unwrap_or_else(|e| panic!("open {} O_DIRECT: {e}", dev.display()));
    let mut expect = vec![0u8; 4096];
    let mut got = vec![0u8; 4096];
    use std::os::unix::fs::FileExt;
    for &lba in &PATTERN_LBAS {
        // O_DIRECT wants a block-aligned buffer: a page-aligned window of
        // a larger Vec.
        let mut page = vec![0u8; 8192];
        let off = page.as_ptr().align_offset(4096);
        let n = file
            .read_at(&mut page[off..off + 4096], lba * 512)
            .unwrap_or_else(|e| panic!("O_DIRECT read of LBA {lba}: {e}"));
        assert_eq!(n, 4096);
        got.copy_from_slice(&page[off..off + 4096]);
        pattern(seed, lba, &mut expect);
        assert_eq!(
            expect, got,
            "the kernel reads at LBA {lba} what user space wrote"
        );
    }
    drop(file);
    println!(
        "nvme: the kernel read {} blocks of 4 KiB the user-space driver wrote",
        PATTERN_LBAS.len()
    );
    // Back to vfio-pci for what runs later (the benchmark).
    rig::sysfs_driver("nvme", &bdf, false);
    rig::driver_override(&bdf, Some("vfio-pci"));
    std::fs::write("/sys/bus/pci/drivers_probe", &bdf).unwrap();
    assert_eq!(rig::driver_of(&bdf).as_deref(), Some("vfio-pci"));
}
