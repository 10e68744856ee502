//! Grouping encrypted datagrams into UDP GSO sends, as a pure plan.
//!
//! One read from the TUN device yields up to 64 KB of one TCP flow, split into MTU-sized
//! packets; encrypted, they are equal-sized datagrams to one peer. The kernel can take them in
//! one `sendmsg` with a segment size (UDP GSO) and cut them apart itself, which is what makes
//! the tunnel's send path cost one system call per 64 KB instead of one per packet. A GSO send
//! has rules: one destination, every segment the same size except a shorter last one, at most
//! `max_segments` segments (64 on Linux) and one UDP payload (64 KB) in all. [`GsoBatcher`] says
//! where each send starts and ends, given the datagrams laid end to end in one buffer.

use std::net::SocketAddr;

/// The largest UDP payload over IPv4 (65,535 less the IPv4 and UDP headers), which bounds one
/// GSO send.
pub(crate) const MAX_GSO_BYTES: usize = 65_507;

/// Consecutive datagrams to send in one system call: `buffer[start..end]`, cut every `segment`
/// bytes (the last piece may be shorter).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Run {
    pub to: SocketAddr,
    pub start: usize,
    pub end: usize,
    pub segment: usize,
}

impl Run {
    /// More than one datagram: the send needs a segment size.
    pub fn segmented(&self) -> bool {
        self.end - self.start > self.segment
    }

    fn takes(&self, to: SocketAddr, start: usize, len: usize, max_segments: usize) -> bool {
        let bytes = self.end - self.start;
        let count = bytes.div_ceil(self.segment);
        self.to == to
            && self.end == start
            && len <= self.segment
            // a shorter datagram ends a run: only the last may be short
            && bytes == count * self.segment
            && count < max_segments
            && bytes + len <= MAX_GSO_BYTES
    }
}

/// Datagrams are pushed in buffer order; a push returns the run that it closed, to send before
/// the buffer is reused. `finish` returns the last one.
#[derive(Debug)]
pub(crate) struct GsoBatcher {
    max_segments: usize,
    run: Option<Run>,
    /// Where the next datagram goes in the buffer.
    end: usize,
}

impl GsoBatcher {
    /// `max_segments` of 1 (no GSO on this host) makes every datagram its own send.
    pub fn new(max_segments: usize) -> GsoBatcher {
        GsoBatcher { max_segments: max_segments.max(1), run: None, end: 0 }
    }

    /// The offset in the buffer where the next datagram is to be written.
    pub fn next_offset(&self) -> usize {
        self.end
    }

    /// A datagram of `len` bytes to `to` was written at `next_offset()`.
    pub fn push(&mut self, to: SocketAddr, len: usize) -> Option<Run> {
        let start = self.end;
        self.end += len;
        match &mut self.run {
            Some(run) if run.takes(to, start, len, self.max_segments) => {
                run.end += len;
                None
            }
            _ => self.run.replace(Run { to, start, end: start + len, segment: len }),
        }
    }

    /// The run still open; the buffer starts over empty.
    pub fn finish(&mut self) -> Option<Run> {
        self.end = 0;
        self.run.take()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    /// Every run the batcher closes, given (destination, length) in order.
    fn runs(max_segments: usize, datagrams: &[(&str, usize)]) -> Vec<Run> {
        let mut b = GsoBatcher::new(max_segments);
        let mut out = Vec::new();
        for (to, len) in datagrams {
            out.extend(b.push(addr(to), *len));
        }
        out.extend(b.finish());
        out
    }

    const A: &str = "192.0.2.1:51820";
    const B: &str = "192.0.2.2:51820";

    #[test]
    fn equal_datagrams_to_one_peer_make_one_send_with_a_shorter_last() {
        let r = runs(64, &[(A, 1452), (A, 1452), (A, 1452), (A, 700)]);
        assert_eq!(r, vec![Run { to: addr(A), start: 0, end: 3 * 1452 + 700, segment: 1452 }]);
        assert!(r[0].segmented());
    }

    #[test]
    fn a_datagram_after_a_short_one_or_a_larger_one_starts_a_new_send() {
        let r = runs(64, &[(A, 1452), (A, 700), (A, 1452), (A, 1500)]);
        assert_eq!(
            r,
            vec![
                Run { to: addr(A), start: 0, end: 2152, segment: 1452 },
                Run { to: addr(A), start: 2152, end: 3604, segment: 1452 },
                Run { to: addr(A), start: 3604, end: 5104, segment: 1500 },
            ]
        );
        assert!(!r[1].segmented());
    }

    #[test]
    fn another_destination_starts_a_new_send() {
        let r = runs(64, &[(A, 100), (B, 100), (B, 100), (A, 100)]);
        assert_eq!(r.iter().map(|r| (r.to, r.end - r.start)).collect::<Vec<_>>(), vec![(addr(A), 100), (addr(B), 200), (addr(A), 100)]);
    }

    #[test]
    fn sends_stay_within_the_segment_count_and_one_udp_payload() {
        let r = runs(3, &[(A, 10); 7]);
        assert_eq!(r.iter().map(|r| r.end - r.start).collect::<Vec<_>>(), vec![30, 30, 10]);

        // 45 datagrams of 1452 bytes are 65,340 bytes: a 46th would pass 65,507.
        let r = runs(64, &[(A, 1452); 50]);
        assert_eq!(r.iter().map(|r| (r.end - r.start) / 1452).collect::<Vec<_>>(), vec![45, 5]);
        assert!(r.iter().all(|r| r.end - r.start <= MAX_GSO_BYTES));
    }

    #[test]
    fn without_gso_each_datagram_is_its_own_send_and_finish_starts_over() {
        let mut b = GsoBatcher::new(1);
        assert_eq!(b.push(addr(A), 10), None);
        assert_eq!(b.next_offset(), 10);
        assert_eq!(b.push(addr(A), 10), Some(Run { to: addr(A), start: 0, end: 10, segment: 10 }));
        assert_eq!(b.finish(), Some(Run { to: addr(A), start: 10, end: 20, segment: 10 }));
        assert_eq!(b.next_offset(), 0);
        assert_eq!(b.finish(), None);
    }
}
