//! Lock-free anti-replay window (RFC 6479 style, 8192 bits, 8128 usable).
//!
//! # Layout
//! The window is a ring of 256 `AtomicU64` words. Each word covers one *block* of 32
//! consecutive counters (`block = counter / 32`) and holds two halves:
//! the low 32 bits are the bitmap of that block, the high 32 bits are the block number
//! (truncated to 32 bits) the bitmap belongs to. Because each word says which block it
//! holds, "clearing" a word when the window slides is done lazily, by the first counter of
//! the new block, in the same compare-and-swap that sets its bit. No word is ever cleared by
//! a separate store, so there is no window in which a concurrent marker's bit can be lost.
//!
//! # Rules
//! Let `H` be the highest counter marked so far.
//! - A counter `c` with `c + 8128 < H` is too old ([`Error::CounterTooOld`]), exactly as
//!   WireGuard's kernel implementation: counters down to `H - 8128` are still accepted.
//! - A counter whose bit is already set is a replay ([`Error::Replayed`]).
//! - Counters at or above Reject-After-Messages are refused ([`Error::CounterExhausted`]).
//!
//! # Concurrency
//! [`ReplayWindow`] is `Sync`; [`mark`](ReplayWindow::mark) may run from many threads at
//! once and never accepts the same counter twice: a counter is accepted only by the CAS that
//! flips its bit from 0 to 1 in a word tagged with its own block, and a word's tag only ever
//! moves forward (the marker raises `H` *before* it retags a word, and every marker re-reads
//! `H` after reading the word, so a newer tag is always recognised as newer).
//!
//! Spurious rejections are possible but need a counter jump of a multiple of 2^37 over words
//! left untouched meanwhile (a 32-bit tag of a word untouched for 2^32 blocks aliases the
//! new block; its stale bits then reject fresh counters as replays until the counter moves
//! past that ring, i.e. at most 8192 counters). The safety property holds regardless, and a
//! sender that counts up one by one never produces such a jump.
//! Under a race, a counter can be rejected as too old when a concurrent marker moves `H` more
//! than 8128 past it between the two checks, which is what the window rule demands anyway.

use crate::Error;
use crate::transport::constants::{REJECT_AFTER_MESSAGES, REPLAY_WINDOW_SIZE};
use core::sync::atomic::{AtomicU64, Ordering::SeqCst};

/// Number of counters one ring word covers.
const BLOCK_BITS: u32 = 32;
const BLOCK_SHIFT: u32 = BLOCK_BITS.trailing_zeros();
/// Number of words in the ring (256 × 32 = 8192 bits).
const WORDS: usize = 256;

/// Sliding anti-replay window shared by every shard that receives on one session.
pub struct ReplayWindow {
    /// Highest counter marked so far, plus one; 0 = nothing marked yet.
    next: AtomicU64,
    /// Ring words: high half = block tag, low half = bitmap.
    words: [AtomicU64; WORDS],
}

impl core::fmt::Debug for ReplayWindow {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("ReplayWindow")
            .field("highest", &self.highest())
            .finish_non_exhaustive()
    }
}

impl Default for ReplayWindow {
    fn default() -> Self {
        Self::new()
    }
}

#[inline]
const fn block(counter: u64) -> u64 {
    counter >> BLOCK_SHIFT
}

#[inline]
const fn slot(counter: u64) -> usize {
    (block(counter) % WORDS as u64) as usize
}

#[inline]
const fn bit(counter: u64) -> u64 {
    1u64 << (counter % BLOCK_BITS as u64)
}

/// True if `counter` lies below the window whose highest counter + 1 is `next`.
#[inline]
const fn too_old(counter: u64, next: u64) -> bool {
    // c + 8128 < H  <=>  c + 8128 + 1 < next (no overflow: c < REJECT_AFTER_MESSAGES).
    counter + REPLAY_WINDOW_SIZE + 1 < next
}

impl ReplayWindow {
    /// An empty window: every counter below Reject-After-Messages is acceptable once.
    pub const fn new() -> Self {
        Self {
            next: AtomicU64::new(0),
            words: [const { AtomicU64::new(0) }; WORDS],
        }
    }

    /// The highest counter marked so far, if any.
    pub fn highest(&self) -> Option<u64> {
        self.next.load(SeqCst).checked_sub(1)
    }

    /// Classifies a word's tag relative to `counter`'s block, given the current `next`.
    /// Returns `Ok(true)` if the word holds `counter`'s block, `Ok(false)` if it holds an
    /// older block (to be replaced), `Err(CounterTooOld)` if it holds a newer block.
    #[inline]
    fn same_block(word: u64, counter: u64, next: u64) -> Result<bool, Error> {
        let tag = (word >> 32) as u32;
        let want = block(counter) as u32;
        if tag == want {
            return Ok(true);
        }
        // Blocks that can legitimately be newer than ours lie in (block(c), block(H)].
        let ahead = block(next.saturating_sub(1)).saturating_sub(block(counter));
        let diff = u64::from(tag.wrapping_sub(want));
        if diff <= ahead {
            Err(Error::CounterTooOld)
        } else {
            Ok(false)
        }
    }

