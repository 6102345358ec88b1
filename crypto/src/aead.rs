//! ChaCha20-Poly1305 as WireGuard uses it, with interchangeable backends.
//!
//! WireGuard's AEAD nonce is 4 zero bytes followed by the 64-bit message counter in
//! little-endian order. [`Aead`] takes the counter and builds that nonce itself; every call
//! works in place on the caller's buffer with a detached 16-byte tag, so the transport path
//! never copies or allocates.
//!
//! Backends (all ChaCha20-Poly1305, RFC 8439):
//! - [`RustCryptoAead`]: the pure-Rust `chacha20poly1305` crate, always compiled (it also
//!   provides XChaCha20-Poly1305 for cookies: [`xseal`] / [`xopen`]).
//! - `RingAead` (cargo feature `aead-ring`, on by default): `ring`'s assembly implementation.
//! - `AwsLcAead` (cargo feature `aead-aws-lc`): AWS-LC through `aws-lc-rs`.
//!
//! [`DefaultAead`] is chosen by measurement (`cargo bench -p uring-tunnel-crypto --features
//! aead-aws-lc --bench aead`, and the min-of-rounds `--example aead_ab`). On the project's
//! AMD EPYC (AVX2) machines, 1420-byte packets, portable build: `ring` seals at ≈ 1.65 GB/s
//! and opens at ≈ 1.75 GB/s, AWS-LC within 1 % of that, RustCrypto ≈ 0.48 GB/s (≈ 0.9 GB/s
//! with `-C target-cpu=x86-64-v3`). `ring` is the default (feature `aead-ring`): as fast as
//! AWS-LC and a much lighter build. Enabling `aead-aws-lc` makes AWS-LC the default; with
//! neither feature, RustCrypto is.

use crate::Error;
use chacha20poly1305::aead::{AeadInPlace, KeyInit};
use chacha20poly1305::{ChaCha20Poly1305, XChaCha20Poly1305};

/// Length of a Poly1305 authentication tag.
pub const TAG_LEN: usize = 16;
/// Length of a ChaCha20-Poly1305 key.
pub const KEY_LEN: usize = 32;
/// Length of the ChaCha20-Poly1305 nonce (IETF variant).
pub const NONCE_LEN: usize = 12;
/// Length of the XChaCha20-Poly1305 nonce.
pub const XNONCE_LEN: usize = 24;

/// The WireGuard nonce for `counter`: 4 zero bytes, then the counter as u64 little-endian.
#[inline]
pub const fn wg_nonce(counter: u64) -> [u8; NONCE_LEN] {
    let c = counter.to_le_bytes();
    [0, 0, 0, 0, c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]
}

/// ChaCha20-Poly1305 with WireGuard's counter nonce, in place, detached tag.
///
/// Implementations hold an expanded key and are shared between threads by reference.
pub trait Aead: Send + Sync + Sized + 'static {
    /// Builds a cipher for `key`.
    fn new(key: &[u8; KEY_LEN]) -> Self;

    /// Encrypts `buf` in place and returns the tag. The nonce is [`wg_nonce`]`(counter)`.
    ///
    /// # Panics
    /// Only if `buf` exceeds ChaCha20's 256 GiB message limit, which no caller can reach
    /// with a datagram-sized buffer.
    fn seal_in_place(&self, counter: u64, aad: &[u8], buf: &mut [u8]) -> [u8; TAG_LEN];

    /// Verifies `tag` over `aad` and the ciphertext in `buf`, then decrypts `buf` in place.
    ///
    /// On `Err(Error::DecryptFailed)` the contents of `buf` are unspecified (a backend may
    /// have decrypted them already); callers must discard the buffer.
    fn open_in_place(
        &self,
        counter: u64,
        aad: &[u8],
        buf: &mut [u8],
        tag: &[u8; TAG_LEN],
    ) -> Result<(), Error>;
}

/// The fastest backend compiled into this build (see the module docs).
#[cfg(feature = "aead-aws-lc")]
pub type DefaultAead = AwsLcAead;
/// The fastest backend compiled into this build (see the module docs).
#[cfg(all(feature = "aead-ring", not(feature = "aead-aws-lc")))]
pub type DefaultAead = RingAead;
/// The fastest backend compiled into this build (see the module docs).
#[cfg(not(any(feature = "aead-ring", feature = "aead-aws-lc")))]
pub type DefaultAead = RustCryptoAead;

/// Name of the [`DefaultAead`] backend, for logs and benchmark reports.
pub const DEFAULT_AEAD_NAME: &str = if cfg!(feature = "aead-aws-lc") {
    "aws-lc-rs"
} else if cfg!(feature = "aead-ring") {
    "ring"
} else {
    "rustcrypto"
};

