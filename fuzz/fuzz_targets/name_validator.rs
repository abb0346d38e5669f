//! Any name a caller may give, and any request target a client may send: a
//! validated name never puts a control byte or space on the wire, names no file
//! outside the root, and the server judges it exactly as the client did.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pyme_streaming::server::storage::{resolve, RequestPath};
use pyme_streaming::{name, protocol};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    // As a request target: never a panic, and a file the server takes is a valid name.
    if let Ok(RequestPath::Plain { relative, folder: false }) = resolve(text) {
        let decoded = name::decode_request_target(text).unwrap();
        assert!(name::validate(&decoded).is_ok(), "{decoded:?}");
        assert!(relative.components().all(|c| matches!(c, std::path::Component::Normal(_))));
    }
    let valid = name::validate(text).is_ok();
    // The client writes targets only for names it accepts; for the others, compare
    // only where the target means the same name (a raw '%' or a non-ASCII query
    // would be read back as another name).
    let mut target = Vec::new();
    name::write_request_target(&mut target, text);
    let target = std::str::from_utf8(&target).unwrap();
    let faithful = name::decode_request_target(target).as_deref() == Ok(text);
    let served_as_file = match resolve(target) {
        Ok(RequestPath::Plain { folder, .. }) => !folder,
        Ok(_) => true,
        Err(_) => false,
    };
    if valid {
        assert!(faithful, "{text:?}");
    }
    if faithful {
        assert_eq!(valid, served_as_file, "{text:?}");
    }
    if valid {
        let mut head = Vec::new();
        protocol::write_put_head(&mut head, text, 0, None, false);
        let line_end = head.iter().position(|&b| b == b'\r').unwrap();
        assert!(head[..line_end].iter().all(|&b| b == b' ' || b.is_ascii_graphic()));
        assert_eq!(head[..line_end].iter().filter(|&&b| b == b' ').count(), 2);
        let stored = name::storage_name(text);
        assert!(!stored.split('/').any(|segment| segment == ".." || segment == "." || segment.is_empty()));
        assert!(!stored.starts_with('/'));
        assert!(!stored.contains([':', '\\']));
    }
});
