//! One io_uring per shard: set-up with the best task-run flags the kernel grants, an opcode
//! probe that names what is missing, provided-buffer rings, typed SQE helpers, CQE helpers and
//! bounded waits.
//!
//! Typical shard use:
//! 1. after pinning the thread, [`Uring::new`] (the ring is `SINGLE_ISSUER` when granted: only
//!    the creating thread may submit), then [`Uring::register_buf_ring`] for UDP and TUN buffers;
//! 2. arm [`Uring::push_recvmsg_multi`] on the UDP socket and [`Uring::push_read_multi`] on the
//!    TUN queue;
//! 3. loop: [`Uring::submit_and_wait`] with a bounded timeout, [`Uring::reap`] CQEs into an
//!    array, [`BufRing::take`] the buffer of each receive CQE, parse it ([`parse_recvmsg`]),
//!    process, [`BufRing::recycle`] it; re-arm a multishot whose CQE has no `F_MORE`
//!    ([`Cqe::multishot_ended`], e.g. `ENOBUFS` when the buffer ring ran dry);
//! 4. sends: [`Uring::push_sendmsg`] with a prepared [`SendHeader`] (GSO cmsg) and
//!    [`Uring::push_write`] for TUN writes — `unsafe`: the memory must live until the CQE.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::Duration;

use io_uring::{IoUring, Probe, opcode, squeue, types};

use super::cvt;
use super::udp::{
    Family, RECV_CMSG_SPACE, RecvMeta, SendHeader, gro_segment_size, sockaddr_from_bytes,
};

/// Bytes the template `msghdr` of a multishot `RECVMSG` reserves for the source address in
/// each provided buffer (a `sockaddr_in6` is 28; 32 keeps the control area 8-byte aligned).
pub const RECVMSG_NAME_LEN: usize = 32;
/// Bytes reserved for control messages (the `UDP_GRO` cmsg) in each provided buffer.
pub const RECVMSG_CONTROL_LEN: usize = RECV_CMSG_SPACE;
/// Size of `struct io_uring_recvmsg_out`, the header the kernel writes first.
pub const RECVMSG_OUT_HEADER: usize = 16;
/// Bytes of each provided buffer before the payload of a multishot `RECVMSG`: a buffer of
/// `RECVMSG_OVERHEAD + 65535` holds the largest (GRO-coalesced) datagram.
pub const RECVMSG_OVERHEAD: usize = RECVMSG_OUT_HEADER + RECVMSG_NAME_LEN + RECVMSG_CONTROL_LEN;
/// Largest buffer ring the kernel accepts.
pub const MAX_BUF_RING_ENTRIES: u16 = 32768;

const IORING_CQE_F_BUFFER: u32 = 1 << 0;
const IORING_CQE_F_MORE: u32 = 1 << 1;
const IORING_CQE_BUFFER_SHIFT: u32 = 16;
const IORING_UNREGISTER_PBUF_RING: libc::c_uint = 23;

/// Errors of ring set-up.
#[derive(Debug, thiserror::Error)]
pub enum UringError {
    /// `io_uring_setup` failed: no io_uring in this kernel (`ENOSYS`), disabled by
    /// `kernel.io_uring_disabled` (`EPERM`), or out of memory/locked memory.
    #[error("io_uring is unavailable: io_uring_setup failed: {0}")]
    Unavailable(io::Error),
    /// The ring works but lacks operations or features the engine needs.
    #[error("io_uring lacks what the engine needs: {}", .0.join(", "))]
    Missing(Vec<&'static str>),
    /// Registering a resource failed.
    #[error("io_uring: {what} failed: {source}")]
    Register {
        /// What was being registered.
        what: &'static str,
        /// The OS error.
        source: io::Error,
    },
}

/// What to ask for when creating a ring.
#[derive(Debug, Clone)]
pub struct RingConfig {
    /// Submission queue entries (rounded up to a power of two by the kernel).
    pub entries: u32,
    /// Completion queue entries; multishot receives post many CQEs per SQE, so make it large.
    pub cq_entries: u32,
    /// Try `SINGLE_ISSUER | DEFER_TASKRUN` (the ring must then only be used by its creating
    /// thread, and completions are only posted when that thread waits).
    pub defer_taskrun: bool,
}

impl Default for RingConfig {
    fn default() -> Self {
        Self {
            entries: 256,
            cq_entries: 4096,
            defer_taskrun: true,
        }
    }
}

/// Set-up flags granted and kernel features found; its `Display` is the log-line form.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UringFeatures {
    /// `IORING_SETUP_SINGLE_ISSUER` (6.0).
    pub single_issuer: bool,
    /// `IORING_SETUP_DEFER_TASKRUN` (6.1).
    pub defer_taskrun: bool,
    /// `IORING_SETUP_COOP_TASKRUN` (5.19).
    pub coop_taskrun: bool,
    /// `IORING_SETUP_TASKRUN_FLAG` (5.19).
    pub taskrun_flag: bool,
    /// `IORING_SETUP_SUBMIT_ALL` (5.18).
    pub submit_all: bool,
    /// `IORING_FEAT_EXT_ARG`: waits with a timeout (5.11). Required.
    pub ext_arg: bool,
    /// `IORING_FEAT_MIN_TIMEOUT`: min-wait then return on the first CQE (6.12).
    pub min_timeout: bool,
    /// `IORING_FEAT_NODROP`: CQ overflow never drops completions (5.5).
    pub nodrop: bool,
    /// `IORING_FEAT_FAST_POLL`: poll-armed retries of sockets/TUN (5.7).
    pub fast_poll: bool,
    /// Submission queue entries granted.
    pub sq_entries: u32,
    /// Completion queue entries granted.
    pub cq_entries: u32,
}

impl fmt::Display for UringFeatures {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let flags = [
            (self.single_issuer, "single_issuer"),
            (self.defer_taskrun, "defer_taskrun"),
            (self.coop_taskrun, "coop_taskrun"),
            (self.taskrun_flag, "taskrun_flag"),
            (self.submit_all, "submit_all"),
            (self.ext_arg, "ext_arg"),
            (self.min_timeout, "min_timeout"),
            (self.nodrop, "nodrop"),
            (self.fast_poll, "fast_poll"),
        ];
        write!(f, "sq={} cq={}", self.sq_entries, self.cq_entries)?;
        for (on, name) in flags {
            if on {
                write!(f, " {name}")?;
            }
        }
        Ok(())
    }
}

