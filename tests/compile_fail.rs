//! Compile-fail suite for the typestate API.
//!
//! Every `tests/compile-fail/*.rs` is a small program breaking one VFIO
//! kernel rule; it must be rejected by the compiler, for the reason its
//! `//~ ERROR <code> <item>` lines state. Every `tests/compile-fail/pass/*.rs`
//! uses the same API correctly and must compile: they prove the harness finds
//! and links the crate (otherwise every case would "fail" trivially).
//!
//! The harness is our own (no trybuild): it builds the library once with
//! cargo into a separate target directory (`<target>/compile-fail`; cargo's
//! lock on the main one is held by the `cargo test` that runs us), then runs
//! `rustc --emit=metadata --error-format=json` on each case, in parallel, and
//! checks the JSON diagnostics:
//!
//! - a compile-fail case must fail to compile;
//! - each expectation `//~ ERROR E0599 map` must be met by an error with that
//!   code that mentions `map`, as a whole identifier, in its message, a span
//!   label, the source text its primary span highlights, or a note/help;
//! - no error may carry a code (or lack one) that no expectation names.
//!
//! Only codes and item names are compared, never wording, so the suite
//! survives rustc rephrasing its messages. Lines are not compared either.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

/// A minimal JSON reader for cargo's and rustc's messages (no dependencies).
mod json {
    /// A JSON value. Objects keep their members in order.
    #[derive(Clone, Debug, PartialEq)]
    pub enum Value {
        Null,
        Bool(bool),
        Number(f64),
        String(String),
        Array(Vec<Value>),
        Object(Vec<(String, Value)>),
    }

    const EMPTY: &[Value] = &[];

    impl Value {
        /// An object member, if this is an object that has it.
        pub fn get(&self, key: &str) -> Option<&Value> {
            match self {
                Value::Object(members) => members.iter().find(|(k, _)| k == key).map(|(_, v)| v),
                _ => None,
            }
        }

        /// The string, if this is one.
        pub fn as_str(&self) -> Option<&str> {
            match self {
                Value::String(s) => Some(s),
                _ => None,
            }
        }

        /// The elements, if this is an array; else none.
        pub fn elements(&self) -> &[Value] {
            match self {
                Value::Array(items) => items,
                _ => EMPTY,
            }
        }

        /// The boolean, if this is one.
        pub fn as_bool(&self) -> Option<bool> {
            match self {
                Value::Bool(b) => Some(*b),
                _ => None,
            }
        }

        /// The number as an index, if this is a non-negative integer.
        pub fn as_usize(&self) -> Option<usize> {
            match self {
                Value::Number(n) if *n >= 0.0 && n.fract() == 0.0 => Some(*n as usize),
                _ => None,
            }
        }

        /// A string member of an object.
        pub fn str_of(&self, key: &str) -> Option<&str> {
            self.get(key).and_then(Value::as_str)
        }
    }

    /// Parses one JSON document (surrounding whitespace allowed).
    pub fn parse(text: &str) -> Result<Value, String> {
        let mut p = Parser {
            bytes: text.as_bytes(),
            pos: 0,
        };
        let value = p.value(0)?;
        p.skip_ws();
        if p.pos != p.bytes.len() {
            return Err(p.error("trailing characters"));
        }
        Ok(value)
    }

