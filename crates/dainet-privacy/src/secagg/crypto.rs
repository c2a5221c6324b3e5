//! The cryptographic pieces of SecAgg+: key pairs, key agreement, share envelopes and the
//! mask generator.
//!
//! - Key pairs are X25519 (RFC 7748) static secrets drawn from the caller's CSPRNG (a
//!   [`ChaCha20Rng`](rand_chacha::ChaCha20Rng) seeded by the caller); nothing here reads
//!   the operating system's randomness.
//! - Key agreement is X25519 followed by HKDF-SHA256 (RFC 5869) with salt
//!   `"dainet-secagg+ v1"` and info `label ‖ round ‖ min(a, b) ‖ max(a, b)` (little-endian
//!   `u32`s), giving a 32-byte key bound to its purpose, the round and the unordered pair.
//!   Agreements with a low-order public key (an all-zero shared secret) are refused.
//! - Share envelopes are ChaCha20-Poly1305 (RFC 8439) under the pair's envelope key with the
//!   nonce `sender ‖ recipient ‖ 0` and associated data `"dainet-secagg+ share" ‖ round ‖
//!   sender ‖ recipient`: an envelope moved to another round, sender or recipient fails to
//!   open. Each key is used for exactly two messages (one per direction), whose nonces differ.
//! - The mask generator is AES-128 in counter mode (NIST SP 800-38A: the 128-bit counter
//!   block is incremented as one big-endian integer) with key = the seed's first 16 bytes and
//!   initial counter block = its last 16 bytes; its keystream is read as little-endian `u32`s
//!   and added to (or subtracted from) the vector modulo 2^32, 1024 words at a time through a
//!   stack buffer. The `aes` crate picks AES-NI, or VAES on 256/512-bit vectors, at run time
//!   (a constant-time software fallback elsewhere). Every seed is single-use: a pairwise seed
//!   is bound by HKDF to its round and pair, a self-mask seed is fresh per client and round.
//!   Why this is secure, and what was measured against ChaCha20/12/8, is in
//!   `docs/privacy.md` ("The mask generator").

use aes::cipher::{KeyIvInit, StreamCipher};
use chacha20poly1305::aead::{Aead, Payload};
use chacha20poly1305::{ChaCha20Poly1305, KeyInit};
use hkdf::Hkdf;
use rand_core::CryptoRng;
use sha2::Sha256;
use x25519_dalek::{PublicKey, StaticSecret};

/// Bytes an envelope adds to its plaintext (the Poly1305 tag).
pub const TAG_BYTES: usize = 16;

/// The HKDF info label of the envelope key (from the `c` keys).
pub const LABEL_ENVELOPE: &[u8] = b"envelope";
/// The HKDF info label of the pairwise mask seed (from the `s` keys).
pub const LABEL_MASK: &[u8] = b"pairwise mask";

const SALT: &[u8] = b"dainet-secagg+ v1";
const AAD_PREFIX: &[u8] = b"dainet-secagg+ share";

/// An X25519 key pair.
#[derive(Clone)]
pub struct KeyPair {
    secret: StaticSecret,
    public: [u8; 32],
}

impl std::fmt::Debug for KeyPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyPair").field("public", &self.public).finish_non_exhaustive()
    }
}

impl KeyPair {
    /// A fresh key pair: 32 bytes from `rng` (clamped when used, as RFC 7748 says).
    pub fn generate<R: CryptoRng + ?Sized>(rng: &mut R) -> KeyPair {
        KeyPair::from_secret(StaticSecret::random_from_rng(rng).to_bytes())
    }

    /// The key pair of secret bytes `secret` (a reconstructed secret key).
    pub fn from_secret(secret: [u8; 32]) -> KeyPair {
        let secret = StaticSecret::from(secret);
        let public = PublicKey::from(&secret).to_bytes();
        KeyPair { secret, public }
    }

    /// The public key.
    pub fn public(&self) -> [u8; 32] {
        self.public
    }

    /// The secret key's bytes (to be secret-shared).
    pub fn secret_bytes(&self) -> [u8; 32] {
        self.secret.to_bytes()
    }

    /// The key agreed with `their_public` for `label` in `round` between participants `a`
    /// and `b` (in either order), or `None` if `their_public` has low order.
    pub fn agree(&self, their_public: &[u8; 32], label: &[u8], round: u32, a: u32, b: u32) -> Option<[u8; 32]> {
        let shared = self.secret.diffie_hellman(&PublicKey::from(*their_public));
        if !shared.was_contributory() {
            return None;
        }
        let (lo, hi) = (a.min(b), a.max(b));
        let mut info = Vec::with_capacity(label.len() + 12);
        info.extend_from_slice(label);
        for v in [round, lo, hi] {
            info.extend_from_slice(&v.to_le_bytes());
        }
        let mut key = [0u8; 32];
        Hkdf::<Sha256>::new(Some(SALT), shared.as_bytes()).expand(&info, &mut key).expect("32 bytes is a valid length");
        Some(key)
    }
}

