//! `GET /__glob?pattern=<glob>`: the paths under the root that match a glob, as a
//! JSON list of paths relative to the root (`["a/x.txt", "a/y.txt"]`), as PYME's
//! `clusterIO.cglob` asks every node for them.
//!
//! The pattern is sent raw in the query (it holds `/` and `*`; a client may
//! percent-encode other bytes, and `+` is a space, as PYME's server reads it). It is
//! matched segment by segment from the root, with the semantics of Python's
//! `glob.glob` that PYME's server uses: `*` any run of characters within a segment,
//! `?` one character, `[abc]`, `[a-z]` and `[!abc]` one of (or none of) a set;
//! `**` is not recursive (it is `*`); a pattern ending in `/` matches folders only,
//! answered with their `/`. Unlike Python's glob, names starting with `.` never
//! match, whatever the pattern (so the server's `.pyme-` files stay hidden); matching
//! is case-sensitive on every system; the answer is sorted.
//!
//! Refused with 400: an empty pattern, an absolute one (`/x`, `C:`, `\x`), and any
//! `.` or `..` segment or empty segment (`a//b`). Links are followed only where they
//! stay inside the root. Bounded: more than [`MAX_MATCHES`] matches, more than
//! [`MAX_VISITED`] folder entries looked at, or more than [`MAX_TIME`] of work is
//! answered 413 with the reason.
//!
//! What this module may not do: read anything but folder listings under the root.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::server::connection::{Connection, Next};
use crate::server::request::Method;
use crate::server::router::Request;
use crate::server::storage::Store;

/// At most this many matches are answered.
pub const MAX_MATCHES: usize = 10_000;
/// At most this many folder entries are looked at for one pattern.
pub const MAX_VISITED: usize = 100_000;
/// At most this long is spent on one pattern.
pub const MAX_TIME: Duration = Duration::from_secs(2);

/// The bounds of one glob (the constants above, smaller in tests).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub matches: usize,
    pub visited: usize,
    pub time: Duration,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            matches: MAX_MATCHES,
            visited: MAX_VISITED,
            time: MAX_TIME,
        }
    }
}

/// Why a glob was not answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum GlobError {
    /// The pattern is refused (400), for this reason.
    Bad(String),
    /// A bound was passed (413), for this reason.
    TooMuch(String),
}

pub(crate) fn get(connection: &mut Connection<'_>, request: &Request<'_>) -> Next {
    let with_body = request.head.method == Method::Get;
    let answer = pattern(request)
        .and_then(|pattern| glob(&connection.shared().store, &pattern, Limits::default()));
    match answer {
        Ok(matches) => {
            let json = serde_json::Value::from(matches).to_string();
            connection.answer(200, "application/json", json.as_bytes(), with_body);
        }
        Err(GlobError::Bad(reason)) => connection.error(400, &reason),
        Err(GlobError::TooMuch(reason)) => connection.error(413, &reason),
    }
    Ok(())
}

/// The pattern of the query (`pattern=<glob>`), decoded.
fn pattern(request: &Request<'_>) -> Result<String, GlobError> {
    let raw = request
        .query_value("pattern")
        .ok_or_else(|| GlobError::Bad("Send the glob as ?pattern=<glob>.".to_owned()))?;
    let mut bytes = Vec::with_capacity(raw.len());
    let mut rest = raw.as_bytes();
    while let Some((&byte, after)) = rest.split_first() {
        match byte {
            b'%' => {
                let hex = after
                    .get(..2)
                    .and_then(|hex| std::str::from_utf8(hex).ok())
                    .and_then(|hex| u8::from_str_radix(hex, 16).ok())
                    .ok_or_else(|| {
                        GlobError::Bad("Bad percent-encoding in the pattern.".to_owned())
                    })?;
                bytes.push(hex);
                rest = &after[2..];
            }
            b'+' => {
                bytes.push(b' ');
                rest = after;
            }
            _ => {
                bytes.push(byte);
                rest = after;
            }
        }
    }
    String::from_utf8(bytes).map_err(|_| GlobError::Bad("The pattern is not UTF-8.".to_owned()))
}

