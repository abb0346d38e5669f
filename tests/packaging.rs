//! Packaging checks that need no build: the library alone (`--no-default-features`,
//! as CMake builds it without `-DPYME_BUILD_CLI=ON`) does not depend on the CLI's
//! crates, the `cli` feature (a default one) brings them, and the Windows toolchain
//! file and export patterns are where CMake expects them. The builds themselves are
//! tested by `tests/cmake_package.rs` (Linux) and `tests/windows.rs` (Wine).
//!
//! The Python wheel (`scripts/package.sh wheel`: maturin and zig from the package
//! registry, a release build of minutes) is opt-in: `PYME_TEST_WHEEL=1 cargo test
//! --test packaging wheel`, as `.ci/run` sets; without it the test is skipped visibly
//! (`common/skip.rs`, a failure under CI). `PYME_WHEEL_PYTHONS` lists the interpreters
//! whose fresh venvs it installs the wheel into (default `python3`).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::skip::{require_tool, skip};
use common::TestServer;

const CLI_ONLY: [&str; 3] = ["clap", "indicatif", "ctrlc"];

/// The crates the library's normal dependency graph holds with these cargo flags.
fn dependency_names(flags: &[&str]) -> Vec<String> {
    let output = Command::new(env!("CARGO"))
        .args([
            "tree",
            "--offline",
            "--locked",
            "-e",
            "normal",
            "--prefix",
            "none",
            "--format",
            "{p}",
        ])
        .args(flags)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo tree runs");
    assert!(
        output.status.success(),
        "cargo tree failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}

#[test]
fn the_library_alone_does_not_build_the_cli_crates() {
    let names = dependency_names(&["--no-default-features"]);
    assert!(names.iter().any(|name| name == "rusqlite"), "{names:?}");
    for crate_name in CLI_ONLY {
        assert!(
            !names.iter().any(|name| name == crate_name),
            "{crate_name} is built without the cli feature"
        );
    }
    let names = dependency_names(&[]);
    for crate_name in CLI_ONLY {
        assert!(
            names.iter().any(|name| name == crate_name),
            "{crate_name} is missing with the default features: {names:?}"
        );
    }
}

#[test]
fn export_patterns_cover_every_function_of_the_header() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let patterns: Vec<String> = std::fs::read_to_string(root.join("cmake/pyme_streaming.exports"))
        .unwrap()
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(str::to_owned)
        .collect();
    let header = std::fs::read_to_string(root.join("include/pyme_streaming.h")).unwrap();
    // Every exported function of src/ffi (what rustc exports from the cdylib).
    let mut functions = Vec::new();
    for entry in std::fs::read_dir(root.join("src/ffi")).unwrap() {
        let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        for piece in text.split("extern \"C\" fn ").skip(1) {
            let name: String = piece
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if header.contains(&format!(" {name}(")) || header.contains(&format!("*{name}(")) {
                functions.push(name);
            }
        }
    }
    assert!(functions.len() >= 40, "{functions:?}");
    for function in functions {
        assert!(
            patterns.iter().any(|pattern| match pattern.strip_suffix('*') {
                Some(prefix) => function.starts_with(prefix),
                None => function == *pattern,
            }),
            "{function} is in the header but no pattern of cmake/pyme_streaming.exports keeps it global"
        );
    }
    assert!(root.join("cmake/toolchains/mingw-w64.cmake").is_file());
}

/// `glibc` versions as numbers, for comparing "2.17" with "2.9".
fn glibc_version(text: &str) -> Vec<u32> {
    text.split('.').map(|part| part.parse().unwrap()).collect()
}

fn run_checked(command: &mut Command, what: &str) -> String {
    let output = command.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        output.status.success(),
        "{what} failed ({}):\n--- stdout\n{}\n--- stderr\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The wheel of `scripts/package.sh wheel` is what pip on a lab machine with glibc
/// 2.17 (CentOS 7) and any CPython >= 3.9 takes: its tags say cp39-abi3 and
/// manylinux2014, its extension needs no glibc symbol newer than 2.17 and links only
/// system libraries (no libhdf5); installed into a fresh venv with no Rust toolchain on
/// PATH and no package index, it imports from that venv and streams files to a data
/// server on loopback, which stores them byte-exact.
#[test]
fn wheel_is_manylinux2014_abi3_and_streams_from_a_fresh_venv() {
    let test = "wheel_is_manylinux2014_abi3_and_streams_from_a_fresh_venv";
    if std::env::var("PYME_TEST_WHEEL").as_deref() != Ok("1") {
        skip(
            test,
            "opt-in (maturin and zig from the package registry, a release build of \
             minutes): `PYME_TEST_WHEEL=1 cargo test --test packaging wheel`",
        );
        return;
    }
    for (tool, args) in [
        ("python3", &["--version"][..]),
        ("objdump", &["--version"][..]),
        ("readelf", &["--version"][..]),
    ] {
        if !require_tool(test, tool, args) {
            return;
        }
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let built = run_checked(
        Command::new(root.join("scripts/package.sh")).arg("wheel"),
        "scripts/package.sh wheel",
    );
    let wheels: Vec<PathBuf> = std::fs::read_dir(root.join("dist"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "whl"))
        .collect();
    assert_eq!(wheels.len(), 1, "one wheel in dist/: {wheels:?} ({built})");
    let wheel = &wheels[0];
    let name = wheel.file_name().unwrap().to_str().unwrap();
    assert!(
        name.starts_with(&format!(
            "pyme_streaming-{}-cp39-abi3-manylinux2014_x86_64",
            env!("CARGO_PKG_VERSION")
        )),
        "{name}"
    );

    let work = tempfile::tempdir().unwrap();
    let unpacked = work.path().join("unpacked");
    run_checked(
        Command::new("python3")
            .args(["-m", "zipfile", "-e"])
            .arg(wheel)
            .arg(&unpacked),
        "unzip the wheel",
    );
    let metadata = std::fs::read_to_string(unpacked.join(format!(
        "pyme_streaming-{}.dist-info/WHEEL",
        env!("CARGO_PKG_VERSION")
    )))
    .unwrap();
    assert!(
        metadata.contains("Tag: cp39-abi3-manylinux2014_x86_64"),
        "{metadata}"
    );
    let extension = unpacked.join("pyme_streaming/_native.abi3.so");
    let symbols = run_checked(
        Command::new("objdump").arg("-T").arg(&extension),
        "objdump -T",
    );
    let newest = symbols
        .split("GLIBC_")
        .skip(1)
        .map(|rest| {
            rest.chars()
                .take_while(|c| c.is_ascii_digit() || *c == '.')
                .collect::<String>()
        })
        // (GLIBC_PRIVATE has no number)
        .filter(|version| !version.is_empty())
        .map(|version| glibc_version(version.trim_end_matches('.')))
        .max()
        .expect("the extension uses glibc");
    assert!(
        newest <= glibc_version("2.17") && newest >= glibc_version("2.2"),
        "the wheel needs glibc {newest:?}, newer than manylinux2014's 2.17"
    );
    let dynamic = run_checked(
        Command::new("readelf").arg("-d").arg(&extension),
        "readelf -d",
    );
    let needed: Vec<&str> = dynamic
        .lines()
        .filter_map(|line| line.split("Shared library: [").nth(1))
        .map(|rest| rest.trim_end_matches(']'))
        .collect();
    assert!(needed.contains(&"libc.so.6"), "{needed:?}");
    for library in &needed {
        assert!(
            [
                "libc.so",
                "libm.so",
                "libdl.so",
                "libpthread.so",
                "librt.so",
                "libgcc_s.so",
                "ld-linux-x86-64.so"
            ]
            .iter()
            .any(|system| library.starts_with(system)),
            "the wheel links {library}, which a user would have to install"
        );
    }

    // Each interpreter of PYME_WHEEL_PYTHONS (default python3; .ci/run adds a CPython
    // 3.9, the oldest the abi3 tag names, where the machine has one).
    let pythons = std::env::var("PYME_WHEEL_PYTHONS").unwrap_or("python3".to_owned());
    for (n, python) in pythons.split_whitespace().enumerate() {
        streams_from_a_fresh_venv(wheel, python, &work.path().join(format!("venv{n}")));
    }
}

/// Installs `wheel` into a fresh venv made by `python`, from the file alone (no index,
/// no build) with a PATH that has no cargo, and streams 20 files from it to a data
/// server on loopback, which stores them byte-exact.
fn streams_from_a_fresh_venv(wheel: &Path, python: &str, venv: &Path) {
    run_checked(
        Command::new(python).args(["-m", "venv"]).arg(venv),
        &format!("{python} -m venv"),
    );
    let path = format!("{}:/usr/bin:/bin", venv.join("bin").display());
    for dir in path.split(':') {
        for tool in ["cargo", "rustc"] {
            assert!(!Path::new(dir).join(tool).exists(), "{tool} in {dir}");
        }
    }
    run_checked(
        Command::new(venv.join("bin/pip"))
            .args(["install", "-q", "--no-index", "--no-deps"])
            .arg(wheel)
            .env("PATH", &path),
        &format!("pip install the wheel ({python})"),
    );
    let server = TestServer::start();
    let script = r#"
import sys, pyme_streaming
assert pyme_streaming.__file__.startswith(sys.prefix), pyme_streaming.__file__
with pyme_streaming.Streamer(servers=[sys.argv[1]]) as streamer:
    for i in range(20):
        streamer.put("wheel/file%02d.bin" % i, bytes([i]) * (1000 + i))
print("streamed from Python %d.%d" % sys.version_info[:2], pyme_streaming.__file__)
"#;
    let home = venv.parent().unwrap();
    let stdout = run_checked(
        Command::new(venv.join("bin/python"))
            .args(["-c", script, &server.address()])
            .env_clear()
            .env("PATH", &path)
            .env("HOME", home)
            .current_dir(home),
        &format!("the wheel streams from a fresh venv ({python})"),
    );
    assert!(stdout.contains("streamed from Python 3."), "{stdout}");
    let expected: Vec<String> = (0..20).map(|i| format!("wheel/file{i:02}.bin")).collect();
    assert_eq!(server.files(), expected, "{python}");
    for (i, name) in expected.iter().enumerate() {
        assert_eq!(
            server.read(name).unwrap(),
            vec![i as u8; 1000 + i],
            "{name}"
        );
    }
    eprintln!("{}", stdout.trim());
}
