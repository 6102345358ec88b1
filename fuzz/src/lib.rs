//! Shared helpers of the fuzz targets and of the seed-corpus generator
//! (`cargo run --example gen_corpus`): fixed device pairs, MAC1 re-sealing (so mutated handshake
//! messages get past the MAC1 check into the decryption and consume paths), byte mutations
//! steered by the fuzzer's input, and small IPv4/IPv6 TCP/UDP packet builders.

use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use uring_tunnel_crypto::cookie::MacGenerator;
use uring_tunnel_crypto::keys::{PresharedKey, PublicKey, StaticSecret};
use uring_tunnel_crypto::messages::{INITIATION_LEN, RESPONSE_LEN};
use uring_tunnel_crypto::peer::{Device, PeerConfig, PeerId};
use uring_tunnel_crypto::timers::TimerConfig;
use uring_tunnel_tun::checksum;

/// Monotonic "now" of every target.
pub const NOW: Duration = Duration::from_secs(1000);

/// The underlay address handshake datagrams come from.
pub fn src() -> SocketAddr {
    SocketAddr::from(([198, 18, 0, 1], 51820))
}

/// A wall clock time `secs` after 2023-11-14 (TAI64N input of initiations).
pub fn wall(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_700_000_000 + secs % (1 << 32))
}

/// Static secret of the initiator side (`a`).
pub fn secret_a() -> StaticSecret {
    StaticSecret::from_bytes([1; 32])
}

/// Static secret of the responder side (`b`).
pub fn secret_b() -> StaticSecret {
    StaticSecret::from_bytes([2; 32])
}

/// Static secret of a third party (`c`), known to `b` as a second peer.
pub fn secret_c() -> StaticSecret {
    StaticSecret::from_bytes([3; 32])
}

/// Two devices that know each other: `a` (initiator) and `b` (responder, which also knows
/// `c`). `psk` is the preshared key both use.
pub struct Pair {
    /// Initiator side.
    pub a: Device,
    /// Responder side.
    pub b: Device,
    /// `b` as a peer of `a`.
    pub b_in_a: PeerId,
    /// `a` as a peer of `b`.
    pub a_in_b: PeerId,
}

impl Pair {
    /// A fresh pair; with `psk` both sides use the preshared key `[7; 32]`.
    pub fn new(psk: bool) -> Pair {
        let psk = if psk {
            PresharedKey::from_bytes([7; 32])
        } else {
            PresharedKey::none()
        };
        let (sa, sb) = (secret_a(), secret_b());
        let (pa, pb, pc) = (sa.public_key(), sb.public_key(), secret_c().public_key());
        let mut a = Device::new(sa, TimerConfig::default());
        let mut b = Device::new(sb, TimerConfig::default());
        let mut cfg = PeerConfig::new(pb);
        cfg.preshared_key = psk.clone();
        let b_in_a = a.add_peer(cfg, NOW).expect("peer b");
        let mut cfg = PeerConfig::new(pa);
        cfg.preshared_key = psk;
        let a_in_b = b.add_peer(cfg, NOW).expect("peer a");
        b.add_peer(PeerConfig::new(pc), NOW).expect("peer c");
        Pair {
            a,
            b,
            b_in_a,
            a_in_b,
        }
    }
}

/// Re-seals MAC1 (MAC2 zero) of a 148-byte initiation or a 92-byte response for the receiver
/// whose public key is `to`; other lengths are left alone.
pub fn reseal_mac1(msg: &mut [u8], to: &PublicKey) {
    let mut macs = MacGenerator::new(to);
    if let Ok(m) = <&mut [u8; INITIATION_LEN]>::try_from(&mut *msg) {
        macs.seal(m, Duration::ZERO);
    } else if let Ok(m) = <&mut [u8; RESPONSE_LEN]>::try_from(msg) {
        macs.seal(m, Duration::ZERO);
    }
}

/// A cursor over the fuzzer's input; reads past the end give zeros.
pub struct Reader<'a> {
    data: &'a [u8],
}

impl<'a> Reader<'a> {
    /// Reads from `data`.
    pub fn new(data: &'a [u8]) -> Self {
        Self { data }
    }

    /// One byte (0 at the end).
    pub fn u8(&mut self) -> u8 {
        match self.data.split_first() {
            Some((&b, rest)) => {
                self.data = rest;
                b
            }
            None => 0,
        }
    }

    /// A little-endian u16.
    pub fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.u8(), self.u8()])
    }

    /// A little-endian u64.
    pub fn u64(&mut self) -> u64 {
        let mut b = [0u8; 8];
        for x in &mut b {
            *x = self.u8();
        }
        u64::from_le_bytes(b)
    }

    /// Up to `n` bytes.
    pub fn take(&mut self, n: usize) -> &'a [u8] {
        let n = n.min(self.data.len());
        let (head, rest) = self.data.split_at(n);
        self.data = rest;
        head
    }

    /// Everything left.
    pub fn rest(&mut self) -> &'a [u8] {
        self.take(self.data.len())
    }

    /// Whether nothing is left.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }
}

/// Applies up to `max` mutations read from `r` to `buf`: each is (position, xor mask). Returns
/// whether any byte changed.
pub fn mutate(buf: &mut [u8], r: &mut Reader<'_>, max: usize) -> bool {
    let n = usize::from(r.u8()) % (max + 1);
    let mut changed = false;
    if buf.is_empty() {
        return false;
    }
    for _ in 0..n {
        let pos = usize::from(r.u16()) % buf.len();
        let x = r.u8();
        buf[pos] ^= x;
        changed |= x != 0;
    }
    changed
}

