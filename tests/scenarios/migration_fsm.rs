//! The migration state machine, probed raw, on any migratable device: from
//! each state reachable by one `SET` from RUNNING, a `SET` of every value
//! (the seven states, ERROR, and 8, no state), recording what the kernel
//! answers (success, and whether a data fd came back; or the errno) and the
//! state it reports after. The guest records it on mtty
//! (`tests/vm_guest/mdev.rs`), `tests/migration.rs` runs it on the
//! simulator's migratable edu and compares.
//!
//! No stream is written: leaving RESUMING fails on both (nothing to load).

use typed_vfio::Device;
use typed_vfio::migration::{MigState, MigrationError};

const NAMES: [(u32, &str); 9] = [
    (0, "ERROR"),
    (1, "STOP"),
    (2, "RUNNING"),
    (3, "STOP_COPY"),
    (4, "RESUMING"),
    (5, "RUNNING_P2P"),
    (6, "PRE_COPY"),
    (7, "PRE_COPY_P2P"),
    (8, "8"),
];

fn name(raw: u32) -> String {
    NAMES
        .iter()
        .find(|(r, _)| *r == raw)
        .map_or_else(|| raw.to_string(), |(_, n)| (*n).to_owned())
}

fn answer(r: Result<Option<std::os::fd::OwnedFd>, MigrationError>) -> String {
    match r {
        Ok(Some(_)) => "ok fd".into(),
        Ok(None) => "ok".into(),
        Err(MigrationError::Ioctl { errno, .. }) => format!("{errno:?}"),
        Err(e) => format!("typed: {e}"),
    }
}

fn now(d: &Device) -> String {
    match d.migration_state() {
        Ok(s) => name(s.raw()),
        Err(e) => format!("typed: {e}"),
    }
}

/// The matrix, one `key = value` line each (`migfsm.<from>.<to> = <answer>,
/// now <state>`). `reset` must return the device to RUNNING.
pub fn matrix(d: &Device, reset: &dyn Fn(&Device)) -> Vec<String> {
    let mut out = Vec::new();
    for from in 1..8u32 {
        reset(d);
        if from != 2 {
            let r = answer(d.set_migration_state(MigState::from_raw(from)));
            if r != "ok" && r != "ok fd" {
                out.push(format!("migfsm.{} = unreachable: {r}", name(from)));
                continue;
            }
        }
        for to in 0..9u32 {
            reset(d);
            if from != 2 {
                // Reached as above (the answer is recorded once, above).
                let _ = d.set_migration_state(MigState::from_raw(from));
            }
            let r = answer(d.set_migration_state(MigState::from_raw(to)));
            out.push(format!(
                "migfsm.{}.{} = {r}, now {}",
                name(from),
                name(to),
                now(d)
            ));
        }
    }
    reset(d);
    out
}