// ---------------------------------------------------------------------------------------
// RustCrypto
// ---------------------------------------------------------------------------------------

/// ChaCha20-Poly1305 from the pure-Rust `chacha20poly1305` crate (key zeroized on drop).
#[derive(Clone)]
pub struct RustCryptoAead {
    cipher: ChaCha20Poly1305,
}

impl core::fmt::Debug for RustCryptoAead {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("RustCryptoAead { .. }")
    }
}

impl RustCryptoAead {
    /// Seals with an explicit 12-byte nonce (used by known-answer tests).
    pub(crate) fn seal_raw(
        &self,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        buf: &mut [u8],
    ) -> [u8; TAG_LEN] {
        let tag = self
            .cipher
            .encrypt_in_place_detached(nonce.into(), aad, buf)
            .expect("ChaCha20-Poly1305 message longer than 256 GiB");
        tag.into()
    }

    /// Opens with an explicit 12-byte nonce (used by known-answer tests).
    pub(crate) fn open_raw(
        &self,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        buf: &mut [u8],
        tag: &[u8; TAG_LEN],
    ) -> Result<(), Error> {
        self.cipher
            .decrypt_in_place_detached(nonce.into(), aad, buf, tag.into())
            .map_err(|_| Error::DecryptFailed)
    }
}

impl Aead for RustCryptoAead {
    fn new(key: &[u8; KEY_LEN]) -> Self {
        Self {
            cipher: ChaCha20Poly1305::new(key.into()),
        }
    }

    #[inline]
    fn seal_in_place(&self, counter: u64, aad: &[u8], buf: &mut [u8]) -> [u8; TAG_LEN] {
        self.seal_raw(&wg_nonce(counter), aad, buf)
    }

    #[inline]
    fn open_in_place(
        &self,
        counter: u64,
        aad: &[u8],
        buf: &mut [u8],
        tag: &[u8; TAG_LEN],
    ) -> Result<(), Error> {
        self.open_raw(&wg_nonce(counter), aad, buf, tag)
    }
}

// ---------------------------------------------------------------------------------------
// ring
// ---------------------------------------------------------------------------------------

/// ChaCha20-Poly1305 from `ring` (assembly, runtime CPU feature detection).
///
/// `ring` does not zeroize its expanded key on drop; AWS-LC and RustCrypto do.
#[cfg(feature = "aead-ring")]
pub struct RingAead {
    key: ring::aead::LessSafeKey,
}

#[cfg(feature = "aead-ring")]
impl core::fmt::Debug for RingAead {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("RingAead { .. }")
    }
}

#[cfg(feature = "aead-ring")]
impl RingAead {
    /// Seals with an explicit 12-byte nonce (used by known-answer tests).
    pub(crate) fn seal_raw(
        &self,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        buf: &mut [u8],
    ) -> [u8; TAG_LEN] {
        use ring::aead::{Aad, Nonce};
        let tag = self
            .key
            .seal_in_place_separate_tag(Nonce::assume_unique_for_key(*nonce), Aad::from(aad), buf)
            .expect("ChaCha20-Poly1305 message longer than 256 GiB");
        let mut out = [0u8; TAG_LEN];
        out.copy_from_slice(tag.as_ref());
        out
    }

    /// Opens with an explicit 12-byte nonce (used by known-answer tests).
    pub(crate) fn open_raw(
        &self,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        buf: &mut [u8],
        tag: &[u8; TAG_LEN],
    ) -> Result<(), Error> {
        use ring::aead::{Aad, Nonce, Tag};
        self.key
            .open_in_place_separate_tag(
                Nonce::assume_unique_for_key(*nonce),
                Aad::from(aad),
                Tag::from(*tag),
                buf,
                0..,
            )
            .map(|_| ())
            .map_err(|_| Error::DecryptFailed)
    }
}

#[cfg(feature = "aead-ring")]
impl Aead for RingAead {
    fn new(key: &[u8; KEY_LEN]) -> Self {
        let unbound = ring::aead::UnboundKey::new(&ring::aead::CHACHA20_POLY1305, key)
            .expect("a 32-byte key is valid for ChaCha20-Poly1305");
        Self {
            key: ring::aead::LessSafeKey::new(unbound),
        }
    }

    #[inline]
    fn seal_in_place(&self, counter: u64, aad: &[u8], buf: &mut [u8]) -> [u8; TAG_LEN] {
        self.seal_raw(&wg_nonce(counter), aad, buf)
    }