    /// Cheap pre-check before decryption: refuses counters that are too old or already
    /// marked. Does not change the window; a counter that passes may still be refused by
    /// [`mark`](Self::mark) if another thread marks it first.
    #[inline]
    pub fn check(&self, counter: u64) -> Result<(), Error> {
        if counter >= REJECT_AFTER_MESSAGES {
            return Err(Error::CounterExhausted);
        }
        let next = self.next.load(SeqCst);
        if too_old(counter, next) {
            return Err(Error::CounterTooOld);
        }
        if counter >= next {
            return Ok(()); // above everything marked so far
        }
        let word = self.words[slot(counter)].load(SeqCst);
        if Self::same_block(word, counter, next)? && word & bit(counter) != 0 {
            return Err(Error::Replayed);
        }
        Ok(())
    }

    /// Marks `counter` as received. Call only after the packet's tag verified.
    ///
    /// Returns `Err(Replayed)` if it was already marked, `Err(CounterTooOld)` if it fell
    /// below the window, `Err(CounterExhausted)` at or above Reject-After-Messages.
    #[inline]
    pub fn mark(&self, counter: u64) -> Result<(), Error> {
        if counter >= REJECT_AFTER_MESSAGES {
            return Err(Error::CounterExhausted);
        }
        let next = self.next.load(SeqCst);
        if too_old(counter, next) {
            return Err(Error::CounterTooOld);
        }
        if counter >= next {
            // Publish the new highest before touching any word (see module docs).
            self.next.fetch_max(counter + 1, SeqCst);
        }
        let cell = &self.words[slot(counter)];
        let b = bit(counter);
        let mut word = cell.load(SeqCst);
        loop {
            let next = self.next.load(SeqCst);
            if too_old(counter, next) {
                return Err(Error::CounterTooOld);
            }
            let new = if Self::same_block(word, counter, next)? {
                if word & b != 0 {
                    return Err(Error::Replayed);
                }
                word | b
            } else {
                (block(counter) << 32) | b
            };
            match cell.compare_exchange_weak(word, new, SeqCst, SeqCst) {
                Ok(_) => return Ok(()),
                Err(actual) => word = actual,
            }
        }
    }

