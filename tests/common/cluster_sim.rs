//! A simulated cluster for tests: data servers each in a network namespace of
//! their own, joined to a client namespace by a veth pair whose rate `tc` sets
//! (HTB, both directions). The Rust twin of `benches/cluster_sim.sh`.
//!
//! Every namespace is made here and deleted on drop (which also deletes its
//! veth ends and qdiscs); the namespaces have no link to the root namespace, so
//! no packet reaches a real interface. Needs root and iproute2:
//! [`SimCluster::unavailable`] says why not, so a test can skip loudly.
//!
//! Up to 64 servers (the acceptance tests of issue 27 run 32); a link with an
//! empty rate is not shaped (dozens of shaped links cost the machine more
//! than the test needs).
//!
//! Out of scope: packet loss and delay (the bench script does loss with
//! nftables; this kernel has no netem), timing assertions.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

const PORT: u16 = 15348;

/// One server and its link.
#[derive(Debug, Clone)]
pub struct LinkSpec {
    /// A tc rate: `1gbit`, `250mbit`.
    pub rate: String,
    /// `serve --store-rate`: a disk writing this many MB/s.
    pub store_mb_per_s: Option<f64>,
}

impl LinkSpec {
    pub fn rate(rate: &str) -> LinkSpec {
        LinkSpec {
            rate: rate.to_owned(),
            store_mb_per_s: None,
        }
    }
}

/// A client namespace and N server namespaces with a server running in each.
pub struct SimCluster {
    pub client_ns: String,
    server_ns: Vec<String>,
    servers: Vec<Option<Child>>,
    links: Vec<LinkSpec>,
    roots: Vec<tempfile::TempDir>,
    /// `10.77.I.2:15348`, the address of server I as the client sees it.
    pub addresses: Vec<String>,
}

static CLUSTERS: AtomicUsize = AtomicUsize::new(0);

