//! `keyhole-bench faults` (`bash bench/faults`): mixed load against the `keyhole` binary while faults are
//! injected — SIGKILL and restart, SIGTERM and restart, the data directory's disk filled and freed — for
//! a fixed time. Reports acknowledged events lost or doubled (both must be 0), answers by kind for writes
//! and queries, how long the server took to answer again after each fault, and RSS over time.
//!
//! The data directory lives on a tmpfs the command mounts (root only); without one, the disk-full fault
//! is left out and the report says so. Writers post 100-event batches, each one WAL record, so a batch is
//! stored whole or not at all; at the end, per writer, every acknowledged batch must be counted exactly
//! 100 times.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::{Value, json};
use tokio::sync::Mutex;

use crate::server::keyhole_binary;

#[derive(clap::Args, Clone)]
pub struct FaultOptions {
    /// Minutes of load.
    #[arg(long, default_value_t = 10)]
    pub minutes: u64,
    /// Concurrent writers (100-event batches).
    #[arg(long, default_value_t = 4)]
    pub writers: usize,
    /// Concurrent readers.
    #[arg(long, default_value_t = 4)]
    pub readers: usize,
    /// Seconds between faults (each waits this long, ±50%).
    #[arg(long, default_value_t = 30)]
    pub fault_seconds: u64,
    /// MiB of the tmpfs the data directory is put on.
    #[arg(long, default_value_t = 2048)]
    pub disk_mib: u64,
    /// Pause of each writer between batches, ms (keeps the data within the tmpfs for the whole run).
    #[arg(long, default_value_t = 50)]
    pub batch_pause_ms: u64,
    /// The keyhole binary (default: `keyhole` next to this binary).
    #[arg(long)]
    pub keyhole: Option<PathBuf>,
}

const BATCH: usize = 100;
const COLLECTION: &str = "faulty";

/// The server process, restarted on the same port and data directory after each fault.
struct Server {
    binary: PathBuf,
    data_dir: PathBuf,
    listen: String,
    child: Option<Child>,
    /// Every line the server printed (drained by a thread, so printing never blocks or fails).
    printed: Arc<std::sync::Mutex<Vec<String>>>,
    /// The server's log (outside the data directory's disk, so a full disk cannot cut it).
    log: PathBuf,
}