// ---- packets ------------------------------------------------------------------------------

/// IP protocol numbers.
pub const TCP: u8 = 6;
/// UDP.
pub const UDP: u8 = 17;

/// An IPv4 packet with a TCP (`flags`, `seq`) or UDP L4 header around `payload`, with valid
/// header and L4 checksums.
pub fn ipv4(proto: u8, id: u16, ports: (u16, u16), seq: u32, flags: u8, payload: &[u8]) -> Vec<u8> {
    let l4 = l4_header(proto, ports, seq, flags, payload.len());
    let total = 20 + l4.len() + payload.len();
    let mut p = Vec::with_capacity(total);
    p.extend_from_slice(&[0x45, 0, 0, 0]);
    p[2..4].copy_from_slice(&(total as u16).to_be_bytes());
    p.extend_from_slice(&id.to_be_bytes());
    p.extend_from_slice(&[0x40, 0, 64, proto, 0, 0]);
    p.extend_from_slice(&[100, 64, 0, 1, 100, 64, 0, 2]);
    let c = checksum::finish(checksum::ipv4_header(&p[..20]));
    p[10..12].copy_from_slice(&c.to_be_bytes());
    p.extend_from_slice(&l4);
    p.extend_from_slice(payload);
    let pseudo = checksum::pseudo_v4(
        [100, 64, 0, 1],
        [100, 64, 0, 2],
        proto,
        (l4.len() + payload.len()) as u16,
    );
    fill_l4_checksum(&mut p, 20, proto, pseudo);
    p
}

/// An IPv6 packet (fd00::1 → fd00::2) with a TCP or UDP header around `payload`.
pub fn ipv6(proto: u8, ports: (u16, u16), seq: u32, flags: u8, payload: &[u8]) -> Vec<u8> {
    let l4 = l4_header(proto, ports, seq, flags, payload.len());
    let plen = l4.len() + payload.len();
    let mut p = Vec::with_capacity(40 + plen);
    p.extend_from_slice(&[0x60, 0, 0, 0]);
    p.extend_from_slice(&(plen as u16).to_be_bytes());
    p.extend_from_slice(&[proto, 64]);
    let mut s = [0u8; 16];
    s[0] = 0xfd;
    s[15] = 1;
    let mut d = s;
    d[15] = 2;
    p.extend_from_slice(&s);
    p.extend_from_slice(&d);
    p.extend_from_slice(&l4);
    p.extend_from_slice(payload);
    let pseudo = checksum::pseudo_v6(&s, &d, proto, plen as u32);
    fill_l4_checksum(&mut p, 40, proto, pseudo);
    p
}

fn l4_header(proto: u8, ports: (u16, u16), seq: u32, flags: u8, payload: usize) -> Vec<u8> {
    let mut h = Vec::with_capacity(20);
    h.extend_from_slice(&ports.0.to_be_bytes());
    h.extend_from_slice(&ports.1.to_be_bytes());
    if proto == TCP {
        h.extend_from_slice(&seq.to_be_bytes());
        h.extend_from_slice(&1u32.to_be_bytes());
        h.extend_from_slice(&[0x50, flags, 0xff, 0xff, 0, 0, 0, 0]);
    } else {
        h.extend_from_slice(&((8 + payload) as u16).to_be_bytes());
        h.extend_from_slice(&[0, 0]);
    }
    h
}

fn fill_l4_checksum(p: &mut [u8], l4: usize, proto: u8, pseudo: u16) {
    let off = l4 + if proto == TCP { 16 } else { 6 };
    let mut c = checksum::finish(checksum::add(pseudo, checksum::sum(&p[l4..])));
    if proto == UDP && c == 0 {
        c = 0xffff;
    }
    p[off..off + 2].copy_from_slice(&c.to_be_bytes());
}

/// `pkt` with the fields a split rewrites zeroed: the IPv4 header checksum, the IPv4 ID (a
/// split numbers segments id, id+1, … like the kernel's own segmentation, while the coalescer,
/// like wireguard-go's, does not require consecutive IDs), the TCP/UDP checksum, and the TCP
/// urgent pointer when URG is clear (meaningless then; the coalescer, like the kernel's GRO,
/// does not compare it and a split repeats the first segment's).
pub fn normalized(pkt: &[u8]) -> Vec<u8> {
    let mut p = pkt.to_vec();
    let (l4, proto) = match p.first().map(|b| b >> 4) {
        Some(4) if p.len() >= 20 => {
            p[4..6].fill(0);
            p[10..12].fill(0);
            (usize::from(p[0] & 0x0f) * 4, p[9])
        }
        Some(6) if p.len() >= 40 => (40, p[6]),
        _ => return p,
    };
    let off = match proto {
        TCP => l4 + 16,
        UDP => l4 + 6,
        _ => return p,
    };
    // Without URG the urgent pointer means nothing; a split copies the first segment's.
    if proto == TCP
        && p.get(l4 + 13).is_some_and(|f| f & 0x20 == 0)
        && let Some(f) = p.get_mut(l4 + 18..l4 + 20)
    {
        f.fill(0);
    }
    if let Some(f) = p.get_mut(off..off + 2) {
        f.fill(0);
    }
    p
}
