//! Packaging checks that need no build: the library alone (`--no-default-features`,
//! as CMake builds it without `-DPYME_BUILD_CLI=ON`) does not depend on the CLI's
//! crates, the `cli` feature (a default one) brings them, and the Windows toolchain
//! file and export patterns are where CMake expects them. The builds themselves are
//! tested by `tests/cmake_package.rs` (Linux) and `tests/windows.rs` (Wine).

use std::path::Path;
use std::process::Command;

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
