//! `PUT /<name>?MirrorSource=http://<ip>:<port>/<name>` with an empty body: the node
//! fetches the file from another data server of its cluster and stores it under
//! `<name>`, write-once, as PYME's `clusterIO.mirror_file` asks (its client waits
//! 1 s: the 200 comes once the fetched file is stored).
//!
//! The source must be a peer (`peers.rs`: a data server of this cluster, unless
//! `--mirror-from any`), named by an IP address and a port (no host names: nothing
//! is looked up), over plain HTTP; its path is judged by the one name rule. The
//! fetch is one `GET` with `Connection: close`; redirects are never followed. The
//! answers: 200 stored; 400 a malformed request (a body, a bad URL); 403 not a peer;
//! 405 the name is taken (write-once, checked before fetching and again when
//! storing); 413 the file is larger than `--max-body-bytes`; 502 the source refused
//! the connection, answered anything but 200 (404 included), or broke off; 504 the
//! source sent less than [`MIN_BYTES_PER_SECOND`] on average over a read timeout (or
//! less than the rest of its answer): silent, or dripping its answer, which would
//! otherwise hold this connection and its thread for as long as the source likes.
//!
//! What this module may not do: connect anywhere `peers.rs` does not
//! allow, or keep a fetched byte in memory beyond one buffer.

use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::name::{self, NameError};
use crate::server::connection::{Connection, Next};
use crate::server::router::Request;
use crate::server::storage::Stored;

/// The query parameter that asks for a mirror.
pub const KEY: &str = "MirrorSource";

/// A source answer head longer than this is refused (502).
const MAX_HEAD_BYTES: usize = 64 * 1024;

/// Without a read timeout configured, a source silent this long is given up (504).
const FALLBACK_TIMEOUT: Duration = Duration::from_secs(30);

/// A source must send at least this much a second on average over each read timeout
/// (or the rest of its answer), else it is given up (504): a byte now and then is not
/// progress. The rate the server itself calls a stalled client (`STALLED_AFTER_MS`).
pub const MIN_BYTES_PER_SECOND: u64 = 64 * 1024;

/// The pace a source must keep: windows of one read timeout, each with at least
/// [`MIN_BYTES_PER_SECOND`] times its length received.
struct Pace {
    timeout: Duration,
    /// Bytes each window must bring.
    needed: u64,
    window_start: Instant,
    window_bytes: u64,
}

impl Pace {
    fn new(timeout: Duration) -> Pace {
        Pace {
            timeout,
            needed: (MIN_BYTES_PER_SECOND as f64 * timeout.as_secs_f64()) as u64,
            window_start: Instant::now(),
            window_bytes: 0,
        }
    }

    /// Sets the stream's read timeout to what is left of the window (a new window
    /// when this one is over and brought enough); `Silent` when it brought too little.
    fn before_read(&mut self, stream: &TcpStream) -> Result<(), Fetch> {
        let mut left = self.timeout.saturating_sub(self.window_start.elapsed());
        if left.is_zero() {
            if self.window_bytes < self.needed {
                return Err(Fetch::Silent);
            }
            self.window_start = Instant::now();
            self.window_bytes = 0;
            left = self.timeout;
        }
        stream
            .set_read_timeout(Some(left))
            .map_err(|e| network(e, "could not be set up"))
    }

    fn received(&mut self, n: usize) {
        self.window_bytes += n as u64;
    }
}

/// The name to store: the path, judged as a stored name (the query is the mirror's).
pub(crate) fn judge(request: &Request<'_>) -> Result<(), NameError> {
    name::validate_stored(request.path)
}

/// Where to fetch from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Source {
    pub address: SocketAddr,
    /// The request target to send, percent-encoded as our client writes it.
    pub target: String,
}

/// Parses `http://<ip>:<port>/<name>` (an IPv6 address in brackets), as sent:
/// unencoded, or percent-encoded.
pub(crate) fn parse_source(url: &str) -> Result<Source, String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or("The MirrorSource must be an http:// URL.")?;
    let (authority, path) = rest
        .split_once('/')
        .ok_or("The MirrorSource names no file.")?;
    let address: SocketAddr = authority
        .parse()
        .map_err(|_| "The MirrorSource must be <IP address>:<port> (no host names).")?;
    if address.port() == 0 {
        return Err("The MirrorSource's port is 0.".into());
    }
    let decoded = name::decode_request_target(&format!("/{path}"))
        .map_err(|e| format!("The MirrorSource's name is not allowed: {e}."))?;
    name::validate_stored(&decoded)
        .map_err(|e| format!("The MirrorSource's name is not allowed: {e}."))?;
    if decoded.contains('?') {
        return Err("The MirrorSource's name may not hold a query.".into());
    }
    let mut target = Vec::new();
    name::write_request_target(&mut target, &decoded);
    Ok(Source {
        address,
        target: String::from_utf8_lossy(&target).into_owned(),
    })
}

