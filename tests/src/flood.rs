//! Traffic that attacks a tunnel, and what the kernel and `/proc` say about a process.
//!
//! - [`garbage_flood`]: random datagrams (random length and type byte, so every parser path
//!   is hit) from many source ports in a tight send loop, for a fixed time;
//! - [`handshake_flood`]: paced handshake initiations with a valid MAC1 for the responder's
//!   public key (built with `uring-tunnel-crypto`'s `MacGenerator`), from many source ports, so
//!   they get past MAC1 and exercise the under-load cookie path;
//! - [`UdpSnmp`]: the `Udp:` line of `/proc/net/snmp` inside a namespace;
//! - [`rss_kib`], [`cpu_ticks`]: `VmRSS` and utime + stime of a process.

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use uring_tunnel_crypto::cookie::MacGenerator;
use uring_tunnel_crypto::keys::PublicKey;
use uring_tunnel_crypto::messages::INITIATION_LEN;

use crate::Netns;

/// What a flooder did.
#[derive(Debug, Clone, Copy, Default)]
pub struct FloodReport {
    /// Datagrams the kernel accepted for sending (and, with `IP_RECVERR`, handed to the link
    /// without a local drop).
    pub sent: u64,
    /// Sends that failed (local drops: `ENOBUFS`, `EAGAIN`, ...).
    pub failed: u64,
    /// How long the flood ran.
    pub elapsed: Duration,
}

impl FloodReport {
    /// Datagrams per second that went out.
    pub fn rate(&self) -> f64 {
        self.sent as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// xorshift64*: cheap, deterministic randomness for packet contents.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator from `seed` (0 is remapped).
    pub fn new(seed: u64) -> Rng {
        Rng(seed | 1)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Fills `buf` with random bytes.
    pub fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let v = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }

    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64 <= p && p > 0.0
    }
}

/// Ports the tests' tunnels listen on; flood sockets never take them.
const TUNNEL_PORTS: std::ops::RangeInclusive<u16> = 51800..=51899;

fn sockets(n: usize, v6: bool) -> io::Result<Vec<UdpSocket>> {
    (0..n.max(1))
        .map(|_| {
            // Ephemeral ports span the tunnels' listen ports (51820, 51821): a flood socket
            // holding one would stop a tunnel started later in this namespace from binding.
            let s = loop {
                let s = UdpSocket::bind(if v6 { "[::]:0" } else { "0.0.0.0:0" })?;
                if !TUNNEL_PORTS.contains(&s.local_addr()?.port()) {
                    break s;
                }
            };
            // Local drops (a full backlog on the far side of the veth) come back as ENOBUFS
            // instead of being swallowed, so `sent` counts only what left.
            if v6 {
                nix::sys::socket::setsockopt(&s, nix::sys::socket::sockopt::Ipv6RecvErr, &true)?;
            } else {
                nix::sys::socket::setsockopt(&s, nix::sys::socket::sockopt::Ipv4RecvErr, &true)?;
            }
            Ok(s)
        })
        .collect()
}

/// One random garbage datagram into `buf`, returning its length: 1..=1452 bytes with a random
/// first byte, a quarter of them shaped like a transport header (type 4, zero reserved bytes,
/// random receiver index) and some exactly the size of a handshake message.
fn garbage(rng: &mut Rng, buf: &mut [u8; 1452]) -> usize {
    let len = match rng.below(8) {
        0 => INITIATION_LEN,
        1 => 92,
        2 => 64,
        _ => 1 + rng.below(buf.len() as u64) as usize,
    };
    rng.fill(&mut buf[..len]);
    if rng.below(4) == 0 && len >= 4 {
        buf[..4].copy_from_slice(&[4, 0, 0, 0]);
    } else if rng.below(2) == 0 && len >= 4 {
        buf[0] = 1 + rng.below(3) as u8;
        buf[1..4].fill(0);
    }
    len
}

