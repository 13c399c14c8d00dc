//! The raw layer: VFIO's C ABI as bindgen generates it from `headers/`.
//!
//! Everything here keeps its C name (`sys::vfio_region_info`,
//! `sys::VFIO_IOMMU_MAP_DMA`, `sys::VFIO_IOMMU_PAMU_MAP_MSI_BANK`, ...). It is
//! public for advanced users who need a request the typed API does not cover;
//! everyone else should use the typed API, which builds these structs, checks
//! what the kernel returns and keeps each request on its own kind of fd.
//!
//! - the generated items are re-exported here: Linux 7.2's `linux/vfio.h` and
//!   `linux/iommufd.h` (see `headers/PROVENANCE`) plus our `vfio_type2.h`
//!   (the Freescale PAMU extension). 7.2 is an ABI superset of the Linux 6.12
//!   uapi the crate was first written for (`headers/linux-6.12/`, checked by
//!   the `uapi_superset` test): the structs the kernel versions by `argsz` or
//!   `size` grew at their ends, and a 6.12 kernel accepts the larger form
//!   with its new fields zero;
//! - [`ContainerFd`], [`GroupFd`], [`DeviceFd`] and [`IommufdFd`] name the
//!   class of an fd: VFIO reuses request numbers across classes
//!   (`VFIO_DEVICE_IOEVENTFD == VFIO_IOMMU_DISABLE`), so each request in
//!   [`ioctl`] takes the class it belongs to, never a bare fd;
//! - every request code is checked at compile time against
//!   `nix::request_code_none!`, and every struct the crate uses against its
//!   absolute size and field offsets (`layout.rs`); the `abi_oracle` test
//!   compares all of it with a C compiler's view of the same headers.

#[allow(
    non_camel_case_types,
    non_upper_case_globals,
    non_snake_case,
    missing_docs,
    dead_code, // an item shadowed by one below when bound against older headers
    unsafe_code,
    unsafe_op_in_unsafe_fn,
    clippy::all,
    clippy::pedantic,
    clippy::undocumented_unsafe_blocks,
    clippy::multiple_unsafe_ops_per_block
)]
mod generated {
    include!(concat!(env!("OUT_DIR"), "/bindings.rs"));
}
pub use generated::*;

/// `VFIO_TYPE1_NESTING_IOMMU`, an IOMMU model id through Linux 6.12 (its
/// type1 driver answers `VFIO_CHECK_EXTENSION` with 1 for it, and the
/// simulator, which models 6.12, does too). A later kernel removed the
/// model: 7.2's `vfio.h` keeps the number reserved as
/// `__VFIO_RESERVED_TYPE1_NESTING_IOMMU`, its type1 answers 0 for it and
/// takes it in `VFIO_SET_IOMMU` as type1v2. The `uapi_superset` test checks
/// this value against 6.12's and 7.2's.
pub const VFIO_TYPE1_NESTING_IOMMU: u32 = 6;

mod fd;
pub(crate) mod file;
pub mod ioctl;
pub(crate) mod layout;
#[doc(hidden)]
pub mod plain;
mod requests;

pub use fd::{ContainerFd, DeviceFd, GroupFd, IommufdFd};
pub use plain::{FromBytes, IntoBytes, SizeError, SliceBytes};

/// Where this build's bindings came from: `"generated"` (bindgen ran against
/// `headers/`) or `"snapshot"` (the committed `src/sys/bindings_<arch>.rs`).
pub const BINDINGS_SOURCE: &str = env!("TYPED_VFIO_BINDINGS_SOURCE");