    struct Parser<'a> {
        bytes: &'a [u8],
        pos: usize,
    }

    impl Parser<'_> {
        fn error(&self, what: &str) -> String {
            format!("JSON: {what} at byte {}", self.pos)
        }

        fn skip_ws(&mut self) {
            while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.bytes.get(self.pos) {
                self.pos += 1;
            }
        }

        fn eat(&mut self, byte: u8) -> bool {
            self.skip_ws();
            if self.bytes.get(self.pos) == Some(&byte) {
                self.pos += 1;
                true
            } else {
                false
            }
        }

        fn expect(&mut self, byte: u8) -> Result<(), String> {
            if self.eat(byte) {
                Ok(())
            } else {
                Err(self.error(&format!("expected `{}`", byte as char)))
            }
        }

        fn keyword(&mut self, word: &str, value: Value) -> Result<Value, String> {
            if self.bytes[self.pos..].starts_with(word.as_bytes()) {
                self.pos += word.len();
                Ok(value)
            } else {
                Err(self.error("unknown literal"))
            }
        }

        fn value(&mut self, depth: usize) -> Result<Value, String> {
            if depth > 128 {
                return Err(self.error("nested too deeply"));
            }
            self.skip_ws();
            match self.bytes.get(self.pos) {
                None => Err(self.error("unexpected end")),
                Some(b'{') => {
                    self.pos += 1;
                    let mut members = Vec::new();
                    if self.eat(b'}') {
                        return Ok(Value::Object(members));
                    }
                    loop {
                        self.skip_ws();
                        let key = self.string()?;
                        self.expect(b':')?;
                        members.push((key, self.value(depth + 1)?));
                        if self.eat(b'}') {
                            return Ok(Value::Object(members));
                        }
                        self.expect(b',')?;
                    }
                }
                Some(b'[') => {
                    self.pos += 1;
                    let mut items = Vec::new();
                    if self.eat(b']') {
                        return Ok(Value::Array(items));
                    }
                    loop {
                        items.push(self.value(depth + 1)?);
                        if self.eat(b']') {
                            return Ok(Value::Array(items));
                        }
                        self.expect(b',')?;
                    }
                }
                Some(b'"') => self.string().map(Value::String),
                Some(b't') => self.keyword("true", Value::Bool(true)),
                Some(b'f') => self.keyword("false", Value::Bool(false)),
                Some(b'n') => self.keyword("null", Value::Null),
                Some(_) => self.number(),
            }
        }

        fn number(&mut self) -> Result<Value, String> {
            let start = self.pos;
            while let Some(b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E') =
                self.bytes.get(self.pos)
            {
                self.pos += 1;
            }
            std::str::from_utf8(&self.bytes[start..self.pos])
                .ok()
                .and_then(|s| s.parse::<f64>().ok())
                .map(Value::Number)
                .ok_or_else(|| self.error("bad number"))
        }

        fn hex4(&mut self) -> Result<u32, String> {
            let digits = self
                .bytes
                .get(self.pos..self.pos + 4)
                .and_then(|d| std::str::from_utf8(d).ok())
                .and_then(|d| u32::from_str_radix(d, 16).ok())
                .ok_or_else(|| self.error("bad \\u escape"))?;
            self.pos += 4;
            Ok(digits)
        }

        fn string(&mut self) -> Result<String, String> {
            if self.bytes.get(self.pos) != Some(&b'"') {
                return Err(self.error("expected a string"));
            }
            self.pos += 1;
            let mut out = Vec::new();
            loop {
                let Some(&byte) = self.bytes.get(self.pos) else {
                    return Err(self.error("unterminated string"));
                };
                self.pos += 1;
                match byte {
                    b'"' => break,
                    b'\\' => {
                        let Some(&escape) = self.bytes.get(self.pos) else {
                            return Err(self.error("unterminated escape"));
                        };
                        self.pos += 1;
                        let c = match escape {
                            b'"' => '"',
                            b'\\' => '\\',
                            b'/' => '/',
                            b'b' => '\u{8}',
                            b'f' => '\u{c}',
                            b'n' => '\n',
                            b'r' => '\r',
                            b't' => '\t',
                            b'u' => {
                                let high = self.hex4()?;
                                let code = if (0xd800..0xdc00).contains(&high)
                                    && self.bytes[self.pos..].starts_with(b"\\u")
                                {
                                    self.pos += 2;
                                    let low = self.hex4()?;
                                    0x10000 + ((high - 0xd800) << 10) + (low.wrapping_sub(0xdc00))
                                } else {
                                    high
                                };
                                char::from_u32(code).unwrap_or(char::REPLACEMENT_CHARACTER)
                            }
                            _ => return Err(self.error("unknown escape")),
                        };
                        out.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes());
                    }
                    _ => out.push(byte),
                }
            }
            String::from_utf8(out).map_err(|_| self.error("invalid UTF-8 in string"))
        }
    }
}

/// One `//~ ERROR <code> <item>` line of a case.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Expectation {
    code: String,
    item: String,
    line: usize,
}

impl std::fmt::Display for Expectation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.code, self.item)
    }
}

