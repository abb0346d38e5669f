//! Skipping a test visibly when the machine lacks what it needs.
//!
//! libtest hides what a passing test prints with `print!`/`eprint!`, so a skip
//! reported that way is invisible in a newcomer's `cargo test`. [`skip`] writes
//! straight to the process's standard error (the file descriptor, which libtest
//! does not capture), so the plain output names every skipped check and why.
//! Under CI (the `CI` variable set, as `.ci/run` runs), everything a test needs
//! is installed first, so a skip there is a failure.

use std::io::Write;

/// Reports that `test` is skipped because of `reason`, and fails under CI.
/// The caller returns right after.
pub fn skip(test: &str, reason: &str) {
    if std::env::var_os("CI").is_some() {
        panic!("{test} cannot run under CI, where .ci/run installs what it needs: {reason}");
    }
    let line = format!("\nSKIPPED {test}: {reason}\n");
    let _ = std::io::stderr().lock().write_all(line.as_bytes());
}

/// Why the command `program` cannot be run here (`program args` fails to
/// start), or `None` when it can.
pub fn missing_tool(program: &str, args: &[&str]) -> Option<String> {
    match std::process::Command::new(program)
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
    {
        Ok(_) => None,
        Err(error) => Some(format!(
            "`{program}` is not installed ({error}); .ci/run installs it"
        )),
    }
}

/// Skips `test` (see [`skip`]) when `program` is missing; true when it may run.
pub fn require_tool(test: &str, program: &str, args: &[&str]) -> bool {
    match missing_tool(program, args) {
        Some(reason) => {
            skip(test, &reason);
            false
        }
        None => true,
    }
}
