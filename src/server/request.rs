//! Parsing one HTTP/1.1 request head (request line and headers) off the data server's
//! input buffer.
//!
//! A pure function over a byte slice: no sockets, no files, so it can be fuzzed and
//! property-tested. It keeps only what the data server acts on; every other header is
//! read past and forgotten.

use thiserror::Error;

/// How many header lines a request may have. PYME clients send two or three.
const MAX_HEADERS: usize = 64;

/// The methods the data server knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Head,
    Put,
    /// Anything else; answered with 405 and the connection is closed.
    Other,
}

/// What the data server needs to know about one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestHead {
    pub method: Method,
    /// The request target as sent (still percent-encoded, query included).
    pub target: String,
    /// `Content-Length`, if given.
    pub content_length: Option<u64>,
    /// A `Transfer-Encoding` header was present (this server does not decode chunked bodies).
    pub transfer_encoding: bool,
    /// `Content-Encoding: gzip`: the body is to be gunzipped before it is stored.
    pub gzip: bool,
    /// The client asked to close the connection after this request (`Connection: close`,
    /// or HTTP/1.0 without `Connection: keep-alive`).
    pub close: bool,
    /// `Expect: 100-continue`.
    pub expect_continue: bool,
}

/// Why a request head was refused. Each maps to one HTTP status code.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum RequestError {
    #[error("malformed request head: {0}")]
    Malformed(String),
    #[error("request head longer than {0} bytes")]
    HeadTooLarge(usize),
    #[error("more than {MAX_HEADERS} header lines")]
    TooManyHeaders,
    #[error("invalid Content-Length")]
    BadContentLength,
}

impl RequestError {
    /// The HTTP status code that answers this error.
    pub fn status_code(&self) -> u16 {
        match self {
            RequestError::Malformed(_) | RequestError::BadContentLength => 400,
            RequestError::HeadTooLarge(_) | RequestError::TooManyHeaders => 431,
        }
    }
}

/// Parses the request head at the start of `buf`.
///
/// Returns `Ok(None)` when `buf` holds only part of a head (read more and call again),
/// `Ok(Some((head, len)))` when the head is complete and takes the first `len` bytes,
/// and an error when it never can be a valid head, including when it is (or would have
/// to be) longer than `max_head_bytes`.
pub fn parse_request_head(
    buf: &[u8],
    max_head_bytes: usize,
) -> Result<Option<(RequestHead, usize)>, RequestError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut headers);
    let len = match request.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => {
            return if buf.len() >= max_head_bytes {
                Err(RequestError::HeadTooLarge(max_head_bytes))
            } else {
                Ok(None)
            };
        }
        Err(httparse::Error::TooManyHeaders) => return Err(RequestError::TooManyHeaders),
        Err(e) => return Err(RequestError::Malformed(e.to_string())),
    };
    if len > max_head_bytes {
        return Err(RequestError::HeadTooLarge(max_head_bytes));
    }

    let method = match request.method.unwrap_or_default() {
        "GET" => Method::Get,
        "HEAD" => Method::Head,
        "PUT" => Method::Put,
        _ => Method::Other,
    };
    let http10 = request.version == Some(0);
    let mut head = RequestHead {
        method,
        target: request.path.unwrap_or_default().to_owned(),
        content_length: None,
        transfer_encoding: false,
        gzip: false,
        close: http10,
        expect_continue: false,
    };
    for header in request.headers.iter() {
        apply_header(&mut head, header.name, header.value, http10)?;
    }
    Ok(Some((head, len)))
}

/// Records what one header line means for the request.
fn apply_header(
    head: &mut RequestHead,
    name: &str,
    value: &[u8],
    http10: bool,
) -> Result<(), RequestError> {
    if name.eq_ignore_ascii_case("content-length") {
        let length = parse_content_length(value)?;
        // Two different lengths make the body boundary ambiguous (request smuggling).
        if head.content_length.is_some_and(|l| l != length) {
            return Err(RequestError::BadContentLength);
        }
        head.content_length = Some(length);
    } else if name.eq_ignore_ascii_case("transfer-encoding") {
        head.transfer_encoding = true;
    } else if name.eq_ignore_ascii_case("content-encoding") {
        head.gzip = has_token(value, "gzip") || has_token(value, "x-gzip");
    } else if name.eq_ignore_ascii_case("connection") {
        if has_token(value, "close") {
            head.close = true;
        } else if http10 && has_token(value, "keep-alive") {
            head.close = false;
        }
    } else if name.eq_ignore_ascii_case("expect") {
        head.expect_continue = has_token(value, "100-continue");
    }
    Ok(())
}

/// A decimal byte count, digits only (no sign, no spaces inside).
fn parse_content_length(value: &[u8]) -> Result<u64, RequestError> {
    let digits = value.trim_ascii();
    if digits.is_empty() || digits.len() > 19 || !digits.iter().all(u8::is_ascii_digit) {
        return Err(RequestError::BadContentLength);
    }
    Ok(digits
        .iter()
        .fold(0u64, |n, d| n * 10 + u64::from(d - b'0')))
}

/// Whether a comma-separated header value holds `token` (ASCII case-insensitive).
fn has_token(value: &[u8], token: &str) -> bool {
    value
        .split(|&b| b == b',')
        .any(|part| part.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const PUT: &[u8] =
        b"PUT /a/b.pzf HTTP/1.1\r\nConnection: keep-alive\r\nContent-Length: 12\r\n\r\nbody";

    #[test]
    fn parses_a_pyme_put() {
        let (head, len) = parse_request_head(PUT, 1024).unwrap().unwrap();
        assert_eq!(len, PUT.len() - 4);
        assert_eq!(head.method, Method::Put);
        assert_eq!(head.target, "/a/b.pzf");
        assert_eq!(head.content_length, Some(12));
        assert!(!head.close && !head.gzip && !head.expect_continue);
    }

    #[test]
    fn partial_head_asks_for_more() {
        for cut in 0..PUT.len() - 5 {
            assert_eq!(
                parse_request_head(&PUT[..cut], 1024),
                Ok(None),
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn too_long_head_is_refused_even_when_partial() {
        assert_eq!(
            parse_request_head(&PUT[..30], 30),
            Err(RequestError::HeadTooLarge(30))
        );
        assert_eq!(
            parse_request_head(PUT, 40),
            Err(RequestError::HeadTooLarge(40))
        );
    }

    #[test]
    fn flags_and_errors() {
        let head = |s: &str| parse_request_head(s.as_bytes(), 1024);
        let (h, _) = head("PUT /x HTTP/1.1\r\nContent-Encoding: gzip\r\nConnection: Close\r\nExpect: 100-continue\r\nContent-Length: 0\r\n\r\n")
            .unwrap()
            .unwrap();
        assert!(h.gzip && h.close && h.expect_continue);
        let (h, _) = head("GET / HTTP/1.0\r\n\r\n").unwrap().unwrap();
        assert!(h.close);
        assert_eq!(
            head("PUT /x HTTP/1.1\r\nContent-Length: -1\r\n\r\n"),
            Err(RequestError::BadContentLength)
        );
        assert_eq!(
            head("PUT /x HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n"),
            Err(RequestError::BadContentLength)
        );
        assert!(matches!(
            head("garbage\r\n\r\n"),
            Err(RequestError::Malformed(_))
        ));
    }

    proptest::proptest! {
        #[test]
        fn never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512)) {
            let _ = parse_request_head(&bytes, 256);
        }
    }
}
