//! Generates `src/sys`'s raw bindings from `headers/` with bindgen.
//!
//! bindgen and libclang are needed only with the `bindgen` feature, which
//! this repository's own tests and CI always turn on (a dev-dependency of
//! the crate on itself); a dependent's default build compiles neither and
//! uses the committed snapshot of its target's ABI.
//!
//! Modes, chosen by `TYPED_VFIO_BINDGEN`:
//! - `auto` (default): generate when libclang can be loaded, else use the
//!   committed snapshot for the target architecture and say so with a
//!   `cargo:warning`;
//! - `generate`: generate, and fail the build if libclang is missing;
//! - `snapshot`: use the committed snapshot without trying libclang.
//!
//! `TYPED_VFIO_WRITE_SNAPSHOT=1` with a generating build rewrites the snapshot
//! (the one command that regenerates it:
//! `TYPED_VFIO_WRITE_SNAPSHOT=1 TYPED_VFIO_BINDGEN=generate cargo build`, with
//! `--target` for another architecture).
//!
//! `TYPED_VFIO_HEADERS=DIR` (with the `bindgen` feature) binds against other
//! kernel headers, such as an SDK kernel's `usr/include` or the Linux 6.12
//! baseline kept in `headers/linux-6.12` (CI builds and tests against it;
//! give an absolute path): `DIR` is searched
//! before `headers/`, so its `linux/vfio.h` (and `linux/iommufd.h`, `asm/`
//! headers, when it has them) replace ours, and our `vfio_type2.h` is
//! included only when that `vfio.h` does not define the PAMU requests itself
//! (the SDK kernels' does). The items the crate needs must all be there (the
//! build fails naming the missing one), and the crate's layout assertions
//! then check the ABI it assumes against those headers.
//!
//! Generation reads only `headers/` (and `TYPED_VFIO_HEADERS`): the target's own `asm/` headers under
//! `headers/arch/<kernel arch>/` (`-nostdinc`, so the build machine's
//! `/usr/include` never leaks in), and clang is told the target explicitly
//! (`--target`), so its macro fallback evaluates `_IO` for the target, not
//! for the build machine (rust-bindgen #3352).

use std::env;
use std::fs;
use std::path::{Path, PathBuf};

/// Kernel headers and our own extension header: the only inputs of generation.
const INPUTS: &[&str] = &[
    "headers/wrapper.h",
    "headers/linux/vfio.h",
    "headers/linux/iommufd.h",
    "headers/vfio_type2.h",
];

/// Structs that end in a flexible array member or hold a user pointer. Their
/// Rust form carries a zero-sized `__IncompleteArrayField` or a raw pointer,
/// so they are not plain data: the crate encodes and parses them by their
/// fixed prefix with its own plain mirrors (`abi.rs`), checked against these
/// layouts.
#[cfg(feature = "bindgen")]
const NO_DERIVES: &[&str] = &[
    "vfio_bitmap",
    "vfio_device_feature",
    "vfio_iommu_type1_dirty_bitmap",
    "vfio_iommu_type1_dirty_bitmap_get",
    "vfio_iommu_type1_dma_unmap",
    "vfio_iommu_type1_info_cap_iova_range",
    "vfio_irq_set",
    "vfio_pci_hot_reset",
    "vfio_pci_hot_reset_info",
    "vfio_region_info_cap_sparse_mmap",
];

/// Structs that hold a union: their bytes may include padding under the
/// union's smaller members, so they are readable from any bytes
/// (`sys::FromBytes`) but not viewable as bytes (no `sys::IntoBytes`).
#[cfg(feature = "bindgen")]
const HOLD_UNIONS: &[&str] = &[
    // After 6.12 (7.2's headers have it): `out_data_type` shares a union with
    // `in_data_type`; the crate encodes and parses it through `abi::HwInfo`.
    "iommu_hw_info",
    "vfio_device_gfx_plane_info",
    "vfio_eeh_pe_op",
    "vfio_pamu_attr",
    "vfio_pci_dependent_device",
];

