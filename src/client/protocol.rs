//! The HTTP/1.1 bytes of the streaming protocol: PUT request heads are written
//! here and answers are parsed here. No sockets: the stream hands in bytes.
//!
//! A request is exactly (PYME_WIRE.md section 1):
//! `PUT /<name> HTTP/1.1\r\nConnection: keep-alive\r\nContent-Length: <n>\r\n\r\n<body>`.

use std::io::{self, Read, Write};

use crate::name;

/// The longest answer head accepted.
pub const MAX_RESPONSE_HEAD: usize = 64 * 1024;
/// How much of an error answer's body is kept for the error message.
const MAX_DETAIL: usize = 200;
/// Headers parsed per answer; more is a protocol error.
const MAX_HEADERS: usize = 32;

/// Appends a PUT request head for `name` (already validated) to `out`.
pub fn write_put_head(
    out: &mut Vec<u8>,
    name: &str,
    content_length: u64,
    content_encoding: Option<&str>,
    close: bool,
) {
    out.extend_from_slice(b"PUT ");
    name::write_request_target(out, name);
    out.extend_from_slice(b" HTTP/1.1\r\nConnection: ");
    out.extend_from_slice(if close {
        b"close" as &[u8]
    } else {
        b"keep-alive"
    });
    out.extend_from_slice(b"\r\nContent-Length: ");
    // Formatted straight into the buffer: no allocation per request.
    let _ = write!(out, "{content_length}");
    if let Some(encoding) = content_encoding {
        out.extend_from_slice(b"\r\nContent-Encoding: ");
        out.extend_from_slice(encoding.as_bytes());
    }
    out.extend_from_slice(b"\r\n\r\n");
}

/// Appends a `GET /<name>` request head (`name` already validated) asking the
/// server to close the connection after its answer.
pub fn write_get_head(out: &mut Vec<u8>, name: &str) {
    out.extend_from_slice(b"GET ");
    name::write_request_target(out, name);
    out.extend_from_slice(b" HTTP/1.1\r\nConnection: close\r\n\r\n");
}

/// The head of one answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseHead {
    pub status: u16,
    pub reason: String,
    /// The body length; `None` when the server gave none.
    pub content_length: Option<u64>,
    /// The server will close the connection after this answer.
    pub close: bool,
}

/// An answer the client cannot make sense of.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    #[error("malformed answer: {0}")]
    Malformed(String),
    #[error("answer head longer than {MAX_RESPONSE_HEAD} bytes")]
    HeadTooLong,
    #[error("unsupported answer: {0}")]
    Unsupported(String),
}

/// Parses an answer head at the start of `buf`. `Ok(None)`: more bytes needed.
/// On success, also returns the length of the head.
pub fn parse_response_head(buf: &[u8]) -> Result<Option<(ResponseHead, usize)>, ProtocolError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut response = httparse::Response::new(&mut headers);
    let head_len = match response.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if buf.len() > MAX_RESPONSE_HEAD => {
            return Err(ProtocolError::HeadTooLong)
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(error) => return Err(ProtocolError::Malformed(error.to_string())),
    };
    let status = response.code.unwrap_or(0);
    let mut head = ResponseHead {
        status,
        reason: String::new(),
        content_length: None,
        close: response.version == Some(0),
    };
    if !(200..300).contains(&status) {
        head.reason = response.reason.unwrap_or("").to_owned();
    }
    for header in response.headers.iter() {
        if header.name.eq_ignore_ascii_case("content-length") {
            let length = std::str::from_utf8(header.value)
                .ok()
                .and_then(|text| text.trim().parse::<u64>().ok())
                .ok_or_else(|| ProtocolError::Malformed("bad Content-Length".into()))?;
            if head.content_length.is_some_and(|earlier| earlier != length) {
                return Err(ProtocolError::Malformed(
                    "conflicting Content-Length".into(),
                ));
            }
            head.content_length = Some(length);
        } else if header.name.eq_ignore_ascii_case("connection") {
            head.close = header.value.eq_ignore_ascii_case(b"close");
        } else if header.name.eq_ignore_ascii_case("transfer-encoding") {
            return Err(ProtocolError::Unsupported(
                "Transfer-Encoding in an answer to PUT".into(),
            ));
        }
    }
    Ok(Some((head, head_len)))
}

/// One complete answer, body consumed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    /// For a non-2xx answer: the reason phrase and the first line of the body.
    pub detail: String,
    pub close: bool,
}

