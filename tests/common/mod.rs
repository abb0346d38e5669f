//! Shared by the integration tests: real data servers on loopback.
#![allow(dead_code)]

pub mod blocked;
pub mod c_header;
pub mod counting;
#[cfg(target_os = "linux")] // ip netns, libc
pub mod netns;
pub mod proxy;
pub mod recording;
pub mod records;
pub mod skip;

use std::path::{Path, PathBuf};

use pyme_streaming::server::{DataServer, ServerConfig};

/// A data server with its own temporary root.
pub struct TestServer {
    pub server: DataServer,
    pub root: tempfile::TempDir,
}

impl TestServer {
    pub fn start() -> TestServer {
        let root = tempfile::tempdir().expect("temp dir");
        let server = DataServer::start(ServerConfig {
            root: root.path().to_owned(),
            port: 0,
            ..ServerConfig::default()
        })
        .expect("server starts");
        TestServer { server, root }
    }

    pub fn address(&self) -> String {
        self.server.local_addr().to_string()
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.root.path().join(name)
    }

    pub fn read(&self, name: &str) -> Option<Vec<u8>> {
        std::fs::read(self.path(name)).ok()
    }

    /// Every regular file under the root, relative, sorted.
    pub fn files(&self) -> Vec<String> {
        files_under(self.root.path())
            .iter()
            .map(|path| relative(self.root.path(), path))
            .collect()
    }
}

/// What a data server keeps in its root by design, not data and not leftovers: the
/// root's lock file and the journals beside appended files (`src/server/lock.rs`,
/// `journal.rs`). Temporary files (`.pyme-part-`) are not: tests look for them.
pub fn is_server_bookkeeping(name: &str) -> bool {
    name == pyme_streaming::server::LOCK_NAME || name.starts_with(".pyme-len-")
}

/// Every regular file under `dir`, recursively, sorted, but the server's
/// bookkeeping ([`is_server_bookkeeping`]). A folder that cannot be read (or
/// vanishes meanwhile, as a server renames and removes files) counts as empty.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    fn walk(dir: &Path, files: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(&path, files);
            } else if !is_server_bookkeeping(&entry.file_name().to_string_lossy()) {
                files.push(path);
            }
        }
    }
    let mut files = Vec::new();
    walk(dir, &mut files);
    files.sort();
    files
}

/// `path` relative to `root`, as text.
pub fn relative(root: &Path, path: &Path) -> String {
    path.strip_prefix(root)
        .unwrap()
        .to_string_lossy()
        .into_owned()
}

pub fn start_servers(n: usize) -> Vec<TestServer> {
    (0..n).map(|_| TestServer::start()).collect()
}

pub fn addresses(servers: &[TestServer]) -> Vec<String> {
    servers.iter().map(TestServer::address).collect()
}

/// A loopback port that nothing listens on (bound, then released).
pub fn dead_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind loopback");
    listener.local_addr().unwrap().port()
}

/// The address of [`dead_port`] on 127.0.0.1.
pub fn dead_address() -> String {
    format!("127.0.0.1:{}", dead_port())
}

/// The `pyme-stream` program built with these tests.
pub fn pyme_stream() -> std::process::Command {
    std::process::Command::new(env!("CARGO_BIN_EXE_pyme-stream"))
}

/// A `pyme-stream serve` process, killed on drop.
pub struct ServeProcess {
    pub child: std::process::Child,
    pub address: String,
    pub root: PathBuf,
}

impl ServeProcess {
    /// Starts `pyme-stream serve` on `port` (0: any) with `root`, and waits
    /// for its `listening on` line.
    pub fn start(root: &Path, port: u16, extra: &[&str]) -> ServeProcess {
        use std::io::BufRead;
        let mut child = pyme_stream()
            .args([
                "serve",
                "--advertise",
                "none",
                "--port",
                &port.to_string(),
                "--root",
            ])
            .arg(root)
            .args(extra)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("pyme-stream serve starts");
        let stdout = child.stdout.take().unwrap();
        let mut line = String::new();
        std::io::BufReader::new(stdout)
            .read_line(&mut line)
            .unwrap();
        let address = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .to_owned();
        ServeProcess {
            child,
            address,
            root: root.to_owned(),
        }
    }

    pub fn port(&self) -> u16 {
        self.address.rsplit_once(':').unwrap().1.parse().unwrap()
    }

