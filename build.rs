//! Generates the C header `pyme_streaming.h` into `OUT_DIR` with cbindgen, from
//! `src/ffi/` and `cbindgen.toml`. It writes nowhere else: the committed copy in
//! `include/` is checked against this one by `tests/header.rs`.

use std::path::PathBuf;

fn main() {
    let manifest_dir =
        PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let out_dir = PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR"));
    println!("cargo:rerun-if-changed=cbindgen.toml");
    println!("cargo:rerun-if-changed=src/ffi");
    println!("cargo:rerun-if-changed=build.rs");
    // A SONAME, so that programs linked with the shared library find it by name
    // (not by the path it was linked from).
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux") {
        println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libpyme_streaming.so");
    }

    let mut config = cbindgen::Config::from_file(manifest_dir.join("cbindgen.toml"))
        .expect("cbindgen.toml is valid");
    config.after_includes = Some(version_macros());
    let header = cbindgen::Builder::new()
        .with_config(config)
        .with_src(manifest_dir.join("src/ffi/mod.rs"))
        .generate()
        .expect("cbindgen generates the header from src/ffi/");
    let mut text = Vec::new();
    header.write(&mut text);
    let text = String::from_utf8(text).expect("the header is UTF-8");
    std::fs::write(out_dir.join("pyme_streaming.h"), valid_c89(&text))
        .expect("write the header into OUT_DIR");
}

/// C89 refuses a comma after the last enumerator, which cbindgen always writes.
fn valid_c89(header: &str) -> String {
    header.replace(",\n} Pyme", "\n} Pyme")
}

/// The version macros, from Cargo.toml's version.
fn version_macros() -> String {
    let part =
        |name: &str| std::env::var(name).unwrap_or_else(|_| panic!("{name} is set by cargo"));
    let (major, minor, patch) = (
        part("CARGO_PKG_VERSION_MAJOR"),
        part("CARGO_PKG_VERSION_MINOR"),
        part("CARGO_PKG_VERSION_PATCH"),
    );
    format!(
        "\n/** The version of this header, as Cargo.toml; streamer_version() gives the library's. */\n\
         #define PYME_STREAMING_VERSION_MAJOR {major}\n\
         #define PYME_STREAMING_VERSION_MINOR {minor}\n\
         #define PYME_STREAMING_VERSION_PATCH {patch}\n\
         #define PYME_STREAMING_VERSION \"{major}.{minor}.{patch}\"\n"
    )
}