/// Why no answer could be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The connection ended cleanly between answers.
    #[error("the server closed the connection")]
    Closed,
    #[error("the server closed the connection in the middle of an answer")]
    Truncated,
    #[error(transparent)]
    Protocol(#[from] ProtocolError),
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// Reads answers one after the other from a connection, with its own buffer so
/// that many pipelined answers cost one read.
///
/// A read error such as a socket timeout loses nothing: the next call goes on
/// where this one stopped, in the head or in the body of an answer.
pub struct ResponseReader<R> {
    source: R,
    buf: Box<[u8]>,
    start: usize,
    end: usize,
    /// The answer whose head is read and whose body is not yet wholly read.
    body: Option<BodyInProgress>,
}

struct BodyInProgress {
    head: ResponseHead,
    /// Body bytes still to consume (`u64::MAX`: up to the end of the connection).
    remaining: u64,
    /// The start of an error answer's body, for its message.
    detail: Vec<u8>,
}

impl<R: Read> ResponseReader<R> {
    pub fn new(source: R) -> Self {
        ResponseReader {
            source,
            buf: vec![0; MAX_RESPONSE_HEAD + 1].into_boxed_slice(),
            start: 0,
            end: 0,
            body: None,
        }
    }

    /// The next final answer: interim (1xx) answers are skipped and the body is
    /// read to its end. Never returns a 1xx.
    pub fn read_response(&mut self) -> Result<Response, ReadError> {
        loop {
            let mut body = match self.body.take() {
                Some(body) => body,
                None => {
                    let head = self.read_head()?;
                    if (100..200).contains(&head.status) {
                        continue;
                    }
                    BodyInProgress::new(head)
                }
            };
            if let Err(error) = self.read_body(&mut body) {
                self.body = Some(body);
                return Err(error);
            }
            return Ok(body.into_response());
        }
    }

    /// The status and body of the next final answer, the body kept only when
    /// its length is exactly `expected` bytes (`None` otherwise, and then not
    /// read at all: the caller drops the connection). Not resumable after a
    /// read error; for one-off requests on a connection of their own.
    pub fn read_body_of_length(
        &mut self,
        expected: usize,
    ) -> Result<(u16, Option<Vec<u8>>), ReadError> {
        let head = loop {
            let head = self.read_head()?;
            if !(100..200).contains(&head.status) {
                break head;
            }
        };
        if head.content_length != Some(expected as u64) {
            return Ok((head.status, None));
        }
        let mut body = Vec::with_capacity(expected);
        while body.len() < expected {
            if self.start == self.end && self.fill()? == 0 {
                return Err(ReadError::Truncated);
            }
            let take = (self.end - self.start).min(expected - body.len());
            body.extend_from_slice(&self.buf[self.start..self.start + take]);
            self.start += take;
        }
        Ok((head.status, Some(body)))
    }

    fn read_head(&mut self) -> Result<ResponseHead, ReadError> {
        loop {
            if let Some((head, len)) = parse_response_head(&self.buf[self.start..self.end])? {
                self.start += len;
                return Ok(head);
            }
            let before = self.end - self.start;
            if self.fill()? == 0 {
                return Err(if before == 0 {
                    ReadError::Closed
                } else {
                    ReadError::Truncated
                });
            }
        }
    }

    /// Consumes the rest of the body; keeps the start of an error answer's body.
    fn read_body(&mut self, body: &mut BodyInProgress) -> Result<(), ReadError> {
        let keep_detail = body.is_error();
        while body.remaining > 0 {
            if self.start == self.end && self.fill()? == 0 {
                if body.head.content_length.is_none() {
                    return Ok(());
                }
                return Err(ReadError::Truncated);
            }
            let available =
                (self.end - self.start).min(usize::try_from(body.remaining).unwrap_or(usize::MAX));
            if keep_detail && body.detail.len() < MAX_DETAIL {
                let take = available.min(MAX_DETAIL - body.detail.len());
                body.detail
                    .extend_from_slice(&self.buf[self.start..self.start + take]);
            }
            self.start += available;
            body.remaining -= available as u64;
        }
        Ok(())
    }

    /// Reads more bytes after the buffered ones; returns how many (0 at the end).
    fn fill(&mut self) -> io::Result<usize> {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        } else if self.end == self.buf.len() {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        loop {
            match self.source.read(&mut self.buf[self.end..]) {
                Ok(n) => {
                    self.end += n;
                    return Ok(n);
                }
                Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
                Err(error) => return Err(error),
            }
        }
    }
}

impl BodyInProgress {
    fn new(head: ResponseHead) -> Self {
        let remaining = match (head.content_length, head.close) {
            (Some(length), _) => length,
            (None, true) => u64::MAX, // the body runs to the end of the connection
            (None, false) => 0,
        };
        BodyInProgress {
            head,
            remaining,
            detail: Vec::new(),
        }
    }

    /// A non-2xx answer, whose body's start goes into the error message.
    fn is_error(&self) -> bool {
        !(200..300).contains(&self.head.status)
    }

    fn into_response(self) -> Response {
        let detail = if self.is_error() {
            describe(&self.head, &self.detail)
        } else {
            String::new()
        };
        Response {
            status: self.head.status,
            detail,
            close: self.head.close,
        }
    }
}

/// `"405 Method Not Allowed: <first line of the body>"`, markup stripped.
fn describe(head: &ResponseHead, body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let first_line = text
        .lines()
        .map(strip_tags)
        .map(|line| line.trim().to_owned())
        .find(|line| !line.is_empty())
        .unwrap_or_default();
    match (head.reason.is_empty(), first_line.is_empty()) {
        (_, true) => head.reason.clone(),
        (true, false) => first_line,
        (false, false) => format!("{}: {first_line}", head.reason),
    }
}

fn strip_tags(line: &str) -> String {
    let mut text = String::with_capacity(line.len());
    let mut in_tag = false;
    for ch in line.chars() {
        match ch {
            '<' => in_tag = true,
            '>' => in_tag = false,
            _ if !in_tag => text.push(ch),
            _ => {}
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_the_exact_request_head() {
        let mut out = Vec::new();
        write_put_head(&mut out, "s/frame00001.pzf", 12, None, false);
        assert_eq!(
            out,
            b"PUT /s/frame00001.pzf HTTP/1.1\r\nConnection: keep-alive\r\nContent-Length: 12\r\n\r\n"
        );
        out.clear();
        write_put_head(&mut out, "end", 0, Some("gzip"), true);
        assert_eq!(
            out,
            b"PUT /end HTTP/1.1\r\nConnection: close\r\nContent-Length: 0\r\nContent-Encoding: gzip\r\n\r\n"
        );
    }

    fn read_all(bytes: &[u8]) -> Vec<Result<Response, String>> {
        let mut reader = ResponseReader::new(bytes);
        let mut answers = Vec::new();
        loop {
            match reader.read_response() {
                Ok(response) => answers.push(Ok(response)),
                Err(ReadError::Closed) => return answers,
                Err(error) => {
                    answers.push(Err(error.to_string()));
                    return answers;
                }
            }
        }
    }

    #[test]
    fn reads_pipelined_answers_skipping_interim_ones() {
        let wire = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n\
HTTP/1.1 100 Continue\r\n\r\n\
HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 38\r\n\r\n<html><body>File exists</body></html>\n\
HTTP/1.1 201 Created\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc";
        let answers = read_all(wire);
        assert_eq!(answers.len(), 3);
        let answers: Vec<Response> = answers.into_iter().map(Result::unwrap).collect();
        assert_eq!(answers[0].status, 200);
        assert_eq!(answers[1].status, 405);
        assert_eq!(answers[1].detail, "Method Not Allowed: File exists");
        assert_eq!(answers[2].status, 201);
        assert!(answers[2].close);
    }

    #[test]
    fn reports_truncation_and_garbage() {
        let answers = read_all(b"HTTP/1.1 200 OK\r\nContent-Len");
        assert!(matches!(answers.last(), Some(Err(_))));
        let answers = read_all(b"HTTP/1.1 500 Oops\r\nContent-Length: 10\r\n\r\nabc");
        assert_eq!(answers, vec![Err(ReadError::Truncated.to_string())]);
        let answers = read_all(b"garbage\r\n\r\n");
        assert!(matches!(answers.last(), Some(Err(_))));
    }

    #[test]
    fn reads_answers_split_at_every_byte() {
        struct OneByte<'a>(&'a [u8]);
        impl Read for OneByte<'_> {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                let Some((&first, rest)) = self.0.split_first() else {
                    return Ok(0);
                };
                buf[0] = first;
                self.0 = rest;
                Ok(1)
            }
        }
        let wire = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\nHTTP/1.1 404 Not Found\r\nContent-Length: 5\r\n\r\nnope\n";
        let mut reader = ResponseReader::new(OneByte(wire));
        assert_eq!(reader.read_response().unwrap().status, 200);
        let not_found = reader.read_response().unwrap();
        assert_eq!(
            (not_found.status, not_found.detail.as_str()),
            (404, "Not Found: nope")
        );
        assert!(matches!(reader.read_response(), Err(ReadError::Closed)));
    }

    #[test]
    fn a_timeout_inside_an_answer_loses_nothing() {
        /// One byte per read, with a timeout before each byte.
        struct Stalling<'a> {
            wire: &'a [u8],
            stall: bool,
        }
        impl Read for Stalling<'_> {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                self.stall = !self.stall;
                if self.stall {
                    return Err(io::ErrorKind::WouldBlock.into());
                }
                let Some((&first, rest)) = self.wire.split_first() else {
                    return Ok(0);
                };
                buf[0] = first;
                self.wire = rest;
                Ok(1)
            }
        }
        let wire = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 500 Oops\r\nContent-Length: 9\r\n\r\ndisk full\nHTTP/1.1 201 Created\r\nContent-Length: 3\r\n\r\nok\n";
        let mut reader = ResponseReader::new(Stalling { wire, stall: false });
        let mut answers = Vec::new();
        let mut timeouts = 0;
        loop {
            match reader.read_response() {
                Ok(response) => answers.push((response.status, response.detail)),
                Err(ReadError::Io(error)) if error.kind() == io::ErrorKind::WouldBlock => {
                    timeouts += 1;
                }
                Err(ReadError::Closed) => break,
                Err(other) => panic!("{other}"),
            }
        }
        assert_eq!(
            answers,
            [(500, "Oops: disk full".to_owned()), (201, String::new())]
        );
        assert!(timeouts > wire.len() - 2, "{timeouts}");
    }
}
