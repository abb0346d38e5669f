//! Any bytes a server may send: answers or an error, never a crash or a hang.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pyme_streaming::protocol::{parse_response_head, ResponseReader};

fuzz_target!(|data: &[u8]| {
    let _ = parse_response_head(data);
    let mut reader = ResponseReader::new(data);
    // Every answer consumes input, so this ends; the bound is a second guard.
    for _ in 0..data.len() + 1 {
        if reader.read_response().is_err() {
            break;
        }
    }
});
