//! Observability acceptance tests: exact counters, drops by reason, the Prometheus endpoint
//! (parsed strictly) and debug logs without key material, on both engines.
//!
//! Two `uring-tunnel run` processes in two network namespaces joined by a veth pair, each with
//! `--metrics 127.0.0.1:9586` (every namespace has its own loopback) and `--log-level debug`.
//!
//! What the data counters count (documented in `engine/src/stats.rs`): `udp_rx_data` and
//! `udp_tx_data` are transport packets that carry data; handshake messages and keepalives are
//! counted apart (`udp_*_control`, `handshake_*`, `control_*`), so N datagrams through the
//! tunnel move each of sender `tun_rx`/`udp_tx_data` and receiver `udp_rx_data`/`tun_tx` by
//! exactly N, whatever the protocol timers do meanwhile.
//!
//! Root tests: under `CI=true` a missing prerequisite fails them, otherwise they skip.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

use uring_tunnel_tests::tunnel::{TestDir, UringTunnel, genkey, pubkey, stat};
use uring_tunnel_tests::{
    Netns, VethPair, require, require_netns, serial, tool_exists, unique_name,
};

const METRICS: &str = "127.0.0.1:9586";

fn prerequisites() -> bool {
    require_netns() && require(tool_exists("ping"), "ping (iputils-ping)")
}

// ---------------------------------------------------------------------------------------------
// A strict parser of the Prometheus text exposition format 0.0.4 (what the endpoint must emit).

/// One sample: metric name, labels, value.
#[derive(Debug, Clone)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// A parsed exposition: samples in order, family types.
#[derive(Debug, Default)]
struct Exposition {
    samples: Vec<Sample>,
    types: HashMap<String, String>,
}

fn is_name(s: &str, colon: bool) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || (colon && c == ':'))
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || (colon && c == ':'))
}

fn parse_value(v: &str) -> Result<f64, String> {
    match v {
        "+Inf" => Ok(f64::INFINITY),
        "-Inf" => Ok(f64::NEG_INFINITY),
        "NaN" => Ok(f64::NAN),
        _ => v.parse().map_err(|e| format!("value `{v}`: {e}")),
    }
}

/// Parses `{a="x",b="y"}` (the braces included); returns the labels and the rest of the line.
fn parse_labels(s: &str) -> Result<(BTreeMap<String, String>, &str), String> {
    let mut labels = BTreeMap::new();
    let mut rest = s.strip_prefix('{').ok_or("labels must start with {")?;
    loop {
        if let Some(r) = rest.strip_prefix('}') {
            return Ok((labels, r));
        }
        let eq = rest.find('=').ok_or("label without =")?;
        let name = &rest[..eq];
        if !is_name(name, false) {
            return Err(format!("bad label name `{name}`"));
        }
        rest = rest[eq + 1..]
            .strip_prefix('"')
            .ok_or("label value must be quoted")?;
        let mut value = String::new();
        let mut chars = rest.char_indices();
        let end = loop {
            match chars.next() {
                Some((i, '"')) => break i,
                Some((_, '\\')) => match chars.next() {
                    Some((_, '\\')) => value.push('\\'),
                    Some((_, '"')) => value.push('"'),
                    Some((_, 'n')) => value.push('\n'),
                    other => return Err(format!("bad escape {other:?}")),
                },
                Some((_, '\n')) => return Err("newline in label value".into()),
                Some((_, c)) => value.push(c),
                None => return Err("unterminated label value".into()),
            }
        };
        if labels.insert(name.to_owned(), value).is_some() {
            return Err(format!("label `{name}` twice"));
        }
        rest = &rest[end + 1..];
        if let Some(r) = rest.strip_prefix(',') {
            rest = r;
        } else if !rest.starts_with('}') {
            return Err("expected , or } after a label".into());
        }
    }
}

