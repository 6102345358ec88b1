//! The allowed-IPs table: longest-prefix match from an inner address to a peer.
//!
//! The table is built once per configuration change and then only read, by every shard, so it
//! is optimised for lookup: per address family, one hash map per distinct prefix length, tried
//! from the longest length to the shortest. A configuration has few distinct lengths (typically
//! /32, /128 and a handful of subnets), so a lookup is a few hash probes and never allocates.
//! Changes go through [`AllowedIpsBuilder`], which keeps the exact set of prefixes, so removal
//! is exact: removing a peer's prefix never disturbs a shorter or longer one of another peer.

use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasherDefault, Hasher};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;

/// Index of a peer in the engine's peer table.
pub type PeerId = u32;

/// A mutable set of prefix → peer assignments; [`AllowedIpsBuilder::build`] freezes it.
#[derive(Debug, Clone, Default)]
pub struct AllowedIpsBuilder {
    entries: BTreeMap<IpNet, PeerId>,
}

impl AllowedIpsBuilder {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Assigns `net` (host bits are cleared) to `peer`. Like WireGuard, a prefix belongs to one
    /// peer at a time: inserting it for another peer moves it. Returns the previous owner.
    pub fn insert(&mut self, net: IpNet, peer: PeerId) -> Option<PeerId> {
        self.entries.insert(net.trunc(), peer)
    }

    /// Removes exactly `net` if `peer` owns it; returns whether something was removed.
    pub fn remove(&mut self, net: IpNet, peer: PeerId) -> bool {
        let net = net.trunc();
        if self.entries.get(&net) == Some(&peer) {
            self.entries.remove(&net);
            true
        } else {
            false
        }
    }

    /// Removes every prefix of `peer` (peer removal or `replace_allowed_ips`).
    pub fn remove_peer(&mut self, peer: PeerId) {
        self.entries.retain(|_, p| *p != peer);
    }

    /// The prefixes of `peer`, in address order.
    pub fn prefixes_of(&self, peer: PeerId) -> impl Iterator<Item = IpNet> + '_ {
        self.entries
            .iter()
            .filter(move |(_, p)| **p == peer)
            .map(|(n, _)| *n)
    }

    /// Number of prefixes.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Freezes the set into a lookup table.
    pub fn build(&self) -> AllowedIps {
        let mut v4: BTreeMap<u8, HashMap<u32, PeerId, FastHash>> = BTreeMap::new();
        let mut v6: BTreeMap<u8, HashMap<u128, PeerId, FastHash>> = BTreeMap::new();
        for (net, peer) in &self.entries {
            match net {
                IpNet::V4(n) => {
                    v4.entry(n.prefix_len())
                        .or_default()
                        .insert(u32::from(n.network()), *peer);
                }
                IpNet::V6(n) => {
                    v6.entry(n.prefix_len())
                        .or_default()
                        .insert(u128::from(n.network()), *peer);
                }
            }
        }
        AllowedIps {
            v4: v4
                .into_iter()
                .rev()
                .map(|(len, map)| (mask4(len), map))
                .collect(),
            v6: v6
                .into_iter()
                .rev()
                .map(|(len, map)| (mask6(len), map))
                .collect(),
        }
    }
}

/// A frozen longest-prefix-match table, shared read-only by the shards.
#[derive(Debug, Clone, Default)]
pub struct AllowedIps {
    /// (mask, network → peer), longest prefix first.
    v4: Vec<(u32, HashMap<u32, PeerId, FastHash>)>,
    v6: Vec<(u128, HashMap<u128, PeerId, FastHash>)>,
}

impl AllowedIps {
    /// The peer owning the longest prefix that contains `addr`.
    #[inline]
    pub fn lookup(&self, addr: IpAddr) -> Option<PeerId> {
        match addr {
            IpAddr::V4(a) => self.lookup_v4(a),
            IpAddr::V6(a) => self.lookup_v6(a),
        }
    }

    /// IPv4 lookup.
    #[inline]
    pub fn lookup_v4(&self, addr: Ipv4Addr) -> Option<PeerId> {
        let a = u32::from(addr);
        self.v4
            .iter()
            .find_map(|(mask, map)| map.get(&(a & mask)).copied())
    }

    /// IPv6 lookup.
    #[inline]
    pub fn lookup_v6(&self, addr: Ipv6Addr) -> Option<PeerId> {
        let a = u128::from(addr);
        self.v6
            .iter()
            .find_map(|(mask, map)| map.get(&(a & mask)).copied())
    }

    /// Looks up the destination (`dst = true`) or source address of a raw IPv4/IPv6 packet.
    /// Returns `None` for packets too short to hold that address.
    #[inline]
    pub fn lookup_packet(&self, packet: &[u8], dst: bool) -> Option<PeerId> {
        match packet.first()? >> 4 {
            4 => {
                let off = if dst { 16 } else { 12 };
                let b: [u8; 4] = packet.get(off..off + 4)?.try_into().ok()?;
                self.lookup_v4(Ipv4Addr::from(b))
            }
            6 => {
                let off = if dst { 24 } else { 8 };
                let b: [u8; 16] = packet.get(off..off + 16)?.try_into().ok()?;
                self.lookup_v6(Ipv6Addr::from(b))
            }
            _ => None,
        }
    }
}

fn mask4(len: u8) -> u32 {
    if len == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(len))
    }
}

fn mask6(len: u8) -> u128 {
    if len == 0 {
        0
    } else {
        u128::MAX << (128 - u32::from(len))
    }
}

/// A small multiplicative hasher for integer keys (addresses are not attacker-chosen keys
/// here: the table holds only configured prefixes, looked up by value).
#[derive(Default, Clone, Copy)]
struct Fx(u64);

