//! Coalescing outgoing datagrams into UDP GSO sends.
//!
//! A [`SendBatch`] is one contiguous buffer holding datagrams for one destination laid end to
//! end, all of the same size except the last, which may be shorter: exactly what one `sendmsg`
//! with a `UDP_SEGMENT` control message can carry. The shard writes each encrypted datagram
//! directly into the batch (no copy afterwards) and hands the whole batch to the kernel in one
//! send. The buffer is allocated once; a batch is reused after its send completes.

use std::net::SocketAddr;

/// Most segments one GSO send may carry (`UDP_MAX_SEGMENTS` in the kernel).
pub const MAX_SEGMENTS: usize = 64;
/// Most payload bytes one UDP send may carry (65535 − 8 UDP − 20 IPv4 header).
pub const MAX_GSO_BYTES: usize = 65507;

/// Why [`SendBatch::slot`] cannot take another datagram: flush the batch first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Full {
    /// The batch is for another destination.
    OtherDestination,
    /// The datagram is larger than the batch's segment size, or the batch already ended with a
    /// shorter datagram (only the last may be shorter).
    SizeMismatch,
    /// Segment count or byte limit reached.
    Capacity,
}

/// The bookkeeping of one GSO send, apart from its buffer: destination, segment size, bytes
/// and datagrams so far. Backends keep it next to whatever memory they send from (an owned
/// buffer for epoll, a registered pool slot for io_uring).
#[derive(Debug, Clone, Copy)]
pub struct BatchLayout {
    dst: Option<SocketAddr>,
    seg_size: usize,
    len: usize,
    count: usize,
    ended_short: bool,
    max_segments: usize,
    max_bytes: usize,
}

impl BatchLayout {
    /// An empty layout for a buffer of `max_bytes` and at most `max_segments` datagrams.
    pub const fn new(max_bytes: usize, max_segments: usize) -> Self {
        BatchLayout {
            dst: None,
            seg_size: 0,
            len: 0,
            count: 0,
            ended_short: false,
            max_segments: if max_segments == 0 { 1 } else { max_segments },
            max_bytes,
        }
    }

    /// Limits coalescing to `n` segments per send from now on (1 = one datagram per send).
    pub fn set_max_segments(&mut self, n: usize) {
        self.max_segments = n.clamp(1, MAX_SEGMENTS);
    }

    /// Whether a datagram of `len` bytes to `dst` fits, or why not.
    #[inline]
    pub fn check(&self, dst: SocketAddr, len: usize) -> Result<(), Full> {
        if len > self.max_bytes {
            return Err(Full::Capacity);
        }
        if self.count == 0 {
            return Ok(());
        }
        if self.dst != Some(dst) {
            return Err(Full::OtherDestination);
        }
        if self.ended_short || len > self.seg_size {
            return Err(Full::SizeMismatch);
        }
        if self.count >= self.max_segments || self.len + len > self.max_bytes {
            return Err(Full::Capacity);
        }
        Ok(())
    }

    /// Byte range the next datagram of `len` bytes to `dst` goes to.
    #[inline]
    pub fn next_range(&self, dst: SocketAddr, len: usize) -> Result<std::ops::Range<usize>, Full> {
        self.check(dst, len)?;
        Ok(self.len..self.len + len)
    }

    /// Accounts a datagram of `len` bytes just written at [`BatchLayout::next_range`].
    ///
    /// # Panics
    /// If `len` breaks the rules that [`BatchLayout::check`] enforces: a caller bug.
    #[inline]
    pub fn commit(&mut self, dst: SocketAddr, len: usize) {
        assert!(self.check(dst, len).is_ok(), "commit without a valid slot");
        if self.count == 0 {
            self.dst = Some(dst);
            self.seg_size = len;
        } else if len < self.seg_size {
            self.ended_short = true;
        }
        self.len += len;
        self.count += 1;
    }

    /// Whether nothing is in the batch.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Destination of the datagrams.
    pub fn destination(&self) -> Option<SocketAddr> {
        self.dst
    }

    /// Segment size for the `UDP_SEGMENT` control message.
    pub fn segment_size(&self) -> usize {
        self.seg_size
    }

    /// Number of datagrams.
    pub fn count(&self) -> usize {
        self.count
    }

    /// Bytes used.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Empties the layout (the send completed).
    pub fn clear(&mut self) {
        *self = BatchLayout::new(self.max_bytes, self.max_segments);
    }
}

/// Datagrams for one destination in an owned buffer, contiguous, same size except the last.
#[derive(Debug)]
pub struct SendBatch {
    buf: Box<[u8]>,
    layout: BatchLayout,
}

impl SendBatch {
    /// A batch able to hold [`MAX_GSO_BYTES`].
    pub fn new() -> Self {
        Self::with_limits(MAX_GSO_BYTES, MAX_SEGMENTS)
    }

