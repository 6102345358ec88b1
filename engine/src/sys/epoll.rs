//! A minimal epoll wrapper and plain `read`/`write`/`readv`/`writev` helpers for the epoll
//! backend. `recvmmsg` is shared with the UDP module.

use std::io::{self, IoSlice, IoSliceMut};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

pub use super::udp::{RecvHeaders, RecvMeta, recvmmsg};
use super::{cvt, cvt_size};

/// Readable (`EPOLLIN`).
pub const READABLE: u32 = libc::EPOLLIN as u32;
/// Writable (`EPOLLOUT`).
pub const WRITABLE: u32 = libc::EPOLLOUT as u32;
/// Edge-triggered (`EPOLLET`).
pub const EDGE: u32 = libc::EPOLLET as u32;
/// Error condition (`EPOLLERR`, always reported).
pub const ERROR: u32 = libc::EPOLLERR as u32;
/// Hang-up (`EPOLLHUP`, always reported).
pub const HANGUP: u32 = libc::EPOLLHUP as u32;

/// One ready event: the interest bits that fired and the token given at registration.
#[repr(transparent)]
#[derive(Clone, Copy)]
pub struct Event(libc::epoll_event);

impl Event {
    /// An empty event, to initialise the caller's array.
    pub const EMPTY: Event = Event(libc::epoll_event { events: 0, u64: 0 });

    /// The token the fd was registered with.
    pub fn token(&self) -> u64 {
        self.0.u64
    }

    /// Bits that fired (`READABLE`, `WRITABLE`, `ERROR`, `HANGUP`).
    pub fn events(&self) -> u32 {
        self.0.events
    }

    /// Whether `bits` are all set.
    pub fn is(&self, bits: u32) -> bool {
        self.events() & bits == bits
    }
}

impl std::fmt::Debug for Event {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Event")
            .field("events", &format_args!("{:#x}", self.events()))
            .field("token", &self.token())
            .finish()
    }
}

/// An epoll instance.
#[derive(Debug)]
pub struct Epoll {
    fd: OwnedFd,
}

impl AsFd for Epoll {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl Epoll {
    /// A new epoll instance (close-on-exec).
    pub fn new() -> io::Result<Self> {
        // SAFETY: plain syscall without pointer arguments.
        let fd = cvt(unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) })?;
        // SAFETY: `fd` was just returned by epoll_create1 and is owned by nobody else.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(Self { fd })
    }

    fn ctl(&self, op: libc::c_int, fd: RawFd, events: u32, token: u64) -> io::Result<()> {
        let mut ev = libc::epoll_event { events, u64: token };
        // SAFETY: `ev` is a valid epoll_event for the duration of the call.
        cvt(unsafe { libc::epoll_ctl(self.fd.as_raw_fd(), op, fd, &mut ev) }).map(drop)
    }

    /// Registers `fd` for `events` (bits above), reported with `token`.
    pub fn add(&self, fd: BorrowedFd<'_>, events: u32, token: u64) -> io::Result<()> {
        self.ctl(libc::EPOLL_CTL_ADD, fd.as_raw_fd(), events, token)
    }

    /// Changes the interest of a registered `fd`.
    pub fn modify(&self, fd: BorrowedFd<'_>, events: u32, token: u64) -> io::Result<()> {
        self.ctl(libc::EPOLL_CTL_MOD, fd.as_raw_fd(), events, token)
    }

    /// Removes `fd`.
    pub fn delete(&self, fd: BorrowedFd<'_>) -> io::Result<()> {
        self.ctl(libc::EPOLL_CTL_DEL, fd.as_raw_fd(), 0, 0)
    }

    /// Waits for events into `events` (at most its length), up to `timeout` (`None` = forever,
    /// sub-millisecond timeouts round up to 1 ms unless zero). Returns how many were filled;
    /// 0 on timeout or when interrupted by a signal.
    pub fn wait(&self, events: &mut [Event], timeout: Option<Duration>) -> io::Result<usize> {
        let ms = match timeout {
            None => -1,
            Some(d) if d.is_zero() => 0,
            Some(d) => libc::c_int::try_from(d.as_micros().div_ceil(1000)).unwrap_or(i32::MAX),
        };
        let max = libc::c_int::try_from(events.len()).unwrap_or(libc::c_int::MAX);
        // SAFETY: `Event` is repr(transparent) over epoll_event and `events` holds at least
        // `max` writable entries.
        let rc = unsafe {
            libc::epoll_wait(
                self.fd.as_raw_fd(),
                events.as_mut_ptr().cast::<libc::epoll_event>(),
                max,
                ms,
            )
        };
        match cvt(rc) {
            Ok(n) => Ok(usize::try_from(n).unwrap_or(0)),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(0),
            Err(e) => Err(e),
        }
    }
}