/// Whether `public` is a usable X25519 public key (not of low order, so every agreement
/// with it is contributory). The scalar is clamped to a multiple of 8, so the product is the
/// identity exactly when the point's order divides 8.
pub fn is_valid_public_key(public: &[u8; 32]) -> bool {
    x25519_dalek::x25519([0x42; 32], *public) != [0u8; 32]
}

fn nonce_and_aad(round: u32, sender: u32, recipient: u32) -> ([u8; 12], Vec<u8>) {
    let mut nonce = [0u8; 12];
    nonce[..4].copy_from_slice(&sender.to_le_bytes());
    nonce[4..8].copy_from_slice(&recipient.to_le_bytes());
    let mut aad = AAD_PREFIX.to_vec();
    for v in [round, sender, recipient] {
        aad.extend_from_slice(&v.to_le_bytes());
    }
    (nonce, aad)
}

/// Encrypts `plaintext` from `sender` to `recipient` in `round` under `key`.
pub fn seal(key: &[u8; 32], round: u32, sender: u32, recipient: u32, plaintext: &[u8]) -> Vec<u8> {
    let (nonce, aad) = nonce_and_aad(round, sender, recipient);
    ChaCha20Poly1305::new(&(*key).into())
        .encrypt(&nonce.into(), Payload { msg: plaintext, aad: &aad })
        .expect("a short plaintext always encrypts")
}

/// Decrypts an envelope made by [`seal`] with the same arguments; `None` if it was altered or
/// is bound to another round, sender or recipient.
pub fn open(key: &[u8; 32], round: u32, sender: u32, recipient: u32, ciphertext: &[u8]) -> Option<Vec<u8>> {
    let (nonce, aad) = nonce_and_aad(round, sender, recipient);
    ChaCha20Poly1305::new(&(*key).into()).decrypt(&nonce.into(), Payload { msg: ciphertext, aad: &aad }).ok()
}

/// Words of keystream generated per step of [`prg_apply`].
const PRG_WORDS: usize = 1024;

/// The mask generator's cipher: AES-128-CTR with a 128-bit big-endian counter.
type MaskCipher = ctr::Ctr128BE<aes::Aes128>;

/// The mask generator keyed by `seed`: key = `seed[..16]`, initial counter block =
/// `seed[16..]` (a counter never repeats within a mask: it would take 2^128 blocks).
fn mask_cipher(seed: &[u8; 32]) -> MaskCipher {
    let (key, counter) = seed.split_at(16);
    let key: [u8; 16] = key.try_into().expect("16 of 32 bytes");
    let counter: [u8; 16] = counter.try_into().expect("16 of 32 bytes");
    MaskCipher::new(&key.into(), &counter.into())
}

/// Adds (`subtract = false`) or subtracts the mask expanded from `seed` to `out`, word by
/// word modulo 2^32. The mask's word i is the same whatever `out.len()` is.
pub fn prg_apply(seed: &[u8; 32], out: &mut [u32], subtract: bool) {
    let mut cipher = mask_cipher(seed);
    let mut buf = [0u8; 4 * PRG_WORDS];
    for chunk in out.chunks_mut(PRG_WORDS) {
        let bytes = &mut buf[..4 * chunk.len()];
        cipher.write_keystream(bytes);
        let words = bytes.chunks_exact(4).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]));
        if subtract {
            chunk.iter_mut().zip(words).for_each(|(o, m)| *o = o.wrapping_sub(m));
        } else {
            chunk.iter_mut().zip(words).for_each(|(o, m)| *o = o.wrapping_add(m));
        }
    }
}

