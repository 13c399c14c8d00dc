//! Seed corpora for the fuzz targets, captured from the real kernel.
//!
//! Each test issues the raw `typed_vfio::sys` ioctls with exactly the buffer
//! the crate itself offers the kernel (same size, `argsz` = buffer length,
//! same retry when the answer says it did not fit), checks that the crate's
//! own parser (`typed_vfio::fuzzing`) accepts the answer, and prints it as
//!
//! ```text
//! SEED <fuzz target> <file name> <length> <hex bytes>
//! ```
//!
//! `tests/vm/run` turns these lines into `target/vm/seeds/<target>/<name>`,
//! compares them with the committed `fuzz/corpus/<target>/<name>` and, with
//! `--update-seeds`, writes them there. Every name starts with
//! `seed-linux-<major>.<minor>-` (the rig owns the committed files of that
//! form) and holds nothing that changes from boot to boot. A name carries a
//! qualifier only where the answer depends on it: the IOMMU model where the
//! type1 and type1v2 answers differ, `iommu` / `noiommu` for the hot-reset
//! list (its group numbers), `compat` for iommufd's compatibility
//! container's IOMMU info (`tvfio.compat=1`), `aarch64` where the SMMUv3's
//! answer differs, and `ppc32` on the 32-bit big-endian PowerPC guest, all
//! of whose answers differ (their integers are big-endian). The same name printed by two configurations
//! must be the same bytes; the host checks it. Answers the kernel refuses
//! (edu's VGA region, the ERR IRQ of a conventional PCI device) are not
//! seeds.

use std::fmt::Write as _;
use std::fs::File;
use std::mem::size_of;

use nix::errno::Errno;
use typed_vfio::sys::{IntoBytes, SliceBytes};
use typed_vfio::{fuzzing, sys};

use crate::edu::*;
use crate::rig::{self, IommuKind};

/// `Container::iommu_info`'s first buffer (src/container.rs).
const IOMMU_INFO_BUF: usize = 256;
/// `region::query`'s first buffer (src/region.rs).
const REGION_INFO_BUF: usize = 256;
/// `Device::from_fd`: the fixed `vfio_device_info` only (src/device.rs).
const DEVICE_INFO_BUF: usize = size_of::<sys::vfio_device_info>();
/// `Device::info_capability_ids`: 512 u64 (src/device.rs).
const DEVICE_INFO_CAPS_BUF: usize = 512 * 8;
/// `Device::irq_info`: the fixed `vfio_irq_info` (src/device.rs).
const IRQ_INFO_BUF: usize = size_of::<sys::vfio_irq_info>();
/// `Device::pci_hot_reset_info`'s first buffer: header + room for 8 devices.
const HOT_RESET_INFO_BUF: usize = 12 + 8 * size_of::<sys::vfio_pci_dependent_device>();

/// The crate re-asks once with the size the kernel asked for, refusing more
/// than 1 MiB (src/container.rs, src/region.rs).
const RETRY_LIMIT: usize = 1 << 20;

/// Fixed struct lengths: where a capability chain may start.
const IOMMU_INFO_FIXED: u8 = size_of::<sys::vfio_iommu_type1_info>() as u8;
const REGION_INFO_FIXED: u8 = size_of::<sys::vfio_region_info>() as u8;
const DEVICE_INFO_FIXED: u8 = size_of::<sys::vfio_device_info>() as u8;

/// An IOVA for the one live mapping: below edu's 28-bit DMA mask.
const ONE_MAPPING_IOVA: u64 = 0x10_0000;

// --- output ------------------------------------------------------------------------------

/// `linux-<major>.<minor>` of the running kernel (`/proc/sys/kernel/osrelease`,
/// e.g. `6.12.117+deb12-cloud-amd64` or `6.12.117`): stable across boots and
/// point releases (a point release that changes an answer shows as drift).
fn kernel_tag() -> String {
    let (major, minor) = crate::rig::kernel_version();
    // On a big-endian guest every answer differs (its integers are
    // big-endian): all of its seeds are named `linux-<major>.<minor>-ppc32-`.
    let order = if cfg!(target_endian = "big") {
        "-ppc32"
    } else {
        ""
    };
    format!("linux-{major}.{minor}{order}")
}

/// `-aarch64` in the names of the seeds whose answer differs on the aarch64
/// guest (SMMUv3: other IOVA ranges and group numbers), empty elsewhere.
fn arch_qualifier() -> &'static str {
    if cfg!(target_arch = "aarch64") {
        "-aarch64"
    } else {
        ""
    }
}