fn ip(args: &[&str]) -> Result<(), String> {
    let output = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("ip: {e}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}

fn in_ns(ns: &str, args: &[&str]) -> Result<(), String> {
    let mut all = vec!["netns", "exec", ns];
    all.extend_from_slice(args);
    ip(&all)
}

impl SimCluster {
    /// Why namespaces cannot be made here (not root, no iproute2), or `None`.
    pub fn unavailable() -> Option<String> {
        // SAFETY: a plain system call without arguments.
        if unsafe { libc::geteuid() } != 0 {
            return Some("not root".into());
        }
        for tool in ["ip", "tc"] {
            let found = Command::new(tool)
                .arg("-V")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok();
            if !found {
                return Some(format!("no `{tool}` (iproute2)"));
            }
        }
        None
    }

    /// Builds the namespaces, the links and starts the servers (storing into
    /// temporary roots).
    pub fn start(links: &[LinkSpec]) -> Result<SimCluster, String> {
        assert!((1..=64).contains(&links.len()), "1 to 64 servers");
        let tag = format!(
            "pst{}t{}",
            std::process::id(),
            CLUSTERS.fetch_add(1, Ordering::Relaxed)
        );
        let mut cluster = SimCluster {
            client_ns: format!("{tag}-c"),
            server_ns: Vec::new(),
            servers: Vec::new(),
            links: links.to_vec(),
            roots: Vec::new(),
            addresses: Vec::new(),
        };
        ip(&["netns", "add", &cluster.client_ns])?;
        in_ns(&cluster.client_ns, &["ip", "link", "set", "lo", "up"])?;
        for (i, link) in links.iter().enumerate() {
            let server_ns = format!("{tag}-s{i}");
            ip(&["netns", "add", &server_ns])?;
            cluster.server_ns.push(server_ns.clone());
            let client_end = format!("s{i}");
            let client_address = format!("10.77.{i}.1/30");
            let server_address = format!("10.77.{i}.2/30");
            let client = cluster.client_ns.clone();
            in_ns(&server_ns, &["ip", "link", "set", "lo", "up"])?;
            in_ns(
                &client,
                &[
                    "ip",
                    "link",
                    "add",
                    &client_end,
                    "type",
                    "veth",
                    "peer",
                    "name",
                    "eth0",
                    "netns",
                    &server_ns,
                ],
            )?;
            in_ns(
                &client,
                &["ip", "addr", "add", &client_address, "dev", &client_end],
            )?;
            in_ns(
                &server_ns,
                &["ip", "addr", "add", &server_address, "dev", "eth0"],
            )?;
            if !link.rate.is_empty() {
                shape(&client, &client_end, &link.rate)?;
                shape(&server_ns, "eth0", &link.rate)?;
            }
            in_ns(&client, &["ip", "link", "set", &client_end, "up"])?;
            in_ns(&server_ns, &["ip", "link", "set", "eth0", "up"])?;
            cluster
                .roots
                .push(tempfile::tempdir().map_err(|e| e.to_string())?);
            cluster.servers.push(None);
            cluster.addresses.push(format!("10.77.{i}.2:{PORT}"));
            cluster.start_server(i)?;
        }
        Ok(cluster)
    }

    /// Starts (or restarts) server `i` and waits until it listens.
    pub fn start_server(&mut self, i: usize) -> Result<(), String> {
        use std::io::BufRead;
        let bind = format!("10.77.{i}.2");
        let mut command = Command::new("ip");
        command
            .args(["netns", "exec", &self.server_ns[i]])
            .arg(env!("CARGO_BIN_EXE_pyme-stream"))
            .args(["serve", "--advertise", "none", "--bind", &bind])
            .args(["--port", &PORT.to_string(), "--root"])
            .arg(self.roots[i].path())
            .stdout(Stdio::piped());
        if let Some(rate) = self.links[i].store_mb_per_s {
            command.args(["--store-rate", &rate.to_string()]);
        }
        let mut child = command.spawn().map_err(|e| format!("serve: {e}"))?;
        let stdout = child.stdout.take().expect("piped");
        let mut line = String::new();
        let _ = std::io::BufReader::new(stdout).read_line(&mut line);
        self.servers[i] = Some(child);
        if line.starts_with("listening on") {
            Ok(())
        } else {
            Err(format!("server {i} did not start: {line:?}"))
        }
    }

    /// SIGKILL for server `i`: a crash, its connections cut.
    pub fn kill_server(&mut self, i: usize) {
        if let Some(mut child) = self.servers[i].take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGSTOP for server `i`: a hung process; its kernel still accepts
    /// connections and takes bytes until its buffers are full.
    pub fn stop_server(&self, i: usize) {
        if let Some(child) = &self.servers[i] {
            // SAFETY: a plain system call on our own child's pid (`ip netns
            // exec` execs the server, so the pid is the server's).
            unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGSTOP) };
            // kill(2) returns before every thread has stopped: a busy thread may
            // still answer a request sent after this call. Return once all have.
            let tasks = format!("/proc/{}/task", child.id());
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
            while !all_stopped(&tasks) {
                assert!(
                    std::time::Instant::now() < deadline,
                    "server {i} did not stop within 10 s"
                );
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
        }
    }

    /// Runs `work` on a thread inside the client namespace (setns(2) moves
    /// only the calling thread; threads it starts, and sockets they open,
    /// are in the namespace too): a streamer made there reaches the servers.
    pub fn in_client_ns<T: Send>(&self, work: impl FnOnce() -> T + Send) -> T {
        let path = format!("/run/netns/{}", self.client_ns);
        std::thread::scope(|scope| {
            scope
                .spawn(move || {
                    use std::os::fd::AsRawFd;
                    let ns = std::fs::File::open(&path).expect("the client namespace");
                    // SAFETY: setns(2) on a namespace file we opened; it
                    // changes this thread only.
                    let entered = unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) };
                    assert_eq!(entered, 0, "setns: {}", std::io::Error::last_os_error());
                    work()
                })
                .join()
                .expect("the work in the client namespace")
        })
    }

    /// Cuts server `i` off without a word, as a node that loses power or a
    /// switch port that dies: every packet into or out of its namespace is
    /// dropped (nftables), its link stays up and its server keeps running, so
    /// the client gets no reset, no close and no error, only silence.
    pub fn cut_link(&self, i: usize) -> Result<(), String> {
        let ns = &self.server_ns[i];
        in_ns(ns, &["nft", "add", "table", "inet", "pyme_cut"])?;
        for hook in ["input", "output"] {
            in_ns(
                ns,
                &[
                    "nft", "add", "chain", "inet", "pyme_cut", hook, "{", "type", "filter", "hook",
                    hook, "priority", "0", ";", "policy", "drop", ";", "}",
                ],
            )?;
        }
        Ok(())
    }

    /// Undoes [`SimCluster::cut_link`].
    pub fn mend_link(&self, i: usize) -> Result<(), String> {
        in_ns(
            &self.server_ns[i],
            &["nft", "delete", "table", "inet", "pyme_cut"],
        )
    }

    /// A command run inside the client namespace.
    pub fn client_command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut command = Command::new("ip");
        command
            .args(["netns", "exec", &self.client_ns])
            .arg(program);
        command
    }

    pub fn root(&self, i: usize) -> &Path {
        self.roots[i].path()
    }

    /// The names of the files server `i` stored in folder `prefix` (a bench's
    /// `--prefix`).
    pub fn stored_in(&self, i: usize, prefix: &str) -> Vec<String> {
        self.stored(i)
            .iter()
            .filter(|path| path.parent().is_some_and(|dir| dir.ends_with(prefix)))
            .map(|path| path.file_name().unwrap().to_string_lossy().into_owned())
            .collect()
    }

    /// The distinct names stored in folder `prefix` over every server.
    pub fn distinct_in(&self, prefix: &str) -> std::collections::HashSet<String> {
        (0..self.servers.len())
            .flat_map(|i| self.stored_in(i, prefix))
            .collect()
    }

    /// Regular files stored by server `i` (hidden ones, in progress, skipped).
    pub fn stored(&self, i: usize) -> Vec<PathBuf> {
        fn walk(dir: &Path, files: &mut Vec<PathBuf>) {
            for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
                let path = entry.path();
                if path.is_dir() {
                    walk(&path, files);
                } else if !entry.file_name().to_string_lossy().starts_with('.') {
                    files.push(path);
                }
            }
        }
        let mut files = Vec::new();
        walk(self.root(i), &mut files);
        files
    }
}

