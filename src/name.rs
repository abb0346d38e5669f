//! The one file-name rule, shared by the client (`put` refuses what breaks it, before a
//! byte is queued) and the data server (a request whose target breaks it is answered
//! 400): a name the client accepts is one our server stores, and no other.
//!
//! A name is `<path>` or `<path>?<query>`. The rule, checked in this order:
//!
//! - The whole name is 1 to [`MAX_NAME_BYTES`] bytes (UTF-8; percent-encoding on the
//!   wire does not count). Each path segment is at most [`MAX_SEGMENT_BYTES`] bytes.
//! - The path is made of PYME's characters, `^[\w/.\-]+$` (Unicode letters and digits,
//!   `_`, `/`, `.`, `-`): no space, no control character, no `:`, no `\`, no `%`.
//! - The path is relative and made of segments: no leading `/`, no trailing `/` (a
//!   file name, not a folder), no empty segment (`a//b`), no `.` or `..` segment.
//! - Segments are portable to Windows (a cluster may hold a Windows server, and spill
//!   folders may be on Windows): no segment ends with `.` (nor with a space, which the
//!   character set already refuses), and no segment's stem (the part before its first
//!   `.`) is a reserved device name: `CON`, `PRN`, `AUX`, `NUL`, `COM0`-`COM9`,
//!   `LPT0`-`LPT9`, also with a superscript digit (`COM¹`), in any case. Drive letters
//!   (`C:`) and backslashes are refused by the character set.
//! - No segment starts with [`RESERVED_PREFIX`] (in any case: file systems that ignore
//!   case would open the server's own files), the data server's temporary files.
//! - A first segment starting with `__` is reserved for the data server's operations
//!   (`__status`, `__glob`, `__metrics`, `__aggregate_*`, `__pyramid_*`): no stored
//!   file has one ([`validate_stored`]). A name for `put` may start with one of the
//!   operation prefixes a client sends on purpose ([`OPERATION_PREFIXES`]:
//!   `__aggregate_txt/`, `__aggregate_h5r/`, `__aggregate_h5/`, `__pyramid_<any>/`)
//!   followed by the name it acts on, which is itself a stored name: `put` refuses
//!   every other `__` name ([`validate`]).
//! - The query, if there is a `?`, is not empty and is made of ASCII letters and
//!   digits, `_ . - = & ,` and `%` followed by two hexadecimal digits: no `/`, no
//!   second `?`, no `#`, no space or control character.
//!
//! The server strips the leading `/` of a request target and percent-decodes the path
//! ([`decode_request_target`]); its router (`server/router.rs`) sends a name with an
//! `__` first segment to that operation, which parses its own query and judges the
//! name it acts on with [`validate_stored`], and every other name to the files, which
//! judge it with the same [`validate_stored`]. So what `put` accepts, the server
//! stores (or hands to the operation), and what `put` refuses is never stored. The
//! files also serve folder targets (`GET /a/b/`, the root `GET /` or PYME's `GET //`,
//! and PYME's "make this folder" `PUT /a/b/`): those strip the trailing `/` and judge
//! the rest. Operations that no client `put`s (`GET /__glob?pattern=a/*.txt`,
//! `PUT /a?MirrorSource=http://...`) have queries outside this rule, parsed by them.
//!
//! What this module may not do: touch sockets or files. It only judges and encodes names.

use std::fmt::Write as _;

/// The longest name accepted, in bytes, query included. With a root of at most
/// [`MAX_ROOT_BYTES`], the full path stays well inside Linux's `PATH_MAX` (4096), and
/// the percent-encoded request line (at most three bytes per byte) inside the
/// smallest request head the server can be configured with.
pub const MAX_NAME_BYTES: usize = 1024;

/// The longest path segment, in bytes: `NAME_MAX` of Linux file systems.
pub const MAX_SEGMENT_BYTES: usize = 255;

/// The longest storage root a data server starts with (see [`MAX_NAME_BYTES`]).
pub const MAX_ROOT_BYTES: usize = 2048;

/// The temporary files of the data server (`.pyme-part-`) and of the client's spill
/// folder (`.pyme-spill-`) start with this; no name's segment may, so that no stored
/// or spilled file is ever taken for a temporary one (hidden, or deleted as a crash's
/// leftover).
pub const RESERVED_PREFIX: &str = ".pyme-";

