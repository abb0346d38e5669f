//! Windows, under Wine: the Windows CMake package built by `scripts/windows-cross.sh
//! build` (a Debian 13 chroot with mingw-w64, rustc 1.85 and `-Zbuild-std`), then a
//! consumer project (`c_examples/` with `find_package(PymeStreaming)` and the same
//! toolchain file) and `tests/packaging/probe.c` linked with the import library, the
//! MSVC-style `pyme_streaming.lib` and the static library, all run with wine against
//! native data servers on loopback, and `wine pyme-stream.exe demo`.
//!
//! Opt-in, with `PYME_TEST_WINDOWS=1` (as .ci/run sets), once the environment is there
//! (`scripts/windows-cross.sh setup`, as root: a few minutes once, kept in
//! /var/cache/pyme-streaming): it builds into that machine-wide folder, so two plain
//! `cargo test` runs at once must not both start it. Without the variable each test is
//! skipped visibly (`common/skip.rs`, a failure under CI); with it, a missing
//! environment is a failure.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use common::skip::skip;
use common::{dead_address, start_servers, TestServer};

fn source_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn script() -> PathBuf {
    source_dir().join("scripts/windows-cross.sh")
}

/// Where the chroot's /build is on this side.
fn build_dir() -> PathBuf {
    let cache = std::env::var("PYME_WIN_CACHE").unwrap_or("/var/cache/pyme-streaming".to_owned());
    Path::new(&cache).join("build")
}

/// Whether `test` runs: asked for (`PYME_TEST_WINDOWS=1`), else a visible skip;
/// asked for without the environment, a failure.
fn environment_ready(test: &str) -> bool {
    if std::env::var("PYME_TEST_WINDOWS").as_deref() != Ok("1") {
        skip(
            test,
            "opt-in (Wine and a Debian chroot in /var/cache/pyme-streaming: minutes); run \
             `scripts/windows-cross.sh setup` once as root, then \
             `PYME_TEST_WINDOWS=1 cargo test --test windows`",
        );
        return false;
    }
    let ready = Command::new(script())
        .arg("path")
        .output()
        .map(|output| String::from_utf8_lossy(&output.stdout).lines().nth(1) == Some("ready"))
        .unwrap_or(false);
    assert!(
        ready,
        "PYME_TEST_WINDOWS=1 but the Windows environment is missing: run scripts/windows-cross.sh setup (as root)"
    );
    true
}

fn check(output: Output, what: &str) -> String {
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{what} failed ({}):\n--- stdout\n{stdout}\n--- stderr\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

/// Runs a shell command in the chroot (the repository at /src, the build dir at /build).
fn in_chroot(shell: &str) -> String {
    let output = Command::new(script())
        .args(["run", "/bin/sh", "-euc", shell])
        .output()
        .expect("scripts/windows-cross.sh runs");
    check(output, shell)
}

/// The Windows package, then the consumer programs: built once for every test here.
fn built() -> &'static () {
    static BUILT: OnceLock<Result<(), String>> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            std::panic::catch_unwind(build_everything).map_err(|panic| {
                panic
                    .downcast_ref::<String>()
                    .cloned()
                    .unwrap_or_else(|| "the Windows build failed".to_owned())
            })
        })
        .as_ref()
        .unwrap_or_else(|message| panic!("{message}"))
}

fn build_everything() {
    check(
        Command::new(script()).arg("build").output().unwrap(),
        "scripts/windows-cross.sh build",
    );
    // The consumer project: find_package(PymeStreaming) with the same toolchain file.
    in_chroot(
        "cmake -S /src/c_examples -B /build/examples -DCMAKE_BUILD_TYPE=Release \
           -DCMAKE_TOOLCHAIN_FILE=/src/cmake/toolchains/mingw-w64.cmake \
           -DCMAKE_PREFIX_PATH=/build/prefix >/build/examples-configure.log
         cmake --build /build/examples >/build/examples-build.log",
    );
    // The probe against each library the package has: the mingw import library, the
    // MSVC-style import library made by dlltool, and the static library (linked as
    // the package's pyme_streaming-static.pc says).
    in_chroot(
        "cd /build/examples
         cc=x86_64-w64-mingw32-gcc-posix
         flags='-std=c99 -Wall -Wextra -Werror -pedantic -I/build/prefix/include'
         $cc $flags /src/tests/packaging/probe.c -o probe_implib.exe /build/prefix/lib/libpyme_streaming.dll.a
         $cc $flags /src/tests/packaging/probe.c -o probe_msvc_lib.exe /build/prefix/lib/pyme_streaming.lib
         export PKG_CONFIG_PATH=/build/prefix/lib/pkgconfig
         $cc $flags /src/tests/packaging/probe.c -o probe_static.exe $(pkg-config --libs pyme_streaming-static)
         cp /build/prefix/bin/pyme_streaming.dll .",
    );
}