/// Prints one seed line; the first call of a test starts on a fresh line
/// (libtest's `test NAME ... ` has no newline before the test's output).
fn emit(target: &str, name: &str, bytes: &[u8]) {
    assert!(
        name.starts_with("seed-linux-")
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.'),
        "seed name {name:?}: must be seed-linux-..., [a-z0-9.-]"
    );
    assert!(!bytes.is_empty(), "{target}/{name}: empty seed");
    let mut hex = String::with_capacity(2 * bytes.len());
    for b in bytes {
        write!(hex, "{b:02x}").unwrap();
    }
    println!("SEED {target} {name} {} {hex}", bytes.len());
}

/// The `cap_chain` target's input for an answer whose capability chain
/// starts at `first` past a `fixed`-byte struct: `first` (u32, native),
/// `fixed` (u8), then the bytes the crate walks (`..min(argsz, len)`).
fn cap_chain_input(answer: &[u8], first: u32, fixed: u8) -> Vec<u8> {
    let argsz = u32_at(answer, 0) as usize;
    let walked = &answer[..argsz.min(answer.len())];
    let mut input = first.to_ne_bytes().to_vec();
    input.push(fixed);
    input.extend_from_slice(walked);
    input
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_ne_bytes(b[at..at + 4].try_into().unwrap())
}

// --- the crate's buffers -------------------------------------------------------------------

/// An 8-aligned zeroed buffer of `len` bytes starting with `header`.
fn buffer(len: usize, header: &[u8]) -> Vec<u64> {
    let mut buf = vec![0u64; len.div_ceil(8)];
    buf.as_mut_bytes()[..header.len()].copy_from_slice(header);
    buf
}

fn answer(buf: &[u64], len: usize) -> Vec<u8> {
    buf.as_bytes()[..len].to_vec()
}

/// Asks with `len` bytes, then once more with the size the kernel asked for
/// if that is larger (as the crate does); the answer the crate parses.
fn ask_with_retry(
    what: &str,
    mut len: usize,
    mut ask: impl FnMut(usize) -> nix::Result<Vec<u8>>,
) -> nix::Result<Vec<u8>> {
    for _ in 0..2 {
        let bytes = ask(len)?;
        let needed = u32_at(&bytes, 0) as usize;
        if needed <= len {
            return Ok(bytes);
        }
        assert!(needed <= RETRY_LIMIT, "{what}: argsz {needed} over 1 MiB");
        println!("{what}: argsz {needed} > {len}, asking again");
        len = needed;
    }
    panic!("{what}: argsz grew between calls");
}

/// `VFIO_IOMMU_GET_INFO` with `Container::iommu_info`'s buffer.
fn iommu_info(container: &File) -> nix::Result<Vec<u8>> {
    ask_with_retry("VFIO_IOMMU_GET_INFO", IOMMU_INFO_BUF, |len| {
        let head = sys::vfio_iommu_type1_info {
            argsz: len as u32,
            ..Default::default()
        };
        let mut buf = buffer(len, head.as_bytes());
        // SAFETY: a type1 container (or one the kernel refuses the request
        // on); the buffer is live, writable, 8-aligned, `len` bytes, and
        // starts with a vfio_iommu_type1_info whose argsz is `len`.
        unsafe { sys::ioctl::vfio_iommu_get_info(cfd(container), buf.as_mut_ptr().cast()) }?;
        Ok(answer(&buf, len))
    })
}

/// `VFIO_DEVICE_GET_REGION_INFO` with `region::query`'s buffer.
fn region_info(dev: &File, index: u32) -> nix::Result<Vec<u8>> {
    ask_with_retry("VFIO_DEVICE_GET_REGION_INFO", REGION_INFO_BUF, |len| {
        let head = sys::vfio_region_info {
            argsz: len as u32,
            index,
            ..Default::default()
        };
        let mut buf = buffer(len, head.as_bytes());
        // SAFETY: a VFIO device fd; the buffer is live, writable, 8-aligned,
        // `len` bytes, and starts with a vfio_region_info whose argsz is `len`.
        unsafe { sys::ioctl::vfio_device_get_region_info(dfd(dev), buf.as_mut_ptr().cast()) }?;
        Ok(answer(&buf, len))
    })
}

