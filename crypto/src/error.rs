//! One error type for everything the protocol core can refuse.
//!
//! Every variant maps to a stable drop-reason name ([`Error::reason`]) so that the engine can
//! count refusals per reason without formatting strings on the datapath.

use thiserror::Error;

/// Why the protocol core refused an input or an operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Error)]
#[non_exhaustive]
pub enum Error {
    /// A datagram or buffer was shorter or longer than its message type allows.
    #[error("invalid message length")]
    InvalidLength,
    /// The first byte / reserved bytes name no WireGuard message type.
    #[error("unknown message type")]
    UnknownMessageType,
    /// MAC1 of a handshake message did not verify.
    #[error("invalid mac1")]
    InvalidMac1,
    /// MAC2 missing or invalid while under load: a cookie reply is due instead.
    #[error("invalid or missing mac2 under load")]
    InvalidMac2,
    /// An AEAD tag (transport, handshake field or cookie) did not verify.
    #[error("decryption failed")]
    DecryptFailed,
    /// A handshake initiation carried a TAI64N timestamp not newer than the last accepted one.
    #[error("stale handshake timestamp")]
    StaleTimestamp,
    /// A receiver index names no session or handshake we know.
    #[error("unknown receiver index")]
    UnknownIndex,
    /// A handshake named a static key that belongs to no configured peer.
    #[error("unknown peer")]
    UnknownPeer,
    /// A handshake message arrived that the current handshake state does not expect.
    #[error("unexpected handshake message")]
    UnexpectedHandshake,
    /// A transport counter lies below the replay window.
    #[error("counter too old")]
    CounterTooOld,
    /// A transport counter was already received.
    #[error("replayed counter")]
    Replayed,
    /// The sending counter reached Reject-After-Messages: the session may not send any more.
    #[error("session counter exhausted")]
    CounterExhausted,
    /// The session is older than Reject-After-Time.
    #[error("session expired")]
    SessionExpired,
    /// There is no usable session for this peer.
    #[error("no session")]
    NoSession,
    /// A key was malformed (bad base64, wrong length, or a low-order point).
    #[error("invalid key")]
    InvalidKey,
    /// The caller's buffer has no room for the header, padding or tag.
    #[error("buffer too small")]
    BufferTooSmall,
    /// Handshake messages from this source exceed the rate limit.
    #[error("rate limited")]
    RateLimited,
}

impl Error {
    /// A short, stable, snake_case name for counters and metrics labels.
    pub const fn reason(self) -> &'static str {
        match self {
            Error::InvalidLength => "invalid_length",
            Error::UnknownMessageType => "unknown_type",
            Error::InvalidMac1 => "invalid_mac1",
            Error::InvalidMac2 => "invalid_mac2",
            Error::DecryptFailed => "decrypt_failed",
            Error::StaleTimestamp => "stale_timestamp",
            Error::UnknownIndex => "unknown_index",
            Error::UnknownPeer => "unknown_peer",
            Error::UnexpectedHandshake => "unexpected_handshake",
            Error::CounterTooOld => "counter_too_old",
            Error::Replayed => "replayed",
            Error::CounterExhausted => "counter_exhausted",
            Error::SessionExpired => "session_expired",
            Error::NoSession => "no_session",
            Error::InvalidKey => "invalid_key",
            Error::BufferTooSmall => "buffer_too_small",
            Error::RateLimited => "rate_limited",
        }
    }
}
