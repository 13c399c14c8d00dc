//! ABI oracle: a C compiler's view of `headers/` against `typed_vfio::sys`.
//!
//! build.rs derives, from the bindings' own item list, a C program that prints
//! every integer constant (request codes included), struct size, alignment
//! and named field offset, and a Rust table of the same entries evaluated
//! through `typed_vfio::sys`. This test compiles the C program with `cc`
//! against the same headers, runs it, and requires the two to agree entry for
//! entry.

use std::collections::BTreeMap;
use std::path::Path;

#[path = "support/c_program.rs"]
mod c_program;
use c_program::{CValue, parse_c_output};

include!(env!("TYPED_VFIO_ABI_ITEMS"));

/// One disagreement between the two sides.
#[derive(Debug, PartialEq, Eq)]
enum Mismatch {
    Value { key: String, rust: u64, c: u64 },
    OnlyInRust(String),
    OnlyInC(String),
}

/// Whether a C value means the same as a Rust value of `width` bytes (0 for
/// sizes and offsets, which must be equal outright).
///
/// A C macro like `(1 << 31)` is a negative `int` while bindgen gives it a
/// `u32`; both store the same 32 bits. So a constant agrees when the C value
/// fits the Rust type's width (as a signed value if C made it negative, as an
/// unsigned one otherwise) and its bits at that width equal the Rust value.
fn agrees(rust: u64, width: usize, c: CValue) -> bool {
    if width == 0 || width >= 8 {
        return rust == c.bits;
    }
    let bits = 8 * width as u32;
    let mask = (1u64 << bits) - 1;
    let fits = if c.negative {
        (c.bits as i64) >= -(1i64 << (bits - 1))
    } else {
        c.bits <= mask
    };
    // The Rust side is `value as u64`, sign-extended for signed types.
    fits && (c.bits & mask) == (rust & mask)
}

/// Every disagreement between the Rust table and the C output.
fn compare(rust: &[(&str, u64, usize)], c: &BTreeMap<String, CValue>) -> Vec<Mismatch> {
    let mut out = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for &(key, value, width) in rust {
        seen.insert(key);
        match c.get(key) {
            None => out.push(Mismatch::OnlyInRust(key.to_string())),
            Some(&cv) if !agrees(value, width, cv) => out.push(Mismatch::Value {
                key: key.to_string(),
                rust: value,
                c: cv.bits,
            }),
            Some(_) => {}
        }
    }
    for key in c.keys() {
        if !seen.contains(key.as_str()) {
            out.push(Mismatch::OnlyInC(key.clone()));
        }
    }
    out
}

fn run_c_oracle() -> String {
    // The pinned headers, this target's asm/ first.
    c_program::compile_and_run(
        "abi_oracle",
        Path::new(env!("TYPED_VFIO_ABI_ORACLE_C")),
        &[c_program::arch_headers(), c_program::headers()],
    )
}

#[test]
fn sys_matches_the_c_compiler() {
    let c = parse_c_output(&run_c_oracle()).expect("ABI oracle: parse C output");
    let mismatches = compare(ABI_ITEMS, &c);
    let count = |kind: &str| {
        ABI_ITEMS
            .iter()
            .filter(|(k, _, _)| k.starts_with(kind))
            .count()
    };
    eprintln!(
        "ABI oracle compared {} items: {} constants, {} struct sizes, {} alignments, {} field offsets",
        ABI_ITEMS.len(),
        count("const "),
        count("size "),
        count("align "),
        count("offset "),
    );
    assert!(
        mismatches.is_empty(),
        "ABI oracle: {} mismatches between typed_vfio::sys and the C compiler:\n{mismatches:#?}",
        mismatches.len()
    );
}