    #[inline]
    fn open_in_place(
        &self,
        counter: u64,
        aad: &[u8],
        buf: &mut [u8],
        tag: &[u8; TAG_LEN],
    ) -> Result<(), Error> {
        self.open_raw(&wg_nonce(counter), aad, buf, tag)
    }
}

// ---------------------------------------------------------------------------------------
// aws-lc-rs
// ---------------------------------------------------------------------------------------

/// ChaCha20-Poly1305 from AWS-LC through `aws-lc-rs` (key context cleansed on drop).
#[cfg(feature = "aead-aws-lc")]
pub struct AwsLcAead {
    key: aws_lc_rs::aead::LessSafeKey,
}

#[cfg(feature = "aead-aws-lc")]
impl core::fmt::Debug for AwsLcAead {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("AwsLcAead { .. }")
    }
}

#[cfg(feature = "aead-aws-lc")]
impl AwsLcAead {
    /// Seals with an explicit 12-byte nonce (used by known-answer tests).
    pub(crate) fn seal_raw(
        &self,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        buf: &mut [u8],
    ) -> [u8; TAG_LEN] {
        use aws_lc_rs::aead::{Aad, Nonce};
        let tag = self
            .key
            .seal_in_place_separate_tag(Nonce::assume_unique_for_key(*nonce), Aad::from(aad), buf)
            .expect("ChaCha20-Poly1305 message longer than 256 GiB");
        let mut out = [0u8; TAG_LEN];
        out.copy_from_slice(tag.as_ref());
        out
    }

    /// Opens with an explicit 12-byte nonce (used by known-answer tests).
    pub(crate) fn open_raw(
        &self,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        buf: &mut [u8],
        tag: &[u8; TAG_LEN],
    ) -> Result<(), Error> {
        use aws_lc_rs::aead::{Aad, Nonce};
        self.key
            .open_in_place_separate_tag(
                Nonce::assume_unique_for_key(*nonce),
                Aad::from(aad),
                tag,
                buf,
            )
            .map(|_| ())
            .map_err(|_| Error::DecryptFailed)
    }
}

#[cfg(feature = "aead-aws-lc")]
impl Aead for AwsLcAead {
    fn new(key: &[u8; KEY_LEN]) -> Self {
        let unbound = aws_lc_rs::aead::UnboundKey::new(&aws_lc_rs::aead::CHACHA20_POLY1305, key)
            .expect("a 32-byte key is valid for ChaCha20-Poly1305");
        Self {
            key: aws_lc_rs::aead::LessSafeKey::new(unbound),
        }
    }

    #[inline]
    fn seal_in_place(&self, counter: u64, aad: &[u8], buf: &mut [u8]) -> [u8; TAG_LEN] {
        self.seal_raw(&wg_nonce(counter), aad, buf)
    }

    #[inline]
    fn open_in_place(
        &self,
        counter: u64,
        aad: &[u8],
        buf: &mut [u8],
        tag: &[u8; TAG_LEN],
    ) -> Result<(), Error> {
        self.open_raw(&wg_nonce(counter), aad, buf, tag)
    }
}

// ---------------------------------------------------------------------------------------
// XChaCha20-Poly1305 (cookie replies)
// ---------------------------------------------------------------------------------------

/// XChaCha20-Poly1305 seal in place with a detached tag (WireGuard cookie replies).
///
/// # Panics
/// Only if `buf` exceeds the 256 GiB message limit.
pub fn xseal(
    key: &[u8; KEY_LEN],
    nonce: &[u8; XNONCE_LEN],
    aad: &[u8],
    buf: &mut [u8],
) -> [u8; TAG_LEN] {
    XChaCha20Poly1305::new(key.into())
        .encrypt_in_place_detached(nonce.into(), aad, buf)
        .expect("XChaCha20-Poly1305 message longer than 256 GiB")
        .into()
}

