//! The C API as a C or C++ consumer uses it: the header compiles as C99 and as
//! C++17 with every warning an error; the C examples are built with gcc against
//! the library cargo just built (`target/<profile>/deps/libpyme_streaming.{so,a}`)
//! and run against real data servers on loopback; `stream_frames` also runs
//! under valgrind when it is installed.
//!
//! Needs gcc; g++, clang, clang++ and valgrind (which .ci/run installs) too, or
//! each check that uses one is skipped visibly (`common::skip`), and fails under CI.
//! Run: `cargo test --test c_api`.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::skip::{require_tool, skip};
use common::{dead_address, run, start_servers, Action, FakeServer, TestServer};

const WARNINGS: [&str; 4] = ["-Wall", "-Wextra", "-Werror", "-pedantic"];

fn manifest_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Where cargo put the library for this test run: next to the test executable
/// (`target/<profile>/deps/`), whatever CARGO_TARGET_DIR is.
fn library_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let deps = exe.parent().expect("deps dir").to_owned();
    assert!(
        deps.join("libpyme_streaming.so").exists() && deps.join("libpyme_streaming.a").exists(),
        "libpyme_streaming.so/.a not found in {}",
        deps.display()
    );
    deps
}

/// Compiles `source` into an executable linked with the shared library.
fn build_against_shared(compiler: &str, std: &str, source: &Path, out: &Path, extra: &[&str]) {
    let lib = library_dir();
    run(Command::new(compiler)
        .arg(format!("-std={std}"))
        .args(WARNINGS)
        .arg("-g")
        .arg("-I")
        .arg(manifest_dir().join("include"))
        .arg(source)
        .arg("-o")
        .arg(out)
        .arg("-L")
        .arg(&lib)
        .arg(format!("-Wl,-rpath,{}", lib.display()))
        // An RPATH, not a RUNPATH: cargo runs tests with LD_LIBRARY_PATH
        // starting at target/<profile>, where an older `cargo build` may have
        // left an older library; a RUNPATH would lose to it.
        .arg("-Wl,--disable-new-dtags")
        .arg("-lpyme_streaming")
        .args(extra));
}

/// Compiles `source` into an executable linked with the static library.
fn build_against_static(source: &Path, out: &Path) {
    run(Command::new("gcc")
        .args(["-std=c99", "-D_POSIX_C_SOURCE=200809L"])
        .args(WARNINGS)
        .arg("-I")
        .arg(manifest_dir().join("include"))
        .arg(source)
        .arg("-o")
        .arg(out)
        .arg(library_dir().join("libpyme_streaming.a"))
        .args(["-lpthread", "-ldl", "-lm"]));
}

fn example(name: &str) -> PathBuf {
    manifest_dir().join("c_examples").join(name)
}

/// Compiles `text` (which includes the headers) with every warning an error,
/// `-pedantic-errors` and `extra` flags, without linking.
fn compile_header_only(compiler: &str, std: &str, suffix: &str, text: &str, extra: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join(format!("header_check.{suffix}"));
    std::fs::write(&source, text).unwrap();
    run(Command::new(compiler)
        .arg(format!("-std={std}"))
        .args(WARNINGS)
        .arg("-pedantic-errors")
        .args(extra)
        .arg("-fsyntax-only")
        .arg("-I")
        .arg(manifest_dir().join("include"))
        .arg(&source));
}

/// The compilers to try for `test`: gcc/g++ and clang/clang++, those that are
/// installed (.ci/run installs them all); each missing one is a visible skip.
fn compilers(test: &str, cxx: bool) -> Vec<&'static str> {
    let wanted = if cxx {
        ["g++", "clang++"]
    } else {
        ["gcc", "clang"]
    };
    wanted
        .into_iter()
        .filter(|compiler| require_tool(test, compiler, &["--version"]))
        .collect()
}

/// Uses every type, enum and constant of the header, so that each is compiled.
const USES_THE_HEADER: &str = r#"
#include <pyme_streaming.h>
#include <pyme_streaming.h>
static int uses_the_header(void) {
    PymeStreamerStats stats;
    PymeStreamerStatus status = STREAMER_ERR_CLOSE_DETACHED;
    PymeStreamerDistribution distribution = STREAMER_DISTRIBUTION_HASH;
    PymeStreamerFilter filter = STREAMER_FILTER_IDENTITY;
    PymeStreamerPzfFormat format = STREAMER_PZF_UINT16;
    PymeStreamerPzfCompression compression = STREAMER_PZF_HUFFMAN_CHUNKED;
    PymeStreamerPzfQuantization quantization = STREAMER_PZF_QUANT_SQRT;
    PymeStreamer *streamer = 0;
    PymeStream *stream = 0;
    PymeStreamerOptions *options = 0;
    PymeStreamerBuffer *buffer = 0;
    PymeStreamerCompletionFn completion = 0;
    PymeStreamerDistributionFn choose = 0;
    PymeStreamerFilterFn transform = 0;
    PymeStreamerReleaseFn release = 0;
    uint32_t forever = STREAMER_WAIT_FOREVER;
    stats.size = sizeof stats;
    (void)streamer; (void)stream; (void)options; (void)buffer; (void)completion;
    (void)choose; (void)transform; (void)release; (void)distribution; (void)filter;
    (void)format; (void)compression; (void)quantization;
    return (int)status + (int)(forever - STREAMER_WAIT_FOREVER) + (int)stats.size;
}
"#;

