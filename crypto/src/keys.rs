//! Curve25519 keys in the formats `wg genkey` / `wg pubkey` / `wg genpsk` use.
//!
//! * [`StaticSecret`]: an X25519 private key, stored clamped, zeroized on drop, never printed.
//! * [`PublicKey`]: an X25519 public key (32 bytes, printable as base64).
//! * [`PresharedKey`]: the optional symmetric key mixed into the handshake (all-zero = none).
//!
//! All three parse from and print to standard base64 with padding (44 characters), the exact
//! text WireGuard's tools and configuration files use.

use core::fmt;
use core::str::FromStr;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use rand_core::{CryptoRng, RngCore};
use subtle::ConstantTimeEq;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::Error;

/// Length of every key in bytes.
pub const KEY_LEN: usize = 32;
/// Length of a key encoded as base64 with padding.
pub const KEY_BASE64_LEN: usize = 44;

/// Decodes a 44-character base64 key (surrounding whitespace trimmed) into 32 bytes.
fn decode_key(s: &str) -> Result<Zeroizing<[u8; KEY_LEN]>, Error> {
    let s = s.trim();
    if s.len() != KEY_BASE64_LEN {
        return Err(Error::InvalidKey);
    }
    let mut out = Zeroizing::new([0u8; KEY_LEN]);
    // `decode_slice` refuses non-canonical trailing bits and a wrong length.
    let n = STANDARD
        .decode_slice(s.as_bytes(), &mut out[..])
        .map_err(|_| Error::InvalidKey)?;
    if n != KEY_LEN {
        return Err(Error::InvalidKey);
    }
    Ok(out)
}

fn encode_key(bytes: &[u8; KEY_LEN]) -> String {
    STANDARD.encode(bytes)
}

/// Applies X25519 clamping (RFC 7748 §5) to a scalar.
fn clamp(bytes: &mut [u8; KEY_LEN]) {
    bytes[0] &= 248;
    bytes[31] &= 127;
    bytes[31] |= 64;
}

/// An X25519 private key. Stored clamped, zeroized on drop; `Debug` never shows the bytes.
#[derive(Clone)]
pub struct StaticSecret(x25519_dalek::StaticSecret);

impl StaticSecret {
    /// Generates a fresh key from a cryptographic RNG (clamped, like `wg genkey`).
    pub fn generate(rng: &mut (impl RngCore + CryptoRng)) -> Self {
        let mut bytes = Zeroizing::new([0u8; KEY_LEN]);
        rng.fill_bytes(&mut bytes[..]);
        Self::from_bytes(*bytes)
    }

    /// Builds a key from 32 raw bytes; the scalar is clamped as X25519 requires.
    pub fn from_bytes(mut bytes: [u8; KEY_LEN]) -> Self {
        clamp(&mut bytes);
        let secret = x25519_dalek::StaticSecret::from(bytes);
        bytes.zeroize();
        Self(secret)
    }

    /// The clamped private key bytes (handle with care: they are the secret).
    pub fn to_bytes(&self) -> Zeroizing<[u8; KEY_LEN]> {
        Zeroizing::new(self.0.to_bytes())
    }

    /// Base64 text exactly as `wg genkey` prints it (without the newline).
    pub fn to_base64(&self) -> String {
        encode_key(self.0.as_bytes())
    }

    /// The matching public key (what `wg pubkey` prints for this secret).
    pub fn public_key(&self) -> PublicKey {
        PublicKey(x25519_dalek::PublicKey::from(&self.0).to_bytes())
    }

    /// X25519(self, peer). Refuses (`Error::InvalidKey`) an all-zero result, i.e. a low-order
    /// peer point that would make the shared secret predictable.
    pub fn diffie_hellman(&self, peer: &PublicKey) -> Result<Zeroizing<[u8; KEY_LEN]>, Error> {
        let shared = self
            .0
            .diffie_hellman(&x25519_dalek::PublicKey::from(peer.0));
        if !shared.was_contributory() {
            return Err(Error::InvalidKey);
        }
        Ok(Zeroizing::new(*shared.as_bytes()))
    }
}

// The wrapped `x25519_dalek::StaticSecret` zeroizes its bytes on drop.
impl ZeroizeOnDrop for StaticSecret {}