#[test]
fn oracle_covers_every_request_code_and_the_type2_abi() {
    let keys: Vec<&str> = ABI_ITEMS.iter().map(|(k, _, _)| *k).collect();
    for needed in [
        "const VFIO_IOMMU_MAP_DMA",
        "const VFIO_DEVICE_SET_IRQS",
        "const VFIO_DEVICE_ATTACH_IOMMUFD_PT",
        "const IOMMU_IOAS_MAP",
        "const VFIO_FSL_PAMU_IOMMU_SDK",
        "const VFIO_FSL_PAMU_IOMMU_OPENIL",
        "const VFIO_IOMMU_PAMU_GET_ATTR",
        "const VFIO_IOMMU_PAMU_SET_ATTR",
        "const VFIO_IOMMU_PAMU_GET_MSI_BANK_COUNT",
        "const VFIO_IOMMU_PAMU_MAP_MSI_BANK",
        "const VFIO_IOMMU_PAMU_UNMAP_MSI_BANK",
        "const VFIO_ATTR_GEOMETRY",
        "size vfio_pamu_attr",
        "offset vfio_pamu_attr.attr_info",
        "offset vfio_pamu_msi_bank_map.iova",
        "size vfio_pamu_msi_bank_unmap",
        "offset vfio_region_info_cap_type.type",
    ] {
        assert!(keys.contains(&needed), "ABI oracle does not cover {needed}");
    }
    // Every `_IO` request in the headers is a constant the oracle compares.
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut requests = 0;
    for header in [
        "headers/linux/vfio.h",
        "headers/linux/iommufd.h",
        "headers/vfio_type2.h",
    ] {
        // A definition may continue on the next line (`\` at the end).
        let text = std::fs::read_to_string(manifest.join(header))
            .unwrap()
            .replace("\\\n", " ");
        for line in text.lines() {
            let mut words = line.split_whitespace();
            if let (Some("#define"), Some(name), Some(value)) =
                (words.next(), words.next(), words.next())
                && value.starts_with("_IO(")
            {
                requests += 1;
                let key = format!("const {name}");
                assert!(
                    keys.contains(&key.as_str()),
                    "ABI oracle does not cover request {name}"
                );
            }
        }
    }
    assert_eq!(requests, 60, "request codes found in headers/");
}

// The comparison itself must fail loudly: each kind of disagreement is found.
#[test]
fn compare_reports_value_and_presence_mismatches() {
    let rust = [("const A", 1, 4), ("size s", 8, 0), ("offset s.x", 4, 0)];
    let c = parse_c_output("const A 1 0\nsize s 16 0\nconst B 2 0\n").unwrap();
    let found = compare(&rust, &c);
    assert_eq!(
        found,
        vec![
            Mismatch::Value {
                key: "size s".into(),
                rust: 8,
                c: 16
            },
            Mismatch::OnlyInRust("offset s.x".into()),
            Mismatch::OnlyInC("const B".into()),
        ]
    );
    let agree = parse_c_output("const A 1 0\nsize s 8 0\noffset s.x 4 0\n").unwrap();
    assert!(compare(&rust, &agree).is_empty());
}

#[test]
fn constants_agree_by_bits_at_the_rust_width_only_when_the_value_fits() {
    let neg_int_min = CValue {
        bits: (-(1i64 << 31)) as u64,
        negative: true,
    };
    // C `(1 << 31)` (int) vs Rust `0x8000_0000u32`: same 32 bits.
    assert!(agrees(0x8000_0000, 4, neg_int_min));
    // ...but not in a 2-byte Rust type, nor as a different value.
    assert!(!agrees(0x0000, 2, neg_int_min));
    assert!(!agrees(0x7fff_ffff, 4, neg_int_min));
    // An unsigned C value wider than the Rust type does not fit.
    assert!(!agrees(
        0,
        4,
        CValue {
            bits: 1 << 32,
            negative: false
        }
    ));
    assert!(agrees(
        7,
        4,
        CValue {
            bits: 7,
            negative: false
        }
    ));
    // Sizes and offsets must be equal outright.
    assert!(!agrees(
        8,
        0,
        CValue {
            bits: 16,
            negative: false
        }
    ));
    // C `-1` (int) vs Rust `-1i32` (sign-extended to u64 in the table).
    assert!(agrees(
        u64::MAX,
        4,
        CValue {
            bits: u64::MAX,
            negative: true
        }
    ));
    // 64-bit constants: the same 64 bits.
    assert!(agrees(
        u64::MAX,
        8,
        CValue {
            bits: u64::MAX,
            negative: false
        }
    ));
    assert!(!agrees(
        1,
        8,
        CValue {
            bits: 2,
            negative: false
        }
    ));
}

#[test]
fn parse_rejects_malformed_and_duplicate_lines() {
    assert!(parse_c_output("const A 1\n").is_err());
    assert!(parse_c_output("const A x 0\n").is_err());
    assert!(parse_c_output("const A 1 2\n").is_err());
    assert!(parse_c_output("const A 1 0\nconst A 1 0\n").is_err());
}
