//! The C header `include/pyme_streaming.h` read as data: its functions (name,
//! return type, parameters), its structs (fields in order, with their C types),
//! its enums (constants and values) and its object-like macros. The docs test
//! (`tests/docs_match_header.rs`) and the ABI probe (`tests/abi_probe.rs`) hold
//! docs and the committed probe to what this finds, so that neither depends on a
//! list written by hand.
//!
//! It reads only what cbindgen writes (one declaration per statement, no nested
//! parentheses in parameter lists: callbacks are typedefs); it is not a C parser.

use std::path::{Path, PathBuf};

/// One parameter or struct field: its C type and its name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Declarator {
    pub c_type: String,
    pub name: String,
}

/// A function the header declares (an export of the library).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Function {
    pub name: String,
    pub return_type: String,
    pub params: Vec<Declarator>,
}

/// A struct with a body (not an opaque handle).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Struct {
    pub name: String,
    pub fields: Vec<Declarator>,
}

/// An enum: its typedef name and its constants with their values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Enum {
    pub name: String,
    pub constants: Vec<(String, i64)>,
}

/// Everything the tests need from the header.
#[derive(Debug, Clone)]
pub struct Header {
    pub text: String,
    pub functions: Vec<Function>,
    pub structs: Vec<Struct>,
    pub enums: Vec<Enum>,
    /// `#define NAME value` with a value (not the include guard), in order.
    pub macros: Vec<(String, String)>,
    /// Typedefs of function pointers (`typedef R (*Name)(...)`), with the text.
    pub callback_typedefs: Vec<(String, String)>,
}

pub fn header_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("include/pyme_streaming.h")
}

/// Reads and parses the committed header.
pub fn read() -> Header {
    parse(&std::fs::read_to_string(header_path()).expect("read include/pyme_streaming.h"))
}

