//! Jittered exponential backoff ("full jitter"), so a fleet of agents that lost the control plane
//! at the same moment does not reconnect in lockstep.

use std::time::Duration;

use rand::Rng;

#[derive(Debug, Clone)]
pub struct Backoff {
    base: Duration,
    cap: Duration,
    attempt: u32,
}

impl Backoff {
    pub fn new(base: Duration, cap: Duration) -> Self {
        Backoff { base, cap, attempt: 0 }
    }

    /// ~200 ms doubling up to 5 s: quick recovery from a blip, and at most a few seconds of
    /// silence after a long outage ends.
    pub fn for_reconnect() -> Self {
        Self::new(Duration::from_millis(200), Duration::from_secs(5))
    }

    /// The upper bound of the next delay: `base * 2^attempt`, capped.
    pub fn ceiling(&self) -> Duration {
        let factor = 1u32.checked_shl(self.attempt.min(31)).unwrap_or(u32::MAX);
        self.base.saturating_mul(factor).min(self.cap)
    }

    /// A uniformly random delay in `[0, ceiling]`; advances the attempt counter.
    pub fn next_delay(&mut self) -> Duration {
        let ceiling = self.ceiling();
        self.attempt = self.attempt.saturating_add(1);
        let nanos = rand::rng().random_range(0..=ceiling.as_nanos() as u64);
        Duration::from_nanos(nanos)
    }

    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ceiling_doubles_then_caps() {
        let mut b = Backoff::for_reconnect();
        let mut ceilings = Vec::new();
        for _ in 0..8 {
            ceilings.push(b.ceiling().as_millis());
            b.next_delay();
        }
        assert_eq!(ceilings, vec![200, 400, 800, 1600, 3200, 5000, 5000, 5000]);
    }

    #[test]
    fn delays_stay_within_bounds_and_are_jittered() {
        let mut b = Backoff::for_reconnect();
        for _ in 0..10 {
            b.next_delay();
        }
        let delays: Vec<_> = (0..200).map(|_| b.next_delay()).collect();
        assert!(delays.iter().all(|d| *d <= Duration::from_secs(5)));
        let distinct: std::collections::BTreeSet<_> = delays.iter().collect();
        assert!(distinct.len() > 100, "full jitter spreads delays out");
    }

    #[test]
    fn huge_attempt_counts_do_not_overflow() {
        let mut b = Backoff::for_reconnect();
        b.attempt = u32::MAX - 1;
        assert_eq!(b.ceiling(), Duration::from_secs(5));
        b.next_delay();
        b.next_delay();
        assert_eq!(b.ceiling(), Duration::from_secs(5));
    }

    #[test]
    fn reset_starts_over() {
        let mut b = Backoff::for_reconnect();
        b.next_delay();
        b.next_delay();
        b.reset();
        assert_eq!(b.attempt(), 0);
        assert_eq!(b.ceiling(), Duration::from_millis(200));
    }
}
