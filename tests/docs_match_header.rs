//! The docs are part of the ABI: README.md and docs/*.md are held to the header
//! `include/pyme_streaming.h` (read by `tests/common/c_header.rs`, never from a list
//! written here), so that a LabVIEW VI or a C program set up from the docs calls
//! what the library exports.
//!
//! - Calls and prototypes in C code (fenced blocks other than Rust and Python,
//!   and inline code, except docs/PYTHON.md's, which is Python): every function of the header written with `(` has the
//!   header's number of parameters (and a prototype the header's types); a name
//!   that looks like an API function (`streamer_*`, `stream_*`, `pyme_*`) but is
//!   not one fails. `(...)` and arguments with `...` are exempt; a name after
//!   `::` or `.` is a Rust path or a method, not a C call; CMake functions that
//!   `cmake/` defines are not C.
//! - Struct layouts: a table whose header row begins `| Field | C type | Offset |`
//!   must follow `<!-- layout: StructName -->`, list every field of that struct in
//!   order with the header's C type and the offset the system C compiler gives
//!   it, and end with a `sizeof` row.
//! - Counts in prose (`N U64`, `N fields`, `N functions`, `stats_size` = N) are the
//!   header's.
//! - docs/C_API.md's status table lists every status code of the header, with
//!   its value, and nothing else.
//! - The header's note on the short type names names a version that exists.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use common::c_header::{self, Header};

fn manifest_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// README.md and every docs/*.md.
fn doc_files() -> Vec<PathBuf> {
    let mut files = vec![manifest_dir().join("README.md")];
    let mut docs: Vec<PathBuf> = std::fs::read_dir(manifest_dir().join("docs"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "md"))
        .collect();
    docs.sort();
    files.extend(docs);
    files
}

/// A piece of C (or C-like) code from a doc: where it starts, and its text.
struct Code {
    file: String,
    line: usize,
    text: String,
}

/// The fenced blocks that are not Rust or Python, and the inline code spans of
/// the text outside fences.
fn code_of(file: &Path) -> Vec<Code> {
    let name = file
        .strip_prefix(manifest_dir())
        .unwrap()
        .display()
        .to_string();
    let text = std::fs::read_to_string(file).unwrap();
    let mut pieces = Vec::new();
    let mut prose = String::new();
    let mut fence: Option<(String, usize, String)> = None;
    for (number, line) in text.lines().enumerate() {
        let trimmed = line.trim_start();
        if let Some(lang) = trimmed.strip_prefix("```") {
            match fence.take() {
                None => fence = Some((lang.trim().to_lowercase(), number + 1, String::new())),
                Some((lang, start, block)) => {
                    if !matches!(lang.as_str(), "rust" | "python" | "py" | "pycon") {
                        pieces.push(Code {
                            file: name.clone(),
                            line: start,
                            text: block,
                        });
                    }
                }
            }
            prose.push('\n');
            continue;
        }
        match &mut fence {
            Some((_, _, block)) => {
                block.push_str(line);
                block.push('\n');
                prose.push('\n');
            }
            None => {
                prose.push_str(line);
                prose.push('\n');
            }
        }
    }
    // docs/PYTHON.md documents the Python package: its inline code is Python.
    if name == "docs/PYTHON.md" {
        return pieces;
    }
    // Inline code: text between backticks, which may run over a line break.
    let mut rest = prose.as_str();
    let mut offset = 0;
    while let Some(open) = rest.find('`') {
        let Some(close) = rest[open + 1..].find('`') else {
            break;
        };
        let span = &rest[open + 1..open + 1 + close];
        let line = prose[..offset + open].matches('\n').count() + 1;
        pieces.push(Code {
            file: name.clone(),
            line,
            text: span.to_owned(),
        });
        offset += open + close + 2;
        rest = &rest[open + close + 2..];
    }
    pieces
}