/// Names what the engine needs and `has_opcode`/`ext_arg` say is missing (empty when all is
/// there). Multishot `RECVMSG` (6.0) and buffer rings (5.19) have no opcode of their own; they
/// are implied by `READ_MULTISHOT` (6.7), and buffer-ring registration is checked for real by
/// [`Uring::register_buf_ring`].
pub fn missing_requirements(has_opcode: impl Fn(u8) -> bool, ext_arg: bool) -> Vec<&'static str> {
    let needed: [(u8, &'static str); 6] = [
        (opcode::Read::CODE, "READ opcode (Linux 5.6)"),
        (opcode::Write::CODE, "WRITE opcode (Linux 5.6)"),
        (opcode::SendMsg::CODE, "SENDMSG opcode (Linux 5.3)"),
        (opcode::RecvMsg::CODE, "RECVMSG opcode (Linux 5.3)"),
        (
            opcode::ProvideBuffers::CODE,
            "PROVIDE_BUFFERS opcode (Linux 5.7)",
        ),
        (
            opcode::ReadMulti::CODE,
            "READ_MULTISHOT opcode (Linux 6.7; implies multishot RECVMSG and buffer rings)",
        ),
    ];
    let mut missing: Vec<&'static str> = needed
        .iter()
        .filter(|(code, _)| !has_opcode(*code))
        .map(|&(_, name)| name)
        .collect();
    if !ext_arg {
        missing.push("IORING_FEAT_EXT_ARG for bounded waits (Linux 5.11)");
    }
    missing
}

/// A completion, copied out of the CQ so the ring can be used while it is handled.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Cqe {
    /// The SQE's user data (see [`UserData`]).
    pub user_data: u64,
    /// Result: bytes or a negative errno.
    pub res: i32,
    /// `IORING_CQE_F_*` flags.
    pub flags: u32,
}

impl Cqe {
    /// More CQEs will follow for this (multishot) request.
    pub fn more(&self) -> bool {
        self.flags & IORING_CQE_F_MORE != 0
    }

    /// A multishot request is over (no `F_MORE`): re-arm it after handling this CQE.
    pub fn multishot_ended(&self) -> bool {
        !self.more()
    }

    /// The provided buffer this CQE consumed, if any.
    pub fn buffer_id(&self) -> Option<u16> {
        (self.flags & IORING_CQE_F_BUFFER != 0)
            .then_some((self.flags >> IORING_CQE_BUFFER_SHIFT) as u16)
    }

    /// The positive errno of a failed request.
    pub fn errno(&self) -> Option<i32> {
        (self.res < 0).then_some(-self.res)
    }

    /// The buffer ring had no buffer (`ENOBUFS`): recycle buffers, then re-arm.
    pub fn is_enobufs(&self) -> bool {
        self.res == -libc::ENOBUFS
    }
}

/// user_data layout: operation kind (8 bits) | auxiliary value (24 bits) | index (32 bits).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct UserData(u64);

impl UserData {
    /// Largest auxiliary value (24 bits).
    pub const AUX_MAX: u32 = (1 << 24) - 1;

    /// Packs `op`, `aux` (masked to 24 bits, e.g. a segment count) and `index` (e.g. a slot).
    pub const fn new(op: u8, aux: u32, index: u32) -> Self {
        Self(((op as u64) << 56) | (((aux & Self::AUX_MAX) as u64) << 32) | index as u64)
    }

    /// From a CQE's user data.
    pub const fn from_raw(raw: u64) -> Self {
        Self(raw)
    }

    /// The raw value for an SQE.
    pub const fn raw(self) -> u64 {
        self.0
    }

    /// Operation kind.
    pub const fn op(self) -> u8 {
        (self.0 >> 56) as u8
    }

    /// Auxiliary value.
    pub const fn aux(self) -> u32 {
        ((self.0 >> 32) as u32) & Self::AUX_MAX
    }

    /// Index.
    pub const fn index(self) -> u32 {
        self.0 as u32
    }
}

/// Template `msghdr` of multishot receives: only the name/control lengths matter and the
/// pointers are null.
struct RecvTemplate(Box<libc::msghdr>);

// SAFETY: the boxed msghdr holds only null pointers and lengths; it is never dereferenced by
// Rust code and the kernel only reads it during submission.
unsafe impl Send for RecvTemplate {}

/// One shard's ring.
pub struct Uring {
    ring: IoUring,
    features: UringFeatures,
    recv_template: RecvTemplate,
}

impl fmt::Debug for Uring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Uring")
            .field("fd", &self.ring.as_raw_fd())
            .field("features", &self.features)
            .finish()
    }
}

impl AsRawFd for Uring {
    fn as_raw_fd(&self) -> RawFd {
        self.ring.as_raw_fd()
    }
}

#[derive(Clone, Copy)]
struct Attempt {
    single_issuer: bool,
    defer_taskrun: bool,
    coop_taskrun: bool,
    taskrun_flag: bool,
    submit_all: bool,
}

const ATTEMPTS: [Attempt; 6] = [
    Attempt {
        single_issuer: true,
        defer_taskrun: true,
        coop_taskrun: false,
        taskrun_flag: true,
        submit_all: true,
    },
    Attempt {
        single_issuer: true,
        defer_taskrun: true,
        coop_taskrun: false,
        taskrun_flag: false,
        submit_all: true,
    },
    Attempt {
        single_issuer: true,
        defer_taskrun: false,
        coop_taskrun: true,
        taskrun_flag: true,
        submit_all: true,
    },
    Attempt {
        single_issuer: false,
        defer_taskrun: false,
        coop_taskrun: true,
        taskrun_flag: true,
        submit_all: true,
    },
    Attempt {
        single_issuer: false,
        defer_taskrun: false,
        coop_taskrun: true,
        taskrun_flag: false,
        submit_all: false,
    },
    Attempt {
        single_issuer: false,
        defer_taskrun: false,
        coop_taskrun: false,
        taskrun_flag: false,
        submit_all: false,
    },
];

