//! WireGuard wire formats (whitepaper §5.4) as zero-copy views over received datagrams.
//!
//! Every message starts with a little-endian `u32` whose low byte is the type (1..=4) and whose
//! three upper bytes are reserved and must be zero.
//!
//! | type | message          | length     |
//! |------|------------------|------------|
//! | 1    | handshake initiation | 148    |
//! | 2    | handshake response   | 92     |
//! | 3    | cookie reply         | 64     |
//! | 4    | transport data       | ≥ 32   |
//!
//! Parsing checks type and length only; authentication is the job of
//! [`cookie`](crate::cookie) (MAC1/MAC2) and [`handshake`](crate::handshake).

use crate::Error;

/// Length of a handshake initiation.
pub const INITIATION_LEN: usize = 148;
/// Length of a handshake response.
pub const RESPONSE_LEN: usize = 92;
/// Length of a cookie reply.
pub const COOKIE_REPLY_LEN: usize = 64;
/// Length of a transport header (type, receiver index, counter).
pub const TRANSPORT_HEADER_LEN: usize = 16;
/// Minimum length of a transport message: header plus the 16-byte tag of an empty payload.
pub const TRANSPORT_MIN_LEN: usize = 32;

/// Length of a TAI64N timestamp.
pub const TIMESTAMP_LEN: usize = 12;
/// Length of the encrypted static key field (32 + tag).
pub const ENCRYPTED_STATIC_LEN: usize = 48;
/// Length of the encrypted timestamp field (12 + tag).
pub const ENCRYPTED_TIMESTAMP_LEN: usize = 28;
/// Length of the encrypted empty payload of a response (tag only).
pub const ENCRYPTED_NOTHING_LEN: usize = 16;
/// Length of the encrypted cookie of a cookie reply (16 + tag).
pub const ENCRYPTED_COOKIE_LEN: usize = 32;
/// Length of the cookie-reply nonce (XChaCha20-Poly1305).
pub const COOKIE_NONCE_LEN: usize = 24;
/// Length of MAC1 and MAC2.
pub const MAC_LEN: usize = 16;

/// Field offsets of a handshake initiation.
pub mod initiation {
    /// type (u32 LE)
    pub const TYPE: usize = 0;
    /// sender index (u32 LE)
    pub const SENDER: usize = 4;
    /// unencrypted ephemeral public key (32)
    pub const EPHEMERAL: usize = 8;
    /// encrypted static public key (48)
    pub const STATIC: usize = 40;
    /// encrypted TAI64N timestamp (28)
    pub const TIMESTAMP: usize = 88;
    /// mac1 (16)
    pub const MAC1: usize = 116;
    /// mac2 (16)
    pub const MAC2: usize = 132;
}

/// Field offsets of a handshake response.
pub mod response {
    /// type (u32 LE)
    pub const TYPE: usize = 0;
    /// sender index (u32 LE)
    pub const SENDER: usize = 4;
    /// receiver index (u32 LE)
    pub const RECEIVER: usize = 8;
    /// unencrypted ephemeral public key (32)
    pub const EPHEMERAL: usize = 12;
    /// encrypted empty payload (16)
    pub const EMPTY: usize = 44;
    /// mac1 (16)
    pub const MAC1: usize = 60;
    /// mac2 (16)
    pub const MAC2: usize = 76;
}

/// Field offsets of a cookie reply.
pub mod cookie_reply {
    /// type (u32 LE)
    pub const TYPE: usize = 0;
    /// receiver index (u32 LE)
    pub const RECEIVER: usize = 4;
    /// nonce (24)
    pub const NONCE: usize = 8;
    /// encrypted cookie (32)
    pub const COOKIE: usize = 32;
}

/// The four WireGuard message types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum MessageType {
    /// Type 1, handshake initiation.
    Initiation = 1,
    /// Type 2, handshake response.
    Response = 2,
    /// Type 3, cookie reply.
    CookieReply = 3,
    /// Type 4, transport data.
    Transport = 4,
}

impl MessageType {
    /// The 4-byte type word as it appears on the wire.
    pub const fn to_wire(self) -> [u8; 4] {
        [self as u8, 0, 0, 0]
    }
}

