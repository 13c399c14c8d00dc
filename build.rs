//! Generates `src/sys`'s raw bindings from `headers/` with bindgen.
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
//! `TYPED_VFIO_WRITE_SNAPSHOT=1 TYPED_VFIO_BINDGEN=generate cargo build`).

use std::env;
use std::fs;
use std::path::{Path, PathBuf};

use bindgen::callbacks::{DeriveInfo, ParseCallbacks, TypeKind};

/// Kernel headers and our own extension header: the only inputs of generation.
const INPUTS: &[&str] = &[
    "headers/wrapper.h",
    "headers/linux/vfio.h",
    "headers/linux/iommufd.h",
    "headers/vfio_type2.h",
];

/// Structs that end in a flexible array member or hold a user pointer. Their
/// Rust form carries a zero-sized `__IncompleteArrayField` or a raw pointer,
/// so no zerocopy trait is derived: the crate encodes and parses them by their
/// fixed prefix with its own zerocopy types, checked against these layouts.
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
/// union's smaller members, so they are readable from any bytes but not
/// viewable as bytes (no `IntoBytes`).
const HOLD_UNIONS: &[&str] = &[
    "vfio_device_gfx_plane_info",
    "vfio_eeh_pe_op",
    "vfio_pamu_attr",
    "vfio_pci_dependent_device",
];

/// Items the crate needs. clang's macro fallback drops a macro it cannot
/// evaluate without a word; checking the output for each name turns that
/// into a build failure that names the item.
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

#[derive(Debug)]
struct Derives;

impl ParseCallbacks for Derives {
    fn add_derives(&self, info: &DeriveInfo<'_>) -> Vec<String> {
        let zc = |traits: &[&str]| traits.iter().map(|t| format!("zerocopy::{t}")).collect();
        let readable = ["FromBytes", "Immutable", "KnownLayout"];
        match info.kind {
            TypeKind::Struct if NO_DERIVES.contains(&info.name) => Vec::new(),
            TypeKind::Struct if HOLD_UNIONS.contains(&info.name) => zc(&readable),
            TypeKind::Struct => zc(&["FromBytes", "IntoBytes", "Immutable", "KnownLayout"]),
            TypeKind::Union => zc(&readable),
            _ => Vec::new(),
        }
    }
}

fn main() {
    let manifest = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR")).join("bindings.rs");
    let arch = env::var("CARGO_CFG_TARGET_ARCH").expect("cargo sets CARGO_CFG_TARGET_ARCH");
    let snapshot = manifest.join(format!("src/sys/bindings_{arch}.rs"));

    for input in INPUTS {
        println!("cargo:rerun-if-changed={input}");
    }
    println!("cargo:rerun-if-changed=src/sys/bindings_{arch}.rs");
    for var in ["TYPED_VFIO_BINDGEN", "TYPED_VFIO_WRITE_SNAPSHOT", "LIBCLANG_PATH"] {
        println!("cargo:rerun-if-env-changed={var}");
    }

    let mode = env::var("TYPED_VFIO_BINDGEN").unwrap_or_else(|_| "auto".into());
    let source = match mode.as_str() {
        "generate" => {
            if let Err(e) = clang_sys::load() {
                panic!("TYPED_VFIO_BINDGEN=generate, but libclang cannot be loaded: {e}");
            }
            generate(&manifest, &out)
        }
        "snapshot" => use_snapshot(&snapshot, &out, &arch, "TYPED_VFIO_BINDGEN=snapshot"),
        "auto" => match clang_sys::load() {
            Ok(()) => generate(&manifest, &out),
            Err(e) => use_snapshot(&snapshot, &out, &arch, &format!("libclang cannot be loaded ({e})")),
        },
        other => panic!("TYPED_VFIO_BINDGEN={other}: expected auto, generate or snapshot"),
    };

    if source == "generated" && env::var_os("TYPED_VFIO_WRITE_SNAPSHOT").is_some() {
        fs::copy(&out, &snapshot).unwrap_or_else(|e| panic!("writing {}: {e}", snapshot.display()));
        println!("cargo:warning=typed-vfio: snapshot {} rewritten", snapshot.display());
    }
    println!("cargo:rustc-env=TYPED_VFIO_BINDINGS_SOURCE={source}");
    println!("cargo:rustc-env=TYPED_VFIO_BINDINGS_FILE={}", out.display());
}

fn generate(manifest: &Path, out: &Path) -> &'static str {
    let headers = manifest.join("headers");
    let bindings = bindgen::Builder::default()
        .header(headers.join("wrapper.h").to_string_lossy())
        .clang_arg(format!("-I{}", headers.display()))
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
        .parse_callbacks(Box::new(Derives))
        .generate()
        .unwrap_or_else(|e| panic!("bindgen could not generate from headers/wrapper.h: {e}"));
    let text = bindings.to_string();
    fs::write(out, &text).unwrap_or_else(|e| panic!("writing {}: {e}", out.display()));
    for item in REQUIRED {
        let needle = match item.strip_prefix("struct ") {
            Some(name) => format!("pub struct {name} "),
            None => format!("pub const {item}: "),
        };
        if !text.contains(&needle) {
            panic!("bindgen output lacks `{item}`: a header declaration was dropped or failed to evaluate");
        }
    }
    fs::write(out, text).unwrap_or_else(|e| panic!("writing {}: {e}", out.display()));
    "generated"
}

fn use_snapshot(snapshot: &Path, out: &Path, arch: &str, why: &str) -> &'static str {
    match fs::read_to_string(snapshot) {
        Ok(text) => {
            println!(
                "cargo:warning=typed-vfio: {why}; using the committed bindings snapshot src/sys/bindings_{arch}.rs"
            );
            fs::write(out, text).unwrap_or_else(|e| panic!("writing {}: {e}", out.display()));
        }
        Err(_) => {
            println!("cargo:warning=typed-vfio: {why}, and no snapshot exists for {arch}");
            let msg = format!(
                "typed-vfio has no committed bindings for target_arch = \"{arch}\" and could not generate them ({why}); install libclang or add src/sys/bindings_{arch}.rs"
            );
            fs::write(out, format!("compile_error!({msg:?});\n")).unwrap_or_else(|e| panic!("writing {}: {e}", out.display()));
        }
    }
    "snapshot"
}