#[test]
fn header_is_valid_c_from_c89_to_c2x_with_gcc_and_clang() {
    let text = format!("{USES_THE_HEADER}\nint main(void) {{ return uses_the_header() == 0; }}\n");
    for compiler in compilers(
        "header_is_valid_c_from_c89_to_c2x_with_gcc_and_clang",
        false,
    ) {
        for std in ["c89", "c99", "c11", "c17", "c2x"] {
            compile_header_only(compiler, std, "c", &text, &[]);
        }
    }
}

#[test]
fn header_is_valid_cpp_from_cpp98_to_cpp20_with_gcc_and_clang() {
    let text = format!("{USES_THE_HEADER}\nint main() {{ return uses_the_header() == 0; }}\n");
    for compiler in compilers(
        "header_is_valid_cpp_from_cpp98_to_cpp20_with_gcc_and_clang",
        true,
    ) {
        for std in ["c++98", "c++11", "c++14", "c++17", "c++20"] {
            compile_header_only(compiler, std, "cpp", &text, &[]);
        }
    }
}

#[test]
fn the_wrapper_compiles_as_cpp17_and_cpp20_and_refuses_older() {
    let text = "#include <pyme_streaming.h>\n#include <pyme_streaming.hpp>\n#include <pyme_streaming.hpp>\n\
                int main() { pyme::Stats stats{}; return pyme::all_acknowledged(stats) ? STREAMER_OK : 1; }\n";
    for compiler in compilers(
        "the_wrapper_compiles_as_cpp17_and_cpp20_and_refuses_older",
        true,
    ) {
        for std in ["c++17", "c++20"] {
            compile_header_only(compiler, std, "cpp", text, &[]);
        }
        let dir = tempfile::tempdir().unwrap();
        let source = dir.path().join("old.cpp");
        std::fs::write(&source, text).unwrap();
        let output = Command::new(compiler)
            .args(["-std=c++14", "-fsyntax-only", "-I"])
            .arg(manifest_dir().join("include"))
            .arg(&source)
            .output()
            .unwrap();
        assert!(
            !output.status.success(),
            "{compiler} -std=c++14 must refuse the wrapper"
        );
        assert!(
            String::from_utf8_lossy(&output.stderr).contains("needs C++17 or later"),
            "{compiler}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

/// A C++ driver with its own `Stream` and `Streamer` types includes both
/// headers: the library's types are prefixed, so nothing clashes.
#[test]
fn a_program_with_its_own_stream_and_streamer_types_compiles() {
    let text = r#"
struct Stream { int camera_port; };
class Streamer { public: int frames = 0; };
typedef int StreamerStats;
#include <pyme_streaming.h>
#include <pyme_streaming.hpp>
int main() {
    Stream own_stream{1};
    Streamer own_streamer;
    StreamerStats own_stats = 2;
    PymeStream *library_stream = nullptr;
    pyme::Stats library_stats{};
    return own_stream.camera_port + own_streamer.frames + own_stats + (library_stream != nullptr) +
           static_cast<int>(library_stats.files_queued);
}
"#;
    for compiler in compilers(
        "a_program_with_its_own_stream_and_streamer_types_compiles",
        true,
    ) {
        compile_header_only(compiler, "c++17", "cpp", text, &[]);
    }
}

/// The short names of earlier versions, only when asked for.
#[test]
fn the_short_names_exist_only_with_pyme_streaming_short_names() {
    let text = "#include <pyme_streaming.h>\n\
                int main(void) { StreamerStats stats; Streamer *s = 0; Stream *t = 0; StreamerOptions *o = 0;\n\
                stats.size = 0; (void)s; (void)t; (void)o; return (int)stats.size; }\n";
    compile_header_only("gcc", "c99", "c", text, &["-DPYME_STREAMING_SHORT_NAMES"]);
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("short.c");
    std::fs::write(&source, text).unwrap();
    let output = Command::new("gcc")
        .args(["-std=c99", "-fsyntax-only", "-I"])
        .arg(manifest_dir().join("include"))
        .arg(&source)
        .output()
        .unwrap();
    assert!(
        !output.status.success(),
        "short names must be off by default"
    );
}

#[test]
fn api_checks_pass_against_a_server() {
    let server = TestServer::start();
    let dir = tempfile::tempdir().unwrap();
    let exe = dir.path().join("api_checks");
    build_against_static(&example("api_checks.c"), &exe);
    let output = run(Command::new(&exe).arg(server.address()).arg(dead_address()));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let last = stdout.lines().last().unwrap_or_default();
    assert!(
        last.ends_with(" passed, 0 failed"),
        "api_checks said: {stdout}"
    );
    assert!(
        server.files().iter().any(|f| f.ends_with("end_of_stream")),
        "sentinel stored"
    );
}

/// `streamer_server_stats` (issue 25, item 4) from C: NULLs, an index out of
/// range (SIZE_MAX too), sizes 0, 4, 8, an older prefix and a larger buffer
/// (never written beyond the library's struct), a LabVIEW-shaped struct of
/// 64-bit fields, counts that add up to `streamer_stats`, and reads from the
/// completion callback while `streamer_close` runs.
#[test]
fn server_stats_from_c_write_a_prefix_and_add_up() {
    let servers = start_servers(2);
    let dir = tempfile::tempdir().unwrap();
    let exe = build_server_stats_program(dir.path());
    let output = run(Command::new(&exe)
        .arg(servers[0].address())
        .arg(servers[1].address()));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.trim_end().ends_with(" passed, 0 failed"), "{stdout}");
    let stored: usize = servers.iter().map(|s| s.files().len()).sum();
    assert!(stored >= 350, "{stored} files stored");
}

fn build_server_stats_program(dir: &Path) -> PathBuf {
    let exe = dir.join("server_stats");
    build_against_shared(
        "gcc",
        "c99",
        &example("server_stats.c"),
        &exe,
        &["-D_POSIX_C_SOURCE=200809L", "-pthread"],
    );
    exe
}

/// The same program under valgrind: no read or write beyond the caller's
/// struct for any size it passes, nothing leaked.
#[test]
fn server_stats_program_is_clean_under_valgrind() {
    if !require_tool(
        "server_stats_program_is_clean_under_valgrind",
        "valgrind",
        &["--version"],
    ) {
        return;
    }
    let servers = start_servers(2);
    let dir = tempfile::tempdir().unwrap();
    let exe = build_server_stats_program(dir.path());
    let output = run_within(
        Command::new("valgrind")
            .args([
                "--quiet",
                "--error-exitcode=1",
                "--leak-check=full",
                "--errors-for-leak-kinds=definite,indirect",
            ])
            .arg(&exe)
            .arg(servers[0].address())
            .arg(servers[1].address()),
        std::time::Duration::from_secs(600),
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.trim_end().ends_with(" passed, 0 failed"), "{stdout}");
}

/// fork() with a streamer and a stream open (issue 22, item 5): in the child
/// every inherited call returns STREAMER_ERR_FORKED at once and the closes only
/// free memory; the child streams with its own streamer; the parent streams on.
/// And the spill folder the parent holds is STREAMER_ERR_SPILL_BUSY for a second
/// streamer, in the parent and in the child (item 3).
#[test]
fn a_forked_child_gets_forked_at_once_and_the_parent_streams_every_file() {
    let server = TestServer::start();
    let dir = tempfile::tempdir().unwrap();
    let exe = dir.path().join("fork_checks");
    build_against_static(&example("fork_checks.c"), &exe);
    let spill = dir.path().join("spill");
    let output = run(Command::new(&exe).arg(server.address()).arg(&spill));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout
            .lines()
            .any(|line| line.starts_with("child: ") && line.ends_with(" passed, 0 failed")),
        "fork_checks said: {stdout}"
    );
    assert!(
        stdout
            .lines()
            .last()
            .unwrap_or_default()
            .ends_with(" passed, 0 failed"),
        "fork_checks said: {stdout}"
    );
    let files = server.files();
    let count = |prefix: &str| files.iter().filter(|f| f.starts_with(prefix)).count();
    assert_eq!(count("fork_checks/parent/"), 40);
    assert_eq!(count("fork_checks/parent2/"), 20);
    assert_eq!(count("fork_checks/parent3/"), 1);
    assert_eq!(count("fork_checks/child/"), 5, "{files:?}");
}

/// Checks that the frames are placed round-robin from the server that holds
/// frame 0 (each streamer starts at its own, random, server): server
/// `first + k` holds frames `k, k + n, ...`, each the synthetic frame with the
/// filter's trailer.
fn check_frames(servers: &[TestServer], series: &str, n_frames: usize, frame_bytes: usize) {
    let n = servers.len();
    let frame0 = format!("{series}/frame00000.raw");
    let first = servers
        .iter()
        .position(|server| server.files().contains(&frame0))
        .expect("frame 0 stored");
    for (s, server) in servers.iter().enumerate() {
        let k = (s + n - first) % n;
        let expected: Vec<String> = (k..n_frames)
            .step_by(n)
            .map(|i| format!("{series}/frame{i:05}.raw"))
            .collect();
        assert_eq!(server.files(), expected, "files on server {s}");
        for (i, name) in (k..n_frames).step_by(n).zip(&expected) {
            let bytes = server.read(name).unwrap();
            assert_eq!(bytes.len(), frame_bytes + 8, "{name}");
            let body: Vec<u8> = (0..frame_bytes).map(|b| (i + b) as u8).collect();
            assert_eq!(&bytes[..frame_bytes], &body[..], "{name} pixels");
            assert_eq!(
                &bytes[frame_bytes..frame_bytes + 4],
                b"PYME",
                "{name} trailer"
            );
            assert_eq!(
                u32::from_le_bytes(bytes[frame_bytes + 4..].try_into().unwrap()) as usize,
                frame_bytes
            );
        }
    }
}

fn stream_frames_command(
    exe: &Path,
    servers: &[TestServer],
    n_frames: usize,
    frame_bytes: usize,
) -> Command {
    let mut command = Command::new(exe);
    command
        .args([
            "-n",
            &n_frames.to_string(),
            "-s",
            &frame_bytes.to_string(),
            "-p",
            "series",
        ])
        .args(servers.iter().map(TestServer::address));
    command
}

#[test]
fn stream_frames_delivers_every_frame() {
    let servers = start_servers(3);
    let dir = tempfile::tempdir().unwrap();
    let exe = dir.path().join("stream_frames");
    build_against_shared("gcc", "c99", &example("stream_frames.c"), &exe, &[]);
    let output = run(&mut stream_frames_command(&exe, &servers, 90, 10_000));
    assert!(String::from_utf8_lossy(&output.stdout).contains("all 90 frames acknowledged"));
    check_frames(&servers, "series", 90, 10_000);
}

#[test]
fn stream_frames_fails_when_a_server_is_lost() {
    let servers = start_servers(1);
    let dir = tempfile::tempdir().unwrap();
    let exe = dir.path().join("stream_frames");
    build_against_shared("gcc", "c99", &example("stream_frames.c"), &exe, &[]);
    // The frames exist already: the server refuses every one (write-once, 405).
    run(&mut stream_frames_command(&exe, &servers, 5, 100));
    let output = stream_frames_command(&exe, &servers, 5, 100)
        .output()
        .unwrap();
    assert!(
        !output.status.success(),
        "a refused frame must fail the run"
    );
    assert!(String::from_utf8_lossy(&output.stderr).contains("5 of 5 frames lost"));
}

#[test]
fn stream_frames_is_clean_under_valgrind() {
    if !require_tool(
        "stream_frames_is_clean_under_valgrind",
        "valgrind",
        &["--version"],
    ) {
        return;
    }
    let servers = start_servers(2);
    let dir = tempfile::tempdir().unwrap();
    let exe = dir.path().join("stream_frames");
    build_against_shared("gcc", "c99", &example("stream_frames.c"), &exe, &[]);
    let frames = stream_frames_command(&exe, &servers, 20, 4096);
    let mut command = Command::new("valgrind");
    command
        .args([
            "--quiet",
            "--error-exitcode=1",
            "--leak-check=full",
            "--errors-for-leak-kinds=definite,indirect",
        ])
        .arg(frames.get_program())
        .args(frames.get_args());
    run(&mut command);
    check_frames(&servers, "series", 20, 4096);
}

#[test]
fn camera_sim_streams_every_frame_on_time() {
    if !require_tool(
        "camera_sim_streams_every_frame_on_time",
        "g++",
        &["--version"],
    ) {
        return;
    }
    let servers = start_servers(2);
    let dir = tempfile::tempdir().unwrap();
    let exe = dir.path().join("camera_sim");
    build_against_shared(
        "g++",
        "c++17",
        &example("camera_sim.cpp"),
        &exe,
        &["-pthread"],
    );
    let output = run(Command::new(&exe)
        .args(["-f", "200", "-n", "100", "-s", "65536", "-p", "cam"])
        .args(servers.iter().map(TestServer::address)));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("all 100 frames acknowledged"), "{stdout}");
    assert!(stdout.contains("put latency: median"), "{stdout}");
    let stored: usize = servers.iter().map(|s| s.files().len()).sum();
    assert_eq!(stored, 100);
}

