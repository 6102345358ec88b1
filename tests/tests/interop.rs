//! Interop acceptance: `uring-tunnel` against `wireguard-go` and `boringtun-cli`.
//!
//! Each test builds two namespaces joined by a veth pair: `uring-tunnel` runs in A, the other
//! implementation in B. Only the initiating side is given its peer's endpoint, so the first
//! handshake is forced to come from that side. Then: ping over IPv4 and IPv6 inside, both
//! directions, and a TCP transfer each way with matching sha256. The IPv6-underlay cases also
//! use a preshared key.
//!
//! Needs root, `/dev/net/tun`, `ip`, `ping`, `wg` and the peer daemon; under `CI=true` a missing
//! prerequisite fails the test, otherwise it is skipped with a message. Tests run one at a time
//! (`serial()`): they share `/var/run/wireguard` and the CPUs.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use uring_tunnel_tests::transfer::tcp_transfer;
use uring_tunnel_tests::tunnel::{
    TestDir, UringTunnel, genkey, pipe_through, pubkey, stat, uring_tunnel_bin,
};
use uring_tunnel_tests::wg_peer::{PeerImpl, WgPeer, WgPeerConfig};
use uring_tunnel_tests::{
    Netns, VethPair, require, require_netns, serial, tool_exists, unique_name,
};

/// Bytes moved each way per test.
const TRANSFER_BYTES: u64 = 32 << 20;
/// Upper bound for one transfer (wireguard-go 2022 and boringtun move ~0.7 Gb/s here).
const TRANSFER_TIMEOUT: Duration = Duration::from_secs(90);
const OUR_PORT: u16 = 51820;
const THEIR_PORT: u16 = 51821;
const MTU: u16 = 1420;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Initiator {
    Us,
    Them,
}

#[derive(Debug, Clone, Copy)]
struct Case {
    peer: PeerImpl,
    initiator: Initiator,
    ipv6_underlay: bool,
    psk: bool,
    /// `--engine` value.
    engine: &'static str,
}

fn prerequisites(peer: PeerImpl) -> bool {
    require_netns()
        && require(Path::new("/dev/net/tun").exists(), "/dev/net/tun")
        && require(tool_exists("ping"), "ping (iputils-ping)")
        && require(tool_exists("wg"), "wg (wireguard-tools)")
        && require(
            tool_exists(peer.program()),
            match peer {
                PeerImpl::WireguardGo => "wireguard-go (apt package wireguard-go)",
                PeerImpl::Boringtun => "boringtun-cli (cargo install boringtun-cli --locked)",
            },
        )
}