/// Fast dispatch for a received datagram: its message type, after checking the reserved bytes
/// and that the length fits the type (exact for handshake messages, ≥ 32 for transport).
pub fn classify(datagram: &[u8]) -> Result<MessageType, Error> {
    let Some(word) = datagram.first_chunk::<4>() else {
        return Err(Error::InvalidLength);
    };
    let (ty, ok) = match u32::from_le_bytes(*word) {
        1 => (MessageType::Initiation, datagram.len() == INITIATION_LEN),
        2 => (MessageType::Response, datagram.len() == RESPONSE_LEN),
        3 => (MessageType::CookieReply, datagram.len() == COOKIE_REPLY_LEN),
        4 => (MessageType::Transport, datagram.len() >= TRANSPORT_MIN_LEN),
        _ => return Err(Error::UnknownMessageType),
    };
    if ok {
        Ok(ty)
    } else {
        Err(Error::InvalidLength)
    }
}

/// A fixed-size field of a fixed-size message. Offsets are checked at compile time.
fn field<const OFF: usize, const N: usize, const M: usize>(b: &[u8; M]) -> &[u8; N] {
    const { assert!(OFF + N <= M) };
    match b[OFF..OFF + N].try_into() {
        Ok(a) => a,
        Err(_) => unreachable!(),
    }
}

fn u32_at<const OFF: usize, const M: usize>(b: &[u8; M]) -> u32 {
    u32::from_le_bytes(*field::<OFF, 4, M>(b))
}

fn exact<const M: usize>(datagram: &[u8], expected: MessageType) -> Result<&[u8; M], Error> {
    if classify(datagram)? != expected {
        return Err(Error::UnknownMessageType);
    }
    datagram.try_into().map_err(|_| Error::InvalidLength)
}

/// A received handshake initiation (type 1, 148 bytes).
#[derive(Debug, Clone, Copy)]
pub struct Initiation<'a>(&'a [u8; INITIATION_LEN]);

impl<'a> Initiation<'a> {
    /// Checks type and length. `UnknownMessageType` for another type, `InvalidLength` for a
    /// wrong length.
    pub fn parse(datagram: &'a [u8]) -> Result<Self, Error> {
        exact(datagram, MessageType::Initiation).map(Self)
    }
    /// The whole message.
    pub fn as_bytes(&self) -> &'a [u8; INITIATION_LEN] {
        self.0
    }
    /// The initiator's index for this handshake.
    pub fn sender_index(&self) -> u32 {
        u32_at::<{ initiation::SENDER }, INITIATION_LEN>(self.0)
    }
    /// The initiator's ephemeral public key.
    pub fn ephemeral(&self) -> &'a [u8; 32] {
        field::<{ initiation::EPHEMERAL }, 32, INITIATION_LEN>(self.0)
    }
    /// The encrypted static public key of the initiator.
    pub fn encrypted_static(&self) -> &'a [u8; ENCRYPTED_STATIC_LEN] {
        field::<{ initiation::STATIC }, ENCRYPTED_STATIC_LEN, INITIATION_LEN>(self.0)
    }
    /// The encrypted TAI64N timestamp.
    pub fn encrypted_timestamp(&self) -> &'a [u8; ENCRYPTED_TIMESTAMP_LEN] {
        field::<{ initiation::TIMESTAMP }, ENCRYPTED_TIMESTAMP_LEN, INITIATION_LEN>(self.0)
    }
    /// MAC1.
    pub fn mac1(&self) -> &'a [u8; MAC_LEN] {
        field::<{ initiation::MAC1 }, MAC_LEN, INITIATION_LEN>(self.0)
    }
    /// MAC2 (all zero when the initiator holds no cookie).
    pub fn mac2(&self) -> &'a [u8; MAC_LEN] {
        field::<{ initiation::MAC2 }, MAC_LEN, INITIATION_LEN>(self.0)
    }
}

/// A received handshake response (type 2, 92 bytes).
#[derive(Debug, Clone, Copy)]
pub struct Response<'a>(&'a [u8; RESPONSE_LEN]);

