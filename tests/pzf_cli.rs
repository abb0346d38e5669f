//! The `pzf` subcommand and the file-level functions behind it: raw files to PZF
//! files and back.

mod common;

use std::io::Write;
use std::process::Stdio;

use common::pyme_stream;

use pyme_streaming::pzf::files::{decode_file, encode_raw_file, frame_path, parse_shape};
use pyme_streaming::pzf::{Compression, DataFormat, EncodeParams, PzfError, Quantization};

#[test]
fn shapes_parse() {
    assert_eq!(parse_shape("512x256").unwrap(), (512, 256, 1));
    assert_eq!(parse_shape("4x5x6").unwrap(), (4, 5, 6));
    for bad in ["", "5", "4x", "ax5", "1x2x3x4", "-1x5"] {
        assert!(
            matches!(parse_shape(bad), Err(PzfError::InvalidParams(_))),
            "{bad}"
        );
    }
}

#[test]
fn frame_files_are_numbered_with_five_digits() {
    assert_eq!(
        frame_path("out/frame", 7).to_str().unwrap(),
        "out/frame00007.pzf"
    );
}

#[test]
fn raw_file_round_trips_frame_by_frame() {
    let dir = tempfile::tempdir().unwrap();
    let raw: Vec<u8> = (0..3 * 6 * 4 * 2).map(|i| (i * 7 % 251) as u8).collect();
    let input = dir.path().join("in.raw");
    std::fs::write(&input, &raw).unwrap();
    let prefix = dir.path().join("f").to_str().unwrap().to_owned();
    for compression in [
        Compression::Raw,
        Compression::Huffman,
        Compression::HuffmanChunked,
    ] {
        let mut params = EncodeParams::new(DataFormat::U16, 6, 4);
        params.compression = compression;
        let written = encode_raw_file(&input, &prefix, &params, None).unwrap();
        assert_eq!(written.len(), 3);
        for (i, path) in written.iter().enumerate() {
            assert_eq!(path, &frame_path(&prefix, i));
            let out = dir.path().join("out.raw");
            let header = decode_file(path, &out).unwrap();
            assert_eq!(header.frame_num, i as u32);
            assert_eq!(std::fs::read(&out).unwrap(), &raw[i * 48..(i + 1) * 48]);
        }
    }
    let params = EncodeParams::new(DataFormat::U16, 6, 4);
    assert_eq!(
        encode_raw_file(&input, &prefix, &params, Some(2))
            .unwrap()
            .len(),
        2
    );
}

#[test]
fn bad_inputs_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.raw");
    std::fs::write(&input, [0u8; 50]).unwrap();
    let prefix = dir.path().join("f").to_str().unwrap().to_owned();
    let params = EncodeParams::new(DataFormat::U16, 6, 4);
    assert!(matches!(
        encode_raw_file(&input, &prefix, &params, None),
        Err(PzfError::SizeMismatch { .. })
    ));
    let mut quantized_u8 = EncodeParams::new(DataFormat::U8, 5, 5);
    quantized_u8.quantization = Quantization::Sqrt;
    assert!(matches!(
        encode_raw_file(&input, &prefix, &quantized_u8, None),
        Err(PzfError::InvalidParams(_))
    ));
    let missing = dir.path().join("missing.raw");
    assert!(matches!(
        encode_raw_file(&missing, &prefix, &params, None),
        Err(PzfError::Io { .. })
    ));
    assert!(matches!(
        encode_raw_file(dir.path(), &prefix, &params, None),
        Err(PzfError::Io { .. })
    ));
    assert!(matches!(
        decode_file(&input, &dir.path().join("o")),
        Err(PzfError::BadHeader(_))
    ));
}

#[test]
fn a_partial_last_frame_in_a_regular_file_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.raw");
    // Two whole frames of 48 bytes and half a third.
    std::fs::write(&input, [7u8; 2 * 48 + 24]).unwrap();
    let prefix = dir.path().join("f").to_str().unwrap().to_owned();
    let params = EncodeParams::new(DataFormat::U16, 6, 4);
    assert!(matches!(
        encode_raw_file(&input, &prefix, &params, None),
        Err(PzfError::SizeMismatch {
            expected: 48,
            actual: 24
        })
    ));
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        1,
        "only the input"
    );
}

