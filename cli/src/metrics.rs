//! `run --metrics ADDR`: the engine's counters in the Prometheus text exposition format
//! (version 0.0.4), served on `GET /metrics` by one small std-only HTTP thread.
//!
//! [`render`] is a pure function from an [`EngineStats`] snapshot to the exposition text; the
//! server ([`serve`]) answers one connection at a time, with a bounded request size and a
//! deadline per connection, and never touches the datapath (it reads `Relaxed` atomics through
//! a [`uring_tunnel_engine::stats::StatsHandle`]).
//!
//! Naming: every metric starts with `uring_tunnel_`; counters end in `_total`, with the unit
//! before it (`_bytes_total`, `_packets_total`); per-shard series carry `shard="N"`, drops
//! `reason="..."` (the stable `DropReason::name`s), per-peer series `public_key="<base64>"`.

use std::fmt::Write as _;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use uring_tunnel_engine::stats::{DropCounts, EngineStats, HistogramSnapshot, StatsSnapshot};

/// Constant facts about the running tunnel, exported as labels of `uring_tunnel_info`.
#[derive(Debug, Clone, Default)]
pub struct MetricsInfo {
    /// Interface name.
    pub interface: String,
    /// Backend: `uring` or `epoll`.
    pub engine: String,
    /// TUN offloads granted: virtio-net header, checksum, TSO, USO.
    pub vnet_hdr: bool,
    /// Checksum offload on the TUN.
    pub csum: bool,
    /// TSO on the TUN.
    pub tso: bool,
    /// USO on the TUN.
    pub uso: bool,
    /// UDP GSO at start-up.
    pub udp_gso: bool,
    /// UDP GRO.
    pub udp_gro: bool,
}

