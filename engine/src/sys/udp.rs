//! Per-shard UDP sockets with `SO_REUSEPORT`, UDP GSO (`UDP_SEGMENT`) and GRO (`UDP_GRO`), and
//! allocation-free `msghdr`/cmsg helpers shared by the plain-syscall and io_uring paths.
//!
//! # Kernel limits of one GSO send
//! - at most [`GSO_MAX_SEGMENTS`] segments (`UDP_MAX_SEGMENTS` in `include/linux/udp.h`: 64
//!   since GSO appeared in 4.18; newer kernels raised it to 128 — the 6.18 kernel here accepts
//!   128 — so 64 is the value that works everywhere; more than the kernel's limit is `EINVAL`);
//! - at most [`GSO_MAX_BYTES_V4`] payload bytes to an IPv4 destination (65535 − 20 IPv4 header
//!   − 8 UDP header; a v4-mapped destination on a dual-stack socket takes the IPv4 path) and
//!   [`GSO_MAX_BYTES_V6`] to an IPv6 one (the 16-bit payload length covers the 8-byte UDP
//!   header, but not the 40-byte IPv6 header); more fails with `EMSGSIZE`;
//! - each segment plus the IP and UDP headers must fit the route MTU (`EINVAL` otherwise);
//! - the segment size is a `u16` cmsg; all segments but the last have exactly that size.
//!
//! A segment that does not fit the route MTU (an underlay MTU below the tunnel MTU + 60/80) is
//! refused with `EINVAL`/`EMSGSIZE`; [`UdpSocket::note_gso_send_error`] then stops using GSO for
//! segments of that size and larger on the socket (smaller ones keep GSO) and the segments go out
//! one by one, which the kernel fragments: sockets are set to `IP_PMTUDISC_DONT` (like kernel
//! WireGuard: no DF bit, routers may fragment; IPv6 fragments at the sender).
//!
//! A device without TX checksum offload (`ethtool -K dev tx off`) makes a GSO `sendmsg` fail with
//! `EIO` before anything is sent; [`UdpSocket::send_segments`] then disables GSO on the socket
//! for good, counts the fallback and resends the segments one by one.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use super::{cvt, cvt_size, getsockopt_int, setsockopt};

/// Most segments the kernel accepts in one GSO send (`UDP_MAX_SEGMENTS`).
pub const GSO_MAX_SEGMENTS: usize = 64;
/// Most UDP payload bytes of one send to an IPv4 (or v4-mapped) destination.
pub const GSO_MAX_BYTES_V4: usize = 65535 - 20 - 8;
/// Most UDP payload bytes of one send to an IPv6 destination.
pub const GSO_MAX_BYTES_V6: usize = 65535 - 8;
/// Control-buffer bytes reserved per received message: room for the `UDP_GRO` cmsg
/// (`CMSG_SPACE(4)` = 24) with headroom for one more small cmsg.
pub const RECV_CMSG_SPACE: usize = 64;
/// Default receive/send buffer request per socket.
pub const DEFAULT_SOCKET_BUFFER: usize = 8 << 20;

/// Most payload bytes of one (GSO) send to `dst`.
pub fn gso_max_bytes(dst: &SocketAddr) -> usize {
    match dst {
        SocketAddr::V4(_) => GSO_MAX_BYTES_V4,
        SocketAddr::V6(a) if a.ip().to_ipv4_mapped().is_some() => GSO_MAX_BYTES_V4,
        SocketAddr::V6(_) => GSO_MAX_BYTES_V6,
    }
}

/// How many segments of `seg_size` bytes one GSO send to `dst` may carry (≥ 1 when
/// `seg_size` > 0 and fits in one datagram, 0 otherwise).
pub fn gso_max_segments(seg_size: usize, dst: &SocketAddr) -> usize {
    if seg_size == 0 {
        return 0;
    }
    (gso_max_bytes(dst) / seg_size).min(GSO_MAX_SEGMENTS)
}

/// Errors of socket set-up.
#[derive(Debug, thiserror::Error)]
pub enum UdpError {
    /// A set-up step failed.
    #[error("UDP socket set-up: {step} failed: {source}")]
    Setup {
        /// What was being done.
        step: &'static str,
        /// The OS error.
        source: io::Error,
    },
}

fn setup_err(step: &'static str) -> impl FnOnce(io::Error) -> UdpError {
    move |source| UdpError::Setup { step, source }
}

/// Address family of a socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// `AF_INET`: IPv4 only.
    V4,
    /// `AF_INET6`; IPv4 peers are reached through v4-mapped addresses when dual-stack.
    V6,
}

/// What to ask for when creating a shard socket.
#[derive(Debug, Clone)]
pub struct UdpConfig {
    /// Local address. The IPv6 unspecified address (the default) means dual-stack on all
    /// addresses, falling back to IPv4 `0.0.0.0` when the kernel has no IPv6.
    pub bind: IpAddr,
    /// Local port; 0 lets the kernel pick one (see [`UdpSocket::bind_shards`]).
    pub port: u16,
    /// Requested `SO_RCVBUF`/`SO_SNDBUF` in bytes (the `FORCE` variants are tried first, they
    /// need `CAP_NET_ADMIN`).
    pub buffer_bytes: usize,
    /// `SO_MARK` (fwmark) for policy routing; needs `CAP_NET_ADMIN`, failure is an error.
    pub fwmark: Option<u32>,
    /// Ask for `UDP_GRO` (coalesced receives).
    pub gro: bool,
}

impl Default for UdpConfig {
    fn default() -> Self {
        Self {
            bind: IpAddr::V6(Ipv6Addr::UNSPECIFIED),
            port: 0,
            buffer_bytes: DEFAULT_SOCKET_BUFFER,
            fwmark: None,
            gro: true,
        }
    }
}

/// What a socket ended up with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UdpInfo {
    /// Socket family.
    pub family: Family,
    /// An `AF_INET6` socket with `IPV6_V6ONLY` off (reaches IPv4 peers too).
    pub dual_stack: bool,
    /// Bound local address.
    pub local: SocketAddr,
    /// Effective receive buffer (as the kernel reports it, i.e. doubled).
    pub rcvbuf: usize,
    /// Effective send buffer (as the kernel reports it).
    pub sndbuf: usize,
    /// Whether the `*BUFFORCE` options were accepted.
    pub buffers_forced: bool,
    /// `UDP_GRO` accepted.
    pub gro: bool,
    /// `UDP_SEGMENT` known to the kernel (GSO may still be refused per device, see `EIO`).
    pub gso: bool,
    /// fwmark set, if any.
    pub fwmark: Option<u32>,
}