/// `ping -c 3` with up to 10 s for all three replies (the first may wait for a handshake).
fn ping(ns: &Netns, dst: &str) {
    let out = ns
        .command("ping")
        .args(["-n", "-c", "3", "-i", "0.2", "-w", "10", dst])
        .output()
        .expect("running ping");
    assert!(
        out.status.success(),
        "ping {dst} from {} failed:\n{}{}",
        ns.name(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn endpoint(addr: &str, port: u16) -> String {
    if addr.contains(':') {
        format!("[{addr}]:{port}")
    } else {
        format!("{addr}:{port}")
    }
}

fn interop(case: Case) {
    if !prerequisites(case.peer) {
        return;
    }
    let _serial = serial();
    // A build failure is a failure, never a skip.
    let bin = uring_tunnel_bin().unwrap_or_else(|e| panic!("uring-tunnel binary: {e}"));
    eprintln!("case {case:?}, binary {}", bin.display());

    // Declared first so it is dropped last: the logs outlive the processes and are printed if
    // the test panics.
    let dir = TestDir::new().expect("scratch dir");
    let pair = VethPair::new().expect("veth pair");
    let s = pair.subnet;

    let our_priv = genkey().expect("uring-tunnel genkey");
    let our_pub = pubkey(&our_priv).expect("uring-tunnel pubkey");
    // Both tools must derive the same public key from our private key.
    assert_eq!(
        pipe_through(Path::new("wg"), &["pubkey"], &our_priv).expect("wg pubkey"),
        our_pub,
        "wg pubkey and uring-tunnel pubkey disagree"
    );
    let their_priv = pipe_through(Path::new("wg"), &["genkey"], "").expect("wg genkey");
    let their_pub = pipe_through(Path::new("wg"), &["pubkey"], &their_priv).expect("wg pubkey");

    let psk = case
        .psk
        .then(|| pipe_through(Path::new("wg"), &["genpsk"], "").expect("wg genpsk"));

    let (our_ul, their_ul) = if case.ipv6_underlay {
        (pair.v6(1), pair.v6(2))
    } else {
        (pair.v4(1), pair.v4(2))
    };
    let (our_v4, their_v4) = (format!("100.64.{s}.1"), format!("100.64.{s}.2"));
    let (our_v6, their_v6) = (format!("fd00:64:{s}::1"), format!("fd00:64:{s}::2"));

    let peer = WgPeer::start(case.peer, &pair.b, &dir, &unique_name(case.peer.prefix()))
        .expect("starting the peer daemon");
    peer.configure(
        &dir,
        &WgPeerConfig {
            private_key: &their_priv,
            listen_port: THEIR_PORT,
            addresses: &[format!("{their_v4}/24"), format!("{their_v6}/64")],
            mtu: MTU,
            peer_public_key: &our_pub,
            preshared_key: psk.as_deref(),
            peer_endpoint: (case.initiator == Initiator::Them).then(|| endpoint(&our_ul, OUR_PORT)),
            peer_allowed_ips: &[format!("{our_v4}/32"), format!("{our_v6}/128")],
        },
    )
    .expect("configuring the peer daemon");

    let our_endpoint_line = if case.initiator == Initiator::Us {
        format!("Endpoint = {}\n", endpoint(&their_ul, THEIR_PORT))
    } else {
        String::new()
    };
    let our_psk_line = psk
        .as_ref()
        .map_or_else(String::new, |k| format!("PresharedKey = {k}\n"));
    let config = format!(
        "[Interface]\n\
         PrivateKey = {our_priv}\n\
         ListenPort = {OUR_PORT}\n\
         Address = {our_v4}/24, {our_v6}/64\n\
         MTU = {MTU}\n\
         \n\
         [Peer]\n\
         PublicKey = {their_pub}\n\
         AllowedIPs = {their_v4}/32, {their_v6}/128\n\
         {our_endpoint_line}\
         {our_psk_line}"
    );
    let ours = UringTunnel::start(
        &pair.a,
        &dir,
        &unique_name("ut"),
        &config,
        &["--engine", case.engine],
    )
    .expect("starting uring-tunnel");
    if let Some(l) = ours.log_text().lines().find(|l| l.contains(" up: ")) {
        eprintln!("{l}");
    }

    // The side without an endpoint cannot start a handshake: the initiator does, on this first
    // packet (uring-tunnel may already have initiated at start-up when it has the endpoint).
    let (first, first_dst, second, second_dst) = match case.initiator {
        Initiator::Us => (&pair.a, &their_v4, &pair.b, &our_v4),
        Initiator::Them => (&pair.b, &our_v4, &pair.a, &their_v4),
    };
    ping(first, first_dst);
    // Now the peer knows where we are: from its config, or learned from our initiation.
    assert_eq!(
        peer.endpoint_of(&our_pub).expect("wg show endpoints"),
        Some(endpoint(&our_ul, OUR_PORT)),
        "the peer's endpoint for us after the handshake"
    );
    ping(second, second_dst);
    ping(&pair.a, &their_v6);
    ping(&pair.b, &our_v6);

    for (from, to, dst, what) in [
        (&pair.a, &pair.b, &their_v4, "uring-tunnel -> peer"),
        (&pair.b, &pair.a, &our_v4, "peer -> uring-tunnel"),
    ] {
        let addr = SocketAddr::new(dst.parse().expect("overlay address"), 5201);
        let t = tcp_transfer(from, to, addr, TRANSFER_BYTES, TRANSFER_TIMEOUT)
            .unwrap_or_else(|e| panic!("TCP {what}: {e}"));
        eprintln!(
            "TCP {what}: {} bytes in {:.2?} ({:.0} Mbit/s), sha256 match",
            t.sent.bytes,
            t.elapsed,
            t.mbit_per_s()
        );
    }

    // The peer's own counters saw both transfers go through the tunnel.
    let (rx, tx) = peer.transfer_of(&our_pub).expect("wg show transfer");
    assert!(
        rx > TRANSFER_BYTES && tx > TRANSFER_BYTES,
        "peer counters rx={rx} tx={tx}"
    );

    let stats = ours
        .stop()
        .unwrap_or_else(|e| panic!("uring-tunnel shutdown: {e}"));
    eprintln!("{stats}");
    for counter in ["tun_rx", "tun_tx", "udp_rx", "udp_tx"] {
        let n = stat(&stats, counter).unwrap_or_else(|| panic!("{counter} missing: {stats}"));
        assert!(n > 0, "{counter} = 0: {stats}");
    }
    peer.stop()
        .unwrap_or_else(|e| panic!("stopping the peer: {e}"));
}

/// One test per case and engine: `epoll::...` pins the epoll backend, `auto::...` lets the
/// binary choose (io_uring where the kernel and the build support it; its log line says which).
macro_rules! cases {
    ($($name:ident: $peer:ident, $initiator:ident, $ipv6_underlay:expr, $psk:expr;)*) => {
        mod epoll {
            use super::*;
            $(#[test]
            fn $name() {
                interop(Case {
                    peer: PeerImpl::$peer,
                    initiator: Initiator::$initiator,
                    ipv6_underlay: $ipv6_underlay,
                    psk: $psk,
                    engine: "epoll",
                });
            })*
        }
        mod auto {
            use super::*;
            $(#[test]
            fn $name() {
                interop(Case {
                    peer: PeerImpl::$peer,
                    initiator: Initiator::$initiator,
                    ipv6_underlay: $ipv6_underlay,
                    psk: $psk,
                    engine: "auto",
                });
            })*
        }
    };
}

cases! {
    wireguard_go_we_initiate: WireguardGo, Us, false, false;
    wireguard_go_they_initiate: WireguardGo, Them, false, false;
    wireguard_go_ipv6_underlay_psk_we_initiate: WireguardGo, Us, true, true;
    boringtun_we_initiate: Boringtun, Us, false, false;
    boringtun_they_initiate: Boringtun, Them, false, false;
    boringtun_ipv6_underlay_psk_they_initiate: Boringtun, Them, true, true;
}
