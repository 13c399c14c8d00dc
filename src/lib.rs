//! # typed-vfio
//!
//! Safe, typestate Rust bindings for Linux VFIO, including the Freescale PAMU
//! ("type2") IOMMU extension of the Freescale/NXP SDK kernels (see the
//! [type2 chapter](type2)).
//!
//! ## VFIO in two paragraphs
//!
//! VFIO lets a user-space program own a device. The program opens a
//! *container* (`/dev/vfio/vfio`), an IOMMU context; it attaches one or more
//! IOMMU *groups* (`/dev/vfio/N`) — the smallest sets of devices the IOMMU can
//! isolate, all of whose devices must be bound to a VFIO driver (the group is
//! then *viable*); it selects the container's IOMMU model (type1, type1v2,
//! or no-IOMMU); and only then may it open *devices* of those groups.
//!
//! Through a device fd it reads the device's regions (PCI BARs, config
//! space) with `pread`/`pwrite` or `mmap`, routes its interrupts to eventfds,
//! and resets it. DMA is confined by the IOMMU to what the program mapped
//! through the container: `MAP_DMA` gives the device an IOVA window onto
//! process memory, which the device may then read or write at any moment
//! until it is unmapped — the reason the crate treats DMA memory so carefully.
//!
//! ## The state diagram
//!
//! ```text
//!  Container::open()        attach(group)             set_iommu::<M>()
//! ─────────▶ Container<Unset> ─────────▶ Container<Attached> ─────────▶ Container<M>
//!                 ▲                        attach_more(group)            attach_more(group)
//!                 │                                                      open_device(name) → Device
//!                 │                                                      map(&buf) → DmaMapping<'_>   (M: DmaModel)
//!                 └────────────────────── release_groups() ◀─────────────┘
//! ```
//!
//! `M` is [`Type1`], [`Type1v2`] (both [`DmaModel`]s) or [`NoIommu`]. Every
//! transition that consumes the container hands it back inside its error on
//! failure ([`AttachError`], [`SetIommuError`]).
//!
//! The Freescale PAMU takes its own branch from `Container<Attached>`:
//! `set_iommu_type2(PamuPlatform)` → [`Type2`]`<Fresh>` → `set_geometry` →
//! `Type2<HasGeometry>` → `set_windows` → `Type2<Ready>` (MSI banks and DMA
//! of whole windows); the [type2 chapter](type2) has its history, its
//! diagram and its own rule table.
//!
//! The kernel's current interface, iommufd and the device cdev, has its own
//! objects ([`iommufd`]):
//!
//! ```text
//! Iommufd::open() ── alloc_ioas() ──▶ Ioas ── map(&buf) / map_anywhere(&buf) ──▶ IoasMapping<'_, '_, '_>
//!                                     │  └── allow_iovas(&[IovaRange])   (where map_anywhere / copy_anywhere land)
//!                                     └── copy(&mapping) / copy_anywhere(&mapping) ──▶ IoasMapping (same buffer, this IOAS)
//! CdevDevice::open_pci(addr) ── bind(&Iommufd) ──▶ BoundDevice ── attach(&Ioas) / detach()
//!                                                    ├── hot_reset_info() / hot_reset()   (no group fds)
//!                                                    └── derefs to Device (regions, IRQs, resets)
//! ```
//!
//! Migration v2 ([`migration`]) is a state machine of its own on a device:
//! `device.migration::<Caps>()` gives a `Migration<Running, Caps>`, and
//! `to::<State>()` takes only the kernel's arcs, the data fd readable in the
//! saving states and writable in `Resuming`. Around it: mediated devices
//! created through sysfs ([`mdev`]), dirty-page tracking by the IOMMU or by
//! the device ([`dirty`]), and an IOVA allocator over the usable ranges
//! ([`iova`]).
//!
//! ## Kernel ordering rules and where they are enforced
//!
//! | kernel rule | enforced | by |
//! | --- | --- | --- |
//! | `SET_IOMMU` needs a group attached (else `EINVAL`) | compile time | `set_iommu` exists only on `Container<Attached>` (`set_iommu_without_group`) |
//! | `SET_IOMMU` once (else `EINVAL`: the container has a driver already) | compile time | no `set_iommu` on `Container<M>` (`set_iommu_twice`); models are the kernel's (`set_iommu_not_a_model`, `sealed_container_state`, `sealed_iommu_model`) |
//! | device fds only after `SET_IOMMU` | compile time | `open_device` only on `Container<M: IommuModel>` (`open_device_before_set_iommu`) |
//! | DMA map/unmap and `IOMMU_GET_INFO` need a type1 model | compile time | only on `Container<M: DmaModel>` (`dma_map_on_unset`, `dma_map_on_attached`, `iommu_info_on_unset`) |
//! | no DMA mapping in no-IOMMU mode | compile time | `NoIommu` is not a `DmaModel` (`dma_map_on_noiommu`, `noiommu_dma_model`) |
//! | mapped memory must stay valid while mapped | compile time | [`DmaMapping`] borrows the [`DmaBuffer`] (`drop_buffer_while_mapped`, `mapping_outlives_buffer_return`, `mapping_outlives_buffer_scope`) |
//! | the last group leaving drops every mapping | compile time | `release_groups(self)` while a guard borrows the container (`release_groups_while_mapped`, `map_after_release_groups`) |
//! | mappings live until the last group leaves (closing the container fd alone ends none while a group holds it); the container's teardown detaches its groups, which ends them | compile time | the guard borrows the container, so the container cannot be dropped (and its groups cannot leave) under it (`drop_container_while_mapped`, `mapping_outlives_container`); the kernel's behaviour: `raw::iommu::mappings_outlive_the_container_fd_and_end_when_the_last_group_leaves` in the guest |
//! | unmap-all removes mappings guards rely on | compile time | `unmap_all(&mut self)` (`unmap_all_while_mapped`) |
//! | requests belong to one fd class (numbers are reused across classes) | compile time | separate types; `sys` takes [`sys::ContainerFd`]/[`sys::GroupFd`]/[`sys::DeviceFd`] (`container_reset`, `group_reset`, `device_map`, `device_set_iommu`, `device_group_status`, `attach_device_as_group`, `region_reset`, `region_set_irq_eventfd`) |
//! | a BAR mmap must not outlive its device | compile time | [`MappedRegion`] borrows the [`Device`] (`mapped_region_outlives_device`) |
//! | DMA memory is written by the device at any time (no data race with the program's accesses) | by construction | every access to a [`DmaBuffer`], the program's and the simulated device's, is a byte-sized atomic access, so the buffer is `Sync` (`pass/buffer_threads`; `tests/dma_race.rs` under Miri and ThreadSanitizer) |
//! | no `&`/`&mut` view of memory a device writes | compile time | [`DmaBuffer`] offers copies and volatile accessors only (`dma_buffer_as_mut_slice`, `dma_buffer_as_slice`, `dma_buffer_deref`, `dma_buffer_index`, `dma_buffer_as_ref`, `dma_buffer_coerce_slice`) |
//! | a group must be viable to attach (`EPERM`) | run time | [`GroupError::NotViable`], checked with `GET_STATUS` before the attach |
//! | a group is in one container at a time (`EINVAL`) | run time | [`GroupError::AlreadyAttached`], checked before the attach |
//! | the model must be offered by the kernel | run time | [`ContainerError::Unsupported`] (`CHECK_EXTENSION` first) |
//! | IOVA and size aligned to the smallest IOMMU page (`EINVAL`) | run time | [`DmaError::Unaligned`] (the kernel's refusal, explained from `GET_INFO`) |
//! | mappings inside the usable IOVA ranges (`EINVAL`) | run time | [`DmaError::OutsideRanges`] (the kernel's refusal, explained from `GET_INFO`) |
//! | no overlapping mappings (`EEXIST`) | run time | [`DmaError::Ioctl`] with the kernel's errno |
//! | a failed unmap leaves the range mapped | run time | [`DmaMapping::unmap`] reports it and [`DmaMapping::try_unmap`] hands the guard back in an [`UnmapError`]; a failed unmap or `Drop` leaves the pages with the container until the kernel confirms the range gone ([`Container::unmap_all`], [`Container::unmap_raw`], the last group leaving; [`Container::orphaned_mappings`]) |
//! | INTx mask/unmask only while the IRQ has an eventfd trigger (`EINVAL`) | run time | [`DeviceError::IrqNotEnabled`] |
//! | region and IRQ indexes exist | run time | [`DeviceError::NoSuchRegion`], [`DeviceError::NoSuchIrq`] |
//! | region accesses in bounds and aligned | run time | [`DeviceError::OutOfBounds`] |
//! | only permitted region accesses (read/write/mmap flags) | run time | [`DeviceError::NotPermitted`] |
//! | a device name must exist in the group | run time | [`GroupError::NoDevice`] with the kernel's errno |
//! | hot reset needs every affected group's fd | run time | [`DeviceError::Ioctl`] with the kernel's errno |
//! | PAMU ("type2") rules: request codes only on PAMU containers, windows after geometry, mappings after windows, no reconfiguration under a mapping, MSI banks before MSI | compile time and run time | see the [type2 chapter's table](type2#rules-and-where-they-are-enforced) (`msi_bank_before_set_iommu`, `msi_bank_on_type1v2`, `pamu_attr_on_type1`, `windows_before_geometry`, `pamu_dma_before_windows`, `pamu_geometry_while_mapped`, `pamu_windows_while_bank_mapped`, `pamu_map_plain_buffer`, `pamu_stash_before_windows`, `pamu_iommu_info`, `pamu_assume_present_without_unsafe`; [`Type2Error`], [`DeviceError::MsiBanksUnmapped`]) |
//! | iommufd: an unbound cdev can only bind (every other request `EINVAL`); a cdev binds once (`EINVAL`) | compile time | [`iommufd::CdevDevice`] has only `bind`, which consumes it; [`iommufd::BoundDevice`] has no `bind` (`iommufd_cdev_region_before_bind`, `iommufd_cdev_irq_before_bind`, `iommufd_cdev_reset_before_bind`, `iommufd_attach_unbound`, `iommufd_double_bind`, `iommufd_bound_device_rebind`) |
//! | iommufd: mapped memory stays valid while mapped; an IOAS lives in its iommufd; destroying or unmapping all of an IOAS ends mappings guards rely on; `IOAS_MAP` of raw memory is the caller's promise | compile time | [`iommufd::IoasMapping`] borrows the [`iommufd::Ioas`] and the buffer, the `Ioas` borrows the [`iommufd::Iommufd`]; `destroy(self)`, `unmap_all(&mut self)`, `unsafe map_raw` (`iommufd_mapping_outlives_buffer`, `iommufd_ioas_outlives_iommufd`, `iommufd_destroy_while_mapped`, `iommufd_unmap_all_while_mapped`, `iommufd_map_raw_without_unsafe`) |
//! | iommufd: a copy (`IOMMU_IOAS_COPY`) maps the buffer until it is unmapped itself, whatever becomes of its source; a copy of raw IOVAs hands devices whatever memory they map | compile time | the copy is an [`iommufd::IoasMapping`] of its own, holding and borrowing the buffer and the destination IOAS (not the source guard or IOAS); `unsafe copy_raw` (`iommufd_copy_outlives_buffer`, `iommufd_copy_outlives_destination`, `iommufd_copy_unmap_all_destination`, `iommufd_copy_raw_without_unsafe`; `pass/iommufd_copy`) |
//! | iommufd: a copy copies what the source IOVAs map now; one request names both IOASes in one iommufd | run time | [`DmaError::Stale`] (the guard's range was unmapped behind its back: [`iommufd::Ioas::unmap_raw`] or a failed unmap), [`DmaError::OtherIommufd`], both before the call |
//! | iommufd: `COPY` over a mapping (`EEXIST`), into a reserved range or unaligned (`EINVAL`), wrapping (`EOVERFLOW`), from a range with a hole (`ENOENT`), device writes to read-only pages (`EPERM`) | run time | [`DmaError::Ioctl`] with the kernel's errno (`typed::iommufd::iommufd_copy_errors_carry_the_kernels_errno`) |
//! | iommufd: allowed IOVAs confine only kernel-chosen ones (none left: `ENOSPC`); one-byte or overlapping ranges (`EINVAL`); ranges over a reserved region, or attaching a device that reserves inside them (`EADDRINUSE`); bounds the kernel would truncate | run time | [`iommufd::IommufdError::Ioctl`]; [`iommufd::IommufdError::BadRange`] before the call for a reversed range or a bound past `unsigned long` (`typed::iommufd::iommufd_allowed_iovas_confine_kernel_chosen_ones`) |
//! | iommufd: a cdev's hot reset passes no group fd (`EINVAL`) and needs every affected device owned by its iommufd (`EINVAL`) | run time | [`iommufd::BoundDevice::hot_reset`] takes none; [`iommufd::BoundDevice::hot_reset_info`] reports each device's [`iommufd::HotResetOwner`] |
//! | iommufd: object ids name objects of one iommufd context: a device bound to one iommufd must not be handed another's IOAS or HWPT id (it would name some other object) | run time, before the call | [`iommufd::IommufdError::OtherIommufd`] from `attach`, `attach_hwpt`, `hw_info`, `alloc_hwpt`; [`DmaError::OtherIommufd`] from `copy` (`tests/sim.rs` `iommufd_objects_of_another_iommufd_are_refused_before_the_call`) |
//! | iommufd: a no-IOMMU device has no cdev | run time | [`iommufd::IommufdError::NoIommu`] from [`iommufd::CdevDevice::open_pci`] |
//! | iommufd: group and cdev exclude each other (`EBUSY`); overlapping maps (`EEXIST`); maps in a reserved range (`EINVAL`) or that wrap (`EOVERFLOW`); unmapping part of a mapping (`ENOENT`); attaching over a reserved region already mapped (`EADDRINUSE`); destroying an IOAS in use (`EBUSY`) | run time | [`iommufd::IommufdError`], [`iommufd::BindError`] (device handed back), [`iommufd::DestroyError`] (IOAS handed back), [`DmaError::Ioctl`], with the kernel's errno (`typed::iommufd::iommufd_errors_carry_the_kernels_errno` in the guest) |
//! | migration: only the arcs of `vfio_mig_get_next_state` (never STOP_COPY → PRE_COPY*, never into ERROR); P2P and PRE_COPY only when `VFIO_DEVICE_FEATURE_MIGRATION` has them; a saving state's data fd is read, RESUMING's written; `PRECOPY_INFO` only in the pre-copy states | compile time (capabilities checked at run time once, when the handle is taken) | [`migration::Migration::to`] bounds (`migration_*` compile-fail cases); [`migration::MigrationError::Unsupported`] |
//! | migration: a reset returns the device to RUNNING | compile time + run time | [`migration::Migration::reset`]; [`Device::reset`] refuses while a handle lives ([`DeviceError::MigrationActive`]) |
//! | dirty tracking needs type1v2 (`EACCES` on type1) | compile time | [`dirty`]'s methods exist only on `Container<Type1v2>` (`dirty_tracking_on_type1`) |
//! | automasked INTx must be unmasked after servicing | documented | [`Device::unmask_irq`]; the kernel cannot be told otherwise |
//! | closing an eventfd does not disarm its trigger | documented | [`Device::disable_irq`] is explicit |
//! | device fds close before their group leaves (`EBUSY`) | run time | [`ReleaseError`] hands the container back in its state with the groups that stayed; the container's `Drop` ignores `EBUSY` (the kernel detaches when the devices close) |
//!
//! The compile-time rules are proved by the compile-fail suite
//! (`tests/compile-fail/`, run by `tests/compile_fail.rs`); the run-time ones
//! by the guest scenarios of `tests/vm_guest/typed.rs` on a real kernel, and
//! by `tests/sim.rs` on the simulated kernel.
//!
//! The rules are VFIO's container's. A kernel built with
//! `CONFIG_IOMMUFD_VFIO_CONTAINER` serves `/dev/vfio/vfio` from iommufd
//! instead (its "compatibility container"), which is laxer: it accepts a
//! second `SET_IOMMU`, device fds and DMA before `SET_IOMMU`, a group that
//! is not viable (refusing its device later), and a group leaving with a
//! device open; its mappings belong to the container fd rather than to the
//! groups. The typed API keeps its own, stricter order there (the
//! compile-time rules and the viability check hold as they are), with two
//! differences a caller sees: [`Container::supports`] answers `true` for
//! [`NoIommu`] (so a wrong `set_iommu::<NoIommu>()` fails at `SET_IOMMU`
//! with `EINVAL`, not as [`ContainerError::Unsupported`]), and
//! [`Container::release_groups`] succeeds with a device open. Mappings made
//! with `map_raw` outlive the last group there; the pages of guards whose
//! unmap failed are released only once no mapping can remain on either
//! kernel. The rig's `compat-type1`/`compat-type1v2` configurations run the
//! container suites on such a kernel (`tests/vm/README.md`).
//!
//! ## Safety model
//!
//! What the types guarantee, with no `unsafe` in the caller's code:
//! - the kernel never reads or writes past an argument buffer: every request
//!   goes through one seam that checks the argument's `argsz` against its
//!   bytes and refuses flags that would make the kernel follow a user pointer;
//! - bytes the kernel returns are parsed as plain data ([`sys::FromBytes`]:
//!   bounds-checked copies into types every bit pattern of which is valid,
//!   proved so by a macro at compile time), and
//!   capability chains are walked forward only (no cycles, bounded);
//! - DMA can only reach a [`DmaBuffer`] while a [`DmaMapping`] guard borrows
//!   it; if a guard is leaked its pages are leaked, and if its unmap fails
//!   they are kept until the kernel confirms the range gone, so a device can
//!   never write reused memory;
//! - every access to DMA memory is a byte-sized atomic access (the crate's
//!   accessors and the simulated device alike), so a device writing while a
//!   thread reads is no data race;
//! - no reference into DMA memory or MMIO is ever handed out: accesses are
//!   copies or volatile, bounds- and alignment-checked;
//! - `Drop` never panics and tears down in order (mapping guards, then groups
//!   leave the container, then the container closes).
//!
//! What is left to the caller: [`Container::map_raw`] (and iommufd's
//! [`iommufd::Ioas::map_raw`] and [`iommufd::Ioas::copy_raw`]) is `unsafe` — a VMM
//! mapping guest memory promises that memory stays valid and that device
//! writes to it are acceptable; what a device does with its DMA engine
//! (which IOVA it is told to use, when Bus Master is on) is the program's
//! business; interrupt masking protocols are device-specific.
//!
//! ## Features
//!
//! All off by default: a dependent compiles the upstream kernel's API only.
//! - `sim`: the [simulated kernel](sim), for tests on machines without VFIO
//!   (the examples here use it);
//! - `type2`: the Freescale PAMU extension ([`type2`]);
//! - `bindgen`: generate [`sys`] from the pinned headers at build time
//!   (libclang needed) instead of the committed snapshot, or from other
//!   headers with `TYPED_VFIO_HEADERS=DIR`.
//!
//! ## Example
//!
//! This runs on the [simulated kernel](sim) (a machine without VFIO, CI,
//! docs.rs). On a real one, open the group with
//! `Group::for_pci_device("0000:01:00.0")?` and the container with
//! `Container::open()?`: the rest is the same code.
//!
//! ```
//! use typed_vfio::{DmaAccess, DmaBuffer, Type1v2, sim::Simulator};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let sim = Simulator::new(); // an edu device at 0000:01:00.0 in group 1
//! let group = sim.open_group_of("0000:01:00.0")?;
//! let container = sim.open_container()?
//!     .attach(group)?
//!     .set_iommu::<Type1v2>()?;
//! let device = container.open_device("0000:01:00.0")?;
//! let bar0 = device.region(0)?;
//! assert_eq!(bar0.read_u32(0)?, 0x010000ed); // edu's ident register
//!
//! let buffer = DmaBuffer::new(4096)?;
//! buffer.write(0, b"hello, device")?;
//! let mapping = container.map(&buffer, 0x10_0000, DmaAccess::ReadWrite)?;
//! // ... tell the device to DMA at mapping.iova() ...
//! drop(mapping); // unmapped here; `buffer` may be freed after this
//! # Ok(())
//! # }
//! ```
#![cfg_attr(docsrs, feature(doc_cfg))]
// The documentation is written for every feature on (as docs.rs builds it):
// with `sim` or `type2` off, its links to them have nothing to point at.
#![cfg_attr(
    not(all(feature = "sim", feature = "type2")),
    allow(rustdoc::broken_intra_doc_links)
)]
#![deny(
    missing_docs,
    unsafe_code,
    unsafe_op_in_unsafe_fn,
    clippy::undocumented_unsafe_blocks,
    clippy::multiple_unsafe_ops_per_block,
    clippy::missing_safety_doc
)]
// Failed transitions hand the original objects back inside the error (the
// container, the group): those errors are large by design, and only the
// error path moves them.
#![allow(clippy::result_large_err)]

