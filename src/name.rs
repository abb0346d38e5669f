//! Which file names may be sent, and how a name is written into a request line.
//!
//! PYME accepts names matching `^[\w/.\-]+$`, optionally followed by `?query`.
//! Names are relative (the client adds the leading `/`) and never contain a `..`
//! segment. Anything else is refused here, before a byte is queued, so that no
//! space, CR, LF or control character can ever reach the wire.

use std::fmt::Write as _;

/// The longest name accepted, in bytes (well inside any server's header limit).
pub const MAX_NAME_BYTES: usize = 4096;

/// Why a name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("the name is empty")]
    Empty,
    #[error("the name is {0} bytes long; at most {MAX_NAME_BYTES} are allowed")]
    TooLong(usize),
    #[error("the name starts with '/': names are relative to the server's root")]
    LeadingSlash,
    #[error("the name has a '..' segment")]
    ParentSegment,
    #[error("character {ch:?} at byte {position} is not allowed (allowed: letters, digits, '_', '/', '.', '-')")]
    BadCharacter { ch: char, position: usize },
    #[error("character {ch:?} at byte {position} is not allowed in the query")]
    BadQueryCharacter { ch: char, position: usize },
}

/// Checks that `name` may be sent.
pub fn validate(name: &str) -> Result<(), NameError> {
    if name.is_empty() {
        return Err(NameError::Empty);
    }
    if name.len() > MAX_NAME_BYTES {
        return Err(NameError::TooLong(name.len()));
    }
    let (path, query) = split_query(name);
    if path.is_empty() {
        return Err(NameError::Empty);
    }
    if path.starts_with('/') {
        return Err(NameError::LeadingSlash);
    }
    for (position, ch) in path.char_indices() {
        if !is_path_char(ch) {
            return Err(NameError::BadCharacter { ch, position });
        }
    }
    if path.split('/').any(|segment| segment == "..") {
        return Err(NameError::ParentSegment);
    }
    if let Some(query) = query {
        let offset = path.len() + 1;
        for (position, ch) in query.char_indices() {
            if !is_query_char(ch) {
                return Err(NameError::BadQueryCharacter {
                    ch,
                    position: offset + position,
                });
            }
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

/// Queries (`x=1&y=2`) are printable ASCII without space or `#`.
fn is_query_char(ch: char) -> bool {
    ch.is_ascii_graphic() && ch != '#'
}

/// [`validate`], as the library's error.
pub(crate) fn check_name(name: &str) -> Result<(), crate::Error> {
    validate(name).map_err(|reason| crate::Error::InvalidName {
        name: name.to_owned(),
        reason,
    })
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
            "folder/",
            "__aggregate_txt/log.txt",
            "__pyramid_update_tile/p?x=1&y=2",
            "données/ß.txt",
        ] {
            assert_eq!(validate(name), Ok(()), "{name}");
        }
    }

    #[test]
    fn refuses_bad_names_naming_the_character() {
        assert_eq!(validate(""), Err(NameError::Empty));
        assert_eq!(validate("/abs"), Err(NameError::LeadingSlash));
        assert_eq!(validate("a/../b"), Err(NameError::ParentSegment));
        assert_eq!(validate(".."), Err(NameError::ParentSegment));
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
        assert_eq!(
            validate("a?x y"),
            Err(NameError::BadQueryCharacter {
                ch: ' ',
                position: 3
            })
        );
        assert!(validate(&"a".repeat(MAX_NAME_BYTES + 1)).is_err());
        let message = validate("a\tb").unwrap_err().to_string();
        assert!(message.contains("'\\t'"), "{message}");
    }

    #[test]
    fn storage_name_drops_the_query() {
        assert_eq!(storage_name("a/b?x=1"), "a/b");
        assert_eq!(storage_name("a/b"), "a/b");
    }

    #[test]
    fn request_target_percent_encodes_non_ascii() {
        let mut out = Vec::new();
        write_request_target(&mut out, "d/é");
        assert_eq!(out, b"/d/%C3%A9");
    }
}
