//! Which server gets a file: the distribution policies.
//!
//! A policy maps `(n_servers, index, name)` to a server index; a load-aware
//! policy ([`LeastLoaded`]) maps the servers' outstanding bytes instead. The
//! streamer checks the result: an index out of range fails that one `put`, it
//! never panics.
//!
//! Out of scope: measuring the load (the cluster reads it from its links and
//! passes it in), so every policy here is tested without a socket.

use std::sync::atomic::{AtomicUsize, Ordering};

/// Chooses the server for a file.
pub trait Distribution: Send + Sync {
    /// Returns the index (0-based) of the server that gets `name`. `index` is the
    /// distribution index given to `put` (a frame number), if any.
    fn choose(&self, n_servers: usize, index: Option<i64>, name: &str) -> usize;

    /// Whether the policy wants the servers' loads ([`Distribution::choose_by_load`]).
    /// Reading them takes each server's lock, so policies that ignore them say no.
    fn uses_load(&self) -> bool {
        false
    }

    /// Returns the index of the server that gets `name`, given each candidate
    /// server's load: `loads[i]` is the bytes queued for server `i` and not yet
    /// acknowledged by it (`u64::MAX` for a server that is down). Called instead
    /// of [`Distribution::choose`] when [`Distribution::uses_load`] is true.
    fn choose_by_load(&self, loads: &[u64], index: Option<i64>, name: &str) -> usize {
        self.choose(loads.len(), index, name)
    }
}

impl<F> Distribution for F
where
    F: Fn(usize, Option<i64>, &str) -> usize + Send + Sync,
{
    fn choose(&self, n_servers: usize, index: Option<i64>, name: &str) -> usize {
        self(n_servers, index, name)
    }
}

/// `index % n_servers`, or a random server when there is no index (as PYME's
/// `distribution_function_round_robin`).
#[derive(Debug, Clone, Copy, Default)]
pub struct RoundRobin;

/// A random server for every file.
#[derive(Debug, Clone, Copy, Default)]
pub struct Random;

/// Always the same server.
#[derive(Debug, Clone, Copy, Default)]
pub struct Fixed(pub usize);

/// A stable hash of the stored name (query dropped): the same name always lands
/// on the same server of a cluster of the same size, across runs and machines.
#[derive(Debug, Clone, Copy, Default)]
pub struct NameHash;

/// The server with the least outstanding work (bytes queued and not yet
/// acknowledged): a slow server holds its files longer, so it gets fewer, and
/// the acquisition runs at the sum of the servers' speeds instead of N times
/// the slowest. Ties go round-robin (on the index, or on a counter without
/// one), so a uniform cluster is served round-robin. Placement depends on
/// timing: the same frame may land on another server in another run.
#[derive(Debug, Default)]
pub struct LeastLoaded {
    /// Where the tie-break starts for files without an index.
    next: AtomicUsize,
}

impl LeastLoaded {
    /// The first server with the least load, searching from `start` onwards
    /// (wrapping), so that equal loads are served in turn.
    fn least_from(loads: &[u64], start: usize) -> usize {
        let n = loads.len();
        (0..n)
            .map(|offset| (start + offset) % n)
            .min_by_key(|&server| loads[server])
            .unwrap_or(0)
    }
}

impl Distribution for LeastLoaded {
    /// Without loads (a caller that has none): round-robin.
    fn choose(&self, n_servers: usize, index: Option<i64>, name: &str) -> usize {
        self.choose_by_load(&vec![0; n_servers], index, name)
    }

    fn uses_load(&self) -> bool {
        true
    }

    fn choose_by_load(&self, loads: &[u64], index: Option<i64>, _name: &str) -> usize {
        if loads.is_empty() {
            return 0;
        }
        let start = match index {
            Some(index) => index.rem_euclid(loads.len() as i64) as usize,
            None => self.next.fetch_add(1, Ordering::Relaxed) % loads.len(),
        };
        Self::least_from(loads, start)
    }
}