/// RATE on DEV's egress in namespace NS (both ends are shaped: one link,
/// both directions).
fn shape(ns: &str, dev: &str, rate: &str) -> Result<(), String> {
    in_ns(
        ns,
        &[
            "tc", "qdisc", "add", "dev", dev, "root", "handle", "1:", "htb", "default", "10",
        ],
    )?;
    in_ns(
        ns,
        &[
            "tc", "class", "add", "dev", dev, "parent", "1:", "classid", "1:10", "htb", "rate",
            rate, "ceil", rate, "burst", "64k", "cburst", "64k", "quantum", "200000",
        ],
    )
}

impl Drop for SimCluster {
    fn drop(&mut self) {
        for i in 0..self.servers.len() {
            self.kill_server(i);
        }
        // Deleting a namespace deletes its veth ends and their qdiscs.
        for ns in self.server_ns.iter().chain([&self.client_ns]) {
            let _ = ip(&["netns", "del", ns]);
        }
    }
}

/// Whether every thread under `/proc/<pid>/task` is stopped (state `T` or `t`).
fn all_stopped(tasks: &str) -> bool {
    let Ok(entries) = std::fs::read_dir(tasks) else {
        return true; // gone: it answers nothing either
    };
    entries.flatten().all(|task| {
        std::fs::read_to_string(task.path().join("stat")).map_or(true, |stat| {
            // The state follows the command name in parentheses.
            let state = stat.rsplit_once(") ").map(|(_, rest)| rest.chars().next());
            matches!(state, Some(Some('T' | 't')))
        })
    })
}
