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
//! Refused with 400: an empty pattern, an absolute one (`/x`, `C:`, `\x`), a `.`
//! or `..` segment, an empty segment (`a//b`), and a segment of more than
//! [`MAX_SEGMENT_CHARS`] characters. Links are followed only where they
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
/// A segment of the pattern has at most this many characters (a name's segment has
/// at most 255 bytes: longer sets are possible, not useful). With it, matching one
/// name costs at most about 255 x 1279 steps, so the clock looked at every
/// `CLOCK_EVERY` entries keeps [`MAX_TIME`].
pub const MAX_SEGMENT_CHARS: usize = 1024;
/// The clock is read once per this many folder entries looked at.
const CLOCK_EVERY: usize = 16;

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
            _ if segment.chars().count() > MAX_SEGMENT_CHARS => {
                return Err(GlobError::Bad(format!(
                    "A segment of the pattern has more than {MAX_SEGMENT_CHARS} characters."
                )))
            }
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
        let pattern = compile(segment);
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
        if self.visited % CLOCK_EVERY == 0 && self.started.elapsed() > self.limits.time {
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

/// One element of a compiled segment.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    /// `*` (a run of them is one).
    Any,
    /// `?`.
    One,
    /// A character matched as itself (an unclosed `[` is one).
    Literal(char),
    /// `[set]` or `[!set]`: inclusive ranges (a single character is a range of one).
    Class {
        negated: bool,
        ranges: Vec<(char, char)>,
    },
}

/// A segment compiled once, before any name is matched: each `[` looks for its `]`
/// once here, not again at every character of every name (a segment of thousands of
/// unclosed `[` looked to its end at each step, and took 40 s on one name).
fn compile(segment: &str) -> Vec<Token> {
    let chars: Vec<char> = segment.chars().collect();
    let mut tokens = Vec::new();
    // Once a `[` is not closed, no later one is (no `]` follows): each is a literal
    // without a look to the end again, so compiling is linear too.
    let mut unclosed = false;
    let mut i = 0;
    while i < chars.len() {
        match chars[i] {
            '*' => {
                if tokens.last() != Some(&Token::Any) {
                    tokens.push(Token::Any);
                }
                i += 1;
            }
            '?' => {
                tokens.push(Token::One);
                i += 1;
            }
            '[' => match (!unclosed).then(|| class(&chars[i..])).flatten() {
                Some((token, len)) => {
                    tokens.push(token);
                    i += len;
                }
                None => {
                    unclosed = true;
                    tokens.push(Token::Literal('['));
                    i += 1;
                }
            },
            c => {
                tokens.push(Token::Literal(c));
                i += 1;
            }
        }
    }
    tokens
}

/// The set at the start of `pattern` (which starts with `[`) and how many characters
/// it takes; `None` when the `[` is not closed.
fn class(pattern: &[char]) -> Option<(Token, usize)> {
    let mut i = 1;
    let negated = matches!(pattern.get(i), Some('!'));
    if negated {
        i += 1;
    }
    let start = i;
    let mut ranges = Vec::new();
    loop {
        let &first = pattern.get(i)?;
        if first == ']' && i > start {
            return Some((Token::Class { negated, ranges }, i + 1));
        }
        if pattern.get(i + 1) == Some(&'-') && pattern.get(i + 2).is_some_and(|&e| e != ']') {
            ranges.push((first, pattern[i + 2]));
            i += 3;
        } else {
            ranges.push((first, first));
            i += 1;
        }
    }
}

/// Whether the token matches the one character `c` (`Any` is handled by the caller).
fn one_matches(token: &Token, c: char) -> bool {
    match token {
        Token::Any => true,
        Token::One => true,
        Token::Literal(l) => *l == c,
        Token::Class { negated, ranges } => {
            ranges.iter().any(|&(low, high)| low <= c && c <= high) != *negated
        }
    }
}

