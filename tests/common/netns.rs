//! Network namespaces for the soak test: a client namespace joined by a veth
//! pair to each of N server namespaces, with a rate limit, delay and loss on
//! every link, and `pyme-stream serve` processes run inside the server
//! namespaces. Everything is created by the test and removed when the
//! [`Topology`] is dropped, also when the test panics.
//!
//! It may not: touch the host's own interfaces, routes or firewall, use
//! addresses outside the namespaces it made, or leave anything behind: every
//! namespace is named `pyme-soak-<pid>-<role>` and deleted on drop (which
//! deletes its veth ends and firewall tables with it).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// Why namespaces cannot be used here, or `None` when they can.
pub fn unavailable() -> Option<String> {
    // SAFETY: a plain system call without arguments.
    if unsafe { libc::geteuid() } != 0 {
        return Some("not root (network namespaces need CAP_NET_ADMIN)".into());
    }
    match Command::new("ip").arg("-V").output() {
        Ok(output) if output.status.success() => {}
        _ => return Some("the `ip` command (iproute2) is missing".into()),
    }
    match Command::new("tc").arg("-V").output() {
        Ok(output) if output.status.success() => {}
        _ => return Some("the `tc` command (iproute2) is missing".into()),
    }
    let probe = format!("pyme-soak-{}-probe", std::process::id());
    let created = Command::new("ip")
        .args(["netns", "add", &probe])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    let _ = Command::new("ip").args(["netns", "del", &probe]).output();
    if !created {
        return Some("cannot create a network namespace here".into());
    }
    None
}

/// How every link is shaped, in each direction.
#[derive(Debug, Clone, Copy)]
pub struct LinkShape {
    pub rate_mbit: u32,
    pub delay_ms: u32,
    /// Packets dropped, per thousand.
    pub loss_per_mille: u32,
}

/// A client namespace and `n` server namespaces, each joined to the client by
/// its own veth pair on `10.77.<i>.0/24` (client `.1`, server `.2`).
pub struct Topology {
    pub client: String,
    pub servers: Vec<String>,
    /// What shaping the kernel allowed (netem, or tbf and nftables as a fallback).
    pub shaping: String,
}

impl Topology {
    pub fn create(n_servers: usize, shape: LinkShape) -> Result<Topology, String> {
        let prefix = format!("pyme-soak-{}", std::process::id());
        let mut topology = Topology {
            client: format!("{prefix}-c"),
            servers: Vec::new(),
            shaping: String::new(),
        };
        // Created one by one, and recorded first: a failure half way still
        // removes what exists (Drop).
        ip(&["netns", "add", &topology.client])?;
        in_ns(&topology.client, &["ip", "link", "set", "lo", "up"])?;
        let mut netem = true;
        let mut shapings = Vec::new();
        for i in 0..n_servers {
            let server = format!("{prefix}-s{i}");
            ip(&["netns", "add", &server])?;
            topology.servers.push(server.clone());
            in_ns(&server, &["ip", "link", "set", "lo", "up"])?;
            let (client_end, server_end) = (format!("vc{i}"), format!("vs{i}"));
            ip(&[
                "link",
                "add",
                &client_end,
                "netns",
                &topology.client,
                "type",
                "veth",
                "peer",
                "name",
                &server_end,
                "netns",
                &server,
            ])?;
            for (ns, end, address) in [
                (&topology.client, &client_end, format!("10.77.{i}.1/24")),
                (&server, &server_end, format!("10.77.{i}.2/24")),
            ] {
                in_ns(ns, &["ip", "addr", "add", &address, "dev", end])?;
                in_ns(ns, &["ip", "link", "set", end, "up"])?;
                if netem {
                    netem = shape_with_netem(ns, end, shape).is_ok();
                }
                if !netem {
                    shape_with_tbf(ns, end, shape)?;
                }
            }
        }
        if netem {
            shapings.push(format!(
                "netem: {} Mbit/s, {} ms delay, {} per mille loss each way",
                shape.rate_mbit, shape.delay_ms, shape.loss_per_mille
            ));
        } else {
            shapings.push(format!(
                "tbf: {} Mbit/s each way (no netem in this kernel: no delay)",
                shape.rate_mbit
            ));
            let namespaces: Vec<String> = std::iter::once(topology.client.clone())
                .chain(topology.servers.iter().cloned())
                .collect();
            let lossy = namespaces
                .iter()
                .all(|ns| drop_with_nftables(ns, shape.loss_per_mille).is_ok());
            shapings.push(if lossy {
                format!(
                    "nftables: {} per mille of outgoing packets dropped",
                    shape.loss_per_mille
                )
            } else {
                "no loss (neither netem nor nftables)".into()
            });
        }
        topology.shaping = shapings.join("; ");
        Ok(topology)
    }