/// Floods `dst` from `ns` with random datagrams for `duration` as fast as one thread can send,
/// round-robin over `ports` source sockets.
pub fn garbage_flood(
    ns: &Netns,
    dst: SocketAddr,
    duration: Duration,
    ports: usize,
    seed: u64,
) -> io::Result<JoinHandle<io::Result<FloodReport>>> {
    ns.run_in(move || {
        let socks = sockets(ports, dst.is_ipv6())?;
        let mut rng = Rng::new(seed);
        let mut buf = [0u8; 1452];
        let mut r = FloodReport::default();
        let start = Instant::now();
        let mut i = 0usize;
        while start.elapsed() < duration {
            for _ in 0..64 {
                let len = garbage(&mut rng, &mut buf);
                match socks[i % socks.len()].send_to(&buf[..len], dst) {
                    Ok(_) => r.sent += 1,
                    Err(_) => r.failed += 1,
                }
                i = i.wrapping_add(1);
            }
        }
        r.elapsed = start.elapsed();
        Ok(r)
    })
}

/// Sends handshake initiations with a valid MAC1 for `responder` (and no MAC2) to `dst` from
/// `ns` at `rate` per second for `duration`, round-robin over `ports` source sockets. The
/// encrypted fields are random, so a responder that does its Diffie-Hellman work rejects them
/// (unknown peer); under load it must answer with cookie replies instead.
pub fn handshake_flood(
    ns: &Netns,
    dst: SocketAddr,
    responder: &PublicKey,
    rate: u32,
    duration: Duration,
    ports: usize,
    seed: u64,
) -> io::Result<JoinHandle<io::Result<FloodReport>>> {
    let responder = *responder;
    ns.run_in(move || {
        let socks = sockets(ports, dst.is_ipv6())?;
        let mut mac = MacGenerator::new(&responder);
        let mut rng = Rng::new(seed);
        let mut msg = [0u8; INITIATION_LEN];
        let mut r = FloodReport::default();
        let start = Instant::now();
        let mut i = 0usize;
        while start.elapsed() < duration {
            // Pace in 1 ms steps: the number due by now, minus what went out.
            let due = (start.elapsed().as_secs_f64() * f64::from(rate)) as u64;
            while r.sent + r.failed < due {
                rng.fill(&mut msg);
                msg[..4].copy_from_slice(&[1, 0, 0, 0]);
                mac.seal(&mut msg, start.elapsed());
                match socks[i % socks.len()].send_to(&msg, dst) {
                    Ok(_) => r.sent += 1,
                    Err(_) => r.failed += 1,
                }
                i = i.wrapping_add(1);
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        r.elapsed = start.elapsed();
        Ok(r)
    })
}

/// The `Udp:` counters of `/proc/net/snmp` in one namespace.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UdpSnmp {
    /// Datagrams delivered to sockets (counted when the application receives them).
    pub in_datagrams: u64,
    /// Datagrams to a port nobody listens on.
    pub no_ports: u64,
    /// Receive errors (includes `rcvbuf_errors`).
    pub in_errors: u64,
    /// Datagrams sent.
    pub out_datagrams: u64,
    /// Datagrams dropped because a socket's receive buffer was full.
    pub rcvbuf_errors: u64,
    /// Datagrams dropped on the way out (send buffer / device backlog full).
    pub sndbuf_errors: u64,
}

impl UdpSnmp {
    /// Reads the counters inside `ns` (`ip netns exec NS cat /proc/net/snmp`).
    pub fn read(ns: &Netns) -> io::Result<UdpSnmp> {
        let out = crate::run(ns.command("cat").arg("/proc/net/snmp"))?;
        Self::parse(&String::from_utf8_lossy(&out.stdout))
            .ok_or_else(|| io::Error::other("no Udp: lines in /proc/net/snmp"))
    }

    /// Parses the text of `/proc/net/snmp`.
    pub fn parse(text: &str) -> Option<UdpSnmp> {
        let mut lines = text.lines().filter(|l| l.starts_with("Udp: "));
        let names: Vec<&str> = lines.next()?.split_whitespace().skip(1).collect();
        let values: Vec<u64> = lines
            .next()?
            .split_whitespace()
            .skip(1)
            .map(|v| v.parse().unwrap_or(0))
            .collect();
        let get = |n: &str| {
            names
                .iter()
                .position(|x| *x == n)
                .and_then(|i| values.get(i).copied())
                .unwrap_or(0)
        };
        Some(UdpSnmp {
            in_datagrams: get("InDatagrams"),
            no_ports: get("NoPorts"),
            in_errors: get("InErrors"),
            out_datagrams: get("OutDatagrams"),
            rcvbuf_errors: get("RcvbufErrors"),
            sndbuf_errors: get("SndbufErrors"),
        })
    }

    /// Counter increases from `before` to `self`.
    pub fn since(&self, before: &UdpSnmp) -> UdpSnmp {
        UdpSnmp {
            in_datagrams: self.in_datagrams.saturating_sub(before.in_datagrams),
            no_ports: self.no_ports.saturating_sub(before.no_ports),
            in_errors: self.in_errors.saturating_sub(before.in_errors),
            out_datagrams: self.out_datagrams.saturating_sub(before.out_datagrams),
            rcvbuf_errors: self.rcvbuf_errors.saturating_sub(before.rcvbuf_errors),
            sndbuf_errors: self.sndbuf_errors.saturating_sub(before.sndbuf_errors),
        }
    }
}

/// Resident set size of `pid` in KiB (`VmRSS` in `/proc/PID/status`).
pub fn rss_kib(pid: u32) -> io::Result<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    text.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| io::Error::other("no VmRSS"))
}