/// Escapes a label value (`\`, `"`, newline) as the text format requires.
fn escape(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// Writes the `# HELP` and `# TYPE` lines of one family.
fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// One per-shard counter family: `name{shard="i"} value` for every shard.
fn shard_counter(
    out: &mut String,
    shards: &[StatsSnapshot],
    name: &str,
    help: &str,
    f: impl Fn(&StatsSnapshot) -> u64,
) {
    family(out, name, "counter", help);
    for (i, s) in shards.iter().enumerate() {
        let _ = writeln!(out, "{name}{{shard=\"{i}\"}} {}", f(s));
    }
}

/// One histogram family with a series per shard.
fn shard_histogram(
    out: &mut String,
    shards: &[StatsSnapshot],
    name: &str,
    help: &str,
    f: impl Fn(&StatsSnapshot) -> &HistogramSnapshot,
) {
    family(out, name, "histogram", help);
    for (i, s) in shards.iter().enumerate() {
        let h = f(s);
        let cumulative = h.cumulative();
        for (j, c) in cumulative.iter().enumerate() {
            let le = h
                .bounds
                .get(j)
                .map_or_else(|| "+Inf".to_owned(), u64::to_string);
            let _ = writeln!(out, "{name}_bucket{{shard=\"{i}\",le=\"{le}\"}} {c}");
        }
        let _ = writeln!(out, "{name}_sum{{shard=\"{i}\"}} {}", h.sum);
        let _ = writeln!(out, "{name}_count{{shard=\"{i}\"}} {}", h.count);
    }
}

fn by_reason(out: &mut String, labels: &str, drops: &DropCounts, name: &str) {
    for (r, n) in drops.iter() {
        let _ = writeln!(out, "{name}{{{labels}reason=\"{}\"}} {n}", r.name());
    }
}

/// Name, help text and accessor of one per-shard counter family.
type ShardCounter = (&'static str, &'static str, fn(&StatsSnapshot) -> u64);

/// The exposition text for one snapshot. Pure: same input, same output.
pub fn render(info: &MetricsInfo, st: &EngineStats) -> String {
    let mut out = String::with_capacity(16 * 1024);
    let o = &mut out;
    let sh = &st.shards[..];

    family(
        o,
        "uring_tunnel_info",
        "gauge",
        "Constant 1; labels describe the running tunnel.",
    );
    let _ = writeln!(
        o,
        "uring_tunnel_info{{version=\"{}\",interface=\"{}\",engine=\"{}\",vnet_hdr=\"{}\",csum=\"{}\",tso=\"{}\",uso=\"{}\",udp_gso=\"{}\",udp_gro=\"{}\"}} 1",
        env!("CARGO_PKG_VERSION"),
        escape(&info.interface),
        escape(&info.engine),
        info.vnet_hdr,
        info.csum,
        info.tso,
        info.uso,
        info.udp_gso,
        info.udp_gro,
    );
    family(o, "uring_tunnel_shards", "gauge", "Number of shards.");
    let _ = writeln!(o, "uring_tunnel_shards {}", sh.len());
    family(
        o,
        "uring_tunnel_peers",
        "gauge",
        "Number of configured peers.",
    );
    let _ = writeln!(o, "uring_tunnel_peers {}", st.peers.len());

    let counters: [ShardCounter; 19] = [
        (
            "uring_tunnel_tun_reads_total",
            "TUN reads (each may be a TSO/USO super-packet).",
            |s| s.tun_reads,
        ),
        (
            "uring_tunnel_tun_rx_packets_total",
            "Inner packets read from the TUN, after splitting super-packets.",
            |s| s.tun_rx_packets,
        ),
        (
            "uring_tunnel_tun_rx_bytes_total",
            "Inner bytes read from the TUN.",
            |s| s.tun_rx_bytes,
        ),
        (
            "uring_tunnel_tun_writes_total",
            "TUN writes (each may be a coalesced super-packet).",
            |s| s.tun_writes,
        ),
        (
            "uring_tunnel_tun_tx_packets_total",
            "Inner packets written to the TUN, before coalescing.",
            |s| s.tun_tx_packets,
        ),
        (
            "uring_tunnel_tun_tx_bytes_total",
            "Inner bytes written to the TUN.",
            |s| s.tun_tx_bytes,
        ),
        (
            "uring_tunnel_udp_receives_total",
            "UDP receive completions (each may be a GRO train).",
            |s| s.udp_recvs,
        ),
        (
            "uring_tunnel_udp_rx_packets_total",
            "UDP datagrams received by the shard, all kinds (data, handshake, keepalive, junk).",
            |s| s.udp_rx_datagrams,
        ),
        (
            "uring_tunnel_udp_rx_bytes_total",
            "UDP bytes received by the shard, all kinds.",
            |s| s.udp_rx_bytes,
        ),
        (
            "uring_tunnel_udp_rx_data_packets_total",
            "Authenticated transport datagrams carrying data (keepalives excluded).",
            |s| s.udp_rx_data_datagrams,
        ),
        (
            "uring_tunnel_udp_rx_data_bytes_total",
            "Wire bytes of authenticated data datagrams.",
            |s| s.udp_rx_data_bytes,
        ),
        (
            "uring_tunnel_udp_rx_control_packets_total",
            "Handshake messages and authenticated keepalives received.",
            |s| s.udp_rx_control_datagrams,
        ),
        (
            "uring_tunnel_udp_sends_total",
            "UDP send calls/SQEs (each may carry many GSO segments).",
            |s| s.udp_sends,
        ),
        (
            "uring_tunnel_udp_tx_packets_total",
            "UDP datagrams sent by the shard (data and handshake replies).",
            |s| s.udp_tx_datagrams,
        ),
        (
            "uring_tunnel_udp_tx_bytes_total",
            "UDP bytes sent by the shard.",
            |s| s.udp_tx_bytes,
        ),
        (
            "uring_tunnel_udp_tx_data_packets_total",
            "Encrypted data datagrams sent by the shard.",
            StatsSnapshot::udp_tx_data_datagrams,
        ),
        (
            "uring_tunnel_udp_tx_control_packets_total",
            "Handshake replies (responses, cookie replies) sent by the shard.",
            |s| s.udp_tx_control_datagrams,
        ),
        (
            "uring_tunnel_syscalls_total",
            "Syscalls of the shard loop (io_uring_enter on the uring backend).",
            |s| s.syscalls,
        ),
        (
            "uring_tunnel_gso_fallbacks_total",
            "UDP sends where the kernel refused GSO and segments went out one by one.",
            |s| s.gso_fallbacks,
        ),
    ];
    for (name, help, f) in counters {
        shard_counter(o, sh, name, help, f);
    }
    family(
        o,
        "uring_tunnel_dropped_packets_total",
        "counter",
        "Packets dropped, by shard and reason.",
    );
    for (i, s) in sh.iter().enumerate() {
        by_reason(
            o,
            &format!("shard=\"{i}\","),
            &s.drops,
            "uring_tunnel_dropped_packets_total",
        );
    }

    shard_histogram(
        o,
        sh,
        "uring_tunnel_udp_send_segments",
        "Datagrams per UDP send (GSO segments; 1 without GSO).",
        |s| &s.gso_segments,
    );
    shard_histogram(
        o,
        sh,
        "uring_tunnel_udp_receive_datagrams",
        "Datagrams per UDP receive (GRO train; 1 without GRO).",
        |s| &s.gro_datagrams,
    );
    shard_histogram(
        o,
        sh,
        "uring_tunnel_tun_read_size_bytes",
        "Size of each TUN read (packet or super-packet, virtio-net header excluded).",
        |s| &s.tun_read_bytes,
    );
    shard_histogram(
        o,
        sh,
        "uring_tunnel_tun_write_size_bytes",
        "Size of each TUN write (packet or coalesced super-packet, header excluded).",
        |s| &s.tun_write_bytes,
    );

    let c = &st.control;
    family(
        o,
        "uring_tunnel_handshake_messages_sent_total",
        "counter",
        "Handshake messages sent, by type.",
    );
    for (t, n) in [
        ("initiation", c.initiations_sent),
        ("response", c.responses_sent),
        ("cookie_reply", c.cookie_replies_sent),
    ] {
        let _ = writeln!(
            o,
            "uring_tunnel_handshake_messages_sent_total{{type=\"{t}\"}} {n}"
        );
    }
    family(
        o,
        "uring_tunnel_handshake_messages_received_total",
        "counter",
        "Handshake messages received, by type (valid or not).",
    );
    for (t, n) in [
        ("initiation", c.initiations_received),
        ("response", c.responses_received),
        ("cookie_reply", c.cookie_replies_received),
    ] {
        let _ = writeln!(
            o,
            "uring_tunnel_handshake_messages_received_total{{type=\"{t}\"}} {n}"
        );
    }
    family(
        o,
        "uring_tunnel_handshakes_completed_total",
        "counter",
        "Handshakes that established a session.",
    );
    let _ = writeln!(
        o,
        "uring_tunnel_handshakes_completed_total {}",
        c.handshakes_completed
    );
    family(
        o,
        "uring_tunnel_handshake_failures_total",
        "counter",
        "Handshake messages refused, by reason.",
    );
    by_reason(
        o,
        "",
        &c.handshake_failures,
        "uring_tunnel_handshake_failures_total",
    );
    let control: [(&str, &str, u64); 6] = [
        (
            "uring_tunnel_control_keepalives_sent_total",
            "Keepalives sent by the control plane.",
            c.keepalives_sent,
        ),
        (
            "uring_tunnel_control_staged_tx_packets_total",
            "Data packets that waited for a session, then sent by the control plane.",
            c.staged_tx_datagrams,
        ),
        (
            "uring_tunnel_control_staged_tx_bytes_total",
            "Wire bytes of those packets.",
            c.staged_tx_bytes,
        ),
        (
            "uring_tunnel_control_tx_packets_total",
            "Datagrams sent by the control plane (initiations, keepalives, staged data).",
            c.tx_datagrams,
        ),
        (
            "uring_tunnel_control_tx_bytes_total",
            "Bytes sent by the control plane.",
            c.tx_bytes,
        ),
        (
            "uring_tunnel_control_tx_errors_total",
            "Control-plane sends the kernel refused.",
            c.tx_errors,
        ),
    ];
    for (name, help, v) in control {
        family(o, name, "counter", help);
        let _ = writeln!(o, "{name} {v}");
    }

    family(
        o,
        "uring_tunnel_peer_rx_bytes_total",
        "counter",
        "Inner bytes received from a peer.",
    );
    for p in &st.peers {
        let _ = writeln!(
            o,
            "uring_tunnel_peer_rx_bytes_total{{public_key=\"{}\"}} {}",
            escape(&p.public_key),
            p.rx_bytes
        );
    }
    family(
        o,
        "uring_tunnel_peer_tx_bytes_total",
        "counter",
        "Inner bytes sent to a peer.",
    );
    for p in &st.peers {
        let _ = writeln!(
            o,
            "uring_tunnel_peer_tx_bytes_total{{public_key=\"{}\"}} {}",
            escape(&p.public_key),
            p.tx_bytes
        );
    }
    family(
        o,
        "uring_tunnel_peer_latest_handshake_seconds",
        "gauge",
        "Unix time of the latest completed handshake with a peer (0: never).",
    );
    for p in &st.peers {
        let _ = writeln!(
            o,
            "uring_tunnel_peer_latest_handshake_seconds{{public_key=\"{}\"}} {}",
            escape(&p.public_key),
            p.last_handshake_unix_secs.unwrap_or(0)
        );
    }
    out
}

/// Largest request head we read (request line + headers).
pub const MAX_REQUEST: usize = 8192;
/// Time a client gets to send its request and read the answer.
pub const CONNECTION_DEADLINE: Duration = Duration::from_secs(5);

/// The running metrics endpoint; stops (and joins its thread) on drop.
#[derive(Debug)]
pub struct MetricsServer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl MetricsServer {
    /// The bound address (the port is the kernel's choice when ADDR said 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Binds `addr` and serves `GET /metrics` with the text `body()` returns, one connection at a
/// time, on a thread of its own.
pub fn serve(
    addr: SocketAddr,
    body: impl Fn() -> String + Send + 'static,
) -> io::Result<MetricsServer> {
    let listener = TcpListener::bind(addr)?;
    listener.set_nonblocking(true)?;
    let addr = listener.local_addr()?;
    let stop = Arc::new(AtomicBool::new(false));
    let stop2 = Arc::clone(&stop);
    let thread = std::thread::Builder::new()
        .name("metrics".into())
        .spawn(move || {
            while !stop2.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, peer)) => {
                        if let Err(e) = handle(stream, &body) {
                            tracing::debug!(%peer, error = %e, "metrics request failed");
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(50));
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "metrics endpoint: accept failed");
                        std::thread::sleep(Duration::from_millis(200));
                    }
                }
            }
        })?;
    Ok(MetricsServer {
        addr,
        stop,
        thread: Some(thread),
    })
}