/// The paths under the store's root matching `pattern`, sorted (see the module
/// documentation).
pub(crate) fn glob(store: &Store, pattern: &str, limits: Limits) -> Result<Vec<String>, GlobError> {
    let (pattern, folders_only) = match pattern.strip_suffix('/') {
        Some(pattern) => (pattern, true),
        None => (pattern, false),
    };
    let segments = check(pattern)?;
    let mut walk = Walk {
        store,
        limits,
        started: Instant::now(),
        visited: 0,
        matches: Vec::new(),
    };
    walk.descend(
        store.root().to_owned(),
        String::new(),
        &segments,
        folders_only,
    )?;
    let mut matches = walk.matches;
    matches.sort();
    Ok(matches)
}

/// The pattern's segments, or why it is refused.
fn check(pattern: &str) -> Result<Vec<&str>, GlobError> {
    let bad = |reason: &str| Err(GlobError::Bad(reason.to_owned()));
    if pattern.is_empty() {
        return bad("The pattern is empty.");
    }
    if pattern.starts_with(['/', '\\']) || pattern.contains(':') {
        return bad("The pattern must be relative to the root (no leading '/', no drive).");
    }
    if pattern.contains('\\') {
        return bad("The pattern holds '\\'; folders are separated by '/'.");
    }
    let segments: Vec<&str> = pattern.split('/').collect();
    for segment in &segments {
        match *segment {
            "" => return bad("The pattern has an empty segment ('//')."),
            "." | ".." => return bad("The pattern has a '.' or '..' segment."),
            _ => {}
        }
    }
    Ok(segments)
}

struct Walk<'s> {
    store: &'s Store,
    limits: Limits,
    started: Instant,
    visited: usize,
    matches: Vec<String>,
}

impl Walk<'_> {
    /// Matches `segments` below `folder` (whose path relative to the root is
    /// `prefix`, empty or ending in `/`).
    fn descend(
        &mut self,
        folder: PathBuf,
        prefix: String,
        segments: &[&str],
        folders_only: bool,
    ) -> Result<(), GlobError> {
        let Some((segment, deeper)) = segments.split_first() else {
            return Ok(());
        };
        let last = deeper.is_empty();
        let names = if has_magic(segment) {
            self.matching_names(&folder, segment)?
        } else if segment.starts_with('.') {
            Vec::new()
        } else {
            self.visit()?;
            vec![(*segment).to_owned()]
        };
        for name in names {
            let path = folder.join(&name);
            // Only what exists and stays inside the root (links followed).
            let Ok(real) = path.canonicalize() else {
                continue;
            };
            if !real.starts_with(self.store.root()) {
                continue;
            }
            let is_folder = real.is_dir();
            if last {
                if folders_only && !is_folder {
                    continue;
                }
                if self.matches.len() == self.limits.matches {
                    return Err(GlobError::TooMuch(format!(
                        "More than {} paths match; narrow the pattern.",
                        self.limits.matches
                    )));
                }
                let slash = if folders_only { "/" } else { "" };
                self.matches.push(format!("{prefix}{name}{slash}"));
            } else if is_folder {
                self.descend(real, format!("{prefix}{name}/"), deeper, folders_only)?;
            }
        }
        Ok(())
    }

    /// The names in `folder` that `segment` matches (dot names never do).
    fn matching_names(&mut self, folder: &Path, segment: &str) -> Result<Vec<String>, GlobError> {
        let Ok(entries) = fs::read_dir(folder) else {
            return Ok(Vec::new());
        };
        let pattern: Vec<char> = segment.chars().collect();
        let mut names = Vec::new();
        for entry in entries {
            self.visit()?;
            let Ok(entry) = entry else { continue };
            let Ok(name) = entry.file_name().into_string() else {
                continue;
            };
            if !name.starts_with('.') && matches(&pattern, &name.chars().collect::<Vec<_>>()) {
                names.push(name);
            }
        }
        Ok(names)
    }

    /// Counts one folder entry looked at, and checks the bounds of work.
    fn visit(&mut self) -> Result<(), GlobError> {
        self.visited += 1;
        if self.visited > self.limits.visited {
            return Err(GlobError::TooMuch(format!(
                "The pattern needs more than {} folder entries looked at; narrow it.",
                self.limits.visited
            )));
        }
        if self.visited % 256 == 0 && self.started.elapsed() > self.limits.time {
            return Err(GlobError::TooMuch(format!(
                "The pattern took more than {} s; narrow it.",
                self.limits.time.as_secs_f64()
            )));
        }
        Ok(())
    }
}

