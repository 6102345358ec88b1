//! TUN device and virtio-net offload helpers for uring-tunnel.
//!
//! - [`TunDevice`]: a multi-queue Linux TUN device with `IFF_VNET_HDR`,
//!   offload negotiation ([`TunCaps`]) and netlink configuration; one
//!   [`TunQueue`] (an fd usable with io_uring) per queue.
//! - [`VirtioNetHdr`]: the 10-byte virtio-net header.
//! - [`GsoSplit`] / [`split_into`] / [`complete_checksum`]: TSO/USO
//!   super-packets into MTU-sized packets, in caller-owned buffers.
//! - [`Coalescer`]: a batch of packets into as few TUN writes as possible
//!   (TCP and UDP GRO), in a caller-owned contiguous buffer.
//! - [`fake_tun`]: an in-memory queue implementing [`TunIo`], for tests.
//!
//! The offload functions are pure (no syscalls) and allocate nothing per packet.
#![warn(missing_docs)]

pub mod checksum;
mod device;
mod error;
mod fake;
mod gro;
mod gso;
mod netlink;
mod sys;
mod vnet;

use std::io;

pub use device::{TunCaps, TunConfig, TunDevice, TunQueue};
pub use error::{OffloadError, TunError};
pub use fake::{FakeTun, FakeTunPeer, fake_tun};
pub use gro::{Coalescer, GroConfig};
pub use gso::{GsoSplit, complete_checksum, split_into};
pub use vnet::{
    F_DATA_VALID, F_NEEDS_CSUM, GSO_ECN, GSO_NONE, GSO_TCPV4, GSO_TCPV6, GSO_UDP, GSO_UDP_L4,
    VNET_HDR_LEN, VirtioNetHdr,
};

/// One TUN queue as the engine sees it: one packet per read, one per write.
/// Implemented by [`TunQueue`] and by the in-memory [`FakeTun`].
pub trait TunIo {
    /// Read one packet (with virtio-net header if [`TunIo::has_vnet_hdr`]).
    fn read_packet(&self, buf: &mut [u8]) -> io::Result<usize>;
    /// Write one packet (with virtio-net header if [`TunIo::has_vnet_hdr`]).
    fn write_packet(&self, buf: &[u8]) -> io::Result<usize>;
    /// Whether packets carry a 10-byte virtio-net header.
    fn has_vnet_hdr(&self) -> bool;
}
