//! The CMake package as a user gets it: configure, build (cargo --release, with
//! `-DPYME_BUILD_CLI=ON`) and install the repository twice (plain and `--strip`) into
//! prefixes under `<target dir>/cmake-package-test` with a multiarch libdir
//! (`lib/<gcc -print-multiarch>`), then: build `c_examples/` with
//! `find_package(PymeStreaming)` and run them against data servers; check the versioned
//! shared library (soname, symlinks, symbol versions, only the API global), the clean
//! static library (only the API global; links beside the program's own SQLite),
//! pkg-config (multiarch paths, `--static`, the `-static` .pc), `--strip` and the
//! installed `pyme-stream`.
//!
//! Slow (a release build), so opt-in:
//!
//! ```text
//! PYME_TEST_CMAKE=1 cargo test --test cmake_package
//! ```
//!
//! Skipped visibly (`common/skip.rs`: the reason on the raw standard error) without
//! `PYME_TEST_CMAKE=1`, or without cmake, pkg-config or g++; the check of a program's own
//! SQLite also without the system SQLite (libsqlite3-dev). `.ci/run` installs them all
//! and sets `PYME_TEST_CMAKE=1`, and a skip under CI fails.
//! The release build goes to this test run's cargo target directory (`target/release`),
//! so a second run rebuilds nothing.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use common::skip::{require_tool, skip};
use common::{dead_address, run, start_servers, TestServer};

fn should_run(test: &str) -> bool {
    if std::env::var("PYME_TEST_CMAKE").as_deref() != Ok("1") {
        skip(
            test,
            "opt-in (a release build and two installs: minutes); run it with \
             `PYME_TEST_CMAKE=1 cargo test --test cmake_package`",
        );
        return false;
    }
    // g++: the examples' project has C++ programs.
    ["cmake", "pkg-config", "g++"]
        .into_iter()
        .all(|tool| require_tool(test, tool, &["--version"]))
}

fn source_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The cargo target directory of this test run (`<target>/<profile>/deps/<test>`).
fn cargo_target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    exe.ancestors().nth(3).expect("target dir").to_owned()
}

/// One configure, build and two installs, shared by every test of this file.
struct Install {
    /// `<target dir>/cmake-package-test`: not a temporary directory, because a
    /// `static` is never dropped and the ~430 MB of build, prefixes and probes
    /// would stay behind in the system's temporary folder after every run (they
    /// filled a CI machine's disk). Cleared at the start of each run instead, so
    /// one copy at most is ever kept, beside the build it came from.
    work: PathBuf,
    /// `cmake --install build --prefix <prefix>`
    prefix: PathBuf,
    /// `cmake --install build --prefix <stripped> --strip`
    stripped: PathBuf,
    /// Relative to the prefixes: `lib/x86_64-linux-gnu` on Debian.
    libdir: String,
}

impl Install {
    fn lib(&self, prefix: &Path, name: &str) -> PathBuf {
        prefix.join(&self.libdir).join(name)
    }
}

fn install() -> &'static Install {
    static INSTALL: OnceLock<Result<Install, String>> = OnceLock::new();
    INSTALL
        .get_or_init(|| {
            std::panic::catch_unwind(make_install).map_err(|panic| {
                panic
                    .downcast_ref::<String>()
                    .cloned()
                    .unwrap_or_else(|| "the install failed".to_owned())
            })
        })
        .as_ref()
        .unwrap_or_else(|message| panic!("building the package failed: {message}"))
}