/// A nonblocking UDP socket of one shard.
#[derive(Debug)]
pub struct UdpSocket {
    fd: OwnedFd,
    info: UdpInfo,
    gso_enabled: AtomicBool,
    gso_fallbacks: AtomicU64,
    /// Largest GSO segment the route took (`usize::MAX` until a send was refused for size).
    gso_seg_limit: AtomicUsize,
}

impl AsRawFd for UdpSocket {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

impl AsFd for UdpSocket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

fn new_socket(family: libc::c_int) -> io::Result<OwnedFd> {
    // SAFETY: plain syscall without pointer arguments.
    let fd = cvt(unsafe {
        libc::socket(
            family,
            libc::SOCK_DGRAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            libc::IPPROTO_UDP,
        )
    })?;
    // SAFETY: `fd` was just returned by socket() and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn set_buffer(fd: RawFd, force: libc::c_int, plain: libc::c_int, bytes: usize) -> io::Result<bool> {
    let bytes = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
    if setsockopt(fd, libc::SOL_SOCKET, force, bytes).is_ok() {
        return Ok(true);
    }
    setsockopt(fd, libc::SOL_SOCKET, plain, bytes).map(|()| false)
}

fn local_addr(fd: RawFd) -> io::Result<SocketAddr> {
    let mut addr = RawSockAddr::new();
    let mut len = std::mem::size_of::<RawSockAddr>() as libc::socklen_t;
    // SAFETY: `addr` is writable storage of `len` bytes, large enough for any inet address.
    cvt(unsafe { libc::getsockname(fd, addr.as_mut_ptr(), &mut len) })?;
    addr.decode(len)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "unexpected local address"))
}

impl UdpSocket {
    /// Creates, configures and binds one socket (see [`UdpConfig`]).
    pub fn bind(cfg: &UdpConfig) -> Result<Self, UdpError> {
        let (fd, family, bind) = match cfg.bind {
            IpAddr::V6(v6) => match new_socket(libc::AF_INET6) {
                Ok(fd) => (fd, Family::V6, IpAddr::V6(v6)),
                Err(e) if v6.is_unspecified() && e.raw_os_error() == Some(libc::EAFNOSUPPORT) => {
                    let fd = new_socket(libc::AF_INET).map_err(setup_err("socket(AF_INET)"))?;
                    (fd, Family::V4, IpAddr::V4(Ipv4Addr::UNSPECIFIED))
                }
                Err(e) => return Err(setup_err("socket(AF_INET6)")(e)),
            },
            IpAddr::V4(v4) => (
                new_socket(libc::AF_INET).map_err(setup_err("socket(AF_INET)"))?,
                Family::V4,
                IpAddr::V4(v4),
            ),
        };
        let raw = fd.as_raw_fd();
        let mut dual_stack = false;
        if family == Family::V6 {
            setsockopt(raw, libc::IPPROTO_IPV6, libc::IPV6_V6ONLY, 0 as libc::c_int)
                .map_err(setup_err("IPV6_V6ONLY=0"))?;
            dual_stack = true;
        }
        setsockopt(raw, libc::SOL_SOCKET, libc::SO_REUSEPORT, 1 as libc::c_int)
            .map_err(setup_err("SO_REUSEPORT"))?;
        let rcv_forced = set_buffer(raw, libc::SO_RCVBUFFORCE, libc::SO_RCVBUF, cfg.buffer_bytes)
            .map_err(setup_err("SO_RCVBUF"))?;
        let snd_forced = set_buffer(raw, libc::SO_SNDBUFFORCE, libc::SO_SNDBUF, cfg.buffer_bytes)
            .map_err(setup_err("SO_SNDBUF"))?;
        // Outer datagrams larger than the path MTU are fragmented rather than refused: no DF
        // (IPv4; on a dual-stack socket this covers v4-mapped peers too), and IPv6 fragments at
        // the sender. Best effort: an old kernel without the option keeps its default.
        let _ = setsockopt(
            raw,
            libc::IPPROTO_IP,
            libc::IP_MTU_DISCOVER,
            libc::IP_PMTUDISC_DONT,
        );
        if family == Family::V6 {
            let _ = setsockopt(
                raw,
                libc::IPPROTO_IPV6,
                libc::IPV6_MTU_DISCOVER,
                libc::IPV6_PMTUDISC_DONT,
            );
        }
        if let Some(mark) = cfg.fwmark {
            setsockopt(raw, libc::SOL_SOCKET, libc::SO_MARK, mark).map_err(setup_err("SO_MARK"))?;
        }

        let mut addr = RawSockAddr::new();
        let len = addr
            .encode(SocketAddr::new(bind, cfg.port), family)
            .map_err(setup_err("bind address"))?;
        // SAFETY: `addr` holds an initialised sockaddr of `len` bytes.
        cvt(unsafe { libc::bind(raw, addr.as_ptr(), len) }).map_err(setup_err("bind"))?;

        let gro =
            cfg.gro && setsockopt(raw, libc::SOL_UDP, libc::UDP_GRO, 1 as libc::c_int).is_ok();
        // GSO probe: a kernel with UDP_SEGMENT reports the socket's default segment size (0);
        // writing the default back checks the setter without changing behaviour.
        let gso = getsockopt_int(raw, libc::SOL_UDP, libc::UDP_SEGMENT).is_ok()
            && setsockopt(raw, libc::SOL_UDP, libc::UDP_SEGMENT, 0 as libc::c_int).is_ok();

        let rcvbuf = getsockopt_int(raw, libc::SOL_SOCKET, libc::SO_RCVBUF)
            .map_err(setup_err("getsockopt(SO_RCVBUF)"))?;
        let sndbuf = getsockopt_int(raw, libc::SOL_SOCKET, libc::SO_SNDBUF)
            .map_err(setup_err("getsockopt(SO_SNDBUF)"))?;
        let local = local_addr(raw).map_err(setup_err("getsockname"))?;

        Ok(Self {
            fd,
            info: UdpInfo {
                family,
                dual_stack,
                local,
                rcvbuf: usize::try_from(rcvbuf).unwrap_or(0),
                sndbuf: usize::try_from(sndbuf).unwrap_or(0),
                buffers_forced: rcv_forced && snd_forced,
                gro,
                gso,
                fwmark: cfg.fwmark,
            },
            gso_enabled: AtomicBool::new(gso),
            gso_fallbacks: AtomicU64::new(0),
            gso_seg_limit: AtomicUsize::new(usize::MAX),
        })
    }