/// The CMake functions and macros the package's CMake files define.
fn cmake_functions() -> Vec<String> {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(manifest_dir().join("cmake")).unwrap() {
        let path = entry.unwrap().path();
        if !path.is_file() {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        for line in text.lines() {
            let line = line.trim_start().to_lowercase();
            for keyword in ["function(", "macro("] {
                if let Some(rest) = line.strip_prefix(keyword) {
                    let name: String = rest
                        .chars()
                        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                        .collect();
                    names.push(name);
                }
            }
        }
    }
    names
}

fn looks_like_api(name: &str) -> bool {
    ["streamer_", "stream_", "pyme_"]
        .iter()
        .any(|prefix| name.starts_with(prefix) && name.len() > prefix.len())
}

/// `(a, f(b, c), d)` starting at the `(`: the text inside, or None when it does
/// not close in this piece of code.
fn arguments(text: &str) -> Option<&str> {
    let mut depth = 0;
    for (i, c) in text.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => {
                depth -= 1;
                if depth == 0 {
                    return Some(&text[1..i]);
                }
            }
            _ => {}
        }
    }
    None
}

/// Splits on the commas outside parentheses; no argument gives an empty list.
fn split_arguments(text: &str) -> Vec<String> {
    let mut parts = Vec::new();
    let mut depth = 0;
    let mut current = String::new();
    for c in text.chars() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(std::mem::take(&mut current));
                continue;
            }
            _ => {}
        }
        current.push(c);
    }
    if !current.trim().is_empty() || !parts.is_empty() {
        parts.push(current);
    }
    let parts: Vec<String> = parts.into_iter().map(|p| p.trim().to_owned()).collect();
    if parts.len() == 1 && parts[0] == "void" {
        return Vec::new();
    }
    parts
}