/// What a request head asks for.
#[derive(Debug, PartialEq, Eq)]
enum Route {
    /// `GET /metrics` (with `head`: `HEAD /metrics`).
    Metrics {
        head: bool,
    },
    NotFound,
    MethodNotAllowed,
    BadRequest,
}

fn parse_request(head: &[u8]) -> Route {
    let Ok(text) = std::str::from_utf8(head) else {
        return Route::BadRequest;
    };
    let line = text.lines().next().unwrap_or("");
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Route::BadRequest;
    };
    if !version.starts_with("HTTP/1.") {
        return Route::BadRequest;
    }
    let path = target.split('?').next().unwrap_or("");
    let head = match method {
        "GET" => false,
        "HEAD" => true,
        _ => return Route::MethodNotAllowed,
    };
    if path == "/metrics" {
        Route::Metrics { head }
    } else {
        Route::NotFound
    }
}

fn handle(mut s: TcpStream, body: &impl Fn() -> String) -> io::Result<()> {
    s.set_nonblocking(false)?;
    let deadline = Instant::now() + CONNECTION_DEADLINE;
    s.set_write_timeout(Some(CONNECTION_DEADLINE))?;
    let mut buf = [0u8; MAX_REQUEST];
    let mut len = 0;
    let end = loop {
        if let Some(end) = find_head_end(&buf[..len]) {
            break Some(end);
        }
        if len == buf.len() {
            break None;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::Error::new(io::ErrorKind::TimedOut, "request too slow"));
        }
        s.set_read_timeout(Some(left))?;
        match s.read(&mut buf[len..])? {
            0 => return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "closed early")),
            n => len += n,
        }
    };
    let (status, ctype, text, head) = match end.map(|e| parse_request(&buf[..e])) {
        None => (
            "431 Request Header Fields Too Large",
            "text/plain",
            String::new(),
            false,
        ),
        Some(Route::Metrics { head }) => (
            "200 OK",
            "text/plain; version=0.0.4; charset=utf-8",
            body(),
            head,
        ),
        Some(Route::NotFound) => (
            "404 Not Found",
            "text/plain",
            "try /metrics\n".into(),
            false,
        ),
        Some(Route::MethodNotAllowed) => {
            ("405 Method Not Allowed", "text/plain", String::new(), false)
        }
        Some(Route::BadRequest) => ("400 Bad Request", "text/plain", String::new(), false),
    };
    let mut resp = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        text.len()
    );
    if !head {
        resp.push_str(&text);
    }
    s.write_all(resp.as_bytes())?;
    s.flush()
}