/// Items the crate needs. clang's macro fallback drops a macro it cannot
/// evaluate without a word; checking the output for each name turns that
/// into a build failure that names the item.
#[cfg(feature = "bindgen")]
const REQUIRED: &[&str] = &[
    "VFIO_API_VERSION",
    "VFIO_TYPE1_IOMMU",
    "VFIO_TYPE1v2_IOMMU",
    "VFIO_NOIOMMU_IOMMU",
    "VFIO_UNMAP_ALL",
    "VFIO_GET_API_VERSION",
    "VFIO_CHECK_EXTENSION",
    "VFIO_SET_IOMMU",
    "VFIO_GROUP_GET_STATUS",
    "VFIO_GROUP_SET_CONTAINER",
    "VFIO_GROUP_UNSET_CONTAINER",
    "VFIO_GROUP_GET_DEVICE_FD",
    "VFIO_DEVICE_GET_INFO",
    "VFIO_DEVICE_GET_REGION_INFO",
    "VFIO_DEVICE_GET_IRQ_INFO",
    "VFIO_DEVICE_SET_IRQS",
    "VFIO_DEVICE_RESET",
    "VFIO_DEVICE_GET_PCI_HOT_RESET_INFO",
    "VFIO_DEVICE_PCI_HOT_RESET",
    "VFIO_DEVICE_QUERY_GFX_PLANE",
    "VFIO_DEVICE_GET_GFX_DMABUF",
    "VFIO_DEVICE_IOEVENTFD",
    "VFIO_DEVICE_FEATURE",
    "VFIO_DEVICE_BIND_IOMMUFD",
    "VFIO_DEVICE_ATTACH_IOMMUFD_PT",
    "VFIO_DEVICE_DETACH_IOMMUFD_PT",
    "VFIO_IOMMU_GET_INFO",
    "VFIO_IOMMU_MAP_DMA",
    "VFIO_IOMMU_UNMAP_DMA",
    "VFIO_IOMMU_ENABLE",
    "VFIO_IOMMU_DISABLE",
    "VFIO_IOMMU_DIRTY_PAGES",
    "VFIO_IOMMU_SPAPR_TCE_GET_INFO",
    "VFIO_EEH_PE_OP",
    "VFIO_IOMMU_SPAPR_REGISTER_MEMORY",
    "VFIO_IOMMU_SPAPR_UNREGISTER_MEMORY",
    "VFIO_IOMMU_SPAPR_TCE_CREATE",
    "VFIO_IOMMU_SPAPR_TCE_REMOVE",
    "VFIO_FSL_PAMU_IOMMU_SDK",
    "VFIO_FSL_PAMU_IOMMU_OPENIL",
    "VFIO_IOMMU_PAMU_GET_ATTR",
    "VFIO_IOMMU_PAMU_SET_ATTR",
    "VFIO_IOMMU_PAMU_GET_MSI_BANK_COUNT",
    "VFIO_IOMMU_PAMU_MAP_MSI_BANK",
    "VFIO_IOMMU_PAMU_UNMAP_MSI_BANK",
    "struct vfio_pamu_attr",
    "struct vfio_pamu_msi_bank_map",
    "struct vfio_pamu_msi_bank_unmap",
    "struct vfio_iommu_type1_dma_map",
    "struct vfio_region_info",
];

/// The kernel's name for the architecture (`headers/arch/<name>`), from
/// Rust's `target_arch`.
fn kernel_arch(arch: &str) -> Option<&'static str> {
    Some(match arch {
        "x86_64" | "x86" => "x86",
        "aarch64" => "arm64",
        "arm" => "arm",
        "riscv64" => "riscv",
        "powerpc" | "powerpc64" => "powerpc",
        "s390x" => "s390",
        _ => return None,
    })
}

#[cfg(feature = "bindgen")]
/// clang's name for a Rust target triple.
fn clang_target(target: &str) -> String {
    match target.strip_prefix("riscv64gc-") {
        Some(rest) => format!("riscv64-{rest}"),
        None => target.to_string(),
    }
}