/// Whether a segment has any of the glob's special characters.
fn has_magic(segment: &str) -> bool {
    segment.contains(['*', '?', '['])
}

/// Whether `name` matches the segment `pattern` (fnmatch: `*`, `?`, `[set]`, `[!set]`).
fn matches(pattern: &[char], name: &[char]) -> bool {
    // Iterative, with one backtrack point for the latest `*`: linear in practice and
    // never exponential (a `*` only moves forward).
    let (mut p, mut n) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while n < name.len() {
        match pattern.get(p) {
            Some('*') => {
                while pattern.get(p) == Some(&'*') {
                    p += 1;
                }
                star = Some((p, n));
                continue;
            }
            Some('?') => {
                p += 1;
                n += 1;
                continue;
            }
            Some('[') => {
                if let Some((hit, len)) = class(&pattern[p..], name[n]) {
                    if hit {
                        p += len;
                        n += 1;
                        continue;
                    }
                } else if name[n] == '[' {
                    // An unclosed `[` is itself.
                    p += 1;
                    n += 1;
                    continue;
                }
            }
            Some(&c) if c == name[n] => {
                p += 1;
                n += 1;
                continue;
            }
            _ => {}
        }
        match star {
            Some((star_p, star_n)) => {
                star = Some((star_p, star_n + 1));
                p = star_p;
                n = star_n + 1;
            }
            None => return false,
        }
    }
    pattern[p..].iter().all(|&c| c == '*')
}

