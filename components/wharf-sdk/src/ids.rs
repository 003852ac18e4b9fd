//! Identifiers: 26-character, time-ordered, URL- and key-safe (ULID layout,
//! Crockford base32), so listing keys in byte order lists them by creation.

const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

use crate::prelude::*;

/// A new id from the wall clock and 80 random bits.
pub fn new_id() -> String {
    let (ms, rnd) = clock_and_randomness();
    encode(ms, rnd)
}

/// Straight from WASI in a component (no std needed)...
#[cfg(target_arch = "wasm32")]
fn clock_and_randomness() -> (u64, [u8; 10]) {
    let ms = crate::clock::now_ms();
    let (a, b) = (wasip2::random::random::get_random_u64(), wasip2::random::random::get_random_u64());
    let mut rnd = [0u8; 10];
    rnd[..8].copy_from_slice(&a.to_le_bytes());
    rnd[8..].copy_from_slice(&b.to_le_bytes()[..2]);
    (ms, rnd)
}

/// ...and from std natively, in unit tests.
#[cfg(not(target_arch = "wasm32"))]
fn clock_and_randomness() -> (u64, [u8; 10]) {
    let ms = crate::clock::now_ms();
    let mut rnd = [0u8; 10];
    getrandom::fill(&mut rnd).expect("the OS provides randomness");
    (ms, rnd)
}

/// Encodes a timestamp and randomness as a ULID string.
pub fn encode(ms: u64, rnd: [u8; 10]) -> String {
    let mut value: u128 = (ms as u128 & ((1u128 << 48) - 1)) << 80;
    for (i, b) in rnd.iter().enumerate() {
        value |= (*b as u128) << (72 - 8 * i);
    }
    let mut out = [0u8; 26];
    for i in (0..26).rev() {
        out[i] = ALPHABET[(value & 31) as usize];
        value >>= 5;
    }
    String::from_utf8(out.to_vec()).expect("alphabet is ASCII")
}

/// True if `s` could be an id of ours (or any short key-safe token): guards
/// key construction from path input.
pub fn is_valid(s: &str) -> bool {
    !s.is_empty() && s.len() <= 64 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_sort_by_time() {
        let a = encode(1_000, [255; 10]);
        let b = encode(1_001, [0; 10]);
        assert_eq!(a.len(), 26);
        assert!(a < b);
    }

    #[test]
    fn rejects_key_syntax() {
        assert!(is_valid("01HZX3"));
        for bad in ["", "a:b", "a*", "{x}", "a/b", "a?", "[a]", &"x".repeat(65)] {
            assert!(!is_valid(bad), "{bad}");
        }
    }
}