#[allow(unsafe_code)]
pub mod sys;

mod abi;
mod caps;
mod container;
mod device;
#[allow(unsafe_code)]
pub mod dirty;
#[allow(unsafe_code)]
mod dma;
mod error;
/// Not part of the API; for fuzz targets only (`fuzz/`). No stability
/// promise of any kind.
#[doc(hidden)]
pub mod fuzzing;
mod group;
#[allow(unsafe_code)]
pub mod iommufd;
pub mod iova;
#[allow(unsafe_code)]
mod kernel;
pub mod mdev;
pub mod migration;
#[allow(unsafe_code)]
mod mmio;
mod msix;
mod region;
#[cfg(feature = "sim")]
pub mod sim;
#[cfg(feature = "type2")]
#[allow(unsafe_code)]
pub mod type2;

pub use container::{
    AttachError, Attached, CONTAINER_PATH, Container, ContainerState, DmaModel, Groups, HasGroups,
    IommuInfo, IommuModel, IovaRange, NoIommu, ReleaseError, SetIommuError, Type1, Type1v2, Unset,
};
pub use device::{Device, DeviceInfo, FeatureSupport, HotResetDevice, IrqInfo, PciIrq};
pub use dma::{DmaAccess, DmaBuffer, DmaMapping, HugePage, UnmapError, page_size};
pub use error::{ContainerError, DeviceError, DmaError, Errno, GroupError};
pub use group::{Group, GroupId, GroupStatus};
pub use msix::Msix;
pub use region::{IoEventData, MappedRegion, Region, RegionInfo, Register32, SparseArea};
#[cfg(feature = "type2")]
pub use type2::{
    Aperture, ContiguousBuffer, MsiBankMapping, PamuId, PamuMapping, PamuPlatform, StashCache,
    Type2, Type2Error, Type2Plan, Type2TransitionError, WindowHolder,
};
