//! The committed C header `include/pyme_streaming.h` must be exactly what
//! build.rs generates from `src/ffi/` (into OUT_DIR) with `cbindgen.toml`.
//!
//! After changing the C API, regenerate the committed copy with:
//!
//! ```text
//! PYME_REGEN_HEADER=1 cargo test --test header
//! ```

use std::path::Path;

const FRESH: &str = include_str!(concat!(env!("OUT_DIR"), "/pyme_streaming.h"));

#[test]
fn committed_header_matches_the_generated_one() {
    let committed_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("include/pyme_streaming.h");
    if std::env::var_os("PYME_REGEN_HEADER").is_some_and(|value| value == "1") {
        std::fs::write(&committed_path, FRESH).expect("write include/pyme_streaming.h");
        eprintln!("rewrote {}", committed_path.display());
        return;
    }
    let committed = std::fs::read_to_string(&committed_path).unwrap_or_default();
    if committed != FRESH {
        let first_difference = committed
            .lines()
            .zip(FRESH.lines())
            .position(|(a, b)| a != b)
            .map_or_else(
                || "in length".to_owned(),
                |line| format!("at line {}", line + 1),
            );
        panic!(
            "include/pyme_streaming.h is out of date (differs {first_difference}).\n\
             Regenerate it with: PYME_REGEN_HEADER=1 cargo test --test header"
        );
    }
}

#[test]
fn header_version_macros_match_cargo_toml() {
    let version = env!("CARGO_PKG_VERSION");
    assert!(FRESH.contains(&format!("#define PYME_STREAMING_VERSION \"{version}\"")));
    assert!(FRESH.contains(&format!(
        "#define PYME_STREAMING_VERSION_MAJOR {}",
        env!("CARGO_PKG_VERSION_MAJOR")
    )));
}
