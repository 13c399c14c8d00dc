//! In-guest tests: run inside a QEMU guest by `tests/vm/run`, never on the host.
//!
//! Every test is `#[ignore = "needs a VFIO guest: run tests/vm/run"]`, so a
//! plain `cargo test` on the host lists them as ignored. The guest's `/init`
//! binds the QEMU `edu` devices to vfio-pci and runs this binary with
//! `--ignored --test-threads=1 --nocapture`; the configuration is described
//! by environment variables, read through [`rig`].
//!
//! Add tests as modules next to this file (`mod something;` below), each test
//! a `#[test] #[ignore = "needs a VFIO guest: run tests/vm/run"]` fn.

mod alloc_count;
mod rig;

/// Counts heap allocations so the typed API's hot paths can be shown to
/// make none (see `alloc_count`).
#[global_allocator]
static ALLOCATOR: alloc_count::Counting = alloc_count::Counting;

mod edu;
mod le_device;
mod mdev;
mod nvme;
mod raw;
mod sanity;
mod scenarios;
mod seeds;
mod typed;