/// CPU time (user + system) of `pid` so far, from `/proc/PID/stat` (all its threads).
pub fn cpu_time(pid: u32) -> io::Result<Duration> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command name (which may contain spaces) start at state (field 3).
    let rest = text
        .rsplit_once(')')
        .map(|(_, r)| r)
        .ok_or_else(|| io::Error::other("bad /proc/PID/stat"))?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    // utime is field 14, stime 15: indices 11 and 12 after the state field.
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok());
    let (Some(u), Some(s)) = (ticks(11), ticks(12)) else {
        return Err(io::Error::other("no utime/stime"));
    };
    let hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .unwrap_or(100)
        .max(1) as u64;
    Ok(Duration::from_micros((u + s) * 1_000_000 / hz))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snmp_parses() {
        let t = "Ip: Forwarding\nIp: 1\nUdp: InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors SndbufErrors InCsumErrors IgnoredMulti MemErrors\nUdp: 10 2 3 4 5 6 0 0 0\nUdpLite: InDatagrams\nUdpLite: 0\n";
        let s = UdpSnmp::parse(t).unwrap();
        assert_eq!(s.in_datagrams, 10);
        assert_eq!(s.no_ports, 2);
        assert_eq!(s.in_errors, 3);
        assert_eq!(s.rcvbuf_errors, 5);
        assert_eq!(s.sndbuf_errors, 6);
        assert_eq!(s.since(&UdpSnmp::default()), s);
    }

    #[test]
    fn own_process_figures() {
        let pid = std::process::id();
        assert!(rss_kib(pid).unwrap() > 0);
        let mut x = 0u64;
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_millis(50) {
            x = x.wrapping_add(std::hint::black_box(1));
        }
        assert!(x > 0);
        assert!(cpu_time(pid).unwrap() > Duration::ZERO);
    }

    #[test]
    fn initiations_pass_mac1() {
        let key = uring_tunnel_crypto::keys::StaticSecret::from_bytes([7; 32]);
        let public = key.public_key();
        let checker = uring_tunnel_crypto::cookie::CookieChecker::new(&public);
        let mut mac = MacGenerator::new(&public);
        let mut rng = Rng::new(3);
        let mut msg = [0u8; INITIATION_LEN];
        rng.fill(&mut msg);
        msg[..4].copy_from_slice(&[1, 0, 0, 0]);
        mac.seal(&mut msg, Duration::ZERO);
        assert!(checker.verify_mac1(&msg).is_ok());
        msg[40] ^= 1;
        assert!(checker.verify_mac1(&msg).is_err());
    }

    #[test]
    fn garbage_varies() {
        let mut rng = Rng::new(5);
        let mut buf = [0u8; 1452];
        let mut lens = std::collections::HashSet::new();
        let mut types = std::collections::HashSet::new();
        for _ in 0..1000 {
            let n = garbage(&mut rng, &mut buf);
            assert!((1..=1452).contains(&n));
            lens.insert(n);
            types.insert(buf[0]);
        }
        assert!(lens.len() > 100 && types.len() > 50);
        assert!(types.contains(&4) && types.contains(&1));
    }
}
