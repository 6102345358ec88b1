//! The only module with `unsafe`: TUN ioctls, `fcntl`, `poll` and the raw
//! netlink socket. Every function here is a thin, safe wrapper.
#![allow(unsafe_code)]

use std::ffi::CStr;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

/// `IFF_TUN`.
pub(crate) const IFF_TUN: i16 = 0x0001;
/// `IFF_MULTI_QUEUE`.
pub(crate) const IFF_MULTI_QUEUE: i16 = 0x0100;
/// `IFF_NO_PI`.
pub(crate) const IFF_NO_PI: i16 = 0x1000;
/// `IFF_VNET_HDR`.
pub(crate) const IFF_VNET_HDR: i16 = 0x4000;

/// `TUN_F_CSUM`.
pub(crate) const TUN_F_CSUM: u32 = 0x01;
/// `TUN_F_TSO4`.
pub(crate) const TUN_F_TSO4: u32 = 0x02;
/// `TUN_F_TSO6`.
pub(crate) const TUN_F_TSO6: u32 = 0x04;
/// `TUN_F_USO4`.
pub(crate) const TUN_F_USO4: u32 = 0x20;
/// `TUN_F_USO6`.
pub(crate) const TUN_F_USO6: u32 = 0x40;

// _IOW('T', 202, int) etc.
const TUNSETIFF: u64 = 0x4004_54ca;
const TUNSETOFFLOAD: u64 = 0x4004_54d0;
const TUNSETVNETHDRSZ: u64 = 0x4004_54d8;

/// `struct ifreq` with the `ifr_flags` member of the union.
#[repr(C)]
struct IfReqFlags {
    name: [u8; 16],
    flags: i16,
    _pad: [u8; 22],
}

fn cvt(r: libc::c_int) -> io::Result<libc::c_int> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// `TUNSETIFF`: attach `fd` to the TUN device `name` (created if absent).
/// Returns the name the kernel assigned (NUL-padded).
pub(crate) fn tun_set_iff(fd: BorrowedFd<'_>, name: &[u8; 16], flags: i16) -> io::Result<[u8; 16]> {
    let mut req = IfReqFlags {
        name: *name,
        flags,
        _pad: [0; 22],
    };
    // SAFETY: `fd` is a live descriptor; TUNSETIFF reads and writes a
    // `struct ifreq` (40 bytes), which `req` is, and it outlives the call.
    cvt(unsafe { libc::ioctl(fd.as_raw_fd(), TUNSETIFF as _, &mut req as *mut IfReqFlags) })?;
    Ok(req.name)
}

/// `TUNSETOFFLOAD` with a `TUN_F_*` mask.
pub(crate) fn tun_set_offload(fd: BorrowedFd<'_>, flags: u32) -> io::Result<()> {
    // SAFETY: `fd` is live; TUNSETOFFLOAD takes its argument by value.
    cvt(unsafe {
        libc::ioctl(
            fd.as_raw_fd(),
            TUNSETOFFLOAD as _,
            libc::c_ulong::from(flags),
        )
    })?;
    Ok(())
}

/// `TUNSETVNETHDRSZ`.
pub(crate) fn tun_set_vnet_hdr_sz(fd: BorrowedFd<'_>, size: i32) -> io::Result<()> {
    let v: libc::c_int = size;
    // SAFETY: `fd` is live; TUNSETVNETHDRSZ reads an `int` through the
    // pointer, which points at `v` for the duration of the call.
    cvt(unsafe {
        libc::ioctl(
            fd.as_raw_fd(),
            TUNSETVNETHDRSZ as _,
            &v as *const libc::c_int,
        )
    })?;
    Ok(())
}

/// Set or clear `O_NONBLOCK`.
pub(crate) fn set_nonblocking(fd: BorrowedFd<'_>, on: bool) -> io::Result<()> {
    // SAFETY: F_GETFL on a live descriptor has no memory effects.
    let fl = cvt(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFL) })?;
    let nfl = if on {
        fl | libc::O_NONBLOCK
    } else {
        fl & !libc::O_NONBLOCK
    };
    if nfl != fl {
        // SAFETY: F_SETFL with an int argument on a live descriptor.
        cvt(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, nfl) })?;
    }
    Ok(())
}

/// Wait until `fd` is readable or `timeout_ms` passes. `Ok(true)` if readable.
pub(crate) fn poll_readable(fd: BorrowedFd<'_>, timeout_ms: i32) -> io::Result<bool> {
    let mut p = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid `pollfd` that lives across the call.
    let n = unsafe { libc::poll(&mut p, 1, timeout_ms) };
    match cvt(n) {
        Ok(n) => Ok(n > 0),
        Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(false),
        Err(e) => Err(e),
    }
}

/// `struct ifreq` with the `ifr_mtu` member of the union.
#[repr(C)]
struct IfReqMtu {
    name: [u8; 16],
    mtu: libc::c_int,
    _pad: [u8; 20],
}

/// MTU of interface `name` in the calling thread's network namespace (`SIOCGIFMTU`).
pub(crate) fn if_mtu(name: &str) -> io::Result<u32> {
    let bytes = name.as_bytes();
    if bytes.is_empty() || bytes.len() > 15 {
        return Err(io::Error::from(io::ErrorKind::InvalidInput));
    }
    let mut req = IfReqMtu {
        name: [0; 16],
        mtu: 0,
        _pad: [0; 20],
    };
    req.name[..bytes.len()].copy_from_slice(bytes);
    // SAFETY: plain syscall without pointer arguments.
    let fd = cvt(unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) })?;
    // SAFETY: `fd` was just returned by socket() and is owned by nobody else.
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: SIOCGIFMTU reads the name from and writes the MTU into a `struct ifreq`
    // (40 bytes), which `req` is; it outlives the call.
    cvt(unsafe {
        libc::ioctl(
            sock.as_raw_fd(),
            libc::SIOCGIFMTU as _,
            &mut req as *mut IfReqMtu,
        )
    })?;
    u32::try_from(req.mtu).map_err(|_| io::Error::other("negative MTU"))
}

/// Interface index of `name` in the calling thread's network namespace.
pub(crate) fn if_nametoindex(name: &CStr) -> Option<u32> {
    // SAFETY: `name` is a valid NUL-terminated string.
    let i = unsafe { libc::if_nametoindex(name.as_ptr()) };
    (i != 0).then_some(i)
}

/// A `NETLINK_ROUTE` socket.
#[derive(Debug)]
pub(crate) struct NlSocket(OwnedFd);

impl NlSocket {
    pub(crate) fn open() -> io::Result<Self> {
        // SAFETY: plain socket(2) call with constant arguments.
        let fd = cvt(unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                libc::NETLINK_ROUTE,
            )
        })?;
        // SAFETY: `fd` was just returned by socket(2) and is owned by nobody else.
        Ok(Self(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    pub(crate) fn send(&self, msg: &[u8]) -> io::Result<()> {
        // SAFETY: `msg` is a valid readable buffer of `msg.len()` bytes; a
        // null destination sends to the kernel (the socket is unconnected,
        // netlink routes unaddressed sends to pid 0).
        let n = unsafe { libc::send(self.0.as_raw_fd(), msg.as_ptr().cast(), msg.len(), 0) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    pub(crate) fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        // SAFETY: `buf` is a valid writable buffer of `buf.len()` bytes.
        let n = unsafe { libc::recv(self.0.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(n as usize)
    }
}
