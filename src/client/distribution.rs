//! Which server gets a file: the distribution policies.
//!
//! A policy maps `(n_servers, index, name)` to a server index. The streamer checks
//! the result: an index out of range fails that one `put`, it never panics.

/// Chooses the server for a file.
pub trait Distribution: Send + Sync {
    /// Returns the index (0-based) of the server that gets `name`. `index` is the
    /// distribution index given to `put` (a frame number), if any.
    fn choose(&self, n_servers: usize, index: Option<i64>, name: &str) -> usize;
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
}

impl BuiltinDistribution {
    /// The policy as a trait object.
    pub fn into_distribution(self) -> std::sync::Arc<dyn Distribution> {
        match self {
            Self::RoundRobin => std::sync::Arc::new(RoundRobin),
            Self::Random => std::sync::Arc::new(Random),
            Self::Fixed(server) => std::sync::Arc::new(Fixed(server)),
            Self::NameHash => std::sync::Arc::new(NameHash),
        }
    }
}

impl std::str::FromStr for BuiltinDistribution {
    type Err = String;

    /// `round-robin`, `random`, `hash`, or `fixed:N`.
    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "round-robin" => Ok(Self::RoundRobin),
            "random" => Ok(Self::Random),
            "hash" => Ok(Self::NameHash),
            _ => text
                .strip_prefix("fixed:")
                .and_then(|n| n.parse().ok())
                .map(Self::Fixed)
                .ok_or_else(|| format!("unknown distribution {text:?}: expected round-robin, random, hash or fixed:N")),
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
        assert!("fixed:x".parse::<BuiltinDistribution>().is_err());
    }
}
