//! `VFIO_DEVICE_SET_IRQS` encoding from structured input: the bytes decode
//! back to the input, `argsz` equals their length, the data matches the
//! count, and the kernel seam's shape check accepts them (and refuses them
//! truncated).
#![no_main]

use arbitrary::Arbitrary;
use fuzz_oracle::{i32_at, u32_at};
use libfuzzer_sys::fuzz_target;
use typed_vfio::fuzzing::{self, IrqSetData, SeamRequest};
use typed_vfio::sys;

#[derive(Arbitrary, Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    Trigger,
    Mask,
    Unmask,
}

impl Action {
    fn flag(self) -> u32 {
        match self {
            Action::Trigger => sys::VFIO_IRQ_SET_ACTION_TRIGGER,
            Action::Mask => sys::VFIO_IRQ_SET_ACTION_MASK,
            Action::Unmask => sys::VFIO_IRQ_SET_ACTION_UNMASK,
        }
    }
}

#[derive(Arbitrary, Debug)]
enum Data {
    None(u32),
    Bools(Vec<bool>),
    EventFds(Vec<i32>),
}

#[derive(Arbitrary, Debug)]
struct Input {
    index: u32,
    start: u32,
    action: Action,
    data: Data,
}

/// Decodes a `vfio_irq_set` from its uapi layout: argsz, flags, index,
/// start, count (u32 each), then `count` bools (one byte) or eventfds (i32).
fn decode(b: &[u8]) -> Option<(u32, Action, u32, IrqSetData)> {
    let argsz = u32_at(b, 0)? as usize;
    let flags = u32_at(b, 4)?;
    let index = u32_at(b, 8)?;
    let start = u32_at(b, 12)?;
    let count = u32_at(b, 16)? as usize;
    if argsz != b.len() {
        return None;
    }
    let action = match flags & 0x38 {
        0x08 => Action::Mask,
        0x10 => Action::Unmask,
        0x20 => Action::Trigger,
        _ => return None,
    };
    let tail = &b[20..];
    let data = match flags & 0x7 {
        0x1 if tail.is_empty() => IrqSetData::None(count as u32),
        0x2 if tail.len() == count => IrqSetData::Bool(
            tail.iter()
                .map(|&v| match v {
                    0 => Some(false),
                    1 => Some(true),
                    _ => None,
                })
                .collect::<Option<_>>()?,
        ),
        0x4 if tail.len() == 4 * count => {
            IrqSetData::EventFds((0..count).map(|i| i32_at(tail, 4 * i).unwrap()).collect())
        }
        _ => return None,
    };
    if flags & !0x3f != 0 {
        return None;
    }
    Some((index, action, start, data))
}

fuzz_target!(|input: Input| {
    let data = match input.data {
        Data::None(count) => IrqSetData::None(count),
        Data::Bools(b) => IrqSetData::Bool(b),
        Data::EventFds(f) => IrqSetData::EventFds(f),
    };
    let bytes = fuzzing::encode_irq_set(input.index, input.action.flag(), input.start, &data)
        .expect("encoding refused a representable argument");
    assert_eq!(
        u32_at(&bytes, 0),
        Some(bytes.len() as u32),
        "argsz != bytes"
    );
    let back = decode(&bytes).expect("encoded bytes do not decode");
    assert_eq!(back, (input.index, input.action, input.start, data));
    assert_eq!(fuzzing::check_shape(SeamRequest::SetIrqs, &bytes), Ok(()));
    if bytes.len() > 20 {
        // argsz past the buffer: the seam must refuse it.
        assert!(fuzzing::check_shape(SeamRequest::SetIrqs, &bytes[..bytes.len() - 1]).is_err());
    }
    assert!(fuzzing::check_shape(SeamRequest::SetIrqs, &bytes[..bytes.len().min(19)]).is_err());
});