impl Uring {
    /// Creates a ring with the best flags the kernel grants (trying `SINGLE_ISSUER |
    /// DEFER_TASKRUN | TASKRUN_FLAG`, then dropping flags step by step on `EINVAL`), and checks
    /// the opcodes and features the engine needs ([`missing_requirements`]).
    ///
    /// Call it on the thread that will drive the ring (after pinning it): a `SINGLE_ISSUER` ring
    /// refuses submissions from other threads.
    pub fn new(cfg: &RingConfig) -> Result<Self, UringError> {
        let mut last_err = None;
        for a in ATTEMPTS {
            if a.defer_taskrun && !cfg.defer_taskrun {
                continue;
            }
            let mut b = IoUring::builder();
            b.setup_cqsize(cfg.cq_entries.max(cfg.entries))
                .setup_clamp();
            if a.single_issuer {
                b.setup_single_issuer();
            }
            if a.defer_taskrun {
                b.setup_defer_taskrun();
            }
            if a.coop_taskrun {
                b.setup_coop_taskrun();
            }
            if a.taskrun_flag {
                b.setup_taskrun_flag();
            }
            if a.submit_all {
                b.setup_submit_all();
            }
            match b.build(cfg.entries) {
                Ok(ring) => return Self::finish(ring, a),
                Err(e) if e.raw_os_error() == Some(libc::EINVAL) => last_err = Some(e),
                Err(e) => return Err(UringError::Unavailable(e)),
            }
        }
        Err(UringError::Unavailable(last_err.unwrap_or_else(|| {
            io::Error::from_raw_os_error(libc::EINVAL)
        })))
    }

    fn finish(ring: IoUring, a: Attempt) -> Result<Self, UringError> {
        let p = ring.params();
        let features = UringFeatures {
            single_issuer: a.single_issuer,
            defer_taskrun: a.defer_taskrun,
            coop_taskrun: a.coop_taskrun,
            taskrun_flag: a.taskrun_flag,
            submit_all: a.submit_all,
            ext_arg: p.is_feature_ext_arg(),
            min_timeout: p.is_feature_min_timeout(),
            nodrop: p.is_feature_nodrop(),
            fast_poll: p.is_feature_fast_poll(),
            sq_entries: p.sq_entries(),
            cq_entries: p.cq_entries(),
        };
        let mut probe = Probe::new();
        ring.submitter()
            .register_probe(&mut probe)
            .map_err(|source| UringError::Register {
                what: "opcode probe (IORING_REGISTER_PROBE, Linux 5.6)",
                source,
            })?;
        let missing = missing_requirements(|code| probe.is_supported(code), features.ext_arg);
        if !missing.is_empty() {
            return Err(UringError::Missing(missing));
        }
        // SAFETY: msghdr is plain old data; all-zero (null pointers) is valid.
        let mut tmpl: Box<libc::msghdr> = Box::new(unsafe { std::mem::zeroed() });
        tmpl.msg_namelen = RECVMSG_NAME_LEN as libc::socklen_t;
        tmpl.msg_controllen = RECVMSG_CONTROL_LEN as _;
        Ok(Self {
            ring,
            features,
            recv_template: RecvTemplate(tmpl),
        })
    }

    /// Flags and features granted.
    pub fn features(&self) -> &UringFeatures {
        &self.features
    }