fn main() {
    let manifest =
        PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let out =
        PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR")).join("bindings.rs");
    let arch = env::var("CARGO_CFG_TARGET_ARCH").expect("cargo sets CARGO_CFG_TARGET_ARCH");
    let endian = env::var("CARGO_CFG_TARGET_ENDIAN").unwrap_or_default();
    let target = env::var("TARGET").expect("cargo sets TARGET");
    // One snapshot per ABI: powerpc64 comes in both byte orders.
    let key = if arch == "powerpc64" && endian == "little" {
        "powerpc64le".to_string()
    } else {
        arch.clone()
    };
    let snapshot = manifest.join(format!("src/sys/bindings_{key}.rs"));
    let karch = kernel_arch(&arch);

    for input in INPUTS {
        println!("cargo:rerun-if-changed={input}");
    }
    println!("cargo:rerun-if-changed=headers/arch");
    println!("cargo:rerun-if-changed=headers/asm-generic");
    println!("cargo:rerun-if-changed=src/sys/bindings_{key}.rs");
    println!("cargo:rustc-env=TYPED_VFIO_SNAPSHOT=src/sys/bindings_{key}.rs");
    println!(
        "cargo:rustc-env=TYPED_VFIO_KERNEL_ARCH={}",
        karch.unwrap_or("")
    );
    let override_dir = env::var_os("TYPED_VFIO_HEADERS").map(PathBuf::from);
    if let Some(dir) = &override_dir {
        println!("cargo:rerun-if-changed={}", dir.display());
        if cfg!(not(feature = "bindgen")) {
            panic!(
                "TYPED_VFIO_HEADERS={} needs the `bindgen` feature (typed-vfio = {{ features = [\"bindgen\"] }})",
                dir.display()
            );
        }
        if !dir.join("linux/vfio.h").is_file() {
            panic!(
                "TYPED_VFIO_HEADERS={}: no linux/vfio.h there (give the directory that holds linux/, like a kernel's usr/include)",
                dir.display()
            );
        }
    }
    // Items of the pinned headers (Linux 7.2) the 6.12 uapi lacks are checked
    // (request codes, mirrors) only when the bindings come from those headers.
    println!("cargo::rustc-check-cfg=cfg(typed_vfio_pinned_uapi)");
    if override_dir.is_none() {
        println!("cargo:rustc-cfg=typed_vfio_pinned_uapi");
    }
    for var in [
        "TYPED_VFIO_HEADERS",
        "TYPED_VFIO_BINDGEN",
        "TYPED_VFIO_WRITE_SNAPSHOT",
        "LIBCLANG_PATH",
    ] {
        println!("cargo:rerun-if-env-changed={var}");
    }

    let mut mode = env::var("TYPED_VFIO_BINDGEN").unwrap_or_else(|_| "auto".into());
    if override_dir.is_some() {
        // Other headers are asked for: generating from them is the point,
        // falling back to the snapshot of ours would silently ignore them.
        if mode == "snapshot" {
            panic!("TYPED_VFIO_HEADERS and TYPED_VFIO_BINDGEN=snapshot contradict each other");
        }
        mode = "generate".into();
    }
    let source = match mode.as_str() {
        "generate" => {
            if let Err(e) = libclang() {
                panic!("TYPED_VFIO_BINDGEN=generate, but libclang cannot be loaded: {e}");
            }
            generate(&manifest, &out, &target, karch, override_dir.as_deref())
        }
        "snapshot" => use_snapshot(&snapshot, &out, &key, Some("TYPED_VFIO_BINDGEN=snapshot")),
        // Without the feature the snapshot is the normal path: no warning.
        "auto" if cfg!(not(feature = "bindgen")) => use_snapshot(&snapshot, &out, &key, None),
        "auto" => match libclang() {
            Ok(()) if karch.is_some() => generate(&manifest, &out, &target, karch, None),
            Ok(()) => use_snapshot(
                &snapshot,
                &out,
                &key,
                Some(&format!(
                    "headers/ has no asm headers for target_arch = {arch:?}"
                )),
            ),
            Err(e) => use_snapshot(
                &snapshot,
                &out,
                &key,
                Some(&format!("libclang cannot be loaded ({e})")),
            ),
        },
        other => panic!("TYPED_VFIO_BINDGEN={other}: expected auto, generate or snapshot"),
    };

    if source == "generated" && env::var_os("TYPED_VFIO_WRITE_SNAPSHOT").is_some() {
        fs::copy(&out, &snapshot).unwrap_or_else(|e| panic!("writing {}: {e}", snapshot.display()));
        println!(
            "cargo:warning=typed-vfio: snapshot {} rewritten",
            snapshot.display()
        );
    }
    let baseline = match (source, &override_dir, karch) {
        ("generated", None, Some(karch)) => baseline_bindings(&manifest, &out, &target, karch),
        ("generated", Some(dir), _) => Err(format!(
            "the bindings come from TYPED_VFIO_HEADERS={}",
            dir.display()
        )),
        _ => Err("this build used the committed snapshot (no bindgen run)".into()),
    };
    write_uapi_baseline(baseline, out.with_file_name("uapi_baseline.rs"));
    let text =
        fs::read_to_string(&out).unwrap_or_else(|e| panic!("reading {}: {e}", out.display()));
    write_abi_oracle(
        &text,
        out.with_file_name("abi_items.rs"),
        out.with_file_name("abi_oracle.c"),
    );
    println!("cargo:rustc-env=TYPED_VFIO_BINDINGS_SOURCE={source}");
    println!("cargo:rustc-env=TYPED_VFIO_BINDINGS_FILE={}", out.display());
}