fn make_install() -> Install {
    let work = cargo_target_dir().join("cmake-package-test");
    if work.exists() {
        std::fs::remove_dir_all(&work).expect("clearing the last run's cmake-package-test");
    }
    std::fs::create_dir_all(&work).unwrap();
    let multiarch = Command::new("gcc")
        .arg("-print-multiarch")
        .output()
        .map(|output| String::from_utf8_lossy(&output.stdout).trim().to_owned())
        .unwrap_or_default();
    let libdir = if multiarch.is_empty() {
        "lib/multiarch-test".to_owned()
    } else {
        format!("lib/{multiarch}")
    };
    let build = work.join("build");
    run(Command::new("cmake")
        .arg("-S")
        .arg(source_dir())
        .arg("-B")
        .arg(&build)
        .arg("-DCMAKE_BUILD_TYPE=Release")
        .arg("-DCMAKE_INSTALL_PREFIX=/usr")
        .arg(format!("-DCMAKE_INSTALL_LIBDIR={libdir}"))
        .arg("-DPYME_BUILD_CLI=ON")
        .arg(format!(
            "-DPYME_CARGO_TARGET_DIR={}",
            cargo_target_dir().display()
        )));
    run(Command::new("cmake").arg("--build").arg(&build));
    let prefix = work.join("prefix");
    let stripped = work.join("stripped");
    run(Command::new("cmake")
        .arg("--install")
        .arg(&build)
        .arg("--prefix")
        .arg(&prefix));
    run(Command::new("cmake")
        .arg("--install")
        .arg(&build)
        .arg("--prefix")
        .arg(&stripped)
        .arg("--strip"));
    Install {
        work,
        prefix,
        stripped,
        libdir,
    }
}

/// The glob patterns of `cmake/pyme_streaming.exports`.
fn api_patterns() -> Vec<String> {
    std::fs::read_to_string(source_dir().join("cmake/pyme_streaming.exports"))
        .unwrap()
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(str::to_owned)
        .collect()
}

fn is_api(name: &str) -> bool {
    api_patterns()
        .iter()
        .any(|pattern| match pattern.strip_suffix('*') {
            Some(prefix) => name.starts_with(prefix),
            None => name == pattern,
        })
}

/// The functions the header declares (the identifier before the `(` of each
/// declaration line that names an API function).
fn header_functions() -> Vec<String> {
    let header = std::fs::read_to_string(source_dir().join("include/pyme_streaming.h")).unwrap();
    let mut names: Vec<String> = header
        .lines()
        .map(str::trim)
        .filter(|line| !line.starts_with(['*', '/', '#']) && !line.starts_with("typedef"))
        .filter_map(|line| line.split_once('(').map(|(head, _)| head))
        .filter_map(|head| head.split_whitespace().last())
        .map(|name| name.trim_start_matches('*').to_owned())
        .filter(|name| is_api(name))
        .collect();
    names.sort();
    names.dedup();
    assert!(names.len() >= 40, "header functions: {names:?}");
    names
}

/// `(binding, name)` of every defined, non-local symbol `readelf -sW` lists (for an
/// archive, of every member), the `@VERSION` kept on the name.
fn defined_globals(file: &Path, dynamic: bool) -> Vec<(String, String)> {
    let output = run(Command::new("readelf")
        .arg(if dynamic { "--dyn-syms" } else { "--syms" })
        .arg("-W")
        .arg(file));
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            // Num: Value Size Type Bind Vis Ndx Name
            if fields.len() < 8 || !fields[0].ends_with(':') {
                return None;
            }
            let (bind, ndx, name) = (fields[4], fields[6], fields[7]);
            (matches!(bind, "GLOBAL" | "WEAK" | "UNIQUE") && ndx != "UND" && ndx != "ABS")
                .then(|| (bind.to_owned(), name.to_owned()))
        })
        .collect()
}

/// What `readelf -SW` says of the sections: which kinds are there.
struct Sections {
    debug_info: bool,
    symtab: bool,
}

fn sections(file: &Path) -> Sections {
    let output = run(Command::new("readelf").arg("-SW").arg(file));
    let text = String::from_utf8_lossy(&output.stdout);
    // "  [Nr] Name Type ...": the name is the word after "]".
    let names: Vec<&str> = text
        .lines()
        .filter_map(|line| line.split_once(']').map(|(_, rest)| rest))
        .filter_map(|rest| rest.split_whitespace().next())
        .collect();
    Sections {
        // `.debug_gdb_scripts` is loaded data (rustc's pointer to its gdb helpers), not
        // debug information: strip keeps it.
        debug_info: names
            .iter()
            .any(|name| name.starts_with(".debug_") && *name != ".debug_gdb_scripts"),
        symtab: names.contains(&".symtab"),
    }
}

fn probe_source() -> PathBuf {
    source_dir().join("tests/packaging/probe.c")
}

