//! The data server's HTTP/1.1 answers, written into an output buffer (no sockets).
//!
//! Every answer carries `Content-Length`, so a pipelining client can always find where
//! the next one starts.

use std::io::Write;

/// The interim answer to `Expect: 100-continue`.
pub const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

/// The answer to a stored PUT, by far the most frequent one.
pub const OK_EMPTY: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";

/// The reason phrase of the status codes this server uses.
pub fn reason(code: u16) -> &'static str {
    match code {
        200 => "OK",
        301 => "Moved Permanently",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        409 => "Conflict",
        411 => "Length Required",
        413 => "Content Too Large",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        507 => "Insufficient Storage",
        _ => "Unknown",
    }
}

/// Writes a status line and headers for a body of `content_length` bytes that the
/// caller sends next. `extra` is a list of ready `Name: value` header lines.
pub fn write_head(
    out: &mut Vec<u8>,
    code: u16,
    content_type: Option<&str>,
    content_length: u64,
    extra: &[&str],
    close: bool,
) {
    // Writing into a Vec cannot fail.
    let _ = write!(
        out,
        "HTTP/1.1 {code} {}\r\nContent-Length: {content_length}\r\n",
        reason(code)
    );
    if let Some(content_type) = content_type {
        let _ = write!(out, "Content-Type: {content_type}\r\n");
    }
    for line in extra {
        let _ = write!(out, "{line}\r\n");
    }
    if close {
        out.extend_from_slice(b"Connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// Writes a whole answer with a body.
pub fn write_full(out: &mut Vec<u8>, code: u16, content_type: &str, body: &[u8], close: bool) {
    write_head(out, code, Some(content_type), body.len() as u64, &[], close);
    out.extend_from_slice(body);
}

/// Writes an error answer with a small HTML body. `detail` must not hold anything the
/// client sent (it is not escaped).
pub fn write_error(out: &mut Vec<u8>, code: u16, detail: &str, close: bool) {
    let reason = reason(code);
    let detail = escape_html(detail);
    let body = format!(
        "<html><head><title>{code} {reason}</title></head>\
         <body><h1>{code} {reason}</h1><p>{detail}</p></body></html>\n"
    );
    write_full(
        out,
        code,
        "text/html; charset=utf-8",
        body.as_bytes(),
        close,
    );
}

/// `detail` may quote what a client sent (a refused name): it must stay text.
fn escape_html(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for ch in text.chars() {
        match ch {
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '&' => escaped.push_str("&amp;"),
            '"' => escaped.push_str("&quot;"),
            _ => escaped.push(ch),
        }
    }
    escaped
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_details_are_escaped() {
        let mut out = Vec::new();
        write_error(&mut out, 400, "bad '<' in a&b", true);
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("bad '&lt;' in a&amp;b"), "{text}");
    }

    #[test]
    fn error_has_length_and_close() {
        let mut out = Vec::new();
        write_error(&mut out, 405, "exists", true);
        let text = String::from_utf8(out).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 405 Method Not Allowed\r\n"));
        assert!(head.contains(&format!("Content-Length: {}", body.len())));
        assert!(head.contains("Connection: close"));
    }
}