/// The PZF filter from C without a callback: every stored frame decodes to
/// the pixels the C program made (exactly, or within one quantization step).
#[test]
fn pzf_frames_from_c_decode_to_the_pixels_sent() {
    let servers = start_servers(2);
    let dir = tempfile::tempdir().unwrap();
    let exe = dir.path().join("pzf_frames");
    build_against_shared("gcc", "c99", &example("pzf_frames.c"), &exe, &[]);
    for (series, quantize) in [("exact", false), ("quantized", true)] {
        let mut command = Command::new(&exe);
        command.args(["-n", "6", "-w", "40", "-h", "30", "-p", series]);
        if quantize {
            command.arg("-q");
        }
        command.args(servers.iter().map(TestServer::address));
        run(&mut command);
        for i in 0..6u32 {
            let name = format!("{series}/frame{i:05}.pzf");
            // Either server: each streamer starts its round-robin at random.
            let stored = servers.iter().find_map(|s| s.read(&name)).expect(&name);
            let (header, pixels) = pyme_streaming::pzf::decode(&stored).unwrap();
            assert_eq!(header.frame_num, i);
            assert_eq!((header.width, header.height), (30, 40));
            for (p, value) in pixels.chunks(2).enumerate() {
                let value = u16::from_le_bytes([value[0], value[1]]) as f64;
                let sent = (100 + (p as u32 + i) % 64) as f64;
                let tolerance = if quantize {
                    2.0 * (sent - 100.0).sqrt() + 1.0
                } else {
                    0.0
                };
                assert!(
                    (value - sent).abs() <= tolerance,
                    "{name} pixel {p}: {value} vs {sent}"
                );
            }
        }
    }
}