/// Reads the expectations of a case. A `//~` that does not read
/// `//~ ERROR E<4 digits> <identifier>` is an error, not silently skipped.
fn parse_expectations(source: &str) -> Result<Vec<Expectation>, String> {
    let mut out = Vec::new();
    for (index, text) in source.lines().enumerate() {
        let line = index + 1;
        let Some(at) = text.find("//~") else {
            continue;
        };
        let words: Vec<&str> = text[at + 3..].split_whitespace().collect();
        let valid_code = |c: &str| {
            c.len() == 5 && c.starts_with('E') && c[1..].bytes().all(|b| b.is_ascii_digit())
        };
        let valid_item = |i: &str| {
            !i.is_empty()
                && i.chars()
                    .all(|c| c.is_alphanumeric() || c == '_' || c == ':')
        };
        match words.as_slice() {
            ["ERROR", code, item] if valid_code(code) && valid_item(item) => {
                out.push(Expectation {
                    code: (*code).to_owned(),
                    item: (*item).to_owned(),
                    line,
                })
            }
            _ => {
                return Err(format!(
                    "line {line}: malformed expectation `{}` (want `//~ ERROR E0599 item`)",
                    text[at..].trim()
                ));
            }
        }
    }
    Ok(out)
}

/// An error-level diagnostic, reduced to what the checks use.
#[derive(Clone, Debug, Default)]
struct Diagnostic {
    code: Option<String>,
    message: String,
    /// Texts the item may be mentioned in: the message, span labels, the
    /// source the primary spans highlight, notes and helps.
    texts: Vec<String>,
    rendered: String,
}

impl Diagnostic {
    /// Whether `item` appears as a whole identifier (`map` is not mentioned
    /// by `mapping` or `unmap_all`).
    fn mentions(&self, item: &str) -> bool {
        self.texts.iter().any(|t| mentions_identifier(t, item))
    }

    fn code_name(&self) -> &str {
        self.code.as_deref().unwrap_or("(no code)")
    }
}

fn is_ident_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

fn mentions_identifier(text: &str, item: &str) -> bool {
    text.match_indices(item).any(|(at, _)| {
        let before = text[..at].chars().next_back();
        let after = text[at + item.len()..].chars().next();
        !before.is_some_and(is_ident_char) && !after.is_some_and(is_ident_char)
    })
}

/// The source text a span highlights (1-based, char columns), without any
/// `//~` expectation comment it may run into.
fn highlighted(span: &json::Value) -> String {
    let mut out = String::new();
    for line in span.get("text").map_or(&[][..], json::Value::elements) {
        let text = line.str_of("text").unwrap_or("");
        let start = line.get("highlight_start").and_then(json::Value::as_usize);
        let end = line.get("highlight_end").and_then(json::Value::as_usize);
        let (Some(start), Some(end)) = (start, end) else {
            continue;
        };
        let part: String = text
            .chars()
            .skip(start.saturating_sub(1))
            .take(end.saturating_sub(start))
            .collect();
        let part = part.split("//~").next().unwrap_or("");
        out.push_str(part);
        out.push('\n');
    }
    out
}

fn collect_texts(diag: &json::Value, top: bool, texts: &mut Vec<String>) {
    if let Some(message) = diag.str_of("message") {
        texts.push(message.to_owned());
    }
    for span in diag.get("spans").map_or(&[][..], json::Value::elements) {
        if let Some(label) = span.str_of("label") {
            texts.push(label.to_owned());
        }
        if top && span.get("is_primary").and_then(json::Value::as_bool) == Some(true) {
            texts.push(highlighted(span));
        }
    }
    for child in diag.get("children").map_or(&[][..], json::Value::elements) {
        collect_texts(child, false, texts);
    }
}

/// Reads rustc's `--error-format=json` stderr and keeps the errors. The
/// closing "aborting due to N previous errors" summary is not one.
fn parse_diagnostics(stderr: &str) -> Result<Vec<Diagnostic>, String> {
    let mut out = Vec::new();
    for line in stderr.lines().filter(|l| l.starts_with('{')) {
        let value = json::parse(line)?;
        if value
            .str_of("$message_type")
            .is_some_and(|t| t != "diagnostic")
        {
            continue;
        }
        let level = value.str_of("level").unwrap_or("");
        if !level.starts_with("error") {
            continue;
        }
        let message = value.str_of("message").unwrap_or("").to_owned();
        let code = value
            .get("code")
            .and_then(|c| c.str_of("code"))
            .map(str::to_owned);
        if code.is_none() && level == "error" && message.starts_with("aborting due to") {
            continue;
        }
        let mut texts = Vec::new();
        collect_texts(&value, true, &mut texts);
        out.push(Diagnostic {
            code: if level == "error" {
                code
            } else {
                Some(level.to_owned())
            },
            message,
            texts,
            rendered: value.str_of("rendered").unwrap_or("").to_owned(),
        });
    }
    Ok(out)
}

