//! The symmetric primitives of WireGuard's Noise_IKpsk2 instantiation (whitepaper §5.4):
//! HASH (BLAKE2s-256), MAC (keyed BLAKE2s-128), HMAC (HMAC-BLAKE2s), KDF1/2/3 (HKDF over
//! HMAC-BLAKE2s), the AEAD used for handshake fields (ChaCha20-Poly1305, counter-0 nonce,
//! AAD = running hash) and the protocol's constant labels.

use blake2::digest::{Digest, FixedOutput, KeyInit, Mac};
use blake2::{Blake2s256, Blake2sMac};
use chacha20poly1305::aead::AeadInPlace;
use chacha20poly1305::{ChaCha20Poly1305, XChaCha20Poly1305};
use zeroize::{Zeroize, Zeroizing};

use crate::Error;

/// The Noise protocol name, hashed into the initial chaining key.
pub const CONSTRUCTION: &[u8] = b"Noise_IKpsk2_25519_ChaChaPoly_BLAKE2s";
/// WireGuard's prologue/identifier, hashed into the initial handshake hash.
pub const IDENTIFIER: &[u8] = b"WireGuard v1 zx2c4 Jason@zx2c4.com";
/// Label for the MAC1 key: `HASH(LABEL_MAC1 || responder static public key)`.
pub const LABEL_MAC1: &[u8] = b"mac1----";
/// Label for the cookie-reply key: `HASH(LABEL_COOKIE || responder static public key)`.
pub const LABEL_COOKIE: &[u8] = b"cookie--";

/// Output length of HASH / HMAC / KDF.
pub const HASH_LEN: usize = 32;
/// Output length of MAC.
pub const MAC_LEN: usize = 16;
/// Poly1305 tag length.
pub const TAG_LEN: usize = 16;

const BLOCK_LEN: usize = 64;

/// HASH(parts[0] || parts[1] || ...) = BLAKE2s-256.
pub fn hash(parts: &[&[u8]]) -> [u8; HASH_LEN] {
    let mut h = Blake2s256::new();
    for p in parts {
        Digest::update(&mut h, p);
    }
    h.finalize().into()
}

/// MAC(key, parts[0] || ...) = keyed BLAKE2s with a 16-byte output (MAC1, cookie values).
pub fn mac(key: &[u8; HASH_LEN], parts: &[&[u8]]) -> [u8; MAC_LEN] {
    mac_with_key(key, parts)
}

/// MAC keyed with a 16-byte cookie (MAC2 = MAC(cookie, message up to mac2)).
pub fn mac_cookie(cookie: &[u8; MAC_LEN], parts: &[&[u8]]) -> [u8; MAC_LEN] {
    mac_with_key(cookie, parts)
}

fn mac_with_key(key: &[u8], parts: &[&[u8]]) -> [u8; MAC_LEN] {
    // Keys of 1..=32 bytes are valid for BLAKE2s; both callers pass 16 or 32 bytes.
    let Ok(mut m) = <Blake2sMac<blake2::digest::consts::U16> as KeyInit>::new_from_slice(key)
    else {
        unreachable_key_len()
    };
    for p in parts {
        Mac::update(&mut m, p);
    }
    m.finalize_fixed().into()
}

#[cold]
fn unreachable_key_len() -> ! {
    // Only reachable if a caller passed a key longer than 32 bytes, which the signatures of
    // `mac` and `mac_cookie` rule out.
    unreachable!("BLAKE2s MAC key longer than 32 bytes")
}

/// HMAC-BLAKE2s(key, parts[0] || ...) with the 64-byte BLAKE2s block (RFC 2104).
pub fn hmac(key: &[u8; HASH_LEN], parts: &[&[u8]]) -> [u8; HASH_LEN] {
    let mut pad = Zeroizing::new([0u8; BLOCK_LEN]);
    pad[..HASH_LEN].copy_from_slice(key);
    for b in pad.iter_mut() {
        *b ^= 0x36;
    }
    let mut inner = Blake2s256::new();
    Digest::update(&mut inner, &pad[..]);
    for p in parts {
        Digest::update(&mut inner, p);
    }
    let mut inner_out: Zeroizing<[u8; HASH_LEN]> = Zeroizing::new(inner.finalize().into());
    for b in pad.iter_mut() {
        *b ^= 0x36 ^ 0x5c;
    }
    let mut outer = Blake2s256::new();
    Digest::update(&mut outer, &pad[..]);
    Digest::update(&mut outer, &inner_out[..]);
    inner_out.zeroize();
    outer.finalize().into()
}

/// KDF1(key, input) = τ1 where τ0 = HMAC(key, input), τ1 = HMAC(τ0, 0x1).
pub fn kdf1(key: &[u8; HASH_LEN], input: &[u8]) -> Zeroizing<[u8; HASH_LEN]> {
    let t0 = Zeroizing::new(hmac(key, &[input]));
    Zeroizing::new(hmac(&t0, &[&[1]]))
}