impl fmt::Debug for StaticSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StaticSecret")
            .field("public", &self.public_key())
            .finish_non_exhaustive()
    }
}

impl PartialEq for StaticSecret {
    fn eq(&self, other: &Self) -> bool {
        self.0.as_bytes().ct_eq(other.0.as_bytes()).into()
    }
}

impl Eq for StaticSecret {}

impl FromStr for StaticSecret {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        let bytes = decode_key(s)?;
        Ok(Self::from_bytes(*bytes))
    }
}

/// An X25519 public key.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct PublicKey([u8; KEY_LEN]);

impl PublicKey {
    /// Wraps 32 raw bytes (any value; low-order points are refused later by
    /// [`StaticSecret::diffie_hellman`]).
    pub const fn from_bytes(bytes: [u8; KEY_LEN]) -> Self {
        Self(bytes)
    }

    /// The raw 32 bytes.
    pub const fn as_bytes(&self) -> &[u8; KEY_LEN] {
        &self.0
    }

    /// Base64 text, as `wg pubkey` prints it.
    pub fn to_base64(&self) -> String {
        encode_key(&self.0)
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_base64())
    }
}

impl FromStr for PublicKey {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        Ok(Self(*decode_key(s)?))
    }
}

/// A pre-shared symmetric key mixed into the handshake. The all-zero key means "no PSK", as in
/// WireGuard. Zeroized on drop; `Debug` never shows the bytes.
#[derive(Clone, Default, Zeroize, ZeroizeOnDrop)]
pub struct PresharedKey([u8; KEY_LEN]);

impl PresharedKey {
    /// The all-zero key, i.e. no pre-shared key.
    pub const fn none() -> Self {
        Self([0; KEY_LEN])
    }

    /// Generates a random key (like `wg genpsk`).
    pub fn generate(rng: &mut (impl RngCore + CryptoRng)) -> Self {
        let mut k = Self::none();
        rng.fill_bytes(&mut k.0);
        k
    }

    /// Wraps 32 raw bytes.
    pub const fn from_bytes(bytes: [u8; KEY_LEN]) -> Self {
        Self(bytes)
    }

    /// The raw 32 bytes (the secret).
    pub const fn as_bytes(&self) -> &[u8; KEY_LEN] {
        &self.0
    }

    /// Whether this is the all-zero "no PSK" key.
    pub fn is_none(&self) -> bool {
        self.0.ct_eq(&[0u8; KEY_LEN]).into()
    }

    /// Base64 text, as `wg genpsk` prints it.
    pub fn to_base64(&self) -> String {
        encode_key(&self.0)
    }
}

impl fmt::Debug for PresharedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.is_none() {
            "PresharedKey(none)"
        } else {
            "PresharedKey(<redacted>)"
        })
    }
}

impl PartialEq for PresharedKey {
    fn eq(&self, other: &Self) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}

impl Eq for PresharedKey {}