/// Whether libclang can be loaded (only with the `bindgen` feature).
#[cfg(feature = "bindgen")]
fn libclang() -> Result<(), String> {
    clang_sys::load()
}

/// Without the `bindgen` feature nothing can generate.
#[cfg(not(feature = "bindgen"))]
fn libclang() -> Result<(), String> {
    Err("the `bindgen` feature is off (enable it to generate)".into())
}

#[cfg(not(feature = "bindgen"))]
fn generate(_: &Path, _: &Path, _: &str, _: Option<&str>, _: Option<&Path>) -> &'static str {
    unreachable!("libclang() fails without the bindgen feature")
}

#[cfg(feature = "bindgen")]
fn generate(
    manifest: &Path,
    out: &Path,
    target: &str,
    karch: Option<&str>,
    override_dir: Option<&Path>,
) -> &'static str {
    let headers = manifest.join("headers");
    let Some(karch) = karch else {
        panic!("headers/ has no asm headers for {target}: add them to headers/import's targets");
    };
    let mut builder = bindgen::Builder::default();
    if let Some(dir) = override_dir {
        // headers/wrapper.h includes with quotes (its own directory first):
        // this wrapper includes with angle brackets, so -I order decides.
        let wrapper = out.with_file_name("wrapper_override.h");
        let text = format!(
            "/* typed-vfio: bindings against TYPED_VFIO_HEADERS={dir} */\n\
             #include <linux/vfio.h>\n#include <linux/iommufd.h>\n\
             #ifndef VFIO_ATTR_GEOMETRY\n#include \"{ours}\"\n#endif\n",
            dir = dir.display(),
            ours = headers.join("vfio_type2.h").display(),
        );
        fs::write(&wrapper, text).unwrap_or_else(|e| panic!("writing {}: {e}", wrapper.display()));
        builder = builder
            .header(wrapper.to_string_lossy())
            .clang_arg(format!("-I{}", dir.display()));
        println!(
            "cargo:warning=typed-vfio: generating the bindings from TYPED_VFIO_HEADERS={}",
            dir.display()
        );
    } else {
        builder = builder.header(headers.join("wrapper.h").to_string_lossy());
    }
    let bindings = configure(builder, target, &headers, karch)
        .generate()
        .unwrap_or_else(|e| panic!("bindgen could not generate from headers/wrapper.h: {e}"));
    let mut text = bindings.to_string();
    text.push_str(&plain_impls(&text));
    for item in REQUIRED {
        let needle = match item.strip_prefix("struct ") {
            Some(name) => format!("pub struct {name} "),
            None => format!("pub const {item}: "),
        };
        if !text.contains(&needle) {
            panic!(
                "bindgen output lacks `{item}`: a header declaration was dropped or failed to evaluate"
            );
        }
    }
    fs::write(out, text).unwrap_or_else(|e| panic!("writing {}: {e}", out.display()));
    "generated"
}