    /// Allocates a provided-buffer ring of `entries` buffers of `buf_size` bytes (page-aligned,
    /// stable addresses, touched here so they sit on the caller's NUMA node), registers it as
    /// group `bgid` and hands all buffers to the kernel. `entries` must be a power of two
    /// ≤ 32768. For multishot `RECVMSG`, `buf_size` must exceed [`RECVMSG_OVERHEAD`].
    pub fn register_buf_ring(
        &self,
        bgid: u16,
        entries: u16,
        buf_size: usize,
    ) -> Result<BufRing, UringError> {
        let bad = |msg: &'static str| UringError::Register {
            what: "buffer ring",
            source: io::Error::new(io::ErrorKind::InvalidInput, msg),
        };
        if !entries.is_power_of_two() || entries > MAX_BUF_RING_ENTRIES {
            return Err(bad("entries must be a power of two ≤ 32768"));
        }
        if buf_size == 0 || u32::try_from(buf_size).is_err() {
            return Err(bad("buffer size must be in 1..=u32::MAX"));
        }
        let n = usize::from(entries);
        let map_err = |source| UringError::Register {
            what: "buffer ring memory (mmap)",
            source,
        };
        let ring_mem = Mmap::new(n * std::mem::size_of::<RawBuf>()).map_err(map_err)?;
        let bufs =
            Mmap::new(n.checked_mul(buf_size).ok_or_else(|| bad("too large"))?).map_err(map_err)?;
        // SAFETY: `ring_mem` is a live, page-aligned mapping of `entries` io_uring_buf entries;
        // it stays mapped until the group is unregistered (BufRing::drop unregisters before
        // unmapping, and leaks the memory if it cannot).
        unsafe {
            self.ring.submitter().register_buf_ring_with_flags(
                ring_mem.ptr.as_ptr() as u64,
                entries,
                bgid,
                0,
            )
        }
        .map_err(|source| UringError::Register {
            what: "provided-buffer ring (IORING_REGISTER_PBUF_RING, Linux 5.19)",
            source,
        })?;
        // SAFETY: plain fcntl on the ring's own fd.
        let dup = cvt(unsafe { libc::fcntl(self.ring.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 0) });
        let dup = match dup {
            // SAFETY: `fd` was just returned by fcntl and is owned by nobody else.
            Ok(fd) => unsafe { OwnedFd::from_raw_fd(fd) },
            Err(source) => {
                // Cannot keep a handle for unregistering later: undo now.
                let _ = self.ring.submitter().unregister_buf_ring(bgid);
                return Err(UringError::Register {
                    what: "dup of the ring fd",
                    source,
                });
            }
        };
        let mut br = BufRing {
            ring_mem,
            bufs,
            entries,
            buf_size,
            bgid,
            tail: 0,
            held: Bits::new(n),
            writing: Bits::new(n),
            owner_fd: self.ring.as_raw_fd(),
            ring_fd: dup,
        };
        for bid in 0..entries {
            br.held.set(usize::from(bid), true);
        }
        for bid in 0..entries {
            br.recycle(bid);
        }
        Ok(br)
    }

    fn push(&mut self, entry: &squeue::Entry) -> io::Result<()> {
        // SAFETY: every entry pushed here comes from a helper below whose own contract (safe:
        // memory owned by `self`/a `BufRing`; unsafe fn: upheld by its caller) keeps the memory
        // it points to valid until completion.
        if unsafe { self.ring.submission().push(entry) }.is_ok() {
            return Ok(());
        }
        self.ring.submit()?;
        // SAFETY: as above.
        unsafe { self.ring.submission().push(entry) }
            .map_err(|_| io::Error::other("io_uring submission queue still full after submit"))
    }

    fn check_group(&self, bufs: &BufRing) -> io::Result<()> {
        if bufs.owner_fd != self.ring.as_raw_fd() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "buffer ring registered on another io_uring",
            ));
        }
        Ok(())
    }

    /// Queues a multishot `RECVMSG` on the UDP socket `fd`, receiving into `bufs` (each buffer:
    /// `recvmsg_out` header, source address, cmsgs incl. `UDP_GRO`, payload — parse with
    /// [`parse_recvmsg`]). Every CQE carries one datagram (or a GRO batch); the request ends with
    /// a CQE without `F_MORE` (e.g. `ENOBUFS`) and must then be re-armed.
    pub fn push_recvmsg_multi(
        &mut self,
        fd: BorrowedFd<'_>,
        bufs: &BufRing,
        user_data: u64,
    ) -> io::Result<()> {
        self.check_group(bufs)?;
        if bufs.buf_size() <= RECVMSG_OVERHEAD {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "buffer too small for a multishot RECVMSG",
            ));
        }
        let e = opcode::RecvMsgMulti::new(
            types::Fd(fd.as_raw_fd()),
            &*self.recv_template.0,
            bufs.bgid(),
        )
        .build()
        .user_data(user_data);
        self.push(&e)
    }

    /// Queues a multishot `READ` of `fd` (TUN queue, pipe: any pollable fd) into `bufs`; one CQE
    /// per read, ending like [`Uring::push_recvmsg_multi`].
    pub fn push_read_multi(
        &mut self,
        fd: BorrowedFd<'_>,
        bufs: &BufRing,
        user_data: u64,
    ) -> io::Result<()> {
        self.check_group(bufs)?;
        let e = opcode::ReadMulti::new(types::Fd(fd.as_raw_fd()), 0, bufs.bgid())
            .build()
            .user_data(user_data);
        self.push(&e)
    }

    /// Queues a `SENDMSG` of a prepared header (see [`SendHeader::prepare`], e.g. with a
    /// `UDP_SEGMENT` cmsg). A `-EIO` result means the route refused GSO: pass it to
    /// [`super::udp::UdpSocket::note_send_error`] and resend as single datagrams.
    ///
    /// # Safety
    /// `msg` must stay at the same address, unmodified and alive — and so must the payload it
    /// was prepared with — until the CQE with `user_data` has been reaped (or the ring and the
    /// kernel's use of it are gone). `fd` must stay open until then.
    pub unsafe fn push_sendmsg(
        &mut self,
        fd: BorrowedFd<'_>,
        msg: &SendHeader,
        user_data: u64,
    ) -> io::Result<()> {
        let e = opcode::SendMsg::new(types::Fd(fd.as_raw_fd()), msg.msghdr_ptr())
            .build()
            .user_data(user_data);
        self.push(&e)
    }

    /// Queues a `WRITE` of `buf` to `fd` (a TUN super-packet with its virtio-net header). One
    /// `write` is one packet on a TUN fd; short writes do not happen there.
    ///
    /// # Safety
    /// The memory of `buf` must stay alive and unmodified until the CQE with `user_data` has
    /// been reaped; `fd` must stay open until then. `buf.len()` must fit in a `u32`.
    pub unsafe fn push_write(
        &mut self,
        fd: BorrowedFd<'_>,
        buf: &[u8],
        user_data: u64,
    ) -> io::Result<()> {
        let len = u32::try_from(buf.len())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "write over 4 GiB"))?;
        // Offset -1: "current position", valid for streams (TUN, pipes) and files alike.
        let e = opcode::Write::new(types::Fd(fd.as_raw_fd()), buf.as_ptr(), len)
            .offset(u64::MAX)
            .build()
            .user_data(user_data);
        self.push(&e)
    }

    /// Safe `SENDMSG` from a [`SendPool`] slot: sends the first `len` bytes of the slot's
    /// buffer to `dst` (as GSO segments of `segment` bytes when given) and locks the slot until
    /// [`SendPool::complete`]. Call `complete` when the CQE with `user_data` arrives.
    #[allow(clippy::too_many_arguments)]
    pub fn push_sendmsg_slot(
        &mut self,
        fd: BorrowedFd<'_>,
        pool: &mut SendPool,
        slot: u32,
        len: usize,
        dst: SocketAddr,
        family: Family,
        segment: Option<u16>,
        user_data: u64,
    ) -> io::Result<()> {
        let msg = pool.prepare(slot, len, dst, family, segment)?;
        let e = opcode::SendMsg::new(types::Fd(fd.as_raw_fd()), msg)
            .build()
            .user_data(user_data);
        self.push(&e)?;
        pool.busy.set(slot as usize, true);
        Ok(())
    }

    /// Safe `WRITE` of the first `len` bytes of a [`SendPool`] slot (e.g. a TUN super-packet);
    /// locks the slot until [`SendPool::complete`].
    pub fn push_write_slot(
        &mut self,
        fd: BorrowedFd<'_>,
        pool: &mut SendPool,
        slot: u32,
        len: usize,
        user_data: u64,
    ) -> io::Result<()> {
        let (ptr, len) = pool.range(slot, len)?;
        let e = opcode::Write::new(types::Fd(fd.as_raw_fd()), ptr, len)
            .offset(u64::MAX)
            .build()
            .user_data(user_data);
        self.push(&e)?;
        pool.busy.set(slot as usize, true);
        Ok(())
    }

    /// Safe zero-copy `WRITE` of `len` bytes at `offset` in a held buffer of `bufs` (e.g. a
    /// packet decrypted in place in its receive buffer, written to the TUN). The buffer is
    /// locked until [`BufRing::write_done`], then recycled as usual.
    pub fn push_write_from_ring(
        &mut self,
        fd: BorrowedFd<'_>,
        bufs: &mut BufRing,
        bid: u16,
        offset: usize,
        len: usize,
        user_data: u64,
    ) -> io::Result<()> {
        self.check_group(bufs)?;
        let in_range = offset
            .checked_add(len)
            .is_some_and(|end| end <= bufs.buf_size());
        if !bufs.is_owned(bid) || !in_range {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "buffer not held by the caller, or range outside it",
            ));
        }
        let ptr = bufs.buf_ptr(bid).wrapping_add(offset).cast_const();
        let len = u32::try_from(len).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        let e = opcode::Write::new(types::Fd(fd.as_raw_fd()), ptr, len)
            .offset(u64::MAX)
            .build()
            .user_data(user_data);
        self.push(&e)?;
        bufs.writing.set(usize::from(bid), true);
        Ok(())
    }

    /// Submits queued SQEs without waiting.
    pub fn submit(&mut self) -> io::Result<usize> {
        self.ring.submit()
    }

    /// Submits queued SQEs and waits until `want` CQEs are ready, at most `timeout` (`None`:
    /// no bound). With `min_wait` (kernel ≥ 6.12, [`UringFeatures::min_timeout`]; ignored
    /// otherwise and when `timeout` is `None`), the wait for `want` lasts at most `min_wait`,
    /// then returns as soon as one CQE is there — a batch bounded in latency. A timeout, a
    /// signal (`EINTR`) and a CQ overflow backlog (`EBUSY`) return `Ok`: reap either way.
    pub fn submit_and_wait(
        &mut self,
        want: usize,
        timeout: Option<Duration>,
        min_wait: Option<Duration>,
    ) -> io::Result<()> {
        let res = match timeout {
            None => self.ring.submit_and_wait(want),
            Some(t) => {
                let ts = types::Timespec::new()
                    .sec(t.as_secs())
                    .nsec(t.subsec_nanos());
                let mut args = types::SubmitArgs::new().timespec(&ts);
                if let Some(m) = min_wait
                    && self.features.min_timeout
                {
                    let us = u32::try_from(m.as_micros()).unwrap_or(u32::MAX).max(1);
                    args = args.min_wait_usec(us);
                }
                self.ring.submitter().submit_with_args(want, &args)
            }
        };
        match res {
            Ok(_) => Ok(()),
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::ETIME | libc::EINTR | libc::EBUSY)
                ) =>
            {
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// Copies ready CQEs into `out`; returns how many. Does not enter the kernel (with
    /// `DEFER_TASKRUN`, completions appear only after [`Uring::submit_and_wait`]).
    pub fn reap(&mut self, out: &mut [Cqe]) -> usize {
        let mut cq = self.ring.completion();
        let mut n = 0;
        for slot in out.iter_mut() {
            match cq.next() {
                Some(e) => {
                    *slot = Cqe {
                        user_data: e.user_data(),
                        res: e.result(),
                        flags: e.flags(),
                    };
                    n += 1;
                }
                None => break,
            }
        }
        n
    }

    /// CQEs lost to a completion-queue overflow (0 with `IORING_FEAT_NODROP`).
    pub fn cq_overflow(&mut self) -> u32 {
        self.ring.completion().overflow()
    }
}