/// Runs `command`, failing the test if it does not end within `limit` (a
/// deadlock in the program must fail the test, not hang it).
fn run_within(command: &mut Command, limit: std::time::Duration) -> std::process::Output {
    let mut child = command
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start the program");
    let deadline = std::time::Instant::now() + limit;
    while child.try_wait().expect("wait").is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let output = child.wait_with_output().unwrap();
            panic!(
                "{command:?} did not end within {limit:?} (a deadlock?)\n--- stdout\n{}\n--- stderr\n{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "{command:?} failed ({})\n--- stdout\n{}\n--- stderr\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

fn build_callbacks_program(dir: &Path) -> PathBuf {
    let exe = dir.join("callbacks");
    build_against_shared(
        "gcc",
        "c99",
        &example("callbacks.c"),
        &exe,
        &["-D_POSIX_C_SOURCE=200809L", "-pthread"],
    );
    exe
}

/// Re-entrancy from every C callback (stats and put work, flush/close/finalize
/// refuse with STREAMER_ERR_IN_CALLBACK), `stream_finalize` while callbacks read
/// `stream_stats` (it deadlocked), and the bounded close against a stalled server.
#[test]
fn callbacks_may_call_back_and_a_bounded_close_returns_in_time() {
    let server = TestServer::start();
    let stalled = FakeServer::start(|_, _| Action::Silent);
    let dir = tempfile::tempdir().unwrap();
    let exe = build_callbacks_program(dir.path());
    let output = run_within(
        Command::new(&exe)
            .arg(server.address())
            .arg(&stalled.address),
        std::time::Duration::from_secs(120),
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.trim_end().ends_with(" passed, 0 failed"), "{stdout}");
    assert!(server.files().iter().any(|f| f.ends_with("end_of_stream")));
}

#[test]
fn callbacks_program_is_clean_under_valgrind() {
    if !require_tool(
        "callbacks_program_is_clean_under_valgrind",
        "valgrind",
        &["--version"],
    ) {
        return;
    }
    let server = TestServer::start();
    let stalled = FakeServer::start(|_, _| Action::Silent);
    let dir = tempfile::tempdir().unwrap();
    let exe = build_callbacks_program(dir.path());
    let output = run_within(
        Command::new("valgrind")
            .args([
                "--quiet",
                "--error-exitcode=1",
                "--leak-check=full",
                "--errors-for-leak-kinds=definite,indirect",
            ])
            .arg(&exe)
            .arg(server.address())
            .arg(&stalled.address)
            // valgrind runs the library many times slower.
            .arg("8000"),
        std::time::Duration::from_secs(600),
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.trim_end().ends_with(" passed, 0 failed"), "{stdout}");
}

fn build_wrapper_checks(dir: &Path, compiler: &str) -> PathBuf {
    let exe = dir.join(format!("wrapper_checks_{compiler}"));
    build_against_shared(
        compiler,
        "c++17",
        &example("wrapper_checks.cpp"),
        &exe,
        &["-pthread"],
    );
    exe
}

/// The C++ wrapper: every option, puts that allocate nothing, put_nocopy with
/// owners, "closed" after close, a callback calling back, and the destructor's
/// bounded close during exception unwinding (stalled server) and while the
/// destroying thread holds the lock its completion lambda takes.
#[test]
fn the_cpp_wrapper_is_complete_and_its_destructor_is_bounded() {
    let server = TestServer::start();
    let stalled = FakeServer::start(|_, _| Action::Silent);
    let answer_once = FakeServer::start(|path, _| {
        if path.ends_with("answered") {
            Action::Answer(200)
        } else {
            Action::Silent
        }
    });
    let dir = tempfile::tempdir().unwrap();
    for compiler in compilers(
        "the_cpp_wrapper_is_complete_and_its_destructor_is_bounded",
        true,
    ) {
        let exe = build_wrapper_checks(dir.path(), compiler);
        let output = run_within(
            Command::new(&exe)
                .arg(server.address())
                .arg(&stalled.address)
                .arg(&answer_once.address),
            std::time::Duration::from_secs(120),
        );
        let stdout = String::from_utf8_lossy(&output.stdout);
        eprint!("{compiler}: {stdout}");
        assert!(
            stdout.trim_end().ends_with(" passed, 0 failed"),
            "{compiler}: {stdout}"
        );
    }
}

#[test]
fn the_cpp_wrapper_checks_are_clean_under_valgrind() {
    let test = "the_cpp_wrapper_checks_are_clean_under_valgrind";
    if !require_tool(test, "valgrind", &["--version"]) || !require_tool(test, "g++", &["--version"])
    {
        return;
    }
    let server = TestServer::start();
    let stalled = FakeServer::start(|_, _| Action::Silent);
    let answer_once = FakeServer::start(|path, _| {
        if path.ends_with("answered") {
            Action::Answer(200)
        } else {
            Action::Silent
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let exe = build_wrapper_checks(dir.path(), "g++");
    let output = run_within(
        Command::new("valgrind")
            .args([
                "--quiet",
                "--error-exitcode=1",
                "--leak-check=full",
                "--errors-for-leak-kinds=definite,indirect",
            ])
            .arg(&exe)
            .arg(server.address())
            .arg(&stalled.address)
            .arg(&answer_once.address)
            .arg("8000"),
        std::time::Duration::from_secs(600),
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.trim_end().ends_with(" passed, 0 failed"), "{stdout}");
}

/// The callbacks program and the C++ wrapper's checks built with
/// AddressSanitizer (and its leak checker): no memory error, no leak, in the
/// C/C++ side or across the boundary.
#[test]
fn callbacks_and_wrapper_programs_are_clean_under_asan() {
    let probe_dir = tempfile::tempdir().unwrap();
    let probe = probe_dir.path().join("probe.c");
    std::fs::write(&probe, "int main(void) { return 0; }\n").unwrap();
    let asan_works = Command::new("gcc")
        .arg("-fsanitize=address")
        .arg(&probe)
        .arg("-o")
        .arg(probe_dir.path().join("probe"))
        .status()
        .is_ok_and(|status| status.success());
    let test = "callbacks_and_wrapper_programs_are_clean_under_asan";
    if !asan_works {
        skip(
            test,
            "gcc cannot build with -fsanitize=address here (libasan)",
        );
        return;
    }
    let server = TestServer::start();
    let stalled = FakeServer::start(|_, _| Action::Silent);
    let dir = tempfile::tempdir().unwrap();
    let exe = dir.path().join("callbacks_asan");
    build_against_shared(
        "gcc",
        "c99",
        &example("callbacks.c"),
        &exe,
        &[
            "-D_POSIX_C_SOURCE=200809L",
            "-pthread",
            "-fsanitize=address",
            "-fno-omit-frame-pointer",
        ],
    );
    let output = run_within(
        Command::new(&exe)
            .env(
                "ASAN_OPTIONS",
                "detect_leaks=1:abort_on_error=0:exitcode=23",
            )
            .arg(server.address())
            .arg(&stalled.address)
            .arg("4000"),
        std::time::Duration::from_secs(300),
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.trim_end().ends_with(" passed, 0 failed"), "{stdout}");

    // The C++ wrapper's checks too (its destructor may leave a thread behind
    // on purpose: what it keeps alive must stay reachable, not leak).
    if !require_tool(test, "g++", &["--version"]) {
        return;
    }
    let answer_once = FakeServer::start(|path, _| {
        if path.ends_with("answered") {
            Action::Answer(200)
        } else {
            Action::Silent
        }
    });
    let exe = dir.path().join("wrapper_checks_asan");
    build_against_shared(
        "g++",
        "c++17",
        &example("wrapper_checks.cpp"),
        &exe,
        &["-pthread", "-fsanitize=address", "-fno-omit-frame-pointer"],
    );
    let output = run_within(
        Command::new(&exe)
            .env(
                "ASAN_OPTIONS",
                "detect_leaks=1:abort_on_error=0:exitcode=23",
            )
            .arg(server.address())
            .arg(&stalled.address)
            .arg(&answer_once.address)
            .arg("4000"),
        std::time::Duration::from_secs(300),
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.trim_end().ends_with(" passed, 0 failed"), "{stdout}");
}

/// A host unloads the library (dlclose) while a streamer it opened still has files
/// on their way: the library stays mapped (it pins itself, and the shared library
/// is linked with `-z nodelete`), its threads send every file, and the process
/// does not crash. Before the pin, dlclose unmapped the code under the running
/// threads.
#[cfg(target_os = "linux")]
#[test]
fn unloading_the_library_while_a_streamer_runs_leaves_it_mapped_and_the_files_land() {
    use std::io::{BufRead, BufReader};
    // glibc already keeps a library with pending thread_local destructors mapped;
    // the flag makes it so from the moment it loads, whatever the C library does.
    let dynamic = run(Command::new("readelf")
        .arg("-d")
        .arg(library_dir().join("libpyme_streaming.so")));
    let dynamic = String::from_utf8_lossy(&dynamic.stdout);
    assert!(
        dynamic
            .lines()
            .any(|l| l.contains("FLAGS_1") && l.contains("NODELETE")),
        "libpyme_streaming.so is linked with -z nodelete:\n{dynamic}"
    );
    let server = TestServer::start();
    let dir = tempfile::tempdir().unwrap();
    let exe = dir.path().join("unload");
    run(Command::new("gcc")
        .args(["-std=c99", "-D_POSIX_C_SOURCE=200809L"])
        .args(WARNINGS)
        .arg(manifest_dir().join("tests/packaging/unload.c"))
        .arg("-o")
        .arg(&exe)
        .arg("-ldl"));
    let (host, port) = server
        .address()
        .rsplit_once(':')
        .map(|(h, p)| (h.to_owned(), p.to_owned()))
        .unwrap();
    let marker = dir.path().join("landed");
    let mut child = Command::new(&exe)
        .arg(library_dir().join("libpyme_streaming.so"))
        .arg(host)
        .arg(port)
        .arg(&marker)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(
        line.trim(),
        "pinned",
        "after dlclose the library must stay mapped"
    );
    // The files land while the program runs on without the library's handle.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let expected: Vec<String> = (0..40).map(|i| format!("unload/file{i:03}.bin")).collect();
    while server.files() != expected && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    std::fs::write(&marker, b"").unwrap();
    let status = child.wait().unwrap();
    assert_eq!(
        server.files(),
        expected,
        "every file put before the dlclose lands"
    );
    for (i, name) in expected.iter().enumerate() {
        assert_eq!(
            server.read(name).unwrap(),
            vec![i as u8; 256 * 1024],
            "{name}"
        );
    }
    assert!(
        status.success(),
        "the program ran on without a crash: {status}"
    );
}

/// The reports of one ThreadSanitizer run: the `SUMMARY:` lines.
fn tsan_reports(output: &std::process::Output) -> Vec<String> {
    String::from_utf8_lossy(&output.stderr)
        .lines()
        .filter(|line| line.starts_with("SUMMARY: ThreadSanitizer"))
        .map(str::to_owned)
        .collect()
}

/// A consumer built with -fsanitize=thread (gcc; skipped visibly without libtsan):
/// without suppressions TSan reports the hand-offs through the library (the
/// library is not instrumented); with the installed `tsan.supp` (cmake/tsan.supp)
/// the run is clean, linked with the shared and with the static library, and the
/// consumer's own races (two of its threads on one counter; its completion callback
/// against its main thread) are still reported.
#[cfg(target_os = "linux")]
#[test]
fn tsan_with_the_suppressions_is_clean_and_still_reports_the_programs_own_race() {
    let test = "tsan_with_the_suppressions_is_clean_and_still_reports_the_programs_own_race";
    let dir = tempfile::tempdir().unwrap();
    let probe = dir.path().join("probe.c");
    std::fs::write(&probe, "int main(void) { return 0; }\n").unwrap();
    let can_build = Command::new("gcc")
        .arg("-fsanitize=thread")
        .arg(&probe)
        .arg("-o")
        .arg(dir.path().join("probe"))
        .output()
        .is_ok_and(|output| output.status.success());
    if !can_build {
        common::skip::skip(
            test,
            "gcc cannot build with -fsanitize=thread (libtsan missing: apt-get install libgcc-*-dev)",
        );
        return;
    }
    let source = manifest_dir().join("tests/packaging/tsan_consumer.c");
    let lib = library_dir();
    let shared = dir.path().join("consumer_shared");
    let static_ = dir.path().join("consumer_static");
    let flags = [
        "-std=c99",
        "-D_POSIX_C_SOURCE=200809L",
        "-g",
        "-fsanitize=thread",
    ];
    run(Command::new("gcc")
        .args(flags)
        .args(WARNINGS)
        .arg("-I")
        .arg(manifest_dir().join("include"))
        .arg(&source)
        .arg("-o")
        .arg(&shared)
        .arg("-L")
        .arg(&lib)
        .arg(format!("-Wl,-rpath,{}", lib.display()))
        .arg("-Wl,--disable-new-dtags")
        .args(["-lpyme_streaming", "-lpthread"]));
    run(Command::new("gcc")
        .args(flags)
        .args(WARNINGS)
        .arg("-I")
        .arg(manifest_dir().join("include"))
        .arg(&source)
        .arg("-o")
        .arg(&static_)
        .arg(lib.join("libpyme_streaming.a"))
        .args(["-lpthread", "-ldl", "-lm"]));
    let suppressions = manifest_dir().join("cmake/tsan.supp");
    let run_consumer = |exe: &Path, mode: &str, with_suppressions: bool| {
        let server = TestServer::start();
        let (host, port) = server
            .address()
            .rsplit_once(':')
            .map(|(h, p)| (h.to_owned(), p.to_owned()))
            .unwrap();
        let mut options = "halt_on_error=0 exitcode=66".to_owned();
        if with_suppressions {
            options.push_str(&format!(" suppressions={}", suppressions.display()));
        }
        let output = Command::new(exe)
            .args([host.as_str(), port.as_str(), mode])
            .env("TSAN_OPTIONS", options)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        assert!(
            stdout.contains("acknowledged 64 "),
            "{} {mode}: every file acknowledged: {stdout}\n{}",
            exe.display(),
            String::from_utf8_lossy(&output.stderr)
        );
        output
    };
    // Without suppressions: the library's hand-offs look like races.
    let unsuppressed = run_consumer(&shared, "clean", false);
    assert!(
        !tsan_reports(&unsuppressed).is_empty(),
        "without suppressions TSan reports the hand-offs (else this test shows nothing)"
    );
    for exe in [&shared, &static_] {
        let clean = run_consumer(exe, "clean", true);
        assert_eq!(
            tsan_reports(&clean),
            Vec::<String>::new(),
            "{}: clean with tsan.supp:\n{}",
            exe.display(),
            String::from_utf8_lossy(&clean.stderr)
        );
        assert_eq!(clean.status.code(), Some(0));
        let racy = run_consumer(exe, "race", true);
        let reports = tsan_reports(&racy);
        // TSan reports a race at its second access: the callback's write and
        // the main thread's read of the same counter come in either order, so
        // the summary names `on_complete` or `main` (both in the consumer).
        let callback_race = |r: &String| {
            r.contains("tsan_consumer.c")
                && (r.ends_with(" in on_complete") || r.ends_with(" in main"))
        };
        assert!(
            reports.iter().any(|r| r.ends_with(" in race")) && reports.iter().any(callback_race),
            "{}: the consumer's own races are still reported with tsan.supp: {reports:?}",
            exe.display()
        );
        assert_eq!(racy.status.code(), Some(66));
    }
}

/// Live membership from C (c_examples/live_membership.c): a server
/// registered in the local registry during the run joins the streamer; the
/// state callback says up for its index, the distribution callback is given
/// three servers and places files there, and the server stores them.
#[test]
fn live_membership_from_c_a_registered_server_joins_and_takes_files() {
    run_live_membership_program(&[]);
}

/// The same program under valgrind: no invalid access, nothing leaked, while
/// a thread of the library adds a server under the program's feet.
#[test]
fn live_membership_program_is_clean_under_valgrind() {
    if !require_tool(
        "live_membership_program_is_clean_under_valgrind",
        "valgrind",
        &["--version"],
    ) {
        return;
    }
    run_live_membership_program(&[
        "valgrind",
        "--quiet",
        "--error-exitcode=1",
        "--leak-check=full",
        "--errors-for-leak-kinds=definite,indirect",
    ]);
}

/// Runs c_examples/live_membership.c (under `wrapper`, if any): two servers
/// registered at start, a third once the program says READY.
fn run_live_membership_program(wrapper: &[&str]) {
    use std::io::BufRead;
    use std::process::Stdio;

    let servers = start_servers(3);
    let dir = tempfile::tempdir().unwrap();
    let registry = dir.path().join("_pyme-http.sqlite");
    let register = |n: usize| {
        let port = servers[n].server.local_addr().port();
        let name = format!("PYMEDataServer [cmembers]:node{n} - PID:{n}");
        pyme_streaming::discovery::registry::register(&registry, &name, "127.0.0.1", port).unwrap()
    };
    let _first = (register(0), register(1));
    let exe = dir.path().join("live_membership");
    build_against_shared(
        "gcc",
        "c99",
        &example("live_membership.c"),
        &exe,
        &["-D_POSIX_C_SOURCE=200809L", "-pthread"],
    );
    let mut command = match wrapper.split_first() {
        Some((program, args)) => {
            let mut command = Command::new(program);
            command.args(args).arg(&exe);
            command
        }
        None => Command::new(&exe),
    };
    let mut child = command
        .arg(&registry)
        .arg("[cmembers]")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let ready = lines.next().and_then(Result::ok);
    assert_eq!(ready.as_deref(), Some("READY"));
    let _third = register(2);
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    let status = child.wait().unwrap();
    let last = rest.last().cloned().unwrap_or_default();
    assert!(
        status.success() && last.ends_with(" passed, 0 failed"),
        "{status}: {rest:?}"
    );
    let on_third = servers[2]
        .files()
        .iter()
        .filter(|file| file.starts_with("live_membership/"))
        .count();
    assert!(on_third >= 40, "{on_third} files on the server that joined");
}