/// Parses the whole text, strictly: every line a HELP, a TYPE or a sample; each family's TYPE
/// before its samples and once; sample names match their family (`_bucket`/`_sum`/`_count`
/// only for histograms); counters end in `_total`; no duplicate series; histogram buckets
/// cumulative, ending in `le="+Inf"` equal to `_count`.
fn parse_exposition(text: &str) -> Result<Exposition, String> {
    let mut e = Exposition::default();
    let mut seen = HashSet::new();
    if !text.ends_with('\n') {
        return Err("text must end with a newline".into());
    }
    for (n, line) in text.lines().enumerate() {
        let err = |m: String| format!("line {}: {m}: `{line}`", n + 1);
        if line.is_empty() {
            return Err(err("empty line".into()));
        }
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let name = rest.split(' ').next().unwrap_or("");
            if !is_name(name, true) {
                return Err(err("bad HELP name".into()));
            }
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut parts = rest.split(' ');
            let (Some(name), Some(kind), None) = (parts.next(), parts.next(), parts.next()) else {
                return Err(err("TYPE needs a name and a type".into()));
            };
            if !["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind) {
                return Err(err(format!("unknown type {kind}")));
            }
            if kind == "counter" && !name.ends_with("_total") {
                return Err(err("counter name must end in _total".into()));
            }
            if e.types.insert(name.to_owned(), kind.to_owned()).is_some() {
                return Err(err("TYPE twice".into()));
            }
            continue;
        }
        if line.starts_with('#') {
            return Err(err("unexpected comment".into()));
        }
        let name_end = line
            .find(['{', ' '])
            .ok_or_else(|| err("no value".into()))?;
        let name = &line[..name_end];
        if !is_name(name, true) {
            return Err(err("bad metric name".into()));
        }
        let (labels, rest) = if line[name_end..].starts_with('{') {
            parse_labels(&line[name_end..]).map_err(err)?
        } else {
            (BTreeMap::new(), &line[name_end..])
        };
        let value = rest
            .strip_prefix(' ')
            .ok_or_else(|| err("one space before the value".into()))?;
        let value = parse_value(value).map_err(err)?;
        let family = match e.types.get(name) {
            Some(_) => name.to_owned(),
            None => ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| {
                    name.strip_suffix(s)
                        .filter(|b| e.types.get(*b).is_some_and(|t| t == "histogram"))
                })
                .ok_or_else(|| err("sample without a TYPE before it".into()))?
                .to_owned(),
        };
        if e.types[&family] == "histogram" && family == name {
            return Err(err("histogram sample without _bucket/_sum/_count".into()));
        }
        if name.ends_with("_bucket") && !labels.contains_key("le") {
            return Err(err("bucket without le".into()));
        }
        if !seen.insert(format!("{name}{labels:?}")) {
            return Err(err("duplicate series".into()));
        }
        e.samples.push(Sample {
            name: name.to_owned(),
            labels,
            value,
        });
    }
    // Histograms: per series (labels minus le), cumulative buckets ending at +Inf = _count.
    for (family, kind) in &e.types {
        if kind != "histogram" {
            continue;
        }
        let mut series: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
        for s in e
            .samples
            .iter()
            .filter(|s| s.name == format!("{family}_bucket"))
        {
            let mut l = s.labels.clone();
            let le = parse_value(&l.remove("le").unwrap_or_default())?;
            series
                .entry(format!("{l:?}"))
                .or_default()
                .push((le, s.value));
        }
        for (key, buckets) in &series {
            if buckets
                .windows(2)
                .any(|w| w[0].0 >= w[1].0 || w[0].1 > w[1].1)
            {
                return Err(format!("{family}{key}: buckets not ascending/cumulative"));
            }
            let last = buckets.last().copied().unwrap_or((0.0, 0.0));
            if last.0 != f64::INFINITY {
                return Err(format!("{family}{key}: no +Inf bucket"));
            }
            let count = e
                .samples
                .iter()
                .find(|s| s.name == format!("{family}_count") && format!("{:?}", s.labels) == *key)
                .ok_or_else(|| format!("{family}{key}: no _count"))?;
            if count.value != last.1 {
                return Err(format!(
                    "{family}{key}: +Inf {} != count {}",
                    last.1, count.value
                ));
            }
        }
    }
    Ok(e)
}

impl Exposition {
    /// Sum of `name` over the series whose labels include all of `want`.
    fn sum(&self, name: &str, want: &[(&str, &str)]) -> f64 {
        let mut found = false;
        let v = self
            .samples
            .iter()
            .filter(|s| s.name == name)
            .filter(|s| {
                want.iter()
                    .all(|(k, v)| s.labels.get(*k).is_some_and(|x| x == v))
            })
            .inspect(|_| found = true)
            .map(|s| s.value)
            .sum();
        assert!(found, "no series {name}{want:?}");
        v
    }
}