/// The set at the start of `pattern` (which starts with `[`): whether `c` is in it,
/// and how many characters the set takes; `None` when the `[` is not closed.
fn class(pattern: &[char], c: char) -> Option<(bool, usize)> {
    let mut i = 1;
    let negated = matches!(pattern.get(i), Some('!'));
    if negated {
        i += 1;
    }
    let start = i;
    let mut hit = false;
    loop {
        let &first = pattern.get(i)?;
        if first == ']' && i > start {
            return Some((hit != negated, i + 1));
        }
        if pattern.get(i + 1) == Some(&'-') && pattern.get(i + 2).is_some_and(|&e| e != ']') {
            let last = pattern[i + 2];
            hit |= first <= c && c <= last;
            i += 3;
        } else {
            hit |= first == c;
            i += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(pattern: &str, name: &str) -> bool {
        matches(
            &pattern.chars().collect::<Vec<_>>(),
            &name.chars().collect::<Vec<_>>(),
        )
    }

    #[test]
    fn fnmatch_as_python() {
        assert!(m("*.txt", "a.txt"));
        assert!(m("*.txt", ".txt"));
        assert!(!m("*.txt", "a.txt.gz"));
        assert!(m("a?c", "abc"));
        assert!(!m("a?c", "ac"));
        assert!(m("**", "anything"));
        assert!(m("[ab]x", "bx"));
        assert!(!m("[!ab]x", "bx"));
        assert!(m("[!ab]x", "cx"));
        assert!(m("[a-c]", "b"));
        assert!(!m("[a-c]", "d"));
        assert!(m("[]]", "]"));
        assert!(m("[a-]", "-"));
        assert!(m("[x", "[x"));
        assert!(m("frame*.pzf", "frame00001.pzf"));
        assert!(m("*a*b*c", "xxaybzc"));
        assert!(!m("*a*b*c", "xxaybz"));
        // No exponential blow-up.
        let long = "a".repeat(200);
        assert!(!m("*a*a*a*a*a*a*a*a*a*a*b", &long));
    }

    proptest::proptest! {
        /// Any pattern against any name ends, without a panic, and a pattern without
        /// special characters matches exactly itself.
        #[test]
        fn matching_never_panics(pattern in "[a*?\\[\\]!-]{0,12}", name in "[a\\[\\]!-]{0,12}") {
            let _ = m(&pattern, &name);
            if !has_magic(&name) {
                proptest::prop_assert!(m(&name, &name));
            }
        }

        #[test]
        fn pattern_checking_never_panics(raw in "[a-z%+/*0-9A-F]{0,16}") {
            let _ = check(&raw);
        }
    }

    fn tree() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        for path in [
            "a/x.txt",
            "a/y.txt",
            "a/z.dat",
            "a/.hidden.txt",
            "b/c/x.txt",
            "t.txt",
        ] {
            let full = dir.path().join(path);
            fs::create_dir_all(full.parent().unwrap()).unwrap();
            fs::write(full, b"").unwrap();
        }
        fs::create_dir_all(dir.path().join(".pyme-spill")).unwrap();
        let store = Store::open(dir.path()).unwrap();
        (dir, store)
    }

    fn g(store: &Store, pattern: &str) -> Result<Vec<String>, GlobError> {
        glob(store, pattern, Limits::default())
    }

    #[test]
    fn globs_as_pymes_server_does() {
        let (_dir, store) = tree();
        assert_eq!(g(&store, "a/*.txt").unwrap(), ["a/x.txt", "a/y.txt"]);
        assert_eq!(g(&store, "*/*.txt").unwrap(), ["a/x.txt", "a/y.txt"]);
        assert_eq!(
            g(&store, "**/*.txt").unwrap(),
            ["a/x.txt", "a/y.txt"],
            "not recursive"
        );
        assert_eq!(g(&store, "*").unwrap(), ["a", "b", "t.txt"]);
        assert_eq!(g(&store, "*/").unwrap(), ["a/", "b/"]);
        assert_eq!(g(&store, "b/c/x.txt").unwrap(), ["b/c/x.txt"]);
        assert_eq!(g(&store, "b/?/x.txt").unwrap(), ["b/c/x.txt"]);
        assert!(g(&store, "a/nothing").unwrap().is_empty());
        assert!(
            g(&store, "a/.hidden.txt").unwrap().is_empty(),
            "dot names never match"
        );
        assert!(g(&store, "a/.*").unwrap().is_empty());
        assert!(g(&store, ".pyme-*").unwrap().is_empty());
        assert!(g(&store, "t.txt/*").unwrap().is_empty());
    }

    #[test]
    fn refuses_escapes() {
        let (_dir, store) = tree();
        for bad in [
            "",
            "/etc/*",
            "../*",
            "a/../../*",
            "a/./x",
            "a//x",
            "C:/x",
            "\\x",
            "a\\..\\x",
            "/",
        ] {
            assert!(matches!(g(&store, bad), Err(GlobError::Bad(_))), "{bad:?}");
        }
    }

    #[cfg(unix)]
    #[test]
    fn links_out_of_the_root_are_not_followed() {
        let (dir, store) = tree();
        let outside = tempfile::tempdir().unwrap();
        fs::write(outside.path().join("secret.txt"), b"").unwrap();
        std::os::unix::fs::symlink(outside.path(), dir.path().join("out")).unwrap();
        std::os::unix::fs::symlink(dir.path().join("a"), dir.path().join("in")).unwrap();
        assert!(g(&store, "out/*").unwrap().is_empty());
        assert!(!g(&store, "*").unwrap().contains(&"out".to_owned()));
        assert_eq!(g(&store, "in/x.txt").unwrap(), ["in/x.txt"]);
    }

    #[test]
    fn bounds_are_413_with_the_reason() {
        let (_dir, store) = tree();
        let few = Limits {
            matches: 2,
            visited: MAX_VISITED,
            time: MAX_TIME,
        };
        assert_eq!(glob(&store, "a/*.txt", few).unwrap().len(), 2);
        match glob(&store, "*", few) {
            Err(GlobError::TooMuch(reason)) => assert!(reason.contains("More than 2"), "{reason}"),
            other => panic!("{other:?}"),
        }
        let little = Limits {
            matches: MAX_MATCHES,
            visited: 5,
            time: MAX_TIME,
        };
        match glob(&store, "*/*", little) {
            Err(GlobError::TooMuch(reason)) => assert!(reason.contains("more than 5"), "{reason}"),
            other => panic!("{other:?}"),
        }
        let no_time = Limits {
            matches: MAX_MATCHES,
            visited: MAX_VISITED,
            time: Duration::ZERO,
        };
        for i in 0..300 {
            fs::write(store.root().join(format!("f{i}")), b"").unwrap();
        }
        match glob(&store, "*", no_time) {
            Err(GlobError::TooMuch(reason)) => assert!(reason.contains("took more"), "{reason}"),
            other => panic!("{other:?}"),
        }
    }
}