/// The problems with a compile-fail case's outcome; empty means it passed.
fn check_fail(expected: &[Expectation], succeeded: bool, errors: &[Diagnostic]) -> Vec<String> {
    let mut problems = Vec::new();
    if expected.is_empty() {
        problems.push("no `//~ ERROR <code> <item>` expectation in the case".to_owned());
    }
    if succeeded || errors.is_empty() {
        problems.push(if succeeded {
            "compiled without errors: the API does not enforce this rule (API hole)".to_owned()
        } else {
            "rustc failed without reporting an error diagnostic".to_owned()
        });
        return problems;
    }
    for e in expected {
        let codes: Vec<&Diagnostic> = errors
            .iter()
            .filter(|d| d.code.as_deref() == Some(e.code.as_str()))
            .collect();
        if codes.is_empty() {
            problems.push(format!(
                "line {}: expected error {} was not reported",
                e.line, e.code
            ));
        } else if !codes.iter().any(|d| d.mentions(&e.item)) {
            problems.push(format!(
                "line {}: error {} was reported but none mentions `{}`",
                e.line, e.code, e.item
            ));
        }
    }
    for d in errors {
        if !expected.iter().any(|e| d.code.as_deref() == Some(&e.code)) {
            problems.push(format!("unexpected error {}: {}", d.code_name(), d.message));
        }
    }
    problems
}

/// The problems with a control program's outcome; empty means it compiled.
fn check_pass(expected: &[Expectation], succeeded: bool, errors: &[Diagnostic]) -> Vec<String> {
    let mut problems = Vec::new();
    if !expected.is_empty() {
        problems.push("a control program must not carry `//~` expectations".to_owned());
    }
    for d in errors {
        problems.push(format!("error {}: {}", d.code_name(), d.message));
    }
    if !succeeded && errors.is_empty() {
        problems.push("rustc failed without reporting an error diagnostic".to_owned());
    }
    problems
}

/// The compiled library and how to compile against it.
struct Library {
    rustc: PathBuf,
    rlib: PathBuf,
    deps: PathBuf,
}

/// `RUSTC` if set, else the `rustc` next to the cargo that built this test
/// (same toolchain), else `rustc` from `PATH`. Cargo is told to use the same.
fn rustc_path() -> PathBuf {
    if let Some(rustc) = std::env::var_os("RUSTC") {
        return rustc.into();
    }
    let sibling =
        Path::new(env!("CARGO")).with_file_name(format!("rustc{}", std::env::consts::EXE_SUFFIX));
    if sibling.is_file() {
        sibling
    } else {
        PathBuf::from("rustc")
    }
}

/// The target directory this test was built in (`CARGO_TARGET_TMPDIR` is
/// `<target>/tmp`).
fn target_dir() -> PathBuf {
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
    tmp.parent().map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("target"),
        Path::to_path_buf,
    )
}

