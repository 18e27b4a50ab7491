//! What the test suites need from outside the workspace — a PostgreSQL server, an S3-compatible bucket,
//! the official SDKs under Python and Node, Chromium, the third-party assets — and what a test does when
//! one is missing. A plain `cargo test` on a fresh clone skips those tests, printing one line per missing
//! prerequisite that says how to run them; `.ci/run` installs and starts everything and sets
//! `KEYHOLE_TEST_REQUIRE_ALL=1`, under which a missing prerequisite fails the test instead, so CI can
//! never pass by skipping.
//!
//! Design: the line is written to the process's standard error directly, not through `eprintln!`, which
//! the test harness captures and shows only for failing tests; it is printed once per prerequisite per
//! test binary.

#![warn(missing_docs)]

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Set by `.ci/run`: a missing prerequisite fails the test rather than skipping it.
pub const REQUIRE_ALL_VARIABLE: &str = "KEYHOLE_TEST_REQUIRE_ALL";

static ANNOUNCED: Mutex<Option<HashSet<String>>> = Mutex::new(None);

/// Whether the prerequisite `what` is `present`. When it is not: under `KEYHOLE_TEST_REQUIRE_ALL` this
/// panics with `how_to_get_it`; otherwise it prints one line (once per `what`) and answers `false`, and
/// the caller returns early.
pub fn prerequisite(what: &str, how_to_get_it: &str, present: bool) -> bool {
    if present {
        return true;
    }
    if std::env::var_os(REQUIRE_ALL_VARIABLE).is_some_and(|value| !value.is_empty() && value != "0")
    {
        panic!("{what} is missing and {REQUIRE_ALL_VARIABLE} is set: {how_to_get_it}");
    }
    let mut announced = ANNOUNCED
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if announced
        .get_or_insert_with(HashSet::new)
        .insert(what.to_string())
    {
        let _ = writeln!(
            std::io::stderr().lock(),
            "skipping the tests that need {what}: {how_to_get_it} (bash .ci/run runs everything)"
        );
    }
    false
}

/// The value of the environment variable `name` when it is set and not empty; otherwise `None`, after
/// announcing the skip of the tests that need `what`.
fn variable_prerequisite(name: &str, what: &str, how_to_get_it: &str) -> Option<String> {
    let value = std::env::var(name).ok().filter(|value| !value.is_empty());
    prerequisite(what, how_to_get_it, value.is_some());
    value
}

/// The PostgreSQL server the metadata conformance suite and the multi-node tests run against
/// (`KEYHOLE_TEST_POSTGRES_URL`), or `None` after announcing the skip.
pub fn postgres_url() -> Option<String> {
    variable_prerequisite(
        "KEYHOLE_TEST_POSTGRES_URL",
        "PostgreSQL",
        "set KEYHOLE_TEST_POSTGRES_URL to a server's URL (scripts/start-postgres starts one)",
    )
}

/// The S3-compatible bucket the object-store suite and the multi-node tests run against
/// (`KEYHOLE_TEST_S3_BUCKET` with the `AWS_*` variables), or `None` after announcing the skip.
pub fn s3_bucket() -> Option<String> {
    variable_prerequisite(
        "KEYHOLE_TEST_S3_BUCKET",
        "an S3-compatible bucket",
        "set KEYHOLE_TEST_S3_BUCKET and the AWS_* variables (eval \"$(scripts/start-s3 DIR)\" starts one)",
    )
}

/// The repository's root directory.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Whether the Node packages of `sdk-tests/node` are installed (`npm ci` there).
pub fn node_packages() -> bool {
    let installed = repo_root()
        .join("sdk-tests/node/node_modules/playwright-core")
        .exists()
        && repo_root()
            .join("sdk-tests/node/node_modules/keen-tracking")
            .exists();
    prerequisite(
        "the Node Keen SDKs",
        "run `npm ci` in sdk-tests/node",
        installed,
    )
}

/// Whether Debian's Chromium is installed (the browser tests drive it with playwright-core).
pub fn chromium() -> bool {
    prerequisite(
        "Chromium",
        "install Debian's chromium (apt-get install chromium)",
        Path::new("/usr/bin/chromium").exists(),
    ) && node_packages()
}

/// Whether `python3` can import every module in `modules` (the Python Keen SDK and the test helpers of
/// `sdk-tests/python/requirements.txt`). Python is asked once per list of modules and test binary.
pub fn python_modules(modules: &[&str]) -> bool {
    static ASKED: Mutex<Option<HashMap<String, bool>>> = Mutex::new(None);
    let imports = modules.join(", ");
    let importable = *ASKED
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .get_or_insert_with(HashMap::new)
        .entry(imports.clone())
        .or_insert_with(|| {
            std::process::Command::new("python3")
                .args(["-c", &format!("import {imports}")])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .status()
                .is_ok_and(|status| status.success())
        });
    prerequisite(
        "the Python Keen SDK and test helpers",
        "python3 -m pip install -r sdk-tests/python/requirements.txt",
        importable,
    )
}
