//! Bulk TCP transfer between two namespaces with a sha256 of what was sent and what arrived.

use std::io::{self, Read as _, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use sha2::{Digest as _, Sha256};

use crate::Netns;

/// What one side of a transfer saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Side {
    /// Bytes sent or received.
    pub bytes: u64,
    /// sha256 of those bytes.
    pub sha256: [u8; 32],
}

/// Result of [`tcp_transfer`]: both sides agree (the function checks) and how long it took.
#[derive(Debug, Clone)]
pub struct Transfer {
    /// What the sender sent (identical to what the receiver got).
    pub sent: Side,
    /// Time from connect to the receiver's end of stream.
    pub elapsed: Duration,
}

impl Transfer {
    /// Goodput in Mbit/s.
    pub fn mbit_per_s(&self) -> f64 {
        self.sent.bytes as f64 * 8.0 / self.elapsed.as_secs_f64().max(1e-9) / 1e6
    }
}

/// A deterministic, cheap byte stream (xorshift64*), so the receiver cannot pass by accident
/// with zeros or a repeated pattern.
fn fill(state: &mut u64, buf: &mut [u8]) {
    for chunk in buf.chunks_mut(8) {
        *state ^= *state >> 12;
        *state ^= *state << 25;
        *state ^= *state >> 27;
        let v = state.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes();
        chunk.copy_from_slice(&v[..chunk.len()]);
    }
}

fn receive(listener: TcpListener, deadline: Instant) -> io::Result<(Side, Instant)> {
    listener.set_nonblocking(true)?;
    let (mut stream, _) = loop {
        match listener.accept() {
            Ok(c) => break c,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                if Instant::now() > deadline {
                    return Err(io::Error::new(io::ErrorKind::TimedOut, "no connection"));
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => return Err(e),
        }
    };
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut hash = Sha256::new();
    let mut bytes = 0u64;
    let mut buf = vec![0u8; 1 << 16];
    loop {
        if Instant::now() > deadline {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("receive deadline passed after {bytes} bytes"),
            ));
        }
        let n = match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                return Err(io::Error::new(
                    e.kind(),
                    format!("after {bytes} bytes: {e}"),
                ));
            }
        };
        hash.update(&buf[..n]);
        bytes += n as u64;
    }
    Ok((
        Side {
            bytes,
            sha256: hash.finalize().into(),
        },
        Instant::now(),
    ))
}

fn send(to: SocketAddr, total: u64, seed: u64, deadline: Instant) -> io::Result<(Side, Instant)> {
    let mut stream = TcpStream::connect_timeout(&to, Duration::from_secs(10))?;
    let start = Instant::now();
    stream.set_write_timeout(Some(Duration::from_secs(10)))?;
    let mut hash = Sha256::new();
    let mut state = seed | 1;
    let mut buf = vec![0u8; 1 << 16];
    let mut sent = 0u64;
    while sent < total {
        if Instant::now() > deadline {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("send deadline passed after {sent} bytes"),
            ));
        }
        let n = usize::try_from(total - sent).map_or(buf.len(), |r| r.min(buf.len()));
        fill(&mut state, &mut buf[..n]);
        stream
            .write_all(&buf[..n])
            .map_err(|e| io::Error::new(e.kind(), format!("after {sent} bytes: {e}")))?;
        hash.update(&buf[..n]);
        sent += n as u64;
    }
    stream.shutdown(std::net::Shutdown::Write)?;
    Ok((
        Side {
            bytes: sent,
            sha256: hash.finalize().into(),
        },
        start,
    ))
}

/// Sends `bytes` pseudo-random bytes over TCP from a thread in `from` to a listener on `to_addr`
/// in `to`, both sides hashing with sha256, everything bounded by `timeout`. Fails unless the
/// receiver got exactly what the sender sent.
pub fn tcp_transfer(
    from: &Netns,
    to: &Netns,
    to_addr: SocketAddr,
    bytes: u64,
    timeout: Duration,
) -> Result<Transfer, String> {
    let deadline = Instant::now() + timeout;
    let (bound_tx, bound_rx) = mpsc::channel();
    let receiver = to
        .run_in(move || {
            let listener = match TcpListener::bind(to_addr) {
                Ok(l) => l,
                Err(e) => {
                    let _ = bound_tx.send(Err(format!("bind {to_addr}: {e}")));
                    return Err(e);
                }
            };
            let _ = bound_tx.send(Ok(()));
            receive(listener, deadline)
        })
        .map_err(|e| format!("entering {}: {e}", to.name()))?;
    bound_rx
        .recv_timeout(Duration::from_secs(10))
        .map_err(|e| format!("receiver did not start: {e}"))??;
    let seed = u64::from(std::process::id()) << 20 ^ bytes;
    let sender = from
        .run_in(move || send(to_addr, bytes, seed, deadline))
        .map_err(|e| format!("entering {}: {e}", from.name()))?;
    // Both threads stop on their own by `deadline` (+ one 10 s socket timeout at most).
    let sent = sender.join().map_err(|_| "sender panicked".to_owned())?;
    let got = receiver
        .join()
        .map_err(|_| "receiver panicked".to_owned())?;
    let (sent, start) = sent.map_err(|e| format!("sender: {e}"))?;
    let (got, end) = got.map_err(|e| format!("receiver: {e}"))?;
    if sent != got {
        return Err(format!(
            "mismatch: sent {} bytes sha256 {}, received {} bytes sha256 {}",
            sent.bytes,
            hex(&sent.sha256),
            got.bytes,
            hex(&got.sha256)
        ));
    }
    if sent.bytes != bytes {
        return Err(format!("sent {} of {bytes} bytes", sent.bytes));
    }
    Ok(Transfer {
        sent,
        elapsed: end.saturating_duration_since(start),
    })
}

/// Lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_is_not_trivial() {
        let mut s = 1;
        let mut a = [0u8; 4096];
        fill(&mut s, &mut a);
        let mut b = [0u8; 4096];
        fill(&mut s, &mut b);
        assert_ne!(a, b);
        assert!(a.iter().filter(|&&x| x == 0).count() < 100);
    }

    #[test]
    fn loopback_transfer_matches_and_detects_nothing_wrong() {
        // Same namespace on both ends is fine for a self-check of the helper: use the
        // current namespace through a throwaway thread (no root needed).
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        let r = std::thread::spawn(move || receive(l, deadline));
        let (sent, _) = send(addr, 3 << 20, 7, deadline).unwrap();
        let (got, _) = r.join().unwrap().unwrap();
        assert_eq!(sent, got);
        assert_eq!(sent.bytes, 3 << 20);
    }
}