/// What every generation shares: the target, `headers/` and its `asm/`
/// only, the items, the output's form.
#[cfg(feature = "bindgen")]
fn configure(
    builder: bindgen::Builder,
    target: &str,
    headers: &Path,
    karch: &str,
) -> bindgen::Builder {
    builder
        .clang_arg(format!("--target={}", clang_target(target)))
        .clang_arg("-nostdinc")
        .clang_arg(format!("-I{}", headers.display()))
        .clang_arg(format!("-I{}", headers.join("arch").join(karch).display()))
        .clang_macro_fallback()
        .allowlist_item("(vfio|VFIO|iommu|IOMMU|iommufd|IOMMUFD)_.*")
        .generate_comments(false)
        .explicit_padding(true)
        .derive_default(true)
        .derive_debug(true)
        .use_core()
        .wrap_unsafe_ops(true)
        .prepend_enum_name(false)
        .formatter(bindgen::Formatter::Prettyplease)
}

/// The Linux 6.12 baseline (`headers/linux-6.12/`, see headers/import)
/// through bindgen for this target, as the `uapi_superset` test's item list:
/// `Err` says why there is none.
#[cfg(feature = "bindgen")]
fn baseline_bindings(
    manifest: &Path,
    out: &Path,
    target: &str,
    karch: &str,
) -> Result<String, String> {
    let headers = manifest.join("headers");
    let dir = headers.join("linux-6.12");
    println!("cargo:rerun-if-changed=headers/linux-6.12");
    if !dir.join("linux/vfio.h").is_file() {
        return Err(format!("{} has no linux/vfio.h", dir.display()));
    }
    let wrapper = out.with_file_name("wrapper_6_12.h");
    let text = "/* typed-vfio: the Linux 6.12 baseline (headers/linux-6.12 first) */\n\
                #include <linux/vfio.h>\n#include <linux/iommufd.h>\n";
    fs::write(&wrapper, text).unwrap_or_else(|e| panic!("writing {}: {e}", wrapper.display()));
    let builder = bindgen::Builder::default()
        .header(wrapper.to_string_lossy())
        .clang_arg(format!("-I{}", dir.display()));
    configure(builder, target, &headers, karch)
        .generate()
        .map(|b| b.to_string())
        .map_err(|e| format!("bindgen could not generate from {}: {e}", dir.display()))
}

#[cfg(not(feature = "bindgen"))]
fn baseline_bindings(_: &Path, _: &Path, _: &str, _: &str) -> Result<String, String> {
    Err("the `bindgen` feature is off".into())
}

/// Writes the `uapi_superset` test's table of the 6.12 baseline's ABI items:
/// `BASELINE` is `Ok(&[(key, C expression)])` or `Err(why there is none)`.
fn write_uapi_baseline(baseline: Result<String, String>, path: PathBuf) {
    let mut rust = String::from(
        "/// Generated by build.rs: the Linux 6.12 baseline's ABI items as (key, C expression), or why there are none.\npub const BASELINE: Result<&[(&str, &str)], &str> = ",
    );
    match baseline {
        Ok(text) => {
            rust.push_str("Ok(&[\n");
            for (key, _, _, cexpr) in abi_entries(&text) {
                rust.push_str(&format!("    ({key:?}, {cexpr:?}),\n"));
            }
            rust.push_str("]);\n");
        }
        Err(why) => rust.push_str(&format!("Err({why:?});\n")),
    }
    fs::write(&path, rust).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
    println!(
        "cargo:rustc-env=TYPED_VFIO_UAPI_BASELINE={}",
        path.display()
    );
}

