//! Nothing: the package exists for its test (`pamu_sequence.rs`).
