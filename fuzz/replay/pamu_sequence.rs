//! The `pamu_sequence` fuzz target's reference model, run over its seeds
//! (built in code, encoded and decoded) and over every committed input
//! (`fuzz/corpus/pamu_sequence/seed-*` and `fuzz/regressions/pamu_sequence/*`),
//! without libFuzzer: `tests/cross/run` runs it on powerpc and powerpc64
//! under qemu-user, where the PAMU lives. Each input is checked exactly as
//! the fuzz target checks it (strict and SDK modes, every outcome, request
//! and mapping against the model); a failure panics with the input's name.

use std::path::Path;

use arbitrary::{Arbitrary, Unstructured};

#[path = "../fuzz_targets/pamu_sequence/model.rs"]
mod model;

/// The committed inputs of `dir` whose names pass `keep`, sorted.
fn inputs(dir: &Path, keep: impl Fn(&str) -> bool) -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.expect("a directory entry"))
        .filter_map(|entry| {
            let name = entry.file_name().into_string().ok()?;
            keep(&name).then(|| (name, std::fs::read(entry.path()).expect("read an input")))
        })
        .collect();
    out.sort();
    out
}

/// One test: the model checks that each input leaves the process's fd
/// count as it found it, which a second test running alongside would upset.
#[test]
fn the_seeds_and_the_committed_inputs_run_clean() {
    model::init();
    seeds_round_trip_and_run_clean();
    committed_inputs_run_clean();
    generated_inputs_run_clean();
}

/// Inputs of a fixed pseudo-random byte stream (xorshift64*, the same on
/// every host), so the model meets more than the handful committed: 300 of
/// them, 16 to 527 bytes each.
fn generated_inputs_run_clean() {
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        state.wrapping_mul(0x2545_f491_4f6c_dd1d)
    };
    let mut ran = 0;
    for _ in 0..300 {
        let len = 16 + (next() % 512) as usize;
        let bytes: Vec<u8> = (0..len).map(|_| (next() >> 56) as u8).collect();
        if let Ok(input) = model::Input::arbitrary_take_rest(Unstructured::new(&bytes)) {
            model::one(&input);
            ran += 1;
        }
    }
    assert!(ran >= 100, "only {ran} of 300 generated inputs decoded");
    eprintln!("pamu_sequence: {ran} generated inputs ran clean");
}

fn seeds_round_trip_and_run_clean() {
    let seeds = model::checked_seeds();
    assert!(!seeds.is_empty());
    eprintln!(
        "pamu_sequence: {} seeds built, round-tripped, ran clean",
        seeds.len()
    );
}

fn committed_inputs_run_clean() {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    // Only the committed seeds: `cargo fuzz run` adds its finds to the same
    // directory, and they are not kept (.gitignore).
    let mut all = inputs(&fuzz.join("corpus/pamu_sequence"), |n| {
        n.starts_with("seed-")
    });
    let seeds = all.len();
    all.extend(inputs(&fuzz.join("regressions/pamu_sequence"), |_| true));
    assert!(
        seeds >= 3,
        "the committed seeds are missing ({seeds} found)"
    );
    assert!(all.len() > seeds, "the regression inputs are missing");
    for (name, bytes) in &all {
        // libFuzzer's driver skips an input that does not decode; every
        // committed one must.
        let input = model::Input::arbitrary_take_rest(Unstructured::new(bytes))
            .unwrap_or_else(|e| panic!("{name}: does not decode: {e}"));
        eprintln!("pamu_sequence: {name}");
        model::one(&input);
    }
    eprintln!("pamu_sequence: {} committed inputs ran clean", all.len());
}
