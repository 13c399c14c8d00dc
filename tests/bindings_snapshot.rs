//! The committed bindings snapshot (used when libclang is absent) must be
//! byte-identical to what bindgen generates from `headers/` now.
//!
//! When this build itself used the snapshot there is nothing fresh to compare
//! with: the test says so loudly, and fails if `TYPED_VFIO_REQUIRE_FRESH_BINDINGS`
//! is set (CI sets it on the machine where libclang is installed).

use std::path::Path;

#[test]
fn snapshot_equals_fresh_generation() {
    // The build script names the snapshot of this target's ABI (one per
    // architecture and byte order: bindings_powerpc64le.rs, ...).
    let arch = std::env::consts::ARCH;
    let snapshot_path = Path::new(env!("CARGO_MANIFEST_DIR")).join(env!("TYPED_VFIO_SNAPSHOT"));
    if typed_vfio::sys::BINDINGS_SOURCE != "generated" {
        let msg = format!(
            "NOT COMPARED: this build used the committed snapshot ({}), so no fresh bindgen output exists to compare with {}",
            typed_vfio::sys::BINDINGS_SOURCE,
            snapshot_path.display()
        );
        assert!(
            std::env::var_os("TYPED_VFIO_REQUIRE_FRESH_BINDINGS").is_none(),
            "{msg}"
        );
        eprintln!("\n*** {msg} ***\n");
        return;
    }
    let fresh =
        std::fs::read_to_string(env!("TYPED_VFIO_BINDINGS_FILE")).expect("read fresh bindings");
    let snapshot = std::fs::read_to_string(&snapshot_path)
        .unwrap_or_else(|e| panic!("no snapshot for {arch} at {}: {e}", snapshot_path.display()));
    if fresh != snapshot {
        let line = fresh
            .lines()
            .zip(snapshot.lines())
            .position(|(a, b)| a != b)
            .map_or(
                fresh.lines().count().min(snapshot.lines().count()) + 1,
                |n| n + 1,
            );
        panic!(
            "{} differs from a fresh generation from line {line} on ({} vs {} lines). Regenerate with \
             `TYPED_VFIO_WRITE_SNAPSHOT=1 TYPED_VFIO_BINDGEN=generate cargo build`",
            snapshot_path.display(),
            snapshot.lines().count(),
            fresh.lines().count()
        );
    }
}