    /// SIGSTOP: the server stops reading and answering; its connections stay
    /// open, so files sent to it stay in flight.
    #[cfg(unix)]
    pub fn pause(&self) {
        // SAFETY: a plain system call on our own child's pid.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGSTOP) };
    }

    /// SIGKILL: no clean shutdown, connections cut.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ServeProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// What a [`FakeServer`] does with one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Answer(u16),
    /// Writes half an answer head, then closes the connection.
    CloseMidAnswer,
    /// Reads on, never answers.
    Silent,
    /// Sleeps this many milliseconds, then answers 200: a slow server.
    SlowOk(u64),
    /// Writes the head and part of the body of an error answer, sleeps this
    /// many milliseconds, then writes the rest.
    StallMidAnswer(u64),
}

/// A hand-driven HTTP server for faults a real one does not make. `decide` gets
/// the request path and the connection number (0 for the first connection).
pub struct FakeServer {
    pub address: String,
}

impl FakeServer {
    pub fn start(decide: impl Fn(&str, usize) -> Action + Send + Sync + 'static) -> FakeServer {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let decide = std::sync::Arc::new(decide);
        std::thread::spawn(move || {
            for (number, socket) in listener.incoming().enumerate() {
                let Ok(socket) = socket else { return };
                let decide = std::sync::Arc::clone(&decide);
                std::thread::spawn(move || serve_fake(socket, number, &*decide));
            }
        });
        FakeServer { address }
    }
}

fn serve_fake(
    mut socket: std::net::TcpStream,
    connection: usize,
    decide: &dyn Fn(&str, usize) -> Action,
) {
    use std::io::{Read, Write};
    let mut buf = Vec::new();
    let mut chunk = [0u8; 65536];
    let mut silent = false;
    loop {
        let mut headers = [httparse::EMPTY_HEADER; 16];
        let mut request = httparse::Request::new(&mut headers);
        let parsed = request.parse(&buf);
        if let Ok(httparse::Status::Complete(head_len)) = parsed {
            let length: usize = request
                .headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case("content-length"))
                .and_then(|h| std::str::from_utf8(h.value).ok()?.trim().parse().ok())
                .unwrap_or(0);
            if buf.len() >= head_len + length {
                let path = request.path.unwrap_or("/").to_owned();
                buf.drain(..head_len + length);
                if silent {
                    continue;
                }
                match decide(&path[1..], connection) {
                    Action::Answer(status) => {
                        let body = if status == 200 { "" } else { "fake failure\n" };
                        let answer = format!(
                            "HTTP/1.1 {status} Fake\r\nContent-Length: {}\r\n\r\n{body}",
                            body.len()
                        );
                        if socket.write_all(answer.as_bytes()).is_err() {
                            return;
                        }
                    }
                    Action::CloseMidAnswer => {
                        // Half an answer, then an orderly end of our side, read on
                        // until the client closes: it reads the half answer, then the
                        // end (a truncated answer), every time. Closing with its later
                        // requests unread would reset the connection instead, which
                        // may discard the half answer; and a reset that the client's
                        // writer sees first reads as a clean close to its reader (a
                        // different fault, chosen by luck).
                        let _ = socket.write_all(b"HTTP/1.1 200 OK\r\nContent-Len");
                        let _ = socket.shutdown(std::net::Shutdown::Write);
                        let _ = socket.set_read_timeout(Some(std::time::Duration::from_secs(60)));
                        while matches!(socket.read(&mut chunk), Ok(n) if n > 0) {}
                        return;
                    }
                    Action::Silent => silent = true,
                    Action::StallMidAnswer(ms) => {
                        let (head, rest) = (
                            b"HTTP/1.1 507 Full\r\nContent-Length: 10\r\n\r\ndisk",
                            b" full\n",
                        );
                        if socket.write_all(head).is_err() {
                            return;
                        }
                        std::thread::sleep(std::time::Duration::from_millis(ms));
                        if socket.write_all(rest).is_err() {
                            return;
                        }
                    }
                    Action::SlowOk(ms) => {
                        std::thread::sleep(std::time::Duration::from_millis(ms));
                        let answer = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
                        if socket.write_all(answer).is_err() {
                            return;
                        }
                    }
                }
                continue;
            }
        }
        match socket.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// Runs `command`, panicking with its output unless it succeeds.
pub fn run(command: &mut std::process::Command) -> std::process::Output {
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"));
    if !output.status.success() {
        panic!(
            "{command:?} failed ({}):\n--- stdout\n{}\n--- stderr\n{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    output
}