/// The mask expanded from `seed`, `len` words long.
pub fn prg_expand(seed: &[u8; 32], len: usize) -> Vec<u32> {
    let mut out = vec![0u32; len];
    prg_apply(seed, &mut out, false);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    #[test]
    fn agreement_is_symmetric_and_bound_to_label_round_and_pair() {
        let mut rng = ChaCha20Rng::from_seed([1; 32]);
        let (a, b) = (KeyPair::generate(&mut rng), KeyPair::generate(&mut rng));
        let ab = a.agree(&b.public(), LABEL_MASK, 3, 1, 2).unwrap();
        assert_eq!(ab, b.agree(&a.public(), LABEL_MASK, 3, 2, 1).unwrap());
        assert_ne!(ab, a.agree(&b.public(), LABEL_ENVELOPE, 3, 1, 2).unwrap());
        assert_ne!(ab, a.agree(&b.public(), LABEL_MASK, 4, 1, 2).unwrap());
        assert_ne!(ab, a.agree(&b.public(), LABEL_MASK, 3, 1, 5).unwrap());
        // The reconstructed secret gives the same key and public key.
        let a2 = KeyPair::from_secret(a.secret_bytes());
        assert_eq!(a2.public(), a.public());
        assert_eq!(a2.agree(&b.public(), LABEL_MASK, 3, 1, 2).unwrap(), ab);
    }

    #[test]
    fn low_order_keys_are_refused() {
        let mut rng = ChaCha20Rng::from_seed([2; 32]);
        let a = KeyPair::generate(&mut rng);
        assert!(is_valid_public_key(&a.public()));
        for bad in [[0u8; 32], {
            let mut one = [0u8; 32];
            one[0] = 1;
            one
        }] {
            assert!(!is_valid_public_key(&bad));
            assert_eq!(a.agree(&bad, LABEL_MASK, 1, 1, 2), None);
        }
    }

    #[test]
    fn envelopes_open_only_in_their_context() {
        let key = [7u8; 32];
        let ct = seal(&key, 5, 1, 2, b"shares");
        assert_eq!(ct.len(), 6 + TAG_BYTES);
        assert_eq!(open(&key, 5, 1, 2, &ct).as_deref(), Some(&b"shares"[..]));
        assert_eq!(open(&key, 6, 1, 2, &ct), None, "another round");
        assert_eq!(open(&key, 5, 2, 1, &ct), None, "swapped direction");
        assert_eq!(open(&key, 5, 1, 3, &ct), None, "another recipient");
        let mut tampered = ct.clone();
        tampered[0] ^= 1;
        assert_eq!(open(&key, 5, 1, 2, &tampered), None, "tampered");
        assert_eq!(open(&[8u8; 32], 5, 1, 2, &ct), None, "another key");
    }

    #[test]
    fn prg_is_the_aes128_ctr_keystream_and_prefix_stable() {
        // The cipher applied to zeros, in one call, against the mask built 1024 words at a time.
        let seed: [u8; 32] = std::array::from_fn(|i| i as u8 * 7 + 1);
        let mut zeros = vec![0u8; 4 * 3000];
        mask_cipher(&seed).apply_keystream(&mut zeros);
        let expected: Vec<u32> = zeros.chunks_exact(4).map(|b| u32::from_le_bytes(b.try_into().unwrap())).collect();
        assert_eq!(prg_expand(&seed, 3000), expected);
        assert_eq!(prg_expand(&seed, 1500)[..], expected[..1500]);
        let mut v = vec![5u32; 3000];
        prg_apply(&seed, &mut v, false);
        prg_apply(&seed, &mut v, true);
        assert!(v.iter().all(|&x| x == 5));
    }

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
    }

    /// The keystream is ciphertext XOR plaintext of NIST SP 800-38A, F.5.1 (CTR-AES128.Encrypt):
    /// key 2b7e…4f3c, initial counter block f0f1…feff (so the seed is key ‖ counter). Its four
    /// blocks also cover the big-endian increment with a carry (…feff → …ff00).
    #[test]
    fn prg_matches_nist_sp800_38a_f51() {
        let seed: [u8; 32] =
            hex("2b7e151628aed2a6abf7158809cf4f3cf0f1f2f3f4f5f6f7f8f9fafbfcfdfeff").try_into().unwrap();
        let plain = hex(concat!(
            "6bc1bee22e409f96e93d7e117393172a",
            "ae2d8a571e03ac9c9eb76fac45af8e51",
            "30c81c46a35ce411e5fbc1191a0a52ef",
            "f69f2445df4f9b17ad2b417be66c3710"
        ));
        let cipher = hex(concat!(
            "874d6191b620e3261bef6864990db6ce",
            "9806f66b7970fdff8617187bb9fffdff",
            "5ae4df3edbd5d35e5b4f09020db03eab",
            "1e031dda2fbe03d1792170a0f3009cee"
        ));
        let keystream: Vec<u32> = plain
            .iter()
            .zip(&cipher)
            .map(|(p, c)| p ^ c)
            .collect::<Vec<u8>>()
            .chunks_exact(4)
            .map(|b| u32::from_le_bytes(b.try_into().unwrap()))
            .collect();
        assert_eq!(prg_expand(&seed, 16), keystream);
    }

    /// Pinned words for a fixed seed, computed independently with Python's `cryptography`
    /// package: `Cipher(AES(bytes(range(16))), CTR(bytes(range(16, 32)))).encryptor()
    /// .update(bytes(16 * 4097))`, read as little-endian u32s; words 0–3 and the last block's
    /// (past 2^16 bytes, so the 4 KiB steps and the counter's carries are crossed).
    #[test]
    fn prg_pinned_words() {
        let seed: [u8; 32] = std::array::from_fn(|i| i as u8);
        let mask = prg_expand(&seed, 4 * 4097);
        assert_eq!(mask[..4], PINNED_FIRST);
        assert_eq!(mask[4 * 4096..], PINNED_LAST);
    }

    const PINNED_FIRST: [u32; 4] = [0x74effe07, 0x6e03d5e1, 0x11ee0e90, 0x9392948e];
    const PINNED_LAST: [u32; 4] = [0x01b9d129, 0x0642b4e1, 0x3f503a28, 0x46a12c24];
}