impl<'a> Response<'a> {
    /// Checks type and length.
    pub fn parse(datagram: &'a [u8]) -> Result<Self, Error> {
        exact(datagram, MessageType::Response).map(Self)
    }
    /// The whole message.
    pub fn as_bytes(&self) -> &'a [u8; RESPONSE_LEN] {
        self.0
    }
    /// The responder's index for the new session.
    pub fn sender_index(&self) -> u32 {
        u32_at::<{ response::SENDER }, RESPONSE_LEN>(self.0)
    }
    /// Our index, as sent in the initiation.
    pub fn receiver_index(&self) -> u32 {
        u32_at::<{ response::RECEIVER }, RESPONSE_LEN>(self.0)
    }
    /// The responder's ephemeral public key.
    pub fn ephemeral(&self) -> &'a [u8; 32] {
        field::<{ response::EPHEMERAL }, 32, RESPONSE_LEN>(self.0)
    }
    /// The encrypted empty payload (a bare tag).
    pub fn encrypted_nothing(&self) -> &'a [u8; ENCRYPTED_NOTHING_LEN] {
        field::<{ response::EMPTY }, ENCRYPTED_NOTHING_LEN, RESPONSE_LEN>(self.0)
    }
    /// MAC1.
    pub fn mac1(&self) -> &'a [u8; MAC_LEN] {
        field::<{ response::MAC1 }, MAC_LEN, RESPONSE_LEN>(self.0)
    }
    /// MAC2.
    pub fn mac2(&self) -> &'a [u8; MAC_LEN] {
        field::<{ response::MAC2 }, MAC_LEN, RESPONSE_LEN>(self.0)
    }
}

/// A received cookie reply (type 3, 64 bytes).
#[derive(Debug, Clone, Copy)]
pub struct CookieReply<'a>(&'a [u8; COOKIE_REPLY_LEN]);

impl<'a> CookieReply<'a> {
    /// Checks type and length.
    pub fn parse(datagram: &'a [u8]) -> Result<Self, Error> {
        exact(datagram, MessageType::CookieReply).map(Self)
    }
    /// The whole message.
    pub fn as_bytes(&self) -> &'a [u8; COOKIE_REPLY_LEN] {
        self.0
    }
    /// The sender index of the handshake message this reply answers (our index).
    pub fn receiver_index(&self) -> u32 {
        u32_at::<{ cookie_reply::RECEIVER }, COOKIE_REPLY_LEN>(self.0)
    }
    /// The XChaCha20-Poly1305 nonce.
    pub fn nonce(&self) -> &'a [u8; COOKIE_NONCE_LEN] {
        field::<{ cookie_reply::NONCE }, COOKIE_NONCE_LEN, COOKIE_REPLY_LEN>(self.0)
    }
    /// The encrypted cookie (16 bytes + tag).
    pub fn encrypted_cookie(&self) -> &'a [u8; ENCRYPTED_COOKIE_LEN] {
        field::<{ cookie_reply::COOKIE }, ENCRYPTED_COOKIE_LEN, COOKIE_REPLY_LEN>(self.0)
    }
}

/// The header of a received transport message (type 4, ≥ 32 bytes). Decryption is the
/// transport module's job; this view only serves dispatch.
#[derive(Debug, Clone, Copy)]
pub struct TransportHeader<'a> {
    header: &'a [u8; TRANSPORT_HEADER_LEN],
    payload: &'a [u8],
}

impl<'a> TransportHeader<'a> {
    /// Checks type and minimum length.
    pub fn parse(datagram: &'a [u8]) -> Result<Self, Error> {
        if classify(datagram)? != MessageType::Transport {
            return Err(Error::UnknownMessageType);
        }
        let Some((header, payload)) = datagram.split_first_chunk::<TRANSPORT_HEADER_LEN>() else {
            return Err(Error::InvalidLength);
        };
        Ok(Self { header, payload })
    }
    /// Our index of the session the packet belongs to.
    pub fn receiver_index(&self) -> u32 {
        u32_at::<4, TRANSPORT_HEADER_LEN>(self.header)
    }
    /// The sender's counter (nonce).
    pub fn counter(&self) -> u64 {
        u64::from_le_bytes(*field::<8, 8, TRANSPORT_HEADER_LEN>(self.header))
    }
    /// Encrypted payload plus tag (≥ 16 bytes).
    pub fn ciphertext(&self) -> &'a [u8] {
        self.payload
    }
}

/// Writes `v` as little-endian u32 at `OFF` of a fixed-size message buffer.
pub(crate) fn put_u32<const OFF: usize, const M: usize>(b: &mut [u8; M], v: u32) {
    const { assert!(OFF + 4 <= M) };
    b[OFF..OFF + 4].copy_from_slice(&v.to_le_bytes());
}

