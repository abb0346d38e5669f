//! Property tests of everything that parses bytes from outside: answers from
//! servers, file names from callers, requests arriving at the data server.
//! The fuzz targets in `fuzz/` run the same functions on the same inputs.

use proptest::prelude::*;
use pyme_streaming::name;
use pyme_streaming::protocol::{self, ReadError, ResponseReader};

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn response_parser_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let _ = protocol::parse_response_head(&bytes);
        let mut reader = ResponseReader::new(&bytes[..]);
        for _ in 0..50 {
            if reader.read_response().is_err() {
                break;
            }
        }
    }

    #[test]
    fn well_formed_answers_are_read_back(
        answers in proptest::collection::vec((200u16..600, proptest::collection::vec(any::<u8>(), 0..100)), 1..20),
        interim in any::<bool>(),
    ) {
        let mut wire = Vec::new();
        for (status, body) in &answers {
            if interim {
                wire.extend_from_slice(b"HTTP/1.1 100 Continue\r\n\r\n");
            }
            wire.extend_from_slice(format!("HTTP/1.1 {status} X\r\nContent-Length: {}\r\n\r\n", body.len()).as_bytes());
            wire.extend_from_slice(body);
        }
        let mut reader = ResponseReader::new(&wire[..]);
        for (status, _) in &answers {
            prop_assert_eq!(reader.read_response().unwrap().status, *status);
        }
        prop_assert!(matches!(reader.read_response(), Err(ReadError::Closed)));
    }

    #[test]
    fn validated_names_never_put_a_control_byte_or_space_on_the_wire(text in "\\PC{0,40}|[ -~\\r\\n\\t]{0,40}") {
        if name::validate(&text).is_ok() {
            let mut head = Vec::new();
            protocol::write_put_head(&mut head, &text, 1, None, false);
            let request_line = head.split(|&b| b == b'\n').next().unwrap();
            let target = &request_line[4..request_line.len() - "HTTP/1.1\r".len() - 1];
            prop_assert!(target.iter().all(|&b| b.is_ascii_graphic()), "{:?}", String::from_utf8_lossy(target));
            let stored = name::storage_name(&text);
            prop_assert!(!stored.split('/').any(|s| s == ".."));
            prop_assert!(!stored.starts_with('/'));
        }
    }

    #[test]
    fn the_server_request_parser_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let _ = pyme_streaming::server::request::parse_request_head(&bytes, 64 * 1024);
    }
}

/// The fuzzers' seed corpora (and any crash inputs saved there) run here too,
/// through the same functions as the fuzz targets.
#[test]
fn the_fuzz_corpora_parse_without_panicking() {
    let corpus = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus");
    let mut inputs = 0;
    let targets = [
        "response_parser",
        "name_validator",
        "request_parser",
        "pzf_decode",
        "huffman_decode",
    ];
    for target in targets {
        for entry in std::fs::read_dir(corpus.join(target)).unwrap() {
            let bytes = std::fs::read(entry.unwrap().path()).unwrap();
            inputs += 1;
            match target {
                "response_parser" => {
                    let _ = protocol::parse_response_head(&bytes);
                    let mut reader = ResponseReader::new(&bytes[..]);
                    while reader.read_response().is_ok() {}
                }
                "name_validator" => {
                    if let Ok(text) = std::str::from_utf8(&bytes) {
                        let _ = name::validate(text);
                    }
                }
                "request_parser" => {
                    let _ = pyme_streaming::server::request::parse_request_head(&bytes, 64 * 1024);
                }
                "pzf_decode" => {
                    let _ = pyme_streaming::pzf::decode(&bytes);
                }
                _ if bytes.len() >= 2 => {
                    let symbols = usize::from(u16::from_le_bytes([bytes[0], bytes[1]]));
                    let _ = pyme_streaming::pzf::huffman::decode(&bytes[2..], symbols);
                }
                _ => {}
            }
        }
    }
    assert!(inputs >= 19, "seed corpora missing: {inputs} inputs");
}