/// The first segments a client's `put` may send on purpose: the data server appends
/// or aggregates instead of storing a file. A name starting with one of these
/// followed by `/` and a stored name is accepted by [`validate`]; `__pyramid_` takes
/// any ending (`__pyramid_create`, `__pyramid_update_tile`, ...).
pub const OPERATION_PREFIXES: [&str; 4] = [
    "__aggregate_txt",
    "__aggregate_h5r",
    "__aggregate_h5",
    "__pyramid_",
];

/// Whether a first segment is one `put` may send (see [`OPERATION_PREFIXES`]).
pub fn is_put_operation(first: &str) -> bool {
    OPERATION_PREFIXES[..3].contains(&first)
        || first
            .strip_prefix(OPERATION_PREFIXES[3])
            .is_some_and(|rest| !rest.is_empty())
}

/// Why a name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("the name is empty")]
    Empty,
    #[error("the name is {0} bytes long; at most {MAX_NAME_BYTES} are allowed")]
    TooLong(usize),
    #[error("the segment at byte {position} is {len} bytes long; at most {MAX_SEGMENT_BYTES} are allowed")]
    SegmentTooLong { position: usize, len: usize },
    #[error("the name starts with '/': names are relative to the server's root")]
    LeadingSlash,
    #[error("the name ends with '/': a file name cannot name a folder")]
    TrailingSlash,
    #[error("the name has an empty segment ('//') at byte {0}")]
    EmptySegment(usize),
    #[error("the name has a '.' or '..' segment at byte {0}")]
    DotSegment(usize),
    #[error("character {ch:?} at byte {position} is not allowed (allowed: letters, digits, '_', '/', '.', '-')")]
    BadCharacter { ch: char, position: usize },
    #[error("the segment {0:?} ends with '.', which Windows drops")]
    TrailingDot(String),
    #[error("the segment {0:?} is a Windows device name (CON, PRN, AUX, NUL, COM0-9, LPT0-9)")]
    ReservedDeviceName(String),
    #[error("the segment {0:?} starts with {RESERVED_PREFIX:?}, which the server keeps for its temporary files")]
    ReservedPrefix(String),
    #[error("the first segment {0:?} starts with '__', which names an operation of the data server (only __aggregate_txt/, __aggregate_h5r/, __aggregate_h5/ and __pyramid_*/ may be put, followed by a name)")]
    ReservedOperation(String),
    #[error("the query after '?' is empty")]
    EmptyQuery,
    #[error("character {ch:?} at byte {position} is not allowed in the query (allowed: ASCII letters, digits, '_', '.', '-', '=', '&', ',', and '%' with two hex digits)")]
    BadQueryCharacter { ch: char, position: usize },
    #[error("the request target does not start with '/'")]
    TargetNotAbsolute,
    #[error("bad percent-encoding in the request target")]
    BadEscape,
    #[error("the request target is not UTF-8 once decoded")]
    NotUtf8,
}

/// Checks that `name` is a name `put` may send (see the module documentation): a
/// stored name ([`validate_stored`]), or an operation prefix, `/` and a stored name.
pub fn validate(name: &str) -> Result<(), NameError> {
    if let Some((first, operand)) = name.split_once('/') {
        if is_put_operation(first) {
            if name.len() > MAX_NAME_BYTES {
                return Err(NameError::TooLong(name.len()));
            }
            return validate_stored(operand).map_err(|e| shift(e, first.len() + 1));
        }
    }
    validate_stored(name)
}

/// Checks that `name` is a valid name of a stored file (see the module
/// documentation): the rule, with no `__` first segment.
pub fn validate_stored(name: &str) -> Result<(), NameError> {
    validate_name(name)?;
    let first = name.split(['/', '?']).next().unwrap_or_default();
    if first.starts_with("__") {
        return Err(NameError::ReservedOperation(first.to_owned()));
    }
    Ok(())
}

/// An error found in the part of a name that starts at byte `offset`, with positions
/// in the whole name.
fn shift(error: NameError, offset: usize) -> NameError {
    match error {
        NameError::SegmentTooLong { position, len } => NameError::SegmentTooLong {
            position: position + offset,
            len,
        },
        NameError::EmptySegment(position) => NameError::EmptySegment(position + offset),
        NameError::DotSegment(position) => NameError::DotSegment(position + offset),
        NameError::BadCharacter { ch, position } => NameError::BadCharacter {
            ch,
            position: position + offset,
        },
        NameError::BadQueryCharacter { ch, position } => NameError::BadQueryCharacter {
            ch,
            position: position + offset,
        },
        // The operand is the name's end: a '/' before it is an empty segment.
        NameError::LeadingSlash => NameError::EmptySegment(offset),
        other => other,
    }
}