impl Server {
    fn start(&mut self) -> anyhow::Result<()> {
        let mut child = Command::new(&self.binary)
            .args(["serve", "--listen", &self.listen, "--data-dir"])
            .arg(&self.data_dir)
            .env("RUST_LOG", "warn,tower_http=off")
            .stdout(Stdio::piped())
            .stderr(Stdio::from(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&self.log)?,
            ))
            .spawn()
            .with_context(|| format!("cannot start {}", self.binary.display()))?;
        let stdout = child.stdout.take().context("keyhole stdout")?;
        let printed = self.printed.clone();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
            {
                printed
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .push(line);
            }
        });
        self.child = Some(child);
        Ok(())
    }

    fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn terminate(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let _ = child.wait();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

#[derive(Default)]
struct Tally {
    /// Per writer, the batches whose write was acknowledged.
    acknowledged: HashMap<usize, Vec<u64>>,
    writes_by_answer: BTreeMap<String, u64>,
    queries_by_answer: BTreeMap<String, u64>,
}

struct Load {
    batch_pause: Duration,
    base_url: String,
    project: String,
    write_key: String,
    read_key: String,
    stop: AtomicBool,
    tally: Mutex<Tally>,
}

fn answer_kind(result: &reqwest::Result<reqwest::Response>) -> String {
    match result {
        Ok(response) => response.status().as_u16().to_string(),
        Err(_) => "connection failed".into(),
    }
}

async fn writer(worker: usize, load: Arc<Load>) {
    let http = reqwest::Client::new();
    let url = format!(
        "{}/3.0/projects/{}/events/{COLLECTION}",
        load.base_url, load.project
    );
    let mut batch = 0u64;
    while !load.stop.load(Ordering::Relaxed) {
        let events: Vec<Value> = (0..BATCH)
            .map(|i| json!({"writer": worker, "batch": batch, "i": i, "pad": "x".repeat(100)}))
            .collect();
        let result = http
            .post(&url)
            .header("Authorization", &load.write_key)
            .json(&events)
            .send()
            .await;
        let kind = answer_kind(&result);
        let stored = match result {
            Ok(response) if response.status().is_success() => response
                .json::<Value>()
                .await
                .ok()
                .and_then(|body| body.as_array().cloned())
                .is_some_and(|results| results.iter().all(|r| r["success"] == true)),
            _ => false,
        };
        let mut tally = load.tally.lock().await;
        *tally.writes_by_answer.entry(kind).or_default() += 1;
        if stored {
            tally.acknowledged.entry(worker).or_default().push(batch);
        }
        drop(tally);
        batch += 1;
        tokio::time::sleep(if stored {
            load.batch_pause
        } else {
            Duration::from_millis(100)
        })
        .await;
    }
}

async fn reader(load: Arc<Load>) {
    let http = reqwest::Client::new();
    let url = format!(
        "{}/3.0/projects/{}/queries/count",
        load.base_url, load.project
    );
    while !load.stop.load(Ordering::Relaxed) {
        let result = http
            .post(&url)
            .header("Authorization", &load.read_key)
            .json(&json!({"event_collection": COLLECTION, "group_by": "writer"}))
            .send()
            .await;
        let kind = answer_kind(&result);
        *load
            .tally
            .lock()
            .await
            .queries_by_answer
            .entry(kind)
            .or_default() += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until the server answers `/health`; answers how long it took.
async fn wait_until_up(base_url: &str) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let http = reqwest::Client::new();
    while started.elapsed() < Duration::from_secs(120) {
        if http
            .get(format!("{base_url}/health"))
            .send()
            .await
            .is_ok_and(|response| response.status().is_success())
        {
            return Ok(started.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    bail!("the server did not come back within 120 s")
}

fn rss_mib(pid: Option<u32>) -> f64 {
    let Some(pid) = pid else { return 0.0 };
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|line| line.strip_prefix("VmRSS:"))
                .and_then(|value| {
                    value
                        .trim()
                        .trim_end_matches("kB")
                        .trim()
                        .parse::<f64>()
                        .ok()
                })
        })
        .map_or(0.0, |kib| kib / 1024.0)
}

fn mount_tmpfs(directory: &Path, mib: u64) -> bool {
    Command::new("mount")
        .args(["-t", "tmpfs", "-o", &format!("size={mib}m"), "tmpfs"])
        .arg(directory)
        .status()
        .is_ok_and(|status| status.success())
}

fn fill(filler: &Path) {
    use std::io::Write;
    let Ok(mut file) = std::fs::File::create(filler) else {
        return;
    };
    for size in [1 << 20, 64 << 10, 512] {
        let chunk = vec![0u8; size];
        while file.write_all(&chunk).is_ok() {}
    }
    let _ = file.sync_all();
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

pub async fn run(options: &FaultOptions) -> anyhow::Result<String> {
    let work = tempfile::tempdir()?;
    let on_tmpfs = mount_tmpfs(work.path(), options.disk_mib);
    let data_dir = work.path().join("data");
    let listen = format!("127.0.0.1:{}", free_port()?);
    let mut server = Server {
        binary: keyhole_binary(options.keyhole.as_ref())?,
        data_dir: data_dir.clone(),
        listen: listen.clone(),
        child: None,
        printed: Arc::default(),
        log: std::env::temp_dir().join(format!("keyhole-faults-{}.log", std::process::id())),
    };
    eprintln!("server log: {}", server.log.display());
    server.start()?;
    let base_url = format!("http://{listen}");
    wait_until_up(&base_url).await?;
    let printed_value = |prefix: &str| {
        server
            .printed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .find_map(|line| {
                line.trim()
                    .strip_prefix(prefix)
                    .map(|value| value.trim().to_string())
            })
            .with_context(|| format!("the server did not print {prefix:?}"))
    };
    let printed: HashMap<&str, String> = ["default project created:", "write key:", "read key:"]
        .into_iter()
        .map(|prefix| Ok((prefix, printed_value(prefix)?)))
        .collect::<anyhow::Result<_>>()?;
    wait_until_up(&base_url).await?;
    let load = Arc::new(Load {
        batch_pause: Duration::from_millis(options.batch_pause_ms),
        base_url: base_url.clone(),
        project: printed["default project created:"].clone(),
        write_key: printed["write key:"].clone(),
        read_key: printed["read key:"].clone(),
        stop: AtomicBool::new(false),
        tally: Mutex::new(Tally::default()),
    });
    let mut tasks = Vec::new();
    for worker in 0..options.writers {
        tasks.push(tokio::spawn(writer(worker, load.clone())));
    }
    for _ in 0..options.readers {
        tasks.push(tokio::spawn(reader(load.clone())));
    }

    let deadline = Instant::now() + Duration::from_secs(options.minutes * 60);
    let mut faults: BTreeMap<&str, Vec<Duration>> = BTreeMap::new();
    let mut rss: Vec<(u64, f64)> = Vec::new();
    let started = Instant::now();
    let mut round = 0u64;
    while Instant::now() < deadline {
        let wait = options.fault_seconds * (50 + (round * 37) % 100) / 100;
        let wake = Instant::now() + Duration::from_secs(wait.max(1));
        while Instant::now() < wake.min(deadline) {
            rss.push((started.elapsed().as_secs(), rss_mib(server.pid())));
            tokio::time::sleep(Duration::from_secs(5)).await;
        }
        if Instant::now() >= deadline {
            break;
        }
        let kinds: &[&str] = if on_tmpfs {
            &["kill -9", "SIGTERM", "disk full"]
        } else {
            &["kill -9", "SIGTERM"]
        };
        let kind = kinds[(round as usize) % kinds.len()];
        round += 1;
        let fault_started = Instant::now();
        let recovered = match kind {
            "disk full" => {
                let filler = work.path().join("filler");
                fill(&filler);
                tokio::time::sleep(Duration::from_secs(5)).await;
                let _ = std::fs::remove_file(&filler);
                // Writes resume by themselves; recovery is the time to the next acknowledged batch.
                let before = acknowledged_total(&load).await;
                let freed = Instant::now();
                while acknowledged_total(&load).await == before
                    && freed.elapsed() < Duration::from_secs(60)
                {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                freed.elapsed()
            }
            "SIGTERM" => {
                server.terminate();
                server.start()?;
                wait_until_up(&base_url).await?;
                fault_started.elapsed()
            }
            _ => {
                server.kill();
                server.start()?;
                wait_until_up(&base_url).await?;
                fault_started.elapsed()
            }
        };
        faults.entry(kind).or_default().push(recovered);
    }
    load.stop.store(true, Ordering::Relaxed);
    for task in tasks {
        let _ = task.await;
    }
    // One last kill -9 and restart, then every acknowledged batch is checked.
    server.kill();
    server.start()?;
    wait_until_up(&base_url).await?;
    let (lost, doubled, checked) = verify(&load).await?;
    server.terminate();
    if on_tmpfs {
        let _ = Command::new("umount").arg("-l").arg(work.path()).status();
    }
    let tally = load.tally.lock().await;
    Ok(report(
        options, on_tmpfs, &faults, &tally, &rss, lost, doubled, checked,
    ))
}

async fn acknowledged_total(load: &Load) -> usize {
    load.tally
        .lock()
        .await
        .acknowledged
        .values()
        .map(Vec::len)
        .sum()
}

/// Per writer, the stored count of every batch: acknowledged batches missing or short are lost, any
/// counted more than once is doubled.
async fn verify(load: &Load) -> anyhow::Result<(u64, u64, u64)> {
    let http = reqwest::Client::new();
    let tally = load.tally.lock().await;
    let (mut lost, mut doubled, mut checked) = (0, 0, 0);
    for (writer, batches) in &tally.acknowledged {
        let body: Value = http
            .post(format!("{}/3.0/projects/{}/queries/count", load.base_url, load.project))
            .header("Authorization", &load.read_key)
            .json(&json!({"event_collection": COLLECTION, "group_by": "batch",
                "filters": [{"property_name": "writer", "operator": "eq", "property_value": writer}]}))
            .send()
            .await?
            .json()
            .await?;
        let counts: HashMap<u64, u64> = body["result"]
            .as_array()
            .context("group_by answer")?
            .iter()
            .filter_map(|row| Some((row["batch"].as_u64()?, row["result"].as_u64()?)))
            .collect();
        for batch in batches {
            checked += BATCH as u64;
            match counts.get(batch).copied().unwrap_or(0) {
                count if count < BATCH as u64 => lost += BATCH as u64 - count,
                count if count > BATCH as u64 => doubled += count - BATCH as u64,
                _ => {}
            }
        }
    }
    Ok((lost, doubled, checked))
}

#[allow(clippy::too_many_arguments)]
fn report(
    options: &FaultOptions,
    on_tmpfs: bool,
    faults: &BTreeMap<&str, Vec<Duration>>,
    tally: &Tally,
    rss: &[(u64, f64)],
    lost: u64,
    doubled: u64,
    checked: u64,
) -> String {
    let mut out = format!(
        "Fault soak: {} min, {} writers (100-event batches), {} readers, a fault every ~{} s{}.\n\n",
        options.minutes,
        options.writers,
        options.readers,
        options.fault_seconds,
        if on_tmpfs {
            ""
        } else {
            " (no tmpfs: disk-full faults left out)"
        }
    );
    out.push_str("| fault | times | time to answer again: from the signal, or from space freed (median / worst) |\n|---|---|---|\n");
    for (kind, times) in faults {
        let mut sorted = times.clone();
        sorted.sort();
        out.push_str(&format!(
            "| {kind} | {} | {:.2} s / {:.2} s |\n",
            sorted.len(),
            sorted[sorted.len() / 2].as_secs_f64(),
            sorted.last().map_or(0.0, Duration::as_secs_f64)
        ));
    }
    out.push_str(&format!(
        "\nAcknowledged events checked: {checked}; lost: **{lost}**; stored twice: **{doubled}**.\n\n"
    ));
    for (what, answers) in [
        ("writes", &tally.writes_by_answer),
        ("queries", &tally.queries_by_answer),
    ] {
        let listed: Vec<String> = answers
            .iter()
            .map(|(kind, count)| format!("{kind}: {count}"))
            .collect();
        out.push_str(&format!("Answers to {what}: {}.\n\n", listed.join(", ")));
    }
    let per_minute: BTreeMap<u64, f64> =
        rss.iter()
            .fold(BTreeMap::new(), |mut minutes, (second, mib)| {
                let peak = minutes.entry(second / 60).or_insert(0.0f64);
                *peak = peak.max(*mib);
                minutes
            });
    let listed: Vec<String> = per_minute
        .iter()
        .map(|(minute, mib)| format!("{minute}: {mib:.0}"))
        .collect();
    out.push_str(&format!(
        "Server RSS, peak MiB per minute: {}.\n",
        listed.join(", ")
    ));
    out
}
