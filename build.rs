//! Generates the C header `pyme_streaming.h` into `OUT_DIR` with cbindgen, from
//! `src/ffi/` and `cbindgen.toml`, and for Windows (mingw) the version resources of
//! the DLL and of `pyme-stream.exe`, compiled with windres into `OUT_DIR` and linked
//! in. It writes nowhere else: the committed copy in `include/` is checked against
//! this one by `tests/header.rs`.

use std::path::{Path, PathBuf};
use std::process::Command;

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
        // Never unloaded: its threads may outlive a dlclose (src/ffi/pin.rs).
        println!("cargo:rustc-cdylib-link-arg=-Wl,-z,nodelete");
    }

    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("windows")
        && std::env::var("CARGO_CFG_TARGET_ENV").as_deref() == Ok("gnu")
    {
        windows_version_resources(&out_dir);
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

/// Compiles a VERSIONINFO resource for the DLL and one for `pyme-stream.exe` with the
/// mingw `windres` (`$WINDRES`, else `<arch>-w64-mingw32-windres`) and links each into
/// its artifact, so Windows (Explorer, installers, LabVIEW) shows the version. Without
/// windres the build goes on, with a warning.
fn windows_version_resources(out_dir: &Path) {
    println!("cargo:rerun-if-env-changed=WINDRES");
    let windres = std::env::var("WINDRES").unwrap_or_else(|_| {
        let arch = std::env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_default();
        let arch = if arch == "x86" {
            "i686".to_owned()
        } else {
            arch
        };
        format!("{arch}-w64-mingw32-windres")
    });
    let version = std::env::var("CARGO_PKG_VERSION").expect("CARGO_PKG_VERSION is set by cargo");
    let numeric = {
        let part = |name: &str| std::env::var(name).unwrap_or_else(|_| "0".to_owned());
        format!(
            "{},{},{},0",
            part("CARGO_PKG_VERSION_MAJOR"),
            part("CARGO_PKG_VERSION_MINOR"),
            part("CARGO_PKG_VERSION_PATCH")
        )
    };
    // (file name, VFT_DLL = 2 / VFT_APP = 1, description, how cargo links it)
    let artifacts = [
        (
            "pyme_streaming.dll",
            2,
            "pyme-streaming: stream camera frames to PYME data servers (C API)",
            "cargo:rustc-cdylib-link-arg",
        ),
        (
            "pyme-stream.exe",
            1,
            "pyme-stream: PYME data server, streaming benchmark and demo",
            "cargo:rustc-link-arg-bins",
        ),
    ];
    for (file_name, file_type, description, link_arg) in artifacts {
        let stem = file_name.replace(['.', '-'], "_");
        let rc = out_dir.join(format!("{stem}_version.rc"));
        let object = out_dir.join(format!("{stem}_version.o"));
        std::fs::write(
            &rc,
            format!(
                "1 VERSIONINFO\n\
                 FILEVERSION {numeric}\n\
                 PRODUCTVERSION {numeric}\n\
                 FILEFLAGSMASK 0x3f\n\
                 FILEFLAGS 0\n\
                 FILEOS 0x40004\n\
                 FILETYPE {file_type}\n\
                 FILESUBTYPE 0\n\
                 BEGIN\n\
                 \x20 BLOCK \"StringFileInfo\"\n\
                 \x20 BEGIN\n\
                 \x20   BLOCK \"040904b0\"\n\
                 \x20   BEGIN\n\
                 \x20     VALUE \"CompanyName\", \"pyme-streaming\"\n\
                 \x20     VALUE \"FileDescription\", \"{description}\"\n\
                 \x20     VALUE \"FileVersion\", \"{version}\"\n\
                 \x20     VALUE \"InternalName\", \"{file_name}\"\n\
                 \x20     VALUE \"LegalCopyright\", \"MIT OR Apache-2.0\"\n\
                 \x20     VALUE \"OriginalFilename\", \"{file_name}\"\n\
                 \x20     VALUE \"ProductName\", \"pyme-streaming\"\n\
                 \x20     VALUE \"ProductVersion\", \"{version}\"\n\
                 \x20   END\n\
                 \x20 END\n\
                 \x20 BLOCK \"VarFileInfo\"\n\
                 \x20 BEGIN\n\
                 \x20   VALUE \"Translation\", 0x409, 1200\n\
                 \x20 END\n\
                 END\n"
            ),
        )
        .expect("write the .rc file into OUT_DIR");
        let status = Command::new(&windres)
            .args(["-O", "coff", "-i"])
            .arg(&rc)
            .arg("-o")
            .arg(&object)
            .status();
        match status {
            Ok(status) if status.success() => println!("{link_arg}={}", object.display()),
            Ok(status) => panic!("{windres} failed ({status}) on {}", rc.display()),
            Err(error) => {
                println!(
                    "cargo:warning={file_name} gets no version resource: cannot run {windres} ({error}); set WINDRES"
                );
                return;
            }
        }
    }
}