/// The `sys::plain!` invocations for the generated structs and unions: each
/// plain one with its fields, so that the macro implements `FromBytes`
/// (`IntoBytes` too for structs without a union) and proves at compile time
/// that every field is plain and, for `IntoBytes`, that nothing is padding.
/// Reads bindgen's prettyplease output: `pub struct NAME {`, one
/// `    pub FIELD: TYPE,` per line, `}`.
#[cfg(feature = "bindgen")]
fn plain_impls(text: &str) -> String {
    let mut out =
        String::from("// Plain-data impls, each proved by the macro (see src/sys/plain.rs).\n");
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        let (kind, rest) = if let Some(r) = line.strip_prefix("pub struct ") {
            ("struct", r)
        } else if let Some(r) = line.strip_prefix("pub union ") {
            ("union", r)
        } else {
            continue;
        };
        let Some(name) = rest.strip_suffix(" {") else {
            continue; // a tuple struct or a generic helper: not an ABI struct
        };
        let mut fields = Vec::new();
        let mut plain = !name.contains('<') && !NO_DERIVES.contains(&name);
        for field in lines.by_ref() {
            if field == "}" {
                break;
            }
            let Some((f, ty)) = field
                .trim()
                .strip_prefix("pub ")
                .and_then(|f| f.strip_suffix(','))
                .and_then(|f| f.split_once(": "))
            else {
                panic!("bindgen output: unexpected field line {field:?} in {name}");
            };
            if ty.contains('*') || ty.contains("__IncompleteArrayField") || ty.contains("__Bindgen")
            {
                plain = false;
            }
            fields.push(format!("{f}: {ty}"));
        }
        if !plain {
            continue;
        }
        let how = match kind {
            "union" => "union",
            _ if HOLD_UNIONS.contains(&name) => "readable",
            _ => "bytes",
        };
        out.push_str(&format!(
            "crate::sys::plain::plain!({how} {name} {{ {} }});\n",
            fields.join(", ")
        ));
    }
    out
}

/// Uses the committed snapshot; `why` (a reason to say so) makes it a
/// `cargo:warning`, `None` (a default build without the `bindgen` feature)
/// keeps it quiet.
fn use_snapshot(snapshot: &Path, out: &Path, arch: &str, why: Option<&str>) -> &'static str {
    let quiet = why.is_none();
    let why = why.unwrap_or("the `bindgen` feature is off");
    match fs::read_to_string(snapshot) {
        Ok(text) => {
            if !quiet {
                println!(
                    "cargo:warning=typed-vfio: {why}; using the committed bindings snapshot src/sys/bindings_{arch}.rs"
                );
            }
            fs::write(out, text).unwrap_or_else(|e| panic!("writing {}: {e}", out.display()));
        }
        Err(_) => {
            println!("cargo:warning=typed-vfio: {why}, and no snapshot exists for {arch}");
            let msg = format!(
                "typed-vfio has no committed bindings for target_arch = \"{arch}\" and could not generate them ({why}); install libclang or add src/sys/bindings_{arch}.rs"
            );
            fs::write(out, format!("compile_error!({msg:?});\n"))
                .unwrap_or_else(|e| panic!("writing {}: {e}", out.display()));
        }
    }
    "snapshot"
}

/// Rust keywords bindgen escapes with a trailing `_` in field names.
const KEYWORDS: &[&str] = &[
    "type", "ref", "match", "mod", "fn", "in", "loop", "move", "use", "where", "impl",
];