/// A received datagram in a provided buffer of a multishot `RECVMSG`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecvMsgView<'a> {
    /// Length, source, GRO segment size, truncation (as from `recvmmsg`).
    pub meta: RecvMeta,
    /// Offset of the payload in the buffer (for in-place processing through
    /// [`BufRing::buf_mut`]).
    pub payload_offset: usize,
    /// The payload (`meta.len` bytes).
    pub payload: &'a [u8],
}

/// Parses the first `cqe.res` bytes of a multishot `RECVMSG` buffer (layout: 16-byte
/// `io_uring_recvmsg_out`, [`RECVMSG_NAME_LEN`] bytes of address, [`RECVMSG_CONTROL_LEN`] bytes
/// of cmsgs, payload). `None` if the buffer is shorter than the fixed part.
pub fn parse_recvmsg(buf: &[u8]) -> Option<RecvMsgView<'_>> {
    let word = |i: usize| -> Option<u32> {
        Some(u32::from_ne_bytes(
            buf.get(i * 4..i * 4 + 4)?.try_into().ok()?,
        ))
    };
    let (namelen, controllen, payloadlen, flags) = (word(0)?, word(1)?, word(2)?, word(3)?);
    if buf.len() < RECVMSG_OVERHEAD {
        return None;
    }
    let name_start = RECVMSG_OUT_HEADER;
    let name = &buf[name_start..name_start + (namelen as usize).min(RECVMSG_NAME_LEN)];
    let ctrl_start = name_start + RECVMSG_NAME_LEN;
    let control = &buf[ctrl_start..ctrl_start + (controllen as usize).min(RECVMSG_CONTROL_LEN)];
    let payload_offset = RECVMSG_OVERHEAD;
    let avail = buf.len() - payload_offset;
    let payload = &buf[payload_offset..payload_offset + (payloadlen as usize).min(avail)];
    let src: Option<SocketAddr> = sockaddr_from_bytes(name);
    Some(RecvMsgView {
        meta: RecvMeta {
            len: payload.len(),
            src: src.unwrap_or_else(|| RecvMeta::default().src),
            gro_segment: gro_segment_size(control),
            truncated: flags & (libc::MSG_TRUNC as u32) != 0 || payloadlen as usize > avail,
        },
        payload_offset,
        payload,
    })
}

/// `struct io_uring_buf`: one entry of a buffer ring (kernel ABI). The ring's tail is the
/// `resv` field of entry 0.
#[repr(C)]
struct RawBuf {
    addr: u64,
    len: u32,
    bid: u16,
    resv: u16,
}

/// Offset of the ring's tail (`resv` of entry 0).
const TAIL_OFFSET: usize = std::mem::offset_of!(RawBuf, resv);
const _: () = assert!(TAIL_OFFSET == 14 && std::mem::size_of::<RawBuf>() == 16);

/// An anonymous, page-aligned, pre-faulted mapping.
struct Mmap {
    ptr: NonNull<u8>,
    len: usize,
}

impl Mmap {
    fn new(len: usize) -> io::Result<Self> {
        let len = len.max(1);
        // SAFETY: anonymous private mapping, no file and no fixed address.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_POPULATE,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        NonNull::new(p.cast::<u8>())
            .map(|ptr| Self { ptr, len })
            .ok_or_else(|| io::Error::other("mmap returned null"))
    }
}

