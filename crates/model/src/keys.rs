//! Key secrets and the operations a key can unlock.
//!
//! Secrets are 32 bytes from the operating system's CSPRNG (via `rand`'s thread RNG, a CSPRNG seeded from
//! the OS), shown as 64 hex digits. Only the SHA-256 of a secret is ever stored; a presented key is hashed
//! and the hashes are compared in constant time. A short prefix of the secret is kept for display.

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Bytes of entropy in a generated secret (256 bits).
pub(crate) const SECRET_BYTES: usize = 32;
/// Characters of a secret kept in clear for listings (`a1b2c3d4…`).
pub(crate) const DISPLAY_PREFIX_CHARS: usize = 8;

/// The operations Keen's access keys grant (`permitted`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Operation {
    /// Writing events.
    Writes,
    /// Ad-hoc queries.
    Queries,
    /// Saved queries' results.
    SavedQueries,
    /// Cached queries' results.
    CachedQueries,
    /// Cached datasets' results.
    Datasets,
    /// Collection schemas.
    Schema,
    /// Keyhole extension: deleting events, confined to the key's forced filters.
    Deletes,
}

impl Operation {
    /// Every operation.
    pub const ALL: [Operation; 7] = [
        Operation::Writes,
        Operation::Queries,
        Operation::SavedQueries,
        Operation::CachedQueries,
        Operation::Datasets,
        Operation::Schema,
        Operation::Deletes,
    ];

    /// Keen's name for the operation in `permitted`.
    pub fn keen_name(self) -> &'static str {
        match self {
            Operation::Writes => "writes",
            Operation::Queries => "queries",
            Operation::SavedQueries => "saved_queries",
            Operation::CachedQueries => "cached_queries",
            Operation::Datasets => "datasets",
            Operation::Schema => "schema",
            Operation::Deletes => "deletes",
        }
    }

    /// The operation named `name` in `permitted`.
    pub fn from_keen_name(name: &str) -> Option<Operation> {
        Operation::ALL
            .into_iter()
            .find(|operation| operation.keen_name() == name)
    }

    /// What a project's read key may do (Keen: the read key is an access key with these).
    pub(crate) const READ_KEY: [Operation; 5] = [
        Operation::Queries,
        Operation::SavedQueries,
        Operation::CachedQueries,
        Operation::Datasets,
        Operation::Schema,
    ];
}

/// SHA-256 of a key secret.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct KeyHash(pub [u8; 32]);

impl KeyHash {
    /// The hash of `secret`.
    pub fn of_secret(secret: &str) -> KeyHash {
        KeyHash(Sha256::digest(secret.as_bytes()).into())
    }

    /// The hash in lower-case hex.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// The hash written as hex, if it is one.
    pub fn from_hex(text: &str) -> Option<KeyHash> {
        let bytes = hex::decode(text).ok()?;
        Some(KeyHash(bytes.try_into().ok()?))
    }

    /// Constant-time equality: the time taken does not depend on where the hashes differ.
    pub fn matches(&self, other: &KeyHash) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}

impl std::fmt::Debug for KeyHash {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(formatter, "KeyHash({}…)", &self.to_hex()[..8])
    }
}

/// A new random secret: 64 hex digits.
pub fn generate_secret() -> String {
    let mut bytes = [0u8; SECRET_BYTES];
    rand::fill(&mut bytes);
    hex::encode(bytes)
}

/// A new random identifier (projects, organizations): 24 hex digits, like Keen's ids.
pub fn generate_id() -> String {
    let mut bytes = [0u8; 12];
    rand::fill(&mut bytes);
    hex::encode(bytes)
}

/// The part of a secret safe to show in listings.
pub fn display_prefix(secret: &str) -> String {
    secret.chars().take(DISPLAY_PREFIX_CHARS).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_random_and_hash_stably() {
        let first = generate_secret();
        let second = generate_secret();
        assert_eq!(first.len(), 64);
        assert_ne!(first, second);
        assert!(KeyHash::of_secret(&first).matches(&KeyHash::of_secret(&first)));
        assert!(!KeyHash::of_secret(&first).matches(&KeyHash::of_secret(&second)));
        let hash = KeyHash::of_secret(&first);
        assert_eq!(KeyHash::from_hex(&hash.to_hex()), Some(hash));
        assert!(!format!("{hash:?}").contains(&first));
    }

    #[test]
    fn operation_names_round_trip() {
        for operation in Operation::ALL {
            assert_eq!(
                Operation::from_keen_name(operation.keen_name()),
                Some(operation)
            );
        }
    }
}