/// `VFIO_DEVICE_GET_INFO` with a `len`-byte buffer.
fn device_info(dev: &File, len: usize) -> nix::Result<Vec<u8>> {
    let head = sys::vfio_device_info {
        argsz: len as u32,
        ..Default::default()
    };
    let mut buf = buffer(len, head.as_bytes());
    // SAFETY: a VFIO device fd; the buffer is live, writable, 8-aligned,
    // `len` (>= 24) bytes, and starts with a vfio_device_info whose argsz is `len`.
    unsafe { sys::ioctl::vfio_device_get_info(dfd(dev), buf.as_mut_ptr().cast()) }?;
    Ok(answer(&buf, len))
}

/// `VFIO_DEVICE_GET_IRQ_INFO` with `Device::irq_info`'s buffer.
fn irq_info(dev: &File, index: u32) -> nix::Result<Vec<u8>> {
    let head = sys::vfio_irq_info {
        argsz: IRQ_INFO_BUF as u32,
        index,
        ..Default::default()
    };
    let mut buf = buffer(IRQ_INFO_BUF, head.as_bytes());
    // SAFETY: a VFIO device fd; the buffer is a live, writable, 8-aligned
    // vfio_irq_info whose argsz is its size.
    unsafe { sys::ioctl::vfio_device_get_irq_info(dfd(dev), buf.as_mut_ptr().cast()) }?;
    Ok(answer(&buf, IRQ_INFO_BUF))
}

/// `VFIO_DEVICE_GET_PCI_HOT_RESET_INFO` with `Device::pci_hot_reset_info`'s
/// first buffer (room for 8 devices).
fn hot_reset_info(dev: &File) -> nix::Result<Vec<u8>> {
    // vfio_pci_hot_reset_info's header: argsz, flags, count.
    let head = [HOT_RESET_INFO_BUF as u32, 0, 0];
    let mut buf = buffer(HOT_RESET_INFO_BUF, head.as_bytes());
    // SAFETY: a VFIO device fd; the buffer is live, writable, 8-aligned,
    // HOT_RESET_INFO_BUF bytes, and starts with a vfio_pci_hot_reset_info
    // whose argsz is that length.
    unsafe { sys::ioctl::vfio_device_get_pci_hot_reset_info(dfd(dev), buf.as_mut_ptr().cast()) }?;
    Ok(answer(&buf, HOT_RESET_INFO_BUF))
}

// --- IOMMU info ------------------------------------------------------------------------------

/// A container holding the first group, with IOMMU `model` set.
struct Attached {
    group: File,
    container: File,
}

impl Attached {
    fn new(model: u32) -> Attached {
        let (_, g) = &rig::devices_with_groups()[0];
        let container = open_container();
        let group = open_group(g);
        expect_ok(
            "VFIO_GROUP_SET_CONTAINER",
            set_container(&group, &container),
        );
        expect_ok(
            &format!("VFIO_SET_IOMMU {model}"),
            set_iommu(&container, model),
        );
        Attached { group, container }
    }
}

impl Drop for Attached {
    fn drop(&mut self) {
        let _ = unset_container(&self.group);
    }
}

/// The fresh answer and the answer with one page mapped, for `model`.
fn iommu_answers(model: u32) -> (Vec<u8>, Vec<u8>) {
    let a = Attached::new(model);
    let fresh = expect_info(iommu_info(&a.container), model);
    let page = page_size();
    let mem = Mmap::anon(page as usize);
    expect_ok(
        "VFIO_IOMMU_MAP_DMA",
        map_dma(&a.container, mem.addr(), ONE_MAPPING_IOVA, page),
    );
    let mapped = expect_info(iommu_info(&a.container), model);
    let unmapped = unmap_dma(&a.container, ONE_MAPPING_IOVA, page)
        .unwrap_or_else(|e| panic!("VFIO_IOMMU_UNMAP_DMA: {e}"));
    assert_eq!(unmapped, page, "UNMAP_DMA size");
    (fresh, mapped)
}

fn expect_info(r: nix::Result<Vec<u8>>, model: u32) -> Vec<u8> {
    r.unwrap_or_else(|e| panic!("VFIO_IOMMU_GET_INFO (model {model}): {e}"))
}

/// Emits `bytes` once if both models answered the same, else once per model.
fn emit_per_model(target: &str, k: &str, what: &str, type1: &[u8], type1v2: &[u8]) {
    if type1 == type1v2 {
        emit(target, &format!("seed-{k}-{what}"), type1);
    } else {
        println!("{what}: type1 and type1v2 answers differ");
        emit(target, &format!("seed-{k}-type1-{what}"), type1);
        emit(target, &format!("seed-{k}-type1v2-{what}"), type1v2);
    }
}

