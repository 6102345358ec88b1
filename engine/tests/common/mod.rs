//! Helpers shared by the syscall-layer integration tests.
#![allow(dead_code, unreachable_pub)]

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::{Duration, Instant};

use uring_tunnel_engine::sys::udp::{RecvHeaders, RecvMeta, UdpConfig, UdpSocket};

/// `count` segments of `seg` bytes and a `tail`-byte last one; every byte depends on its
/// segment and position, so reordering or corruption shows.
pub fn payload(count: usize, seg: usize, tail: usize) -> Vec<u8> {
    let mut v = Vec::new();
    for i in 0..count {
        v.extend((0..seg).map(|j| (i * 31 + j * 7 + 1) as u8));
    }
    v.extend((0..tail).map(|j| (count * 31 + j * 7 + 1) as u8));
    v
}

pub fn cfg_v4() -> UdpConfig {
    UdpConfig {
        bind: IpAddr::V4(Ipv4Addr::LOCALHOST),
        ..UdpConfig::default()
    }
}

pub fn cfg_dual() -> UdpConfig {
    UdpConfig {
        bind: IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        ..UdpConfig::default()
    }
}

/// Receives with `recvmmsg` until `want_bytes` payload bytes arrived or `limit` passed;
/// returns (meta, bytes) per received buffer.
pub fn recv_until(
    sock: &UdpSocket,
    want_bytes: usize,
    limit: Duration,
) -> Vec<(RecvMeta, Vec<u8>)> {
    let mut hdrs = RecvHeaders::new(8);
    let mut bufs = vec![vec![0u8; 65536]; 8];
    let mut metas = [RecvMeta::default(); 8];
    let mut out = Vec::new();
    let mut got = 0;
    let deadline = Instant::now() + limit;
    while got < want_bytes && Instant::now() < deadline {
        match sock.recv_batch(
            &mut hdrs,
            bufs.iter_mut().map(|b| b.as_mut_slice()),
            &mut metas,
        ) {
            Ok(n) => {
                for i in 0..n {
                    got += metas[i].len;
                    out.push((metas[i], bufs[i][..metas[i].len].to_vec()));
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(1))
            }
            Err(e) => panic!("recv_batch: {e}"),
        }
    }
    out
}

/// Splits received buffers into datagrams by their GRO segment size and concatenates them.
pub fn reassemble(rx: &[(RecvMeta, Vec<u8>)]) -> (Vec<u8>, usize) {
    let mut all = Vec::new();
    let mut datagrams = 0;
    for (m, b) in rx {
        for chunk in b.chunks(m.segment_size()) {
            all.extend_from_slice(chunk);
            datagrams += 1;
        }
    }
    (all, datagrams)
}

/// Whether this process runs as root with `tools` on PATH. Under CI=true a missing
/// prerequisite is a failure; otherwise the caller skips with the printed reason.
pub fn root_with_tools(test: &str, tools: &[&str]) -> bool {
    let mut missing = Vec::new();
    let uid = std::process::Command::new("id").arg("-u").output();
    let is_root = uid
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false);
    if !is_root {
        missing.push("root".to_string());
    }
    for t in tools {
        let found = std::process::Command::new("sh")
            .args(["-c", &format!("command -v {t}")])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false);
        if !found {
            missing.push(format!("the `{t}` tool"));
        }
    }
    if missing.is_empty() {
        return true;
    }
    let msg = format!("{test}: needs {}", missing.join(", "));
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("{msg} (CI=true: failing instead of skipping)");
    }
    eprintln!("SKIP {msg}");
    false
}