/// A C type as written, for comparison: no `struct `, no space around `*`.
fn normal_type(c_type: &str) -> String {
    c_type
        .replace("struct ", "")
        .replace(" *", "*")
        .replace("* ", "*")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

/// The type of a parameter written in a prototype (`const char *host` -> `const char*`).
fn type_of_parameter(parameter: &str) -> String {
    let parameter = parameter.trim();
    let split = parameter
        .rfind(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(0);
    normal_type(&parameter[..=split])
}

/// Every problem with the calls and prototypes of one piece of code.
fn check_calls(code: &Code, header: &Header, cmake: &[String], problems: &mut Vec<String>) {
    let text = &code.text;
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i] as char;
        if !(c.is_ascii_alphabetic() || c == '_') {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_') {
            i += 1;
        }
        let name = &text[start..i];
        let before = text[..start].trim_end_matches(' ');
        if before.ends_with("::") || before.ends_with('.') || before.ends_with("->") {
            continue;
        }
        let after = text[i..].trim_start_matches(' ');
        if !after.starts_with('(') {
            continue;
        }
        let at = format!(
            "{}:{}",
            code.file,
            code.line + text[..start].matches('\n').count()
        );
        let Some(function) = header.function(name) else {
            if looks_like_api(name) && !cmake.iter().any(|f| f == &name.to_lowercase()) {
                problems.push(format!(
                    "{at}: `{name}(` looks like a C API function, but the header declares none of that name"
                ));
            }
            continue;
        };
        let Some(args) = arguments(after) else {
            problems.push(format!(
                "{at}: `{name}(` does not close its arguments; write `{name}(...)`"
            ));
            continue;
        };
        if args.contains("...") {
            continue;
        }
        let args = split_arguments(args);
        if args.len() != function.params.len() {
            problems.push(format!(
                "{at}: `{name}` with {} argument(s) ({}); the header has {}: ({})",
                args.len(),
                args.join(", "),
                function.params.len(),
                function
                    .params
                    .iter()
                    .map(|p| format!("{} {}", p.c_type, p.name))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
            continue;
        }
        // A prototype (the return type before the name): the types too.
        let line_start = text[..start].rfind('\n').map_or(0, |n| n + 1);
        let prefix = normal_type(&text[line_start..start]);
        let declared_return = normal_type(&function.return_type);
        if !prefix.is_empty() && prefix.ends_with(&declared_return) {
            for (written, param) in args.iter().zip(&function.params) {
                let expected = normal_type(&param.c_type);
                if type_of_parameter(written) != expected {
                    problems.push(format!(
                        "{at}: prototype of `{name}`: parameter `{written}` is `{}` in the header",
                        param.c_type
                    ));
                }
            }
        }
    }
}

#[test]
fn calls_and_prototypes_in_the_docs_match_the_header() {
    let header = c_header::read();
    assert!(
        header.functions.len() > 40,
        "the header reader found only {} functions",
        header.functions.len()
    );
    let cmake = cmake_functions();
    let mut problems = Vec::new();
    let mut checked = 0;
    for file in doc_files() {
        for code in code_of(&file) {
            check_calls(&code, &header, &cmake, &mut problems);
            checked += 1;
        }
    }
    assert!(
        checked > 100,
        "only {checked} pieces of code found in the docs"
    );
    assert!(
        problems.is_empty(),
        "the docs disagree with include/pyme_streaming.h:\n{}",
        problems.join("\n")
    );
}

/// The check itself finds what it must: a wrong count, a wrong type, a name that
/// is not exported (a regression guard for the checker, not for the docs).
#[test]
fn the_call_check_finds_wrong_counts_types_and_names() {
    let header = c_header::read();
    let code = |text: &str| Code {
        file: "example".into(),
        line: 1,
        text: text.into(),
    };
    let problems_of = |text: &str| {
        let mut problems = Vec::new();
        check_calls(&code(text), &header, &cmake_functions(), &mut problems);
        problems
    };
    assert_eq!(problems_of("streamer_stats(streamer, out)").len(), 1);
    assert!(problems_of("streamer_stats(streamer, &stats, sizeof stats)").is_empty());
    assert!(problems_of("streamer_stats(...)").is_empty());
    assert!(problems_of("streamer_version()").is_empty());
    assert_eq!(
        problems_of(
            "int32_t streamer_stats(const PymeStreamer *streamer, PymeStreamerStats *out, uint32_t n)"
        )
        .len(),
        1
    );
    assert!(problems_of(
        "int32_t streamer_stats(const PymeStreamer *streamer, PymeStreamerStats *out, size_t stats_size)"
    )
    .is_empty());
    assert_eq!(problems_of("streamer_no_such_function(x)").len(), 1);
    assert!(problems_of("common::pyme_stream()").is_empty());
}

/// `<!-- layout: Name -->` followed by a table `| Field | C type | Offset | ...`.
struct LayoutTable {
    at: String,
    structure: String,
    rows: Vec<(String, String, String)>,
}

fn cell(text: &str) -> String {
    text.trim().trim_matches('`').trim().to_owned()
}

fn layout_tables(problems: &mut Vec<String>) -> Vec<LayoutTable> {
    let mut tables = Vec::new();
    for file in doc_files() {
        let name = file
            .strip_prefix(manifest_dir())
            .unwrap()
            .display()
            .to_string();
        let text = std::fs::read_to_string(&file).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        for (i, line) in lines.iter().enumerate() {
            let columns: Vec<String> = line.split('|').map(cell).collect();
            let is_layout_header = line.trim_start().starts_with('|')
                && columns.len() > 3
                && columns[1].eq_ignore_ascii_case("field")
                && columns[2].eq_ignore_ascii_case("c type")
                && columns[3].to_lowercase().starts_with("offset");
            let mentions_offset = line.trim_start().starts_with('|')
                && columns
                    .iter()
                    .any(|c| c.to_lowercase().starts_with("offset"));
            if !mentions_offset {
                continue;
            }
            let at = format!("{name}:{}", i + 1);
            let marker = lines[..i]
                .iter()
                .rev()
                .find(|l| !l.trim().is_empty())
                .and_then(|l| l.trim().strip_prefix("<!-- layout:"))
                .and_then(|l| l.strip_suffix("-->"))
                .map(|l| l.trim().to_owned());
            let (Some(structure), true) = (marker, is_layout_header) else {
                problems.push(format!(
                    "{at}: a table with offsets must be `<!-- layout: StructName -->` then `| Field | C type | Offset |`"
                ));
                continue;
            };
            let rows = lines[i + 2..]
                .iter()
                .take_while(|l| l.trim_start().starts_with('|'))
                .map(|l| {
                    let cells: Vec<String> = l.split('|').map(cell).collect();
                    (cells[1].clone(), cells[2].clone(), cells[3].clone())
                })
                .collect();
            tables.push(LayoutTable {
                at,
                structure,
                rows,
            });
        }
    }
    tables
}

#[test]
fn struct_layouts_in_the_docs_are_the_compiled_ones() {
    let header = c_header::read();
    let compiled = c_header::compiled_layouts(&header);
    let offset = |structure: &str, field: &str| {
        compiled
            .iter()
            .find(|(s, f, _)| s == structure && f == field)
            .map(|(_, _, value)| *value)
    };
    let mut problems = Vec::new();
    let tables = layout_tables(&mut problems);
    for table in &tables {
        let Some(structure) = header.structure(&table.structure) else {
            problems.push(format!(
                "{}: no struct {} in the header",
                table.at, table.structure
            ));
            continue;
        };
        let mut expected: Vec<(String, String, String)> = structure
            .fields
            .iter()
            .map(|f| {
                (
                    f.name.clone(),
                    normal_type(&f.c_type),
                    offset(&structure.name, &f.name).unwrap().to_string(),
                )
            })
            .collect();
        expected.push((
            "sizeof".into(),
            String::new(),
            offset(&structure.name, "sizeof").unwrap().to_string(),
        ));
        let written: Vec<(String, String, String)> = table
            .rows
            .iter()
            .map(|(f, t, o)| (f.clone(), normal_type(t), o.clone()))
            .collect();
        if written != expected {
            problems.push(format!(
                "{}: the layout of {} is, as compiled (field, C type, offset; then sizeof):\n{}\nthe doc has:\n{}",
                table.at,
                structure.name,
                expected.iter().map(|r| format!("  {r:?}")).collect::<Vec<_>>().join("\n"),
                written.iter().map(|r| format!("  {r:?}")).collect::<Vec<_>>().join("\n"),
            ));
        }
    }
    for wanted in ["docs/C_API.md", "docs/WINDOWS.md"] {
        if !tables.iter().any(|t| t.at.starts_with(wanted)) {
            problems.push(format!("{wanted} has no layout table of PymeStreamerStats"));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// The numbers in a line of prose after which `word` follows (`17 U64`, `17 × U64`).
fn counts_before(line: &str, word: &str) -> Vec<u64> {
    let mut found = Vec::new();
    let mut rest = line;
    while let Some(at) = rest.find(word) {
        let before = rest[..at].trim_end().trim_end_matches('×').trim_end();
        let digits: String = before
            .chars()
            .rev()
            .take_while(char::is_ascii_digit)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        let boundary = at + word.len();
        let whole_word = rest[boundary..]
            .chars()
            .next()
            .is_none_or(|c| !c.is_ascii_alphanumeric());
        if !digits.is_empty() && whole_word {
            found.push(digits.parse().unwrap());
        }
        rest = &rest[boundary..];
    }
    found
}

#[test]
fn counts_in_prose_are_the_headers() {
    let header = c_header::read();
    let compiled = c_header::compiled_layouts(&header);
    let stats = header.structure("PymeStreamerStats").unwrap();
    let stats_size = compiled
        .iter()
        .find(|(s, f, _)| s == "PymeStreamerStats" && f == "sizeof")
        .unwrap()
        .2;
    let field_counts: Vec<u64> = header
        .structs
        .iter()
        .map(|s| s.fields.len() as u64)
        .collect();
    let mut problems = Vec::new();
    for file in doc_files() {
        let name = file
            .strip_prefix(manifest_dir())
            .unwrap()
            .display()
            .to_string();
        let text = std::fs::read_to_string(&file).unwrap();
        for (number, line) in text.lines().enumerate() {
            let at = format!("{name}:{}", number + 1);
            for word in ["U64", "fields", "64-bit fields"] {
                for count in counts_before(line, word) {
                    if !field_counts.contains(&count) {
                        problems.push(format!(
                            "{at}: {count} {word}, but the header's structs have {field_counts:?} fields ({} in PymeStreamerStats)",
                            stats.fields.len()
                        ));
                    }
                }
            }
            for word in ["functions", "C functions", "API functions", "exports"] {
                for count in counts_before(line, word) {
                    if count != header.functions.len() as u64 {
                        problems.push(format!(
                            "{at}: {count} {word}, but the header declares {}",
                            header.functions.len()
                        ));
                    }
                }
            }
            if line.contains("stats_size") || line.contains("sizeof(PymeStreamerStats)") {
                for count in counts_before(line, "bytes") {
                    if count != stats_size {
                        problems.push(format!(
                            "{at}: {count} bytes next to stats_size; sizeof(PymeStreamerStats) is {stats_size}"
                        ));
                    }
                }
                if let Some(eq) = line
                    .find("stats_size` =")
                    .or_else(|| line.find("stats_size ="))
                {
                    let digits: String = line[eq..]
                        .chars()
                        .skip_while(|c| *c != '=')
                        .skip(1)
                        .skip_while(|c| *c == ' ')
                        .take_while(char::is_ascii_digit)
                        .collect();
                    if !digits.is_empty() && digits.parse::<u64>().unwrap() != stats_size {
                        problems.push(format!(
                            "{at}: stats_size = {digits}; sizeof(PymeStreamerStats) is {stats_size}"
                        ));
                    }
                }
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_status_table_lists_every_code_of_the_header() {
    let header = c_header::read();
    let text = std::fs::read_to_string(manifest_dir().join("docs/C_API.md")).unwrap();
    let section = text
        .split("\n## Status codes")
        .nth(1)
        .expect("docs/C_API.md has a section ## Status codes");
    let section = section.split("\n## ").next().unwrap();
    let mut table = BTreeMap::new();
    for line in section.lines().filter(|l| l.trim_start().starts_with('|')) {
        let cells: Vec<String> = line.split('|').map(cell).collect();
        if let Ok(code) = cells[1].parse::<i64>() {
            assert!(
                table.insert(cells[2].clone(), code).is_none(),
                "{} twice in the status table",
                cells[2]
            );
        }
    }
    let expected: BTreeMap<String, i64> = header.status_enum().constants.iter().cloned().collect();
    let missing: Vec<_> = expected
        .iter()
        .filter(|(name, code)| table.get(*name) != Some(code))
        .collect();
    let extra: Vec<_> = table
        .iter()
        .filter(|(name, _)| !expected.contains_key(*name))
        .collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "docs/C_API.md's status table: missing or wrong {missing:?}; not in the header {extra:?}"
    );
}

/// `0.1.0` -> (0, 1, 0); `0.2` -> (0, 2, 0).
fn version(text: &str) -> (u64, u64, u64) {
    let mut parts = text.split('.').map(|p| p.parse::<u64>().unwrap());
    (
        parts.next().unwrap(),
        parts.next().unwrap_or(0),
        parts.next().unwrap_or(0),
    )
}

#[test]
fn the_short_names_note_names_a_version_that_exists() {
    let header = c_header::read();
    let guard = header
        .text
        .find("#ifdef PYME_STREAMING_SHORT_NAMES")
        .expect("the header has the short names");
    let comment_start = header.text[..guard].rfind("/*").unwrap();
    let note = &header.text[comment_start..guard];
    let versions: Vec<&str> = note
        .split(|c: char| !(c.is_ascii_digit() || c == '.'))
        .map(|w| w.trim_matches('.'))
        .filter(|w| w.contains('.') && w.split('.').all(|p| !p.is_empty()))
        .collect();
    assert!(!versions.is_empty(), "the note names no version: {note}");
    let current = version(env!("CARGO_PKG_VERSION"));
    for named in versions {
        assert!(
            version(named) <= current,
            "the short-names note names version {named}, after this one ({}): {note}",
            env!("CARGO_PKG_VERSION")
        );
    }
}