impl Drop for Mmap {
    fn drop(&mut self) {
        // SAFETY: `ptr`/`len` describe a mapping created by `Mmap::new` and not unmapped yet.
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

/// A fixed-size bit set with a population count.
#[derive(Debug)]
struct Bits {
    words: Box<[u64]>,
    count: usize,
}

impl Bits {
    fn new(n: usize) -> Self {
        Self {
            words: vec![0u64; n.div_ceil(64)].into_boxed_slice(),
            count: 0,
        }
    }

    fn get(&self, i: usize) -> bool {
        self.words
            .get(i / 64)
            .is_some_and(|w| w & (1 << (i % 64)) != 0)
    }

    /// Sets bit `i` to `on`; returns whether it changed.
    fn set(&mut self, i: usize, on: bool) -> bool {
        let Some(w) = self.words.get_mut(i / 64) else {
            return false;
        };
        let bit = 1u64 << (i % 64);
        if (*w & bit != 0) == on {
            return false;
        }
        *w ^= bit;
        if on {
            self.count += 1;
        } else {
            self.count -= 1;
        }
        true
    }
}

/// A provided-buffer ring registered with one [`Uring`]: owned memory with stable, page-aligned
/// addresses. Buffers belong to the kernel until a CQE hands one out ([`BufRing::take`]); then
/// the caller may read and write it until [`BufRing::recycle`] gives it back. A held buffer can
/// also be written to a fd without a copy ([`Uring::push_write_from_ring`]); it is then locked
/// until [`BufRing::write_done`].
///
/// Dropping it unregisters the group (through its own handle on the ring) before unmapping; if
/// that fails (e.g. dropped on another thread than a `SINGLE_ISSUER` ring's owner) the memory is
/// leaked rather than freed under the kernel. Drop it after the requests using it have ended.
pub struct BufRing {
    ring_mem: Mmap,
    bufs: Mmap,
    entries: u16,
    buf_size: usize,
    bgid: u16,
    tail: u16,
    held: Bits,
    writing: Bits,
    owner_fd: RawFd,
    ring_fd: OwnedFd,
}

impl fmt::Debug for BufRing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BufRing")
            .field("bgid", &self.bgid)
            .field("entries", &self.entries)
            .field("buf_size", &self.buf_size)
            .field("held", &self.held.count)
            .field("writing", &self.writing.count)
            .finish()
    }
}

// SAFETY: the mappings are owned exclusively by this value; the raw pointers are not shared
// with other Rust values, only with the kernel.
unsafe impl Send for BufRing {}

impl BufRing {
    /// Buffer group id.
    pub fn bgid(&self) -> u16 {
        self.bgid
    }

    /// Number of buffers.
    pub fn entries(&self) -> u16 {
        self.entries
    }

    /// Size of each buffer.
    pub fn buf_size(&self) -> usize {
        self.buf_size
    }

    /// Buffers currently held by the caller (taken, not yet recycled).
    pub fn taken(&self) -> usize {
        self.held.count
    }

    /// Buffers locked by an io_uring write in flight.
    pub fn writing(&self) -> usize {
        self.writing.count
    }

    /// Held by the caller and not locked by a write: accessible.
    fn is_owned(&self, bid: u16) -> bool {
        let i = usize::from(bid);
        self.held.get(i) && !self.writing.get(i)
    }

    /// Claims the buffer a CQE of a request on this group consumed; returns its id, or `None`
    /// if the CQE carries no buffer, the id is out of range or it is already taken. Only pass
    /// CQEs of requests that use this group: the id is trusted to come from the kernel.
    pub fn take(&mut self, cqe: &Cqe) -> Option<u16> {
        let bid = cqe.buffer_id()?;
        if bid >= self.entries || !self.held.set(usize::from(bid), true) {
            return None;
        }
        Some(bid)
    }

    /// Unlocks a buffer after the CQE of its [`Uring::push_write_from_ring`]; false if it was
    /// not locked.
    pub fn write_done(&mut self, bid: u16) -> bool {
        self.writing.set(usize::from(bid), false)
    }

    /// The whole buffer `bid` while the caller holds it.
    pub fn buf(&self, bid: u16) -> Option<&[u8]> {
        if !self.is_owned(bid) {
            return None;
        }
        let p = self.buf_ptr(bid);
        // SAFETY: `bid < entries` (owned implies in range), so the range lies inside `bufs`;
        // the kernel does not write a buffer the caller holds (it is not in the ring).
        Some(unsafe { std::slice::from_raw_parts(p, self.buf_size) })
    }

    /// The whole buffer `bid`, writable, while the caller holds it.
    pub fn buf_mut(&mut self, bid: u16) -> Option<&mut [u8]> {
        if !self.is_owned(bid) {
            return None;
        }
        let p = self.buf_ptr(bid);
        // SAFETY: as in `buf`; `&mut self` makes this the only reference into the buffer.
        Some(unsafe { std::slice::from_raw_parts_mut(p, self.buf_size) })
    }

    /// Start of buffer `bid` (`bid < entries`), computed without unsafe pointer arithmetic.
    fn buf_ptr(&self, bid: u16) -> *mut u8 {
        self.bufs
            .ptr
            .as_ptr()
            .wrapping_add(usize::from(bid) * self.buf_size)
    }

    /// Gives buffer `bid` back to the kernel. Returns false (and does nothing) if the caller
    /// does not hold it.
    pub fn recycle(&mut self, bid: u16) -> bool {
        if !self.is_owned(bid) {
            return false;
        }
        self.held.set(usize::from(bid), false);
        let slot = usize::from(self.tail & (self.entries - 1));
        let addr = self.buf_ptr(bid) as u64;
        let entries = self.ring_mem.ptr.as_ptr().cast::<RawBuf>();
        // `slot < entries`, so the entry lies inside `ring_mem`; the kernel only reads entries
        // between its head and our published tail, and this slot is beyond the tail (at most
        // `entries` buffers are ever in the ring). Only addr/len/bid are written, never `resv`
        // (the ring's tail shares entry 0).
        let e = entries.wrapping_add(slot).cast::<u8>();
        let addr_ptr = e
            .wrapping_add(std::mem::offset_of!(RawBuf, addr))
            .cast::<u64>();
        let len_ptr = e
            .wrapping_add(std::mem::offset_of!(RawBuf, len))
            .cast::<u32>();
        let bid_ptr = e
            .wrapping_add(std::mem::offset_of!(RawBuf, bid))
            .cast::<u16>();
        // SAFETY: see above; the field pointers are in bounds and aligned (16-byte entries in
        // a page-aligned mapping, fields at their repr(C) offsets).
        unsafe { addr_ptr.write(addr) };
        // SAFETY: as above.
        unsafe { len_ptr.write(self.buf_size as u32) };
        // SAFETY: as above.
        unsafe { bid_ptr.write(bid) };
        self.tail = self.tail.wrapping_add(1);
        let tail_ptr = entries.cast::<u8>().wrapping_add(TAIL_OFFSET).cast::<u16>();
        // SAFETY: the tail is the u16 at offset 14 of entry 0, inside `ring_mem` and 2-aligned;
        // the kernel reads it concurrently, so it is only ever accessed atomically here, and the
        // mapping outlives the returned reference (dropped at the end of this function).
        let tail = unsafe { AtomicU16::from_ptr(tail_ptr) };
        tail.store(self.tail, Ordering::Release);
        true
    }
}