    /// Sets `SO_MARK` on the live socket (0 clears it; needs `CAP_NET_ADMIN`).
    pub fn set_fwmark(&self, mark: u32) -> io::Result<()> {
        setsockopt(self.fd.as_raw_fd(), libc::SOL_SOCKET, libc::SO_MARK, mark)
    }

    /// The socket's current `SO_MARK` (0 = none).
    pub fn fwmark(&self) -> io::Result<u32> {
        getsockopt_int(self.fd.as_raw_fd(), libc::SOL_SOCKET, libc::SO_MARK).map(|v| v as u32)
    }

    /// Binds `n` sockets to the same port with `SO_REUSEPORT`, one per shard. With `port` 0 the
    /// first socket picks the port and the others join it. The kernel then steers each remote
    /// 4-tuple to one socket.
    pub fn bind_shards(cfg: &UdpConfig, n: usize) -> Result<Vec<Self>, UdpError> {
        let mut out = Vec::with_capacity(n);
        if n == 0 {
            return Ok(out);
        }
        let first = Self::bind(cfg)?;
        let cfg = UdpConfig {
            port: first.info.local.port(),
            bind: first.info.local.ip(),
            ..cfg.clone()
        };
        out.push(first);
        for _ in 1..n {
            out.push(Self::bind(&cfg)?);
        }
        Ok(out)
    }

    /// What the socket was granted.
    pub fn info(&self) -> &UdpInfo {
        &self.info
    }

    /// Bound local address.
    pub fn local_addr(&self) -> SocketAddr {
        self.info.local
    }

    /// Socket family.
    pub fn family(&self) -> Family {
        self.info.family
    }

    /// Whether GSO sends are (still) used on this socket.
    pub fn gso_enabled(&self) -> bool {
        self.gso_enabled.load(Ordering::Relaxed)
    }

    /// How many GSO sends the kernel refused with `EIO` (each resent as single datagrams). GSO
    /// is off after the first, so [`UdpSocket::send_segments`] counts at most one; GSO sends
    /// already in flight on io_uring may add more through [`UdpSocket::note_send_error`].
    pub fn gso_fallbacks(&self) -> u64 {
        self.gso_fallbacks.load(Ordering::Relaxed)
    }

    /// Turns GSO off for this socket (e.g. by configuration).
    pub fn disable_gso(&self) {
        self.gso_enabled.store(false, Ordering::Relaxed);
    }

    /// Feeds the result of a GSO send made elsewhere (an io_uring `SENDMSG` CQE, as a negative
    /// errno or an `io::Error`) to the fallback logic. Returns true when the send was refused
    /// because of GSO (`EIO`): GSO is now disabled and counted, and the caller must resend the
    /// segments one by one.
    pub fn note_send_error(&self, errno: i32) -> bool {
        if errno.abs() == libc::EIO {
            self.gso_enabled.store(false, Ordering::Relaxed);
            self.gso_fallbacks.fetch_add(1, Ordering::Relaxed);
            true
        } else {
            false
        }
    }

    /// Whether a GSO send of `seg`-byte segments may be tried: GSO is on and no send of
    /// segments this large was refused for size before.
    #[inline]
    pub fn gso_for(&self, seg: usize) -> bool {
        self.gso_enabled() && seg <= self.gso_seg_limit.load(Ordering::Relaxed)
    }

    /// Like [`UdpSocket::note_send_error`] for a GSO send of `seg`-byte segments, and also
    /// handles a refusal for size (`EINVAL`/`EMSGSIZE`: a segment plus headers exceeds the route
    /// MTU): segments of `seg` bytes and more no longer use GSO on this socket. Returns true
    /// when the caller must resend the segments one by one.
    pub fn note_gso_send_error(&self, errno: i32, seg: usize) -> bool {
        let e = errno.abs();
        if e == libc::EIO {
            return self.note_send_error(e);
        }
        if (e == libc::EINVAL || e == libc::EMSGSIZE) && seg > 0 {
            self.gso_seg_limit.fetch_min(seg - 1, Ordering::Relaxed);
            self.gso_fallbacks.fetch_add(1, Ordering::Relaxed);
            return true;
        }
        false
    }

    /// Sends one datagram (`sendto`). IPv4 destinations are v4-mapped on an IPv6 socket.
    pub fn send_to(&self, buf: &[u8], dst: SocketAddr) -> io::Result<usize> {
        send_to(self.as_raw_fd(), self.info.family, buf, dst)
    }

    /// Sends `buf` as segments of `seg_size` bytes in one `sendmsg` with a `UDP_SEGMENT` cmsg
    /// (the last segment may be shorter). No fallback: errors (including `EIO`) are returned as
    /// they are. `InvalidInput` if `seg_size` is 0 or the kernel limits (module docs) are
    /// exceeded.
    pub fn send_gso(&self, buf: &[u8], seg_size: u16, dst: SocketAddr) -> io::Result<usize> {
        check_gso(buf.len(), seg_size, &dst)?;
        let mut hdr = SendHeader::new();
        hdr.prepare(buf, dst, self.info.family, Some(seg_size))?;
        // SAFETY: `hdr` was prepared from `buf` just above; both outlive the call.
        let n = unsafe { libc::sendmsg(self.as_raw_fd(), hdr.msghdr_ptr(), 0) };
        cvt_size(n)
    }

    /// Sends `buf` as datagrams of `seg_size` bytes (the last may be shorter): one GSO send while
    /// GSO works, else one `sendto` per segment. A GSO send refused with `EIO` disables GSO on the
    /// socket, counts a fallback and resends the same bytes as single datagrams.
    ///
    /// Returns the number of datagrams sent. If a single-datagram send fails after some went out
    /// (e.g. `EAGAIN`), the count so far is returned; the caller resends from
    /// `count * seg_size`. An empty `buf` sends one empty datagram.
    pub fn send_segments(&self, buf: &[u8], seg_size: u16, dst: SocketAddr) -> io::Result<usize> {
        if seg_size == 0 {
            return Err(invalid("segment size 0"));
        }
        let seg = usize::from(seg_size);
        let count = buf.len().div_ceil(seg).max(1);
        if count > 1 && self.gso_for(seg) {
            match self.send_gso(buf, seg_size, dst) {
                Ok(_) => return Ok(count),
                Err(e)
                    if e.raw_os_error()
                        .is_some_and(|c| self.note_gso_send_error(c, seg)) => {}
                Err(e) => return Err(e),
            }
        }
        if buf.is_empty() {
            return self.send_to(buf, dst).map(|_| 1);
        }
        let mut sent = 0;
        for chunk in buf.chunks(seg) {
            match self.send_to(chunk, dst) {
                Ok(_) => sent += 1,
                Err(e) if sent == 0 => return Err(e),
                Err(_) => break,
            }
        }
        Ok(sent)
    }