/// Builds the library with cargo into `<target>/compile-fail` and finds its
/// rlib and the directory of its dependencies in cargo's JSON messages.
fn build_library() -> Result<Library, String> {
    let rustc = rustc_path();
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml");
    let output = Command::new(env!("CARGO"))
        // The cases use the simulator (to get objects) and type2: a
        // dependent that asked for both.
        .args(["build", "--lib", "--features", "sim,type2"])
        .args(["--message-format=json", "--manifest-path"])
        .arg(&manifest)
        .arg("--target-dir")
        .arg(target_dir().join("compile-fail"))
        .env("RUSTC", &rustc)
        // A dependent's build, as the cases are dependents: the committed
        // bindings snapshot, no bindgen (whatever mode the suite runs in).
        .env_remove("TYPED_VFIO_BINDGEN")
        .env_remove("TYPED_VFIO_WRITE_SNAPSHOT")
        .output()
        .map_err(|e| format!("running cargo: {e}"))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let mut rlib = None;
    let mut deps = None;
    let mut compiler_messages = String::new();
    for line in stdout.lines().filter(|l| l.starts_with('{')) {
        let message = json::parse(line)?;
        match message.str_of("reason") {
            Some("compiler-artifact") => {
                let filenames = message
                    .get("filenames")
                    .map_or(&[][..], json::Value::elements)
                    .iter()
                    .filter_map(json::Value::as_str)
                    .map(PathBuf::from);
                let target = message.get("target");
                let ours = target.and_then(|t| t.str_of("name")) == Some("typed_vfio")
                    && target
                        .and_then(|t| t.get("kind"))
                        .is_some_and(|k| k.elements().iter().any(|k| k.as_str() == Some("lib")));
                for file in filenames {
                    if deps.is_none()
                        && file.parent().and_then(Path::file_name) == Some("deps".as_ref())
                    {
                        deps = file.parent().map(Path::to_path_buf);
                    }
                    if ours && file.extension() == Some("rlib".as_ref()) {
                        rlib = Some(file);
                    }
                }
            }
            Some("compiler-message") => {
                if let Some(rendered) = message.get("message").and_then(|m| m.str_of("rendered")) {
                    compiler_messages.push_str(rendered);
                }
            }
            _ => {}
        }
    }
    if !output.status.success() {
        return Err(format!(
            "building the library failed ({}):\n{compiler_messages}\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    let rlib = rlib.ok_or("cargo reported no typed_vfio rlib")?;
    let deps = match deps {
        Some(deps) => deps,
        None => rlib
            .parent()
            .map(|p| p.join("deps"))
            .ok_or("no deps directory")?,
    };
    Ok(Library { rustc, rlib, deps })
}

/// A case file: a compile-fail case, or a control program under `pass/`.
struct Case {
    path: PathBuf,
    /// As printed: `name.rs` or `pass/name.rs`.
    name: String,
    must_pass: bool,
}

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|entry| entry.expect("directory entry").path())
        .filter(|p| p.is_file() && p.extension() == Some("rs".as_ref()))
        .collect();
    files.sort();
    files
}

fn cases() -> Vec<Case> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/compile-fail");
    let name = |p: &Path| p.file_name().unwrap().to_string_lossy().into_owned();
    let mut out: Vec<Case> = rust_files(&root)
        .into_iter()
        .map(|path| Case {
            name: name(&path),
            path,
            must_pass: false,
        })
        .collect();
    out.extend(rust_files(&root.join("pass")).into_iter().map(|path| Case {
        name: format!("pass/{}", name(&path)),
        path,
        must_pass: true,
    }));
    out
}

/// What happened to one case: the line to print, or the report of why it
/// failed.
type Outcome = Result<String, String>;

fn run_case(lib: &Library, case: &Case, out_dir: &Path) -> Outcome {
    let fail = |problems: Vec<String>, rendered: &str| {
        let mut report = format!("{}:\n", case.name);
        for p in problems {
            report.push_str(&format!("  - {p}\n"));
        }
        if !rendered.is_empty() {
            report.push_str("  rustc said:\n");
            for line in rendered.lines() {
                report.push_str(&format!("    {line}\n"));
            }
        }
        Err(report)
    };
    let source =
        std::fs::read_to_string(&case.path).map_err(|e| format!("{}: reading: {e}", case.name))?;
    if !source.trim_start().starts_with("//") {
        return fail(
            vec!["must start with a comment stating the kernel rule".into()],
            "",
        );
    }
    let expected = match parse_expectations(&source) {
        Ok(expected) => expected,
        Err(e) => return fail(vec![e], ""),
    };
    let crate_name: String = case
        .name
        .trim_end_matches(".rs")
        .chars()
        .map(|c| if is_ident_char(c) { c } else { '_' })
        .collect();
    let output = Command::new(&lib.rustc)
        .args(["--edition", "2024", "--crate-type", "lib", "--crate-name"])
        .arg(&crate_name)
        .args(["--emit=metadata", "--error-format=json", "--extern"])
        .arg(format!("typed_vfio={}", lib.rlib.display()))
        .arg("-L")
        .arg(format!("dependency={}", lib.deps.display()))
        .arg("-o")
        .arg(out_dir.join(format!("lib{crate_name}.rmeta")))
        .arg(&case.path)
        .output()
        .map_err(|e| format!("{}: running {}: {e}", case.name, lib.rustc.display()))?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    let errors = match parse_diagnostics(&stderr) {
        Ok(errors) => errors,
        Err(e) => return fail(vec![format!("unreadable rustc output: {e}")], &stderr),
    };
    let succeeded = output.status.success();
    let problems = if case.must_pass {
        check_pass(&expected, succeeded, &errors)
    } else {
        check_fail(&expected, succeeded, &errors)
    };
    if problems.is_empty() {
        Ok(if case.must_pass {
            format!("compile-pass ok: {}", case.name)
        } else {
            let list: Vec<String> = expected.iter().map(ToString::to_string).collect();
            format!("compile-fail ok: {} ({})", case.name, list.join(", "))
        })
    } else {
        let rendered: String = errors.iter().map(|d| d.rendered.as_str()).collect();
        fail(problems, &rendered)
    }
}