/// Input of unknown size (a FIFO) is encoded as it arrives; a partial last frame is
/// an error after the whole frames before it were written.
#[cfg(unix)] // mkfifo
#[test]
fn a_pipe_is_encoded_frame_by_frame() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("in.fifo");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success(), "mkfifo");
    let raw: Vec<u8> = (0..2 * 48 + 10).map(|i| (i * 13 % 251) as u8).collect();
    let writer = {
        let (fifo, raw) = (fifo.clone(), raw.clone());
        std::thread::Builder::new()
            .name("fifo-writer".into())
            .spawn(move || {
                use std::io::Write;
                let mut pipe = std::fs::OpenOptions::new().write(true).open(fifo).unwrap();
                // In pieces that cut across frames, as a pipe may deliver them.
                for piece in raw.chunks(20) {
                    pipe.write_all(piece).unwrap();
                }
            })
            .unwrap()
    };
    let prefix = dir.path().join("f").to_str().unwrap().to_owned();
    let params = EncodeParams::new(DataFormat::U16, 6, 4);
    let result = encode_raw_file(&fifo, &prefix, &params, None);
    writer.join().unwrap();
    assert!(
        matches!(
            result,
            Err(PzfError::SizeMismatch {
                expected: 48,
                actual: 10
            })
        ),
        "{result:?}"
    );
    for i in 0..2 {
        let out = dir.path().join("out.raw");
        let header = decode_file(&frame_path(&prefix, i), &out).unwrap();
        assert_eq!(header.frame_num, i as u32);
        assert_eq!(std::fs::read(&out).unwrap(), &raw[i * 48..(i + 1) * 48]);
    }
    assert!(!frame_path(&prefix, 2).exists());
}

/// A shape far larger than the input allocates for the input, not for the shape:
/// an empty file writes nothing, a short pipe is an error.
#[cfg(unix)] // mkfifo
#[test]
fn a_huge_shape_with_little_input_allocates_little() {
    let dir = tempfile::tempdir().unwrap();
    let prefix = dir.path().join("f").to_str().unwrap().to_owned();
    // 65536 x 65536 x 4 uint16 pixels: 32 GiB a frame, more than this machine has.
    let mut params = EncodeParams::new(DataFormat::U16, 65536, 65536);
    params.depth = 4;
    let empty = dir.path().join("empty.raw");
    std::fs::write(&empty, []).unwrap();
    assert_eq!(
        encode_raw_file(&empty, &prefix, &params, None).unwrap(),
        Vec::<std::path::PathBuf>::new()
    );
    let fifo = dir.path().join("in.fifo");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success(), "mkfifo");
    let writer = {
        let fifo = fifo.clone();
        std::thread::Builder::new()
            .name("fifo-writer".into())
            .spawn(move || {
                use std::io::Write;
                let mut pipe = std::fs::OpenOptions::new().write(true).open(fifo).unwrap();
                pipe.write_all(&[1u8; 1000]).unwrap();
            })
            .unwrap()
    };
    let result = encode_raw_file(&fifo, &prefix, &params, None);
    writer.join().unwrap();
    assert!(
        matches!(result, Err(PzfError::SizeMismatch { actual: 1000, .. })),
        "{result:?}"
    );
}

/// The program end to end, reading its frames from a pipe on stdin.
#[test]
fn the_program_encodes_frames_from_stdin() {
    let dir = tempfile::tempdir().unwrap();
    let prefix = dir.path().join("cam").to_str().unwrap().to_owned();
    let raw: Vec<u8> = (0..3 * 48).map(|i| (i * 5 % 241) as u8).collect();
    let mut child = pyme_stream()
        .args([
            "pzf",
            "encode",
            "--dtype",
            "u16",
            "--shape",
            "6x4",
            "/dev/stdin",
        ])
        .arg(&prefix)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(&raw).unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "{output:?}");
    assert_eq!(
        String::from_utf8_lossy(&output.stdout).trim(),
        "wrote 3 PZF files"
    );
    for i in 0..3 {
        let out = dir.path().join("out.raw");
        decode_file(&frame_path(&prefix, i), &out).unwrap();
        assert_eq!(std::fs::read(&out).unwrap(), &raw[i * 48..(i + 1) * 48]);
    }
}