    /// A batch with a smaller byte or segment limit (`max_segments = 1` disables coalescing,
    /// e.g. after the kernel refused GSO).
    pub fn with_limits(max_bytes: usize, max_segments: usize) -> Self {
        SendBatch {
            buf: vec![0u8; max_bytes].into_boxed_slice(),
            layout: BatchLayout::new(max_bytes, max_segments),
        }
    }

    /// The bookkeeping.
    pub fn layout(&self) -> &BatchLayout {
        &self.layout
    }

    /// Limits coalescing to `n` segments per send from now on.
    pub fn set_max_segments(&mut self, n: usize) {
        self.layout.set_max_segments(n);
    }

    /// Whether a datagram of `len` bytes to `dst` fits, or why not.
    #[inline]
    pub fn check(&self, dst: SocketAddr, len: usize) -> Result<(), Full> {
        self.layout.check(dst, len)
    }

    /// Room for the next datagram to `dst`, exactly `len` bytes long (the caller knows the
    /// encrypted length in advance); write it, then call [`SendBatch::commit`] with `len`.
    #[inline]
    pub fn slot(&mut self, dst: SocketAddr, len: usize) -> Result<&mut [u8], Full> {
        let r = self.layout.next_range(dst, len)?;
        Ok(&mut self.buf[r])
    }

    /// Accounts a datagram of `len` bytes just written into the slot.
    #[inline]
    pub fn commit(&mut self, dst: SocketAddr, len: usize) {
        self.layout.commit(dst, len);
    }

    /// Whether the batch holds nothing.
    pub fn is_empty(&self) -> bool {
        self.layout.is_empty()
    }

    /// Destination of the datagrams in the batch.
    pub fn destination(&self) -> Option<SocketAddr> {
        self.layout.destination()
    }

    /// Segment size to put in the `UDP_SEGMENT` control message.
    pub fn segment_size(&self) -> usize {
        self.layout.segment_size()
    }

    /// Number of datagrams.
    pub fn count(&self) -> usize {
        self.layout.count()
    }

    /// The bytes to send.
    pub fn bytes(&self) -> &[u8] {
        &self.buf[..self.layout.len()]
    }

    /// The datagrams one by one (for a send without GSO).
    pub fn datagrams(&self) -> impl Iterator<Item = &[u8]> {
        self.bytes().chunks(self.layout.segment_size().max(1))
    }

    /// Empties the batch after its send completed.
    pub fn clear(&mut self) {
        self.layout.clear();
    }
}

impl Default for SendBatch {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(port: u16) -> SocketAddr {
        SocketAddr::from(([198, 18, 0, 1], port))
    }

    fn push(b: &mut SendBatch, dst: SocketAddr, len: usize, fill: u8) -> Result<(), Full> {
        let slot = b.slot(dst, len)?;
        slot[..len].fill(fill);
        b.commit(dst, len);
        Ok(())
    }

    #[test]
    fn same_size_then_short_tail() {
        let mut b = SendBatch::new();
        for i in 0..10 {
            push(&mut b, a(1), 1456, i).unwrap();
        }
        push(&mut b, a(1), 200, 99).unwrap();
        assert_eq!(push(&mut b, a(1), 200, 0), Err(Full::SizeMismatch));
        assert_eq!(b.count(), 11);
        assert_eq!(b.segment_size(), 1456);
        let d: Vec<_> = b.datagrams().collect();
        assert_eq!(d.len(), 11);
        assert!(d[3].iter().all(|&x| x == 3));
        assert_eq!(d[10].len(), 200);
    }

    #[test]
    fn larger_datagram_or_other_destination_needs_flush() {
        let mut b = SendBatch::new();
        push(&mut b, a(1), 100, 0).unwrap();
        assert_eq!(push(&mut b, a(1), 101, 0), Err(Full::SizeMismatch));
        assert_eq!(push(&mut b, a(2), 100, 0), Err(Full::OtherDestination));
        b.clear();
        push(&mut b, a(2), 101, 0).unwrap();
        assert_eq!(b.destination(), Some(a(2)));
    }

    #[test]
    fn limits() {
        let mut b = SendBatch::new();
        for _ in 0..MAX_SEGMENTS {
            push(&mut b, a(1), 64, 0).unwrap();
        }
        assert_eq!(push(&mut b, a(1), 64, 0), Err(Full::Capacity));
        let mut b = SendBatch::new();
        let n = MAX_GSO_BYTES / 1456;
        for _ in 0..n {
            push(&mut b, a(1), 1456, 0).unwrap();
        }
        assert_eq!(push(&mut b, a(1), 1456, 0), Err(Full::Capacity));
        let mut one = SendBatch::with_limits(MAX_GSO_BYTES, 1);
        push(&mut one, a(1), 64, 0).unwrap();
        assert_eq!(push(&mut one, a(1), 64, 0), Err(Full::Capacity));
    }
}
