//! The Linux TUN device: multi-queue, virtio-net header, offload negotiation,
//! and its netlink configuration.

use std::ffi::CString;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::net::IpAddr;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::time::Duration;

use crate::TunIo;
use crate::error::TunError;
use crate::gro::GroConfig;
use crate::netlink::Netlink;
use crate::sys;
use crate::vnet::VNET_HDR_LEN;

/// How to configure a TUN device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TunConfig {
    /// Interface name (1–15 bytes). Attached to if it exists, created otherwise.
    pub name: String,
    /// Number of queues (fds), ≥ 1.
    pub queues: usize,
    /// Use `IFF_VNET_HDR` and negotiate offloads. When false, reads and
    /// writes are plain IP packets (the fallback path).
    pub offload: bool,
    /// Also try USO (`TUN_F_USO4|TUN_F_USO6`).
    pub uso: bool,
    /// Open queue fds with `O_NONBLOCK`.
    pub nonblocking: bool,
    /// MTU to set, if any.
    pub mtu: Option<u32>,
    /// Addresses with prefix lengths.
    pub addresses: Vec<(IpAddr, u8)>,
    /// Routes (destination, prefix length) through the device.
    pub routes: Vec<(IpAddr, u8)>,
    /// Bring the link up.
    pub up: bool,
}

impl TunConfig {
    /// A configuration with defaults: one queue, offloads on (TSO + USO),
    /// blocking fds, link up, no MTU/addresses/routes.
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            queues: 1,
            offload: true,
            uso: true,
            nonblocking: false,
            mtu: None,
            addresses: Vec::new(),
            routes: Vec::new(),
            up: true,
        }
    }
}

/// What the device granted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TunCaps {
    /// Packets on the fds carry a 10-byte virtio-net header.
    pub vnet_hdr: bool,
    /// `TUN_F_CSUM`: reads may carry partial checksums (`NEEDS_CSUM`).
    pub csum: bool,
    /// `TUN_F_TSO4|TUN_F_TSO6`: reads may be TCP super-packets; we may write them.
    pub tso: bool,
    /// `TUN_F_USO4|TUN_F_USO6`: reads may be UDP super-packets; we may write them.
    pub uso: bool,
    /// The raw `TUN_F_*` mask accepted by `TUNSETOFFLOAD`.
    pub offload_flags: u32,
}

impl TunCaps {
    /// Bytes in front of each packet on the fds (0 or 10).
    pub const fn hdr_len(&self) -> usize {
        if self.vnet_hdr { VNET_HDR_LEN } else { 0 }
    }

    /// Coalescer configuration matching these capabilities.
    pub fn gro_config(&self) -> GroConfig {
        GroConfig {
            vnet_hdr: self.vnet_hdr,
            tcp: self.tso,
            udp: self.uso,
            ..GroConfig::default()
        }
    }
}

/// One queue of a TUN device: an fd the engine reads and writes (e.g. with
/// io_uring). Each read returns one packet (with a virtio-net header when
/// `vnet_hdr`); each write takes one.
#[derive(Debug)]
pub struct TunQueue {
    file: File,
    vnet_hdr: bool,
}

impl TunQueue {
    /// Whether packets carry a virtio-net header.
    pub const fn vnet_hdr(&self) -> bool {
        self.vnet_hdr
    }

    /// Read one packet (blocking or not, per the fd's mode).
    pub fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        (&self.file).read(buf)
    }

    /// Write one packet.
    pub fn write(&self, buf: &[u8]) -> io::Result<usize> {
        (&self.file).write(buf)
    }

    /// Set or clear `O_NONBLOCK`.
    pub fn set_nonblocking(&self, on: bool) -> io::Result<()> {
        sys::set_nonblocking(self.file.as_fd(), on)
    }

    /// Wait until readable or `timeout`; `Ok(true)` if readable.
    pub fn wait_readable(&self, timeout: Duration) -> io::Result<bool> {
        let ms = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
        sys::poll_readable(self.file.as_fd(), ms)
    }

    /// Give up the fd (the device stays while any queue fd is open).
    pub fn into_owned_fd(self) -> OwnedFd {
        self.file.into()
    }
}