#[test]
#[ignore = "needs a VFIO guest: run tests/vm/run"]
fn iommu_info_seeds() {
    println!();
    if rig::iommu() == IommuKind::NoIommu {
        // No type1 backend without an IOMMU: the no-IOMMU driver refuses
        // every container ioctl but CHECK_EXTENSION, so there is nothing to
        // seed; check that refusal instead.
        let a = Attached::new(sys::VFIO_NOIOMMU_IOMMU);
        let r = iommu_info(&a.container);
        expect_errno("VFIO_IOMMU_GET_INFO, no-IOMMU container", r, Errno::ENOTTY);
        println!("no iommu_info seeds under no-IOMMU");
        return;
    }
    let k = kernel_tag();
    if rig::compat() {
        compat_iommu_info_seeds(&k);
        return;
    }
    let (fresh1, mapped1) = iommu_answers(sys::VFIO_TYPE1_IOMMU);
    let (fresh2, mapped2) = iommu_answers(sys::VFIO_TYPE1v2_IOMMU);
    for (what, bytes) in [
        ("type1", &fresh1),
        ("type1v2", &fresh2),
        ("type1, one mapping", &mapped1),
        ("type1v2, one mapping", &mapped2),
    ] {
        let info = fuzzing::parse_iommu_info(bytes)
            .unwrap_or_else(|e| panic!("{what}: the crate refuses the kernel's answer: {e}"));
        println!(
            "{what}: flags {:#x}, argsz {}, page sizes {:#x}, IOVA ranges {:x?}, DMA_AVAIL {:?}",
            u32_at(bytes, 4),
            u32_at(bytes, 0),
            info.page_sizes,
            info.iova_ranges
                .iter()
                .map(|r| (r.start, r.end))
                .collect::<Vec<_>>(),
            info.dma_avail
        );
        assert!(!info.iova_ranges.is_empty(), "{what}: no IOVA range");
    }
    for (fresh, mapped) in [(&fresh1, &mapped1), (&fresh2, &mapped2)] {
        let before = fuzzing::parse_iommu_info(fresh).unwrap().dma_avail;
        let after = fuzzing::parse_iommu_info(mapped).unwrap().dma_avail;
        let before = before.expect("no DMA_AVAIL capability");
        assert_eq!(after, Some(before - 1), "DMA_AVAIL with one mapping");
    }
    // The IOVA ranges are the IOMMU's (VT-d on x86, SMMUv3 on aarch64):
    // the aarch64 answers are seeds of their own.
    let k = format!("{k}{}", arch_qualifier());
    emit_per_model("iommu_info", &k, "iommu-info", &fresh1, &fresh2);
    emit_per_model(
        "iommu_info",
        &k,
        "iommu-info-one-mapping",
        &mapped1,
        &mapped2,
    );
    let flags = u32_at(&fresh1, 4);
    assert!(
        flags & sys::VFIO_IOMMU_INFO_CAPS != 0,
        "no capability chain (flags {flags:#x})"
    );
    let chain = |b: &[u8]| cap_chain_input(b, u32_at(b, 16), IOMMU_INFO_FIXED);
    emit_per_model(
        "cap_chain",
        &k,
        "iommu-info",
        &chain(&fresh1),
        &chain(&fresh2),
    );
}

