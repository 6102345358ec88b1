//! An in-memory TUN queue for engine tests.

use std::collections::VecDeque;
use std::io;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

use crate::TunIo;

#[derive(Debug, Default)]
struct Queues {
    /// Packets the "kernel" side injected, for the engine to read.
    to_engine: VecDeque<Vec<u8>>,
    /// Packets the engine wrote.
    from_engine: VecDeque<Vec<u8>>,
    closed: bool,
}

#[derive(Debug, Default)]
struct Shared {
    q: Mutex<Queues>,
    readable: Condvar,
    written: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Queues> {
        // A panicking test thread must not hide the packets from the others.
        self.q.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The engine's end: implements [`TunIo`] like a real [`crate::TunQueue`].
/// Reads never block: an empty queue gives `WouldBlock` (use
/// [`FakeTun::wait_readable`]). Reading after [`FakeTunPeer::close`] gives
/// `BrokenPipe` once the queue is drained.
#[derive(Debug, Clone)]
pub struct FakeTun {
    shared: Arc<Shared>,
    vnet_hdr: bool,
}

/// The test's end (what the kernel would be): inject packets, collect writes.
#[derive(Debug, Clone)]
pub struct FakeTunPeer {
    shared: Arc<Shared>,
}

/// A connected fake queue and its peer. `vnet_hdr` tells the engine whether
/// packets carry a virtio-net header; the fake never adds or strips one.
pub fn fake_tun(vnet_hdr: bool) -> (FakeTun, FakeTunPeer) {
    let shared = Arc::new(Shared::default());
    (
        FakeTun {
            shared: shared.clone(),
            vnet_hdr,
        },
        FakeTunPeer { shared },
    )
}

impl FakeTun {
    /// Wait until a packet is available, the peer closed, or `timeout`.
    pub fn wait_readable(&self, timeout: Duration) -> bool {
        let g = self.shared.lock();
        let (g, _) = self
            .shared
            .readable
            .wait_timeout_while(g, timeout, |q| q.to_engine.is_empty() && !q.closed)
            .unwrap_or_else(|e| e.into_inner());
        !g.to_engine.is_empty() || g.closed
    }
}

impl TunIo for FakeTun {
    fn read_packet(&self, buf: &mut [u8]) -> io::Result<usize> {
        let mut g = self.shared.lock();
        match g.to_engine.front() {
            Some(p) if p.len() > buf.len() => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "buffer too small",
            )),
            Some(_) => {
                let p = g.to_engine.pop_front().unwrap_or_default();
                buf[..p.len()].copy_from_slice(&p);
                Ok(p.len())
            }
            None if g.closed => Err(io::ErrorKind::BrokenPipe.into()),
            None => Err(io::ErrorKind::WouldBlock.into()),
        }
    }

    fn write_packet(&self, buf: &[u8]) -> io::Result<usize> {
        let mut g = self.shared.lock();
        if g.closed {
            return Err(io::ErrorKind::BrokenPipe.into());
        }
        g.from_engine.push_back(buf.to_vec());
        self.shared.written.notify_all();
        Ok(buf.len())
    }

    fn has_vnet_hdr(&self) -> bool {
        self.vnet_hdr
    }
}

impl FakeTunPeer {
    /// Queue a packet (with its virtio-net header if the fake has one) for
    /// the engine to read.
    pub fn inject(&self, pkt: &[u8]) {
        let mut g = self.shared.lock();
        g.to_engine.push_back(pkt.to_vec());
        self.shared.readable.notify_all();
    }

    /// Take the oldest packet the engine wrote.
    pub fn pop_written(&self) -> Option<Vec<u8>> {
        self.shared.lock().from_engine.pop_front()
    }

    /// Take the oldest written packet, waiting up to `timeout`.
    pub fn wait_written(&self, timeout: Duration) -> Option<Vec<u8>> {
        let g = self.shared.lock();
        let (mut g, _) = self
            .shared
            .written
            .wait_timeout_while(g, timeout, |q| q.from_engine.is_empty())
            .unwrap_or_else(|e| e.into_inner());
        g.from_engine.pop_front()
    }

    /// Packets injected but not yet read by the engine.
    pub fn pending(&self) -> usize {
        self.shared.lock().to_engine.len()
    }

    /// Close: the engine's reads fail with `BrokenPipe` once drained.
    pub fn close(&self) {
        self.shared.lock().closed = true;
        self.shared.readable.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fake_roundtrip() {
        let (tun, peer) = fake_tun(true);
        let mut buf = [0u8; 64];
        assert_eq!(
            tun.read_packet(&mut buf).unwrap_err().kind(),
            io::ErrorKind::WouldBlock
        );
        assert!(!tun.wait_readable(Duration::from_millis(1)));
        peer.inject(&[1, 2, 3]);
        assert_eq!(peer.pending(), 1);
        assert!(tun.wait_readable(Duration::from_millis(1)));
        assert_eq!(tun.read_packet(&mut buf).unwrap(), 3);
        assert_eq!(&buf[..3], &[1, 2, 3]);
        peer.inject(&[0; 65]);
        assert_eq!(
            tun.read_packet(&mut buf).unwrap_err().kind(),
            io::ErrorKind::InvalidInput
        );
        tun.write_packet(&[9, 9]).unwrap();
        assert_eq!(
            peer.wait_written(Duration::from_millis(1)).unwrap(),
            vec![9, 9]
        );
        assert!(peer.pop_written().is_none());
        assert!(tun.has_vnet_hdr());
        peer.close();
        assert_eq!(
            tun.write_packet(&[1]).unwrap_err().kind(),
            io::ErrorKind::BrokenPipe
        );
    }
}
