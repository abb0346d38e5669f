//! One `GET` of a server's `/__status`, bounded: every step (resolving excepted, see
//! below) ends by a deadline, and an answer larger than [`MAX_BODY_BYTES`] is refused
//! without reading it all. A server that drips its answer a byte at a time, sends
//! garbage or nothing at all costs the poll at most its timeout.
//!
//! Host names are resolved by the system's resolver, which takes no deadline; a slow
//! resolver holds one of the pollers (poller.rs) for that server's poll only, and the
//! monitor shows the server down once its last answer is too old.
//!
//! What this module may not do: keep connections (each poll opens and closes one:
//! a poll a second costs nothing, and a half-read answer never poisons the next).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Instant;

/// The largest answer read: our `/__status` is about 2 KiB, PYME's less.
pub const MAX_BODY_BYTES: usize = 1 << 20;

/// The largest answer head read.
const MAX_HEAD_BYTES: usize = 16 << 10;

/// Why a poll got no answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FetchError {
    #[error("cannot resolve {0}")]
    Resolve(String),
    #[error("connect: {0}")]
    Connect(String),
    #[error("no answer within the timeout")]
    Timeout,
    #[error("connection: {0}")]
    Io(String),
    #[error("not an HTTP answer: {0}")]
    Malformed(String),
    #[error("answered {0}")]
    Status(u16),
    #[error("answer larger than {MAX_BODY_BYTES} bytes")]
    TooLarge,
}

/// `GET path` from `server` (`host:port`), all of it done by `deadline`: the body of
/// a 200 answer.
pub fn get(server: &str, path: &str, deadline: Instant) -> Result<Vec<u8>, FetchError> {
    let addresses: Vec<SocketAddr> = server
        .to_socket_addrs()
        .map_err(|_| FetchError::Resolve(server.to_owned()))?
        .collect();
    let mut last = FetchError::Resolve(server.to_owned());
    for address in addresses {
        let remaining = remaining(deadline)?;
        match TcpStream::connect_timeout(&address, remaining) {
            Ok(stream) => return exchange(stream, server, path, deadline),
            Err(error) if error.kind() == std::io::ErrorKind::TimedOut => {
                last = FetchError::Timeout
            }
            Err(error) => last = FetchError::Connect(error.to_string()),
        }
    }
    Err(last)
}

fn remaining(deadline: Instant) -> Result<std::time::Duration, FetchError> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        Err(FetchError::Timeout)
    } else {
        Ok(left)
    }
}

fn io_error(error: std::io::Error) -> FetchError {
    match error.kind() {
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => FetchError::Timeout,
        _ => FetchError::Io(error.to_string()),
    }
}

fn exchange(
    mut stream: TcpStream,
    server: &str,
    path: &str,
    deadline: Instant,
) -> Result<Vec<u8>, FetchError> {
    stream.set_nodelay(true).map_err(io_error)?;
    stream
        .set_write_timeout(Some(remaining(deadline)?))
        .map_err(io_error)?;
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {server}\r\nConnection: close\r\nAccept: */*\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).map_err(io_error)?;
    let mut received = Vec::with_capacity(4096);
    let mut chunk = [0u8; 8192];
    let mut parsed: Option<(usize, Option<usize>)> = None;
    loop {
        if let Some((head_len, Some(body_len))) = parsed {
            if received.len() >= head_len + body_len {
                return Ok(received[head_len..head_len + body_len].to_vec());
            }
        }
        stream
            .set_read_timeout(Some(remaining(deadline)?))
            .map_err(io_error)?;
        let n = stream.read(&mut chunk).map_err(io_error)?;
        if n == 0 {
            return match parsed {
                // Without a length, the body ends with the connection.
                Some((head_len, None)) => Ok(received[head_len..].to_vec()),
                Some(_) => Err(FetchError::Io("closed inside the body".into())),
                None => Err(FetchError::Malformed("closed before a whole head".into())),
            };
        }
        received.extend_from_slice(&chunk[..n]);
        if parsed.is_none() {
            parsed = parse_head(&received)?;
        }
        let limit = parsed.map_or(MAX_HEAD_BYTES, |(head_len, _)| head_len + MAX_BODY_BYTES);
        if received.len() > limit {
            return Err(if parsed.is_some() {
                FetchError::TooLarge
            } else {
                FetchError::Malformed("head too long".into())
            });
        }
    }
}

/// The head's length and the body's (`Content-Length`), once the head is whole.
fn parse_head(received: &[u8]) -> Result<Option<(usize, Option<usize>)>, FetchError> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut response = httparse::Response::new(&mut headers);
    let head_len = match response.parse(received) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(error) => return Err(FetchError::Malformed(error.to_string())),
    };
    let code = response.code.unwrap_or(0);
    if code != 200 {
        return Err(FetchError::Status(code));
    }
    let mut body_len = None;
    for header in response.headers.iter() {
        if header.name.eq_ignore_ascii_case("transfer-encoding") {
            return Err(FetchError::Malformed("chunked answers are not read".into()));
        }
        if header.name.eq_ignore_ascii_case("content-length") {
            let len = std::str::from_utf8(header.value)
                .ok()
                .and_then(|v| v.trim().parse::<usize>().ok())
                .ok_or_else(|| FetchError::Malformed("bad Content-Length".into()))?;
            if len > MAX_BODY_BYTES {
                return Err(FetchError::TooLarge);
            }
            body_len = Some(len);
        }
    }
    Ok(Some((head_len, body_len)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heads_are_judged_before_the_body() {
        assert_eq!(parse_head(b"HTTP/1.1 200 OK\r\n"), Ok(None));
        assert_eq!(
            parse_head(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc"),
            Ok(Some((38, Some(3))))
        );
        assert_eq!(parse_head(b"HTTP/1.0 200 OK\r\n\r\n"), Ok(Some((19, None))));
        assert_eq!(
            parse_head(b"HTTP/1.1 404 Not Found\r\n\r\n"),
            Err(FetchError::Status(404))
        );
        assert_eq!(
            parse_head(b"HTTP/1.1 200 OK\r\nContent-Length: 99999999999\r\n\r\n"),
            Err(FetchError::TooLarge)
        );
        assert!(matches!(
            parse_head(b"garbage\r\n\r\n"),
            Err(FetchError::Malformed(_))
        ));
    }
}