/// KDF2(key, input) = (τ1, τ2), τ2 = HMAC(τ0, τ1 || 0x2).
pub fn kdf2(
    key: &[u8; HASH_LEN],
    input: &[u8],
) -> (Zeroizing<[u8; HASH_LEN]>, Zeroizing<[u8; HASH_LEN]>) {
    let t0 = Zeroizing::new(hmac(key, &[input]));
    let t1 = Zeroizing::new(hmac(&t0, &[&[1]]));
    let t2 = Zeroizing::new(hmac(&t0, &[&t1[..], &[2]]));
    (t1, t2)
}

/// KDF3(key, input) = (τ1, τ2, τ3), τ3 = HMAC(τ0, τ2 || 0x3).
#[allow(clippy::type_complexity)]
pub fn kdf3(
    key: &[u8; HASH_LEN],
    input: &[u8],
) -> (
    Zeroizing<[u8; HASH_LEN]>,
    Zeroizing<[u8; HASH_LEN]>,
    Zeroizing<[u8; HASH_LEN]>,
) {
    let t0 = Zeroizing::new(hmac(key, &[input]));
    let t1 = Zeroizing::new(hmac(&t0, &[&[1]]));
    let t2 = Zeroizing::new(hmac(&t0, &[&t1[..], &[2]]));
    let t3 = Zeroizing::new(hmac(&t0, &[&t2[..], &[3]]));
    (t1, t2, t3)
}

/// The initial chaining key `HASH(CONSTRUCTION)`.
pub fn initial_chaining_key() -> [u8; HASH_LEN] {
    hash(&[CONSTRUCTION])
}

/// The initial handshake hash `HASH(HASH(CONSTRUCTION) || IDENTIFIER)`.
pub fn initial_hash() -> [u8; HASH_LEN] {
    hash(&[&initial_chaining_key(), IDENTIFIER])
}

/// Handshake AEAD: ChaCha20-Poly1305 with a zero nonce (counter 0), encrypting `buf` in place
/// and returning the tag.
pub fn aead_seal(key: &[u8; HASH_LEN], aad: &[u8], buf: &mut [u8]) -> [u8; TAG_LEN] {
    let cipher = ChaCha20Poly1305::new(key.into());
    let nonce = [0u8; 12];
    match cipher.encrypt_in_place_detached((&nonce).into(), aad, buf) {
        Ok(tag) => tag.into(),
        // Only fails for inputs longer than 256 GiB; handshake fields are at most 32 bytes.
        Err(_) => unreachable!("ChaCha20-Poly1305 input too long"),
    }
}

/// Inverse of [`aead_seal`]: verifies `tag` and decrypts `buf` in place.
/// `Err(DecryptFailed)` if the tag does not verify (then `buf` is unspecified).
pub fn aead_open(
    key: &[u8; HASH_LEN],
    aad: &[u8],
    buf: &mut [u8],
    tag: &[u8; TAG_LEN],
) -> Result<(), Error> {
    let cipher = ChaCha20Poly1305::new(key.into());
    let nonce = [0u8; 12];
    cipher
        .decrypt_in_place_detached((&nonce).into(), aad, buf, tag.into())
        .map_err(|_| Error::DecryptFailed)
}

/// XChaCha20-Poly1305 seal in place (cookie replies), returning the tag.
pub fn xaead_seal(
    key: &[u8; HASH_LEN],
    nonce: &[u8; 24],
    aad: &[u8],
    buf: &mut [u8],
) -> [u8; TAG_LEN] {
    let cipher = XChaCha20Poly1305::new(key.into());
    match cipher.encrypt_in_place_detached(nonce.into(), aad, buf) {
        Ok(tag) => tag.into(),
        Err(_) => unreachable!("XChaCha20-Poly1305 input too long"),
    }
}

