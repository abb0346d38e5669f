//! What C sees of the ABI, pinned: `tests/abi/probe.c`, generated from the header
//! and committed, states `sizeof` and `offsetof` (and each field's size) of every
//! public struct, the value of every enum constant and constant macro, and the type
//! of every function and callback typedef (a function pointer of the recorded type
//! initialized with the function: a different prototype does not compile with
//! `-Werror`). abidiff (scripts/abi.sh) sees symbols and Rust's debug information;
//! this sees the C header.
//!
//! - `the_committed_probe_compiles_against_the_header`: every recorded fact still
//!   holds. A failure is an incompatible change: raise the soname (docs/ABI.md) and
//!   regenerate. The probe records the soname it was made for; after a raise it must
//!   be regenerated.
//! - `the_committed_probe_records_the_whole_header`: a fresh generation equals the
//!   committed file, so an addition (a function, a field, a code) cannot go
//!   unrecorded.
//!
//! Regenerate (after an intended change, with the ABI baseline):
//!
//! ```text
//! scripts/abi.sh update
//! ```
//!
//! (only the probe: `cargo test --test abi_probe -- --ignored write_probe --exact`).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::c_header::{self, Header};

fn manifest_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn probe_path() -> PathBuf {
    manifest_dir().join("tests/abi/probe.c")
}

/// `set(PYME_SOVERSION N)` of CMakeLists.txt: the soname's number.
fn soversion() -> u32 {
    let text = std::fs::read_to_string(manifest_dir().join("CMakeLists.txt")).unwrap();
    text.lines()
        .find_map(|line| line.trim().strip_prefix("set(PYME_SOVERSION "))
        .and_then(|rest| rest.trim_end_matches(')').trim().parse().ok())
        .expect("CMakeLists.txt sets PYME_SOVERSION")
}

/// The macros whose value is part of the ABI (not the version of the header).
fn abi_macros(header: &Header) -> Vec<(String, String)> {
    header
        .macros
        .iter()
        .filter(|(name, _)| name.starts_with("STREAMER_"))
        .cloned()
        .collect()
}

fn generate(header: &Header) -> String {
    let layouts = c_header::compiled_layouts(header);
    let value = |structure: &str, field: &str| {
        layouts
            .iter()
            .find(|(s, f, _)| s == structure && f == field)
            .unwrap()
            .2
    };
    let mut out = String::new();
    out.push_str(&format!(
        "/*\n * The C ABI of libpyme_streaming.so.{0}, as the header states it: generated from\n \
         * include/pyme_streaming.h by tests/abi_probe.rs -- do not edit.\n \
         * Regenerate after an intended change: scripts/abi.sh update (docs/ABI.md).\n \
         * Compiled against the header by `cargo test --test abi_probe`: a fact that no\n \
         * longer holds does not compile.\n */\n\
         #include <stddef.h>\n#include <stdint.h>\n#include <pyme_streaming.h>\n\n\
         #define PROBE_SOVERSION {0}\n\
         #define PROBE_ASSERT(name, fact) typedef char probe_##name[(fact) ? 1 : -1]\n",
        soversion()
    ));
    for s in &header.structs {
        out.push_str(&format!("\n/* struct {} */\n", s.name));
        out.push_str(&format!(
            "PROBE_ASSERT(sizeof_{0}, sizeof({0}) == {1});\n",
            s.name,
            value(&s.name, "sizeof")
        ));
        for field in &s.fields {
            out.push_str(&format!(
                "PROBE_ASSERT(offsetof_{0}_{1}, offsetof({0}, {1}) == {2});\n",
                s.name,
                field.name,
                value(&s.name, &field.name)
            ));
            out.push_str(&format!(
                "PROBE_ASSERT(type_{0}_{1}, sizeof((({0} *)0)->{1}) == sizeof({2}));\n",
                s.name, field.name, field.c_type
            ));
        }
    }
    for e in &header.enums {
        out.push_str(&format!("\n/* enum {} */\n", e.name));
        for (constant, number) in &e.constants {
            out.push_str(&format!(
                "PROBE_ASSERT({constant}, {constant} == {number});\n"
            ));
        }
    }
    out.push_str("\n/* constants */\n");
    for (name, value) in abi_macros(header) {
        out.push_str(&format!("PROBE_ASSERT({name}, {name} == {value});\n"));
    }
    out.push_str("\n/* callbacks: a pointer of the recorded type is one of the typedef */\n");
    for (name, text) in &header.callback_typedefs {
        let pointer = text
            .trim_start_matches("typedef ")
            .trim_end_matches(';')
            .replacen(&format!("(*{name})"), "(*)", 1);
        out.push_str(&format!(
            "extern {name} probe_{name};\n{name} probe_{name} = ({pointer})0;\n"
        ));
    }
    out.push_str("\n/* functions: a pointer of the recorded type takes each */\n");
    for f in &header.functions {
        let params = if f.params.is_empty() {
            "void".to_owned()
        } else {
            f.params
                .iter()
                .map(|p| p.c_type.clone())
                .collect::<Vec<_>>()
                .join(", ")
        };
        out.push_str(&format!(
            "extern {ret} (*const probe_{name})({params});\n{ret} (*const probe_{name})({params}) = {name};\n",
            ret = f.return_type,
            name = f.name
        ));
    }
    out
}

