//! Appended records that can be checked whole: a header line with the record's
//! number and length, dots, a newline. A file made by appending them is "whole"
//! when it parses as a sequence of complete records ([`whole_records`]); a torn
//! append leaves a record cut short, or dots where a header should be.

use std::io::Write;

/// The length of [`record_header`]'s line.
pub const HEADER_BYTES: usize = 26;

/// `REC <id> <len>\n`, [`HEADER_BYTES`] long.
pub fn record_header(id: usize, len: usize) -> String {
    format!("REC {id:08} {len:012}\n")
}

/// Whether `bytes` is a sequence of whole records; their numbers, or what is wrong.
pub fn whole_records(bytes: &[u8]) -> Result<Vec<usize>, String> {
    let mut ids = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        let header = bytes
            .get(at..at + HEADER_BYTES)
            .and_then(|h| std::str::from_utf8(h).ok())
            .ok_or_else(|| format!("a cut header at {at} of {}", bytes.len()))?;
        let fields: Vec<&str> = header.trim_end().split(' ').collect();
        let (Some(id), Some(len)) = (
            fields.get(1).and_then(|f| f.parse::<usize>().ok()),
            fields.get(2).and_then(|f| f.parse::<usize>().ok()),
        ) else {
            return Err(format!("no header at {at}: {header:?}"));
        };
        if len <= HEADER_BYTES {
            return Err(format!("record {id} too short: {len}"));
        }
        let Some(record) = bytes.get(at..at + len) else {
            return Err(format!(
                "record {id} cut: {} of {len} bytes",
                bytes.len() - at
            ));
        };
        let dots_whole = record[HEADER_BYTES..len - 1].iter().all(|&b| b == b'.');
        if !dots_whole || record[len - 1] != b'\n' {
            return Err(format!("record {id} damaged"));
        }
        ids.push(id);
        at += len;
    }
    Ok(ids)
}

/// Writes an `__aggregate_txt` PUT of record `id`, `len` bytes, to `name`.
pub fn write_append(
    out: &mut impl Write,
    name: &str,
    id: usize,
    len: usize,
) -> std::io::Result<()> {
    let head = format!("PUT /__aggregate_txt/{name} HTTP/1.1\r\nContent-Length: {len}\r\n\r\n");
    out.write_all(head.as_bytes())?;
    out.write_all(record_header(id, len).as_bytes())?;
    let dots = vec![b'.'; 1 << 20];
    let mut left = len - HEADER_BYTES - 1;
    while left > 0 {
        let n = left.min(dots.len());
        out.write_all(&dots[..n])?;
        left -= n;
    }
    out.write_all(b"\n")
}
