//! Token buckets: ingest's per-drone packet rate limit, and the per-address budgets of failed
//! authentications (drone keys at ingest, passwords at `POST /v1/auth/token`) that slow down
//! guessing without touching clients whose credentials are good.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A family of token buckets, one per key, each holding at most `burst` tokens and refilled at
/// `rate` tokens per second. Memory is bounded: full buckets carry no information and are
/// dropped when the map grows past `max_keys`.
pub struct Buckets<K> {
    rate: f64,
    burst: f64,
    max_keys: usize,
    buckets: Mutex<HashMap<K, Bucket>>,
}

#[derive(Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl<K: Hash + Eq + Copy> Buckets<K> {
    pub fn new(rate: f64, burst: f64, max_keys: usize) -> Self {
        assert!(rate > 0.0 && burst >= 1.0, "a token bucket needs a positive rate and a burst of at least 1");
        Self { rate, burst, max_keys, buckets: Mutex::new(HashMap::new()) }
    }

    /// Takes `n` tokens if the bucket holds them; otherwise takes nothing and says how long until
    /// it would. A request for more than `burst` tokens is measured against a full bucket, so it
    /// is refused with the time a full refill takes rather than forever.
    pub fn take(&self, key: K, n: f64) -> Result<(), Duration> {
        let now = Instant::now();
        let mut buckets = self.buckets.lock().expect("bucket lock");
        let bucket = self.refilled(&mut buckets, key, now);
        let needed = n.min(self.burst);
        if bucket.tokens >= needed {
            bucket.tokens -= needed;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((needed - bucket.tokens) / self.rate))
        }
    }

    /// Takes one token whether or not it is there (the bucket may go below zero, down to
    /// `-burst`, so persistent misbehaviour keeps being slowed down).
    pub fn charge(&self, key: K) {
        let now = Instant::now();
        let mut buckets = self.buckets.lock().expect("bucket lock");
        let burst = self.burst;
        let bucket = self.refilled(&mut buckets, key, now);
        bucket.tokens = (bucket.tokens - 1.0).max(-burst);
    }

    /// `Some(wait)` when the bucket holds less than one token.
    pub fn empty_for(&self, key: K) -> Option<Duration> {
        let now = Instant::now();
        let buckets = self.buckets.lock().expect("bucket lock");
        let bucket = buckets.get(&key)?;
        let tokens = self.level(bucket, now);
        (tokens < 1.0).then(|| Duration::from_secs_f64((1.0 - tokens) / self.rate))
    }

    fn level(&self, bucket: &Bucket, now: Instant) -> f64 {
        (bucket.tokens + now.duration_since(bucket.at).as_secs_f64() * self.rate).min(self.burst)
    }

    fn refilled<'m>(&self, buckets: &'m mut HashMap<K, Bucket>, key: K, now: Instant) -> &'m mut Bucket {
        if buckets.len() >= self.max_keys && !buckets.contains_key(&key) {
            buckets.retain(|_, bucket| self.level(bucket, now) < self.burst);
        }
        let bucket = buckets.entry(key).or_insert(Bucket { tokens: self.burst, at: now });
        bucket.tokens = self.level(bucket, now);
        bucket.at = now;
        bucket
    }
}

/// Per client address: how many failed authentications it may still make. Each failure takes a
/// token; an address with an empty bucket gets 429 for any key that is not already known good.
pub type AuthFailures = Buckets<IpAddr>;

/// Whole seconds for a `Retry-After` header (at least 1).
pub fn retry_after_secs(wait: Duration) -> u64 {
    wait.as_secs_f64().ceil().max(1.0) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_allows_its_burst_then_refuses_with_the_wait() {
        let buckets: Buckets<u8> = Buckets::new(100.0, 500.0, 10);
        assert!(buckets.take(1, 300.0).is_ok());
        assert!(buckets.take(1, 200.0).is_ok());
        let wait = buckets.take(1, 100.0).unwrap_err();
        assert!(wait > Duration::from_millis(900) && wait <= Duration::from_secs(1), "{wait:?}");
        // Another key has its own bucket.
        assert!(buckets.take(2, 500.0).is_ok());
    }

    #[test]
    fn more_than_the_burst_is_judged_against_a_full_bucket() {
        let buckets: Buckets<u8> = Buckets::new(10.0, 50.0, 10);
        assert!(buckets.take(1, 80.0).is_ok());
        assert!(buckets.take(1, 1.0).is_err());
    }

    #[test]
    fn charges_empty_the_bucket_and_it_refills() {
        let buckets: Buckets<u8> = Buckets::new(1000.0, 3.0, 10);
        assert!(buckets.empty_for(7).is_none());
        for _ in 0..3 {
            buckets.charge(7);
        }
        assert!(buckets.empty_for(7).is_some());
        std::thread::sleep(Duration::from_millis(20));
        assert!(buckets.empty_for(7).is_none());
    }

    #[test]
    fn memory_is_bounded_by_dropping_full_buckets() {
        let buckets: Buckets<u32> = Buckets::new(1.0, 5.0, 4);
        buckets.charge(0);
        for key in 1..100 {
            assert!(buckets.take(key, 0.0).is_ok());
        }
        assert!(buckets.buckets.lock().unwrap().len() <= 4);
        // The one that was charged is kept.
        assert!(buckets.buckets.lock().unwrap().contains_key(&0));
    }

    #[test]
    fn retry_after_is_whole_seconds_at_least_one() {
        assert_eq!(retry_after_secs(Duration::from_millis(10)), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(1500)), 2);
    }
}
