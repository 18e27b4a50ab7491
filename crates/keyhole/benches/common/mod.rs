//! Shared by the benchmarks: starting the release `keyhole` binary on a fresh data directory, and the
//! deterministic multi-tenant SaaS events both benchmarks send.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use serde_json::{Value, json};

pub struct Server {
    pub child: std::process::Child,
    pub base_url: String,
    pub project: String,
    pub write_key: String,
    pub read_key: String,
}

pub fn start_server(data_dir: &std::path::Path) -> Server {
    let mut child = Command::new(env!("CARGO_BIN_EXE_keyhole"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data_dir)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()
        .expect("start keyhole");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let (mut project, mut write_key, mut read_key) = (String::new(), String::new(), String::new());
    let base_url = loop {
        let line = lines.next().expect("keyhole printed its address").unwrap();
        if let Some(id) = line.strip_prefix("default project created: ") {
            project = id.trim().to_string();
        }
        if let Some(key) = line.trim().strip_prefix("write key:") {
            write_key = key.trim().to_string();
        }
        if let Some(key) = line.trim().strip_prefix("read key:") {
            read_key = key.trim().to_string();
        }
        if let Some(address) = line.strip_prefix("keyhole listening on ") {
            break address.to_string();
        }
    };
    std::thread::spawn(move || for _ in lines {});
    Server {
        child,
        base_url,
        project,
        write_key,
        read_key,
    }
}

/// The same event without a client timestamp: it happens when the server receives it (the ingest bench).
pub fn event_at_receipt(sequence: usize) -> Value {
    let mut event = event(sequence);
    event.as_object_mut().expect("an object").remove("keen");
    event
}

/// A deterministic ~200-byte SaaS event, its time spread over January 2024.
pub fn event(sequence: usize) -> Value {
    let plan = ["free", "pro", "team"][sequence % 3];
    let action = ["page_view", "click", "signup", "purchase"][(sequence / 7) % 4];
    let month_millis = 31 * 86_400_000u64;
    let offset = (sequence as u64).wrapping_mul(2_654_435_761) % month_millis;
    let timestamp = keyhole_model::timestamp::format_timestamp(1_704_067_200_000 + offset as i64);
    json!({
        "tenant_id": format!("tenant-{:03}", (sequence * 31) % 97),
        "user": {"id": format!("user-{:06}", (sequence * 7919) % 100_003), "plan": plan},
        "action": action,
        "path": format!("/products/{}", sequence % 5_000),
        "duration_ms": (sequence * 37) % 10_000,
        "amount": ((sequence * 13) % 10_000) as f64 / 100.0,
        "tags": ["web", "eu"],
        "session": format!("sess-{sequence:010}"),
        "keen": {"timestamp": timestamp},
    })
}

pub fn peak_rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kib: f64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0.0);
    kib / 1024.0
}