    /// Receives up to `min(hdrs.capacity(), bufs, out.len())` datagrams with one `recvmmsg`
    /// into the caller's buffers; `out[i]` describes the datagram in the `i`-th buffer. Returns
    /// how many arrived; `WouldBlock` when none are waiting.
    pub fn recv_batch<'a>(
        &self,
        hdrs: &mut RecvHeaders,
        bufs: impl IntoIterator<Item = &'a mut [u8]>,
        out: &mut [RecvMeta],
    ) -> io::Result<usize> {
        recvmmsg(self.as_raw_fd(), hdrs, bufs, out)
    }
}

fn invalid(msg: &'static str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, msg)
}

fn check_gso(len: usize, seg_size: u16, dst: &SocketAddr) -> io::Result<()> {
    if seg_size == 0 {
        return Err(invalid("GSO segment size 0"));
    }
    if len > gso_max_bytes(dst) {
        return Err(invalid("GSO send larger than one UDP datagram may be"));
    }
    if len.div_ceil(usize::from(seg_size)) > GSO_MAX_SEGMENTS {
        return Err(invalid("GSO send has more than GSO_MAX_SEGMENTS segments"));
    }
    Ok(())
}

/// MTU of the route to `dst` as the kernel sees it now (`IP_MTU`/`IPV6_MTU` of a connected
/// throw-away UDP socket): the largest outer IP datagram that leaves without fragmentation.
pub fn route_mtu(dst: SocketAddr) -> io::Result<usize> {
    let (family, raw_family) = match dst {
        SocketAddr::V4(_) => (Family::V4, libc::AF_INET),
        SocketAddr::V6(_) => (Family::V6, libc::AF_INET6),
    };
    let fd = new_socket(raw_family)?;
    let mut addr = RawSockAddr::new();
    let len = addr.encode(dst, family)?;
    // SAFETY: `addr` holds an initialised sockaddr of `len` bytes; connect on UDP sends nothing.
    cvt(unsafe { libc::connect(fd.as_raw_fd(), addr.as_ptr(), len) })?;
    let mtu = match family {
        Family::V4 => getsockopt_int(fd.as_raw_fd(), libc::IPPROTO_IP, libc::IP_MTU)?,
        Family::V6 => getsockopt_int(fd.as_raw_fd(), libc::IPPROTO_IPV6, libc::IPV6_MTU)?,
    };
    usize::try_from(mtu).map_err(|_| io::Error::other("negative route MTU"))
}

/// `sendto` on a raw UDP socket fd of `family`.
pub fn send_to(fd: RawFd, family: Family, buf: &[u8], dst: SocketAddr) -> io::Result<usize> {
    let mut addr = RawSockAddr::new();
    let len = addr.encode(dst, family)?;
    // SAFETY: `buf` is valid for reads of its length and `addr` holds `len` initialised bytes.
    let n = unsafe { libc::sendto(fd, buf.as_ptr().cast(), buf.len(), 0, addr.as_ptr(), len) };
    cvt_size(n)
}

// ---- socket addresses ----------------------------------------------------------------------

/// Storage for an IPv4 or IPv6 socket address, as the kernel reads and writes it.
#[repr(C)]
#[derive(Clone, Copy)]
pub union RawSockAddr {
    v4: libc::sockaddr_in,
    v6: libc::sockaddr_in6,
}

impl std::fmt::Debug for RawSockAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RawSockAddr")
    }
}

impl Default for RawSockAddr {
    fn default() -> Self {
        Self::new()
    }
}

impl RawSockAddr {
    /// All-zero storage.
    pub const fn new() -> Self {
        Self {
            v6: libc::sockaddr_in6 {
                sin6_family: 0,
                sin6_port: 0,
                sin6_flowinfo: 0,
                sin6_addr: libc::in6_addr { s6_addr: [0; 16] },
                sin6_scope_id: 0,
            },
        }
    }

    /// Writes `addr` for a socket of `family` (IPv4 becomes v4-mapped on an IPv6 socket) and
    /// returns the length to pass to the kernel. An IPv6 address on an IPv4 socket is
    /// `EAFNOSUPPORT`.
    pub fn encode(&mut self, addr: SocketAddr, family: Family) -> io::Result<libc::socklen_t> {
        match (family, addr) {
            (Family::V4, SocketAddr::V4(a)) => {
                self.v4 = libc::sockaddr_in {
                    sin_family: libc::AF_INET as libc::sa_family_t,
                    sin_port: a.port().to_be(),
                    sin_addr: libc::in_addr {
                        s_addr: u32::from_ne_bytes(a.ip().octets()),
                    },
                    sin_zero: [0; 8],
                };
                Ok(std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t)
            }
            (Family::V4, SocketAddr::V6(a)) => match a.ip().to_ipv4_mapped() {
                Some(v4) => self.encode(SocketAddr::V4(SocketAddrV4::new(v4, a.port())), family),
                None => Err(io::Error::from_raw_os_error(libc::EAFNOSUPPORT)),
            },
            (Family::V6, a) => {
                let (ip, flow, scope) = match a {
                    SocketAddr::V4(a) => (a.ip().to_ipv6_mapped(), 0, 0),
                    SocketAddr::V6(a) => (*a.ip(), a.flowinfo(), a.scope_id()),
                };
                self.v6 = libc::sockaddr_in6 {
                    sin6_family: libc::AF_INET6 as libc::sa_family_t,
                    sin6_port: a.port().to_be(),
                    sin6_flowinfo: flow.to_be(),
                    sin6_addr: libc::in6_addr {
                        s6_addr: ip.octets(),
                    },
                    sin6_scope_id: scope,
                };
                Ok(std::mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t)
            }
        }
    }

    /// Reads back the first `len` bytes as a socket address (v4-mapped → IPv4).
    pub fn decode(&self, len: libc::socklen_t) -> Option<SocketAddr> {
        let len = (len as usize).min(std::mem::size_of::<Self>());
        // SAFETY: `self` is `size_of::<Self>()` initialised bytes (every constructor writes the
        // whole union through its largest member or copies an initialised value) and `len` is
        // clamped to that size.
        let bytes = unsafe { std::slice::from_raw_parts((self as *const Self).cast::<u8>(), len) };
        sockaddr_from_bytes(bytes)
    }

    /// Pointer for the kernel.
    pub fn as_ptr(&self) -> *const libc::sockaddr {
        (self as *const Self).cast()
    }

    /// Mutable pointer for the kernel.
    pub fn as_mut_ptr(&mut self) -> *mut libc::sockaddr {
        (self as *mut Self).cast()
    }
}