/// XChaCha20-Poly1305 open in place (cookie replies). `Err(DecryptFailed)` on a bad tag.
pub fn xaead_open(
    key: &[u8; HASH_LEN],
    nonce: &[u8; 24],
    aad: &[u8],
    buf: &mut [u8],
    tag: &[u8; TAG_LEN],
) -> Result<(), Error> {
    let cipher = XChaCha20Poly1305::new(key.into());
    cipher
        .decrypt_in_place_detached(nonce.into(), aad, buf, tag.into())
        .map_err(|_| Error::DecryptFailed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    /// RFC 7693 Appendix B: BLAKE2s-256("abc").
    #[test]
    fn blake2s_rfc7693_abc() {
        assert_eq!(
            hash(&[b"abc"]).to_vec(),
            hex("508c5e8c327c14e2e1a72ba34eeb452f37458b209ed63a294d999b4c86675982")
        );
        // Split input gives the same digest.
        assert_eq!(hash(&[b"a", b"", b"bc"]), hash(&[b"abc"]));
    }

    /// Keyed BLAKE2s known answers from the BLAKE2 reference KAT (`blake2s-kat.txt`): key =
    /// 00..1f, message empty and `00`, 32-byte output.
    #[test]
    fn keyed_blake2s_reference_kat() {
        let key: Vec<u8> = (0u8..32).collect();
        let mut m =
            <Blake2sMac<blake2::digest::consts::U32> as KeyInit>::new_from_slice(&key).unwrap();
        Mac::update(&mut m, b"");
        let out: [u8; 32] = m.finalize_fixed().into();
        assert_eq!(
            out.to_vec(),
            hex("48a8997da407876b3d79c0d92325ad3b89cbb754d86ab71aee047ad345fd2c49")
        );
        let mut m =
            <Blake2sMac<blake2::digest::consts::U32> as KeyInit>::new_from_slice(&key).unwrap();
        Mac::update(&mut m, &[0u8]);
        let out: [u8; 32] = m.finalize_fixed().into();
        assert_eq!(
            out.to_vec(),
            hex("40d15fee7c328830166ac3f918650f807e7e01e177258cdc0a39b11f598066f1")
        );
    }

    /// The initial chaining key and hash every WireGuard implementation derives.
    #[test]
    fn initial_chaining_key_and_hash() {
        assert_eq!(
            initial_chaining_key().to_vec(),
            hex("60e26daef327efc02ec335e2a025d2d016eb4206f87277f52d38d1988b78cd36")
        );
        assert_eq!(
            initial_hash().to_vec(),
            hex("2211b361081ac566691243db458ad5322d9c6c662293e8b70ee19c65ba079ef3")
        );
    }

    /// Our HMAC agrees with the `hmac` crate's generic HMAC over BLAKE2s-256.
    #[test]
    fn hmac_matches_generic_hmac() {
        use hmac::SimpleHmac;
        for (k, msg) in [([0u8; 32], &b""[..]), ([7u8; 32], &b"hello world"[..])] {
            let mut ref_mac = <SimpleHmac<Blake2s256> as hmac::Mac>::new_from_slice(&k).unwrap();
            hmac::Mac::update(&mut ref_mac, msg);
            let expected: [u8; 32] = hmac::Mac::finalize(ref_mac).into_bytes().into();
            assert_eq!(hmac(&k, &[msg]), expected);
        }
    }

    #[test]
    fn kdf_outputs_chain() {
        let key = [9u8; 32];
        let (a1, a2) = kdf2(&key, b"input");
        let (b1, b2, b3) = kdf3(&key, b"input");
        assert_eq!(*kdf1(&key, b"input"), *a1);
        assert_eq!(*a1, *b1);
        assert_eq!(*a2, *b2);
        let t0 = hmac(&key, &[b"input"]);
        assert_eq!(*b3, hmac(&t0, &[&b2[..], &[3]]));
        assert_ne!(*b1, *b2);
        assert_ne!(*b2, *b3);
    }

    #[test]
    fn mac_is_truncation_free_blake2s_128() {
        // MAC must be BLAKE2s with a 16-byte output length parameter, not a truncated 32-byte
        // MAC (the output length is part of the parameter block).
        let key = [1u8; 32];
        let m = mac(&key, &[b"x"]);
        let mut m32 =
            <Blake2sMac<blake2::digest::consts::U32> as KeyInit>::new_from_slice(&key).unwrap();
        Mac::update(&mut m32, b"x");
        let full: [u8; 32] = m32.finalize_fixed().into();
        assert_ne!(&m[..], &full[..16]);
        assert_eq!(mac(&key, &[b"x"]), mac(&key, &[b"", b"x"]));
    }

    #[test]
    fn aead_round_trip_and_tamper() {
        let key = [3u8; 32];
        let mut buf = *b"sixteen byte msg";
        let tag = aead_seal(&key, b"aad", &mut buf);
        assert_ne!(&buf, b"sixteen byte msg");
        let mut copy = buf;
        aead_open(&key, b"aad", &mut copy, &tag).unwrap();
        assert_eq!(&copy, b"sixteen byte msg");
        let mut copy = buf;
        assert_eq!(
            aead_open(&key, b"aaD", &mut copy, &tag),
            Err(Error::DecryptFailed)
        );
        let nonce = [5u8; 24];
        let mut x = *b"cookie-cookie-16";
        let tag = xaead_seal(&key, &nonce, b"m", &mut x);
        xaead_open(&key, &nonce, b"m", &mut x, &tag).unwrap();
        assert_eq!(&x, b"cookie-cookie-16");
    }
}
