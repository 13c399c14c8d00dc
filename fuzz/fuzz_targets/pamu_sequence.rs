//! The `pamu_sequence` fuzz target: type2 typed-API sequences on the
//! simulated PAMU against a reference model (`pamu_sequence/model.rs`, which
//! says what is checked).
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "pamu_sequence/model.rs"]
mod model;

fuzz_target!(
    init: {
        model::init();
    },
    |input: model::Input| {
        model::one(&input);
    }
);
