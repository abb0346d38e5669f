//! Shared by the integration tests: real data servers on loopback.
#![allow(dead_code)]

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
        let mut files = Vec::new();
        collect(self.root.path(), self.root.path(), &mut files);
        files.sort();
        files
    }
}

fn collect(root: &Path, dir: &Path, files: &mut Vec<String>) {
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            collect(root, &path, files);
        } else {
            files.push(path.strip_prefix(root).unwrap().to_string_lossy().into_owned());
        }
    }
}

pub fn start_servers(n: usize) -> Vec<TestServer> {
    (0..n).map(|_| TestServer::start()).collect()
}

pub fn addresses(servers: &[TestServer]) -> Vec<String> {
    servers.iter().map(TestServer::address).collect()
}

/// A port on loopback that nothing listens on.
pub fn dead_address() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap().to_string();
    drop(listener);
    address
}
