//! A second version of a component beside the live one (a canary): which
//! traffic it takes, and what each side answered. The deployer decides
//! what becomes of it (`deploy::canary`); the engine only serves and counts.

use std::sync::Arc;

use crate::engine::tally::Tally;

use crate::engine::version::ComponentVersion;

/// A canary running on this host: its version, its share (percent), and
/// what each side answered since the last flush.
pub struct Canary {
    pub version: Arc<ComponentVersion>,
    pub share: u32,
    pub stable: Tally,
    pub canary: Tally,
}

impl Canary {
    pub fn new(version: Arc<ComponentVersion>, share: u32) -> Canary {
        Canary { version, share, stable: Tally::default(), canary: Tally::default() }
    }

    /// Whether the traffic whose split text is `key` goes to the canary.
    pub fn takes(&self, key: &[u8]) -> bool {
        takes(self.share, key)
    }
}

/// The split: the same key always lands on the same side.
pub fn takes(share: u32, key: &[u8]) -> bool {
    // FNV-1a: stable across hosts and builds, which `DefaultHasher` is not.
    let hash = key.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ *b as u64).wrapping_mul(0x100_0000_01b3));
    (hash % 100) < share as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_split_is_stable_and_near_its_share() {
        assert_eq!(takes(10, b"order-1"), takes(10, b"order-1"));
        let taken = (0..10_000).filter(|i| takes(10, format!("order-{i}").as_bytes())).count();
        assert!((800..1200).contains(&taken), "{taken} of 10000 at 10%");
        assert!(!(0..1000).any(|i| takes(0, format!("{i}").as_bytes())));
    }
}