impl AsRawFd for TunQueue {
    fn as_raw_fd(&self) -> RawFd {
        self.file.as_raw_fd()
    }
}

impl AsFd for TunQueue {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }
}

impl TunIo for TunQueue {
    fn read_packet(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.read(buf)
    }

    fn write_packet(&self, buf: &[u8]) -> io::Result<usize> {
        self.write(buf)
    }

    fn has_vnet_hdr(&self) -> bool {
        self.vnet_hdr
    }
}

/// A configured TUN device and its queues. Dropping it deletes the
/// interface if this value created it.
#[derive(Debug)]
pub struct TunDevice {
    name: String,
    index: u32,
    caps: TunCaps,
    created: bool,
    queues: Vec<TunQueue>,
    /// Opened at creation, so it stays in the device's network namespace
    /// whichever thread later uses or drops the device.
    nl: Netlink,
}

fn name_bytes(name: &str) -> Result<[u8; 16], TunError> {
    let b = name.as_bytes();
    if b.is_empty() || b.len() > 15 || b.contains(&0) || b.contains(&b'/') {
        return Err(TunError::InvalidName(name.to_owned()));
    }
    let mut out = [0u8; 16];
    out[..b.len()].copy_from_slice(b);
    Ok(out)
}

fn open_queue(
    name: &[u8; 16],
    flags: i16,
    nonblocking: bool,
) -> Result<(File, [u8; 16]), TunError> {
    let mut oo = OpenOptions::new();
    oo.read(true).write(true);
    if nonblocking {
        use std::os::unix::fs::OpenOptionsExt;
        oo.custom_flags(libc::O_NONBLOCK);
    }
    let file = oo.open("/dev/net/tun").map_err(TunError::Open)?;
    let got = sys::tun_set_iff(file.as_fd(), name, flags).map_err(|source| TunError::Ioctl {
        op: "TUNSETIFF",
        source,
    })?;
    Ok((file, got))
}

fn negotiate(fd: BorrowedFd<'_>, try_uso: bool) -> TunCaps {
    let tcp = sys::TUN_F_CSUM | sys::TUN_F_TSO4 | sys::TUN_F_TSO6;
    let udp = sys::TUN_F_USO4 | sys::TUN_F_USO6;
    let mut tries = [0u32; 3];
    let mut n = 0;
    if try_uso {
        tries[n] = tcp | udp;
        n += 1;
    }
    tries[n] = tcp;
    n += 1;
    tries[n] = 0;
    n += 1;
    for &f in &tries[..n] {
        if sys::tun_set_offload(fd, f).is_ok() {
            return TunCaps {
                vnet_hdr: true,
                csum: f & sys::TUN_F_CSUM != 0,
                tso: f & sys::TUN_F_TSO4 != 0,
                uso: f & sys::TUN_F_USO4 != 0,
                offload_flags: f,
            };
        }
    }
    TunCaps {
        vnet_hdr: true,
        ..TunCaps::default()
    }
}