#[test]
fn compile_fail_cases() {
    let cases = cases();
    let failing = cases.iter().filter(|c| !c.must_pass).count();
    assert!(failing > 0, "no compile-fail cases found");
    assert!(
        failing < cases.len(),
        "no control programs found under pass/"
    );

    let lib = build_library().unwrap_or_else(|e| panic!("{e}"));
    let out_dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("compile-fail");
    std::fs::create_dir_all(&out_dir).expect("creating the output directory");

    // rustc per case, on as many threads as there are CPUs.
    let next = AtomicUsize::new(0);
    let outcomes: Mutex<Vec<Option<Outcome>>> = Mutex::new(vec![None; cases.len()]);
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get().min(cases.len()));
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(case) = cases.get(i) else { break };
                    let outcome = run_case(&lib, case, &out_dir);
                    outcomes.lock().unwrap()[i] = Some(outcome);
                }
            });
        }
    });

    // Written to stdout directly, not through the test's captured output,
    // so the per-case lines show in a plain `cargo test`.
    let mut stdout = std::io::stdout().lock();
    let mut reports = Vec::new();
    for outcome in outcomes.into_inner().unwrap().into_iter().flatten() {
        match outcome {
            Ok(line) => writeln!(stdout, "{line}").unwrap(),
            Err(report) => reports.push(report),
        }
    }
    stdout.flush().unwrap();
    if !reports.is_empty() {
        panic!(
            "{} of {} cases failed:\n\n{}",
            reports.len(),
            cases.len(),
            reports.join("\n")
        );
    }
}

// ---- unit tests of the harness itself ----

fn diag(code: Option<&str>, message: &str, extra: &[&str]) -> Diagnostic {
    let mut texts = vec![message.to_owned()];
    texts.extend(extra.iter().map(|t| (*t).to_owned()));
    Diagnostic {
        code: code.map(str::to_owned),
        message: message.to_owned(),
        texts,
        rendered: String::new(),
    }
}

fn expect(code: &str, item: &str) -> Expectation {
    Expectation {
        code: code.into(),
        item: item.into(),
        line: 1,
    }
}

#[test]
fn parses_expectations() {
    let source = "// rule\nlet m = c.map(&b); //~ ERROR E0599 map\n    //~ ERROR E0505 container\n";
    assert_eq!(
        parse_expectations(source).unwrap(),
        vec![
            Expectation {
                code: "E0599".into(),
                item: "map".into(),
                line: 2
            },
            Expectation {
                code: "E0505".into(),
                item: "container".into(),
                line: 3
            },
        ]
    );
    assert_eq!(parse_expectations("fn f() {}\n").unwrap(), vec![]);
    for bad in [
        "x //~ ERROR map",
        "x //~ ERROR E0599",
        "x //~ WARN E0599 map",
        "x //~ ERROR 0599 map",
        "x //~ ERROR E0599 map extra",
        "x //~ ERROR E0599 `map`",
    ] {
        assert!(parse_expectations(bad).is_err(), "accepted {bad:?}");
    }
}

#[test]
fn matches_whole_identifiers() {
    assert!(mentions_identifier("no method named `map` found", "map"));
    assert!(mentions_identifier("map", "map"));
    assert!(mentions_identifier(
        "`Cfg: typed_vfio::container::sealed::Sealed`",
        "Sealed"
    ));
    assert!(!mentions_identifier(
        "`DmaMapping<'_>` unmap_all mapping",
        "map"
    ));
    assert!(!mentions_identifier("", "map"));
}

#[test]
fn accepts_a_matching_failure() {
    let errors = [diag(
        Some("E0599"),
        "no method named `map` found for struct `Container<Attached>`",
        &[],
    )];
    assert_eq!(
        check_fail(&[expect("E0599", "map")], false, &errors),
        Vec::<String>::new()
    );
    // The item may be mentioned in a label, a note or the highlighted source.
    let errors = [diag(
        Some("E0277"),
        "`Cell<usize>` cannot be shared between threads safely",
        &["required because it appears within the type `DmaBuffer`"],
    )];
    assert!(check_fail(&[expect("E0277", "DmaBuffer")], false, &errors).is_empty());
}

