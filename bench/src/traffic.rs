//! The built-in traffic generator and sink (hidden `bench-gen` / `bench-sink` subcommands),
//! and [`TrafficProc`], the bench's handle on one of them running in a namespace.
//!
//! Protocol: the process prints one JSON [`Snapshot`] line with `event = "ready"` once it is
//! bound/connected, then answers each `mark` line on stdin with a snapshot of its counters and
//! `stop` (or end of input) with a final snapshot before exiting. The `rtt` generator runs its
//! probes, prints its final snapshot (with [`RttStats`]) and exits by itself.
//!
//! UDP datagrams carry a big-endian `u64` sequence number in their first 8 bytes, so the sink
//! counts unique datagrams and loss is exact (unique received / sent). Full-rate UDP sends use
//! UDP GSO (up to 64 segments per `sendmsg`) so the generator is not the bottleneck; the sink
//! receives with UDP GRO. Fixed-rate UDP sends single datagrams in 1 ms bursts, like iperf3.

use std::io::{self, BufRead, BufReader, IoSlice, IoSliceMut, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::AsRawFd;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::socket::{
    ControlMessage, ControlMessageOwned, MsgFlags, SockaddrStorage, getsockopt, recvmsg, sendmsg,
    setsockopt, sockopt,
};
use serde::{Deserialize, Serialize};

use crate::args::{GenArgs, SinkArgs, TrafficMode};
use crate::{BenchError, Result};

/// Largest number of segments per GSO send (the kernel's `UDP_MAX_SEGMENTS` is 64 or more).
const GSO_SEGS: usize = 64;
/// Largest UDP payload of one GSO send.
const GSO_MAX_BYTES: usize = 65_000;
/// Bitmap limit for sequence numbers (2^28 datagrams, a 32 MiB bitmap).
const MAX_SEQ: u64 = 1 << 28;

/// Round-trip statistics of the `rtt` generator, microseconds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RttStats {
    /// Probes answered.
    pub answered: u32,
    /// Probes lost (no answer within 1 s).
    pub lost: u32,
    /// Fastest.
    pub min_us: f64,
    /// Median.
    pub median_us: f64,
    /// 99th percentile.
    pub p99_us: f64,
    /// Slowest.
    pub max_us: f64,
}

impl RttStats {
    /// Statistics of a set of samples (sorted in place).
    pub fn of(samples: &mut [f64], lost: u32) -> RttStats {
        samples.sort_by(f64::total_cmp);
        let pick = |q: f64| {
            if samples.is_empty() {
                0.0
            } else {
                let i = ((samples.len() - 1) as f64 * q).round() as usize;
                samples[i.min(samples.len() - 1)]
            }
        };
        RttStats {
            answered: samples.len() as u32,
            lost,
            min_us: pick(0.0),
            median_us: pick(0.5),
            p99_us: pick(0.99),
            max_us: pick(1.0),
        }
    }
}

/// One report line of the generator or the sink.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    /// `ready`, `mark` or `final`.
    pub event: String,
    /// Seconds since the process started (monotonic).
    pub t: f64,
    /// Payload bytes sent (generator) or received (sink).
    pub bytes: u64,
    /// Datagrams sent or received (UDP), reads/writes (TCP).
    pub packets: u64,
    /// Unique sequence numbers received (UDP sink).
    pub unique: u64,
    /// TCP maximum segment size seen by the sink.
    pub mss: u32,
    /// Send/receive errors (ENOBUFS, ECONNREFUSED, ...), retried.
    pub errors: u64,
    /// Whether UDP GSO (generator) / GRO (sink) was in use.
    pub offload: bool,
    /// RTT results (`rtt` generator, final line).
    pub rtt: Option<RttStats>,
}

#[derive(Default)]
struct Shared {
    stop: AtomicBool,
    bytes: AtomicU64,
    packets: AtomicU64,
    unique: AtomicU64,
    mss: AtomicU32,
    errors: AtomicU64,
    offload: AtomicBool,
}

