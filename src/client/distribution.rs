//! Which server gets a file: the distribution policies, and the meter that
//! tells the load-aware one how fast each server drains.
//!
//! A policy maps `(n_servers, index, name)` to a server index; a load-aware
//! policy ([`LeastLoaded`]) maps each server's [`ServerLoad`] instead. The
//! streamer checks the result: an index out of range fails that one `put`, it
//! never panics.
//!
//! A policy's choice is where a file goes unless, with failover on, that
//! server cannot take it soon: down, resting after 5xx answers, or full and
//! silent for [`crate::options::PASS_OVER_SILENCE`] ("passed over"). Then the
//! cluster puts it on another live server, whatever the policy (a caller's
//! callback included: it is not called again, and a file it placed may land
//! elsewhere, as with failover after a failure). A policy that must be
//! obeyed whatever happens turns failover off, or uses `put_stream`.
//!
//! Out of scope: reading the load (the cluster reads it from its links, whose
//! drain meter each link feeds), so every policy here is tested without a
//! socket.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Chooses the server for a file.
pub trait Distribution: Send + Sync {
    /// Returns the index (0-based) of the server that gets `name`. `index` is the
    /// distribution index given to `put` (a frame number), if any.
    fn choose(&self, n_servers: usize, index: Option<i64>, name: &str) -> usize;

    /// Whether the policy places files round-robin on the index, so that the
    /// streamer's round-robin start applies: the streamer then passes the
    /// index shifted by its start (modulo the number of servers; see
    /// [`crate::StreamerOptions::round_robin_start`]). Other policies get
    /// the caller's index unchanged.
    fn round_robin_on_index(&self) -> bool {
        false
    }

    /// Whether the policy wants the servers' loads ([`Distribution::choose_by_load`]).
    /// Reading them takes each server's lock, so policies that ignore them say no.
    fn uses_load(&self) -> bool {
        false
    }

    /// Returns the index of the server that gets `name`, given the load of
    /// every server of the streamer (`loads[i]` is server `i`). Called instead
    /// of [`Distribution::choose`] when [`Distribution::uses_load`] is true.
    fn choose_by_load(&self, loads: &[ServerLoad], index: Option<i64>, name: &str) -> usize {
        self.choose(loads.len(), index, name)
    }
}

/// What a load-aware policy knows of one server.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ServerLoad {
    /// Whether it takes files now (connected, not closing).
    pub live: bool,
    /// Bytes queued for it or sent and not yet acknowledged.
    pub outstanding_bytes: u64,
    /// How fast it has acknowledged while it had work, in bytes per second
    /// (smoothed over the last few tenths of a second); `None` until measured.
    pub drain_bytes_per_s: Option<f64>,
}

impl ServerLoad {
    /// A live server with `outstanding_bytes` and no drain rate measured yet.
    pub fn bytes(outstanding_bytes: u64) -> ServerLoad {
        ServerLoad {
            live: true,
            outstanding_bytes,
            drain_bytes_per_s: None,
        }
    }

    /// A live server with `outstanding_bytes`, draining at `bytes_per_s`.
    pub fn draining(outstanding_bytes: u64, bytes_per_s: f64) -> ServerLoad {
        ServerLoad {
            drain_bytes_per_s: Some(bytes_per_s),
            ..ServerLoad::bytes(outstanding_bytes)
        }
    }

    /// A server that is down.
    pub fn down() -> ServerLoad {
        ServerLoad {
            live: false,
            ..ServerLoad::bytes(0)
        }
    }
}

/// Measures how fast a server drains its work: bytes acknowledged per second
/// of time during which it held files, over windows of at least
/// [`DrainMeter::WINDOW`], smoothed. Time with nothing to do does not count,
/// so a server fed slower than it could go still shows its own speed.
#[derive(Debug, Default, Clone)]
pub(crate) struct DrainMeter {
    busy_since: Option<Instant>,
    window_busy: Duration,
    window_bytes: u64,
    bytes_per_s: Option<f64>,
}

impl DrainMeter {
    /// The shortest time a sample covers: shorter, the answers to a pipeline
    /// arriving in one burst would look infinitely fast.
    pub const WINDOW: Duration = Duration::from_millis(20);

    /// The server got work after having none (or after its connection failed).
    pub fn busy_from(&mut self, now: Instant) {
        self.busy_since = Some(now);
    }

