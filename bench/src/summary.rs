//! The counter line `uring-tunnel run` prints at shutdown (`tun_reads=... syscalls=...`) and
//! the ratios derived from the two ends of a tunnel: syscalls per packet on the wire and
//! coalescing (segments per GSO send / GRO receive / TUN read / TUN write, super-packet sizes).

use std::collections::BTreeMap;

use serde::Serialize;

/// Every numeric `key=value` of one summary line.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Counters(pub BTreeMap<String, u64>);

impl Counters {
    /// Parses a summary line; non-numeric and unknown fields are skipped.
    pub fn parse(line: &str) -> Counters {
        Counters(
            line.split_whitespace()
                .filter_map(|kv| kv.split_once('='))
                .filter_map(|(k, v)| Some((k.to_owned(), v.parse::<u64>().ok()?)))
                .collect(),
        )
    }

    /// Finds the summary line (the one with `tun_rx=`) in a log and parses it.
    pub fn from_log(log: &str) -> Option<Counters> {
        log.lines()
            .rev()
            .find(|l| l.contains("tun_rx=") && l.contains("syscalls="))
            .map(Counters::parse)
    }

    /// One counter, 0 when absent.
    pub fn get(&self, key: &str) -> u64 {
        self.0.get(key).copied().unwrap_or(0)
    }

    /// Sum of every `drop_*` counter.
    pub fn drops(&self) -> u64 {
        self.0
            .iter()
            .filter(|(k, _)| k.starts_with("drop_"))
            .map(|(_, v)| v)
            .sum()
    }
}

fn ratio(n: u64, d: u64) -> Option<f64> {
    (d > 0).then(|| n as f64 / d as f64)
}

/// Ratios derived from the counters of both ends of one tunnel.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Derived {
    /// Syscalls of both ends per UDP datagram on the wire (both directions).
    pub syscalls_per_pkt: Option<f64>,
    /// Datagrams per UDP send call (GSO), both ends.
    pub gso_segs_per_send: Option<f64>,
    /// Datagrams per UDP receive (GRO), both ends.
    pub gro_segs_per_recv: Option<f64>,
    /// Inner packets per TUN read (TSO/USO super-packets), both ends.
    pub tun_segs_per_read: Option<f64>,
    /// Inner packets per TUN write (coalesced), both ends.
    pub tun_segs_per_write: Option<f64>,
    /// Bytes per TUN read.
    pub tun_bytes_per_read: Option<f64>,
    /// Bytes per TUN write.
    pub tun_bytes_per_write: Option<f64>,
    /// Bytes per UDP send.
    pub udp_bytes_per_send: Option<f64>,
    /// Bytes per UDP receive.
    pub udp_bytes_per_recv: Option<f64>,
    /// Drops of both ends, every reason.
    pub drops: u64,
}

impl Derived {
    /// Derives the ratios from the two ends' counters.
    pub fn of(ends: &[&Counters]) -> Derived {
        // A counter no end reports (an older binary without byte counts) gives no ratio,
        // rather than a ratio of zero.
        let sum = |k: &str| {
            ends.iter()
                .any(|c| c.0.contains_key(k))
                .then(|| ends.iter().map(|c| c.get(k)).sum::<u64>())
        };
        let ratio = |n: &str, d: &str| match (sum(n), sum(d)) {
            (Some(n), Some(d)) => ratio(n, d),
            _ => None,
        };
        Derived {
            syscalls_per_pkt: ratio("syscalls", "udp_tx"),
            gso_segs_per_send: ratio("udp_tx", "udp_sends"),
            gro_segs_per_recv: ratio("udp_rx", "udp_recvs"),
            tun_segs_per_read: ratio("tun_rx", "tun_reads"),
            tun_segs_per_write: ratio("tun_tx", "tun_writes"),
            tun_bytes_per_read: ratio("tun_rx_bytes", "tun_reads"),
            tun_bytes_per_write: ratio("tun_tx_bytes", "tun_writes"),
            udp_bytes_per_send: ratio("udp_tx_bytes", "udp_sends"),
            udp_bytes_per_recv: ratio("udp_rx_bytes", "udp_recvs"),
            drops: ends.iter().map(|c| c.drops()).sum(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LINE: &str = "uring-tunnel: ubA1: tun_reads=10 tun_rx=460 tun_tx=20 udp_recvs=4 udp_rx=20 udp_tx=460 udp_sends=10 tun_writes=2 syscalls=23 shards_tun_rx/udp_rx=[460/20] drop_replayed=3 tun_rx_bytes=644000";

    #[test]
    fn parses_the_summary_line() {
        let c = Counters::parse(LINE);
        assert_eq!(c.get("tun_reads"), 10);
        assert_eq!(c.get("syscalls"), 23);
        assert_eq!(c.get("drop_replayed"), 3);
        assert_eq!(c.get("tun_rx_bytes"), 644_000);
        assert_eq!(c.get("missing"), 0);
        assert!(!c.0.contains_key("shards_tun_rx/udp_rx"));
        assert_eq!(c.drops(), 3);
        let log = format!("uring-tunnel: ubA1 up: engine=uring\n{LINE}\nuring-tunnel: ubA1 down\n");
        assert_eq!(Counters::from_log(&log), Some(c));
        assert_eq!(Counters::from_log("nothing here"), None);
    }

    #[test]
    fn derives_ratios_over_both_ends() {
        let a = Counters::parse(LINE);
        let b = Counters::parse(
            "tun_reads=2 tun_rx=20 tun_tx=460 udp_recvs=10 udp_rx=460 udp_tx=20 udp_sends=2 tun_writes=10 syscalls=17",
        );
        let d = Derived::of(&[&a, &b]);
        assert_eq!(d.syscalls_per_pkt, Some(40.0 / 480.0));
        assert_eq!(d.gso_segs_per_send, Some(40.0));
        assert_eq!(d.gro_segs_per_recv, Some(480.0 / 14.0));
        assert_eq!(d.tun_segs_per_read, Some(40.0));
        assert_eq!(d.tun_segs_per_write, Some(40.0));
        assert_eq!(d.tun_bytes_per_read, Some(644_000.0 / 12.0));
        assert_eq!(d.udp_bytes_per_send, None);
        assert_eq!(d.drops, 3);
        assert_eq!(Derived::of(&[]).syscalls_per_pkt, None);
    }
}