/// Parses a `sockaddr_in`/`sockaddr_in6` from raw bytes (e.g. the name area of an io_uring
/// `recvmsg_out` buffer). v4-mapped IPv6 addresses come back as IPv4. `None` for anything else.
pub fn sockaddr_from_bytes(b: &[u8]) -> Option<SocketAddr> {
    let family = i32::from(u16::from_ne_bytes(b.get(0..2)?.try_into().ok()?));
    let port = u16::from_be_bytes(b.get(2..4)?.try_into().ok()?);
    match family {
        libc::AF_INET => {
            let ip: [u8; 4] = b.get(4..8)?.try_into().ok()?;
            Some(SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::from(ip), port)))
        }
        libc::AF_INET6 => {
            let flow = u32::from_be_bytes(b.get(4..8)?.try_into().ok()?);
            let ip: [u8; 16] = b.get(8..24)?.try_into().ok()?;
            let scope = u32::from_ne_bytes(b.get(24..28)?.try_into().ok()?);
            let ip = Ipv6Addr::from(ip);
            Some(match ip.to_ipv4_mapped() {
                Some(v4) => SocketAddr::V4(SocketAddrV4::new(v4, port)),
                None => SocketAddr::V6(SocketAddrV6::new(ip, port, flow, scope)),
            })
        }
        _ => None,
    }
}

// ---- control messages ----------------------------------------------------------------------

const CMSG_HDR: usize = std::mem::size_of::<libc::cmsghdr>();
const CMSG_ALIGN: usize = std::mem::size_of::<usize>();

const fn cmsg_align(n: usize) -> usize {
    (n + CMSG_ALIGN - 1) & !(CMSG_ALIGN - 1)
}

/// A `UDP_SEGMENT` control message laid out exactly as `CMSG_SPACE(sizeof(u16))` bytes.
#[repr(C)]
#[derive(Clone, Copy)]
struct SegmentCmsg {
    hdr: libc::cmsghdr,
    segment: u16,
    _pad: [u8; cmsg_align(2) - 2],
}

// SAFETY: CMSG_SPACE/CMSG_LEN are pure arithmetic.
const SEGMENT_CMSG_SPACE: usize = unsafe { libc::CMSG_SPACE(2) } as usize;
// SAFETY: as above.
const SEGMENT_CMSG_LEN: usize = unsafe { libc::CMSG_LEN(2) } as usize;
const _: () = assert!(std::mem::size_of::<SegmentCmsg>() == SEGMENT_CMSG_SPACE);
const _: () = assert!(cmsg_align(CMSG_HDR) == CMSG_HDR);

/// Iterates over the control messages in a received control buffer, as
/// `(level, type, data)`; stops at the first malformed header. Works on any byte slice (no
/// alignment needed), so it serves both `recvmmsg` buffers and io_uring provided buffers.
#[derive(Debug, Clone)]
pub struct CmsgIter<'a> {
    rest: &'a [u8],
}

impl<'a> CmsgIter<'a> {
    /// Control messages in `control` (the first `msg_controllen` bytes).
    pub fn new(control: &'a [u8]) -> Self {
        Self { rest: control }
    }
}

impl<'a> Iterator for CmsgIter<'a> {
    type Item = (i32, i32, &'a [u8]);
    fn next(&mut self) -> Option<Self::Item> {
        let b = self.rest;
        let len = usize::from_ne_bytes(b.get(0..CMSG_ALIGN)?.try_into().ok()?);
        let level = i32::from_ne_bytes(b.get(CMSG_ALIGN..CMSG_ALIGN + 4)?.try_into().ok()?);
        let ty = i32::from_ne_bytes(b.get(CMSG_ALIGN + 4..CMSG_ALIGN + 8)?.try_into().ok()?);
        if len < CMSG_HDR || len > b.len() {
            self.rest = &[];
            return None;
        }
        let data = &b[CMSG_HDR..len];
        self.rest = b.get(cmsg_align(len)..).unwrap_or(&[]);
        Some((level, ty, data))
    }
}

/// The `UDP_GRO` segment size in a received control buffer, if the datagram was coalesced.
pub fn gro_segment_size(control: &[u8]) -> Option<u16> {
    CmsgIter::new(control).find_map(|(level, ty, data)| {
        if level == libc::SOL_UDP && ty == libc::UDP_GRO {
            let v = i32::from_ne_bytes(data.get(0..4)?.try_into().ok()?);
            u16::try_from(v).ok().filter(|&s| s > 0)
        } else {
            None
        }
    })
}

/// A ready-to-send `msghdr` with its iovec, destination and optional `UDP_SEGMENT` cmsg, all in
/// one caller-owned value (no allocation). Used for a blocking-free `sendmsg` and, with a stable
/// address, for an io_uring `SENDMSG`.
///
/// After [`SendHeader::prepare`] the header points into `self` and into the payload buffer: it
/// is valid while `self` is not moved or dropped and the payload is alive and unchanged.
pub struct SendHeader {
    hdr: libc::msghdr,
    iov: libc::iovec,
    addr: RawSockAddr,
    cmsg: SegmentCmsg,
}

impl std::fmt::Debug for SendHeader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SendHeader")
            .field("len", &self.iov.iov_len)
            .field(
                "segment",
                &(self.hdr.msg_controllen > 0).then_some(self.cmsg.segment),
            )
            .finish()
    }
}

// SAFETY: the raw pointers inside only ever point into `self` or into a payload buffer the
// caller keeps alive per the documented contract; moving the value to another thread does not
// invalidate that contract (it is re-prepared before each use anyway).
unsafe impl Send for SendHeader {}

impl Default for SendHeader {
    fn default() -> Self {
        Self::new()
    }
}

impl SendHeader {
    /// An empty header.
    pub fn new() -> Self {
        Self {
            // SAFETY: msghdr is plain old data; all-zero (null pointers, zero lengths) is valid.
            hdr: unsafe { std::mem::zeroed() },
            iov: libc::iovec {
                iov_base: std::ptr::null_mut(),
                iov_len: 0,
            },
            addr: RawSockAddr::new(),
            // SAFETY: cmsghdr is plain old data; all-zero is valid.
            cmsg: unsafe { std::mem::zeroed() },
        }
    }