fn validate_name(name: &str) -> Result<(), NameError> {
    if name.is_empty() {
        return Err(NameError::Empty);
    }
    if name.len() > MAX_NAME_BYTES {
        return Err(NameError::TooLong(name.len()));
    }
    let (path, query) = split_query(name);
    validate_path(path)?;
    if let Some(query) = query {
        validate_query(query, path.len() + 1)?;
    }
    Ok(())
}

/// The client's check before a name is queued: [`validate`], as the crate's error.
pub(crate) fn check_name(name: &str) -> Result<(), crate::Error> {
    validate(name).map_err(|reason| crate::Error::InvalidName {
        name: name.to_owned(),
        reason,
    })
}

fn validate_path(path: &str) -> Result<(), NameError> {
    if path.is_empty() {
        return Err(NameError::Empty);
    }
    if path.starts_with('/') {
        return Err(NameError::LeadingSlash);
    }
    if path.ends_with('/') {
        return Err(NameError::TrailingSlash);
    }
    for (position, ch) in path.char_indices() {
        if !is_path_char(ch) {
            return Err(NameError::BadCharacter { ch, position });
        }
    }
    let mut position = 0;
    for segment in path.split('/') {
        validate_segment(segment, position)?;
        position += segment.len() + 1;
    }
    Ok(())
}

/// One segment of a path already known to hold only path characters.
fn validate_segment(segment: &str, position: usize) -> Result<(), NameError> {
    if segment.is_empty() {
        return Err(NameError::EmptySegment(position));
    }
    if segment == "." || segment == ".." {
        return Err(NameError::DotSegment(position));
    }
    if segment.len() > MAX_SEGMENT_BYTES {
        return Err(NameError::SegmentTooLong {
            position,
            len: segment.len(),
        });
    }
    if segment.ends_with('.') {
        return Err(NameError::TrailingDot(segment.to_owned()));
    }
    if is_reserved_device_name(segment) {
        return Err(NameError::ReservedDeviceName(segment.to_owned()));
    }
    if has_reserved_prefix(segment) {
        return Err(NameError::ReservedPrefix(segment.to_owned()));
    }
    Ok(())
}

/// Whether a segment starts with [`RESERVED_PREFIX`] in any case: on a file system
/// that ignores case (Windows, macOS) `.PYME-LEN-log.txt` opens the server's journal of
/// `log.txt`, and a client that stored it there would set where a restart cuts the log.
fn has_reserved_prefix(segment: &str) -> bool {
    segment
        .as_bytes()
        .get(..RESERVED_PREFIX.len())
        .is_some_and(|start| start.eq_ignore_ascii_case(RESERVED_PREFIX.as_bytes()))
}

/// Windows opens a device, not a file, for these stems, whatever the extension.
/// ASCII case-insensitive, without allocating: this runs for every segment of every
/// name put.
fn is_reserved_device_name(segment: &str) -> bool {
    let stem = segment.split('.').next().unwrap_or(segment).as_bytes();
    if stem.len() < 3 {
        return false;
    }
    let (word, number) = stem.split_at(3);
    let is = |reserved: &[u8]| word.eq_ignore_ascii_case(reserved);
    if number.is_empty() {
        return is(b"CON") || is(b"PRN") || is(b"AUX") || is(b"NUL");
    }
    (is(b"COM") || is(b"LPT"))
        && (matches!(number, [b'0'..=b'9'])
            || matches!(std::str::from_utf8(number), Ok("¹" | "²" | "³")))
}

fn validate_query(query: &str, offset: usize) -> Result<(), NameError> {
    if query.is_empty() {
        return Err(NameError::EmptyQuery);
    }
    let bytes = query.as_bytes();
    for (position, ch) in query.char_indices() {
        let allowed = match ch {
            '%' => bytes
                .get(position + 1..position + 3)
                .is_some_and(|hex| hex.iter().all(u8::is_ascii_hexdigit)),
            _ => is_query_char(ch),
        };
        if !allowed {
            return Err(NameError::BadQueryCharacter {
                ch,
                position: offset + position,
            });
        }
    }
    Ok(())
}

