//! The scripts that start the services of a cluster (`scripts/start-s3`, `scripts/start-postgres`) reuse
//! only a server they started themselves and refuse a port that something else holds, instead of handing
//! the caller whatever answers there.

use std::process::Command;

use crate::support::repo_root;

fn run(script: &str, args: &[&str]) -> (bool, String) {
    let output = Command::new(repo_root().join("scripts").join(script))
        .args(args)
        .output()
        .unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stderr).to_string(),
    )
}

#[test]
fn the_service_scripts_refuse_a_port_held_by_another_process() {
    if !crate::support::has_cluster_services() {
        return;
    }
    let holder = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = holder.local_addr().unwrap().port().to_string();
    let directory = tempfile::tempdir().unwrap();
    let s3_root = directory.path().join("s3");
    let (started, message) = run("start-s3", &[s3_root.to_str().unwrap(), &port]);
    assert!(!started, "start-s3 took a port it does not hold");
    assert!(message.contains("held by another process"), "{message}");
    let postgres_dir = format!("/tmp/keyhole-script-test-{port}");
    let (started, message) = run("start-postgres", &[&postgres_dir, &port]);
    assert!(!started, "start-postgres took a port it does not hold");
    assert!(message.contains("held by another process"), "{message}");
    let _ = std::fs::remove_dir_all(&postgres_dir);
    drop(holder);
}