/// Mutable fixed-size field of a fixed-size message buffer.
pub(crate) fn field_mut<const OFF: usize, const N: usize, const M: usize>(
    b: &mut [u8; M],
) -> &mut [u8; N] {
    const { assert!(OFF + N <= M) };
    match (&mut b[OFF..OFF + N]).try_into() {
        Ok(a) => a,
        Err(_) => unreachable!(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(ty: u8, len: usize) -> Vec<u8> {
        let mut v = vec![0u8; len];
        if len > 0 {
            v[0] = ty;
        }
        v
    }

    #[test]
    fn classify_accepts_exact_lengths() {
        assert_eq!(classify(&msg(1, 148)), Ok(MessageType::Initiation));
        assert_eq!(classify(&msg(2, 92)), Ok(MessageType::Response));
        assert_eq!(classify(&msg(3, 64)), Ok(MessageType::CookieReply));
        assert_eq!(classify(&msg(4, 32)), Ok(MessageType::Transport));
        assert_eq!(classify(&msg(4, 1500)), Ok(MessageType::Transport));
    }

    #[test]
    fn classify_refuses_wrong_lengths() {
        for (ty, len) in [
            (1, 147),
            (1, 149),
            (2, 91),
            (2, 93),
            (3, 63),
            (3, 65),
            (4, 31),
        ] {
            assert_eq!(
                classify(&msg(ty, len)),
                Err(Error::InvalidLength),
                "{ty} {len}"
            );
        }
        assert_eq!(classify(&[]), Err(Error::InvalidLength));
        assert_eq!(classify(&[1, 0, 0]), Err(Error::InvalidLength));
    }

    #[test]
    fn classify_refuses_unknown_types_and_reserved_bytes() {
        for ty in [0u8, 5, 255] {
            assert_eq!(classify(&msg(ty, 148)), Err(Error::UnknownMessageType));
        }
        for reserved in 1..4 {
            let mut m = msg(1, 148);
            m[reserved] = 1;
            assert_eq!(classify(&m), Err(Error::UnknownMessageType));
        }
    }

    #[test]
    fn views_read_fields_at_their_offsets() {
        let mut m = msg(1, 148);
        m[4..8].copy_from_slice(&0xdead_beef_u32.to_le_bytes());
        m[8] = 0xe1;
        m[40] = 0x51;
        m[88] = 0x71;
        m[116] = 0x11;
        m[132] = 0x21;
        let v = Initiation::parse(&m).unwrap();
        assert_eq!(v.sender_index(), 0xdead_beef);
        assert_eq!(v.ephemeral()[0], 0xe1);
        assert_eq!(v.encrypted_static()[0], 0x51);
        assert_eq!(v.encrypted_timestamp()[0], 0x71);
        assert_eq!(v.mac1()[0], 0x11);
        assert_eq!(v.mac2()[0], 0x21);
        assert_eq!(Response::parse(&m).unwrap_err(), Error::UnknownMessageType);

        let mut r = msg(2, 92);
        r[4..8].copy_from_slice(&7u32.to_le_bytes());
        r[8..12].copy_from_slice(&9u32.to_le_bytes());
        r[12] = 0xe2;
        r[44] = 0x44;
        r[60] = 0x60;
        r[76] = 0x76;
        let v = Response::parse(&r).unwrap();
        assert_eq!((v.sender_index(), v.receiver_index()), (7, 9));
        assert_eq!(
            (
                v.ephemeral()[0],
                v.encrypted_nothing()[0],
                v.mac1()[0],
                v.mac2()[0]
            ),
            (0xe2, 0x44, 0x60, 0x76)
        );

        let mut c = msg(3, 64);
        c[4..8].copy_from_slice(&5u32.to_le_bytes());
        c[8] = 0x08;
        c[32] = 0x32;
        let v = CookieReply::parse(&c).unwrap();
        assert_eq!(v.receiver_index(), 5);
        assert_eq!((v.nonce()[0], v.encrypted_cookie()[0]), (0x08, 0x32));

        let mut t = msg(4, 48);
        t[4..8].copy_from_slice(&3u32.to_le_bytes());
        t[8..16].copy_from_slice(&0x0102_0304_0506_0708u64.to_le_bytes());
        let v = TransportHeader::parse(&t).unwrap();
        assert_eq!(v.receiver_index(), 3);
        assert_eq!(v.counter(), 0x0102_0304_0506_0708);
        assert_eq!(v.ciphertext().len(), 32);
    }
}