/// The part of a name that names the stored file: the query is dropped, as the
/// reference does when it records where a file went.
pub fn storage_name(name: &str) -> &str {
    split_query(name).0
}

/// Appends `/<name>` to a request line, percent-encoding non-ASCII letters as
/// UTF-8 (servers percent-decode the path). `name` must have passed [`validate`].
pub fn write_request_target(out: &mut Vec<u8>, name: &str) {
    out.push(b'/');
    if name.is_ascii() {
        out.extend_from_slice(name.as_bytes());
        return;
    }
    let mut encoded = String::with_capacity(name.len() * 3);
    for byte in name.bytes() {
        if byte.is_ascii() {
            encoded.push(byte as char);
        } else {
            let _ = write!(encoded, "%{byte:02X}");
        }
    }
    out.extend_from_slice(encoded.as_bytes());
}

/// The inverse of [`write_request_target`], for the server: strips the leading `/`,
/// percent-decodes the path and keeps the query as sent. The result is not validated
/// yet: the caller passes it (or, for a folder, what precedes its trailing `/`) to
/// [`validate`].
pub fn decode_request_target(target: &str) -> Result<String, NameError> {
    let Some(rest) = target.strip_prefix('/') else {
        return Err(NameError::TargetNotAbsolute);
    };
    let (path, query) = split_query(rest);
    let decoded = percent_decode(path.as_bytes())?;
    let mut name = String::from_utf8(decoded).map_err(|_| NameError::NotUtf8)?;
    if let Some(query) = query {
        name.push('?');
        name.push_str(query);
    }
    Ok(name)
}

fn percent_decode(bytes: &[u8]) -> Result<Vec<u8>, NameError> {
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3).ok_or(NameError::BadEscape)?;
            let digit = |b: u8| (b as char).to_digit(16).ok_or(NameError::BadEscape);
            out.push((digit(hex[0])? * 16 + digit(hex[1])?) as u8);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    Ok(out)
}

fn split_query(name: &str) -> (&str, Option<&str>) {
    match name.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (name, None),
    }
}

/// Python's `\w` on text is any alphanumeric character or `_`.
fn is_path_char(ch: char) -> bool {
    ch.is_alphanumeric() || matches!(ch, '_' | '/' | '.' | '-')
}