    /// Fills the header to send `buf` to `dst` from a socket of `family`, with a `UDP_SEGMENT`
    /// cmsg when `segment` is given. Returns `EAFNOSUPPORT` for an IPv6 destination on an IPv4
    /// socket. The pointers stored refer to `self` and `buf` (see the type's docs).
    pub fn prepare(
        &mut self,
        buf: &[u8],
        dst: SocketAddr,
        family: Family,
        segment: Option<u16>,
    ) -> io::Result<()> {
        let name_len = self.addr.encode(dst, family)?;
        self.iov = libc::iovec {
            iov_base: buf.as_ptr().cast_mut().cast(),
            iov_len: buf.len(),
        };
        self.hdr.msg_name = self.addr.as_mut_ptr().cast();
        self.hdr.msg_namelen = name_len;
        self.hdr.msg_iov = &mut self.iov;
        self.hdr.msg_iovlen = 1;
        self.hdr.msg_flags = 0;
        match segment {
            Some(seg) => {
                self.cmsg.hdr.cmsg_len = SEGMENT_CMSG_LEN as _;
                self.cmsg.hdr.cmsg_level = libc::SOL_UDP;
                self.cmsg.hdr.cmsg_type = libc::UDP_SEGMENT;
                self.cmsg.segment = seg;
                self.hdr.msg_control = (&mut self.cmsg as *mut SegmentCmsg).cast();
                self.hdr.msg_controllen = SEGMENT_CMSG_SPACE as _;
            }
            None => {
                self.hdr.msg_control = std::ptr::null_mut();
                self.hdr.msg_controllen = 0;
            }
        }
        Ok(())
    }

    /// The `msghdr` for `sendmsg`/io_uring `SENDMSG`; valid as described on the type.
    pub fn msghdr_ptr(&self) -> *const libc::msghdr {
        &self.hdr
    }

    /// Payload length of the prepared message.
    pub fn len(&self) -> usize {
        self.iov.iov_len
    }

    /// Whether the prepared payload is empty.
    pub fn is_empty(&self) -> bool {
        self.iov.iov_len == 0
    }
}

// ---- recvmmsg ------------------------------------------------------------------------------

/// Metadata of one received datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecvMeta {
    /// Bytes written into the buffer.
    pub len: usize,
    /// Sender (v4-mapped addresses normalised to IPv4). The unspecified IPv4 address with port 0
    /// if the kernel reported no parsable address (it always does for UDP).
    pub src: SocketAddr,
    /// `UDP_GRO` segment size when several datagrams were coalesced into this buffer.
    pub gro_segment: Option<u16>,
    /// The datagram did not fit the buffer (`MSG_TRUNC`).
    pub truncated: bool,
}

impl Default for RecvMeta {
    fn default() -> Self {
        Self {
            len: 0,
            src: SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0)),
            gro_segment: None,
            truncated: false,
        }
    }
}

impl RecvMeta {
    /// Size of each datagram in the buffer (all but the last, which may be shorter).
    pub fn segment_size(&self) -> usize {
        match self.gro_segment {
            Some(s) => usize::from(s),
            None => self.len.max(1),
        }
    }
}

#[repr(C, align(8))]
#[derive(Clone, Copy)]
struct RecvCmsgBuf([u8; RECV_CMSG_SPACE]);

/// Reusable `mmsghdr`/iovec/address/cmsg arrays for [`recvmmsg`]; allocated once per shard.
pub struct RecvHeaders {
    msgs: Box<[libc::mmsghdr]>,
    iovs: Box<[libc::iovec]>,
    addrs: Box<[RawSockAddr]>,
    ctrls: Box<[RecvCmsgBuf]>,
}

impl std::fmt::Debug for RecvHeaders {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecvHeaders")
            .field("capacity", &self.msgs.len())
            .finish()
    }
}

// SAFETY: the raw pointers in `msgs`/`iovs` are rewritten at the start of every `recvmmsg`
// call and are not dereferenced otherwise; the arrays are owned.
unsafe impl Send for RecvHeaders {}

impl RecvHeaders {
    /// Headers for batches of up to `capacity` datagrams.
    pub fn new(capacity: usize) -> Self {
        Self {
            // SAFETY: mmsghdr is plain old data; all-zero is valid.
            msgs: (0..capacity)
                .map(|_| unsafe { std::mem::zeroed() })
                .collect(),
            iovs: (0..capacity)
                .map(|_| libc::iovec {
                    iov_base: std::ptr::null_mut(),
                    iov_len: 0,
                })
                .collect(),
            addrs: vec![RawSockAddr::new(); capacity].into_boxed_slice(),
            ctrls: vec![RecvCmsgBuf([0; RECV_CMSG_SPACE]); capacity].into_boxed_slice(),
        }
    }

    /// Largest batch.
    pub fn capacity(&self) -> usize {
        self.msgs.len()
    }
}