    /// [`check`](Self::check) and [`mark`](Self::mark) in one call, for callers that
    /// verify the tag first.
    #[inline]
    pub fn check_and_mark(&self, counter: u64) -> Result<(), Error> {
        self.mark(counter)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    const W: u64 = REPLAY_WINDOW_SIZE;

    #[test]
    fn in_order() {
        let w = ReplayWindow::new();
        assert_eq!(w.highest(), None);
        for c in 0..20_000u64 {
            w.check(c).unwrap();
            w.mark(c).unwrap();
            assert_eq!(w.mark(c), Err(Error::Replayed));
            assert_eq!(w.check(c), Err(Error::Replayed));
        }
        assert_eq!(w.highest(), Some(19_999));
    }

    #[test]
    fn out_of_order_within_window() {
        let w = ReplayWindow::new();
        w.mark(10_000).unwrap();
        // Everything down to H - 8128 is acceptable exactly once, in any order.
        let mut cs: Vec<u64> = (10_000 - W..10_000).collect();
        // Deterministic shuffle.
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for i in (1..cs.len()).rev() {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            cs.swap(i, (x % (i as u64 + 1)) as usize);
        }
        for &c in &cs {
            assert_eq!(w.check(c), Ok(()), "{c}");
            assert_eq!(w.mark(c), Ok(()), "{c}");
        }
        for &c in &cs {
            assert_eq!(w.mark(c), Err(Error::Replayed), "{c}");
        }
        assert_eq!(w.highest(), Some(10_000));
    }

    #[test]
    fn too_old_boundary() {
        let w = ReplayWindow::new();
        w.mark(20_000).unwrap();
        assert_eq!(w.check(20_000 - W), Ok(()));
        assert_eq!(w.check(20_000 - W - 1), Err(Error::CounterTooOld));
        assert_eq!(w.mark(20_000 - W - 1), Err(Error::CounterTooOld));
        assert_eq!(w.mark(0), Err(Error::CounterTooOld));
        assert_eq!(w.mark(20_000 - W), Ok(()));
        // Moving up by one pushes the old edge out.
        w.mark(20_001).unwrap();
        assert_eq!(w.mark(20_001 - W - 1), Err(Error::CounterTooOld));
        assert_eq!(w.mark(20_001 - W), Ok(()));
    }

    #[test]
    fn small_counters_below_window_size() {
        let w = ReplayWindow::new();
        w.mark(5).unwrap();
        for c in 0..5 {
            w.mark(c).unwrap();
        }
        assert_eq!(w.mark(3), Err(Error::Replayed));
        w.mark(W).unwrap();
        assert_eq!(w.mark(0), Err(Error::Replayed));
        w.mark(W + 1).unwrap();
        assert_eq!(w.mark(0), Err(Error::CounterTooOld));
    }

    #[test]
    fn big_jump_clears_window() {
        let w = ReplayWindow::new();
        for c in 0..8192 {
            w.mark(c).unwrap();
        }
        // Jump far ahead: every slot now belongs to stale blocks; fresh counters in the new
        // window that share ring slots with the old ones must be accepted.
        let base = (1u64 << 40) + (1 << 36) + 777;
        w.mark(base).unwrap();
        for c in base - W..base {
            assert_eq!(w.mark(c), Ok(()), "{c}");
        }
        for c in base - W..=base {
            assert_eq!(w.mark(c), Err(Error::Replayed), "{c}");
        }
        assert_eq!(w.mark(base - W - 1), Err(Error::CounterTooOld));
        // A jump of exactly one ring (8192) also works.
        let w = ReplayWindow::new();
        for c in 0..64 {
            w.mark(c).unwrap();
        }
        for c in 8192..8192 + 64 {
            assert_eq!(w.mark(c), Ok(()), "{c}");
        }
    }

    #[test]
    fn aliasing_jump_is_safe() {
        // Documented limitation: after a jump of exactly 2^37 the 32-bit block tags of the
        // untouched words alias the new blocks. That rejects fresh counters (here the whole
        // window), but it must never accept a counter twice.
        let w = ReplayWindow::new();
        for c in 0..8192 {
            w.mark(c).unwrap();
        }
        let base = (1u64 << 37) + 8191;
        let mut accepted = 0;
        for c in base - W..=base {
            if w.mark(c).is_ok() {
                accepted += 1;
                assert_eq!(w.mark(c), Err(Error::Replayed), "{c}");
            }
        }
        for c in base - W..=base {
            assert!(w.mark(c).is_err(), "{c}");
        }
        // The damage is bounded to one ring: once the counter moves past the aliased
        // blocks, every fresh counter is accepted again.
        let _ = accepted;
        for c in base + 1..base + 20_000 {
            if c >= base + 8192 {
                assert_eq!(w.mark(c), Ok(()), "{c}");
                assert_eq!(w.mark(c), Err(Error::Replayed), "{c}");
            } else {
                let _ = w.mark(c);
            }
        }
    }

    #[test]
    fn ring_wraparound_many_times() {
        let w = ReplayWindow::new();
        // Deliver 40 ring lengths in reversed batches of 100 (so every batch crosses word
        // boundaries out of order) and probe both window edges after each batch.
        let batch = 100u64;
        let mut base = 0u64;
        while base < 40 * 8192 {
            for c in (base..base + batch).rev() {
                assert_eq!(w.mark(c), Ok(()), "{c}");
            }
            let h = base + batch - 1;
            assert_eq!(w.highest(), Some(h));
            if h > W {
                assert_eq!(w.mark(h - W), Err(Error::Replayed), "edge {h}");
                assert_eq!(w.mark(h - W - 1), Err(Error::CounterTooOld), "edge {h}");
            }
            for c in base..base + batch {
                assert_eq!(w.mark(c), Err(Error::Replayed), "{c}");
            }
            base += batch;
        }
    }

    #[test]
    fn reject_after_messages() {
        let w = ReplayWindow::new();
        let limit = REJECT_AFTER_MESSAGES;
        assert_eq!(w.check(limit), Err(Error::CounterExhausted));
        assert_eq!(w.mark(limit), Err(Error::CounterExhausted));
        assert_eq!(w.mark(u64::MAX), Err(Error::CounterExhausted));
        w.mark(limit - 1).unwrap();
        assert_eq!(w.mark(limit - 1), Err(Error::Replayed));
        w.mark(limit - 1 - W).unwrap();
        assert_eq!(w.mark(limit - 2 - W), Err(Error::CounterTooOld));
    }

    #[test]
    fn concurrent_duplicates_never_accepted_twice() {
        let threads = 4;
        let total = 200_000u64;
        let w = Arc::new(ReplayWindow::new());
        let accepted: Vec<Vec<u64>> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..threads)
                .map(|t| {
                    let w = Arc::clone(&w);
                    s.spawn(move || {
                        let mut ok = Vec::new();
                        // Every thread offers every counter (so each counter is offered
                        // `threads` times), each walking with a small local jitter so that
                        // threads race on the same words and on window advances.
                        let mut x = 0x1234_5678u64 + t as u64;
                        for c in 0..total {
                            x ^= x << 13;
                            x ^= x >> 7;
                            x ^= x << 17;
                            let cc = c.saturating_sub(x % 64);
                            if w.mark(cc).is_ok() {
                                ok.push(cc);
                            }
                        }
                        ok
                    })
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let mut all: Vec<u64> = accepted.into_iter().flatten().collect();
        let n = all.len();
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), n, "a counter was accepted twice");
        // Sanity: the threads did accept a large share of the counters.
        assert!(n as u64 > total / 2, "only {n} accepted");
    }
}