    /// The address of server `i`, as the client namespace reaches it.
    pub fn server_ip(&self, i: usize) -> String {
        format!("10.77.{i}.2")
    }

    /// `program args` to be run inside namespace `ns`.
    pub fn command(&self, ns: &str, program: &Path) -> Command {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", ns]).arg(program);
        command
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        for ns in std::iter::once(&self.client).chain(&self.servers) {
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
        }
    }
}

fn ip(args: &[&str]) -> Result<(), String> {
    run("ip", args)
}

fn in_ns(ns: &str, command: &[&str]) -> Result<(), String> {
    let mut args = vec!["netns", "exec", ns];
    args.extend_from_slice(command);
    run("ip", &args)
}

fn run(program: &str, args: &[&str]) -> Result<(), String> {
    let output = Command::new(program)
        .args(args)
        .output()
        .map_err(|e| format!("{program}: {e}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{program} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}

fn shape_with_netem(ns: &str, device: &str, shape: LinkShape) -> Result<(), String> {
    let (rate, delay) = (
        format!("{}mbit", shape.rate_mbit),
        format!("{}ms", shape.delay_ms),
    );
    let loss = format!("{}%", f64::from(shape.loss_per_mille) / 10.0);
    in_ns(
        ns,
        &[
            "tc", "qdisc", "add", "dev", device, "root", "netem", "delay", &delay, "loss", &loss,
            "rate", &rate,
        ],
    )
}

fn shape_with_tbf(ns: &str, device: &str, shape: LinkShape) -> Result<(), String> {
    let rate = format!("{}mbit", shape.rate_mbit);
    in_ns(
        ns,
        &[
            "tc", "qdisc", "add", "dev", device, "root", "tbf", "rate", &rate, "burst", "64kb",
            "latency", "100ms",
        ],
    )
}

/// Random loss without netem: the namespace's own firewall drops a share of
/// its outgoing packets (the table lives and dies with the namespace).
fn drop_with_nftables(ns: &str, per_mille: u32) -> Result<(), String> {
    let limit = per_mille.to_string();
    in_ns(ns, &["nft", "add", "table", "inet", "pyme_soak"])?;
    in_ns(
        ns,
        &[
            "nft",
            "add",
            "chain",
            "inet",
            "pyme_soak",
            "out",
            "{ type filter hook output priority 0; }",
        ],
    )?;
    in_ns(
        ns,
        &[
            "nft",
            "add",
            "rule",
            "inet",
            "pyme_soak",
            "out",
            "numgen",
            "random",
            "mod",
            "1000",
            "<",
            &limit,
            "drop",
        ],
    )
}

/// A `pyme-stream serve` process inside a namespace, killed on drop.
pub struct NsServer {
    child: Option<Child>,
    pub ns: String,
    pub address: String,
    pub root: PathBuf,
}

impl NsServer {
    /// Starts the server in `ns`, bound to `ip:port`, and waits for its
    /// `listening on` line.
    pub fn start(topology: &Topology, ns: &str, ip: &str, port: u16, root: &Path) -> NsServer {
        use std::io::BufRead;
        let mut child = topology
            .command(ns, Path::new(env!("CARGO_BIN_EXE_pyme-stream")))
            .args(["serve", "--advertise", "none", "--bind", ip])
            .args(["--port", &port.to_string(), "--root"])
            .arg(root)
            .stdout(Stdio::piped())
            .spawn()
            .expect("ip netns exec pyme-stream serve starts");
        let stdout = child.stdout.take().unwrap();
        let mut line = String::new();
        std::io::BufReader::new(stdout)
            .read_line(&mut line)
            .unwrap();
        let address = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?} from the server in {ns}"))
            .to_owned();
        NsServer {
            child: Some(child),
            ns: ns.to_owned(),
            address,
            root: root.to_owned(),
        }
    }

    fn signal(&self, signal: libc::c_int) {
        if let Some(child) = &self.child {
            // SAFETY: a plain system call on our own child's pid (`ip netns
            // exec` execs the server, so the pid is the server's).
            unsafe { libc::kill(child.id() as libc::pid_t, signal) };
        }
    }

    /// The server's process id (`ip netns exec` execs the server), while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// SIGSTOP: it stops reading and answering, connections stay open.
    pub fn pause(&self) {
        self.signal(libc::SIGSTOP);
    }

    pub fn resume(&self) {
        self.signal(libc::SIGCONT);
    }

    /// SIGKILL: no clean shutdown, connections cut.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for NsServer {
    fn drop(&mut self) {
        self.kill();
    }
}