fn find_head_end(b: &[u8]) -> Option<usize> {
    b.windows(4)
        .position(|w| w == b"\r\n\r\n")
        .or_else(|| b.windows(2).position(|w| w == b"\n\n"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use uring_tunnel_engine::stats::{DropReason, PeerSnapshot, ShardStats};

    fn sample() -> EngineStats {
        let (a, b) = (ShardStats::default(), ShardStats::default());
        ShardStats::add(&a.tun_rx_packets, 10);
        ShardStats::add(&b.udp_tx_datagrams, 7);
        ShardStats::add(&b.udp_tx_control_datagrams, 2);
        a.drop_packet(DropReason::Malformed);
        a.tun_read_bytes.observe(1400);
        a.tun_read_bytes.observe(65000);
        b.record_sends(1, 46);
        let shards = vec![a.snapshot(), b.snapshot()];
        EngineStats {
            total: shards.iter().sum(),
            shards,
            control: Default::default(),
            peers: vec![PeerSnapshot {
                public_key: "AbC+/x==".into(),
                endpoint: None,
                rx_bytes: 5,
                tx_bytes: 6,
                last_handshake_unix_secs: Some(1_700_000_000),
            }],
        }
    }

    fn value(text: &str, series: &str) -> Option<f64> {
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
    }

    #[test]
    fn renders_counters_histograms_and_peers() {
        let info = MetricsInfo {
            interface: "wg\"0".into(),
            engine: "uring".into(),
            ..MetricsInfo::default()
        };
        let t = render(&info, &sample());
        assert!(t.contains("interface=\"wg\\\"0\",engine=\"uring\""), "{t}");
        assert_eq!(value(&t, "uring_tunnel_shards"), Some(2.0));
        assert_eq!(value(&t, "uring_tunnel_peers"), Some(1.0));
        assert_eq!(
            value(&t, "uring_tunnel_tun_rx_packets_total{shard=\"0\"}"),
            Some(10.0)
        );
        assert_eq!(
            value(&t, "uring_tunnel_udp_tx_data_packets_total{shard=\"1\"}"),
            Some(5.0)
        );
        assert_eq!(
            value(
                &t,
                "uring_tunnel_dropped_packets_total{shard=\"0\",reason=\"malformed\"}"
            ),
            Some(1.0)
        );
        assert_eq!(
            value(
                &t,
                "uring_tunnel_tun_read_size_bytes_bucket{shard=\"0\",le=\"2048\"}"
            ),
            Some(1.0)
        );
        assert_eq!(
            value(
                &t,
                "uring_tunnel_tun_read_size_bytes_bucket{shard=\"0\",le=\"+Inf\"}"
            ),
            Some(2.0)
        );
        assert_eq!(
            value(&t, "uring_tunnel_tun_read_size_bytes_count{shard=\"0\"}"),
            Some(2.0)
        );
        assert_eq!(
            value(
                &t,
                "uring_tunnel_udp_send_segments_bucket{shard=\"1\",le=\"64\"}"
            ),
            Some(1.0)
        );
        assert_eq!(
            value(&t, "uring_tunnel_udp_send_segments_sum{shard=\"1\"}"),
            Some(46.0)
        );
        assert_eq!(
            value(
                &t,
                "uring_tunnel_peer_latest_handshake_seconds{public_key=\"AbC+/x==\"}"
            ),
            Some(1.7e9)
        );
        // Every sample line belongs to a family announced by HELP and TYPE before it.
        let mut typed = std::collections::HashSet::new();
        for l in t.lines() {
            if let Some(rest) = l.strip_prefix("# TYPE ") {
                let name = rest.split(' ').next().unwrap();
                assert!(typed.insert(name.to_owned()), "TYPE twice: {l}");
            } else if !l.starts_with('#') {
                let name = l.split(['{', ' ']).next().unwrap();
                let base = ["_bucket", "_sum", "_count"]
                    .iter()
                    .find_map(|s| name.strip_suffix(s).filter(|b| typed.contains(*b)))
                    .unwrap_or(name);
                assert!(typed.contains(base), "sample before its TYPE: {l}");
            }
        }
        assert_eq!(render(&info, &sample()), t, "pure");
    }

    #[test]
    fn request_parsing() {
        assert_eq!(
            parse_request(b"GET /metrics HTTP/1.1\r\nHost: x"),
            Route::Metrics { head: false }
        );
        assert_eq!(
            parse_request(b"HEAD /metrics?x=1 HTTP/1.0"),
            Route::Metrics { head: true }
        );
        assert_eq!(parse_request(b"GET / HTTP/1.1"), Route::NotFound);
        assert_eq!(
            parse_request(b"POST /metrics HTTP/1.1"),
            Route::MethodNotAllowed
        );
        assert_eq!(parse_request(b"GET /metrics"), Route::BadRequest);
        assert_eq!(parse_request(b"\xff\xfe"), Route::BadRequest);
    }

    fn get(addr: SocketAddr, req: &[u8]) -> String {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(req).unwrap();
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        out
    }

    #[test]
    fn serves_metrics_and_refuses_the_rest() {
        let srv = serve("127.0.0.1:0".parse().unwrap(), || "x_total 1\n".to_owned()).unwrap();
        let a = srv.local_addr();
        let ok = get(a, b"GET /metrics HTTP/1.1\r\nHost: a\r\n\r\n");
        assert!(ok.starts_with("HTTP/1.1 200 OK\r\n"), "{ok}");
        assert!(ok.contains("text/plain; version=0.0.4"), "{ok}");
        assert!(ok.ends_with("\r\n\r\nx_total 1\n"), "{ok}");
        assert!(get(a, b"GET /nope HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 404"));
        assert!(get(a, b"PUT /metrics HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 405"));
        let big = vec![b'a'; MAX_REQUEST];
        assert!(get(a, &big).starts_with("HTTP/1.1 431"));
        // Still serving after all that.
        assert!(get(a, b"GET /metrics HTTP/1.0\r\n\r\n").contains("x_total 1"));
        drop(srv);
        assert!(TcpStream::connect(a).is_err(), "closed on drop");
    }
}