/// Writes the two halves of the ABI oracle from the bindings' own item list:
/// a Rust table that evaluates every integer constant, struct size, alignment
/// and named field offset through `typed_vfio::sys`, and a C program that
/// prints the same entries as the C compiler sees them in `headers/`. The
/// `abi_oracle` test compiles and runs the C side and compares.
fn write_abi_oracle(bindings: &str, rust_out: PathBuf, c_out: PathBuf) {
    let entries = abi_entries(bindings);
    let mut rust = String::from(
        "/// Generated by build.rs: (key, value as `typed_vfio::sys` has it, byte width of a constant's type or 0).\npub const ABI_ITEMS: &[(&str, u64, usize)] = &[\n",
    );
    let mut c = String::from(
        "/* Generated by build.rs: the C compiler's view of headers/. */\n#include <stdio.h>\n#include <stddef.h>\n#include \"wrapper.h\"\nint main(void) {\n",
    );
    // C prints `key value negative`: the value converted to unsigned long long
    // and whether the expression is negative in its own C type.
    for (key, r, width, cexpr) in &entries {
        rust.push_str(&format!("    ({key:?}, {r}, {width}),\n"));
        c.push_str(&format!(
            "    printf(\"%s %llu %d\\n\", {key:?}, (unsigned long long)({cexpr}), (int)(({cexpr}) < 0));\n"
        ));
    }
    rust.push_str("];\n");
    c.push_str("    return 0;\n}\n");
    fs::write(&rust_out, rust).unwrap_or_else(|e| panic!("writing {}: {e}", rust_out.display()));
    fs::write(&c_out, c).unwrap_or_else(|e| panic!("writing {}: {e}", c_out.display()));
    println!(
        "cargo:rustc-env=TYPED_VFIO_ABI_ITEMS={}",
        rust_out.display()
    );
    println!(
        "cargo:rustc-env=TYPED_VFIO_ABI_ORACLE_C={}",
        c_out.display()
    );
}

/// The ABI items of a bindgen output, each as (key, Rust value expression,
/// Rust width expression (0: not a constant), C expression): every integer
/// constant, struct size, alignment and named field offset.
fn abi_entries(bindings: &str) -> Vec<(String, String, String, String)> {
    let mut entries: Vec<(String, String, String, String)> = Vec::new();
    let mut current: Option<String> = None;
    for line in bindings.lines() {
        let t = line.trim();
        if let Some(rest) = t.strip_prefix("pub const ") {
            let Some((name, rest)) = rest.split_once(": ") else {
                continue;
            };
            let ty = rest.split(" = ").next().unwrap_or("");
            if ty.starts_with('&') || name.starts_with('_') {
                continue; // strings and compiler-internal macros
            }
            entries.push((
                format!("const {name}"),
                format!("typed_vfio::sys::{name} as u64"),
                format!("core::mem::size_of_val(&typed_vfio::sys::{name})"),
                name.to_string(),
            ));
        } else if let Some(rest) = t
            .strip_prefix("pub struct ")
            .or_else(|| t.strip_prefix("pub union "))
        {
            let name = rest.trim_end_matches(" {").to_string();
            let kind = if t.starts_with("pub union") {
                "union"
            } else {
                "struct"
            };
            if name.contains("__bindgen") || name.contains('<') || !rest.ends_with('{') {
                current = None;
                continue;
            }
            entries.push((
                format!("size {name}"),
                format!("core::mem::size_of::<typed_vfio::sys::{name}>() as u64"),
                "0".to_string(),
                format!("sizeof({kind} {name})"),
            ));
            entries.push((
                format!("align {name}"),
                format!("core::mem::align_of::<typed_vfio::sys::{name}>() as u64"),
                "0".to_string(),
                format!("_Alignof({kind} {name})"),
            ));
            current = Some(format!("{kind} {name}"));
        } else if t == "}" {
            current = None;
        } else if let (Some(c_ty), Some(rest)) = (&current, t.strip_prefix("pub ")) {
            let Some((field, _)) = rest.split_once(": ") else {
                continue;
            };
            if field.starts_with("__bindgen") {
                continue; // explicit padding and anonymous unions have no C name
            }
            let c_field = match field.strip_suffix('_') {
                Some(base) if KEYWORDS.contains(&base) => base,
                _ => field,
            };
            let name = c_ty.split(' ').nth(1).unwrap_or_default();
            entries.push((
                format!("offset {name}.{c_field}"),
                format!("core::mem::offset_of!(typed_vfio::sys::{name}, {field}) as u64"),
                "0".to_string(),
                format!("offsetof({c_ty}, {c_field})"),
            ));
        }
    }
    entries
}