#[test]
fn reports_unmatched_expectations() {
    let errors = [diag(Some("E0599"), "no method named `reset` found", &[])];
    let problems = check_fail(&[expect("E0599", "map")], false, &errors);
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(problems[0].contains("none mentions `map`"), "{problems:?}");

    let problems = check_fail(&[expect("E0505", "container")], false, &errors);
    assert!(
        problems
            .iter()
            .any(|p| p.contains("E0505 was not reported")),
        "{problems:?}"
    );
    assert!(
        problems
            .iter()
            .any(|p| p.contains("unexpected error E0599")),
        "{problems:?}"
    );
}

#[test]
fn reports_extra_error_codes() {
    let errors = [
        diag(Some("E0599"), "no method named `map` found", &[]),
        diag(Some("E0308"), "mismatched types", &[]),
        diag(None, "lifetime may not live long enough", &[]),
    ];
    let problems = check_fail(&[expect("E0599", "map")], false, &errors);
    assert_eq!(problems.len(), 2, "{problems:?}");
    assert!(problems[0].contains("unexpected error E0308"));
    assert!(problems[1].contains("unexpected error (no code)"));
}

#[test]
fn reports_cases_that_compile() {
    let problems = check_fail(&[expect("E0599", "map")], true, &[]);
    assert_eq!(problems.len(), 1);
    assert!(problems[0].contains("API hole"));
    assert!(!check_fail(&[], false, &[diag(Some("E0599"), "map", &[])]).is_empty());
}

#[test]
fn control_programs_must_compile_cleanly() {
    assert!(check_pass(&[], true, &[]).is_empty());
    assert_eq!(
        check_pass(&[], false, &[diag(Some("E0463"), "can't find crate", &[])]).len(),
        1
    );
    assert_eq!(check_pass(&[], false, &[]).len(), 1);
    assert_eq!(check_pass(&[expect("E0599", "map")], true, &[]).len(), 1);
}

#[test]
fn reads_rustc_json() {
    let stderr = concat!(
        r#"{"$message_type":"diagnostic","message":"cannot move out of `buffer` because it is borrowed","#,
        r#""code":{"code":"E0505","explanation":"..."},"level":"error","spans":[{"is_primary":true,"#,
        r#""label":"move out of `buffer` occurs here","text":[{"text":"    drop(buffer); //~ ERROR E0505 buffer","#,
        r#""highlight_start":10,"highlight_end":16}]},{"is_primary":false,"label":null,"#,
        r#""text":[{"text":"let m = c.map(\u0026buffer, \"x\\n\");","highlight_start":9,"highlight_end":14}]}],"#,
        r#""children":[{"message":"note \ud83d\ude00","code":null,"level":"note","spans":[],"children":[]}],"#,
        r#""rendered":"error[E0505]: ...\n"}"#,
        "\n",
        r#"{"$message_type":"diagnostic","message":"unused variable: `x`","code":{"code":"unused_variables"},"level":"warning","spans":[],"children":[],"rendered":""}"#,
        "\n",
        r#"{"$message_type":"diagnostic","message":"aborting due to 1 previous error","code":null,"level":"error","spans":[],"children":[],"rendered":""}"#,
        "\nnot json at all\n",
    );
    let errors = parse_diagnostics(stderr).unwrap();
    assert_eq!(errors.len(), 1);
    let e = &errors[0];
    assert_eq!(e.code.as_deref(), Some("E0505"));
    assert_eq!(e.rendered, "error[E0505]: ...\n");
    assert!(e.texts.contains(&"buffer\n".to_owned()), "{:?}", e.texts);
    assert!(
        e.texts.contains(&"note \u{1f600}".to_owned()),
        "{:?}",
        e.texts
    );
    // Non-primary spans' source and the expectation comment do not count.
    assert!(!e.mentions("map"));
    assert!(!e.mentions("ERROR"));
    assert!(parse_diagnostics("{\"message\": tru}").is_err());
}

#[test]
fn highlights_stop_at_expectation_comments() {
    let span = json::parse(
        r#"{"text":[{"text":"f(x) //~ ERROR E0599 map","highlight_start":1,"highlight_end":25}]}"#,
    )
    .unwrap();
    assert_eq!(highlighted(&span), "f(x) \n");
}