/// XChaCha20-Poly1305 open in place with a detached tag (WireGuard cookie replies).
///
/// On error `buf` is left as it was (RustCrypto verifies before decrypting).
pub fn xopen(
    key: &[u8; KEY_LEN],
    nonce: &[u8; XNONCE_LEN],
    aad: &[u8],
    buf: &mut [u8],
    tag: &[u8; TAG_LEN],
) -> Result<(), Error> {
    XChaCha20Poly1305::new(key.into())
        .decrypt_in_place_detached(nonce.into(), aad, buf, tag.into())
        .map_err(|_| Error::DecryptFailed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_chacha::ChaCha20Rng;
    use rand_core::{RngCore, SeedableRng};

    fn hex(s: &str) -> Vec<u8> {
        let s: Vec<u8> = s.bytes().filter(|b| b.is_ascii_hexdigit()).collect();
        s.chunks(2)
            .map(|p| u8::from_str_radix(core::str::from_utf8(p).unwrap(), 16).unwrap())
            .collect()
    }

    // RFC 8439 §2.8.2: AEAD_CHACHA20_POLY1305 example.
    const RFC_KEY: &str = "808182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9f";
    const RFC_NONCE: &str = "070000004041424344454647";
    const RFC_AAD: &str = "50515253c0c1c2c3c4c5c6c7";
    const RFC_PT: &[u8] =
        b"Ladies and Gentlemen of the class of '99: If I could offer you only one \
tip for the future, sunscreen would be it.";
    const RFC_CT: &str = "d31a8d34648e60db7b86afbc53ef7ec2a4aded51296e08fea9e2b5a736ee62d6\
3dbea45e8ca9671282fafb69da92728b1a71de0a9e060b2905d6a5b67ecd3b36\
92ddbd7f2d778b8c9803aee328091b58fab324e4fad675945585808b4831d7bc\
3ff4def08e4b7a9de576d26586cec64b6116";
    const RFC_TAG: &str = "1ae10b594f09e26a7e902ecbd0600691";

    // draft-irtf-cfrg-xchacha §A.3.1 (same key, aad and plaintext as above).
    const X_NONCE: &str = "404142434445464748494a4b4c4d4e4f5051525354555657";
    const X_CT: &str = "bd6d179d3e83d43b9576579493c0e939572a1700252bfaccbed2902c21396cbb\
731c7f1b0b4aa6440bf3a82f4eda7e39ae64c6708c54c216cb96b72e1213b452\
2f8c9ba40db5d945b11b69b982c1bb9e3f3fac2bc369488f76b2383565d3fff9\
21f9664c97637da9768812f615c68b13b52e";
    const X_TAG: &str = "c0875924c1c7987947deafd8780acf49";

    fn arr<const N: usize>(v: &[u8]) -> [u8; N] {
        v.try_into().unwrap()
    }

    /// Runs `$body` once per compiled backend with `$t` bound to the backend type.
    macro_rules! for_each_backend {
        ($t:ident => $body:block) => {{
            {
                type $t = RustCryptoAead;
                $body
            }
            #[cfg(feature = "aead-ring")]
            {
                type $t = RingAead;
                $body
            }
            #[cfg(feature = "aead-aws-lc")]
            {
                type $t = AwsLcAead;
                $body
            }
        }};
    }

    #[test]
    fn wg_nonce_layout() {
        assert_eq!(
            wg_nonce(0x0807_0605_0403_0201),
            [0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8]
        );
        assert_eq!(wg_nonce(0), [0; 12]);
    }

    #[test]
    fn rfc8439_2_8_2_known_answer_every_backend() {
        let key: [u8; 32] = arr(&hex(RFC_KEY));
        let nonce: [u8; 12] = arr(&hex(RFC_NONCE));
        let aad = hex(RFC_AAD);
        let ct = hex(RFC_CT);
        let tag: [u8; 16] = arr(&hex(RFC_TAG));
        for_each_backend!(B => {
            let c = <B as Aead>::new(&key);
            let mut buf = RFC_PT.to_vec();
            let t = c.seal_raw(&nonce, &aad, &mut buf);
            assert_eq!(buf, ct, "{}", core::any::type_name::<B>());
            assert_eq!(t, tag, "{}", core::any::type_name::<B>());
            c.open_raw(&nonce, &aad, &mut buf, &tag).unwrap();
            assert_eq!(buf, RFC_PT);
            let mut bad = ct.clone();
            bad[0] ^= 0x01;
            assert_eq!(c.open_raw(&nonce, &aad, &mut bad, &tag), Err(Error::DecryptFailed));
        });
    }

    /// The trait's counter nonce equals the raw seal with a nonce built independently here,
    /// and the RustCrypto reference with that explicit nonce opens every backend's output.
    #[test]
    fn counter_nonce_matches_explicit_nonce_every_backend() {
        let key = [0x42u8; 32];
        let reference = RustCryptoAead::new(&key);
        for counter in [0u64, 1, 0x0102_0304_0506_0708, u64::MAX - 1] {
            let mut explicit = [0u8; 12];
            explicit[4..].copy_from_slice(&counter.to_le_bytes());
            for_each_backend!(B => {
                let c = <B as Aead>::new(&key);
                let mut a = b"wireguard packet payload".to_vec();
                let mut b = a.clone();
                let ta = c.seal_in_place(counter, b"", &mut a);
                let tb = c.seal_raw(&explicit, b"", &mut b);
                assert_eq!((&a, ta), (&b, tb));
                reference.open_raw(&explicit, b"", &mut a, &ta).unwrap();
                assert_eq!(a, b"wireguard packet payload");
            });
        }
    }

    #[test]
    fn backends_agree_on_random_inputs_and_reject_bit_flips() {
        let mut rng = ChaCha20Rng::seed_from_u64(7);
        for len in [
            0usize, 1, 15, 16, 17, 63, 64, 65, 255, 256, 1420, 1500, 4096,
        ] {
            let mut key = [0u8; 32];
            rng.fill_bytes(&mut key);
            let counter = rng.next_u64();
            let mut aad = vec![0u8; (rng.next_u32() % 40) as usize];
            rng.fill_bytes(&mut aad);
            let mut pt = vec![0u8; len];
            rng.fill_bytes(&mut pt);

            let mut want = pt.clone();
            let want_tag = RustCryptoAead::new(&key).seal_in_place(counter, &aad, &mut want);

            for_each_backend!(B => {
                let c = <B as Aead>::new(&key);
                let mut buf = pt.clone();
                let tag = c.seal_in_place(counter, &aad, &mut buf);
                assert_eq!(buf, want, "{} len {len}", core::any::type_name::<B>());
                assert_eq!(tag, want_tag);

                let mut ok = buf.clone();
                c.open_in_place(counter, &aad, &mut ok, &tag).unwrap();
                assert_eq!(ok, pt);

                // Wrong counter.
                let mut w = buf.clone();
                assert_eq!(c.open_in_place(counter ^ 1, &aad, &mut w, &tag), Err(Error::DecryptFailed));
                // Flipped ciphertext bit.
                if len > 0 {
                    let mut w = buf.clone();
                    let i = (rng.next_u32() as usize) % len;
                    w[i] ^= 1 << (rng.next_u32() % 8);
                    assert_eq!(c.open_in_place(counter, &aad, &mut w, &tag), Err(Error::DecryptFailed));
                }
                // Flipped tag bit.
                let mut t = tag;
                t[(rng.next_u32() % 16) as usize] ^= 1 << (rng.next_u32() % 8);
                let mut w = buf.clone();
                assert_eq!(c.open_in_place(counter, &aad, &mut w, &t), Err(Error::DecryptFailed));
                // Flipped or extended aad.
                let mut a2 = aad.clone();
                if a2.is_empty() { a2.push(0) } else { a2[0] ^= 0x80 }
                let mut w = buf.clone();
                assert_eq!(c.open_in_place(counter, &a2, &mut w, &tag), Err(Error::DecryptFailed));
                // Truncated ciphertext.
                if len > 0 {
                    let mut w = buf[..len - 1].to_vec();
                    assert_eq!(c.open_in_place(counter, &aad, &mut w, &tag), Err(Error::DecryptFailed));
                }
            });
        }
    }

    #[test]
    fn xchacha_known_answer_and_tamper() {
        let key: [u8; 32] = arr(&hex(RFC_KEY));
        let nonce: [u8; 24] = arr(&hex(X_NONCE));
        let aad = hex(RFC_AAD);
        let mut buf = RFC_PT.to_vec();
        let tag = xseal(&key, &nonce, &aad, &mut buf);
        assert_eq!(buf, hex(X_CT));
        assert_eq!(tag, arr::<16>(&hex(X_TAG)));
        let mut bad = buf.clone();
        bad[3] ^= 4;
        assert_eq!(
            xopen(&key, &nonce, &aad, &mut bad, &tag),
            Err(Error::DecryptFailed)
        );
        let mut bad_nonce = nonce;
        bad_nonce[23] ^= 1;
        let mut b2 = buf.clone();
        assert_eq!(
            xopen(&key, &bad_nonce, &aad, &mut b2, &tag),
            Err(Error::DecryptFailed)
        );
        xopen(&key, &nonce, &aad, &mut buf, &tag).unwrap();
        assert_eq!(buf, RFC_PT);
    }

    #[test]
    fn default_backend_name_matches_type() {
        let name = core::any::type_name::<DefaultAead>();
        let expect = match DEFAULT_AEAD_NAME {
            "aws-lc-rs" => "AwsLcAead",
            "ring" => "RingAead",
            _ => "RustCryptoAead",
        };
        assert!(name.ends_with(expect), "{name} vs {DEFAULT_AEAD_NAME}");
    }
}