/// Round-robin on the index; random without one.
pub fn round_robin(n_servers: usize, index: Option<i64>) -> usize {
    match index {
        _ if n_servers == 0 => 0,
        Some(index) => index.rem_euclid(n_servers as i64) as usize,
        None => fastrand::usize(..n_servers),
    }
}

impl Distribution for RoundRobin {
    fn choose(&self, n_servers: usize, index: Option<i64>, _name: &str) -> usize {
        round_robin(n_servers, index)
    }
}

impl Distribution for Random {
    fn choose(&self, n_servers: usize, _index: Option<i64>, _name: &str) -> usize {
        fastrand::usize(..n_servers.max(1))
    }
}

impl Distribution for Fixed {
    fn choose(&self, _n_servers: usize, _index: Option<i64>, _name: &str) -> usize {
        self.0
    }
}

impl Distribution for NameHash {
    fn choose(&self, n_servers: usize, _index: Option<i64>, name: &str) -> usize {
        (fnv1a(crate::name::storage_name(name).as_bytes()) % n_servers.max(1) as u64) as usize
    }
}

/// 64-bit FNV-1a: tiny, fixed forever, the same on every platform.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The built-in policies by name, for the command line and for C hosts that
/// cannot pass a function pointer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BuiltinDistribution {
    RoundRobin,
    Random,
    Fixed(usize),
    NameHash,
    /// [`LeastLoaded`]: `least-loaded` by name.
    LeastLoaded,
}

impl BuiltinDistribution {
    /// The policy as a trait object.
    pub fn into_distribution(self) -> std::sync::Arc<dyn Distribution> {
        match self {
            Self::RoundRobin => std::sync::Arc::new(RoundRobin),
            Self::Random => std::sync::Arc::new(Random),
            Self::Fixed(server) => std::sync::Arc::new(Fixed(server)),
            Self::NameHash => std::sync::Arc::new(NameHash),
            Self::LeastLoaded => std::sync::Arc::new(LeastLoaded::default()),
        }
    }
}

impl std::str::FromStr for BuiltinDistribution {
    type Err = String;

