//! The CMake package as a user gets it: configure, build (cargo --release) and
//! install the repository into a temporary prefix, then build `c_examples/`
//! with `find_package(PymeStreaming CONFIG REQUIRED)` and
//! `-DCMAKE_PREFIX_PATH=<prefix>`, and run the examples against data servers.
//!
//! Slow (a release build from scratch), so opt-in:
//!
//! ```text
//! PYME_TEST_CMAKE=1 cargo test --test cmake_package
//! ```
//!
//! Skipped, with the reason printed, without `PYME_TEST_CMAKE=1` or without cmake.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{dead_address, run, start_servers, TestServer};

fn should_run() -> bool {
    if std::env::var("PYME_TEST_CMAKE").as_deref() != Ok("1") {
        eprintln!("SKIPPED: set PYME_TEST_CMAKE=1 to build and install the CMake package (slow: a release build)");
        return false;
    }
    if Command::new("cmake").arg("--version").output().is_err() {
        eprintln!("SKIPPED: cmake is not installed (apt-get install -y cmake)");
        return false;
    }
    true
}

fn install_package(work: &Path) -> PathBuf {
    let source = Path::new(env!("CARGO_MANIFEST_DIR"));
    let build = work.join("build");
    let prefix = work.join("prefix");
    run(Command::new("cmake")
        .arg("-S")
        .arg(source)
        .arg("-B")
        .arg(&build)
        .arg("-DCMAKE_BUILD_TYPE=Release"));
    run(Command::new("cmake").arg("--build").arg(&build));
    run(Command::new("cmake")
        .arg("--install")
        .arg(&build)
        .arg("--prefix")
        .arg(&prefix));
    prefix
}

#[test]
fn installed_package_builds_and_runs_the_examples() {
    if !should_run() {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let prefix = install_package(work.path());
    for file in [
        "include/pyme_streaming.h",
        "include/pyme_streaming.hpp",
        "lib/libpyme_streaming.so",
        "lib/libpyme_streaming.a",
        "lib/cmake/PymeStreaming/PymeStreamingConfig.cmake",
        "lib/cmake/PymeStreaming/PymeStreamingConfigVersion.cmake",
        "lib/pkgconfig/pyme_streaming.pc",
    ] {
        assert!(prefix.join(file).exists(), "{file} installed");
    }
    let pc = std::fs::read_to_string(prefix.join("lib/pkgconfig/pyme_streaming.pc")).unwrap();
    assert!(
        pc.contains(&format!("Version: {}", env!("CARGO_PKG_VERSION"))),
        "{pc}"
    );

    let examples = work.path().join("examples");
    run(Command::new("cmake")
        .arg("-S")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("c_examples"))
        .arg("-B")
        .arg(&examples)
        .arg(format!("-DCMAKE_PREFIX_PATH={}", prefix.display())));
    run(Command::new("cmake").arg("--build").arg(&examples));

    let servers = start_servers(2);
    let addresses: Vec<String> = servers.iter().map(TestServer::address).collect();
    let library_path = prefix.join("lib");
    let output = run(Command::new(examples.join("stream_frames"))
        .env("LD_LIBRARY_PATH", &library_path)
        .args(["-n", "40", "-s", "4096", "-p", "cmake_frames"])
        .args(&addresses));
    assert!(String::from_utf8_lossy(&output.stdout).contains("all 40 frames acknowledged"));
    let output = run(Command::new(examples.join("camera_sim"))
        .env("LD_LIBRARY_PATH", &library_path)
        .args(["-f", "200", "-n", "60", "-s", "65536", "-p", "cmake_camera"])
        .args(&addresses));
    assert!(String::from_utf8_lossy(&output.stdout).contains("all 60 frames acknowledged"));
    let output = run(Command::new(examples.join("api_checks"))
        .env("LD_LIBRARY_PATH", &library_path)
        .arg(&addresses[0])
        .arg(dead_address()));
    assert!(String::from_utf8_lossy(&output.stdout).contains(" passed, 0 failed"));
    let stored: usize = servers.iter().map(|s| s.files().len()).sum();
    assert!(stored >= 100, "{stored} files stored");
}