/// Runs a Windows program of /build/examples (or an absolute chroot path) with wine,
/// its DLLs and mingw's runtime DLLs found through WINEPATH.
fn wine(program: &str, args: &[String]) -> String {
    wine_in("/build/examples", program, args)
}

/// As [`wine`], started in `dir` (a chroot path).
fn wine_in(dir: &str, program: &str, args: &[String]) -> String {
    let quoted: Vec<String> = args.iter().map(|arg| format!("'{arg}'")).collect();
    in_chroot(&format!(
        "cd {dir}
         gcc_dir=$(dirname \"$(x86_64-w64-mingw32-gcc-posix -print-libgcc-file-name)\")
         export WINEPATH=\"Z:$(echo \"$gcc_dir\" | tr / '\\\\');Z:\\\\usr\\\\x86_64-w64-mingw32\\\\lib;Z:\\\\build\\\\prefix\\\\bin\"
         wine {program} {}",
        quoted.join(" ")
    ))
}

#[test]
fn windows_package_has_the_dll_import_libraries_def_and_cmake_config() {
    if !environment_ready("windows_package_has_the_dll_import_libraries_def_and_cmake_config") {
        return;
    }
    built();
    let prefix = build_dir().join("prefix");
    for file in [
        "bin/pyme_streaming.dll",
        "bin/pyme-stream.exe",
        "lib/libpyme_streaming.dll.a",
        "lib/pyme_streaming.lib",
        "lib/pyme_streaming.def",
        "lib/libpyme_streaming.a",
        "lib/pkgconfig/pyme_streaming.pc",
        "include/pyme_streaming.h",
        "include/pyme_streaming.hpp",
    ] {
        assert!(prefix.join(file).is_file(), "{file} installed");
    }
    let config =
        std::fs::read_to_string(prefix.join("lib/cmake/PymeStreaming/PymeStreamingConfig.cmake"))
            .unwrap();
    assert!(config.contains("IMPORTED_IMPLIB"), "{config}");
    assert!(config.contains("bin/pyme_streaming.dll"), "{config}");
    // As `rustc --print native-static-libs` reports them for the static library.
    for system_lib in [
        "kernel32", "advapi32", "ntdll", "userenv", "ws2_32", "dbghelp",
    ] {
        assert!(config.contains(system_lib), "{system_lib} in {config}");
    }
    // The .def names every function of the header.
    let def = std::fs::read_to_string(prefix.join("lib/pyme_streaming.def")).unwrap();
    assert!(def.contains("LIBRARY pyme_streaming.dll"), "{def}");
    // Only the C API is exported: nothing of Rust's std or the bundled SQLite.
    let exports: Vec<&str> = def
        .lines()
        .skip_while(|line| line.trim() != "EXPORTS")
        .skip(1)
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .collect();
    assert!(exports.len() >= 40, "{def}");
    for export in &exports {
        assert!(
            [
                "streamer_",
                "stream_",
                "n_cluster_servers",
                "distribution_function_",
                "pyme_"
            ]
            .iter()
            .any(|prefix| export.starts_with(prefix)),
            "{export} is exported by the DLL"
        );
    }
    let header = std::fs::read_to_string(source_dir().join("include/pyme_streaming.h")).unwrap();
    for function in [
        "streamer_new",
        "streamer_put",
        "streamer_stats",
        "streamer_close",
        "stream_new",
    ] {
        assert!(header.contains(&format!(" {function}(")));
        assert!(
            def.lines().any(|line| line.trim() == function),
            "{function} in {def}"
        );
    }
    // The DLL's version resource (UTF-16 strings in .rsrc).
    let dll = std::fs::read(prefix.join("bin/pyme_streaming.dll")).unwrap();
    let utf16 =
        |text: &str| -> Vec<u8> { text.encode_utf16().flat_map(u16::to_le_bytes).collect() };
    for text in [
        "ProductVersion",
        env!("CARGO_PKG_VERSION"),
        "pyme_streaming.dll",
    ] {
        let needle = utf16(text);
        assert!(
            dll.windows(needle.len()).any(|window| window == needle),
            "{text} in the DLL's version resource"
        );
    }
}

#[test]
fn demo_under_wine_acknowledges_every_frame() {
    if !environment_ready("demo_under_wine_acknowledges_every_frame") {
        return;
    }
    built();
    let stdout = wine(
        "/build/prefix/bin/pyme-stream.exe",
        &["demo".into(), "--frames".into(), "50".into()],
    );
    assert!(stdout.contains("lost 0"), "{stdout}");
    let acknowledged = stdout
        .split("acknowledged ")
        .nth(1)
        .and_then(|rest| rest.split([',', ' ', '\n']).next())
        .unwrap_or_else(|| panic!("no 'acknowledged N/M' in {stdout}"));
    let (done, total) = acknowledged.split_once('/').expect("N/M");
    assert_eq!(done, total, "{stdout}");
    assert!(total.parse::<u32>().unwrap() >= 50, "{stdout}");
}

#[test]
fn c_examples_built_with_find_package_stream_under_wine_to_native_servers() {
    if !environment_ready("c_examples_built_with_find_package_stream_under_wine_to_native_servers")
    {
        return;
    }
    built();
    let servers = start_servers(2);
    let addresses: Vec<String> = servers.iter().map(TestServer::address).collect();
    let mut args: Vec<String> = ["-n", "40", "-s", "4096", "-p", "win_frames"]
        .map(String::from)
        .to_vec();
    args.extend(addresses.iter().cloned());
    let stdout = wine("stream_frames.exe", &args);
    assert!(stdout.contains("all 40 frames acknowledged"), "{stdout}");
    let mut args: Vec<String> = ["-f", "200", "-n", "60", "-s", "65536", "-p", "win_camera"]
        .map(String::from)
        .to_vec();
    args.extend(addresses.iter().cloned());
    let stdout = wine("camera_sim.exe", &args);
    assert!(stdout.contains("all 60 frames acknowledged"), "{stdout}");
    let stdout = wine("api_checks.exe", &[addresses[0].clone(), dead_address()]);
    assert!(stdout.contains(" passed, 0 failed"), "{stdout}");
    let stored: usize = servers.iter().map(|s| s.files().len()).sum();
    assert!(stored >= 100, "{stored} files stored");
}

#[test]
fn probe_links_with_each_windows_library_and_streams_under_wine() {
    if !environment_ready("probe_links_with_each_windows_library_and_streams_under_wine") {
        return;
    }
    built();
    for (exe, series) in [
        ("probe_implib.exe", "implib"),
        ("probe_msvc_lib.exe", "msvc_lib"),
        ("probe_static.exe", "static"),
    ] {
        let server = TestServer::start();
        let stdout = wine(exe, &["25".into(), series.into(), server.address()]);
        assert!(
            stdout.contains("probe: all 25 frames acknowledged"),
            "{exe}: {stdout}"
        );
        assert_eq!(server.files().len(), 25, "{exe}: {:?}", server.files());
    }
}

/// Every cargo target, the tests included, compiles for Windows: a test that uses a
/// Unix-only API (libc, `std::os::unix`, ...) without a `cfg` gate fails here
/// (`scripts/windows-cross.sh check`: `cargo check --all-targets` with build-std).
#[test]
fn every_target_and_test_compiles_for_windows() {
    if !environment_ready("every_target_and_test_compiles_for_windows") {
        return;
    }
    check(
        Command::new(script()).arg("check").output().unwrap(),
        "scripts/windows-cross.sh check",
    );
}

/// The static library keeps only the C API global, as on Linux: nothing of the bundled
/// SQLite or Rust's std is a global definition (the import stubs of the Windows DLLs
/// that std calls through `raw-dylib` stay, as in any import library). A mingw program
/// with its own SQLite (the same sources with another version string, so that it shows
/// whose copy answers) links with it and streams under Wine.
#[test]
fn static_library_has_only_the_api_global_and_links_beside_the_programs_own_sqlite() {
    if !environment_ready(
        "static_library_has_only_the_api_global_and_links_beside_the_programs_own_sqlite",
    ) {
        return;
    }
    built();
    let globals = in_chroot(
        "x86_64-w64-mingw32-nm -g --defined-only /build/prefix/lib/libpyme_streaming.a 2>/dev/null",
    );
    let defined: Vec<&str> = globals
        .lines()
        .filter_map(|line| line.split_whitespace().nth(2))
        .collect();
    let sqlite: Vec<&&str> = defined
        .iter()
        .filter(|name| name.starts_with("sqlite3"))
        .collect();
    assert!(
        sqlite.is_empty(),
        "{} global sqlite3 symbols, e.g. {:?}",
        sqlite.len(),
        &sqlite[..sqlite.len().min(5)]
    );
    let rust: Vec<&&str> = defined
        .iter()
        .filter(|name| {
            name.starts_with("_ZN") || name.starts_with("_R") || name.starts_with("rust_")
        })
        .collect();
    assert!(
        rust.is_empty(),
        "{} global Rust symbols, e.g. {:?}",
        rust.len(),
        &rust[..rust.len().min(5)]
    );
    let header = std::fs::read_to_string(source_dir().join("include/pyme_streaming.h")).unwrap();
    for function in [
        "streamer_new",
        "streamer_put",
        "streamer_close",
        "stream_new",
    ] {
        assert!(header.contains(&format!(" {function}(")));
        assert!(
            defined.contains(&function),
            "{function} in the static library"
        );
    }

    in_chroot(
        r#"cd /build/examples
         sqlite=$(ls -d /cargo-home/registry/src/*/libsqlite3-sys-*/sqlite3 | head -n1)
         mkdir -p own_sqlite
         sed 's/^#define SQLITE_VERSION  *"\([^"]*\)"/#define SQLITE_VERSION "\1-own"/' "$sqlite/sqlite3.c" > own_sqlite/sqlite3.c
         grep -q '^#define SQLITE_VERSION ".*-own"' own_sqlite/sqlite3.c
         cc=x86_64-w64-mingw32-gcc-posix
         $cc -O1 -c own_sqlite/sqlite3.c -o own_sqlite/sqlite3.o
         export PKG_CONFIG_PATH=/build/prefix/lib/pkgconfig
         $cc -std=c99 -Wall -Wextra -Werror -pedantic -I/build/prefix/include -I"$sqlite" -DPROBE_WITH_SQLITE /src/tests/packaging/probe.c own_sqlite/sqlite3.o -o probe_own_sqlite.exe $(pkg-config --libs pyme_streaming-static)"#,
    );
    let server = TestServer::start();
    let stdout = wine(
        "probe_own_sqlite.exe",
        &["25".into(), "own_sqlite".into(), server.address()],
    );
    assert!(stdout.contains("own sqlite 3."), "{stdout}");
    assert!(stdout.contains("-own answered 42"), "{stdout}");
    assert!(
        stdout.contains("probe: all 25 frames acknowledged"),
        "{stdout}"
    );
    assert_eq!(server.files().len(), 25, "{:?}", server.files());
}

/// The default serverfilter under Windows is the computer name from Windows
/// (`GetComputerNameExW`), not `localhost`: `pyme-stream.exe discover` without
/// `--serverfilter` finds a server registered under this machine's name. Started on
/// drive C:, so that reading `/proc/sys/kernel/hostname` (the Linux way) cannot work.
#[test]
fn computer_name_under_wine_comes_from_windows() {
    if !environment_ready("computer_name_under_wine_comes_from_windows") {
        return;
    }
    built();
    let host = pyme_streaming::discovery::host_name();
    let host = host.split('.').next().unwrap().to_owned();
    assert_ne!(host, "localhost", "this test needs a host name");
    let server = TestServer::start();
    let port: u16 = server
        .address()
        .rsplit_once(':')
        .unwrap()
        .1
        .parse()
        .unwrap();
    let registry = build_dir().join("computer-name-registry.sqlite");
    let _ = std::fs::remove_file(&registry);
    let name = format!("PYMEDataServer [{host}]:{host} - PID:1");
    let _entry =
        pyme_streaming::discovery::registry::register(&registry, &name, "127.0.0.1", port).unwrap();
    let stdout = wine_in(
        "/root/.wine-pyme/drive_c",
        "/build/prefix/bin/pyme-stream.exe",
        &[
            "discover".into(),
            "--no-mdns".into(),
            "--registry".into(),
            "Z:\\build\\computer-name-registry.sqlite".into(),
        ],
    );
    assert!(stdout.contains(&name), "{stdout}");
    assert!(stdout.contains(&format!("127.0.0.1:{port}")), "{stdout}");
}

/// LabVIEW unloading the DLL while a streamer it opened still has files on their
/// way: `tests/packaging/unload.c` loads `pyme_streaming.dll` with LoadLibrary, opens a
/// streamer to a native server, puts 40 files and calls FreeLibrary at once. The DLL
/// pinned itself (GetModuleHandleExW with GET_MODULE_HANDLE_EX_FLAG_PIN, src/ffi/pin.rs),
/// so it stays loaded, its threads send every file and the program runs on without a
/// crash until the files have landed.
#[test]
fn loadlibrary_freelibrary_while_a_streamer_runs_keeps_the_dll_and_the_files_land() {
    if !environment_ready(
        "loadlibrary_freelibrary_while_a_streamer_runs_keeps_the_dll_and_the_files_land",
    ) {
        return;
    }
    built();
    in_chroot(
        "cd /build/examples
         x86_64-w64-mingw32-gcc-posix -std=c99 -Wall -Wextra -Werror -pedantic \
           /src/tests/packaging/unload.c -o unload.exe",
    );
    let marker = build_dir().join("unload-landed");
    let _ = std::fs::remove_file(&marker);
    let server = TestServer::start();
    let (host, port) = server
        .address()
        .rsplit_once(':')
        .map(|(h, p)| (h.to_owned(), p.to_owned()))
        .unwrap();
    let program = std::thread::spawn(move || {
        wine(
            "unload.exe",
            &[
                "pyme_streaming.dll".into(),
                host,
                port,
                "Z:\\build\\unload-landed".into(),
            ],
        )
    });
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    let expected: Vec<String> = (0..40).map(|i| format!("unload/file{i:03}.bin")).collect();
    while server.files() != expected && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    std::fs::write(&marker, b"").unwrap();
    let stdout = program.join().expect("wine unload.exe exited 0, no crash");
    let _ = std::fs::remove_file(&marker);
    assert_eq!(
        stdout.lines().next(),
        Some("pinned"),
        "after FreeLibrary the DLL stays loaded: {stdout}"
    );
    assert_eq!(
        server.files(),
        expected,
        "every file put before FreeLibrary lands"
    );
    for (i, name) in expected.iter().enumerate() {
        assert_eq!(
            server.read(name).unwrap(),
            vec![i as u8; 256 * 1024],
            "{name}"
        );
    }
}

/// The names in a DLL's export table (`objdump -p`, "[Ordinal/Name Pointer] Table").
fn dll_exports(dll: &str) -> Vec<String> {
    let dump = in_chroot(&format!(
        "x86_64-w64-mingw32-objdump -p /build/examples/{dll}"
    ));
    dump.lines()
        .skip_while(|line| !line.contains("[Ordinal/Name Pointer] Table"))
        // the table's title, then its column titles ("Ordinal Hint Name")
        .skip(2)
        // "[   0] +base[   1]  0000 plugin_run"
        .take_while(|line| line.trim_start().starts_with('['))
        .filter_map(|line| line.split_whitespace().last())
        .map(str::to_owned)
        .collect()
}

/// The Windows half of plugins that link the static library: two DLLs built with
/// mingw, without dllexport or a .def (so mingw exports every symbol they have) but
/// with `-Wl,--exclude-libs,libpyme_streaming.a` (what `pyme_streaming_hide_api()`
/// adds), export only their entry point; one linked without it exports the API. Both
/// load into one process under Wine and each streams through its own copy, with its
/// own settings (5 files; 7 files with gzip).
#[test]
fn mingw_plugin_dlls_with_the_static_library_hide_the_api() {
    if !environment_ready("mingw_plugin_dlls_with_the_static_library_hide_the_api") {
        return;
    }
    built();
    in_chroot(
        "cd /build/examples
         cc=x86_64-w64-mingw32-gcc-posix
         flags='-std=c99 -Wall -Wextra -Werror -pedantic -I/build/prefix/include -shared -DNO_DLLEXPORT'
         export PKG_CONFIG_PATH=/build/prefix/lib/pkgconfig
         libs=$(pkg-config --libs pyme_streaming-static)
         src=/src/tests/packaging/plugins
         $cc $flags -DPLUGIN_NAME='\"plugin_a\"' -DN_FILES=5 -DGZIP_LEVEL=0 $src/plugin.c -o plugin_a.dll $libs -Wl,--exclude-libs,libpyme_streaming.a
         $cc $flags -DPLUGIN_NAME='\"plugin_b\"' -DN_FILES=7 -DGZIP_LEVEL=6 $src/plugin.c -o plugin_b.dll $libs -Wl,--exclude-libs,libpyme_streaming.a
         $cc $flags -DPLUGIN_NAME='\"plugin_exposed\"' -DN_FILES=1 -DGZIP_LEVEL=0 $src/plugin.c -o plugin_exposed.dll $libs
         $cc -std=c99 -Wall -Wextra -Werror -pedantic $src/host.c -o plugin_host.exe",
    );
    let is_api = |name: &str| {
        ["streamer_", "stream_", "pyme_", "distribution_function_"]
            .iter()
            .any(|prefix| name.starts_with(prefix))
            || name == "n_cluster_servers"
    };
    for dll in ["plugin_a.dll", "plugin_b.dll"] {
        let exports = dll_exports(dll);
        assert!(
            exports.iter().any(|name| name == "plugin_run"),
            "{dll}: {exports:?}"
        );
        let api: Vec<_> = exports.iter().filter(|name| is_api(name)).collect();
        assert!(api.is_empty(), "{dll} exports the API: {api:?}");
    }
    assert!(
        dll_exports("plugin_exposed.dll")
            .iter()
            .any(|name| name == "streamer_put"),
        "without --exclude-libs a mingw DLL exports the API (else this test shows nothing)"
    );
    let server = TestServer::start();
    let (host, port) = server
        .address()
        .rsplit_once(':')
        .map(|(h, p)| (h.to_owned(), p.to_owned()))
        .unwrap();
    let stdout = wine(
        "plugin_host.exe",
        &[host, port, "plugin_a.dll".into(), "plugin_b.dll".into()],
    );
    for dll in ["plugin_a.dll", "plugin_b.dll"] {
        let line = stdout
            .lines()
            .find(|line| line.starts_with(&format!("{dll} ")))
            .unwrap_or_else(|| panic!("no line for {dll}: {stdout}"));
        let fields: Vec<&str> = line.splitn(3, ' ').collect();
        assert_eq!(fields[1], "0", "{line}");
        assert!(
            fields[2].to_lowercase().ends_with(&format!("\\{dll}")),
            "{dll} streams through its own copy: {line}"
        );
    }
    let expected: Vec<String> = (0..5)
        .map(|i| format!("plugin_a/file{i:02}.bin"))
        .chain((0..7).map(|i| format!("plugin_b/file{i:02}.bin")))
        .collect();
    assert_eq!(server.files(), expected);
}

/// The Windows zip of `scripts/package.sh windows-zip`, unpacked into a fresh folder of
/// the build dir: (its path on this side, its path in the chroot). Made once.
fn unpacked_zip() -> &'static (PathBuf, String) {
    static UNPACKED: OnceLock<(PathBuf, String)> = OnceLock::new();
    UNPACKED.get_or_init(|| {
        // Zipped, not built again: a build reinstalls /build/prefix, which the other
        // tests of this file use at the same time.
        built();
        check(
            Command::new(source_dir().join("scripts/package.sh"))
                .arg("windows-zip")
                .output()
                .unwrap(),
            "scripts/package.sh windows",
        );
        let name = format!(
            "pyme-streaming-{}-x86_64-windows",
            env!("CARGO_PKG_VERSION")
        );
        let zip = source_dir().join("dist").join(format!("{name}.zip"));
        let folder = build_dir().join("zip-consumer");
        let _ = std::fs::remove_dir_all(&folder);
        std::fs::create_dir_all(&folder).unwrap();
        check(
            Command::new("python3")
                .args(["-m", "zipfile", "-e"])
                .arg(&zip)
                .arg(&folder)
                .output()
                .unwrap(),
            "unzip the Windows zip",
        );
        assert!(folder.join(&name).join("bin/pyme_streaming.dll").is_file());
        (folder.join(&name), format!("/build/zip-consumer/{name}"))
    })
}

