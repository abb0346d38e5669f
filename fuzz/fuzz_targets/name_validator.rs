//! Any name a caller may give: a validated one never puts a control byte or
//! space on the wire, and the part that names the stored file (before any
//! `?query`, which servers ignore for storage) has no `..` segment.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pyme_streaming::{name, protocol};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if name::validate(text).is_ok() {
        let mut head = Vec::new();
        protocol::write_put_head(&mut head, text, 0, None, false);
        let line_end = head.iter().position(|&b| b == b'\r').unwrap();
        assert!(head[..line_end].iter().all(|&b| b == b' ' || b.is_ascii_graphic()));
        assert_eq!(head[..line_end].iter().filter(|&&b| b == b' ').count(), 2);
        let stored = name::storage_name(text);
        assert!(!stored.split('/').any(|segment| segment == ".."));
        assert!(!stored.starts_with('/'));
    }
});
