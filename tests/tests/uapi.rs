//! The WireGuard UAPI of a running uring-tunnel, driven by wireguard-tools' `wg`: `wg show`,
//! `wg set` (peers added and removed live, listen port), `wg showconf`/`wg syncconf`, a stale
//! socket after SIGKILL, and `uring-tunnel show [--json]`.
//!
//! Topology: a hub (namespace A) with two spokes, B (veth A–B) and C (a second veth A–C).
//! The hub starts knowing only B; C is added with `wg set` while a transfer to B runs.
//! Root tests: under `CI=true` a missing prerequisite fails them, otherwise they skip.

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use uring_tunnel_tests::transfer::tcp_transfer;
use uring_tunnel_tests::tunnel::{
    TestDir, UringTunnel, genkey, pubkey, uring_tunnel_bin, wait_for,
};
use uring_tunnel_tests::{Netns, VethPair, require, require_netns, serial, tool_exists};

fn prerequisites() -> bool {
    require_netns()
        && require(tool_exists("ping"), "ping (iputils-ping)")
        && require(tool_exists("wg"), "wg (wireguard-tools)")
}

fn keypair() -> (String, String) {
    let private = genkey().expect("genkey");
    let public = pubkey(&private).expect("pubkey");
    (private, public)
}

/// `wg ARGS...` (the socket directory is not per namespace: run from here).
fn wg(args: &[&str]) -> Result<String, String> {
    let out = Command::new("wg")
        .args(args)
        .output()
        .map_err(|e| format!("wg: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "wg {args:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn show(args: &[&str]) -> Result<String, String> {
    let bin = uring_tunnel_bin()?;
    let out = Command::new(bin)
        .arg("show")
        .args(args)
        .output()
        .map_err(|e| format!("show: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "uring-tunnel show {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn pings(ns: &Netns, dst: &str, count: u32) -> bool {
    ns.command("ping")
        .args([
            "-c",
            &count.to_string(),
            "-i",
            "0.2",
            "-W",
            "2",
            "-w",
            "8",
            dst,
        ])
        .output()
        .expect("ping")
        .status
        .success()
}

/// No echo at all comes back within ~2 s.
fn silent(ns: &Netns, dst: &str) -> bool {
    let out = ns
        .command("ping")
        .args(["-c", "4", "-i", "0.3", "-W", "1", dst])
        .output()
        .expect("ping");
    let text = String::from_utf8_lossy(&out.stdout);
    text.contains(" 0 received")
}

struct Hub {
    ab: VethPair,
    c: Netns,
    n: u8,
    m: u8,
    hub_if: String,
    hub: Option<UringTunnel>,
    b: Option<UringTunnel>,
    tc: Option<UringTunnel>,
    pb: String,
    pc: String,
    dir: TestDir,
}

impl Hub {
    /// Hub (`hub_engine`) knowing B only; B and C both point at the hub.
    fn start(hub_engine: &str) -> Hub {
        let ab = VethPair::new().expect("veth pair");
        let (c, m) = ab.attach_third().expect("netns C joined to A");
        let n = ab.subnet;

        let (ka, pa) = keypair();
        let (kb, pb) = keypair();
        let (kc, pc) = keypair();
        let hub_conf = format!(
            "[Interface]\nPrivateKey = {ka}\nListenPort = 51820\nAddress = 100.64.{n}.1/24\n\n[Peer]\nPublicKey = {pb}\nAllowedIPs = 100.64.{n}.2/32\n"
        );
        let spoke = |key: &str, me: u8, hub_ip: &str| {
            format!(
                "[Interface]\nPrivateKey = {key}\nListenPort = 51820\nAddress = 100.64.{n}.{me}/24\n\n[Peer]\nPublicKey = {pa}\nEndpoint = {hub_ip}:51820\nAllowedIPs = 100.64.{n}.0/24\nPersistentKeepalive = 1\n"
            )
        };
        let dir = TestDir::new().unwrap();
        let hub_if = format!("uah{n}");
        let hub = UringTunnel::start(&ab.a, &dir, &hub_if, &hub_conf, &["--engine", hub_engine])
            .expect("hub");
        let b = UringTunnel::start(
            &ab.b,
            &dir,
            &format!("uab{n}"),
            &spoke(&kb, 2, &ab.v4(1)),
            &["--engine", "epoll"],
        )
        .expect("spoke B");
        let tc = UringTunnel::start(
            &c,
            &dir,
            &format!("uac{n}"),
            &spoke(&kc, 3, &format!("198.18.{m}.1")),
            &["--engine", "uring"],
        )
        .expect("spoke C");
        Hub {
            ab,
            c,
            n,
            m,
            hub_if,
            hub: Some(hub),
            b: Some(b),
            tc: Some(tc),
            pb,
            pc,
            dir,
        }
    }

    fn inner(&self, host: u8) -> String {
        format!("100.64.{}.{host}", self.n)
    }

    fn hub_log(&self) -> String {
        self.hub.as_ref().map(|t| t.log_text()).unwrap_or_default()
    }

    fn stop(mut self) {
        for t in [self.hub.take(), self.b.take(), self.tc.take()]
            .into_iter()
            .flatten()
        {
            let name = t.ifname().to_owned();
            t.stop().unwrap_or_else(|e| panic!("{name}: {e}"));
        }
    }
}

/// `wg show` sees the peer with a handshake and transfer; `wg set` adds C live while a bulk
/// transfer to B runs, and that transfer completes intact; removing C stops its traffic;
/// `wg showconf` round-trips through `wg syncconf`; a new listen port keeps traffic flowing;
/// `uring-tunnel show` lists peers and counters.
fn live_reconfiguration(hub_engine: &str) {
    if !prerequisites() {
        return;
    }
    let _g = serial();
    let h = Hub::start(hub_engine);
    let hub_if = h.hub_if.clone();
    assert!(pings(&h.ab.b, &h.inner(1), 3), "B -> hub\n{}", h.hub_log());

    // wg show: the peer, a recent handshake, transfer bytes.
    let out = wg(&["show", &hub_if]).unwrap();
    assert!(out.contains(&format!("peer: {}", h.pb)), "{out}");
    // Recent: wg prints "Now" or "N seconds ago" (minutes would mean a stale handshake).
    let hs = out
        .lines()
        .find(|l| l.contains("latest handshake:"))
        .unwrap_or_else(|| panic!("no handshake in {out}"));
    assert!(
        hs.contains("Now") || (hs.contains("second") && !hs.contains("minute")),
        "{out}"
    );
    assert!(
        out.contains("transfer:") && out.contains("received"),
        "{out}"
    );
    assert!(out.contains("listening port: 51820"), "{out}");
    // C is not a peer yet: its packets go nowhere.
    assert!(
        silent(&h.c, &h.inner(1)),
        "C reached the hub before it was added"
    );

    // A bulk transfer to B; C is added while it runs.
    let b_addr = SocketAddr::new(h.inner(2).parse().unwrap(), 5020);
    let c_addr = SocketAddr::new(h.inner(3).parse().unwrap(), 5021);
    std::thread::scope(|s| {
        let bulk =
            s.spawn(|| tcp_transfer(&h.ab.a, &h.ab.b, b_addr, 1 << 30, Duration::from_secs(90)));
        std::thread::sleep(Duration::from_millis(300));
        wg(&[
            "set",
            &hub_if,
            "peer",
            &h.pc,
            "allowed-ips",
            &format!("{}/32", h.inner(3)),
        ])
        .unwrap();
        let overlapped = !bulk.is_finished();
        assert!(
            pings(&h.c, &h.inner(1), 2),
            "C -> hub after wg set\n{}",
            h.hub_log()
        );
        tcp_transfer(&h.ab.a, &h.c, c_addr, 8 << 20, Duration::from_secs(30))
            .unwrap_or_else(|e| panic!("transfer to the new peer: {e}\n{}", h.hub_log()));
        let t = bulk.join().unwrap().unwrap_or_else(|e| {
            panic!("bulk transfer to B across the change: {e}\n{}", h.hub_log())
        });
        assert!(
            overlapped,
            "the 1 GiB transfer ended before wg set ran: no overlap tested"
        );
        eprintln!("bulk to B during wg set: {:.0} Mbit/s", t.mbit_per_s());
    });
    let out = wg(&["show", &hub_if, "peers"]).unwrap();
    assert!(out.contains(&h.pb) && out.contains(&h.pc), "{out}");

    // showconf with both peers, then remove C: its traffic stops, B's does not.
    let conf = wg(&["showconf", &hub_if]).unwrap();
    assert!(
        conf.contains(&h.pc) && conf.contains("ListenPort = 51820"),
        "{conf}"
    );
    wg(&["set", &hub_if, "peer", &h.pc, "remove"]).unwrap();
    assert!(
        silent(&h.ab.a, &h.inner(3)),
        "hub still reaches C after remove"
    );
    assert!(pings(&h.ab.a, &h.inner(2), 2), "hub -> B after removing C");
    let out = wg(&["show", &hub_if, "peers"]).unwrap();
    assert!(!out.contains(&h.pc), "{out}");

    // syncconf back to the saved config: C returns, and showconf is what it was.
    let saved = h.dir.write_private("saved.conf", &conf).unwrap();
    wg(&["syncconf", &hub_if, saved.to_str().unwrap()]).unwrap();
    assert!(
        pings(&h.ab.a, &h.inner(3), 2),
        "hub -> C after syncconf\n{}",
        h.hub_log()
    );
    let again = wg(&["showconf", &hub_if]).unwrap();
    let strip = |s: &str| -> Vec<String> {
        // Endpoints are learnt from traffic; everything else must match exactly.
        s.lines()
            .filter(|l| !l.starts_with("Endpoint"))
            .map(str::to_owned)
            .collect()
    };
    assert_eq!(strip(&again), strip(&conf), "showconf after syncconf");

    // New listen port: the shards rebind; the spokes roam to it on our next packet.
    wg(&["set", &hub_if, "listen-port", "51821"]).unwrap();
    assert_eq!(
        wg(&["show", &hub_if, "listen-port"]).unwrap().trim(),
        "51821"
    );
    assert!(
        pings(&h.ab.a, &h.inner(2), 3),
        "hub -> B after the port change\n{}",
        h.hub_log()
    );
    assert!(
        pings(&h.c, &h.inner(1), 3),
        "C -> hub after the port change\n{}",
        h.hub_log()
    );
    // Nothing listens on the old port any more: the hub's sockets really moved.
    let old_port_free =
        h.ab.a
            .run_in(|| std::net::UdpSocket::bind("0.0.0.0:51820").is_ok())
            .unwrap()
            .join()
            .unwrap();
    assert!(
        old_port_free,
        "port 51820 still bound after listen-port 51821"
    );
    let b_view = wg(&["show", &format!("uab{}", h.n), "endpoints"]).unwrap();
    assert!(
        b_view.contains(":51821"),
        "B did not roam to the new port: {b_view}"
    );
    let _ = h.m;

    // New private key on the hub: sessions drop; B learns the new public key through its own
    // UAPI and the two handshake again.
    let (new_key, new_pub) = keypair();
    let key_file = h.dir.write_private("hub-new.key", &new_key).unwrap();
    let old_pub = wg(&["show", &hub_if, "public-key"])
        .unwrap()
        .trim()
        .to_owned();
    wg(&["set", &hub_if, "private-key", key_file.to_str().unwrap()]).unwrap();
    assert_eq!(
        wg(&["show", &hub_if, "public-key"]).unwrap().trim(),
        new_pub
    );
    let b_if = format!("uab{}", h.n);
    wg(&["set", &b_if, "peer", &old_pub, "remove"]).unwrap();
    wg(&[
        "set",
        &b_if,
        "peer",
        &new_pub,
        "endpoint",
        &format!("{}:51821", h.ab.v4(1)),
        "allowed-ips",
        &format!("100.64.{}.0/24", h.n),
    ])
    .unwrap();
    assert!(
        pings(&h.ab.b, &h.inner(1), 3),
        "B -> hub after the hub's key change\n{}",
        h.hub_log()
    );

    // uring-tunnel show: text and JSON, with the peers and non-zero counters.
    let text = show(&[&hub_if]).unwrap();
    eprintln!("{text}");
    for want in [
        format!("interface: {hub_if}"),
        format!("peer: {}", h.pb),
        format!("peer: {}", h.pc),
        "listening port: 51821".to_owned(),
        format!("engine: {hub_engine}"),
        "coalescing:".to_owned(),
        "syscalls per packet:".to_owned(),
        "completed; initiations".to_owned(),
        "datagrams per GSO send: ".to_owned(),
        "TUN read sizes: ".to_owned(),
    ] {
        assert!(text.contains(&want), "missing {want:?} in\n{text}");
    }
    let json = show(&[&hub_if, "--json"]).unwrap();
    for want in [
        format!("\"interface\": \"{hub_if}\""),
        format!("\"public_key\": \"{}\"", h.pb),
        format!("\"backend\": \"{hub_engine}\""),
        "\"udp_tx_datagrams\"".to_owned(),
    ] {
        assert!(json.contains(&want), "missing {want:?} in\n{json}");
    }
    let number_after = |key: &str| -> u64 {
        let i = json
            .find(&format!("\"{key}\": "))
            .unwrap_or_else(|| panic!("{key}"));
        json[i + key.len() + 4..]
            .chars()
            .take_while(char::is_ascii_digit)
            .collect::<String>()
            .parse()
            .unwrap()
    };
    assert!(number_after("tun_rx_packets") > 1000, "{json}");
    assert!(number_after("rx_bytes") > 0, "{json}");
    // Without INTERFACE: every running uring-tunnel, including ours.
    let all = show(&["--json"]).unwrap();
    assert!(all.trim_start().starts_with('['), "{all}");
    assert!(
        all.contains(&format!("\"interface\": \"{hub_if}\"")),
        "{all}"
    );
    h.stop();
}

#[test]
fn live_reconfiguration_uring_hub() {
    live_reconfiguration("uring");
}

#[test]
fn live_reconfiguration_epoll_hub() {
    live_reconfiguration("epoll");
}

/// A tunnel killed with SIGKILL leaves its socket behind; the next start replaces it. A second
/// tunnel with the name of a running one fails with a clear error and leaves it alone.
#[test]
fn stale_socket_is_replaced_and_a_live_one_is_not() {
    if !prerequisites() {
        return;
    }
    let _g = serial();
    let ns = Netns::new().unwrap();
    let ns2 = Netns::new().unwrap();
    let dir = TestDir::new().unwrap();
    let (k, _) = keypair();
    let (_, p) = keypair();
    let ifname = uring_tunnel_tests::unique_name("uas");
    let conf = format!(
        "[Interface]\nPrivateKey = {k}\nAddress = 100.64.250.1/24\n\n[Peer]\nPublicKey = {p}\nAllowedIPs = 100.64.250.2/32\n"
    );
    let sock = format!("/var/run/wireguard/{ifname}.sock");
    let t = UringTunnel::start(&ns, &dir, &ifname, &conf, &[]).unwrap();
    assert!(wg(&["show", &ifname]).unwrap().contains(&p));
    let meta = std::fs::metadata(&sock).unwrap();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o777,
        0o600
    );
    // Same name, another namespace, while the first runs: refused.
    let err = UringTunnel::start(&ns2, &dir, &ifname, &conf, &[]).unwrap_err();
    assert!(
        err.to_string().contains("already has a running tunnel"),
        "{err}"
    );
    assert!(
        wg(&["show", &ifname]).is_ok(),
        "the running tunnel was disturbed"
    );
    drop(t); // SIGKILL: no clean-up, the socket stays
    assert!(
        wait_for(Duration::from_secs(5), || std::path::Path::new(&sock)
            .exists()
            .then_some(()))
        .is_some()
    );
    assert!(wg(&["show", &ifname]).is_err(), "a dead socket answered");
    let t = UringTunnel::start(&ns, &dir, &ifname, &conf, &[]).unwrap();
    assert!(wg(&["show", &ifname]).unwrap().contains(&p));
    t.stop().unwrap();
    assert!(
        !std::path::Path::new(&sock).exists(),
        "socket left after a clean stop"
    );
}

/// Bad requests get an errno and change nothing; the tunnel keeps answering.
#[test]
fn bad_set_is_refused_without_half_applying() {
    if !prerequisites() {
        return;
    }
    let _g = serial();
    let ns = Netns::new().unwrap();
    let dir = TestDir::new().unwrap();
    let (k, _) = keypair();
    let (_, p) = keypair();
    let ifname = uring_tunnel_tests::unique_name("uab");
    let conf = format!(
        "[Interface]\nPrivateKey = {k}\nListenPort = 51830\nAddress = 100.64.251.1/24\n\n[Peer]\nPublicKey = {p}\nAllowedIPs = 100.64.251.2/32\n"
    );
    let t = UringTunnel::start(&ns, &dir, &ifname, &conf, &[]).unwrap();
    let sock = format!("/var/run/wireguard/{ifname}.sock");
    let before = wg(&["showconf", &ifname]).unwrap();
    let ask = |req: &str| -> String {
        use std::io::{Read as _, Write as _};
        let mut s = std::os::unix::net::UnixStream::connect(&sock).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(req.as_bytes()).unwrap();
        s.shutdown(std::net::Shutdown::Write).unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    };
    // A valid first half (listen port, a new peer) followed by garbage: EINVAL, nothing applied.
    let resp = ask(&format!(
        "set=1\nlisten_port=51831\npublic_key={}\nallowed_ip=100.64.251.9/32\nendpoint=nonsense\n\n",
        "ab".repeat(32)
    ));
    assert_eq!(resp, "errno=22\n\n");
    assert_eq!(ask("set=1\nwhat=1\n\n"), "errno=71\n\n");
    assert_eq!(ask("frobnicate=1\n\n"), "errno=71\n\n");
    assert_eq!(wg(&["showconf", &ifname]).unwrap(), before);
    assert!(wg(&["set", &ifname, "peer", &p, "persistent-keepalive", "7"]).is_ok());
    // fwmark goes onto the live sockets (read back from the socket by `get`).
    wg(&["set", &ifname, "fwmark", "0x33"]).unwrap();
    assert_eq!(wg(&["show", &ifname, "fwmark"]).unwrap().trim(), "0x33");
    wg(&["set", &ifname, "fwmark", "0"]).unwrap();
    assert_eq!(wg(&["show", &ifname, "fwmark"]).unwrap().trim(), "off");
    let after = wg(&["showconf", &ifname]).unwrap();
    assert!(after.contains("PersistentKeepalive = 7"), "{after}");
    t.stop().unwrap();
}