/// Runs `exe FRAMES PREFIX <server>` and checks every frame arrived.
fn run_probe(exe: &Path, library_path: Option<&Path>, prefix: &str) -> String {
    let server = TestServer::start();
    let mut command = Command::new(exe);
    if let Some(path) = library_path {
        command.env("LD_LIBRARY_PATH", path);
    }
    let output = run(command.args(["25", prefix]).arg(server.address()));
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        stdout.contains("probe: all 25 frames acknowledged"),
        "{stdout}"
    );
    assert_eq!(server.files().len(), 25, "{:?}", server.files());
    stdout
}

fn pkg_config(install: &Install, prefix: &Path, args: &[&str]) -> String {
    let output = run(Command::new("pkg-config")
        .env("PKG_CONFIG_PATH", install.lib(prefix, "pkgconfig"))
        .env_remove("PKG_CONFIG_LIBDIR")
        .env("PKG_CONFIG_ALLOW_SYSTEM_CFLAGS", "1")
        .env("PKG_CONFIG_ALLOW_SYSTEM_LIBS", "1")
        .args(args));
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

#[test]
fn installed_package_builds_and_runs_the_examples() {
    if !should_run("installed_package_builds_and_runs_the_examples") {
        return;
    }
    let install = install();
    let prefix = &install.prefix;
    for file in [
        "include/pyme_streaming.h",
        "include/pyme_streaming.hpp",
        "bin/pyme-stream",
    ] {
        assert!(prefix.join(file).exists(), "{file} installed");
    }
    for file in [
        "libpyme_streaming.so",
        "libpyme_streaming.a",
        "cmake/PymeStreaming/PymeStreamingConfig.cmake",
        "cmake/PymeStreaming/PymeStreamingConfigVersion.cmake",
        "pkgconfig/pyme_streaming.pc",
        "pkgconfig/pyme_streaming-static.pc",
    ] {
        assert!(install.lib(prefix, file).exists(), "{file} installed");
    }
    let pc = std::fs::read_to_string(install.lib(prefix, "pkgconfig/pyme_streaming.pc")).unwrap();
    assert!(
        pc.contains(&format!("Version: {}", env!("CARGO_PKG_VERSION"))),
        "{pc}"
    );

    let examples = install.work.join("examples");
    run(Command::new("cmake")
        .arg("-S")
        .arg(source_dir().join("c_examples"))
        .arg("-B")
        .arg(&examples)
        .arg(format!("-DCMAKE_PREFIX_PATH={}", prefix.display())));
    run(Command::new("cmake").arg("--build").arg(&examples));

    let servers = start_servers(2);
    let addresses: Vec<String> = servers.iter().map(TestServer::address).collect();
    let library_path = prefix.join(&install.libdir);
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

#[test]
fn shared_library_is_versioned_and_exports_only_the_api() {
    if !should_run("shared_library_is_versioned_and_exports_only_the_api") {
        return;
    }
    let install = install();
    let version = env!("CARGO_PKG_VERSION");
    let unversioned = install.lib(&install.prefix, "libpyme_streaming.so");
    assert_eq!(
        std::fs::read_link(&unversioned).unwrap(),
        Path::new("libpyme_streaming.so.0")
    );
    assert_eq!(
        std::fs::read_link(install.lib(&install.prefix, "libpyme_streaming.so.0")).unwrap(),
        PathBuf::from(format!("libpyme_streaming.so.{version}"))
    );
    let real = install.lib(&install.prefix, &format!("libpyme_streaming.so.{version}"));
    let dynamic =
        String::from_utf8_lossy(&run(Command::new("readelf").arg("-dW").arg(&real)).stdout)
            .into_owned();
    assert!(
        dynamic.contains("Library soname: [libpyme_streaming.so.0]"),
        "{dynamic}"
    );
    // Never unmapped under its running threads (src/ffi/pin.rs).
    assert!(
        dynamic
            .lines()
            .any(|l| l.contains("FLAGS_1") && l.contains("NODELETE")),
        "linked with -z nodelete: {dynamic}"
    );
    // HDF5 is for the data server's `hdf5` feature alone: camera hosts ship their own.
    assert!(
        !dynamic.to_ascii_lowercase().contains("libhdf5"),
        "the C library links HDF5:\n{dynamic}"
    );

    let exported = defined_globals(&real, true);
    for (_, name) in &exported {
        let (bare, version) = name.split_once("@@").unwrap_or((name, ""));
        assert!(is_api(bare), "{name} is global in the shared library");
        assert_eq!(version, "PYME_STREAMING_0", "{name} has the symbol version");
    }
    let names: Vec<&str> = exported
        .iter()
        .map(|(_, name)| name.split('@').next().unwrap())
        .collect();
    for function in header_functions() {
        assert!(
            names.contains(&function.as_str()),
            "{function} is declared in the header but not exported"
        );
    }
}

#[test]
fn static_library_has_only_the_api_global_and_links_beside_the_programs_own_sqlite() {
    if !should_run(
        "static_library_has_only_the_api_global_and_links_beside_the_programs_own_sqlite",
    ) {
        return;
    }
    let install = install();
    let archive = install.lib(&install.prefix, "libpyme_streaming.a");
    let globals = defined_globals(&archive, false);
    let strays: Vec<&String> = globals
        .iter()
        .map(|(_, name)| name)
        .filter(|name| !is_api(name))
        .collect();
    assert!(
        strays.is_empty(),
        "{} non-API global symbols in the static library, e.g. {:?}",
        strays.len(),
        &strays[..strays.len().min(10)]
    );
    let names: Vec<&str> = globals.iter().map(|(_, name)| name.as_str()).collect();
    for function in header_functions() {
        assert!(
            names.contains(&function.as_str()),
            "{function} missing from the static library"
        );
    }

    // A program with its own (the system's) SQLite, linked with our static library:
    // no multiple definitions, and its sqlite3_* calls reach its own SQLite.
    let system_sqlite = Command::new("pkg-config")
        .args(["--modversion", "sqlite3"])
        .output()
        .ok()
        .filter(|output| output.status.success() && Path::new("/usr/include/sqlite3.h").exists())
        .map(|output| String::from_utf8_lossy(&output.stdout).trim().to_owned());
    let Some(system_sqlite) = system_sqlite else {
        skip(
            "static_library_has_only_the_api_global_and_links_beside_the_programs_own_sqlite, own SQLite",
            "no system SQLite (libsqlite3-dev: pkg-config sqlite3, /usr/include/sqlite3.h); .ci/run installs it",
        );
        return;
    };
    let exe = install.work.join("probe_own_sqlite");
    run(Command::new("gcc")
        .args(["-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic"])
        .arg("-DPROBE_WITH_SQLITE")
        .arg("-I")
        .arg(install.prefix.join("include"))
        .arg(probe_source())
        .arg("-o")
        .arg(&exe)
        .arg("-lsqlite3")
        .arg(&archive)
        .args(["-lpthread", "-ldl", "-lm", "-lrt", "-lutil"]));
    let dynamic =
        String::from_utf8_lossy(&run(Command::new("readelf").arg("-dW").arg(&exe)).stdout)
            .into_owned();
    assert!(!dynamic.contains("libpyme_streaming"), "{dynamic}");
    let stdout = run_probe(&exe, None, "own_sqlite");
    assert!(
        stdout.contains(&format!("own sqlite {system_sqlite} answered 42")),
        "{stdout}"
    );
}

#[test]
fn pkg_config_works_with_a_multiarch_libdir_and_for_static_links() {
    if !should_run("pkg_config_works_with_a_multiarch_libdir_and_for_static_links") {
        return;
    }
    let install = install();
    let prefix = &install.prefix;
    let canonical = |flag: &str, text: &str| -> Vec<PathBuf> {
        text.split_whitespace()
            .filter_map(|word| word.strip_prefix(flag))
            .map(|path| std::fs::canonicalize(path).unwrap_or_else(|_| PathBuf::from(path)))
            .collect()
    };
    let cflags = pkg_config(install, prefix, &["--cflags", "pyme_streaming"]);
    assert_eq!(
        canonical("-I", &cflags),
        [std::fs::canonicalize(prefix.join("include")).unwrap()],
        "{cflags}"
    );
    let libs = pkg_config(install, prefix, &["--libs", "pyme_streaming"]);
    assert_eq!(
        canonical("-L", &libs),
        [std::fs::canonicalize(prefix.join(&install.libdir)).unwrap()],
        "{libs}"
    );
    assert!(libs.contains("-lpyme_streaming"), "{libs}");
    let static_libs = pkg_config(install, prefix, &["--libs", "--static", "pyme_streaming"]);
    for lib in ["-lpthread", "-ldl", "-lm"] {
        assert!(static_libs.contains(lib), "{static_libs}");
    }

    let compile = |exe: &Path, pkg_args: &[&str], extra: &[&str]| {
        let flags = pkg_config(install, prefix, pkg_args);
        run(Command::new("gcc")
            .args(["-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic"])
            .args(extra)
            .arg(probe_source())
            .arg("-o")
            .arg(exe)
            .args(flags.split_whitespace()));
        String::from_utf8_lossy(&run(Command::new("readelf").arg("-dW").arg(exe)).stdout)
            .into_owned()
    };
    // Shared, by the soname.
    let shared = install.work.join("probe_pc_shared");
    let dynamic = compile(&shared, &["--cflags", "--libs", "pyme_streaming"], &[]);
    assert!(
        dynamic.contains("Shared library: [libpyme_streaming.so.0]"),
        "{dynamic}"
    );
    run_probe(&shared, Some(&prefix.join(&install.libdir)), "pc_shared");
    // A fully static program: `pkg-config --static` and -static pick the .a.
    let full_static = install.work.join("probe_pc_static");
    let dynamic = compile(
        &full_static,
        &["--cflags", "--libs", "--static", "pyme_streaming"],
        &["-static"],
    );
    assert!(!dynamic.contains("NEEDED"), "{dynamic}");
    run_probe(&full_static, None, "pc_static");
    // Our static library in a dynamically linked program: pyme_streaming-static.pc.
    let mixed = install.work.join("probe_pc_static_pc");
    let dynamic = compile(
        &mixed,
        &["--cflags", "--libs", "pyme_streaming-static"],
        &[],
    );
    assert!(!dynamic.contains("libpyme_streaming"), "{dynamic}");
    assert!(dynamic.contains("libc.so"), "{dynamic}");
    run_probe(&mixed, None, "pc_static_pc");
}

#[test]
fn install_strip_strips_and_the_cli_is_installed() {
    if !should_run("install_strip_strips_and_the_cli_is_installed") {
        return;
    }
    let install = install();
    let version = env!("CARGO_PKG_VERSION");
    let shared = format!("libpyme_streaming.so.{version}");
    let plain_so = sections(&install.lib(&install.prefix, &shared));
    let stripped_so = sections(&install.lib(&install.stripped, &shared));
    assert!(plain_so.debug_info && plain_so.symtab);
    assert!(!stripped_so.debug_info && !stripped_so.symtab);
    let plain_a = sections(&install.lib(&install.prefix, "libpyme_streaming.a"));
    let stripped_a = sections(&install.lib(&install.stripped, "libpyme_streaming.a"));
    assert!(plain_a.debug_info);
    // Debug information gone; the symbol table stays (a linker needs it).
    assert!(!stripped_a.debug_info && stripped_a.symtab);
    let plain_cli = sections(&install.prefix.join("bin/pyme-stream"));
    let stripped_cli = sections(&install.stripped.join("bin/pyme-stream"));
    assert!(plain_cli.symtab);
    assert!(!stripped_cli.symtab && !stripped_cli.debug_info);

    // What was stripped still works: the command, the shared and the static library.
    let output = run(Command::new(install.stripped.join("bin/pyme-stream")).arg("--version"));
    assert!(String::from_utf8_lossy(&output.stdout).contains(version));
    let exe = install.work.join("probe_stripped_static");
    run(Command::new("gcc")
        .arg("-I")
        .arg(install.stripped.join("include"))
        .arg(probe_source())
        .arg("-o")
        .arg(&exe)
        .arg(install.lib(&install.stripped, "libpyme_streaming.a"))
        .args(["-lpthread", "-ldl", "-lm", "-lrt", "-lutil"]));
    run_probe(&exe, None, "stripped_static");
    let exe = install.work.join("probe_stripped_shared");
    run(Command::new("gcc")
        .arg("-I")
        .arg(install.stripped.join("include"))
        .arg(probe_source())
        .arg("-o")
        .arg(&exe)
        .arg("-L")
        .arg(install.stripped.join(&install.libdir))
        .arg("-lpyme_streaming"));
    run_probe(
        &exe,
        Some(&install.stripped.join(&install.libdir)),
        "stripped_shared",
    );
}

/// `-DPYME_RUST_TARGET=<triple>` goes through cargo's `--target` path (outputs under
/// `<target dir>/<triple>/`, the C compiler given to cargo as linker and to the bundled
/// SQLite's build): here with the host's own triple, the one target every machine has
/// (the Windows one is tested by tests/windows.rs). A Debug build, to keep it short.
#[test]
fn pyme_rust_target_builds_for_an_explicit_cargo_target() {
    if !should_run("pyme_rust_target_builds_for_an_explicit_cargo_target") {
        return;
    }
    let version = run(Command::new("rustc").arg("-vV"));
    let host = String::from_utf8_lossy(&version.stdout)
        .lines()
        .find_map(|line| line.strip_prefix("host: ").map(str::to_owned))
        .expect("rustc -vV says the host");
    let work = tempfile::tempdir().unwrap();
    let build = work.path().join("build");
    let prefix = work.path().join("prefix");
    let configure = run(Command::new("cmake")
        .arg("-S")
        .arg(source_dir())
        .arg("-B")
        .arg(&build)
        .arg("-DCMAKE_BUILD_TYPE=Debug")
        .arg(format!("-DPYME_RUST_TARGET={host}"))
        .arg(format!(
            "-DPYME_CARGO_TARGET_DIR={}",
            cargo_target_dir().display()
        )));
    assert!(configure.status.success());
    let output = run(Command::new("cmake").arg("--build").arg(&build));
    let log = String::from_utf8_lossy(&output.stdout);
    assert!(log.contains(&format!("--target {host}")), "{log}");
    run(Command::new("cmake")
        .arg("--install")
        .arg(&build)
        .arg("--prefix")
        .arg(&prefix));
    let libdir = prefix.join("lib");
    assert!(libdir.join("libpyme_streaming.so.0").exists());
    let exe = work.path().join("probe_target");
    run(Command::new("gcc")
        .arg("-I")
        .arg(prefix.join("include"))
        .arg(probe_source())
        .arg("-o")
        .arg(&exe)
        .arg("-L")
        .arg(&libdir)
        .arg("-lpyme_streaming"));
    run_probe(&exe, Some(&libdir), "explicit_target");
}

/// A plugin that links the static library keeps the C API inside:
/// `pyme_streaming_hide_api()` (the installed CMake helper) leaves no API symbol in
/// the plugin's dynamic symbol table, so two plugins with their own copies and
/// different settings, loaded with RTLD_GLOBAL into one process, each call their own
/// copy (dladdr of the `streamer_put` each calls names the plugin itself) and their
/// files land with their own names and counts. A plugin linked without the helper
/// exports the API, and a second copy of it calls the first one's library (what the
/// helper prevents). The project asks for version 0.0: the
/// version file is SameMajorVersion (docs/ABI.md); 1.0 is refused.
#[test]
fn plugins_with_the_static_library_hide_the_api_and_stream_through_their_own_copy() {
    if !should_run("plugins_with_the_static_library_hide_the_api_and_stream_through_their_own_copy")
    {
        return;
    }
    let install = install();
    let build = install.work.join("plugins");
    run(Command::new("cmake")
        .arg("-S")
        .arg(source_dir().join("tests/packaging/plugins"))
        .arg("-B")
        .arg(&build)
        .arg(format!("-DCMAKE_PREFIX_PATH={}", install.prefix.display())));
    run(Command::new("cmake").arg("--build").arg(&build));
    let plugin = |name: &str| build.join(format!("{name}.so"));
    for name in ["plugin_a", "plugin_b"] {
        let exported = defined_globals(&plugin(name), true);
        let api: Vec<_> = exported.iter().filter(|(_, n)| is_api(n)).collect();
        assert!(api.is_empty(), "{name} exports the API: {api:?}");
        assert!(
            exported.iter().any(|(_, n)| n == "plugin_run"),
            "{name} exports its own entry point: {exported:?}"
        );
    }
    let exposed = defined_globals(&plugin("plugin_exposed"), true);
    assert!(
        exposed.iter().any(|(_, n)| n == "streamer_put"),
        "without the helper a plugin exports the API (else this test shows nothing)"
    );
    // What that does: a second copy of the exposed plugin (another file, so loaded
    // apart) calls the first one's library.
    let second = build.join("plugin_exposed_2.so");
    std::fs::copy(plugin("plugin_exposed"), &second).unwrap();
    {
        let server = TestServer::start();
        let (host, port) = server
            .address()
            .rsplit_once(':')
            .map(|(h, p)| (h.to_owned(), p.to_owned()))
            .unwrap();
        let output = run(Command::new(build.join("plugin_host"))
            .arg(&host)
            .arg(&port)
            .arg(plugin("plugin_exposed"))
            .arg(&second));
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        let line = stdout
            .lines()
            .find(|line| line.starts_with(&format!("{} ", second.display())))
            .unwrap_or_else(|| panic!("no line for the second plugin: {stdout}"));
        assert!(
            line.ends_with(&format!(" {}", plugin("plugin_exposed").display())),
            "without the helper the second plugin calls the first one's copy: {line}"
        );
    }

    let server = TestServer::start();
    let (host, port) = server
        .address()
        .rsplit_once(':')
        .map(|(h, p)| (h.to_owned(), p.to_owned()))
        .unwrap();
    let output = run(Command::new(build.join("plugin_host"))
        .arg(&host)
        .arg(&port)
        .arg(plugin("plugin_a"))
        .arg(plugin("plugin_b")));
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    for name in ["plugin_a", "plugin_b"] {
        let path = plugin(name).display().to_string();
        let line = stdout
            .lines()
            .find(|line| line.starts_with(&format!("{path} ")))
            .unwrap_or_else(|| panic!("no line for {name}: {stdout}"));
        assert_eq!(
            line,
            format!("{path} 0 {path}"),
            "{name} streams through its own copy"
        );
    }
    let files = server.files();
    let expected: Vec<String> = (0..5)
        .map(|i| format!("plugin_a/file{i:02}.bin"))
        .chain((0..7).map(|i| format!("plugin_b/file{i:02}.bin")))
        .collect();
    assert_eq!(files, expected);
    for name in &expected {
        let i: u8 = name[name.len() - 6..name.len() - 4].parse().unwrap();
        assert_eq!(server.read(name).unwrap(), vec![b'a' + i; 1000], "{name}");
    }

    // SameMajorVersion: a project asking for 1.0 does not find 0.y.
    let refusing = install.work.join("version-1");
    std::fs::create_dir_all(&refusing).unwrap();
    std::fs::write(
        refusing.join("CMakeLists.txt"),
        "cmake_minimum_required(VERSION 3.16)\nproject(v C)\nfind_package(PymeStreaming 1.0 CONFIG REQUIRED)\n",
    )
    .unwrap();
    let configure = Command::new("cmake")
        .arg("-S")
        .arg(&refusing)
        .arg("-B")
        .arg(refusing.join("build"))
        .arg(format!("-DCMAKE_PREFIX_PATH={}", install.prefix.display()))
        .output()
        .unwrap();
    assert!(
        !configure.status.success(),
        "find_package(PymeStreaming 1.0) must refuse {}",
        env!("CARGO_PKG_VERSION")
    );
}

/// The ThreadSanitizer suppressions are installed where docs/C_API.md says, and the
/// CMake package names them.
#[test]
fn the_tsan_suppressions_are_installed() {
    if !should_run("the_tsan_suppressions_are_installed") {
        return;
    }
    let install = install();
    let installed = install.prefix.join("share/pyme_streaming/tsan.supp");
    assert_eq!(
        std::fs::read_to_string(&installed).unwrap(),
        std::fs::read_to_string(source_dir().join("cmake/tsan.supp")).unwrap()
    );
    let config = std::fs::read_to_string(install.lib(
        &install.prefix,
        "cmake/PymeStreaming/PymeStreamingConfig.cmake",
    ))
    .unwrap();
    assert!(
        config.contains("PymeStreaming_TSAN_SUPPRESSIONS"),
        "{config}"
    );
}