pub(crate) fn put(connection: &mut Connection<'_>, request: &Request<'_>) -> Next {
    if request.body_len > 0 {
        return connection.refuse(400, "A MirrorSource request has no body.");
    }
    let shared = connection.shared();
    let relative: PathBuf = request.path.split('/').collect();
    // The router matched on the key; the value is everything after it.
    let url = request
        .query
        .and_then(|query| query.split_once(&format!("{KEY}=")))
        .map(|(_, url)| url)
        .unwrap_or_default();
    let source = match parse_source(url) {
        Ok(source) => source,
        Err(reason) => {
            connection.error(400, &reason);
            return Ok(());
        }
    };
    if !shared.peers.allows(source.address) {
        connection.error(
            403,
            "The MirrorSource is not a data server of this cluster (see --mirror-from).",
        );
        return Ok(());
    }
    if shared
        .store
        .confined(&relative)
        .is_ok_and(|path| std::fs::symlink_metadata(path).is_ok())
    {
        connection.error(405, "The file exists; files are written once.");
        return Ok(());
    }
    let mut pending = match shared.store.begin_file(&relative, connection.folders()) {
        Ok(pending) => pending,
        Err(e) => {
            connection.storage_error(&e, "The file could not be created.");
            return Ok(());
        }
    };
    let timeout = match shared.config.read_timeout {
        Duration::ZERO => FALLBACK_TIMEOUT,
        timeout => timeout,
    };
    let len = match fetch(&source, timeout, shared.config.max_body_bytes, &mut pending) {
        Ok(len) => len,
        Err(Fetch::Source(reason)) => {
            connection.error(502, &reason);
            return Ok(());
        }
        Err(Fetch::Silent) => {
            connection.error(504, "The MirrorSource did not answer in time.");
            return Ok(());
        }
        Err(Fetch::TooLarge(limit)) => {
            connection.error(413, &format!("The file is larger than {limit} bytes."));
            return Ok(());
        }
        Err(Fetch::Store(e)) => {
            connection.storage_error(&e, "The file could not be written.");
            return Ok(());
        }
    };
    match pending.commit() {
        Ok(Stored::New) => {
            shared.files_stored.fetch_add(1, Ordering::Relaxed);
            shared.bytes_stored.fetch_add(len, Ordering::Relaxed);
            connection.ok_empty();
        }
        Ok(Stored::AlreadyExists) => {
            connection.error(405, "The file exists; files are written once.")
        }
        Ok(Stored::Pyramid) => connection.error(409, super::files::PYRAMID_OWNS),
        Err(e) => connection.storage_error(&e, "The file could not be written."),
    }
    Ok(())
}

/// Why a fetch failed.
#[derive(Debug)]
pub(crate) enum Fetch {
    /// The source refused, answered other than 200, or broke off (502).
    Source(String),
    /// The source was silent for the timeout (504).
    Silent,
    /// The file is larger than the limit (413).
    TooLarge(u64),
    /// Writing it here failed.
    Store(io::Error),
}

fn network(error: io::Error, what: &str) -> Fetch {
    match error.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => Fetch::Silent,
        _ => Fetch::Source(format!("The MirrorSource {what}: {error}.")),
    }
}

