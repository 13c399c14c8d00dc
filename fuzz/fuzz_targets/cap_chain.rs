//! The raw capability-chain walker over arbitrary bytes and first offset:
//! it terminates within `len / 8 + 1` steps, every capability it yields lies
//! inside the buffer, past the fixed struct, moving forward, and it agrees
//! with the reference walk. Input: `first` (u32), `fixed` (u8), buffer.
#![no_main]

use fuzz_oracle::{ref_walk, u32_at};
use libfuzzer_sys::fuzz_target;
use typed_vfio::fuzzing::{CapView, walk_cap_chain};

fuzz_target!(|data: &[u8]| {
    if data.len() < 5 {
        return;
    }
    let first = u32_at(data, 0).unwrap();
    let fixed = usize::from(data[4]);
    let buf = &data[5..];
    let bound = buf.len() / 8 + 1;
    let items: Vec<Result<CapView, &str>> =
        walk_cap_chain(buf, first, fixed).take(bound + 1).collect();
    assert!(
        items.len() <= bound,
        "walk took {} steps over {} bytes",
        items.len(),
        buf.len()
    );
    let mut prev: Option<CapView> = None;
    for (i, item) in items.iter().enumerate() {
        match item {
            Ok(cap) => {
                assert!(cap.offset >= fixed, "capability inside the fixed struct");
                assert!(cap.offset.is_multiple_of(4));
                assert!(cap.offset + 8 <= buf.len(), "header outside the buffer");
                assert!(
                    cap.offset + cap.len <= buf.len(),
                    "capability outside the buffer"
                );
                if let Some(p) = prev {
                    assert!(cap.offset >= p.offset + 8, "walk did not move forward");
                    assert!(p.offset + p.len <= cap.offset || p.offset + p.len == buf.len());
                }
                prev = Some(*cap);
            }
            Err(_) => assert_eq!(i, items.len() - 1, "walk went on after an error"),
        }
    }
    let (reference, failed) = ref_walk(buf, first, fixed);
    let ours: Vec<(u16, usize, usize)> = items
        .iter()
        .flatten()
        .map(|c| (c.id, c.offset, c.offset + c.len))
        .collect();
    let theirs: Vec<(u16, usize, usize)> =
        reference.iter().map(|c| (c.id, c.offset, c.end)).collect();
    assert_eq!(ours, theirs);
    assert_eq!(items.last().is_some_and(|i| i.is_err()), failed);
});