/// One `recvmmsg` on `fd` into the caller's buffers (nonblocking: `WouldBlock` when nothing is
/// queued); see [`UdpSocket::recv_batch`].
pub fn recvmmsg<'a>(
    fd: RawFd,
    hdrs: &mut RecvHeaders,
    bufs: impl IntoIterator<Item = &'a mut [u8]>,
    out: &mut [RecvMeta],
) -> io::Result<usize> {
    let max = hdrs.capacity().min(out.len());
    let mut n = 0;
    for buf in bufs.into_iter().take(max) {
        hdrs.iovs[n] = libc::iovec {
            iov_base: buf.as_mut_ptr().cast(),
            iov_len: buf.len(),
        };
        n += 1;
    }
    if n == 0 {
        return Ok(0);
    }
    for i in 0..n {
        let m = &mut hdrs.msgs[i];
        m.msg_len = 0;
        m.msg_hdr.msg_name = hdrs.addrs[i].as_mut_ptr().cast();
        m.msg_hdr.msg_namelen = std::mem::size_of::<RawSockAddr>() as libc::socklen_t;
        m.msg_hdr.msg_iov = &mut hdrs.iovs[i];
        m.msg_hdr.msg_iovlen = 1;
        m.msg_hdr.msg_control = hdrs.ctrls[i].0.as_mut_ptr().cast();
        m.msg_hdr.msg_controllen = RECV_CMSG_SPACE as _;
        m.msg_hdr.msg_flags = 0;
    }
    // SAFETY: the first `n` headers point at live buffers: the caller's slices (borrowed for
    // this call) and `hdrs`' own arrays, each with its correct length; `n` ≤ the array length.
    let rc = unsafe {
        libc::recvmmsg(
            fd,
            hdrs.msgs.as_mut_ptr(),
            n as libc::c_uint,
            libc::MSG_DONTWAIT,
            std::ptr::null_mut(),
        )
    };
    let got = usize::try_from(cvt(rc)?).unwrap_or(0).min(n);
    for (i, meta) in out.iter_mut().enumerate().take(got) {
        let m = &hdrs.msgs[i];
        let ctrl_len = m.msg_hdr.msg_controllen.min(RECV_CMSG_SPACE);
        *meta = RecvMeta {
            len: m.msg_len as usize,
            src: hdrs.addrs[i]
                .decode(m.msg_hdr.msg_namelen)
                .unwrap_or_else(|| RecvMeta::default().src),
            gro_segment: gro_segment_size(&hdrs.ctrls[i].0[..ctrl_len]),
            truncated: m.msg_hdr.msg_flags & libc::MSG_TRUNC != 0,
        };
    }
    Ok(got)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sockaddr_round_trip_and_mapping() {
        let mut raw = RawSockAddr::new();
        let v4: SocketAddr = "198.18.1.2:51820".parse().unwrap();
        let len = raw.encode(v4, Family::V6).unwrap();
        assert_eq!(len as usize, std::mem::size_of::<libc::sockaddr_in6>());
        // On the wire of the v6 socket it is ::ffff:198.18.1.2 ...
        let bytes = {
            let mut b = [0u8; 28];
            b.copy_from_slice(
                // SAFETY: test-only view of the 28 initialised bytes of the v6 member.
                unsafe { std::slice::from_raw_parts((&raw as *const RawSockAddr).cast(), 28) },
            );
            b
        };
        assert_eq!(
            &bytes[8..24],
            &"::ffff:198.18.1.2".parse::<Ipv6Addr>().unwrap().octets()
        );
        // ... and decodes back to plain IPv4.
        assert_eq!(raw.decode(len), Some(v4));
        let len = raw.encode(v4, Family::V4).unwrap();
        assert_eq!(len as usize, std::mem::size_of::<libc::sockaddr_in>());
        assert_eq!(raw.decode(len), Some(v4));
        let v6: SocketAddr = "[fd00::1]:9".parse().unwrap();
        let len = raw.encode(v6, Family::V6).unwrap();
        assert_eq!(raw.decode(len), Some(v6));
        assert_eq!(
            raw.encode(v6, Family::V4).unwrap_err().raw_os_error(),
            Some(libc::EAFNOSUPPORT)
        );
        // Garbage and short inputs never panic.
        assert_eq!(sockaddr_from_bytes(&[]), None);
        assert_eq!(sockaddr_from_bytes(&[2, 0, 0]), None);
        assert_eq!(sockaddr_from_bytes(&[0xff; 28]), None);
        assert_eq!(raw.decode(3), None);
    }

    #[test]
    fn cmsg_iter_is_bounded() {
        // A well-formed UDP_GRO cmsg followed by garbage.
        let mut b = vec![0u8; 64];
        b[0..8].copy_from_slice(&20usize.to_ne_bytes());
        b[8..12].copy_from_slice(&libc::SOL_UDP.to_ne_bytes());
        b[12..16].copy_from_slice(&libc::UDP_GRO.to_ne_bytes());
        b[16..20].copy_from_slice(&1200i32.to_ne_bytes());
        b[24..32].copy_from_slice(&usize::MAX.to_ne_bytes());
        assert_eq!(gro_segment_size(&b), Some(1200));
        assert_eq!(CmsgIter::new(&b).count(), 1);
        // Truncated data, zero and oversize lengths.
        assert_eq!(gro_segment_size(&b[..18]), None);
        b[0..8].copy_from_slice(&0usize.to_ne_bytes());
        assert_eq!(gro_segment_size(&b), None);
        assert_eq!(gro_segment_size(&[]), None);
        for n in 0..64 {
            let junk: Vec<u8> = (0..n).map(|i| (i * 37 + 11) as u8).collect();
            let _ = CmsgIter::new(&junk).count();
        }
    }

    #[test]
    fn send_header_layout() {
        let mut h = SendHeader::new();
        let buf = [7u8; 3000];
        let dst: SocketAddr = "127.0.0.1:9".parse().unwrap();
        h.prepare(&buf, dst, Family::V6, Some(1200)).unwrap();
        // SAFETY: the header was just prepared and `buf`/`h` are alive.
        let m = unsafe { &*h.msghdr_ptr() };
        assert_eq!(m.msg_controllen, SEGMENT_CMSG_SPACE);
        // SAFETY: msg_control points at `h.cmsg`, SEGMENT_CMSG_SPACE initialised bytes.
        let ctrl =
            unsafe { std::slice::from_raw_parts(m.msg_control as *const u8, m.msg_controllen) };
        let mut it = CmsgIter::new(ctrl);
        let (level, ty, data) = it.next().unwrap();
        assert_eq!((level, ty), (libc::SOL_UDP, libc::UDP_SEGMENT));
        assert_eq!(data, &1200u16.to_ne_bytes());
        assert!(it.next().is_none());
        assert_eq!(h.len(), 3000);
        h.prepare(&buf, dst, Family::V6, None).unwrap();
        // SAFETY: as above.
        let m = unsafe { &*h.msghdr_ptr() };
        assert_eq!(m.msg_controllen, 0);
        assert!(m.msg_control.is_null());
    }

    #[test]
    fn gso_limits() {
        let v4: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let mapped: SocketAddr = "[::ffff:127.0.0.1]:1".parse().unwrap();
        let v6: SocketAddr = "[::1]:1".parse().unwrap();
        assert_eq!(gso_max_bytes(&v4), 65507);
        assert_eq!(gso_max_bytes(&mapped), 65507);
        assert_eq!(gso_max_bytes(&v6), 65527);
        assert_eq!(gso_max_segments(1400, &v4), 46);
        assert_eq!(gso_max_segments(100, &v4), 64);
        assert_eq!(gso_max_segments(0, &v4), 0);
        assert!(check_gso(65 * 100, 100, &v4).is_err());
        assert!(check_gso(64 * 100, 100, &v4).is_ok());
        assert!(check_gso(65508, 1400, &v4).is_err());
        assert!(check_gso(65508, 1400, &v6).is_ok());
    }
}

#[cfg(test)]
mod kernel_limit_tests {
    use super::*;

    /// Raw GSO sendmsg without our own limit checks, to see what the kernel says.
    fn raw_gso(tx: &UdpSocket, len: usize, seg: u16, dst: SocketAddr) -> io::Result<usize> {
        let buf = vec![0x5au8; len];
        let mut hdr = SendHeader::new();
        hdr.prepare(&buf, dst, tx.family(), Some(seg))?;
        // SAFETY: `hdr` was prepared from `buf`; both outlive the call.
        cvt_size(unsafe { libc::sendmsg(tx.as_raw_fd(), hdr.msghdr_ptr(), 0) })
    }