    /// `round-robin`, `random`, `hash`, `least-loaded`, or `fixed:N`.
    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "round-robin" => Ok(Self::RoundRobin),
            "random" => Ok(Self::Random),
            "hash" => Ok(Self::NameHash),
            "least-loaded" => Ok(Self::LeastLoaded),
            _ => text
                .strip_prefix("fixed:")
                .and_then(|n| n.parse().ok())
                .map(Self::Fixed)
                .ok_or_else(|| format!("unknown distribution {text:?}: expected round-robin, random, hash, least-loaded or fixed:N")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_robin_takes_index_modulo_n() {
        assert_eq!(round_robin(3, Some(0)), 0);
        assert_eq!(round_robin(3, Some(4)), 1);
        assert_eq!(round_robin(3, Some(-1)), 2);
        for _ in 0..100 {
            assert!(round_robin(3, None) < 3);
        }
    }

    #[test]
    fn name_hash_is_stable_and_ignores_the_query() {
        let hash = NameHash;
        assert_eq!(
            hash.choose(7, None, "a/b"),
            hash.choose(7, Some(3), "a/b?x=1")
        );
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
    }

    #[test]
    fn parses_builtin_names() {
        assert_eq!("fixed:2".parse(), Ok(BuiltinDistribution::Fixed(2)));
        assert_eq!("hash".parse(), Ok(BuiltinDistribution::NameHash));
        assert_eq!("least-loaded".parse(), Ok(BuiltinDistribution::LeastLoaded));
        assert!("fixed:x".parse::<BuiltinDistribution>().is_err());
        assert!(BuiltinDistribution::LeastLoaded
            .into_distribution()
            .uses_load());
        assert!(!BuiltinDistribution::RoundRobin
            .into_distribution()
            .uses_load());
    }

    const MIB: u64 = 1 << 20;

    #[test]
    fn least_loaded_picks_the_server_with_the_fewest_outstanding_bytes() {
        let policy = LeastLoaded::default();
        let loads = [24 * MIB, 8 * MIB, 16 * MIB, 32 * MIB];
        for index in 0..8 {
            assert_eq!(policy.choose_by_load(&loads, Some(index), "f"), 1);
        }
        assert_eq!(policy.choose_by_load(&loads, None, "f"), 1);
    }

    #[test]
    fn least_loaded_never_picks_a_down_server_while_one_is_up() {
        let policy = LeastLoaded::default();
        let loads = [u64::MAX, u64::MAX, 256 * MIB, u64::MAX];
        for index in 0..8 {
            assert_eq!(policy.choose_by_load(&loads, Some(index), "f"), 2);
        }
    }

    #[test]
    fn least_loaded_breaks_ties_round_robin_so_a_uniform_cluster_stays_round_robin() {
        let policy = LeastLoaded::default();
        let idle = [0; 4];
        for index in 0..12 {
            assert_eq!(
                policy.choose_by_load(&idle, Some(index), "f"),
                round_robin(4, Some(index))
            );
        }
        // Without an index, a counter takes turns.
        let turns: Vec<usize> = (0..8)
            .map(|_| policy.choose_by_load(&idle, None, "f"))
            .collect();
        assert_eq!(turns, [0, 1, 2, 3, 0, 1, 2, 3]);
        // Ties among the least loaded only: 0 and 3 are busier.
        let loads = [9, 5, 5, 9];
        assert_eq!(policy.choose_by_load(&loads, Some(0), "f"), 1);
        assert_eq!(policy.choose_by_load(&loads, Some(2), "f"), 2);
        assert_eq!(policy.choose_by_load(&loads, Some(3), "f"), 1);
    }

    /// A simulated cluster, no sockets: bounded queues, a producer faster than
    /// the cluster that waits on the server it chose when that one is full, and
    /// server 3 draining at half the speed of the others. Least-loaded sends it
    /// about half as many files as each fast one and keeps the fast ones busy;
    /// round-robin sends it as many and so holds everything to its pace.
    #[test]
    fn least_loaded_sends_a_half_speed_server_about_half_as_many_files() {
        fn simulate(policy: &dyn Distribution) -> ([u32; 4], u32) {
            let drain_per_tick = [4u64, 4, 4, 2];
            let (file, limit) = (8u64, 32u64);
            let mut loads = [0u64; 4];
            let mut files = [0u32; 4];
            let mut waiting_on: Option<usize> = None;
            let mut index = 0;
            let ticks = 4000;
            for _ in 0..ticks {
                loop {
                    let server = waiting_on.take().unwrap_or_else(|| {
                        if policy.uses_load() {
                            policy.choose_by_load(&loads, Some(index), "f")
                        } else {
                            policy.choose(4, Some(index), "f")
                        }
                    });
                    if loads[server] + file > limit {
                        waiting_on = Some(server);
                        break;
                    }
                    loads[server] += file;
                    files[server] += 1;
                    index += 1;
                }
                for (load, drain) in loads.iter_mut().zip(drain_per_tick) {
                    *load = load.saturating_sub(drain);
                }
            }
            (files, ticks)
        }
        let capacity_files = 4000.0 * 14.0 / 8.0;
        let (files, _) = simulate(&LeastLoaded::default());
        let fast = f64::from(files[0] + files[1] + files[2]) / 3.0;
        let ratio = f64::from(files[3]) / fast;
        assert!((0.4..0.6).contains(&ratio), "files per server {files:?}");
        let total: u32 = files.iter().sum();
        assert!(f64::from(total) > 0.97 * capacity_files, "{files:?}");
        let (files, _) = simulate(&RoundRobin);
        let total: u32 = files.iter().sum();
        let slowest_pace = 4.0 * 4000.0 * 2.0 / 8.0;
        assert!(f64::from(total) < 1.03 * slowest_pace, "{files:?}");
    }

    #[test]
    fn least_loaded_without_loads_is_round_robin_and_never_out_of_range() {
        let policy = LeastLoaded::default();
        assert_eq!(policy.choose(3, Some(4), "f"), 1);
        assert_eq!(policy.choose_by_load(&[], Some(4), "f"), 0);
        assert_eq!(policy.choose(0, None, "f"), 0);
    }
}