/// `read(2)` into `buf`.
pub fn read(fd: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: `buf` is valid for writes of its length.
    cvt_size(unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) })
}

/// `write(2)` of `buf`.
pub fn write(fd: BorrowedFd<'_>, buf: &[u8]) -> io::Result<usize> {
    // SAFETY: `buf` is valid for reads of its length.
    cvt_size(unsafe { libc::write(fd.as_raw_fd(), buf.as_ptr().cast(), buf.len()) })
}

/// `readv(2)` (e.g. a virtio-net header and a packet into separate buffers).
pub fn readv(fd: BorrowedFd<'_>, bufs: &mut [IoSliceMut<'_>]) -> io::Result<usize> {
    let n = libc::c_int::try_from(bufs.len()).unwrap_or(libc::c_int::MAX);
    // SAFETY: IoSliceMut is ABI-compatible with iovec on Unix and each slice is valid for writes
    // of its length.
    cvt_size(unsafe { libc::readv(fd.as_raw_fd(), bufs.as_mut_ptr().cast(), n) })
}

/// `writev(2)` (e.g. a virtio-net header and a packet from separate buffers).
pub fn writev(fd: BorrowedFd<'_>, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
    let n = libc::c_int::try_from(bufs.len()).unwrap_or(libc::c_int::MAX);
    // SAFETY: IoSlice is ABI-compatible with iovec on Unix and each slice is valid for reads of
    // its length.
    cvt_size(unsafe { libc::writev(fd.as_raw_fd(), bufs.as_ptr().cast(), n) })
}

/// A nonblocking pipe `(read end, write end)`, close-on-exec (tests and wake-ups).
pub fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: `fds` has room for the two descriptors pipe2 writes.
    cvt(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK) })?;
    // SAFETY: fds[0] was just created by pipe2 and is owned by nobody else.
    let r = unsafe { OwnedFd::from_raw_fd(fds[0]) };
    // SAFETY: likewise for fds[1].
    let w = unsafe { OwnedFd::from_raw_fd(fds[1]) };
    Ok((r, w))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pipe_events_and_vectored_io() {
        let (r, w) = pipe().unwrap();
        let ep = Epoll::new().unwrap();
        ep.add(r.as_fd(), READABLE, 7).unwrap();
        let mut evs = [Event::EMPTY; 4];
        assert_eq!(ep.wait(&mut evs, Some(Duration::ZERO)).unwrap(), 0);
        assert_eq!(
            writev(w.as_fd(), &[IoSlice::new(b"head"), IoSlice::new(b"-body")]).unwrap(),
            9
        );
        let n = ep.wait(&mut evs, Some(Duration::from_secs(1))).unwrap();
        assert_eq!(n, 1);
        assert_eq!(evs[0].token(), 7);
        assert!(evs[0].is(READABLE));
        let (mut a, mut b) = ([0u8; 4], [0u8; 16]);
        let got = readv(
            r.as_fd(),
            &mut [IoSliceMut::new(&mut a), IoSliceMut::new(&mut b)],
        )
        .unwrap();
        assert_eq!(got, 9);
        assert_eq!(&a, b"head");
        assert_eq!(&b[..5], b"-body");
        // Drained: nonblocking read reports WouldBlock, epoll reports nothing.
        assert_eq!(
            read(r.as_fd(), &mut b).unwrap_err().kind(),
            io::ErrorKind::WouldBlock
        );
        assert_eq!(
            ep.wait(&mut evs, Some(Duration::from_millis(1))).unwrap(),
            0
        );
        // Modify to writable on the write end; delete works.
        ep.add(w.as_fd(), READABLE, 8).unwrap();
        ep.modify(w.as_fd(), WRITABLE, 9).unwrap();
        let n = ep.wait(&mut evs, Some(Duration::from_secs(1))).unwrap();
        assert_eq!(n, 1);
        assert_eq!(evs[0].token(), 9);
        ep.delete(w.as_fd()).unwrap();
        assert_eq!(write(w.as_fd(), b"x").unwrap(), 1);
        assert_eq!(read(r.as_fd(), &mut b).unwrap(), 1);
    }
}
