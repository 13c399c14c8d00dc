//! The C side of the ABI checks (`abi_oracle`, `uapi_superset`): compile a
//! generated C program against kernel headers with the target's C compiler,
//! run it (under qemu-user on a cross run), and read what it printed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A value as the C compiler printed it: converted to `unsigned long long`,
/// and whether it was negative in its own C type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CValue {
    pub bits: u64,
    pub negative: bool,
}

/// Parses a C program's output: one `key value negative` entry per line,
/// where the key itself is `kind name` (`const VFIO_API_VERSION`,
/// `offset x.argsz`).
pub fn parse_c_output(text: &str) -> Result<BTreeMap<String, CValue>, String> {
    let mut map = BTreeMap::new();
    for (n, line) in text.lines().enumerate() {
        let bad = |what: &str| format!("line {}: {what}: {line:?}", n + 1);
        let (rest, negative) = line.rsplit_once(' ').ok_or_else(|| bad("no sign"))?;
        let (key, value) = rest.rsplit_once(' ').ok_or_else(|| bad("no value"))?;
        let negative = match negative {
            "0" => false,
            "1" => true,
            _ => return Err(bad("sign is not 0 or 1")),
        };
        let bits = value.parse::<u64>().map_err(|e| bad(&e.to_string()))?;
        if map
            .insert(key.to_string(), CValue { bits, negative })
            .is_some()
        {
            return Err(format!("line {}: duplicate key {key:?}", n + 1));
        }
    }
    Ok(map)
}

/// The repository's `headers/`.
pub fn headers() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("headers")
}

/// This target's `asm/` headers under `headers/arch/`.
pub fn arch_headers() -> PathBuf {
    headers().join("arch").join(env!("TYPED_VFIO_KERNEL_ARCH"))
}

/// Compiles `source` with the include directories `includes` (searched in
/// that order, before the C library's, whose uapi may be another kernel's)
/// into `CARGO_TARGET_TMPDIR/<name>`, runs it and returns its output.
///
/// Cross runs (`tests/cross/run`) name the target's C compiler in
/// `TYPED_VFIO_ORACLE_CC` and how to run its output in
/// `TYPED_VFIO_ORACLE_RUNNER` (qemu-user); natively, `CC` or `cc`.
pub fn compile_and_run(name: &str, source: &Path, includes: &[PathBuf]) -> String {
    let exe = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    let cc = std::env::var("TYPED_VFIO_ORACLE_CC")
        .or_else(|_| std::env::var("CC"))
        .unwrap_or_else(|_| "cc".to_string());
    let mut compile = Command::new(&cc);
    compile.arg("-std=c11").arg("-Wall").arg("-Werror");
    for dir in includes {
        compile.arg("-I").arg(dir);
    }
    let status = compile
        .arg("-o")
        .arg(&exe)
        .arg(source)
        .status()
        .unwrap_or_else(|e| panic!("{name}: cannot run the C compiler `{cc}`: {e}"));
    assert!(
        status.success(),
        "{name}: `{cc}` failed to compile {}",
        source.display()
    );
    let runner = std::env::var("TYPED_VFIO_ORACLE_RUNNER").unwrap_or_default();
    let mut words = runner.split_whitespace();
    let mut run = match words.next() {
        Some(program) => {
            let mut c = Command::new(program);
            c.args(words).arg(&exe);
            c
        }
        None => Command::new(&exe),
    };
    let out = run
        .output()
        .unwrap_or_else(|e| panic!("{name}: run the C program: {e}"));
    assert!(out.status.success(), "{name}: the C program failed");
    String::from_utf8(out.stdout).unwrap_or_else(|_| panic!("{name}: C output is not UTF-8"))
}
