//! Allowed-IPs lookup per packet: a small table (a hub with a few peers: /32s, /24s, one /16,
//! an IPv6 /128 and /64 each) and a large one (4096 peers with a /32 and a /128 each, plus
//! subnets), looking up the destination of a raw IPv4/IPv6 packet as the outbound path does.
//!
//! `cargo bench -p uring-tunnel-engine --bench allowed_ips`

#![allow(missing_docs)]

use std::hint::black_box;
use std::net::{Ipv4Addr, Ipv6Addr};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ipnet::IpNet;
use uring_tunnel_engine::allowed_ips::{AllowedIps, AllowedIpsBuilder};

fn table(peers: u32) -> AllowedIps {
    let mut b = AllowedIpsBuilder::new();
    for p in 0..peers {
        let v4 = Ipv4Addr::from(0x6440_0000u32 + p);
        b.insert(IpNet::new(v4.into(), 32).unwrap(), p);
        let v6 = Ipv6Addr::from(0xfd00_0000_0000_0000_0000_0000_0000_0000u128 + u128::from(p));
        b.insert(IpNet::new(v6.into(), 128).unwrap(), p);
        if p.is_multiple_of(16) {
            let net = Ipv4Addr::from(0x0a00_0000u32 + (p << 8));
            b.insert(IpNet::new(net.into(), 24).unwrap(), p);
            let net6 = Ipv6Addr::from(0xfd01u128 << 112 | u128::from(p) << 64);
            b.insert(IpNet::new(net6.into(), 64).unwrap(), p);
        }
    }
    b.insert("172.16.0.0/16".parse().unwrap(), 0);
    b.build()
}

/// A minimal IPv4 header to `dst`.
fn v4_packet(dst: Ipv4Addr) -> [u8; 20] {
    let mut p = [0u8; 20];
    p[0] = 0x45;
    p[12..16].copy_from_slice(&[100, 64, 0, 1]);
    p[16..20].copy_from_slice(&dst.octets());
    p
}

/// A minimal IPv6 header to `dst`.
fn v6_packet(dst: Ipv6Addr) -> [u8; 40] {
    let mut p = [0u8; 40];
    p[0] = 0x60;
    p[24..40].copy_from_slice(&dst.octets());
    p
}

fn lookups(c: &mut Criterion) {
    for peers in [4u32, 4096] {
        let t = table(peers);
        let mut g = c.benchmark_group(format!("allowed_ips/{peers}_peers"));
        g.throughput(Throughput::Elements(1));
        let host = v4_packet(Ipv4Addr::from(0x6440_0000u32 + peers - 1));
        g.bench_function("v4_host_/32", |b| {
            b.iter(|| black_box(t.lookup_packet(black_box(&host), true)))
        });
        let subnet = v4_packet(Ipv4Addr::new(10, 0, 0, 77));
        g.bench_function("v4_subnet_/24", |b| {
            b.iter(|| black_box(t.lookup_packet(black_box(&subnet), true)))
        });
        let miss = v4_packet(Ipv4Addr::new(192, 0, 2, 1));
        g.bench_function("v4_miss", |b| {
            b.iter(|| black_box(t.lookup_packet(black_box(&miss), true)))
        });
        let host6 = v6_packet(Ipv6Addr::from(
            0xfd00_0000_0000_0000_0000_0000_0000_0000u128 + u128::from(peers - 1),
        ));
        g.bench_function("v6_host_/128", |b| {
            b.iter(|| black_box(t.lookup_packet(black_box(&host6), true)))
        });
        let miss6 = v6_packet(Ipv6Addr::from(0x2001_0db8u128 << 96));
        g.bench_function("v6_miss", |b| {
            b.iter(|| black_box(t.lookup_packet(black_box(&miss6), true)))
        });
        g.finish();
    }
}

criterion_group!(benches, lookups);
criterion_main!(benches);