    #[test]
    fn gso_limit_consts_match_the_kernel() {
        let rx = UdpSocket::bind(&UdpConfig::default()).unwrap();
        let tx = UdpSocket::bind(&UdpConfig::default()).unwrap();
        let port = rx.local_addr().port();
        let v4: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let v6: SocketAddr = format!("[::1]:{port}").parse().unwrap();
        let code = |r: io::Result<usize>| r.err().and_then(|e| e.raw_os_error());

        assert_eq!(
            raw_gso(&tx, GSO_MAX_BYTES_V4, 1400, v4).unwrap(),
            GSO_MAX_BYTES_V4
        );
        assert_eq!(
            code(raw_gso(&tx, GSO_MAX_BYTES_V4 + 1, 1400, v4)),
            Some(libc::EMSGSIZE)
        );
        assert_eq!(
            raw_gso(&tx, GSO_MAX_BYTES_V6, 1400, v6).unwrap(),
            GSO_MAX_BYTES_V6
        );
        assert_eq!(
            code(raw_gso(&tx, GSO_MAX_BYTES_V6 + 1, 1400, v6)),
            Some(libc::EMSGSIZE)
        );
        assert_eq!(raw_gso(&tx, GSO_MAX_SEGMENTS * 100, 100, v4).unwrap(), 6400);
        // Kernels differ: UDP_MAX_SEGMENTS is 64 on older trees and 128 on newer ones (6.18
        // here accepts 128). Either 65 fails, or 128 works; 129 never does.
        match raw_gso(&tx, (GSO_MAX_SEGMENTS + 1) * 100, 100, v4) {
            Err(e) => assert_eq!(e.raw_os_error(), Some(libc::EINVAL)),
            Ok(_) => assert_eq!(raw_gso(&tx, 128 * 100, 100, v4).unwrap(), 12800),
        }
        assert_eq!(code(raw_gso(&tx, 129 * 100, 100, v4)), Some(libc::EINVAL));
    }
}

#[cfg(test)]
mod eio_fallback_tests {
    use super::*;
    use std::time::{Duration, Instant};

    /// A nonblocking UDP-Lite socket on 127.0.0.1: the kernel refuses every GSO send on it with
    /// `EIO` (`udp_send_skb`: `is_udplite || dst_xfrm(...)`), the same refusal an IPsec route
    /// gives — a real kernel EIO without root, netns or ESP support.
    fn udplite() -> UdpSocket {
        // SAFETY: plain syscall without pointer arguments.
        let fd = cvt(unsafe {
            libc::socket(
                libc::AF_INET,
                libc::SOCK_DGRAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                libc::IPPROTO_UDPLITE,
            )
        })
        .expect("UDP-Lite socket");
        // SAFETY: `fd` was just created and is owned by nobody else.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let mut addr = RawSockAddr::new();
        let len = addr
            .encode("127.0.0.1:0".parse().unwrap(), Family::V4)
            .unwrap();
        // SAFETY: `addr` holds `len` initialised bytes.
        cvt(unsafe { libc::bind(fd.as_raw_fd(), addr.as_ptr(), len) }).unwrap();
        let local = local_addr(fd.as_raw_fd()).unwrap();
        UdpSocket {
            fd,
            info: UdpInfo {
                family: Family::V4,
                dual_stack: false,
                local,
                rcvbuf: 0,
                sndbuf: 0,
                buffers_forced: false,
                gro: false,
                gso: true,
                fwmark: None,
            },
            gso_enabled: AtomicBool::new(true),
            gso_seg_limit: AtomicUsize::new(usize::MAX),
            gso_fallbacks: AtomicU64::new(0),
        }
    }

    #[test]
    fn size_refusal_limits_gso_to_smaller_segments() {
        let tx = udplite();
        assert!(tx.gso_for(1452));
        assert!(!tx.note_gso_send_error(-libc::EAGAIN, 1452));
        assert!(!tx.note_gso_send_error(-libc::EINVAL, 0));
        assert!(tx.note_gso_send_error(-libc::EINVAL, 1452));
        assert!(!tx.gso_for(1452) && !tx.gso_for(1500));
        assert!(
            tx.gso_for(1451) && tx.gso_enabled(),
            "smaller segments keep GSO"
        );
        assert!(tx.note_gso_send_error(libc::EMSGSIZE, 1300));
        assert!(!tx.gso_for(1300) && tx.gso_for(1299));
        assert!(
            tx.note_gso_send_error(-libc::EINVAL, 1452),
            "a late CQE of a larger size still resends"
        );
        assert!(!tx.gso_for(1300), "the limit only goes down");
        assert_eq!(tx.gso_fallbacks(), 3);
        assert!(tx.note_gso_send_error(-libc::EIO, 100));
        assert!(!tx.gso_enabled() && !tx.gso_for(100));
    }

    #[test]
    fn kernel_eio_disables_gso_and_resends_singly() {
        let rx = udplite();
        let tx = udplite();
        let data: Vec<u8> = (0..12_500u32).map(|i| (i % 251) as u8).collect();
        let dst = rx.local_addr();
        let e = tx.send_gso(&data, 1200, dst).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EIO));
        assert!(tx.gso_enabled() && tx.gso_fallbacks() == 0);

        assert_eq!(tx.send_segments(&data, 1200, dst).unwrap(), 11);
        assert!(!tx.gso_enabled());
        assert_eq!(tx.gso_fallbacks(), 1);
        assert_eq!(tx.send_segments(&data, 1200, dst).unwrap(), 11);
        assert_eq!(tx.gso_fallbacks(), 1, "no second refusal once GSO is off");

        let mut hdrs = RecvHeaders::new(8);
        let mut bufs = vec![vec![0u8; 2048]; 8];
        let mut metas = [RecvMeta::default(); 8];
        let mut got = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(2);
        while got.len() < 2 * data.len() && Instant::now() < deadline {
            match rx.recv_batch(&mut hdrs, bufs.iter_mut().map(|b| &mut b[..]), &mut metas) {
                Ok(n) => {
                    for (m, b) in metas.iter().zip(&bufs).take(n) {
                        assert!(m.len <= 1200 && m.src == tx.local_addr());
                        got.extend_from_slice(&b[..m.len]);
                    }
                }
                Err(_) => std::thread::sleep(Duration::from_millis(1)),
            }
        }
        assert_eq!(got.len(), 2 * data.len());
        assert_eq!(&got[..data.len()], &data[..]);
        assert_eq!(&got[data.len()..], &data[..]);
        // The io_uring path reports a CQE result; only EIO counts as a GSO refusal.
        assert!(!tx.note_send_error(-libc::EAGAIN));
        assert!(tx.note_send_error(-libc::EIO));
        assert_eq!(tx.gso_fallbacks(), 2);
    }
}