impl Shared {
    fn snapshot(&self, event: &str, start: Instant) -> Snapshot {
        Snapshot {
            event: event.into(),
            t: start.elapsed().as_secs_f64(),
            bytes: self.bytes.load(Relaxed),
            packets: self.packets.load(Relaxed),
            unique: self.unique.load(Relaxed),
            mss: self.mss.load(Relaxed),
            errors: self.errors.load(Relaxed),
            offload: self.offload.load(Relaxed),
            rtt: None,
        }
    }
}

fn emit(s: &Snapshot) {
    let mut out = io::stdout().lock();
    if let Ok(line) = serde_json::to_string(s) {
        let _ = writeln!(out, "{line}");
        let _ = out.flush();
    }
}

/// Serves `mark`/`stop` on stdin until stop or end of input, then stops the workers.
fn control_loop(shared: &Shared, start: Instant, workers: Vec<thread::JoinHandle<()>>) {
    emit(&shared.snapshot("ready", start));
    let stdin = io::stdin();
    for line in stdin.lock().lines() {
        match line.as_deref().map(str::trim) {
            Ok("mark") => emit(&shared.snapshot("mark", start)),
            Ok("stop") | Err(_) => break,
            Ok(_) => {}
        }
    }
    shared.stop.store(true, Relaxed);
    for w in workers {
        let _ = w.join();
    }
    emit(&shared.snapshot("final", start));
}

fn bind_any(dst: SocketAddr) -> io::Result<UdpSocket> {
    let any: SocketAddr = if dst.is_ipv4() {
        "0.0.0.0:0".parse().map_err(io::Error::other)?
    } else {
        "[::]:0".parse().map_err(io::Error::other)?
    };
    UdpSocket::bind(any)
}

/// Runs the hidden `bench-gen` subcommand until it is told to stop.
pub fn gen_main(args: &GenArgs) -> Result<()> {
    let start = Instant::now();
    let shared = Arc::new(Shared::default());
    match args.mode {
        TrafficMode::Tcp => {
            let mut workers = Vec::new();
            let streams = args.streams.clamp(1, 64);
            let mut conns = Vec::new();
            for _ in 0..streams {
                conns.push(connect_retry(args.dst, Duration::from_secs(5))?);
            }
            for mut c in conns {
                let sh = Arc::clone(&shared);
                workers.push(thread::spawn(move || {
                    let _ = c.set_write_timeout(Some(Duration::from_millis(100)));
                    let buf = vec![0x5au8; 256 * 1024];
                    while !sh.stop.load(Relaxed) {
                        match c.write(&buf) {
                            Ok(n) => {
                                sh.bytes.fetch_add(n as u64, Relaxed);
                                sh.packets.fetch_add(1, Relaxed);
                            }
                            Err(e) if is_retry(&e) => {}
                            Err(_) => {
                                sh.errors.fetch_add(1, Relaxed);
                                break;
                            }
                        }
                    }
                }));
            }
            control_loop(&shared, start, workers);
        }
        TrafficMode::Udp | TrafficMode::UdpRate => {
            if args.size < 8 || args.size > 65_000 {
                return Err(BenchError::Args(format!(
                    "--size {}: between 8 and 65000",
                    args.size
                )));
            }
            let sock = bind_any(args.dst).map_err(BenchError::io("binding the UDP socket"))?;
            sock.connect(args.dst)
                .map_err(BenchError::io(format!("connecting to {}", args.dst)))?;
            set_buffer(&sock, false);
            let sh = Arc::clone(&shared);
            let (size, rate, mode) = (args.size, args.rate, args.mode);
            let w = thread::spawn(move || {
                if mode == TrafficMode::Udp {
                    udp_flood(&sock, size, &sh);
                } else {
                    udp_paced(&sock, size, rate, &sh);
                }
            });
            control_loop(&shared, start, vec![w]);
        }
        TrafficMode::Rtt => {
            let sock = bind_any(args.dst).map_err(BenchError::io("binding the UDP socket"))?;
            sock.connect(args.dst)
                .map_err(BenchError::io(format!("connecting to {}", args.dst)))?;
            sock.set_read_timeout(Some(Duration::from_secs(1)))
                .map_err(BenchError::io("SO_RCVTIMEO"))?;
            emit(&shared.snapshot("ready", start));
            let size = args.size.max(8);
            let mut buf = vec![0u8; size];
            let mut rbuf = vec![0u8; 2048];
            let mut samples = Vec::with_capacity(args.probes as usize);
            let mut lost = 0;
            for seq in 0..u64::from(args.probes) {
                buf[..8].copy_from_slice(&seq.to_be_bytes());
                let t0 = Instant::now();
                if sock.send(&buf).is_err() {
                    lost += 1;
                    continue;
                }
                loop {
                    match sock.recv(&mut rbuf) {
                        Ok(n) if n >= 8 && rbuf[..8] == seq.to_be_bytes() => {
                            samples.push(t0.elapsed().as_secs_f64() * 1e6);
                            break;
                        }
                        Ok(_) => {}
                        Err(_) => {
                            lost += 1;
                            break;
                        }
                    }
                }
                thread::sleep(Duration::from_micros(args.interval_us));
            }
            let mut s = shared.snapshot("final", start);
            s.packets = samples.len() as u64;
            s.rtt = Some(RttStats::of(&mut samples, lost));
            emit(&s);
        }
    }
    Ok(())
}