/// Compiles `probe` against the header (C99, every warning an error): the output
/// of the compiler when it fails.
fn compile(probe: &Path) -> Result<(), String> {
    let dir = tempfile::tempdir().unwrap();
    let output = Command::new("cc")
        .args(["-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic", "-c"])
        .arg("-I")
        .arg(manifest_dir().join("include"))
        .arg(probe)
        .arg("-o")
        .arg(dir.path().join("probe.o"))
        .output()
        .expect("cc runs");
    if output.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&output.stderr).into_owned())
    }
}

fn committed_soversion(probe: &str) -> Option<u32> {
    probe
        .lines()
        .find_map(|line| line.strip_prefix("#define PROBE_SOVERSION "))
        .and_then(|n| n.trim().parse().ok())
}

#[test]
fn the_committed_probe_compiles_against_the_header() {
    let committed = std::fs::read_to_string(probe_path()).expect("tests/abi/probe.c");
    let recorded = committed_soversion(&committed).expect("the probe records its soname");
    assert_eq!(
        recorded,
        soversion(),
        "tests/abi/probe.c was made for soname {recorded}, CMakeLists.txt says {}: \
         after raising the soname, run scripts/abi.sh update",
        soversion()
    );
    if let Err(errors) = compile(&probe_path()) {
        panic!(
            "the header no longer keeps the ABI tests/abi/probe.c records (an incompatible \
             change): keep it, or raise PYME_SOVERSION in CMakeLists.txt and run \
             scripts/abi.sh update (docs/ABI.md).\n{errors}"
        );
    }
}

#[test]
fn the_committed_probe_records_the_whole_header() {
    let committed = std::fs::read_to_string(probe_path()).unwrap_or_default();
    let fresh = generate(&c_header::read());
    if committed != fresh {
        let first = committed
            .lines()
            .zip(fresh.lines())
            .position(|(a, b)| a != b)
            .map_or("in length".to_owned(), |n| format!("at line {}", n + 1));
        panic!(
            "tests/abi/probe.c does not record the whole header (differs {first}): \
             record an addition with scripts/abi.sh update"
        );
    }
}

/// The probe finds what it must: a moved field, a renumbered code and a changed
/// prototype each stop it compiling.
#[test]
fn a_changed_layout_code_or_prototype_breaks_the_probe() {
    let header = c_header::read();
    let probe = generate(&header);
    let dir = tempfile::tempdir().unwrap();
    let try_with = |from: &str, to: &str| {
        assert!(probe.contains(from), "{from}");
        let path = dir.path().join("probe.c");
        std::fs::write(&path, probe.replacen(from, to, 1)).unwrap();
        compile(&path)
    };
    assert!(try_with("", "").is_ok(), "the fresh probe compiles");
    assert!(try_with(
        "offsetof(PymeStreamerStats, files_queued) == 8",
        "offsetof(PymeStreamerStats, files_queued) == 16"
    )
    .is_err());
    assert!(try_with(
        "STREAMER_ERR_NULL_ARGUMENT == -1",
        "STREAMER_ERR_NULL_ARGUMENT == -2"
    )
    .is_err());
    assert!(try_with(
        "(*const probe_streamer_flush)(struct PymeStreamer *, uint32_t) = streamer_flush",
        "(*const probe_streamer_flush)(struct PymeStreamer *, uint64_t) = streamer_flush"
    )
    .is_err());
}

/// Writes tests/abi/probe.c (run by `scripts/abi.sh update`).
#[test]
#[ignore = "writes tests/abi/probe.c; run by scripts/abi.sh update"]
fn write_probe() {
    std::fs::create_dir_all(probe_path().parent().unwrap()).unwrap();
    std::fs::write(probe_path(), generate(&c_header::read())).unwrap();
}
