//! Any bytes a client may send to the data server: a request head or an
//! error, never a crash; and any path is either refused or stays in the root.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pyme_streaming::server::request::parse_request_head;

fuzz_target!(|data: &[u8]| {
    let _ = parse_request_head(data, 64 * 1024);
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = pyme_streaming::server::storage::resolve(text);
    }
});