/// Whether `name` matches the compiled segment `pattern` (fnmatch: `*`, `?`, `[set]`,
/// `[!set]`).
fn matches(pattern: &[Token], name: &[char]) -> bool {
    // Iterative, with one backtrack point for the latest `*`: a `*` only moves
    // forward, so the work is at most the name's length times the pattern's.
    let (mut p, mut n) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while n < name.len() {
        match pattern.get(p) {
            Some(Token::Any) => {
                p += 1;
                star = Some((p, n));
                continue;
            }
            Some(token) if one_matches(token, name[n]) => {
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
    pattern[p..].iter().all(|t| *t == Token::Any)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(pattern: &str, name: &str) -> bool {
        matches(&compile(pattern), &name.chars().collect::<Vec<_>>())
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

    /// A long segment of unclosed `[` (each one a literal `[`) against the longest
    /// name of `[` with a mismatch at its end, so that every start of the `*` is
    /// tried: each `[` looked for its `]` to the pattern's end at every step, 41 s
    /// for this one name (debug build) before segments were compiled once.
    #[test]
    fn a_long_unclosed_bracket_pattern_is_cheap() {
        let started = Instant::now();
        let pattern = format!("*{}", "[".repeat(60_000));
        assert!(!m(&pattern, &"[".repeat(255)));
        assert!(!m(&pattern, &format!("{}a", "[".repeat(254))));
        let pattern = format!("*{}", "[".repeat(254));
        assert!(m(&pattern, &"[".repeat(255)));
        assert!(!m(&format!("{pattern}x"), &"[".repeat(255)));
        let pattern = format!("*[{}]", "b".repeat(60_000));
        assert!(!m(&pattern, &"a".repeat(255)));
        // Measured: milliseconds; 41 s before.
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{:?}",
            started.elapsed()
        );
    }

    #[test]
    fn a_segment_longer_than_the_bound_is_refused() {
        let (_dir, store) = tree();
        let long = format!("a/*{}", "[".repeat(MAX_SEGMENT_CHARS));
        match g(&store, &long) {
            Err(GlobError::Bad(reason)) => assert!(reason.contains("more than 1024"), "{reason}"),
            other => panic!("{other:?}"),
        }
        let fits = format!("a/*{}", "?".repeat(MAX_SEGMENT_CHARS - 1));
        assert!(g(&store, &fits).unwrap().is_empty());
    }

    /// fnmatch as Python's `fnmatch.translate` reads a pattern, recursively (small
    /// inputs only): the reference the compiled matcher is held to.
    fn reference(pattern: &[char], name: &[char]) -> bool {
        match pattern.first() {
            None => name.is_empty(),
            Some('*') => (0..=name.len()).any(|skip| reference(&pattern[1..], &name[skip..])),
            Some('?') => !name.is_empty() && reference(&pattern[1..], &name[1..]),
            Some('[') => {
                // The set: `!` negates, a `]` first is itself, `a-b` a range; a `[`
                // without its `]` is itself (looked for again at every `[`).
                let c = name.first().copied();
                let negated = pattern.get(1) == Some(&'!');
                let start = if negated { 2 } else { 1 };
                let mut j = start;
                let mut hit = false;
                loop {
                    match pattern.get(j) {
                        None => return c == Some('[') && reference(&pattern[1..], &name[1..]),
                        Some(']') if j > start => break,
                        Some(&first) => {
                            if pattern.get(j + 1) == Some(&'-')
                                && pattern.get(j + 2).is_some_and(|&e| e != ']')
                            {
                                hit |= c.is_some_and(|c| first <= c && c <= pattern[j + 2]);
                                j += 3;
                            } else {
                                hit |= c == Some(first);
                                j += 1;
                            }
                        }
                    }
                }
                c.is_some() && hit != negated && reference(&pattern[j + 1..], &name[1..])
            }
            Some(&c) => name.first() == Some(&c) && reference(&pattern[1..], &name[1..]),
        }
    }

    proptest::proptest! {
        /// The compiled matcher answers as the reference, also for sets, unclosed
        /// `[` and ranges.
        #[test]
        fn matching_agrees_with_the_reference(pattern in "[ab*?\\[\\]!-]{0,10}", name in "[ab\\[\\]!-]{0,8}") {
            let p: Vec<char> = pattern.chars().collect();
            let n: Vec<char> = name.chars().collect();
            proptest::prop_assert_eq!(m(&pattern, &name), reference(&p, &n), "{:?} {:?}", pattern, name);
        }

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