impl Drop for BufRing {
    fn drop(&mut self) {
        let reg = UnregisterArg {
            ring_addr: 0,
            ring_entries: 0,
            bgid: self.bgid,
            flags: 0,
            resv: [0; 3],
        };
        // SAFETY: io_uring_register on our own dup of the ring fd with a valid argument struct.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_io_uring_register,
                self.ring_fd.as_raw_fd(),
                IORING_UNREGISTER_PBUF_RING,
                &reg as *const UnregisterArg,
                1,
            )
        };
        if rc != 0 || self.writing.count > 0 {
            // The kernel may still use the memory (still registered, or a write in flight):
            // leak it rather than free it under the kernel.
            let bufs = std::mem::replace(&mut self.bufs, Mmap::dangling());
            let ring = std::mem::replace(&mut self.ring_mem, Mmap::dangling());
            std::mem::forget(bufs);
            std::mem::forget(ring);
        }
    }
}

/// Send buffers with stable addresses and one prepared [`SendHeader`] each, for safe io_uring
/// `SENDMSG`/`WRITE` ([`Uring::push_sendmsg_slot`], [`Uring::push_write_slot`]). A slot is
/// locked from its submission until [`SendPool::complete`] (call it on the slot's CQE); a locked
/// slot cannot be accessed or submitted again. Dropping the pool while slots are locked leaks
/// its memory instead of freeing it under the kernel.
pub struct SendPool {
    hdrs: Box<[SendHeader]>,
    bufs: Mmap,
    buf_size: usize,
    busy: Bits,
}

impl fmt::Debug for SendPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SendPool")
            .field("slots", &self.hdrs.len())
            .field("buf_size", &self.buf_size)
            .field("busy", &self.busy.count)
            .finish()
    }
}

// SAFETY: the mapping and headers are owned exclusively by this value; their raw pointers are
// shared only with the kernel.
unsafe impl Send for SendPool {}

impl SendPool {
    /// `slots` buffers of `buf_size` bytes (page-aligned mapping, touched here: allocate after
    /// pinning to get NUMA-local memory). For GSO sends, `buf_size` ≤ 65535 is enough.
    pub fn new(slots: u32, buf_size: usize) -> io::Result<Self> {
        let n = slots as usize;
        let total = n
            .checked_mul(buf_size)
            .filter(|_| buf_size > 0 && u32::try_from(buf_size).is_ok())
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "bad send pool size"))?;
        Ok(Self {
            hdrs: (0..n).map(|_| SendHeader::new()).collect(),
            bufs: Mmap::new(total)?,
            buf_size,
            busy: Bits::new(n),
        })
    }

    /// Number of slots.
    pub fn slots(&self) -> u32 {
        self.hdrs.len() as u32
    }

    /// Size of each slot's buffer.
    pub fn buf_size(&self) -> usize {
        self.buf_size
    }

    /// Slots locked by a request in flight.
    pub fn in_flight(&self) -> usize {
        self.busy.count
    }

    /// Whether `slot` is locked by a request in flight.
    pub fn is_busy(&self, slot: u32) -> bool {
        self.busy.get(slot as usize)
    }

    fn slot_ptr(&self, slot: u32) -> *mut u8 {
        self.bufs
            .ptr
            .as_ptr()
            .wrapping_add(slot as usize * self.buf_size)
    }

    fn usable(&self, slot: u32) -> bool {
        (slot as usize) < self.hdrs.len() && !self.is_busy(slot)
    }

    /// The buffer of `slot`, unless it is out of range or locked.
    pub fn buf(&self, slot: u32) -> Option<&[u8]> {
        if !self.usable(slot) {
            return None;
        }
        let p = self.slot_ptr(slot);
        // SAFETY: `slot` is in range, so `p..p+buf_size` lies in the mapping; no request reads
        // it (not locked).
        Some(unsafe { std::slice::from_raw_parts(p, self.buf_size) })
    }

    /// The buffer of `slot`, writable, unless it is out of range or locked.
    pub fn buf_mut(&mut self, slot: u32) -> Option<&mut [u8]> {
        if !self.usable(slot) {
            return None;
        }
        let p = self.slot_ptr(slot);
        // SAFETY: as in `buf`; `&mut self` makes this the only reference into the slot.
        Some(unsafe { std::slice::from_raw_parts_mut(p, self.buf_size) })
    }

    /// Unlocks `slot` after its CQE; false if it was not locked.
    pub fn complete(&mut self, slot: u32) -> bool {
        self.busy.set(slot as usize, false)
    }

    fn range(&self, slot: u32, len: usize) -> io::Result<(*const u8, u32)> {
        if !self.usable(slot) || len > self.buf_size {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "send slot out of range, locked, or length over its size",
            ));
        }
        Ok((self.slot_ptr(slot).cast_const(), len as u32))
    }

    fn prepare(
        &mut self,
        slot: u32,
        len: usize,
        dst: SocketAddr,
        family: Family,
        segment: Option<u16>,
    ) -> io::Result<*const libc::msghdr> {
        let (ptr, _) = self.range(slot, len)?;
        // SAFETY: `range` checked that `ptr..ptr+len` lies in the mapping and is not locked;
        // the slice lives only for this call (the header keeps a raw pointer, which the lock
        // protects until `complete`).
        let payload = unsafe { std::slice::from_raw_parts(ptr, len) };
        let hdr = &mut self.hdrs[slot as usize];
        hdr.prepare(payload, dst, family, segment)?;
        Ok(hdr.msghdr_ptr())
    }
}

impl Drop for SendPool {
    fn drop(&mut self) {
        if self.busy.count > 0 {
            // Requests still in flight may read the buffers and headers: leak both.
            std::mem::forget(std::mem::replace(&mut self.bufs, Mmap::dangling()));
            std::mem::forget(std::mem::take(&mut self.hdrs));
        }
    }
}

