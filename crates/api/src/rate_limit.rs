//! A small in-memory rate limiter: one token bucket per key, in a map of
//! bounded size whose idle entries expire.
//!
//! Each process keeps its own buckets, so N instances behind a load
//! balancer allow up to N times the configured rate in total (and a restart
//! forgets them). That is enough to slow down password guessing and email
//! probing; a shared limit would need the database or a proxy.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hash, RandomState};
use std::net::IpAddr;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Keys tracked per limiter before idle ones are purged; when every one of
/// them is active, a new key is not tracked (fail open, with a warning)
/// rather than refused or allowed to evict an active bucket.
pub const DEFAULT_MAX_KEYS: usize = 100_000;

/// How often, at most, a full map is scanned for idle entries.
const PURGE_INTERVAL: Duration = Duration::from_secs(1);

/// `per_minute` attempts per key: a bucket of that many tokens, refilled
/// evenly over a minute (a burst of `per_minute`, then one every
/// `60 / per_minute` seconds).
pub struct RateLimiter {
    capacity: f64,
    /// Tokens per second.
    refill: f64,
    max_keys: usize,
    /// Keys are hashed (with a per-process random key), so a tracked key
    /// costs the same few bytes however long the email it came from.
    hasher: RandomState,
    state: Mutex<Buckets>,
}

struct Buckets {
    map: HashMap<u64, Bucket>,
    last_purge: Option<Instant>,
}

#[derive(Clone, Copy)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

impl RateLimiter {
    /// `None` when `per_minute` is 0 (no limit).
    pub fn per_minute(per_minute: u32, max_keys: usize) -> Option<Self> {
        (per_minute > 0).then(|| Self {
            capacity: f64::from(per_minute),
            refill: f64::from(per_minute) / 60.0,
            max_keys: max_keys.max(1),
            hasher: RandomState::new(),
            state: Mutex::new(Buckets {
                map: HashMap::new(),
                last_purge: None,
            }),
        })
    }

    /// Takes one token for `key` at `now`; `Err(wait)` when the bucket is
    /// empty, with how long until the next token.
    pub fn check(&self, key: impl Hash, now: Instant) -> Result<(), Duration> {
        let hash = self.hasher.hash_one(key);
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let existing = state.map.get(&hash).map(|b| self.refilled(*b, now));
        let bucket = match existing {
            Some(bucket) => bucket,
            None => {
                if state.map.len() >= self.max_keys && !self.make_room(&mut state, now) {
                    tracing::warn!(
                        max_keys = self.max_keys,
                        "rate limiter is full of active keys; a new key is not limited"
                    );
                    metrics::counter!("kessai_rate_limiter_full_total").increment(1);
                    return Ok(());
                }
                Bucket {
                    tokens: self.capacity,
                    updated: now,
                }
            }
        };
        if bucket.tokens >= 1.0 {
            state.map.insert(
                hash,
                Bucket {
                    tokens: bucket.tokens - 1.0,
                    updated: now,
                },
            );
            Ok(())
        } else {
            state.map.insert(hash, bucket);
            Err(Duration::from_secs_f64((1.0 - bucket.tokens) / self.refill))
        }
    }

    /// How many keys are tracked.
    #[cfg(test)]
    fn tracked(&self) -> usize {
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .map
            .len()
    }

    fn refilled(&self, bucket: Bucket, now: Instant) -> Bucket {
        let elapsed = now.saturating_duration_since(bucket.updated).as_secs_f64();
        Bucket {
            tokens: (bucket.tokens + elapsed * self.refill).min(self.capacity),
            updated: now,
        }
    }

    /// Drops the buckets that have filled up again (as good as absent);
    /// false when the map is still full.
    fn make_room(&self, state: &mut Buckets, now: Instant) -> bool {
        let recently = state
            .last_purge
            .is_some_and(|at| now.saturating_duration_since(at) < PURGE_INTERVAL);
        if !recently {
            state.last_purge = Some(now);
            state
                .map
                .retain(|_, bucket| self.refilled(*bucket, now).tokens < self.capacity);
        }
        state.map.len() < self.max_keys
    }
}

/// The key for a client address: IPv4 as is, IPv6 by its /64 prefix (one
/// subscriber usually holds a whole /64).
pub fn address_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let mut segments = v6.segments();
                segments[4..].fill(0);
                IpAddr::V6(segments.into())
            }
        },
    }
}

/// The key for an email: as the domain normalises it (trimmed, lower case).
pub fn email_key(raw: &str) -> String {
    raw.trim().to_lowercase()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn allows_a_burst_of_the_limit_then_refuses_with_the_wait() {
        let limiter = RateLimiter::per_minute(5, 100).unwrap();
        let t0 = Instant::now();
        for _ in 0..5 {
            assert!(limiter.check("a", t0).is_ok());
        }
        let wait = limiter.check("a", t0).unwrap_err();
        assert_eq!(wait.as_secs_f64().round(), 12.0, "60 s / 5");
        // Other keys have their own buckets.
        assert!(limiter.check("b", t0).is_ok());
    }

    #[test]
    fn refills_over_the_minute() {
        let limiter = RateLimiter::per_minute(6, 100).unwrap();
        let t0 = Instant::now();
        for _ in 0..6 {
            limiter.check("a", t0).unwrap();
        }
        assert!(limiter.check("a", t0 + Duration::from_secs(9)).is_err());
        assert!(limiter.check("a", t0 + Duration::from_secs(10)).is_ok());
        assert!(limiter.check("a", t0 + Duration::from_secs(10)).is_err());
        // A full minute later the whole burst is back.
        let later = t0 + Duration::from_secs(120);
        for _ in 0..6 {
            assert!(limiter.check("a", later).is_ok());
        }
    }

    #[test]
    fn zero_means_no_limiter() {
        assert!(RateLimiter::per_minute(0, 100).is_none());
    }

    #[test]
    fn the_map_stays_bounded_and_purges_idle_keys() {
        let limiter = RateLimiter::per_minute(2, 3).unwrap();
        let t0 = Instant::now();
        for key in ["a", "b", "c"] {
            limiter.check(key, t0).unwrap();
            limiter.check(key, t0).unwrap();
        }
        assert!(limiter.check("a", t0).is_err());
        // Full of active keys: a new one is let through, untracked.
        assert!(limiter.check("d", t0).is_ok());
        assert_eq!(limiter.tracked(), 3);
        // A minute later every bucket is full again: purged, room for more.
        let later = t0 + Duration::from_secs(61);
        limiter.check("d", later).unwrap();
        assert_eq!(limiter.tracked(), 1);
        // And "a" starts over.
        assert!(limiter.check("a", later).is_ok());
    }

    #[test]
    fn ipv6_addresses_share_their_slash_64() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::2".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(address_key(a), address_key(b));
        assert_ne!(address_key(a), address_key(c));
        let mapped: IpAddr = "::ffff:192.0.2.1".parse().unwrap();
        assert_eq!(address_key(mapped), "192.0.2.1".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn emails_are_keyed_as_the_domain_normalises_them() {
        assert_eq!(email_key("  Taro@Example.JP "), "taro@example.jp");
    }
}