fn is_retry(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
    )
}

fn connect_retry(dst: SocketAddr, timeout: Duration) -> Result<TcpStream> {
    let deadline = Instant::now() + timeout;
    loop {
        match TcpStream::connect_timeout(&dst, Duration::from_secs(1)) {
            Ok(s) => return Ok(s),
            Err(e) if Instant::now() > deadline => {
                return Err(BenchError::Io {
                    what: format!("connecting to {dst}"),
                    source: e,
                });
            }
            Err(_) => thread::sleep(Duration::from_millis(50)),
        }
    }
}

fn set_buffer(sock: &UdpSocket, recv: bool) {
    if recv {
        if setsockopt(sock, sockopt::RcvBufForce, &(16 << 20)).is_err() {
            let _ = setsockopt(sock, sockopt::RcvBuf, &(16 << 20));
        }
    } else if setsockopt(sock, sockopt::SndBufForce, &(4 << 20)).is_err() {
        let _ = setsockopt(sock, sockopt::SndBuf, &(4 << 20));
    }
}

/// Full rate: GSO sends of up to 64 segments, each carrying its sequence number; falls back
/// to one datagram per send if the kernel refuses GSO.
fn udp_flood(sock: &UdpSocket, size: usize, sh: &Shared) {
    let segs = (GSO_MAX_BYTES / size).clamp(1, GSO_SEGS);
    let mut buf = vec![0x5au8; segs * size];
    let mut seq = 0u64;
    let mut gso = segs > 1;
    sh.offload.store(gso, Relaxed);
    let seg_size = size as u16;
    while !sh.stop.load(Relaxed) {
        if gso {
            for i in 0..segs {
                buf[i * size..i * size + 8].copy_from_slice(&(seq + i as u64).to_be_bytes());
            }
            let iov = [IoSlice::new(&buf)];
            let cmsg = [ControlMessage::UdpGsoSegments(&seg_size)];
            match sendmsg::<SockaddrStorage>(sock.as_raw_fd(), &iov, &cmsg, MsgFlags::empty(), None)
            {
                Ok(_) => {
                    seq += segs as u64;
                    sh.packets.store(seq, Relaxed);
                    sh.bytes.fetch_add((segs * size) as u64, Relaxed);
                }
                Err(nix::errno::Errno::EIO | nix::errno::Errno::EINVAL) => {
                    gso = false;
                    sh.offload.store(false, Relaxed);
                }
                Err(_) => {
                    sh.errors.fetch_add(1, Relaxed);
                }
            }
        } else {
            buf[..8].copy_from_slice(&seq.to_be_bytes());
            match sock.send(&buf[..size]) {
                Ok(_) => {
                    seq += 1;
                    sh.packets.store(seq, Relaxed);
                    sh.bytes.fetch_add(size as u64, Relaxed);
                }
                Err(_) => {
                    sh.errors.fetch_add(1, Relaxed);
                }
            }
        }
    }
}

