//! Shared by the data server's tests (`tests/server*.rs`): a server on loopback in a
//! temporary folder, and a raw HTTP client that reads answers one by one.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::Duration;

use pyme_streaming::server::{DataServer, ServerConfig};

/// A started server and the folder holding its root (`<dir>/root`), so that a test can
/// check nothing was written beside the root.
pub struct TestServer {
    pub server: DataServer,
    pub dir: tempfile::TempDir,
}

impl TestServer {
    pub fn start() -> TestServer {
        TestServer::with(|_| {})
    }

    pub fn with(adjust: impl FnOnce(&mut ServerConfig)) -> TestServer {
        let dir = tempfile::tempdir().unwrap();
        let mut config = ServerConfig {
            root: dir.path().join("root"),
            serverfilter: "test-cluster".into(),
            ..ServerConfig::default()
        };
        adjust(&mut config);
        let server = DataServer::start(config).unwrap();
        TestServer { server, dir }
    }

    pub fn root(&self) -> &Path {
        self.server.root()
    }

    pub fn connect(&self) -> Client {
        Client::connect(self.server.local_addr())
    }
}

impl TestServer {
    pub fn connect_and_get(&self, path: &str) -> Response {
        let mut client = self.connect();
        client.send(&get(path));
        client.response()
    }
}

pub struct Client {
    pub writer: TcpStream,
    pub reader: BufReader<TcpStream>,
}

#[derive(Debug)]
pub struct Response {
    pub code: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

impl Client {
    pub fn connect(address: impl std::net::ToSocketAddrs) -> Client {
        let stream = TcpStream::connect(address).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        Client {
            writer: stream.try_clone().unwrap(),
            reader: BufReader::new(stream),
        }
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.writer.write_all(bytes).unwrap();
    }

    /// Reads one final answer (skipping 1xx), whose body is framed by Content-Length.
    pub fn response(&mut self) -> Response {
        self.response_to(false)
    }

    pub fn response_to(&mut self, head_request: bool) -> Response {
        loop {
            let mut line = String::new();
            self.reader.read_line(&mut line).unwrap();
            let code: u16 = line
                .split(' ')
                .nth(1)
                .unwrap_or_else(|| panic!("bad status line {line:?}"))
                .parse()
                .unwrap();
            let mut headers = Vec::new();
            loop {
                let mut line = String::new();
                self.reader.read_line(&mut line).unwrap();
                let line = line.trim_end();
                if line.is_empty() {
                    break;
                }
                let (name, value) = line.split_once(':').unwrap();
                headers.push((name.to_owned(), value.trim().to_owned()));
            }
            if (100..200).contains(&code) {
                continue;
            }
            let mut response = Response {
                code,
                headers,
                body: Vec::new(),
            };
            let length: usize = response
                .header("Content-Length")
                .expect("every answer has a Content-Length")
                .parse()
                .unwrap();
            if !head_request {
                response.body = vec![0; length];
                self.reader.read_exact(&mut response.body).unwrap();
            }
            return response;
        }
    }

    /// Whether the server closed the connection (end of stream or reset).
    pub fn is_closed(&mut self) -> bool {
        let mut byte = [0u8; 1];
        match self.reader.read(&mut byte) {
            Ok(0) => true,
            Ok(_) => false,
            Err(e) => e.kind() != std::io::ErrorKind::WouldBlock,
        }
    }
}

pub fn put(name: &str, body: &[u8]) -> Vec<u8> {
    let mut request = format!(
        "PUT /{name} HTTP/1.1\r\nConnection: keep-alive\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    request.extend_from_slice(body);
    request
}

pub fn get(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\n\r\n").into_bytes()
}

pub fn json(body: &[u8]) -> serde_json::Value {
    serde_json::from_slice(body).unwrap()
}

/// A `pyme-stream serve` child process (killed on drop), for what must be measured
/// on the server's own process: its memory.
pub struct ServeChild {
    pub child: std::process::Child,
    pub address: std::net::SocketAddr,
    pub dir: tempfile::TempDir,
}

impl ServeChild {
    pub fn start(extra: &[&str]) -> ServeChild {
        let dir = tempfile::tempdir().unwrap();
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_pyme-stream"))
            .args(["serve", "--advertise", "none", "--port", "0", "--root"])
            .arg(dir.path().join("root"))
            .args(extra)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("pyme-stream serve starts");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let address = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .parse()
            .unwrap();
        ServeChild {
            child,
            address,
            dir,
        }
    }

    pub fn root(&self) -> std::path::PathBuf {
        self.dir.path().join("root")
    }

    pub fn connect(&self) -> Client {
        Client::connect(self.address)
    }

    /// A field of `/proc/<pid>/status` in KiB (`VmHWM`: the peak resident size).
    pub fn status_kib(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        status
            .lines()
            .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
            .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or_else(|| panic!("no {field} in {status}"))
    }
}

impl Drop for ServeChild {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A PUT of `body` sent with `Content-Encoding: gzip`.
pub fn put_gzip(name: &str, body: &[u8]) -> Vec<u8> {
    let mut request = format!(
        "PUT /{name} HTTP/1.1\r\nContent-Encoding: gzip\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    request.extend_from_slice(body);
    request
}

/// A gzip bomb: one gzip member of 1 MiB of zeros, repeated `mebibytes` times (a
/// body of about 1 KiB per MiB it decodes to).
pub fn gzip_bomb(mebibytes: usize) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    encoder.write_all(&vec![0; 1 << 20]).unwrap();
    encoder.finish().unwrap().repeat(mebibytes)
}
