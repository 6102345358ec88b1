//! The syscall layer of the shard loop: UDP sockets with GSO/GRO, io_uring rings with
//! provided-buffer rings, a minimal epoll wrapper, CPU pinning and per-thread CPU time.
//!
//! This is the only module of the engine allowed to use `unsafe`; every unsafe block carries a
//! `// SAFETY:` comment. Functions that hand the kernel pointers it keeps using after the call
//! returns (io_uring submissions) are `unsafe fn` with a `# Safety` contract; everything else
//! is a safe wrapper. Nothing here allocates on the per-packet paths (`send_*`, `recv_batch`,
//! SQE helpers, buffer-ring recycling, cmsg building and parsing).
#![allow(unsafe_code)]

pub mod cpu;
pub mod epoll;
pub mod udp;
pub mod uring;

pub use cpu::{
    CpuError, CpuList, CpuTime, allowed_cpus, cpus_of_numa_node, pin_to_cpu, thread_cpu_time,
};

use std::io;
use std::os::fd::RawFd;

/// Turns a libc return value into `io::Result`, reading `errno` on `-1`.
pub(crate) fn cvt(rc: libc::c_int) -> io::Result<libc::c_int> {
    if rc == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

/// Like [`cvt`] for `ssize_t` returns.
pub(crate) fn cvt_size(rc: libc::ssize_t) -> io::Result<usize> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        // A non-negative ssize_t always fits in usize.
        Ok(rc as usize)
    }
}

/// `setsockopt` with a plain-old-data value.
pub(crate) fn setsockopt<T: Copy>(
    fd: RawFd,
    level: libc::c_int,
    name: libc::c_int,
    value: T,
) -> io::Result<()> {
    // SAFETY: `value` is a live, initialised `T` for the duration of the call and the length
    // passed is exactly its size; the kernel only reads it.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (&value as *const T).cast(),
            std::mem::size_of::<T>() as libc::socklen_t,
        )
    };
    cvt(rc).map(drop)
}

/// `getsockopt` of a C `int`.
pub(crate) fn getsockopt_int(fd: RawFd, level: libc::c_int, name: libc::c_int) -> io::Result<i32> {
    let mut value: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `value` and `len` are valid, writable and `len` holds the size of `value`.
    let rc =
        unsafe { libc::getsockopt(fd, level, name, (&mut value as *mut i32).cast(), &mut len) };
    cvt(rc).map(|_| value)
}

/// Moves the calling thread into the network namespace `ns` (an open `/var/run/netns/<name>`
/// or `/proc/<pid>/ns/net`), `setns(CLONE_NEWNET)`. Sockets created afterwards on this thread
/// belong to that namespace, also when used from other threads. Needs `CAP_SYS_ADMIN`.
pub fn enter_netns(ns: std::os::fd::BorrowedFd<'_>) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: plain syscall on a borrowed, open fd.
    cvt(unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) }).map(drop)
}