impl Mmap {
    /// A placeholder that owns nothing (munmap of length 0 fails harmlessly with EINVAL).
    fn dangling() -> Self {
        Self {
            ptr: NonNull::dangling(),
            len: 0,
        }
    }
}

/// `struct io_uring_buf_reg` (kernel ABI).
#[repr(C)]
struct UnregisterArg {
    ring_addr: u64,
    ring_entries: u32,
    bgid: u16,
    flags: u16,
    resv: [u64; 3],
}

impl AsFd for Uring {
    fn as_fd(&self) -> BorrowedFd<'_> {
        // SAFETY: the ring fd is open for as long as `self` lives.
        unsafe { BorrowedFd::borrow_raw(self.ring.as_raw_fd()) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::epoll::{pipe, read};
    use crate::sys::udp::{RecvHeaders, UdpConfig, UdpSocket};
    use std::net::{IpAddr, Ipv4Addr};
    use std::time::Instant;

    fn wait_one(ring: &mut Uring) -> Cqe {
        let mut buf = [Cqe::default(); 4];
        let deadline = Instant::now() + Duration::from_secs(2);
        while Instant::now() < deadline {
            ring.submit_and_wait(1, Some(Duration::from_millis(20)), None)
                .unwrap();
            match ring.reap(&mut buf) {
                0 => continue,
                1 => return buf[0],
                n => panic!("{n} CQEs: {:?}", &buf[..n]),
            }
        }
        panic!("no CQE within 2 s");
    }

    #[test]
    fn sendmsg_with_gso_cmsg() {
        let mut ring = Uring::new(&RingConfig::default()).unwrap();
        let rx = UdpSocket::bind(&UdpConfig {
            bind: IpAddr::V4(Ipv4Addr::LOCALHOST),
            ..UdpConfig::default()
        })
        .unwrap();
        let tx = UdpSocket::bind(&UdpConfig::default()).unwrap();
        let data: Vec<u8> = (0..12_500u32).map(|i| (i * 13 + i / 1200) as u8).collect();
        let mut hdr = SendHeader::new();
        hdr.prepare(&data, rx.local_addr(), tx.family(), Some(1200))
            .unwrap();
        let ud = UserData::new(3, 11, 0).raw();
        // SAFETY: `hdr` and `data` are neither moved nor dropped before the CQE is reaped.
        unsafe { ring.push_sendmsg(tx.as_fd(), &hdr, ud) }.unwrap();
        let c = wait_one(&mut ring);
        assert_eq!((c.user_data, c.res), (ud, 12_500));
        // Receive: GRO on, so one coalesced buffer (or several), bytes intact.
        let mut hdrs = RecvHeaders::new(4);
        let mut bufs = vec![vec![0u8; 65536]; 4];
        let mut metas = [RecvMeta::default(); 4];
        let mut got = Vec::new();
        let mut segs = 0;
        let deadline = Instant::now() + Duration::from_secs(2);
        while got.len() < data.len() && Instant::now() < deadline {
            if let Ok(n) = rx.recv_batch(&mut hdrs, bufs.iter_mut().map(|b| &mut b[..]), &mut metas)
            {
                for (m, b) in metas.iter().zip(&bufs).take(n) {
                    assert!(m.gro_segment.is_none_or(|s| s == 1200));
                    segs += m.len.div_ceil(m.segment_size());
                    got.extend_from_slice(&b[..m.len]);
                }
            }
        }
        assert_eq!(got, data);
        assert_eq!(segs, 11);
    }

    #[test]
    fn write_to_a_pipe() {
        let mut ring = Uring::new(&RingConfig::default()).unwrap();
        let (r, w) = pipe().unwrap();
        let msg = b"super-packet with a virtio-net header".to_vec();
        let ud = UserData::new(4, 0, 5).raw();
        // SAFETY: `msg` lives until the CQE is reaped below.
        unsafe { ring.push_write(w.as_fd(), &msg, ud) }.unwrap();
        let c = wait_one(&mut ring);
        assert_eq!((c.user_data, c.res, c.flags), (ud, msg.len() as i32, 0));
        let mut back = [0u8; 64];
        assert_eq!(read(r.as_fd(), &mut back).unwrap(), msg.len());
        assert_eq!(&back[..msg.len()], &msg[..]);
    }

    #[test]
    fn parse_recvmsg_never_panics_and_reads_layout() {
        assert!(parse_recvmsg(&[]).is_none());
        assert!(parse_recvmsg(&[0xff; RECVMSG_OVERHEAD - 1]).is_none());
        // Lengths larger than the areas are clamped.
        let junk = [0xffu8; RECVMSG_OVERHEAD + 10];
        let v = parse_recvmsg(&junk).unwrap();
        assert_eq!(v.payload.len(), 10);
        assert!(v.meta.truncated);
        // A well-formed buffer: v4 source, GRO cmsg, 5-byte payload.
        let mut b = vec![0u8; RECVMSG_OVERHEAD + 5];
        b[0..4].copy_from_slice(&16u32.to_ne_bytes());
        b[4..8].copy_from_slice(&24u32.to_ne_bytes());
        b[8..12].copy_from_slice(&5u32.to_ne_bytes());
        let n = RECVMSG_OUT_HEADER;
        b[n..n + 2].copy_from_slice(&(libc::AF_INET as u16).to_ne_bytes());
        b[n + 2..n + 4].copy_from_slice(&51820u16.to_be_bytes());
        b[n + 4..n + 8].copy_from_slice(&[198, 18, 0, 1]);
        let c = n + RECVMSG_NAME_LEN;
        b[c..c + 8].copy_from_slice(&20usize.to_ne_bytes());
        b[c + 8..c + 12].copy_from_slice(&libc::SOL_UDP.to_ne_bytes());
        b[c + 12..c + 16].copy_from_slice(&libc::UDP_GRO.to_ne_bytes());
        b[c + 16..c + 20].copy_from_slice(&1400i32.to_ne_bytes());
        b[RECVMSG_OVERHEAD..].copy_from_slice(b"hello");
        let v = parse_recvmsg(&b).unwrap();
        assert_eq!(v.payload, b"hello");
        assert_eq!(v.payload_offset, RECVMSG_OVERHEAD);
        assert_eq!(v.meta.src, "198.18.0.1:51820".parse().unwrap());
        assert_eq!(v.meta.gro_segment, Some(1400));
        assert!(!v.meta.truncated);
    }
}