/// iommufd's compatibility container (`tvfio.compat=1`) answers
/// `VFIO_IOMMU_GET_INFO` from its IOAS: DMA_AVAIL a constant U32_MAX (no
/// "one mapping" seed: mapping a page changes nothing), no MIGRATION
/// capability, and the IOMMU's page sizes and the group's reserved regions
/// only once a device has attached the IOAS (Linux 6.12
/// drivers/iommu/iommufd/vfio_compat.c, iommufd_vfio_iommu_get_info). Hence
/// `compat-` names, one for the group-only answer and one with the device
/// open.
fn compat_iommu_info_seeds(k: &str) {
    let (bdf, _) = &rig::devices_with_groups()[0];
    let answers = |model: u32| {
        let a = Attached::new(model);
        let fresh = expect_info(iommu_info(&a.container), model);
        let page = page_size();
        let mem = Mmap::anon(page as usize);
        expect_ok(
            "VFIO_IOMMU_MAP_DMA",
            map_dma(&a.container, mem.addr(), ONE_MAPPING_IOVA, page),
        );
        let mapped = expect_info(iommu_info(&a.container), model);
        assert_eq!(fresh, mapped, "compat: a mapping changes the answer");
        let unmapped = unmap_dma(&a.container, ONE_MAPPING_IOVA, page)
            .unwrap_or_else(|e| panic!("VFIO_IOMMU_UNMAP_DMA: {e}"));
        assert_eq!(unmapped, page, "UNMAP_DMA size");
        let dev = get_device_fd(&a.group, bdf)
            .unwrap_or_else(|e| panic!("VFIO_GROUP_GET_DEVICE_FD {bdf}: {e}"));
        let with_device = expect_info(iommu_info(&a.container), model);
        drop(dev);
        (fresh, with_device)
    };
    let (group1, device1) = answers(sys::VFIO_TYPE1_IOMMU);
    let (group2, device2) = answers(sys::VFIO_TYPE1v2_IOMMU);
    let (msi, _) = rig::msi_window(rig::first_group_number());
    for (what, bytes, open) in [
        ("type1, group only", &group1, false),
        ("type1v2, group only", &group2, false),
        ("type1, device open", &device1, true),
        ("type1v2, device open", &device2, true),
    ] {
        let info = fuzzing::parse_iommu_info(bytes)
            .unwrap_or_else(|e| panic!("{what}: the crate refuses the kernel's answer: {e}"));
        let ranges: Vec<(u64, u64)> = info.iova_ranges.iter().map(|r| (r.start, r.end)).collect();
        println!(
            "compat {what}: flags {:#x}, argsz {}, page sizes {:#x}, IOVA ranges {ranges:x?}, DMA_AVAIL {:?}, migration {:?}",
            u32_at(bytes, 4),
            u32_at(bytes, 0),
            info.page_sizes,
            info.dma_avail,
            info.migration
        );
        assert_eq!(info.dma_avail, Some(u32::MAX), "{what}: DMA_AVAIL");
        assert!(info.migration.is_none(), "{what}: a MIGRATION capability");
        if open {
            assert!(
                ranges.len() >= 2 && !ranges.iter().any(|&(s, e)| s <= msi && e >= msi),
                "{what}: the MSI window is not excluded: {ranges:x?}"
            );
        } else {
            assert_eq!(ranges, vec![(0, u64::MAX)], "{what}: no reserved IOVA yet");
        }
    }
    emit_per_model("iommu_info", k, "compat-iommu-info", &group1, &group2);
    emit_per_model(
        "iommu_info",
        k,
        "compat-iommu-info-device-open",
        &device1,
        &device2,
    );
    let chain = |b: &[u8]| cap_chain_input(b, u32_at(b, 16), IOMMU_INFO_FIXED);
    emit_per_model(
        "cap_chain",
        k,
        "compat-iommu-info-device-open",
        &chain(&device1),
        &chain(&device2),
    );
}

// --- device, regions, IRQs, hot reset ----------------------------------------------------------

fn region_label(index: u32) -> String {
    match index {
        0..=5 => format!("bar{index}"),
        sys::VFIO_PCI_ROM_REGION_INDEX => "rom".into(),
        sys::VFIO_PCI_CONFIG_REGION_INDEX => "config".into(),
        sys::VFIO_PCI_VGA_REGION_INDEX => "vga".into(),
        _ => "device-specific".into(),
    }
}

fn irq_label(index: u32) -> &'static str {
    match index {
        sys::VFIO_PCI_INTX_IRQ_INDEX => "intx",
        sys::VFIO_PCI_MSI_IRQ_INDEX => "msi",
        sys::VFIO_PCI_MSIX_IRQ_INDEX => "msix",
        sys::VFIO_PCI_ERR_IRQ_INDEX => "err",
        sys::VFIO_PCI_REQ_IRQ_INDEX => "req",
        _ => "other",
    }
}