/// Fixed rate: single datagrams, sent in a burst each time the schedule is behind (about
/// every millisecond), so the long-run rate is exact.
fn udp_paced(sock: &UdpSocket, size: usize, rate: u64, sh: &Shared) {
    let mut buf = vec![0x5au8; size];
    let start = Instant::now();
    let mut seq = 0u64;
    while !sh.stop.load(Relaxed) {
        let due = (start.elapsed().as_secs_f64() * rate as f64) as u64;
        if seq >= due {
            thread::sleep(Duration::from_micros(500));
            continue;
        }
        while seq < due && !sh.stop.load(Relaxed) {
            buf[..8].copy_from_slice(&seq.to_be_bytes());
            match sock.send(&buf) {
                Ok(_) => {
                    seq += 1;
                    sh.packets.store(seq, Relaxed);
                    sh.bytes.fetch_add(size as u64, Relaxed);
                }
                Err(_) => {
                    // Not sent: the sequence number is reused; count and skip this slot so
                    // a refusing path cannot spin.
                    sh.errors.fetch_add(1, Relaxed);
                    break;
                }
            }
        }
    }
}

/// Seen-set of sequence numbers.
struct SeqSet {
    words: Vec<u64>,
}

impl SeqSet {
    fn new() -> SeqSet {
        SeqSet {
            words: Vec::with_capacity(1 << 16),
        }
    }

    /// Marks `seq`; true when it was new.
    fn insert(&mut self, seq: u64) -> bool {
        if seq >= MAX_SEQ {
            return false;
        }
        let (w, b) = ((seq / 64) as usize, seq % 64);
        if w >= self.words.len() {
            self.words.resize((w + 1).next_power_of_two(), 0);
        }
        let was = self.words[w] & (1 << b) != 0;
        self.words[w] |= 1 << b;
        !was
    }
}

/// Runs the hidden `bench-sink` subcommand until it is told to stop.
pub fn sink_main(args: &SinkArgs) -> Result<()> {
    let start = Instant::now();
    let shared = Arc::new(Shared::default());
    match args.mode {
        TrafficMode::Tcp => {
            let l = TcpListener::bind(args.listen)
                .map_err(BenchError::io(format!("listening on {}", args.listen)))?;
            l.set_nonblocking(true)
                .map_err(BenchError::io("O_NONBLOCK"))?;
            let sh = Arc::clone(&shared);
            let acceptor = thread::spawn(move || {
                let mut readers = Vec::new();
                while !sh.stop.load(Relaxed) {
                    match l.accept() {
                        Ok((c, _)) => {
                            if let Ok(m) = getsockopt(&c, sockopt::TcpMaxSeg) {
                                sh.mss.store(m, Relaxed);
                            }
                            let sh = Arc::clone(&sh);
                            readers.push(thread::spawn(move || tcp_read(c, &sh)));
                        }
                        Err(_) => thread::sleep(Duration::from_millis(10)),
                    }
                }
                for r in readers {
                    let _ = r.join();
                }
            });
            control_loop(&shared, start, vec![acceptor]);
        }
        TrafficMode::Udp | TrafficMode::UdpRate => {
            let sock = UdpSocket::bind(args.listen)
                .map_err(BenchError::io(format!("binding {}", args.listen)))?;
            set_buffer(&sock, true);
            sock.set_read_timeout(Some(Duration::from_millis(100)))
                .map_err(BenchError::io("SO_RCVTIMEO"))?;
            let gro = setsockopt(&sock, sockopt::UdpGroSegment, &true).is_ok();
            shared.offload.store(gro, Relaxed);
            let sh = Arc::clone(&shared);
            let w = thread::spawn(move || udp_count(&sock, &sh));
            control_loop(&shared, start, vec![w]);
        }
        TrafficMode::Rtt => {
            let sock = UdpSocket::bind(args.listen)
                .map_err(BenchError::io(format!("binding {}", args.listen)))?;
            sock.set_read_timeout(Some(Duration::from_millis(100)))
                .map_err(BenchError::io("SO_RCVTIMEO"))?;
            let sh = Arc::clone(&shared);
            let w = thread::spawn(move || {
                let mut buf = vec![0u8; 2048];
                while !sh.stop.load(Relaxed) {
                    if let Ok((n, from)) = sock.recv_from(&mut buf) {
                        sh.packets.fetch_add(1, Relaxed);
                        sh.bytes.fetch_add(n as u64, Relaxed);
                        let _ = sock.send_to(&buf[..n], from);
                    }
                }
            });
            control_loop(&shared, start, vec![w]);
        }
    }
    Ok(())
}

