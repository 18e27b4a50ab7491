//! Starting the `keyhole` binary on a fresh data directory and reading its keys, its memory use, and minting
//! the tenant's access key, all as an operator or a SaaS backend would (its printed output, the HTTP API).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use anyhow::{Context, bail};
use serde_json::{Value, json};

pub struct KeyholeServer {
    child: Child,
    pub base_url: String,
    pub project: String,
    pub master_key: String,
    pub write_key: String,
    pub read_key: String,
}

impl KeyholeServer {
    pub fn start(binary: &Path, data_dir: &Path) -> anyhow::Result<KeyholeServer> {
        KeyholeServer::start_with(binary, data_dir, &[])
    }

    /// [`KeyholeServer::start`] with more `serve` arguments.
    pub fn start_with(
        binary: &Path,
        data_dir: &Path,
        extra: &[&std::ffi::OsStr],
    ) -> anyhow::Result<KeyholeServer> {
        KeyholeServer::start_node(binary, data_dir, extra, &[], None)
    }

    /// Starts a node with `envs` set. The first node of a store prints the default project it creates;
    /// a later node (`joining` the first) prints none and takes the first one's keys.
    pub fn start_node(
        binary: &Path,
        data_dir: &Path,
        extra: &[&std::ffi::OsStr],
        envs: &[(String, String)],
        joining: Option<&KeyholeServer>,
    ) -> anyhow::Result<KeyholeServer> {
        let mut child = Command::new(binary)
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir)
            .args(extra)
            .envs(envs.iter().map(|(name, value)| (name, value)))
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .spawn()
            .with_context(|| format!("cannot start {}", binary.display()))?;
        let mut lines = BufReader::new(child.stdout.take().context("keyhole stdout")?).lines();
        let mut printed = |prefix: &str| -> anyhow::Result<String> {
            for line in lines.by_ref() {
                if let Some(value) = line?.trim().strip_prefix(prefix) {
                    return Ok(value.trim().to_string());
                }
            }
            bail!("keyhole exited before printing '{prefix}'")
        };
        let (project, master_key, write_key, read_key) = match joining {
            Some(first) => (
                first.project.clone(),
                first.master_key.clone(),
                first.write_key.clone(),
                first.read_key.clone(),
            ),
            None => (
                printed("default project created:")?,
                printed("master key:")?,
                printed("write key:")?,
                printed("read key:")?,
            ),
        };
        let base_url = printed("keyhole listening on")?;
        std::thread::spawn(move || for _ in lines {});
        Ok(KeyholeServer {
            child,
            base_url,
            project,
            master_key,
            write_key,
            read_key,
        })
    }

    pub fn project_url(&self, rest: &str) -> String {
        format!("{}/3.0/projects/{}/{rest}", self.base_url, self.project)
    }

    /// Mints a key that may only query, with `tenant_id = tenant` forced into every read.
    pub async fn create_tenant_key(
        &self,
        http: &reqwest::Client,
        tenant: &str,
    ) -> anyhow::Result<String> {
        let definition = json!({
            "name": format!("dashboard of {tenant}"),
            "permitted": ["queries"],
            "options": {"queries": {"filters": [
                {"property_name": "tenant_id", "operator": "eq", "property_value": tenant}
            ]}},
        });
        self.create_access_key(http, &definition).await
    }

    /// Creates an access key from `definition`; returns its secret.
    pub async fn create_access_key(
        &self,
        http: &reqwest::Client,
        definition: &Value,
    ) -> anyhow::Result<String> {
        let response = http
            .post(self.project_url("keys"))
            .header("Authorization", &self.master_key)
            .json(definition)
            .send()
            .await?;
        let status = response.status();
        let body: Value = response.json().await?;
        if !status.is_success() {
            bail!("creating an access key failed: {status} {body}");
        }
        body["key"]
            .as_str()
            .map(str::to_string)
            .context("no key in the create-key response")
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// CPU time the process has used so far (user and system, `/proc/{pid}/stat`), seconds.
    pub fn cpu_seconds(&self) -> f64 {
        let stat =
            std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap_or_default();
        // The fields after the command name (which ends at the last ')'): utime and stime are the 12th
        // and 13th, in clock ticks (100 per second on Linux).
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .map(|(_, rest)| rest.split_whitespace().collect())
            .unwrap_or_default();
        let ticks = |index: usize| {
            fields
                .get(index)
                .and_then(|field| field.parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        (ticks(11) + ticks(12)) / 100.0
    }

    /// Resident memory now (`VmRSS`), MiB.
    pub fn rss_mib(&self) -> f64 {
        proc_status_mib(self.child.id(), "VmRSS:")
    }

    /// Resets the peak resident memory to the current one (Linux `clear_refs`), so the next
    /// [`KeyholeServer::peak_rss_mib`] is the peak since now. Best effort.
    pub fn reset_peak_rss(&self) {
        let _ = std::fs::write(format!("/proc/{}/clear_refs", self.child.id()), "5");
    }

    /// Whether the server process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Peak resident memory since start (`VmHWM`), MiB.
    pub fn peak_rss_mib(&self) -> f64 {
        proc_status_mib(self.child.id(), "VmHWM:")
    }
}

impl Drop for KeyholeServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn proc_status_mib(pid: u32, field: &str) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kib: f64 = status
        .lines()
        .find_map(|line| line.strip_prefix(field))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0.0);
    kib / 1024.0
}

/// The `keyhole` binary to run: the one given, else the one built next to this binary.
pub fn keyhole_binary(given: Option<&PathBuf>) -> anyhow::Result<PathBuf> {
    if let Some(path) = given {
        return Ok(path.clone());
    }
    let here = std::env::current_exe()?;
    let sibling = here.with_file_name("keyhole");
    if !sibling.exists() {
        bail!(
            "no keyhole binary at {}; build it (cargo build -p keyhole) or pass --keyhole",
            sibling.display()
        );
    }
    Ok(sibling)
}