impl TunDevice {
    /// Create (or attach to) the device in the calling thread's network
    /// namespace, open `cfg.queues` queues, negotiate offloads and apply the
    /// netlink configuration.
    pub fn open(cfg: &TunConfig) -> Result<Self, TunError> {
        if cfg.queues == 0 || cfg.queues > 256 {
            return Err(TunError::InvalidConfig("queues must be 1..=256"));
        }
        let name = name_bytes(&cfg.name)?;
        let cname =
            CString::new(cfg.name.as_str()).map_err(|_| TunError::InvalidName(cfg.name.clone()))?;
        let existed = sys::if_nametoindex(&cname).is_some();
        let mut flags = sys::IFF_TUN | sys::IFF_NO_PI | sys::IFF_MULTI_QUEUE;
        if cfg.offload {
            flags |= sys::IFF_VNET_HDR;
        }
        let (first, _) = open_queue(&name, flags, cfg.nonblocking)?;
        let caps = if cfg.offload {
            sys::tun_set_vnet_hdr_sz(first.as_fd(), VNET_HDR_LEN as i32).map_err(|source| {
                TunError::Ioctl {
                    op: "TUNSETVNETHDRSZ",
                    source,
                }
            })?;
            negotiate(first.as_fd(), cfg.uso)
        } else {
            TunCaps::default()
        };
        let index = sys::if_nametoindex(&cname).ok_or_else(|| TunError::Ioctl {
            op: "if_nametoindex",
            source: io::Error::from(io::ErrorKind::NotFound),
        })?;
        let nl = Netlink::open()?;
        let mut dev = Self {
            name: cfg.name.clone(),
            index,
            caps,
            created: !existed,
            queues: vec![TunQueue {
                file: first,
                vnet_hdr: cfg.offload,
            }],
            nl,
        };
        for _ in 1..cfg.queues {
            let (f, _) = open_queue(&name, flags, cfg.nonblocking)?;
            dev.queues.push(TunQueue {
                file: f,
                vnet_hdr: cfg.offload,
            });
        }
        let nl = &mut dev.nl;
        if cfg.mtu.is_some() {
            nl.set_link(index, cfg.mtu, None)?;
        }
        if cfg.up {
            nl.set_link(index, None, Some(true))?;
        }
        for &(a, p) in &cfg.addresses {
            nl.add_addr(index, a, p)?;
        }
        if cfg.up {
            // IPv6 addresses become usable asynchronously (the kernel's addrconf work
            // installs their local route even with NODAD): packets written into the
            // device before that are dropped as InAddrErrors. Wait, bounded.
            for &(a, _) in &cfg.addresses {
                if a.is_ipv6() {
                    wait_local(nl, a)?;
                }
            }
        }
        for &(a, p) in &cfg.routes {
            nl.add_route(index, a, p)?;
        }
        Ok(dev)
    }

    /// Interface name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Interface index.
    pub const fn index(&self) -> u32 {
        self.index
    }

    /// Negotiated capabilities.
    pub const fn caps(&self) -> TunCaps {
        self.caps
    }

    /// Whether this value created the interface (and will delete it).
    pub const fn created(&self) -> bool {
        self.created
    }

    /// The queues.
    pub fn queues(&self) -> &[TunQueue] {
        &self.queues
    }

    /// Move the queues out (e.g. one per shard). The device value still
    /// deletes the interface on drop if it created it.
    pub fn take_queues(&mut self) -> Vec<TunQueue> {
        std::mem::take(&mut self.queues)
    }

    /// Add an address after creation.
    pub fn add_address(&mut self, addr: IpAddr, prefix: u8) -> Result<(), TunError> {
        self.nl.add_addr(self.index, addr, prefix)
    }

    /// Add a route through the device after creation.
    pub fn add_route(&mut self, dst: IpAddr, prefix: u8) -> Result<(), TunError> {
        self.nl.add_route(self.index, dst, prefix)
    }

    /// The device's MTU now (`SIOCGIFMTU`, asked in the calling thread's network namespace,
    /// which must be the device's). Someone may change it at run time (`ip link set mtu`).
    pub fn mtu(&self) -> Result<u32, TunError> {
        crate::sys::if_mtu(&self.name).map_err(|e| TunError::Ioctl {
            op: "SIOCGIFMTU",
            source: e,
        })
    }

    /// Set the MTU after creation.
    pub fn set_mtu(&mut self, mtu: u32) -> Result<(), TunError> {
        self.nl.set_link(self.index, Some(mtu), None)
    }
}

impl Drop for TunDevice {
    fn drop(&mut self) {
        if self.created {
            // Delete while our queue fds (if still here) keep the device, so
            // the index cannot name another interface. Best effort: a
            // non-persistent TUN also vanishes when its last queue fd closes.
            let _ = self.nl.del_link(self.index);
        }
        self.queues.clear();
    }
}

/// Polls until `addr` is a local address of the namespace, for at most two seconds.
fn wait_local(nl: &mut Netlink, addr: IpAddr) -> Result<(), TunError> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    while !nl.is_local(addr)? {
        if std::time::Instant::now() > deadline {
            return Err(TunError::Netlink {
                op: "wait for the IPv6 address to become usable",
                source: std::io::Error::from(std::io::ErrorKind::TimedOut),
            });
        }
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    Ok(())
}
