//! The little-endian accessors on a genuinely little-endian PCI device:
//! QEMU's nvme (1b36:0010), which the PowerPC machines carry for this (edu's
//! registers are native-endian in QEMU, so on a big-endian guest it is a
//! big-endian device, unlike real PCI). On a big-endian host a
//! native-endian decode would read the vendor id as 0x361b and the NVMe
//! version 0x00040100; the crate's accessors must read 0x1b36 and
//! 0x00010400, and agree with the raw bytes `pread` returns.

use typed_vfio::{Container, Group, GroupId, NoIommu};

use crate::rig;

/// NVMe BAR0: the version register (NVMe 1.4, QEMU 7.2: 0x00010400).
const NVME_VS: u64 = 0x08;

#[test]
#[ignore = "needs a VFIO guest: run tests/vm/run"]
fn nvme_registers_read_little_endian_on_this_host() {
    let (address, group) = rig::le_device();
    let number = group
        .strip_prefix("noiommu-")
        .expect("a no-IOMMU group on the PowerPC machines");
    let group = Group::open_id(GroupId::noiommu(number.parse().unwrap())).expect("open group");
    let container = Container::open()
        .expect("open container")
        .attach(group)
        .expect("attach")
        .set_iommu::<NoIommu>()
        .expect("no-IOMMU");
    let dev = container.open_device(&address).expect("open the nvme");
    let config = dev.pci_config().unwrap();
    let (vendor, device) = (config.read_u16(0).unwrap(), config.read_u16(2).unwrap());
    let mut raw = [0u8; 4];
    config.read(0, &mut raw).unwrap();
    println!(
        "LE nvme {address} on a {}-endian host: config bytes {raw:02x?}, vendor {vendor:#06x} device {device:#06x}",
        if cfg!(target_endian = "big") {
            "big"
        } else {
            "little"
        }
    );
    assert_eq!((vendor, device), (0x1b36, 0x0010));
    assert_eq!(
        raw,
        [0x36, 0x1b, 0x10, 0x00],
        "config space is little-endian bytes"
    );

    let bar0 = dev.region(0).unwrap();
    let vs = bar0.read_u32(NVME_VS).unwrap();
    let mut bytes = [0u8; 4];
    bar0.read(NVME_VS, &mut bytes).unwrap();
    println!("LE nvme VS register: bytes {bytes:02x?}, read_u32 {vs:#010x}");
    assert_eq!(
        bytes,
        vs.to_le_bytes(),
        "read_u32 decodes the bytes little-endian"
    );
    assert_eq!(vs >> 16, 1, "NVMe major version 1 (got {vs:#x})");
    assert_eq!(bar0.read_u32_be(NVME_VS).unwrap(), vs.swap_bytes());
    // The same register through an mmap of BAR0.
    if bar0.info().mappable() {
        let map = bar0.mmap().unwrap();
        assert_eq!(map.read_u32(NVME_VS).unwrap(), vs);
        println!(
            "LE nvme VS through mmap: {:#010x}",
            map.read_u32(NVME_VS).unwrap()
        );
    }
}
