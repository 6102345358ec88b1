//! A bad network in user space: a UDP relay on the underlay that loses, duplicates, delays and
//! reorders the tunnel's outer datagrams, like `tc netem` on the veth would (this kernel has no
//! `sch_netem`; the relay works everywhere and counts exactly what it did).
//!
//! Side A's peer endpoint is the relay's front address; the relay forwards to B's real endpoint
//! from a back socket and returns B's datagrams through the front socket to whoever last sent
//! from A. B must have no configured endpoint for A (it learns the relay's back address from
//! the first authenticated packet), so every datagram in both directions crosses the relay.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::Netns;
use crate::flood::Rng;

/// What the relay does to each datagram (each direction alike), in the order netem applies it:
/// loss, then duplication, then delay with a share sent at once (reordered ahead).
#[derive(Debug, Clone, Copy, Default)]
pub struct Impairment {
    /// Probability a datagram is dropped.
    pub loss: f64,
    /// Probability a (kept) datagram is sent twice.
    pub duplicate: f64,
    /// Delay of every datagram.
    pub delay: Duration,
    /// Probability a datagram skips the delay (netem's `reorder`: it overtakes the delayed
    /// ones).
    pub reorder: f64,
}

/// Counters of one direction.
#[derive(Debug, Default)]
pub struct DirCounters {
    /// Datagrams received by the relay.
    pub received: AtomicU64,
    /// Dropped on purpose.
    pub lost: AtomicU64,
    /// Extra copies sent.
    pub duplicated: AtomicU64,
    /// Sent without the delay (overtaking earlier ones).
    pub reordered: AtomicU64,
    /// Datagrams sent (copies included).
    pub sent: AtomicU64,
}

/// Snapshot of [`DirCounters`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DirStats {
    /// Received.
    pub received: u64,
    /// Lost on purpose.
    pub lost: u64,
    /// Extra copies.
    pub duplicated: u64,
    /// Sent ahead of delayed ones.
    pub reordered: u64,
    /// Sent.
    pub sent: u64,
}

impl DirCounters {
    fn snapshot(&self) -> DirStats {
        DirStats {
            received: self.received.load(Relaxed),
            lost: self.lost.load(Relaxed),
            duplicated: self.duplicated.load(Relaxed),
            reordered: self.reordered.load(Relaxed),
            sent: self.sent.load(Relaxed),
        }
    }
}

/// A running relay; stopped on drop.
#[derive(Debug)]
pub struct Relay {
    front: SocketAddr,
    stop: Arc<AtomicBool>,
    a_to_b: Arc<DirCounters>,
    b_to_a: Arc<DirCounters>,
    threads: Vec<JoinHandle<()>>,
}

impl Relay {
    /// Starts a relay in `ns` listening on `front` (A sends here) and forwarding to `back_to`
    /// (B's tunnel), with `imp` applied in both directions.
    pub fn start(
        ns: &Netns,
        front: SocketAddr,
        back_to: SocketAddr,
        imp: Impairment,
        seed: u64,
    ) -> io::Result<Relay> {
        let stop = Arc::new(AtomicBool::new(false));
        let a_to_b = Arc::new(DirCounters::default());
        let b_to_a = Arc::new(DirCounters::default());
        let bind_back = if back_to.is_ipv6() {
            "[::]:0"
        } else {
            "0.0.0.0:0"
        };
        let setup = ns.run_in(move || -> io::Result<(UdpSocket, UdpSocket)> {
            let f = UdpSocket::bind(front)?;
            let b = UdpSocket::bind(bind_back)?;
            Ok((f, b))
        })?;
        let (front_sock, back_sock) = setup
            .join()
            .map_err(|_| io::Error::other("relay set-up panicked"))??;
        let front_sock = Arc::new(front_sock);
        let back_sock = Arc::new(back_sock);
        let a_peer: Arc<arc_cell::Cell> = Arc::new(arc_cell::Cell::default());
        let mut threads = Vec::new();
        // A → B: receive on front, remember A's address, send from back to B.
        {
            let (inp, out) = (Arc::clone(&front_sock), Arc::clone(&back_sock));
            let (stop, c, a_peer) = (Arc::clone(&stop), Arc::clone(&a_to_b), Arc::clone(&a_peer));
            threads.push(std::thread::spawn(move || {
                pump(
                    &inp,
                    &out,
                    Some(back_to),
                    &a_peer,
                    true,
                    imp,
                    &c,
                    &stop,
                    seed,
                );
            }));
        }
        // B → A: receive on back, send from front to A's last address.
        {
            let (inp, out) = (Arc::clone(&back_sock), Arc::clone(&front_sock));
            let (stop, c) = (Arc::clone(&stop), Arc::clone(&b_to_a));
            threads.push(std::thread::spawn(move || {
                pump(
                    &inp,
                    &out,
                    None,
                    &a_peer,
                    false,
                    imp,
                    &c,
                    &stop,
                    seed ^ 0x5555,
                );
            }));
        }
        Ok(Relay {
            front,
            stop,
            a_to_b,
            b_to_a,
            threads,
        })
    }