fn tcp_read(mut c: TcpStream, sh: &Shared) {
    let _ = c.set_read_timeout(Some(Duration::from_millis(100)));
    let mut buf = vec![0u8; 256 * 1024];
    while !sh.stop.load(Relaxed) {
        match c.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                sh.bytes.fetch_add(n as u64, Relaxed);
                sh.packets.fetch_add(1, Relaxed);
            }
            Err(e) if is_retry(&e) => {}
            Err(_) => break,
        }
    }
}

/// Receives with GRO: each receive may hold a train of same-size segments (the last one may
/// be shorter), each starting with its sequence number.
fn udp_count(sock: &UdpSocket, sh: &Shared) {
    let mut buf = vec![0u8; 65_536];
    let mut cmsg = nix::cmsg_space!(i32);
    let mut seen = SeqSet::new();
    let mut unique = 0u64;
    while !sh.stop.load(Relaxed) {
        let (n, seg) = {
            let mut iov = [IoSliceMut::new(&mut buf)];
            match recvmsg::<SockaddrStorage>(
                sock.as_raw_fd(),
                &mut iov,
                Some(&mut cmsg),
                MsgFlags::empty(),
            ) {
                Ok(m) => {
                    let seg = m
                        .cmsgs()
                        .ok()
                        .and_then(|mut it| {
                            it.find_map(|c| match c {
                                ControlMessageOwned::UdpGroSegments(s) => Some(s as usize),
                                _ => None,
                            })
                        })
                        .unwrap_or(m.bytes);
                    (m.bytes, seg)
                }
                Err(_) => continue,
            }
        };
        if n == 0 || seg == 0 {
            continue;
        }
        let mut pkts = 0u64;
        for chunk in buf[..n].chunks(seg) {
            pkts += 1;
            if let Some(s) = chunk.get(..8) {
                let mut b = [0u8; 8];
                b.copy_from_slice(s);
                if seen.insert(u64::from_be_bytes(b)) {
                    unique += 1;
                }
            }
        }
        sh.packets.fetch_add(pkts, Relaxed);
        sh.bytes.fetch_add(n as u64, Relaxed);
        sh.unique.store(unique, Relaxed);
    }
}

/// A running generator or sink, driven over its stdin/stdout.
#[derive(Debug)]
pub struct TrafficProc {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<String>,
    what: String,
}