impl Hasher for Fx {
    #[inline]
    fn finish(&self) -> u64 {
        self.0
    }
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut b = [0u8; 8];
            b[..chunk.len()].copy_from_slice(chunk);
            self.write_u64(u64::from_le_bytes(b));
        }
    }
    #[inline]
    fn write_u32(&mut self, i: u32) {
        self.write_u64(u64::from(i));
    }
    #[inline]
    fn write_u64(&mut self, i: u64) {
        self.0 = (self.0.rotate_left(5) ^ i).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
    #[inline]
    fn write_u128(&mut self, i: u128) {
        self.write_u64(i as u64);
        self.write_u64((i >> 64) as u64);
    }
}

type FastHash = BuildHasherDefault<Fx>;

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }
    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn longest_prefix_wins() {
        let mut b = AllowedIpsBuilder::new();
        b.insert(net("0.0.0.0/0"), 1);
        b.insert(net("100.64.0.0/10"), 2);
        b.insert(net("100.64.1.0/24"), 3);
        b.insert(net("100.64.1.7/32"), 4);
        b.insert(net("fd00::/8"), 5);
        b.insert(net("fd00::1/128"), 6);
        let t = b.build();
        assert_eq!(t.lookup(ip("8.8.8.8")), Some(1));
        assert_eq!(t.lookup(ip("100.65.0.1")), Some(2));
        assert_eq!(t.lookup(ip("100.64.1.1")), Some(3));
        assert_eq!(t.lookup(ip("100.64.1.7")), Some(4));
        assert_eq!(t.lookup(ip("fd00::2")), Some(5));
        assert_eq!(t.lookup(ip("fd00::1")), Some(6));
        assert_eq!(t.lookup(ip("fe80::1")), None);
    }

    #[test]
    fn host_bits_are_cleared_and_insert_moves_ownership() {
        let mut b = AllowedIpsBuilder::new();
        b.insert(net("100.64.1.9/24"), 1);
        assert_eq!(b.insert(net("100.64.1.0/24"), 2), Some(1));
        assert_eq!(b.build().lookup(ip("100.64.1.200")), Some(2));
    }

    #[test]
    fn removal_is_exact() {
        let mut b = AllowedIpsBuilder::new();
        b.insert(net("100.64.0.0/16"), 1);
        b.insert(net("100.64.1.0/24"), 2);
        b.insert(net("100.64.1.128/25"), 1);
        assert!(!b.remove(net("100.64.1.0/24"), 1), "not the owner");
        assert!(b.remove(net("100.64.1.0/24"), 2));
        let t = b.build();
        assert_eq!(t.lookup(ip("100.64.1.1")), Some(1));
        assert_eq!(t.lookup(ip("100.64.1.129")), Some(1));
        b.remove_peer(1);
        assert!(b.is_empty());
        assert_eq!(b.build().lookup(ip("100.64.1.1")), None);
    }

    #[test]
    fn packet_lookup() {
        let mut b = AllowedIpsBuilder::new();
        b.insert(net("100.64.0.2/32"), 7);
        b.insert(net("fd00::2/128"), 8);
        let t = b.build();
        let mut v4 = [0u8; 20];
        v4[0] = 0x45;
        v4[12..16].copy_from_slice(&[100, 64, 0, 2]);
        v4[16..20].copy_from_slice(&[1, 2, 3, 4]);
        assert_eq!(t.lookup_packet(&v4, false), Some(7));
        assert_eq!(t.lookup_packet(&v4, true), None);
        let mut v6 = [0u8; 40];
        v6[0] = 0x60;
        v6[24..40].copy_from_slice(&"fd00::2".parse::<Ipv6Addr>().unwrap().octets());
        assert_eq!(t.lookup_packet(&v6, true), Some(8));
        assert_eq!(t.lookup_packet(&v6[..30], true), None);
        assert_eq!(t.lookup_packet(&[], true), None);
        assert_eq!(t.lookup_packet(&[0x10; 40], true), None);
    }

    fn naive(entries: &[(IpNet, PeerId)], addr: IpAddr) -> Option<PeerId> {
        entries
            .iter()
            .filter(|(n, _)| n.contains(&addr))
            .max_by_key(|(n, _)| n.prefix_len())
            .map(|(_, p)| *p)
    }

    proptest! {
        #[test]
        fn matches_naive_lpm(
            prefixes in proptest::collection::vec((any::<u32>(), 0u8..=32, 0u32..4), 0..40),
            probes in proptest::collection::vec(any::<u32>(), 1..40),
            remove in proptest::collection::vec(any::<prop::sample::Index>(), 0..10),
        ) {
            let mut b = AllowedIpsBuilder::new();
            for (a, len, p) in &prefixes {
                let n = IpNet::new(IpAddr::V4(Ipv4Addr::from(*a)), *len).unwrap().trunc();
                b.insert(n, *p);
            }
            let all: Vec<(IpNet, PeerId)> = b.entries.iter().map(|(n, p)| (*n, *p)).collect();
            for idx in &remove {
                if !all.is_empty() {
                    let (n, p) = all[idx.index(all.len())];
                    b.remove(n, p);
                }
            }
            let model: Vec<(IpNet, PeerId)> = b.entries.iter().map(|(n, p)| (*n, *p)).collect();
            let t = b.build();
            for a in probes.iter().chain(prefixes.iter().map(|(a, _, _)| a)) {
                let addr = IpAddr::V4(Ipv4Addr::from(*a));
                prop_assert_eq!(t.lookup(addr), naive(&model, addr));
            }
        }
    }
}