#[test]
fn parser_rejects_malformed_expositions() {
    let good = "# HELP a_total x\n# TYPE a_total counter\na_total{s=\"0\"} 1\n# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_bucket{le=\"+Inf\"} 2\nh_sum 3\nh_count 2\n";
    let e = parse_exposition(good).unwrap();
    assert_eq!(e.sum("a_total", &[]), 1.0);
    for bad in [
        "a_total 1\n",                                    // no TYPE
        "# TYPE a counter\na 1\n",                        // counter without _total
        "# TYPE a_total counter\na_total{s=0} 1\n",       // unquoted
        "# TYPE a_total counter\na_total 1\na_total 2\n", // duplicate
        "# TYPE a_total counter\na_total  1\n",           // two spaces
        "# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 1\nh_count 1\n", // not cumulative
        "# TYPE h histogram\nh_bucket{le=\"+Inf\"} 2\nh_count 1\n", // count mismatch
        "# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_count 1\n",    // no +Inf
        "# TYPE a_total counter\na_total 1",                        // no final newline
    ] {
        assert!(parse_exposition(bad).is_err(), "accepted: {bad:?}");
    }
}

// ---------------------------------------------------------------------------------------------
// The tunnel pair.

struct Pair {
    veth: VethPair,
    a: Option<UringTunnel>,
    b: Option<UringTunnel>,
    n: u8,
    private_keys: [String; 2],
    _dir: TestDir,
}

impl Pair {
    fn start(engine: &str) -> Pair {
        let veth = VethPair::new().expect("veth pair");
        let n = veth.subnet;
        let keys: Vec<(String, String)> = (0..2)
            .map(|_| {
                let k = genkey().expect("genkey");
                let p = pubkey(&k).expect("pubkey");
                (k, p)
            })
            .collect();
        let conf = |me: usize, peer: usize| {
            format!(
                "[Interface]\nPrivateKey = {}\nListenPort = 51820\nAddress = 100.64.{n}.{}/24\n\n[Peer]\nPublicKey = {}\nEndpoint = {}:51820\nAllowedIPs = 100.64.{n}.{}/32\n",
                keys[me].0,
                me + 1,
                keys[peer].1,
                veth.v4(peer as u8 + 1),
                peer + 1
            )
        };
        let dir = TestDir::new().expect("test dir");
        let args = [
            "--engine",
            engine,
            "--metrics",
            METRICS,
            "--log-level",
            "debug",
        ];
        let a = UringTunnel::start(&veth.a, &dir, &unique_name("oba"), &conf(0, 1), &args)
            .expect("tunnel A");
        let b = UringTunnel::start(&veth.b, &dir, &unique_name("obb"), &conf(1, 0), &args)
            .expect("tunnel B");
        Pair {
            veth,
            a: Some(a),
            b: Some(b),
            n,
            private_keys: [keys[0].0.clone(), keys[1].0.clone()],
            _dir: dir,
        }
    }

    fn ping_b(&self) {
        let dst = format!("100.64.{}.2", self.n);
        let out = self
            .veth
            .a
            .command("ping")
            .args(["-c", "3", "-i", "0.2", "-W", "3", "-w", "10", &dst])
            .output()
            .expect("ping");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && !text.contains(" 0 received"),
            "ping {dst}: {text}\nA: {}\nB: {}",
            self.a.as_ref().unwrap().log_text(),
            self.b.as_ref().unwrap().log_text()
        );
    }
}

/// `GET /metrics` inside `ns`; checks the status and content type, parses the body strictly.
fn scrape(ns: &Netns) -> Exposition {
    let (head, body) = ns
        .run_in(|| {
            let mut s = TcpStream::connect(METRICS).expect("connect to the metrics endpoint");
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            s.write_all(b"GET /metrics HTTP/1.1\r\nHost: test\r\n\r\n")
                .unwrap();
            let mut resp = String::new();
            s.read_to_string(&mut resp).expect("read the response");
            let (head, body) = resp.split_once("\r\n\r\n").expect("HTTP head");
            (head.to_owned(), body.to_owned())
        })
        .unwrap()
        .join()
        .unwrap();
    assert!(head.starts_with("HTTP/1.1 200 OK"), "{head}");
    assert!(
        head.contains("Content-Type: text/plain; version=0.0.4"),
        "{head}"
    );
    parse_exposition(&body).unwrap_or_else(|e| panic!("{e}\n{body}"))
}