/// What PYME's queries (`x=1&y=2`) use; `%` is checked with its digits.
fn is_query_char(ch: char) -> bool {
    ch.is_ascii_alphanumeric() || matches!(ch, '_' | '.' | '-' | '=' | '&' | ',')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_pyme_names() {
        for name in [
            "series/frame00001.pzf",
            "a",
            "2026_11_27/cell-1/metadata.json",
            "__aggregate_txt/log.txt",
            "__pyramid_update_tile/p?x=1&y=2",
            "p?a=1,2&b=x.y-z_w",
            "p?n=%2F%aa",
            "données/ß.txt",
            ".hidden",
            "a.b.c",
            "CONSOLE/COM10/LPTX/NULL.txt/xAUX",
            "con_1",
            ".pyme",
            "a.pyme-x",
            "pyme-/x",
        ] {
            assert_eq!(validate(name), Ok(()), "{name}");
        }
        let longest_segment = "s".repeat(MAX_SEGMENT_BYTES);
        assert_eq!(validate(&longest_segment), Ok(()));
        let longest = vec!["t".repeat(204); 5].join("/");
        assert_eq!(longest.len(), MAX_NAME_BYTES);
        assert_eq!(validate(&longest), Ok(()));
    }

    #[test]
    fn refuses_empty_absolute_folder_and_dot_names() {
        assert_eq!(validate(""), Err(NameError::Empty));
        assert_eq!(validate("?x=1"), Err(NameError::Empty));
        assert_eq!(validate("/abs"), Err(NameError::LeadingSlash));
        assert_eq!(validate("folder/"), Err(NameError::TrailingSlash));
        assert_eq!(validate("a/b/?x=1"), Err(NameError::TrailingSlash));
        assert_eq!(validate("/"), Err(NameError::LeadingSlash));
        assert_eq!(validate("a//b"), Err(NameError::EmptySegment(2)));
        assert_eq!(validate("a/../b"), Err(NameError::DotSegment(2)));
        assert_eq!(validate(".."), Err(NameError::DotSegment(0)));
        assert_eq!(validate("."), Err(NameError::DotSegment(0)));
        assert_eq!(validate("c/./x"), Err(NameError::DotSegment(2)));
        assert_eq!(validate("a/.."), Err(NameError::DotSegment(2)));
        assert_eq!(validate("./x"), Err(NameError::DotSegment(0)));
    }

    #[test]
    fn refuses_over_long_names_and_segments() {
        assert_eq!(
            validate(&"a".repeat(MAX_NAME_BYTES + 1)),
            Err(NameError::TooLong(MAX_NAME_BYTES + 1))
        );
        assert_eq!(validate(&"a".repeat(4096)), Err(NameError::TooLong(4096)));
        let long_segment = format!("x/{}", "b".repeat(MAX_SEGMENT_BYTES + 1));
        assert_eq!(
            validate(&long_segment),
            Err(NameError::SegmentTooLong {
                position: 2,
                len: MAX_SEGMENT_BYTES + 1
            })
        );
        // Bytes, not characters: 128 two-byte letters are 256 bytes.
        assert!(validate(&"é".repeat(128)).is_err());
        assert_eq!(validate(&"é".repeat(127)), Ok(()));
    }

    #[test]
    fn refuses_bad_characters_naming_them() {
        assert_eq!(
            validate("a b"),
            Err(NameError::BadCharacter {
                ch: ' ',
                position: 1
            })
        );
        assert_eq!(
            validate("ab\r\nX: y"),
            Err(NameError::BadCharacter {
                ch: '\r',
                position: 2
            })
        );
        for bad in [
            "a%41", "a#b", "a\0b", "a*b", "a\"b", "a<b", "a|b", "a+b", "~a",
        ] {
            assert!(
                matches!(validate(bad), Err(NameError::BadCharacter { .. })),
                "{bad}"
            );
        }
        let message = validate("a\tb").unwrap_err().to_string();
        assert!(message.contains("'\\t'"), "{message}");
    }

    #[test]
    fn refuses_windows_hostile_names() {
        for (bad, ch) in [
            ("C:/x", ':'),
            ("c:", ':'),
            ("a/b:c", ':'),
            ("a\\b", '\\'),
            ("..\\x", '\\'),
        ] {
            assert!(
                matches!(validate(bad), Err(NameError::BadCharacter { ch: c, .. }) if c == ch),
                "{bad}: {:?}",
                validate(bad)
            );
        }
        for device in [
            "CON",
            "con",
            "Prn",
            "aux",
            "NUL",
            "COM1",
            "com9",
            "COM0",
            "LPT1",
            "lpt9",
            "COM¹",
            "LPT³",
            "nul.txt",
            "CON.tar.gz",
            "a/AUX.json",
            "aux/x",
        ] {
            assert!(
                matches!(validate(device), Err(NameError::ReservedDeviceName(_))),
                "{device}: {:?}",
                validate(device)
            );
        }
        for trailing in ["a.", "a/b./c", "x/y.."] {
            assert!(
                matches!(validate(trailing), Err(NameError::TrailingDot(_))),
                "{trailing}"
            );
        }
        // In any case (hostile round 3: on Windows or macOS `.PYME-LEN-log.txt` is the
        // server's journal of `log.txt`).
        for reserved in [
            "a/.pyme-part-12-3",
            ".pyme-spill-1-2",
            ".pyme-x/y",
            ".PYME-LEN-log.txt",
            "a/.Pyme-part-1",
            ".pYmE-lock",
        ] {
            assert!(
                matches!(validate(reserved), Err(NameError::ReservedPrefix(_))),
                "{reserved}"
            );
        }
    }

    #[test]
    fn the_query_has_a_strict_character_set() {
        let query_error = |name: &str| match validate(name) {
            Err(NameError::BadQueryCharacter { ch, position }) => Some((ch, position)),
            _ => None,
        };
        assert_eq!(query_error("a?x y"), Some((' ', 3)));
        assert_eq!(query_error("a?/../../x"), Some(('/', 2)));
        assert_eq!(
            query_error("a?.."),
            None,
            "dots alone are harmless in a query"
        );
        assert_eq!(query_error("a?x=1?y"), Some(('?', 5)));
        assert_eq!(query_error("a?x#y"), Some(('#', 3)));
        assert_eq!(query_error("a?x\ny"), Some(('\n', 3)));
        assert_eq!(query_error("a?%zz"), Some(('%', 2)));
        assert_eq!(query_error("a?%4"), Some(('%', 2)));
        assert_eq!(query_error("a?é"), Some(('é', 2)));
        assert_eq!(query_error("a?x\\y"), Some(('\\', 3)));
        assert_eq!(query_error("a?x:y"), Some((':', 3)));
        assert_eq!(validate("a?"), Err(NameError::EmptyQuery));
    }

    #[test]
    fn a_first_segment_starting_with_two_underscores_names_an_operation() {
        for ok in [
            "__aggregate_txt/log.txt",
            "__aggregate_txt/a/b.txt?x=1",
            "__aggregate_h5r/a.h5r/FitResults",
            "__aggregate_h5/s.h5/frame00001.pzf",
            "__pyramid_create/p",
            "__pyramid_update_tile/p?x=1&y=2",
            "__pyramid_finish/dir/p",
            "a/__b",
            "_a/b",
        ] {
            assert_eq!(validate(ok), Ok(()), "{ok}");
        }
        for reserved in [
            "__status",
            "__glob",
            "__metrics",
            "__x/y",
            "__aggregate_txt",
            "__aggregate_txt?x=1",
            "__pyramid_/p",
            "__pyramid_create",
            "__aggregate_h5x/a",
            "__aggregate_txt/__status",
            "__aggregate_txt/__aggregate_txt/x",
        ] {
            assert!(
                matches!(validate(reserved), Err(NameError::ReservedOperation(_))),
                "{reserved}: {:?}",
                validate(reserved)
            );
        }
        // The operand is judged as a stored name, positions counted in the whole name.
        assert_eq!(validate("__aggregate_txt/"), Err(NameError::Empty));
        assert_eq!(
            validate("__aggregate_txt//x"),
            Err(NameError::EmptySegment(16))
        );
        assert_eq!(
            validate("__aggregate_txt/a/../b"),
            Err(NameError::DotSegment(18))
        );
        // Stored names never start with `__`.
        assert!(validate_stored("__aggregate_txt/log.txt").is_err());
        assert_eq!(validate_stored("log.txt"), Ok(()));
    }

    #[test]
    fn check_name_is_the_crates_error() {
        match check_name("a//b") {
            Err(crate::Error::InvalidName { name, reason }) => {
                assert_eq!(name, "a//b");
                assert_eq!(reason, NameError::EmptySegment(2));
            }
            other => panic!("{other:?}"),
        }
        assert!(check_name("a/b").is_ok());
    }

    #[test]
    fn storage_name_drops_the_query() {
        assert_eq!(storage_name("a/b?x=1"), "a/b");
        assert_eq!(storage_name("a/b"), "a/b");
    }

    #[test]
    fn request_target_percent_encodes_non_ascii_and_decodes_back() {
        let mut out = Vec::new();
        write_request_target(&mut out, "d/é?x=1");
        assert_eq!(out, b"/d/%C3%A9?x=1");
        let target = std::str::from_utf8(&out).unwrap();
        assert_eq!(decode_request_target(target).unwrap(), "d/é?x=1");
        assert_eq!(decode_request_target("/a%2Fb").unwrap(), "a/b");
        assert_eq!(decode_request_target("/"), Ok(String::new()));
        assert_eq!(
            decode_request_target("x"),
            Err(NameError::TargetNotAbsolute)
        );
        assert_eq!(decode_request_target("/%zz"), Err(NameError::BadEscape));
        assert_eq!(decode_request_target("/%4"), Err(NameError::BadEscape));
        assert_eq!(decode_request_target("/%ff"), Err(NameError::NotUtf8));
        // The query is kept as sent, not decoded.
        assert_eq!(decode_request_target("/a?x=%2F").unwrap(), "a?x=%2F");
    }

    proptest::proptest! {
        /// Whatever the client accepts survives the trip through a request target and
        /// the server's decoding unchanged, so the server judges the same name.
        #[test]
        fn a_valid_name_round_trips_through_the_request_target(
            name in "[a-zA-Z0-9_./\\-éß¹:%?=&, ]{1,40}"
        ) {
            if validate(&name).is_ok() {
                let mut out = Vec::new();
                write_request_target(&mut out, &name);
                let target = String::from_utf8(out).unwrap();
                proptest::prop_assert_eq!(decode_request_target(&target), Ok(name.clone()));
            }
        }
    }
}