impl TrafficProc {
    /// Spawns `cmd` (stdin/stdout piped, stderr to `log`) and waits up to `timeout` for its
    /// `ready` line.
    pub fn spawn(
        mut cmd: Command,
        what: &str,
        log: std::fs::File,
        timeout: Duration,
    ) -> Result<(TrafficProc, Snapshot)> {
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .map_err(BenchError::io(format!("starting {what}")))?;
        let stdin = child.stdin.take();
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| BenchError::Setup(format!("{what}: no stdout")))?;
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(l) = line else { break };
                if tx.send(l).is_err() {
                    break;
                }
            }
        });
        let mut p = TrafficProc {
            child,
            stdin,
            lines: rx,
            what: what.into(),
        };
        let ready = p.next(timeout)?;
        Ok((p, ready))
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    fn next(&mut self, timeout: Duration) -> Result<Snapshot> {
        let line = self.lines.recv_timeout(timeout).map_err(|_| {
            let status = self.child.try_wait().ok().flatten();
            BenchError::Setup(format!(
                "{}: no report within {:.1} s (exit status: {status:?}; see its log)",
                self.what,
                timeout.as_secs_f64()
            ))
        })?;
        serde_json::from_str(&line)
            .map_err(|e| BenchError::Setup(format!("{}: bad report `{line}`: {e}", self.what)))
    }

    fn send(&mut self, cmd: &str) -> Result<()> {
        let what = self.what.clone();
        let stdin = self
            .stdin
            .as_mut()
            .ok_or_else(|| BenchError::Setup(format!("{what}: stdin closed")))?;
        stdin
            .write_all(format!("{cmd}\n").as_bytes())
            .and_then(|()| stdin.flush())
            .map_err(BenchError::io(format!("{what}: writing `{cmd}`")))
    }

    /// Asks for a snapshot of the counters.
    pub fn mark(&mut self) -> Result<Snapshot> {
        self.send("mark")?;
        self.next(Duration::from_secs(5))
    }

    /// Stops the process and returns its final snapshot.
    pub fn stop(mut self) -> Result<Snapshot> {
        let _ = self.send("stop");
        self.stdin = None;
        let s = self.next(Duration::from_secs(10));
        let _ = self.child.wait();
        s
    }

    /// Waits for the process's own final line (the `rtt` generator ends by itself).
    pub fn finish(mut self, timeout: Duration) -> Result<Snapshot> {
        let s = self.next(timeout);
        self.stdin = None;
        if s.is_err() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
        s
    }
}

impl Drop for TrafficProc {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seq_set_counts_unique() {
        let mut s = SeqSet::new();
        assert!(s.insert(0));
        assert!(s.insert(1000));
        assert!(!s.insert(1000));
        assert!(s.insert(63));
        assert!(!s.insert(MAX_SEQ));
    }

    #[test]
    fn rtt_stats() {
        let mut v: Vec<f64> = (1..=100).rev().map(f64::from).collect();
        let s = RttStats::of(&mut v, 2);
        assert_eq!(s.answered, 100);
        assert_eq!(s.lost, 2);
        assert_eq!(s.min_us, 1.0);
        assert_eq!(s.max_us, 100.0);
        assert_eq!(s.median_us, 51.0);
        assert_eq!(s.p99_us, 99.0);
        assert_eq!(RttStats::of(&mut [], 3).median_us, 0.0);
    }

    #[test]
    fn snapshot_round_trips() {
        let s = Snapshot {
            event: "mark".into(),
            bytes: 5,
            rtt: Some(RttStats::default()),
            ..Default::default()
        };
        let line = serde_json::to_string(&s).unwrap();
        assert_eq!(serde_json::from_str::<Snapshot>(&line).unwrap(), s);
    }

    /// Generator and sink on loopback, in threads of this process: every datagram sent is
    /// received exactly once and counted.
    #[test]
    fn udp_flood_and_count_on_loopback() {
        let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
        set_buffer(&rx, true);
        rx.set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        let _ = setsockopt(&rx, sockopt::UdpGroSegment, &true);
        let dst = rx.local_addr().unwrap();
        let sink = Arc::new(Shared::default());
        let s2 = Arc::clone(&sink);
        let r = thread::spawn(move || udp_count(&rx, &s2));
        let tx = bind_any(dst).unwrap();
        tx.connect(dst).unwrap();
        let gen_sh = Arc::new(Shared::default());
        let g2 = Arc::clone(&gen_sh);
        let g = thread::spawn(move || udp_paced(&tx, 100, 20_000, &g2));
        thread::sleep(Duration::from_millis(300));
        gen_sh.stop.store(true, Relaxed);
        g.join().unwrap();
        thread::sleep(Duration::from_millis(200));
        sink.stop.store(true, Relaxed);
        r.join().unwrap();
        let sent = gen_sh.packets.load(Relaxed);
        assert!((4_000..=8_000).contains(&sent), "{sent}");
        assert_eq!(sink.unique.load(Relaxed), sent);
        assert_eq!(sink.bytes.load(Relaxed), sent * 100);
    }
}