/// Sends UDP datagrams from `from` to `dst` (the underlay, outside the tunnel).
fn send_raw(from: &Netns, dst: SocketAddr, datagrams: Vec<Vec<u8>>) {
    from.run_in(move || {
        let s = UdpSocket::bind("0.0.0.0:0").unwrap();
        for d in datagrams {
            s.send_to(&d, dst).unwrap();
            std::thread::sleep(Duration::from_micros(500));
        }
    })
    .unwrap()
    .join()
    .unwrap();
}

/// Polls until `done(scrape)` or 5 s, then waits a little more (to catch over-counting) and
/// returns a final scrape.
fn settle(ns: &Netns, done: impl Fn(&Exposition) -> bool) -> Exposition {
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline && !done(&scrape(ns)) {
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(300));
    scrape(ns)
}

const N: usize = 500;
const PAYLOAD: usize = 100;
/// IPv4 + UDP headers + payload.
const INNER: f64 = (20 + 8 + PAYLOAD) as f64;

fn observe(engine: &str) {
    if !prerequisites() {
        return;
    }
    let _g = serial();
    let p = Pair::start(engine);
    p.ping_b();
    std::thread::sleep(Duration::from_millis(300));
    let (a0, b0) = (scrape(&p.veth.a), scrape(&p.veth.b));

    // The info metric and gauges.
    assert_eq!(
        a0.sum("uring_tunnel_shards", &[]),
        b0.sum("uring_tunnel_shards", &[])
    );
    assert_eq!(a0.sum("uring_tunnel_peers", &[]), 1.0);
    assert_eq!(a0.sum("uring_tunnel_info", &[("engine", engine)]), 1.0);
    assert!(a0.sum("uring_tunnel_handshakes_completed_total", &[]) >= 1.0);
    assert!(a0.sum("uring_tunnel_peer_latest_handshake_seconds", &[]) > 1.6e9);

    // (1) N datagrams through the tunnel, A → B, counted exactly once each way.
    let dst: SocketAddr = format!("100.64.{}.2:5009", p.n).parse().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let recv = p
        .veth
        .b
        .run_in(move || {
            let s = UdpSocket::bind("0.0.0.0:5009").unwrap();
            s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
            tx.send(()).unwrap();
            let mut buf = [0u8; 2048];
            let mut got = 0;
            while got < N && s.recv(&mut buf).is_ok() {
                got += 1;
            }
            got
        })
        .unwrap();
    rx.recv_timeout(Duration::from_secs(5)).unwrap();
    send_raw(&p.veth.a, dst, vec![vec![7u8; PAYLOAD]; N]);
    let got = recv.join().unwrap();
    assert_eq!(got, N, "datagrams lost inside the tunnel");
    let d = |after: &Exposition, before: &Exposition, name: &str| {
        after.sum(name, &[]) - before.sum(name, &[])
    };
    let b1 = settle(&p.veth.b, |e| {
        d(e, &b0, "uring_tunnel_tun_tx_packets_total") >= N as f64
    });
    let a1 = settle(&p.veth.a, |e| {
        d(e, &a0, "uring_tunnel_udp_tx_data_packets_total") >= N as f64
    });
    let n = N as f64;
    assert_eq!(d(&a1, &a0, "uring_tunnel_tun_rx_packets_total"), n);
    assert_eq!(d(&a1, &a0, "uring_tunnel_tun_rx_bytes_total"), n * INNER);
    assert_eq!(d(&a1, &a0, "uring_tunnel_udp_tx_data_packets_total"), n);
    assert_eq!(d(&b1, &b0, "uring_tunnel_udp_rx_data_packets_total"), n);
    assert_eq!(d(&b1, &b0, "uring_tunnel_tun_tx_packets_total"), n);
    assert_eq!(d(&b1, &b0, "uring_tunnel_tun_tx_bytes_total"), n * INNER);
    // Nothing came back the other way (the receiver was bound: no ICMP).
    assert_eq!(d(&b1, &b0, "uring_tunnel_tun_rx_packets_total"), 0.0);
    assert_eq!(d(&a1, &a0, "uring_tunnel_udp_rx_data_packets_total"), 0.0);
    // Per-peer bytes agree.
    assert_eq!(d(&a1, &a0, "uring_tunnel_peer_tx_bytes_total"), n * INNER);
    assert_eq!(d(&b1, &b0, "uring_tunnel_peer_rx_bytes_total"), n * INNER);
    // Histograms: each datagram was its own TUN read of INNER bytes (bucket le=128).
    let reads = d(&a1, &a0, "uring_tunnel_tun_reads_total");
    assert_eq!(reads, n);
    assert_eq!(d(&a1, &a0, "uring_tunnel_tun_read_size_bytes_count"), reads);
    assert_eq!(
        d(&a1, &a0, "uring_tunnel_tun_read_size_bytes_sum"),
        n * INNER
    );
    let bucket =
        |e: &Exposition, le: &str| e.sum("uring_tunnel_tun_read_size_bytes_bucket", &[("le", le)]);
    assert_eq!(bucket(&a1, "128") - bucket(&a0, "128"), n);
    assert_eq!(bucket(&a1, "64") - bucket(&a0, "64"), 0.0);
    // Sends and receives: histogram counts match the call counters, sums the datagrams.
    assert_eq!(
        d(&a1, &a0, "uring_tunnel_udp_send_segments_count"),
        d(&a1, &a0, "uring_tunnel_udp_sends_total")
    );
    assert_eq!(
        d(&b1, &b0, "uring_tunnel_udp_receive_datagrams_count"),
        d(&b1, &b0, "uring_tunnel_udp_receives_total")
    );
    assert_eq!(
        d(&b1, &b0, "uring_tunnel_udp_receive_datagrams_sum"),
        d(&b1, &b0, "uring_tunnel_udp_rx_packets_total")
    );
    assert_eq!(
        d(&b1, &b0, "uring_tunnel_tun_write_size_bytes_count"),
        d(&b1, &b0, "uring_tunnel_tun_writes_total")
    );

    // (2) Garbage to B's listen port: exactly that many drops under the right reason.
    let (m_short, m_transport, m_init) = (37usize, 41usize, 13usize);
    let mut junk = Vec::new();
    for i in 0..m_short {
        junk.push(vec![0xa5; i % 4]); // 0–3 bytes: no message type fits
    }
    for i in 0..m_transport {
        // Type 4, a receiver index no session has, counter, 32 bytes of "ciphertext".
        let mut d = vec![4u8, 0, 0, 0];
        d.extend_from_slice(&(0xdead_0000u32 + i as u32).to_le_bytes());
        d.extend_from_slice(&[0u8; 8]);
        d.extend_from_slice(&[0x5a; 32]);
        junk.push(d);
    }
    for _ in 0..m_init {
        // Initiation-sized type 1 with a garbage MAC1.
        let mut d = vec![1u8, 0, 0, 0];
        d.resize(148, 0x33);
        junk.push(d);
    }
    let b_listen: SocketAddr = format!("{}:51820", p.veth.v4(2)).parse().unwrap();
    send_raw(&p.veth.a, b_listen, junk);
    let drops = |e: &Exposition, reason: &str| {
        e.sum("uring_tunnel_dropped_packets_total", &[("reason", reason)])
    };
    let b2 = settle(&p.veth.b, |e| {
        drops(e, "malformed") - drops(&b1, "malformed") >= m_short as f64
            && drops(e, "unknown_index") - drops(&b1, "unknown_index") >= m_transport as f64
            && drops(e, "invalid_mac") - drops(&b1, "invalid_mac") >= m_init as f64
    });
    assert_eq!(
        drops(&b2, "malformed") - drops(&b1, "malformed"),
        m_short as f64
    );
    assert_eq!(
        drops(&b2, "unknown_index") - drops(&b1, "unknown_index"),
        m_transport as f64
    );
    assert_eq!(
        drops(&b2, "invalid_mac") - drops(&b1, "invalid_mac"),
        m_init as f64
    );
    let all_drops = |e: &Exposition| e.sum("uring_tunnel_dropped_packets_total", &[]);
    assert_eq!(
        all_drops(&b2) - all_drops(&b1),
        (m_short + m_transport + m_init) as f64,
        "other drop reasons moved"
    );
    let failures = |e: &Exposition| {
        e.sum(
            "uring_tunnel_handshake_failures_total",
            &[("reason", "invalid_mac")],
        )
    };
    assert_eq!(failures(&b2) - failures(&b1), m_init as f64);
    let inits = |e: &Exposition| {
        e.sum(
            "uring_tunnel_handshake_messages_received_total",
            &[("type", "initiation")],
        )
    };
    assert_eq!(inits(&b2) - inits(&b1), m_init as f64);
    // Junk is not data.
    assert_eq!(d(&b2, &b1, "uring_tunnel_udp_rx_data_packets_total"), 0.0);
    assert_eq!(d(&b2, &b1, "uring_tunnel_tun_tx_packets_total"), 0.0);

    // Shutdown summary lines: the same key=value format, consistent totals.
    let a = p.a.as_ref().unwrap();
    let b = p.b.as_ref().unwrap();
    let (log_a, log_b) = (a.log_text(), b.log_text());
    let (ifa, ifb) = (a.ifname().to_owned(), b.ifname().to_owned());
    let mut p = p;
    let la =
        p.a.take()
            .unwrap()
            .stop()
            .unwrap_or_else(|e| panic!("A: {e}"));
    let lb =
        p.b.take()
            .unwrap()
            .stop()
            .unwrap_or_else(|e| panic!("B: {e}"));
    let s = |l: &str, k: &str| stat(l, k).unwrap_or_else(|| panic!("no {k} in {l}"));
    // Everything A read from its TUN went out as data, directly or after waiting for the
    // handshake, and arrived at B; and the other way round (ping replies).
    assert_eq!(
        s(&la, "tun_rx"),
        s(&la, "udp_tx_data") + s(&la, "staged_tx"),
        "{la}"
    );
    assert_eq!(
        s(&la, "udp_tx_data") + s(&la, "staged_tx"),
        s(&lb, "udp_rx_data"),
        "{la}\n{lb}"
    );
    assert_eq!(s(&lb, "udp_rx_data"), s(&lb, "tun_tx"), "{lb}");
    assert_eq!(
        s(&lb, "tun_rx"),
        s(&lb, "udp_tx_data") + s(&lb, "staged_tx"),
        "{lb}"
    );
    assert_eq!(
        s(&lb, "udp_tx_data") + s(&lb, "staged_tx"),
        s(&la, "udp_rx_data"),
        "{la}\n{lb}"
    );
    assert!(s(&la, "tun_rx") >= N as u64, "{la}");
    assert_eq!(s(&lb, "drop_malformed"), m_short as u64, "{lb}");
    assert!(
        s(&la, "handshakes") + s(&lb, "handshakes") >= 2,
        "{la}\n{lb}"
    );

    // (4) Debug logs: a handshake event with the interface and shard fields, never a private
    // key (base64 or hex).
    for (log, ifname) in [(&log_a, &ifa), (&log_b, &ifb)] {
        let line = log
            .lines()
            .find(|l| l.contains("handshake completed"))
            .unwrap_or_else(|| panic!("no handshake event at debug level:\n{log}"));
        assert!(line.contains(&format!("interface={ifname}")), "{line}");
        assert!(line.contains("DEBUG"), "{line}");
    }
    for key in &p.private_keys {
        let bytes = decode_base64(key);
        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        for log in [&log_a, &log_b] {
            assert!(
                !log.contains(key.as_str()),
                "private key (base64) in the log"
            );
            assert!(
                !log.to_lowercase().contains(&hex),
                "private key (hex) in the log"
            );
        }
    }
}

/// Standard base64 (with padding) to bytes; enough for 32-byte keys.
fn decode_base64(s: &str) -> Vec<u8> {
    let val = |c: u8| -> u32 {
        match c {
            b'A'..=b'Z' => u32::from(c - b'A'),
            b'a'..=b'z' => u32::from(c - b'a') + 26,
            b'0'..=b'9' => u32::from(c - b'0') + 52,
            b'+' => 62,
            b'/' => 63,
            _ => panic!("not base64: {s}"),
        }
    };
    let clean: Vec<u8> = s.bytes().filter(|&c| c != b'=').collect();
    let mut out = Vec::new();
    for chunk in clean.chunks(4) {
        let mut acc = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            acc |= val(c) << (18 - 6 * i);
        }
        let bytes = acc.to_be_bytes();
        out.extend_from_slice(&bytes[1..chunk.len()]);
    }
    out
}

#[test]
fn base64_decoder() {
    assert_eq!(decode_base64("aGVsbG8="), b"hello");
    assert_eq!(decode_base64("AAECAw=="), [0, 1, 2, 3]);
}

#[test]
fn observability_uring() {
    observe("uring");
}

#[test]
fn observability_epoll() {
    observe("epoll");
}