#[test]
#[ignore = "needs a VFIO guest: run tests/vm/run"]
fn device_info_seeds() {
    println!();
    let k = kernel_tag();
    let v = Vfio::open(1);
    let d = v.dev();
    let (bdf, g) = &rig::devices_with_groups()[0];
    let dev = &d.file;

    // VFIO_DEVICE_GET_INFO, both of the crate's buffers.
    let info = device_info(dev, DEVICE_INFO_BUF).expect("VFIO_DEVICE_GET_INFO");
    let parsed = fuzzing::parse_device_info(&info).expect("the crate refuses the device info");
    println!(
        "device info: flags {:#x}, {} regions, {} IRQ indexes",
        parsed.flags, parsed.num_regions, parsed.num_irqs
    );
    emit("device_info", &format!("seed-{k}-edu-device-info"), &info);
    let with_room =
        device_info(dev, DEVICE_INFO_CAPS_BUF).expect("VFIO_DEVICE_GET_INFO, 4096 bytes");
    let ids = fuzzing::parse_device_capability_ids(&with_room)
        .expect("the crate refuses the device info with room for capabilities");
    println!("device info capabilities: {ids:?}");
    emit(
        "device_info",
        &format!("seed-{k}-edu-device-info-buf{DEVICE_INFO_CAPS_BUF}"),
        &with_room,
    );
    if parsed.flags & sys::VFIO_DEVICE_FLAGS_CAPS != 0 {
        emit(
            "cap_chain",
            &format!("seed-{k}-edu-device-info"),
            &cap_chain_input(&with_room, u32_at(&with_room, 16), DEVICE_INFO_FIXED),
        );
    }

    // Every region index; the ones the kernel refuses are not seeds.
    for index in 0..parsed.num_regions {
        let label = format!("{index}-{}", region_label(index));
        let bytes = match region_info(dev, index) {
            Ok(b) => b,
            Err(e) => {
                println!("region {label}: refused: {e} ({})", e as i32);
                continue;
            }
        };
        let r = fuzzing::parse_region_info(&bytes)
            .unwrap_or_else(|e| panic!("region {label}: the crate refuses the answer: {e}"));
        assert_eq!(r.index, index, "region {label}: index");
        println!(
            "region {label}: flags {:#x}, size {:#x}, offset {:#x}, argsz {}",
            r.flags,
            r.size,
            r.offset,
            u32_at(&bytes, 0)
        );
        emit(
            "region_info",
            &format!("seed-{k}-edu-region-{label}"),
            &bytes,
        );
        if r.flags & sys::VFIO_REGION_INFO_FLAG_CAPS != 0 {
            emit(
                "cap_chain",
                &format!("seed-{k}-edu-region-{label}"),
                &cap_chain_input(&bytes, u32_at(&bytes, 12), REGION_INFO_FIXED),
            );
        }
    }

    // Every IRQ index.
    for index in 0..parsed.num_irqs {
        let label = format!("{index}-{}", irq_label(index));
        let bytes = match irq_info(dev, index) {
            Ok(b) => b,
            Err(e) => {
                println!("IRQ {label}: refused: {e} ({})", e as i32);
                continue;
            }
        };
        let irq = fuzzing::parse_irq_info(index, &bytes)
            .unwrap_or_else(|e| panic!("IRQ {label}: the crate refuses the answer: {e}"));
        println!("IRQ {label}: flags {:#x}, count {}", irq.flags, irq.count);
        emit("device_info", &format!("seed-{k}-edu-irq-{label}"), &bytes);
    }

    // The hot-reset list holds group numbers: they differ with and without
    // an IOMMU. On a root bus (ppce500) there is no list: the kernel
    // refuses (ENODEV, see rig::on_root_bus), so no seed.
    if rig::on_root_bus(bdf) {
        let e = hot_reset_info(dev).expect_err("VFIO_DEVICE_GET_PCI_HOT_RESET_INFO on a root bus");
        assert_eq!(e, Errno::ENODEV, "hot-reset info on a root bus");
        println!("hot reset info: refused on a root bus: {e}");
        return;
    }
    let bytes = hot_reset_info(dev).expect("VFIO_DEVICE_GET_PCI_HOT_RESET_INFO");
    let devices =
        fuzzing::parse_hot_reset_info(&bytes).expect("the crate refuses the hot-reset info");
    println!("hot reset info: {devices:?}");
    let (seg, bus, devfn) = bus_devfn(bdf);
    assert!(
        devices
            .iter()
            .any(|x| (x.segment, x.bus, x.devfn, x.group_id) == (seg, bus, devfn, group_number(g))),
        "{bdf} (group {g}) is not in its own hot-reset list"
    );
    let kind = match rig::iommu() {
        IommuKind::NoIommu => "noiommu",
        _ => "iommu",
    };
    // The list holds the group number, which differs on aarch64 (the SMMU
    // and the root ports take other groups first).
    emit(
        "device_info",
        &format!("seed-{k}{}-{kind}-edu-hot-reset-info", arch_qualifier()),
        &bytes,
    );
}