    /// The server finished a file of `bytes`; `still_busy`: it holds others.
    pub fn drained(&mut self, bytes: u64, now: Instant, still_busy: bool) {
        let Some(since) = self.busy_since else { return };
        self.window_busy += now.saturating_duration_since(since);
        self.window_bytes += bytes;
        self.busy_since = still_busy.then_some(now);
        if self.window_busy >= Self::WINDOW {
            let sample = self.window_bytes as f64 / self.window_busy.as_secs_f64();
            // A quarter per window: a server that slows down is seen within
            // about ten windows, and one slow answer does not swing it.
            self.bytes_per_s = Some(match self.bytes_per_s {
                None => sample,
                Some(rate) => rate + (sample - rate) / 4.0,
            });
            self.window_busy = Duration::ZERO;
            self.window_bytes = 0;
        }
    }

    /// The smoothed rate, `None` until a window is complete; lowered while
    /// the server, holding `outstanding` bytes, has been silent longer than
    /// they should take at that rate (a stalled server then looks as slow as
    /// it is, instead of as fast as it was).
    pub fn bytes_per_s(&self, outstanding: u64, now: Instant) -> Option<f64> {
        let rate = self.bytes_per_s?;
        let Some(since) = self.busy_since else {
            return Some(rate);
        };
        let silent = now.saturating_duration_since(since).as_secs_f64();
        if silent * rate > outstanding as f64 {
            return Some(outstanding as f64 / silent);
        }
        Some(rate)
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
/// `distribution_function_round_robin`). In a streamer the index is first
/// shifted by the streamer's round-robin start, random unless set (see
/// [`crate::StreamerOptions::round_robin_start`]; a start of 0 places files
/// exactly as PYME does).
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

/// The live server with the least outstanding work: the bytes queued for it
/// and not yet acknowledged, divided by how fast it drains them once every
/// live server's speed is measured (before that, bytes alone): the time it
/// needs to finish what it holds. A slow server holds its files longer, so it
/// gets fewer, and the acquisition runs at the sum of the servers' speeds
/// instead of N times the slowest; and since all of them then hold the same
/// time of work, they finish together when the files stop.
///
/// Ties go round-robin (on the index, or on a counter without one), so a
/// uniform cluster is served round-robin; work within 1/16 of the least
/// counts as a tie, so that measuring noise does not break that. Placement
/// depends on timing: the same frame may land on another server in another
/// run.
#[derive(Debug, Default)]
pub struct LeastLoaded {
    /// Where the tie-break starts for files without an index.
    next: AtomicUsize,
}

impl LeastLoaded {
    /// Each live server's work (seconds with every rate known, else bytes);
    /// `None` for a server that is down.
    fn work(loads: &[ServerLoad]) -> Vec<Option<f64>> {
        let all_measured = loads
            .iter()
            .filter(|load| load.live)
            .all(|load| load.drain_bytes_per_s.is_some_and(|rate| rate > 0.0));
        loads
            .iter()
            .map(|load| {
                let bytes = load.outstanding_bytes as f64;
                match (load.live, load.drain_bytes_per_s) {
                    (false, _) => None,
                    (true, Some(rate)) if all_measured => Some(bytes / rate),
                    (true, _) => Some(bytes),
                }
            })
            .collect()
    }

    /// The first server from `start` onwards (wrapping) whose work is within
    /// the tie margin of the least; `start` itself when none is live.
    fn least_from(loads: &[ServerLoad], start: usize) -> usize {
        let work = Self::work(loads);
        let Some(least) = work.iter().flatten().copied().reduce(f64::min) else {
            return start;
        };
        let tied = least + least / 16.0;
        let n = loads.len();
        (0..n)
            .map(|offset| (start + offset) % n)
            .find(|&server| work[server].is_some_and(|work| work <= tied))
            .unwrap_or(start)
    }
}

impl Distribution for LeastLoaded {
    /// Without loads (a caller that has none): round-robin.
    fn choose(&self, n_servers: usize, index: Option<i64>, name: &str) -> usize {
        self.choose_by_load(&vec![ServerLoad::bytes(0); n_servers], index, name)
    }

    fn uses_load(&self) -> bool {
        true
    }

    fn round_robin_on_index(&self) -> bool {
        true
    }

    fn choose_by_load(&self, loads: &[ServerLoad], index: Option<i64>, _name: &str) -> usize {
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

    fn round_robin_on_index(&self) -> bool {
        true
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

    fn bytes(loads: &[u64]) -> Vec<ServerLoad> {
        loads.iter().map(|&load| ServerLoad::bytes(load)).collect()
    }

    #[test]
    fn least_loaded_picks_the_server_with_the_fewest_outstanding_bytes() {
        let policy = LeastLoaded::default();
        let loads = bytes(&[24 * MIB, 8 * MIB, 16 * MIB, 32 * MIB]);
        for index in 0..8 {
            assert_eq!(policy.choose_by_load(&loads, Some(index), "f"), 1);
        }
        assert_eq!(policy.choose_by_load(&loads, None, "f"), 1);
    }

    #[test]
    fn least_loaded_weighs_bytes_by_drain_rate_once_every_rate_is_known() {
        let policy = LeastLoaded::default();
        // Server 1 holds the fewest bytes but drains them four times slower.
        let loads = [
            ServerLoad::draining(24 * MIB, 100e6),
            ServerLoad::draining(8 * MIB, 25e6),
            ServerLoad::draining(16 * MIB, 100e6),
        ];
        assert_eq!(policy.choose_by_load(&loads, Some(1), "f"), 2);
        // One rate unknown: bytes alone, until it is measured.
        let mut partly = loads;
        partly[0].drain_bytes_per_s = None;
        assert_eq!(policy.choose_by_load(&partly, Some(1), "f"), 1);
        // A down server's rate does not count.
        let mut one_down = loads;
        one_down[0] = ServerLoad::down();
        assert_eq!(policy.choose_by_load(&one_down, Some(1), "f"), 2);
    }

    #[test]
    fn least_loaded_never_picks_a_down_server_while_one_is_up() {
        let policy = LeastLoaded::default();
        let mut loads = vec![ServerLoad::down(); 4];
        loads[2] = ServerLoad::bytes(256 * MIB);
        for index in 0..8 {
            assert_eq!(policy.choose_by_load(&loads, Some(index), "f"), 2);
        }
        // None live: any index in range (the cluster then spills or fails).
        let none = vec![ServerLoad::down(); 4];
        assert!(policy.choose_by_load(&none, Some(7), "f") < 4);
    }

    #[test]
    fn least_loaded_breaks_ties_round_robin_so_a_uniform_cluster_stays_round_robin() {
        let policy = LeastLoaded::default();
        let idle = bytes(&[0; 4]);
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
        let loads = bytes(&[9 * MIB, 5 * MIB, 5 * MIB, 9 * MIB]);
        assert_eq!(policy.choose_by_load(&loads, Some(0), "f"), 1);
        assert_eq!(policy.choose_by_load(&loads, Some(2), "f"), 2);
        assert_eq!(policy.choose_by_load(&loads, Some(3), "f"), 1);
        // Rates measured a few percent apart still count as equal.
        let noisy = [
            ServerLoad::draining(32 * MIB, 118e6),
            ServerLoad::draining(32 * MIB, 121e6),
            ServerLoad::draining(32 * MIB, 116e6),
        ];
        for index in 0..6 {
            assert_eq!(
                policy.choose_by_load(&noisy, Some(index), "f"),
                round_robin(3, Some(index))
            );
        }
    }

    /// A simulated cluster, no sockets: bounded queues, a producer faster than
    /// the cluster that waits on the server it chose when that one is full, and
    /// server 3 draining at half the speed of the others. Least-loaded sends it
    /// about half as many files as each fast one and keeps the fast ones busy;
    /// round-robin sends it as many and so holds everything to its pace. When
    /// the files stop, least-loaded with rates leaves every server the same
    /// time of work, so they finish together.
    #[test]
    fn least_loaded_sends_a_half_speed_server_about_half_as_many_files() {
        const DRAIN_PER_TICK: [u64; 4] = [4, 4, 4, 2];
        const FILE: u64 = 8;
        const LIMIT: u64 = 64;
        /// Files per server, and the ticks each needs to finish after the last put.
        fn simulate(policy: &dyn Distribution, with_rates: bool) -> ([u32; 4], [u64; 4]) {
            let mut loads = [0u64; 4];
            let mut files = [0u32; 4];
            let mut waiting_on: Option<usize> = None;
            let mut index = 0;
            for _ in 0..4000 {
                loop {
                    let server = waiting_on.take().unwrap_or_else(|| {
                        let view: Vec<ServerLoad> = loads
                            .iter()
                            .zip(DRAIN_PER_TICK)
                            .map(|(&load, drain)| match with_rates {
                                true => ServerLoad::draining(load, drain as f64),
                                false => ServerLoad::bytes(load),
                            })
                            .collect();
                        if policy.uses_load() {
                            policy.choose_by_load(&view, Some(index), "f")
                        } else {
                            policy.choose(4, Some(index), "f")
                        }
                    });
                    if loads[server] + FILE > LIMIT {
                        waiting_on = Some(server);
                        break;
                    }
                    loads[server] += FILE;
                    files[server] += 1;
                    index += 1;
                }
                for (load, drain) in loads.iter_mut().zip(DRAIN_PER_TICK) {
                    *load = load.saturating_sub(drain);
                }
            }
            let tail = std::array::from_fn(|i| loads[i].div_ceil(DRAIN_PER_TICK[i]));
            (files, tail)
        }
        let capacity_files = 4000.0 * 14.0 / FILE as f64;
        for with_rates in [false, true] {
            let (files, tail) = simulate(&LeastLoaded::default(), with_rates);
            let fast = f64::from(files[0] + files[1] + files[2]) / 3.0;
            let ratio = f64::from(files[3]) / fast;
            assert!((0.4..0.6).contains(&ratio), "files per server {files:?}");
            let total: u32 = files.iter().sum();
            assert!(f64::from(total) > 0.97 * capacity_files, "{files:?}");
            if with_rates {
                let spread = tail.iter().max().unwrap() - tail.iter().min().unwrap();
                assert!(spread <= FILE / 2, "ticks left per server {tail:?}");
            } else {
                assert!(tail[3] >= 2 * tail[0] - 2, "bytes alone: {tail:?}");
            }
        }
        let (files, _) = simulate(&RoundRobin, false);
        let total: u32 = files.iter().sum();
        let slowest_pace = 4.0 * 4000.0 * 2.0 / FILE as f64;
        assert!(f64::from(total) < 1.03 * slowest_pace, "{files:?}");
    }

    #[test]
    fn least_loaded_without_loads_is_round_robin_and_never_out_of_range() {
        let policy = LeastLoaded::default();
        assert_eq!(policy.choose(3, Some(4), "f"), 1);
        assert_eq!(policy.choose_by_load(&[], Some(4), "f"), 0);
        assert_eq!(policy.choose(0, None, "f"), 0);
    }

    #[test]
    fn the_drain_meter_counts_only_busy_time() {
        let mut meter = DrainMeter::default();
        let t0 = Instant::now();
        let ms = |n: u64| t0 + Duration::from_millis(n);
        meter.busy_from(t0);
        // 1 MB in 10 ms: under a window, nothing yet.
        meter.drained(1_000_000, ms(10), false);
        assert_eq!(meter.bytes_per_s(0, ms(10)), None);
        // Idle for 90 ms, then 1 MB in another 10 ms: 2 MB in 20 ms of work.
        meter.busy_from(ms(100));
        meter.drained(1_000_000, ms(110), true);
        let rate = meter.bytes_per_s(1_000_000, ms(110)).unwrap();
        assert!((rate - 100e6).abs() < 1e3, "{rate}");
        // Slower now: the rate moves a quarter of the way per window.
        meter.drained(1_000_000, ms(150), false);
        let rate = meter.bytes_per_s(0, ms(150)).unwrap();
        assert!((rate - 81.25e6).abs() < 1e3, "{rate}");
        // Answers without a start (after a failed connection) are ignored.
        meter.drained(1_000_000, ms(151), false);
        assert!((meter.bytes_per_s(0, ms(151)).unwrap() - 81.25e6).abs() < 1e3);
    }

    #[test]
    fn a_server_silent_longer_than_its_work_should_take_looks_slower() {
        let mut meter = DrainMeter::default();
        let t0 = Instant::now();
        let ms = |n: u64| t0 + Duration::from_millis(n);
        meter.busy_from(t0);
        meter.drained(8_000_000, ms(80), true);
        // 100 MB/s; 8 MB outstanding should take 80 ms.
        assert_eq!(meter.bytes_per_s(8_000_000, ms(150)), Some(100e6));
        // Silent for a second: 8 MB in a second at best.
        let stalled = meter.bytes_per_s(8_000_000, ms(1080)).unwrap();
        assert!((stalled - 8e6).abs() < 1.0, "{stalled}");
        // So least-loaded prefers a server with more bytes that drains.
        let loads = [
            ServerLoad::draining(8_000_000, stalled),
            ServerLoad::draining(40_000_000, 100e6),
        ];
        assert_eq!(
            LeastLoaded::default().choose_by_load(&loads, Some(0), "f"),
            1
        );
    }
}