/// Runs a program of the zip consumer's folder `dir` with wine, finding DLLs only in
/// its own folder, the zip's bin/ and the cross compiler's runtime (the consumer's own
/// libstdc++ and winpthread): never the build tree's /build/prefix.
fn wine_with_zip(dir: &str, program: &str, args: &[String]) -> String {
    let zip_bin = format!("{}/bin", unpacked_zip().1).replace('/', "\\\\");
    let quoted: Vec<String> = args.iter().map(|arg| format!("'{arg}'")).collect();
    in_chroot(&format!(
        "cd {dir}
         gcc_dir=$(dirname \"$(x86_64-w64-mingw32-gcc-posix -print-libgcc-file-name)\")
         export WINEPATH=\"Z:$(echo \"$gcc_dir\" | tr / '\\\\');Z:\\\\usr\\\\x86_64-w64-mingw32\\\\lib;Z:{zip_bin}\"
         wine {program} {}",
        quoted.join(" ")
    ))
}

/// What a Windows integrator downloads is enough to build against: the zip, unpacked
/// into a fresh folder, is the only package the C examples' CMake project finds
/// (`find_package(PymeStreaming)`, the cross compiler's toolchain file), and a plain
/// mingw build of the probe links its `libpyme_streaming.dll.a`; under Wine the
/// programs stream to native servers on loopback and every file lands.
#[test]
fn windows_zip_alone_builds_the_c_examples_that_stream_under_wine() {
    if !environment_ready("windows_zip_alone_builds_the_c_examples_that_stream_under_wine") {
        return;
    }
    let (zip_here, zip) = unpacked_zip();
    in_chroot(&format!(
        "cmake -S /src/c_examples -B /build/zip-consumer/examples -DCMAKE_BUILD_TYPE=Release \
           -DCMAKE_TOOLCHAIN_FILE=/src/cmake/toolchains/mingw-w64.cmake \
           -DCMAKE_PREFIX_PATH={zip} >/build/zip-consumer/examples-configure.log
         cmake --build /build/zip-consumer/examples >/build/zip-consumer/examples-build.log
         x86_64-w64-mingw32-gcc-posix -std=c99 -Wall -Wextra -Werror -pedantic -I{zip}/include \
           /src/tests/packaging/probe.c -o /build/zip-consumer/examples/probe_zip_implib.exe \
           {zip}/lib/libpyme_streaming.dll.a"
    ));
    let cache =
        std::fs::read_to_string(build_dir().join("zip-consumer/examples/CMakeCache.txt")).unwrap();
    let package_dir = format!("PymeStreaming_DIR:PATH={zip}/lib/cmake/PymeStreaming");
    assert!(
        cache.lines().any(|line| line == package_dir),
        "the examples found another PymeStreaming than the zip's ({package_dir})"
    );
    // The DLL beside the examples is the zip's.
    assert_eq!(
        std::fs::read(build_dir().join("zip-consumer/examples/pyme_streaming.dll")).unwrap(),
        std::fs::read(zip_here.join("bin/pyme_streaming.dll")).unwrap()
    );
    let dir = "/build/zip-consumer/examples";
    let servers = start_servers(2);
    let addresses: Vec<String> = servers.iter().map(TestServer::address).collect();
    let mut args: Vec<String> = ["-n", "40", "-s", "4096", "-p", "zip_frames"]
        .map(String::from)
        .to_vec();
    args.extend(addresses.iter().cloned());
    let stdout = wine_with_zip(dir, "stream_frames.exe", &args);
    assert!(stdout.contains("all 40 frames acknowledged"), "{stdout}");
    let mut args: Vec<String> = ["-f", "200", "-n", "60", "-s", "65536", "-p", "zip_camera"]
        .map(String::from)
        .to_vec();
    args.extend(addresses.iter().cloned());
    let stdout = wine_with_zip(dir, "camera_sim.exe", &args);
    assert!(stdout.contains("all 60 frames acknowledged"), "{stdout}");
    let stdout = wine_with_zip(
        dir,
        "api_checks.exe",
        &[addresses[0].clone(), dead_address()],
    );
    assert!(stdout.contains(" passed, 0 failed"), "{stdout}");
    let stdout = wine_with_zip(
        dir,
        "probe_zip_implib.exe",
        &["25".into(), "zip_probe".into(), addresses[1].clone()],
    );
    assert!(
        stdout.contains("probe: all 25 frames acknowledged"),
        "{stdout}"
    );
    let stored: Vec<String> = servers.iter().flat_map(TestServer::files).collect();
    for (prefix, count) in [("zip_frames/", 40), ("zip_camera/", 60), ("zip_probe/", 25)] {
        assert_eq!(
            stored
                .iter()
                .filter(|name| name.starts_with(prefix))
                .count(),
            count,
            "{prefix}: {stored:?}"
        );
    }
    let probe_frame = servers[1].read("zip_probe/frame00007.raw").unwrap();
    assert_eq!(probe_frame, vec![7u8; 4096]);
}

/// An MSVC-style consumer links the zip's `pyme_streaming.lib`: `tests/packaging/
/// probe_msvc.c`, compiled by clang for x86_64-pc-windows-msvc and linked by
/// `lld-link` (LLVM's MSVC-compatible linker, on this side) with that import library
/// and a `kernel32.lib` made by `llvm-dlltool` (no MSVC runtime can be had here, so
/// the probe uses none), imports `pyme_streaming.dll` and streams under Wine.
#[test]
fn windows_zip_msvc_import_library_links_with_lld_link_and_streams_under_wine() {
    let test = "windows_zip_msvc_import_library_links_with_lld_link_and_streams_under_wine";
    if !environment_ready(test) {
        return;
    }
    for (tool, args) in [
        ("lld-link", &["--version"][..]),
        ("llvm-dlltool", &["--help"][..]),
        ("clang", &["--version"][..]),
    ] {
        if !common::skip::require_tool(test, tool, args) {
            return;
        }
    }
    let (zip_here, _) = unpacked_zip();
    let out = build_dir().join("zip-consumer/lld-link");
    let _ = std::fs::remove_dir_all(&out);
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(
        out.join("kernel32.def"),
        "LIBRARY kernel32.dll\nEXPORTS\nGetStdHandle\nWriteFile\nGetCommandLineA\nExitProcess\n",
    )
    .unwrap();
    let run = |program: &str, args: &[&str]| {
        check(
            Command::new(program)
                .args(args)
                .current_dir(&out)
                .output()
                .unwrap_or_else(|e| panic!("{program}: {e}")),
            program,
        )
    };
    run(
        "llvm-dlltool",
        &[
            "-m",
            "i386:x86-64",
            "-d",
            "kernel32.def",
            "-l",
            "kernel32.lib",
        ],
    );
    let include = format!("-I{}", zip_here.join("include").display());
    let probe = source_dir().join("tests/packaging/probe_msvc.c");
    run(
        "clang",
        &[
            "--target=x86_64-pc-windows-msvc",
            "-std=c99",
            "-Wall",
            "-Wextra",
            "-Werror",
            "-pedantic",
            "-ffreestanding",
            "-fno-builtin",
            "-fno-stack-protector",
            "-O1",
            &include,
            "-c",
            probe.to_str().unwrap(),
            "-o",
            "probe_msvc.obj",
        ],
    );
    let import_library = zip_here.join("lib/pyme_streaming.lib");
    run(
        "lld-link",
        &[
            "/nologo",
            "/nodefaultlib",
            "/subsystem:console",
            "/entry:probe_main",
            "/out:probe_msvc.exe",
            "probe_msvc.obj",
            import_library.to_str().unwrap(),
            "kernel32.lib",
        ],
    );
    let imports = run("objdump", &["-p", "probe_msvc.exe"]);
    assert!(
        imports.contains("DLL Name: pyme_streaming.dll"),
        "{imports}"
    );
    let server = TestServer::start();
    let (host, port) = server
        .address()
        .rsplit_once(':')
        .map(|(h, p)| (h.to_owned(), p.to_owned()))
        .unwrap();
    let stdout = wine_with_zip(
        "/build/zip-consumer/lld-link",
        "probe_msvc.exe",
        &[host, port],
    );
    assert!(
        stdout.contains("probe: all 25 frames acknowledged"),
        "{stdout}"
    );
    let expected: Vec<String> = (0..25)
        .map(|i| format!("lld_link/frame{i:02}.raw"))
        .collect();
    assert_eq!(server.files(), expected);
    for (i, name) in expected.iter().enumerate() {
        assert_eq!(server.read(name).unwrap(), vec![i as u8; 4096], "{name}");
    }
}