/// The text without comments, with whitespace runs made one space.
fn without_comments(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("/*") {
        out.push_str(&rest[..start]);
        let end = rest[start..].find("*/").expect("comment ends") + start + 2;
        out.push(' ');
        rest = &rest[end..];
    }
    out.push_str(rest);
    out.lines()
        .filter(|line| !line.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn squeeze(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// `const struct PymeStreamerStats *out` -> type `const struct PymeStreamerStats *`, name `out`.
fn declarator(text: &str) -> Declarator {
    let text = squeeze(text);
    let split = text
        .rfind(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .expect("a declarator has a type and a name");
    Declarator {
        c_type: text[..=split].trim().to_owned(),
        name: text[split + 1..].to_owned(),
    }
}

pub fn parse(text: &str) -> Header {
    let code = without_comments(text);
    let mut macros = Vec::new();
    let mut body = String::new();
    let mut in_short_names = false;
    for line in code.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with("#ifdef PYME_STREAMING_SHORT_NAMES") {
            in_short_names = true;
        }
        if trimmed.starts_with('#') {
            if in_short_names && trimmed.starts_with("#endif") {
                in_short_names = false;
            }
            let mut words = trimmed.splitn(3, char::is_whitespace);
            if words.next() == Some("#define") {
                if let (Some(name), Some(value)) = (words.next(), words.next()) {
                    macros.push((name.to_owned(), value.trim().to_owned()));
                }
            }
            continue;
        }
        if in_short_names || trimmed == "extern \"C\" {" || trimmed == "}" {
            continue;
        }
        body.push_str(line);
        body.push('\n');
    }
    let mut functions = Vec::new();
    let mut structs = Vec::new();
    let mut enums = Vec::new();
    let mut callback_typedefs = Vec::new();
    // Statements end with `;` at brace depth 0.
    let mut depth = 0usize;
    let mut statement = String::new();
    for c in body.chars() {
        statement.push(c);
        match c {
            '{' => depth += 1,
            '}' => depth = depth.saturating_sub(1),
            ';' if depth == 0 => {
                let text = squeeze(&statement);
                statement.clear();
                classify(
                    &text,
                    &mut functions,
                    &mut structs,
                    &mut enums,
                    &mut callback_typedefs,
                );
            }
            _ => {}
        }
    }
    Header {
        text: text.to_owned(),
        functions,
        structs,
        enums,
        macros,
        callback_typedefs,
    }
}

fn classify(
    text: &str,
    functions: &mut Vec<Function>,
    structs: &mut Vec<Struct>,
    enums: &mut Vec<Enum>,
    callback_typedefs: &mut Vec<(String, String)>,
) {
    let text = text.trim().trim_start_matches("} ").trim();
    if text.starts_with("typedef enum") {
        let open = text.find('{').unwrap();
        let close = text.rfind('}').unwrap();
        let name = text[close + 1..]
            .trim()
            .trim_end_matches(';')
            .trim()
            .to_owned();
        let constants = text[open + 1..close]
            .split(',')
            .map(str::trim)
            .filter(|item| !item.is_empty())
            .map(|item| {
                let (constant, value) = item.split_once('=').expect("explicit enum values");
                (
                    constant.trim().to_owned(),
                    value.trim().parse::<i64>().expect("integer enum value"),
                )
            })
            .collect();
        enums.push(Enum { name, constants });
    } else if text.starts_with("typedef struct") && text.contains('{') {
        let open = text.find('{').unwrap();
        let close = text.rfind('}').unwrap();
        let name = text[close + 1..]
            .trim()
            .trim_end_matches(';')
            .trim()
            .to_owned();
        let fields = text[open + 1..close]
            .split(';')
            .map(str::trim)
            .filter(|field| !field.is_empty())
            .map(declarator)
            .collect();
        structs.push(Struct { name, fields });
    } else if text.starts_with("typedef") && text.contains("(*") {
        let start = text.find("(*").unwrap() + 2;
        let end = text[start..].find(')').unwrap() + start;
        callback_typedefs.push((text[start..end].trim().to_owned(), text.to_owned()));
    } else if text.starts_with("typedef") {
        // opaque `typedef struct X X;`
    } else if let Some(open) = text.find('(') {
        let close = text.rfind(')').expect("a prototype closes its parameters");
        let head = declarator(&text[..open]);
        let params_text = text[open + 1..close].trim();
        let params = if params_text == "void" || params_text.is_empty() {
            Vec::new()
        } else {
            params_text.split(',').map(declarator).collect()
        };
        functions.push(Function {
            name: head.name,
            return_type: head.c_type,
            params,
        });
    } else if !text.is_empty() {
        panic!("the header has a statement this reader does not know: {text:?}");
    }
}

impl Header {
    pub fn function(&self, name: &str) -> Option<&Function> {
        self.functions.iter().find(|f| f.name == name)
    }

    pub fn structure(&self, name: &str) -> Option<&Struct> {
        self.structs.iter().find(|s| s.name == name)
    }

    /// Every enum constant with its value, over all enums.
    pub fn constants(&self) -> Vec<(String, i64)> {
        self.enums
            .iter()
            .flat_map(|e| e.constants.iter().cloned())
            .collect()
    }

    pub fn status_enum(&self) -> &Enum {
        self.enums
            .iter()
            .find(|e| e.name == "PymeStreamerStatus")
            .expect("the header has PymeStreamerStatus")
    }
}

/// The offsets and sizes of every field of every struct of `header`, as the
/// system C compiler (`cc`) lays them out: `(struct, field or "sizeof", value)`.
pub fn compiled_layouts(header: &Header) -> Vec<(String, String, u64)> {
    let dir = tempfile::tempdir().unwrap();
    let mut source = String::from(
        "#include <stdio.h>\n#include <stddef.h>\n#include <pyme_streaming.h>\nint main(void) {\n",
    );
    for s in &header.structs {
        for field in &s.fields {
            source.push_str(&format!(
                "  printf(\"{0} {1} %lu\\n\", (unsigned long)offsetof({0}, {1}));\n",
                s.name, field.name
            ));
        }
        source.push_str(&format!(
            "  printf(\"{0} sizeof %lu\\n\", (unsigned long)sizeof({0}));\n",
            s.name
        ));
    }
    source.push_str("  return 0;\n}\n");
    let c_file = dir.path().join("layout.c");
    let exe = dir.path().join("layout");
    std::fs::write(&c_file, source).unwrap();
    super::run(
        std::process::Command::new("cc")
            .arg("-I")
            .arg(header_path().parent().unwrap())
            .arg(&c_file)
            .arg("-o")
            .arg(&exe),
    );
    let output = super::run(&mut std::process::Command::new(&exe));
    String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|line| {
            let mut parts = line.split(' ');
            (
                parts.next().unwrap().to_owned(),
                parts.next().unwrap().to_owned(),
                parts.next().unwrap().parse().unwrap(),
            )
        })
        .collect()
}