    /// The address A must use as B's endpoint.
    pub fn front(&self) -> SocketAddr {
        self.front
    }

    /// Counters of the A → B direction.
    pub fn a_to_b(&self) -> DirStats {
        self.a_to_b.snapshot()
    }

    /// Counters of the B → A direction.
    pub fn b_to_a(&self) -> DirStats {
        self.b_to_a.snapshot()
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.stop.store(true, Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// A tiny lock-protected cell for A's address (written by one thread, read by the other).
mod arc_cell {
    use std::net::SocketAddr;
    use std::sync::Mutex;

    #[derive(Debug, Default)]
    pub(crate) struct Cell(Mutex<Option<SocketAddr>>);

    impl Cell {
        pub(crate) fn set(&self, a: SocketAddr) {
            *self.0.lock().unwrap_or_else(|e| e.into_inner()) = Some(a);
        }
        pub(crate) fn get(&self) -> Option<SocketAddr> {
            *self.0.lock().unwrap_or_else(|e| e.into_inner())
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn pump(
    inp: &UdpSocket,
    out: &UdpSocket,
    fixed_dst: Option<SocketAddr>,
    a_peer: &arc_cell::Cell,
    learn_a: bool,
    imp: Impairment,
    c: &DirCounters,
    stop: &AtomicBool,
    seed: u64,
) {
    let mut rng = Rng::new(seed);
    // (release time, sequence) → datagram; the sequence keeps equal times in arrival order.
    let mut queue: BinaryHeap<Reverse<(Instant, u64)>> = BinaryHeap::new();
    let mut store: std::collections::HashMap<u64, Vec<u8>> = std::collections::HashMap::new();
    let mut seq = 0u64;
    let mut buf = vec![0u8; 65536];
    let _ = inp.set_read_timeout(Some(Duration::from_millis(1)));
    while !stop.load(Relaxed) {
        let now = Instant::now();
        while let Some(Reverse((t, s))) = queue.peek().copied() {
            if t > now {
                break;
            }
            queue.pop();
            if let Some(d) = store.remove(&s) {
                let dst = fixed_dst.or_else(|| a_peer.get());
                if let Some(dst) = dst
                    && out.send_to(&d, dst).is_ok()
                {
                    c.sent.fetch_add(1, Relaxed);
                }
            }
        }
        if let Some(Reverse((t, _))) = queue.peek() {
            let wait = t
                .saturating_duration_since(Instant::now())
                .clamp(Duration::from_micros(100), Duration::from_millis(1));
            let _ = inp.set_read_timeout(Some(wait));
        } else {
            let _ = inp.set_read_timeout(Some(Duration::from_millis(5)));
        }
        // Drain what is waiting (bounded, so due packets are not starved).
        for _ in 0..256 {
            let (n, from) = match inp.recv_from(&mut buf) {
                Ok(x) => x,
                Err(_) => break,
            };
            if learn_a {
                a_peer.set(from);
            }
            c.received.fetch_add(1, Relaxed);
            if rng.chance(imp.loss) {
                c.lost.fetch_add(1, Relaxed);
                continue;
            }
            let copies = if rng.chance(imp.duplicate) {
                c.duplicated.fetch_add(1, Relaxed);
                2
            } else {
                1
            };
            let at = Instant::now();
            for _ in 0..copies {
                let when = if imp.reorder > 0.0 && rng.chance(imp.reorder) {
                    c.reordered.fetch_add(1, Relaxed);
                    at
                } else {
                    at + imp.delay
                };
                store.insert(seq, buf[..n].to_vec());
                queue.push(Reverse((when, seq)));
                seq += 1;
            }
            let _ = inp.set_read_timeout(Some(Duration::from_micros(100)));
        }
    }
}
