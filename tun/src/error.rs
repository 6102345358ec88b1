//! Error types of the crate.

use std::io;

/// Errors of the pure offload functions (virtio-net header, split, coalesce).
///
/// These are returned for malformed or unsupported input bytes; the engine
/// should drop the offending packet and count it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum OffloadError {
    /// The buffer is shorter than the structure it must hold.
    #[error("truncated input: need {need} bytes, have {have}")]
    Truncated {
        /// Bytes needed.
        need: usize,
        /// Bytes available.
        have: usize,
    },
    /// The virtio-net `gso_type` is not one we handle (e.g. legacy UFO).
    #[error("unsupported virtio-net gso_type {0:#x}")]
    UnsupportedGsoType(u8),
    /// The packet's IP header is invalid or does not match the GSO type.
    #[error("malformed packet: {0}")]
    Malformed(&'static str),
    /// A GSO packet with `gso_size` 0.
    #[error("gso_size is zero")]
    ZeroGsoSize,
    /// The caller's output buffer (or buffer list) is too small.
    #[error("output too small: need {need}, have {have}")]
    OutputTooSmall {
        /// Bytes (or buffers) needed.
        need: usize,
        /// Bytes (or buffers) available.
        have: usize,
    },
    /// A segment index beyond the number of segments.
    #[error("segment index {index} out of range ({count} segments)")]
    SegmentIndex {
        /// Requested index.
        index: usize,
        /// Number of segments.
        count: usize,
    },
    /// More packets than the coalescer was sized for.
    #[error("batch of {len} packets exceeds coalescer capacity {cap}")]
    BatchTooLarge {
        /// Packets passed.
        len: usize,
        /// Capacity given at construction.
        cap: usize,
    },
}

/// Errors of the TUN device and its netlink configuration.
#[derive(Debug, thiserror::Error)]
pub enum TunError {
    /// The interface name is empty, too long (> 15 bytes) or contains NUL or '/'.
    #[error("invalid interface name {0:?}")]
    InvalidName(String),
    /// A configuration value is out of range.
    #[error("invalid configuration: {0}")]
    InvalidConfig(&'static str),
    /// Opening `/dev/net/tun` failed.
    #[error("open /dev/net/tun: {0}")]
    Open(#[source] io::Error),
    /// An ioctl failed.
    #[error("ioctl {op}: {source}")]
    Ioctl {
        /// Which ioctl.
        op: &'static str,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// A netlink request failed (kernel NACK or socket error).
    #[error("netlink {op}: {source}")]
    Netlink {
        /// Which request.
        op: &'static str,
        /// The OS error (the kernel's errno for a NACK).
        #[source]
        source: io::Error,
    },
}