impl FromStr for PresharedKey {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        Ok(Self(*decode_key(s)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex32(s: &str) -> [u8; 32] {
        let mut out = [0u8; 32];
        for (i, o) in out.iter_mut().enumerate() {
            *o = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap();
        }
        out
    }

    /// RFC 7748 §5.2: the two single-invocation X25519 test vectors (scalar, u, output).
    #[test]
    fn rfc7748_section_5_2_vectors() {
        let cases = [
            (
                "a546e36bf0527c9d3b16154b82465edd62144c0ac1fc5a18506a2244ba449ac4",
                "e6db6867583030db3594c1a424b15f7c726624ec26b3353b10a903a6d0ab1c4c",
                "c3da55379de9c6908e94ea4df28d084f32eccf03491c71f754b4075577a28552",
            ),
            (
                "4b66e9d4d1b4673c5ad22691957d6af5c11b6421e0ea01d42ca4169e7918ba0d",
                "e5210f12786811d3f4b7959d0538ae2c31dbe7106fc03c3efc4cd549c715a493",
                "95cbde9476e8907d7aade45cb4b873f88b595a68799fa152e6f8f7647aac7957",
            ),
        ];
        for (k, u, out) in cases {
            let secret = StaticSecret::from_bytes(hex32(k));
            let shared = secret
                .diffie_hellman(&PublicKey::from_bytes(hex32(u)))
                .unwrap();
            assert_eq!(*shared, hex32(out));
        }
    }

    /// RFC 7748 §6.1: the Alice/Bob Diffie-Hellman example.
    #[test]
    fn rfc7748_section_6_1_exchange() {
        let alice = StaticSecret::from_bytes(hex32(
            "77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a",
        ));
        let bob = StaticSecret::from_bytes(hex32(
            "5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb",
        ));
        let alice_pub = hex32("8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a");
        let bob_pub = hex32("de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f");
        let shared = hex32("4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742");
        assert_eq!(alice.public_key().as_bytes(), &alice_pub);
        assert_eq!(bob.public_key().as_bytes(), &bob_pub);
        assert_eq!(*alice.diffie_hellman(&bob.public_key()).unwrap(), shared);
        assert_eq!(*bob.diffie_hellman(&alice.public_key()).unwrap(), shared);
    }

    #[test]
    fn low_order_point_is_refused() {
        let secret = StaticSecret::from_bytes([7; 32]);
        // The all-zero point and the point of order 8 with u = 1 give an all-zero result.
        assert_eq!(
            secret.diffie_hellman(&PublicKey::from_bytes([0; 32])),
            Err(Error::InvalidKey)
        );
        let mut one = [0u8; 32];
        one[0] = 1;
        assert_eq!(
            secret.diffie_hellman(&PublicKey::from_bytes(one)),
            Err(Error::InvalidKey)
        );
    }

    #[test]
    fn generated_keys_are_clamped_and_round_trip() {
        let mut rng = rand_core::OsRng;
        for _ in 0..32 {
            let k = StaticSecret::generate(&mut rng);
            let b = k.to_bytes();
            assert_eq!(b[0] & 7, 0);
            assert_eq!(b[31] & 0xc0, 0x40);
            let text = k.to_base64();
            assert_eq!(text.len(), KEY_BASE64_LEN);
            let back: StaticSecret = format!("  {text}\n").parse().unwrap();
            assert!(back == k);
            let p = k.public_key();
            assert_eq!(p.to_string().parse::<PublicKey>().unwrap(), p);
        }
    }

    #[test]
    fn from_bytes_clamps() {
        let k = StaticSecret::from_bytes([0xff; 32]);
        let b = k.to_bytes();
        assert_eq!(b[0], 0xf8);
        assert_eq!(b[31], 0x7f);
        assert!(k == StaticSecret::from_bytes(*b));
    }

    #[test]
    fn bad_base64_is_refused() {
        let good = PublicKey::from_bytes([1; 32]).to_string();
        assert!(good.parse::<PublicKey>().is_ok());
        for bad in [
            "",
            &good[..43],
            &format!("{good}A"),
            &good.replace('=', "A"),
            &format!("{}!=", &good[..42]),
            // 44 chars but decodes to 33 bytes.
            "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            // non-canonical trailing bits (last symbol must encode zero low bits).
            "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAB=",
        ] {
            assert_eq!(bad.parse::<PublicKey>(), Err(Error::InvalidKey), "{bad:?}");
            assert!(bad.parse::<StaticSecret>().is_err());
            assert!(bad.parse::<PresharedKey>().is_err());
        }
    }

    #[test]
    fn debug_never_shows_secret_bytes() {
        let k = StaticSecret::from_bytes([0x42; 32]);
        let dbg = format!("{k:?}");
        assert!(!dbg.contains(&k.to_base64()), "{dbg}");
        assert!(!dbg.contains("66, 66"), "{dbg}");
        let psk = PresharedKey::from_bytes([0x42; 32]);
        let dbg = format!("{psk:?}");
        assert!(dbg.contains("redacted") && !dbg.contains("66"), "{dbg}");
        assert_eq!(format!("{:?}", PresharedKey::none()), "PresharedKey(none)");
    }

    #[test]
    fn secret_equality() {
        let a = StaticSecret::from_bytes([1; 32]);
        let b = StaticSecret::from_bytes([1; 32]);
        let c = StaticSecret::from_bytes([2; 32]);
        assert!(a == b);
        assert!(a != c);
        assert!(PresharedKey::from_bytes([3; 32]) == PresharedKey::from_bytes([3; 32]));
        assert!(PresharedKey::from_bytes([3; 32]) != PresharedKey::none());
        assert!(PresharedKey::none().is_none());
    }
}