/// GETs the source's file into `into`; the number of bytes.
pub(crate) fn fetch(
    source: &Source,
    timeout: Duration,
    limit: u64,
    into: &mut impl Write,
) -> Result<u64, Fetch> {
    let mut stream = TcpStream::connect_timeout(&source.address, timeout)
        .map_err(|e| network(e, "could not be reached"))?;
    stream
        .set_read_timeout(Some(timeout))
        .and_then(|()| stream.set_write_timeout(Some(timeout)))
        .map_err(|e| network(e, "could not be set up"))?;
    let host = match source.address.ip() {
        IpAddr::V4(ip) => format!("{ip}:{}", source.address.port()),
        IpAddr::V6(ip) => format!("[{ip}]:{}", source.address.port()),
    };
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nAccept-Encoding: identity\r\n\r\n",
        source.target
    );
    stream
        .write_all(request.as_bytes())
        .map_err(|e| network(e, "could not be sent the request"))?;
    let mut pace = Pace::new(timeout);
    let mut buffer = vec![0u8; MAX_HEAD_BYTES];
    let mut filled = 0;
    let (head_len, length) = loop {
        if filled == buffer.len() {
            return Err(Fetch::Source(
                "The MirrorSource's answer head is too long.".into(),
            ));
        }
        pace.before_read(&stream)?;
        let n = stream
            .read(&mut buffer[filled..])
            .map_err(|e| network(e, "broke off"))?;
        pace.received(n);
        if n == 0 {
            return Err(Fetch::Source(
                "The MirrorSource closed without an answer.".into(),
            ));
        }
        filled += n;
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut response = httparse::Response::new(&mut headers);
        match response.parse(&buffer[..filled]) {
            Ok(httparse::Status::Complete(head_len)) => {
                let code = response.code.unwrap_or(0);
                if code != 200 {
                    return Err(Fetch::Source(format!(
                        "The MirrorSource answered {code} (redirects are not followed)."
                    )));
                }
                let mut length = None;
                for header in response.headers.iter() {
                    if header.name.eq_ignore_ascii_case("transfer-encoding")
                        || (header.name.eq_ignore_ascii_case("content-encoding")
                            && !header.value.eq_ignore_ascii_case(b"identity"))
                    {
                        return Err(Fetch::Source(
                            "The MirrorSource sent an encoded body.".into(),
                        ));
                    }
                    if header.name.eq_ignore_ascii_case("content-length") {
                        let value = std::str::from_utf8(header.value)
                            .ok()
                            .and_then(|v| v.trim().parse::<u64>().ok())
                            .ok_or_else(|| {
                                Fetch::Source("The MirrorSource's Content-Length is bad.".into())
                            })?;
                        length = Some(value);
                    }
                }
                break (head_len, length);
            }
            Ok(httparse::Status::Partial) => continue,
            Err(e) => {
                return Err(Fetch::Source(format!(
                    "The MirrorSource's answer is malformed: {e}."
                )))
            }
        }
    };
    if let Some(length) = length {
        if length > limit {
            return Err(Fetch::TooLarge(limit));
        }
    }
    // Without a length the body ends when the source closes (HTTP/1.0).
    let expected = length.unwrap_or(u64::MAX);
    let mut received = 0u64;
    let mut chunk = &buffer[head_len..filled];
    loop {
        let take = chunk
            .len()
            .min(usize::try_from(expected - received).unwrap_or(usize::MAX));
        if received + take as u64 > limit {
            return Err(Fetch::TooLarge(limit));
        }
        into.write_all(&chunk[..take]).map_err(Fetch::Store)?;
        received += take as u64;
        if received == expected {
            return Ok(received);
        }
        pace.before_read(&stream)?;
        let n = stream
            .read(&mut buffer)
            .map_err(|e| network(e, "broke off"))?;
        pace.received(n);
        if n == 0 {
            return match length {
                None => Ok(received),
                Some(_) => Err(Fetch::Source(format!(
                    "The MirrorSource broke off after {received} of {expected} bytes."
                ))),
            };
        }
        chunk = &buffer[..n];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        #[test]
        fn source_parsing_never_panics(url in "(http://)?[0-9.:\\[\\]a-f]{0,24}(/[a-z%./?]{0,12})?") {
            if let Ok(source) = parse_source(&url) {
                proptest::prop_assert!(source.target.starts_with('/'));
                proptest::prop_assert!(source.address.port() != 0);
            }
        }
    }

    #[test]
    fn parses_pymes_source_urls() {
        assert_eq!(
            parse_source("http://10.0.0.2:15348/dir/file.pzf"),
            Ok(Source {
                address: "10.0.0.2:15348".parse().unwrap(),
                target: "/dir/file.pzf".into()
            })
        );
        assert_eq!(
            parse_source("http://[::1]:80/d/%C3%A9").unwrap().target,
            "/d/%C3%A9"
        );
        for bad in [
            "https://10.0.0.2:1/x",
            "http://host.example:1/x",
            "http://10.0.0.2/x",
            "http://10.0.0.2:0/x",
            "http://10.0.0.2:1/",
            "http://10.0.0.2:1",
            "http://10.0.0.2:1/../x",
            "http://10.0.0.2:1/a?b=1",
            "http://10.0.0.2:1/a b",
            "http://10.0.0.2:1/__status",
            "http://user@10.0.0.2:1/x",
            "ftp://10.0.0.2:1/x",
        ] {
            assert!(parse_source(bad).is_err(), "{bad}");
        }
    }
}
