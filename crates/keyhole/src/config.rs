//! Configuration: each setting comes from the command line, else its `KEYHOLE_*` environment variable
//! (both handled by clap), else the optional TOML file (`--config`), else the default.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use serde::Deserialize;

pub const DEFAULT_DATA_DIR: &str = "./keyhole-data";
pub const DEFAULT_LISTEN: &str = "127.0.0.1:7070";

#[derive(Parser, Debug)]
#[command(
    name = "keyhole",
    version,
    about = "Self-hosted event analytics speaking the Keen IO v3 API"
)]
pub struct Cli {
    #[command(flatten)]
    pub common: CommonOptions,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Args, Debug, Clone)]
pub struct CommonOptions {
    /// Directory holding events, the WAL and metadata [default: ./keyhole-data]
    #[arg(long, env = "KEYHOLE_DATA_DIR", global = true)]
    pub data_dir: Option<PathBuf>,
    /// TOML file with any of: data_dir, metadata_url, objects, listen, org_key, org_key_file, flush_interval_secs, flush_rows,
    /// file_cache_mb, memory_limit, geoip_db, and the limits below by their option names (query_memory_mb, …)
    #[arg(long, env = "KEYHOLE_CONFIG", global = true)]
    pub config: Option<PathBuf>,
    /// Where metadata (organization, projects, keys, saved queries, datasets) lives:
    /// postgres://user:password@host/database for several nodes [default: SQLite in the data directory].
    /// Prefer the environment variable: a command line is visible to every local user
    #[arg(
        long,
        env = "KEYHOLE_METADATA_URL",
        global = true,
        hide_env_values = true
    )]
    pub metadata_url: Option<String>,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Start the HTTP server
    Serve(Box<ServeOptions>),
    /// Manage projects directly in the data directory
    #[command(subcommand)]
    Project(ProjectCommand),
    /// Manage the organization directly in the data directory
    #[command(subcommand)]
    Organization(OrganizationCommand),
    /// Embed tokens (Keyhole embed token v1, see docs/keys.md)
    #[command(subcommand)]
    Token(TokenCommand),
    /// Copy the data directory — consistent, while a server may be running on it — into a new directory
    Backup(BackupOptions),
    /// Restore a copy made by `keyhole backup` into an empty data directory
    Restore(RestoreOptions),
    /// Seed a demo project (three vendors' events, their keys) in a throwaway data directory and serve
    /// each vendor's dashboard and the console
    Demo(DemoOptions),
}

#[derive(Args, Debug, Clone)]
pub struct DemoOptions {
    /// Address to listen on
    #[arg(long, default_value = "127.0.0.1:7070")]
    pub listen: String,
    /// Keep the demo's data here instead of a temporary directory removed on exit (must not exist yet)
    #[arg(long)]
    pub keep_in: Option<PathBuf>,
    /// Events to seed
    #[arg(long, default_value_t = 3000)]
    pub events: usize,
}

#[derive(Args, Debug, Clone)]
pub struct BackupOptions {
    /// Where the copy goes; must not exist yet
    #[arg(long)]
    pub to: PathBuf,
}

#[derive(Args, Debug, Clone)]
pub struct RestoreOptions {
    /// A directory written by `keyhole backup`
    #[arg(long)]
    pub from: PathBuf,
}

#[derive(Subcommand, Debug, Clone)]
pub enum TokenCommand {
    /// Mint an embed token from an access key, as a backend would, and print it
    Mint(MintTokenOptions),
}

#[derive(Args, Debug, Clone)]
pub struct MintTokenOptions {
    /// File holding the access key's secret (surrounding whitespace ignored)
    #[arg(long, env = "KEYHOLE_ACCESS_KEY_FILE")]
    pub key_file: Option<PathBuf>,
    /// The access key's secret; prefer --key-file (a command line is visible to every local user)
    #[arg(long, env = "KEYHOLE_ACCESS_KEY", hide_env_values = true)]
    pub key: Option<String>,
    /// Seconds the token is valid for (at most 31 days)
    #[arg(long, default_value_t = 3600)]
    pub ttl_secs: i64,
    /// The token's id (`jti`), which it is revoked by [default: random]
    #[arg(long)]
    pub jti: Option<String>,
    /// Narrowing claims as a JSON object: `filters`, `permitted`, `max_lookback`
    #[arg(long, default_value = "{}")]
    pub claims: String,
}

#[derive(Args, Debug, Clone)]
pub struct ServeOptions {
    /// Address to listen on [default: 127.0.0.1:7070]
    #[arg(long, env = "KEYHOLE_LISTEN")]
    pub listen: Option<String>,
    /// Organization key (at least 32 characters); when absent on the first start, one is generated and
    /// printed once. Prefer KEYHOLE_ORG_KEY or --org-key-file: a command line is visible to every local
    /// user. Once set, changing it takes `keyhole organization rotate-key`
    #[arg(long, env = "KEYHOLE_ORG_KEY", hide_env_values = true)]
    pub org_key: Option<String>,
    /// File holding the organization key (surrounding whitespace ignored)
    #[arg(long, env = "KEYHOLE_ORG_KEY_FILE")]
    pub org_key_file: Option<PathBuf>,
    /// Seconds between background flushes of buffered events to Parquet [default: 30]
    #[arg(long, env = "KEYHOLE_FLUSH_INTERVAL_SECS")]
    pub flush_interval_secs: Option<u64>,
    /// Buffered events that trigger a flush to Parquet [default: 200000]
    #[arg(long, env = "KEYHOLE_FLUSH_ROWS")]
    pub flush_rows: Option<usize>,
    /// MiB of Parquet files kept in memory for queries, at most the file cache's share of the memory
    /// limit (12%); 0 turns the cache off [default: 512, or that share if smaller]
    #[arg(long, env = "KEYHOLE_FILE_CACHE_MB")]
    pub file_cache_mb: Option<usize>,
    /// Seconds to wait for another keyhole to release the data directory before giving up [default: 30]
    #[arg(long, env = "KEYHOLE_DATA_DIR_LOCK_WAIT_SECS")]
    pub data_dir_lock_wait_secs: Option<u64>,
    /// A MaxMind-format database (GeoLite2-City or GeoIP2-City .mmdb) for the keen:ip_to_geo add-on;
    /// re-read when the file changes. Without it, events asking for ip_to_geo are refused
    #[arg(long, env = "KEYHOLE_GEOIP_DB")]
    pub geoip_db: Option<PathBuf>,
    /// Memory the server may use, in bytes or with a unit (2GiB, 512MiB); every large consumer (unflushed
    /// events, compaction, queries, write requests, caches) draws a fixed share of it and past its share
    /// waits, then refuses with 503 [default: half the machine's memory or of the cgroup limit,
    /// whichever is smaller]
    #[arg(long, env = "KEYHOLE_MEMORY_LIMIT")]
    pub memory_limit: Option<String>,
    /// Keep Parquet files in an S3-compatible bucket, s3://bucket/prefix, instead of the data directory.
    /// Region, credentials and endpoint come from AWS_REGION, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY,
    /// AWS_ENDPOINT_URL (and AWS_ALLOW_HTTP=true for a plain-HTTP endpoint)
    #[arg(long, env = "KEYHOLE_OBJECTS")]
    pub objects: Option<String>,
    #[command(flatten)]
    pub limits: LimitOptions,
}

/// Resource limits (each also settable in the TOML file under the same name).
#[derive(Args, Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitOptions {
    /// MiB of memory one query's aggregations and sorts may hold [default: 512]
    #[arg(long, env = "KEYHOLE_QUERY_MEMORY_MB")]
    pub query_memory_mb: Option<usize>,
    /// Seconds one query may run [default: 60]
    #[arg(long, env = "KEYHOLE_QUERY_TIMEOUT_SECS")]
    pub query_timeout_secs: Option<u64>,
    /// Queries executing at once; more wait in line [default: twice the cores]
    #[arg(long, env = "KEYHOLE_MAX_CONCURRENT_QUERIES")]
    pub max_concurrent_queries: Option<usize>,
    /// Seconds a query waits in line before it is refused with 503 [default: 10]
    #[arg(long, env = "KEYHOLE_QUERY_QUEUE_WAIT_SECS")]
    pub query_queue_wait_secs: Option<u64>,
    /// Values one query answer may hold (buckets × groups × analyses, select_unique values) [default: 1000000]
    #[arg(long, env = "KEYHOLE_MAX_RESULT_CELLS")]
    pub max_result_cells: Option<usize>,
    /// Property columns one collection may have; events adding more are refused [default: 1000]
    #[arg(long, env = "KEYHOLE_MAX_COLUMNS_PER_COLLECTION")]
    pub max_columns_per_collection: Option<usize>,
    /// Seconds a client has to send a request's headers; also how long an idle connection stays open [default: 10]
    #[arg(long, env = "KEYHOLE_HEADER_READ_TIMEOUT_SECS")]
    pub header_read_timeout_secs: Option<u64>,
    /// Seconds a client has to send a request's whole body [default: 60]
    #[arg(long, env = "KEYHOLE_BODY_TIMEOUT_SECS")]
    pub body_timeout_secs: Option<u64>,
    /// Open connections; more are answered 503 [default: 1024]
    #[arg(long, env = "KEYHOLE_MAX_CONNECTIONS")]
    pub max_connections: Option<usize>,
    /// KiB a request's line and headers may take [default: 64]
    #[arg(long, env = "KEYHOLE_MAX_HEADER_KB")]
    pub max_header_kb: Option<usize>,
    /// Events one write request may carry; more are refused with 413 [default: 5000, keen-tracking's
    /// largest batch]
    #[arg(long, env = "KEYHOLE_MAX_EVENTS_PER_REQUEST")]
    pub max_events_per_request: Option<usize>,
    /// Milliseconds of CPU time one write request's events may take to prepare (parsing, add-ons,
    /// webhook signature); past it the request is refused with 400 [default: 2000]
    #[arg(long, env = "KEYHOLE_WRITE_CPU_BUDGET_MS")]
    pub write_cpu_budget_ms: Option<u64>,
}

impl LimitOptions {
    /// Each setting from `self`, else from `file`.
    fn or(self, file: LimitOptions) -> LimitOptions {
        LimitOptions {
            query_memory_mb: self.query_memory_mb.or(file.query_memory_mb),
            query_timeout_secs: self.query_timeout_secs.or(file.query_timeout_secs),
            max_concurrent_queries: self.max_concurrent_queries.or(file.max_concurrent_queries),
            query_queue_wait_secs: self.query_queue_wait_secs.or(file.query_queue_wait_secs),
            max_result_cells: self.max_result_cells.or(file.max_result_cells),
            max_columns_per_collection: self
                .max_columns_per_collection
                .or(file.max_columns_per_collection),
            header_read_timeout_secs: self
                .header_read_timeout_secs
                .or(file.header_read_timeout_secs),
            body_timeout_secs: self.body_timeout_secs.or(file.body_timeout_secs),
            max_connections: self.max_connections.or(file.max_connections),
            max_header_kb: self.max_header_kb.or(file.max_header_kb),
            max_events_per_request: self.max_events_per_request.or(file.max_events_per_request),
            write_cpu_budget_ms: self.write_cpu_budget_ms.or(file.write_cpu_budget_ms),
        }
    }

    pub fn write_limits(&self) -> keyhole_server::write_pool::WriteLimits {
        let defaults = keyhole_server::write_pool::WriteLimits::default();
        keyhole_server::write_pool::WriteLimits {
            max_events_per_request: self
                .max_events_per_request
                .map_or(defaults.max_events_per_request, |n| n.max(1)),
            cpu_budget: self
                .write_cpu_budget_ms
                .map_or(defaults.cpu_budget, |millis| {
                    Duration::from_millis(millis.max(1))
                }),
            ..defaults
        }
    }

    pub fn query_limits(&self) -> keyhole_query::QueryLimits {
        let defaults = keyhole_query::QueryLimits::default();
        keyhole_query::QueryLimits {
            memory_bytes: self.query_memory_mb.map_or(defaults.memory_bytes, |mb| {
                mb.max(1).saturating_mul(1024 * 1024)
            }),
            timeout: self
                .query_timeout_secs
                .map_or(defaults.timeout, |secs| Duration::from_secs(secs.max(1))),
            max_concurrent: self
                .max_concurrent_queries
                .map_or(defaults.max_concurrent, |n| n.max(1)),
            queue_wait: self
                .query_queue_wait_secs
                .map_or(defaults.queue_wait, Duration::from_secs),
            max_result_cells: self
                .max_result_cells
                .map_or(defaults.max_result_cells, |n| n.max(1)),
            threads: defaults.threads,
        }
    }

    pub fn http_limits(&self) -> keyhole_server::HttpLimits {
        let defaults = keyhole_server::HttpLimits::default();
        keyhole_server::HttpLimits {
            header_read_timeout: self
                .header_read_timeout_secs
                .map_or(defaults.header_read_timeout, |secs| {
                    Duration::from_secs(secs.max(1))
                }),
            body_timeout: self
                .body_timeout_secs
                .map_or(defaults.body_timeout, |secs| {
                    Duration::from_secs(secs.max(1))
                }),
            max_connections: self
                .max_connections
                .map_or(defaults.max_connections, |n| n.max(1)),
            max_header_bytes: self
                .max_header_kb
                .map_or(defaults.max_header_bytes, |kb| kb.clamp(1, 1024) * 1024),
        }
    }

    pub fn max_columns_per_collection(&self) -> usize {
        self.max_columns_per_collection
            .unwrap_or(keyhole_storage::DEFAULT_MAX_COLUMNS_PER_COLLECTION)
            .max(1)
    }
}

#[derive(Subcommand, Debug)]
pub enum OrganizationCommand {
    /// Replace the organization key: with the one given by --org-key / KEYHOLE_ORG_KEY /
    /// --org-key-file, else a generated one, printed once. Refused while a server runs on the data
    /// directory (stop it first)
    RotateKey(RotateKeyOptions),
}

#[derive(Args, Debug, Clone)]
pub struct RotateKeyOptions {
    /// The new organization key (at least 32 characters); prefer KEYHOLE_ORG_KEY or --org-key-file
    #[arg(long, env = "KEYHOLE_ORG_KEY", hide_env_values = true)]
    pub org_key: Option<String>,
    /// File holding the new organization key
    #[arg(long, env = "KEYHOLE_ORG_KEY_FILE")]
    pub org_key_file: Option<PathBuf>,
}

#[derive(Subcommand, Debug)]
pub enum ProjectCommand {
    /// Create a project and print its id and keys
    Create { name: String },
    /// List projects (keys are shown as prefixes; secrets are not stored)
    List,
}

/// The optional TOML file.
#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub data_dir: Option<PathBuf>,
    pub metadata_url: Option<String>,
    pub listen: Option<String>,
    pub org_key: Option<String>,
    pub flush_interval_secs: Option<u64>,
    pub flush_rows: Option<usize>,
    pub file_cache_mb: Option<usize>,
    pub org_key_file: Option<PathBuf>,
    pub data_dir_lock_wait_secs: Option<u64>,
    pub geoip_db: Option<PathBuf>,
    pub objects: Option<String>,
    /// Bytes (a number) or a size with a unit ("2GiB").
    pub memory_limit: Option<SizeSetting>,
    #[serde(flatten)]
    pub limits: LimitOptions,
}

/// A size in the TOML file: bytes, or text with a unit.
#[derive(Deserialize, Debug, Clone)]
#[serde(untagged)]
pub enum SizeSetting {
    Bytes(u64),
    Text(String),
}

impl SizeSetting {
    fn bytes(&self) -> anyhow::Result<u64> {
        match self {
            SizeSetting::Bytes(bytes) => Ok(*bytes),
            SizeSetting::Text(text) => {
                keyhole_model::memory_budget::parse_size(text).map_err(anyhow::Error::msg)
            }
        }
    }
}

/// Half of the machine's memory or of this process's cgroup limit, whichever is smaller (2 GiB when
/// neither can be read).
pub fn default_memory_limit() -> u64 {
    let machine = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find_map(|line| line.strip_prefix("MemTotal:"))
                .and_then(|rest| {
                    rest.trim()
                        .trim_end_matches("kB")
                        .trim()
                        .parse::<u64>()
                        .ok()
                })
        })
        .map(|kib| kib * 1024);
    // cgroup v2, then v1 (which reports "no limit" as a huge number).
    let cgroup = [
        "/sys/fs/cgroup/memory.max",
        "/sys/fs/cgroup/memory/memory.limit_in_bytes",
    ]
    .iter()
    .find_map(|path| {
        std::fs::read_to_string(path)
            .ok()?
            .trim()
            .parse::<u64>()
            .ok()
    })
    .filter(|limit| *limit < 1 << 60);
    let smallest = [machine, cgroup].into_iter().flatten().min();
    smallest.map_or(2 << 30, |bytes| bytes / 2)
}

impl FileConfig {
    pub fn load(path: Option<&PathBuf>) -> anyhow::Result<FileConfig> {
        let Some(path) = path else {
            return Ok(FileConfig::default());
        };
        let text = std::fs::read_to_string(path).map_err(|error| {
            anyhow::anyhow!("cannot read config file {}: {error}", path.display())
        })?;
        toml::from_str(&text)
            .map_err(|error| anyhow::anyhow!("invalid config file {}: {error}", path.display()))
    }
}

/// Settings after every source is applied.
#[derive(Debug, Clone)]
pub struct Settings {
    pub data_dir: PathBuf,
    /// `None`: SQLite in the data directory.
    pub metadata_url: Option<String>,
    pub listen: String,
    pub org_key: Option<String>,
    pub flush_interval_secs: u64,
    pub flush_rows: usize,
    pub data_dir_lock_wait: Duration,
    pub geoip_db: Option<PathBuf>,
    pub objects: keyhole_storage::ObjectsLocation,
    /// `--memory-limit` in bytes (see [`default_memory_limit`]).
    pub memory_limit_bytes: u64,
    /// `--file-cache-mb` when given.
    pub file_cache_mb: Option<usize>,
    pub limits: LimitOptions,
}

/// Shortest organization key accepted: a key must not be guessable.
pub const MIN_ORG_KEY_CHARS: usize = 32;

/// The organization key from a value or a file (the value wins), checked for length.
pub fn organization_key(
    value: Option<String>,
    file: Option<&PathBuf>,
) -> anyhow::Result<Option<String>> {
    let key = match (value, file) {
        (Some(value), _) => value,
        (None, Some(path)) => std::fs::read_to_string(path)
            .map_err(|error| {
                anyhow::anyhow!(
                    "cannot read the organization key file {}: {error}",
                    path.display()
                )
            })?
            .trim()
            .to_string(),
        (None, None) => return Ok(None),
    };
    if key.chars().count() < MIN_ORG_KEY_CHARS {
        anyhow::bail!(
            "the organization key must be at least {MIN_ORG_KEY_CHARS} characters long (this one has {}); generate one with `openssl rand -hex 32`",
            key.chars().count()
        );
    }
    Ok(Some(key))
}

impl Settings {
    pub fn resolve(
        common: &CommonOptions,
        serve: Option<&ServeOptions>,
    ) -> anyhow::Result<Settings> {
        let file = FileConfig::load(common.config.as_ref())?;
        let serve = serve.cloned().unwrap_or(ServeOptions {
            listen: None,
            org_key: None,
            org_key_file: None,
            flush_interval_secs: None,
            flush_rows: None,
            file_cache_mb: None,
            data_dir_lock_wait_secs: None,
            geoip_db: None,
            objects: None,
            memory_limit: None,
            limits: LimitOptions::default(),
        });
        let memory_limit_bytes = match (&serve.memory_limit, &file.memory_limit) {
            (Some(text), _) => keyhole_model::memory_budget::parse_size(text)
                .map_err(|problem| anyhow::anyhow!("--memory-limit: {problem}"))?,
            (None, Some(setting)) => setting
                .bytes()
                .map_err(|problem| anyhow::anyhow!("memory_limit in the config file: {problem}"))?,
            (None, None) => default_memory_limit(),
        };
        let org_key_file = serve.org_key_file.or(file.org_key_file);
        Ok(Settings {
            data_dir: common
                .data_dir
                .clone()
                .or(file.data_dir)
                .unwrap_or_else(|| DEFAULT_DATA_DIR.into()),
            metadata_url: common.metadata_url.clone().or(file.metadata_url),
            listen: serve
                .listen
                .or(file.listen)
                .unwrap_or_else(|| DEFAULT_LISTEN.into()),
            org_key: organization_key(serve.org_key.or(file.org_key), org_key_file.as_ref())?,
            flush_interval_secs: serve
                .flush_interval_secs
                .or(file.flush_interval_secs)
                .unwrap_or(30),
            flush_rows: serve.flush_rows.or(file.flush_rows).unwrap_or(200_000),
            file_cache_mb: serve.file_cache_mb.or(file.file_cache_mb),
            memory_limit_bytes,
            data_dir_lock_wait: Duration::from_secs(
                serve
                    .data_dir_lock_wait_secs
                    .or(file.data_dir_lock_wait_secs)
                    .unwrap_or(30),
            ),
            geoip_db: serve.geoip_db.or(file.geoip_db),
            objects: match serve.objects.or(file.objects) {
                Some(text) => {
                    keyhole_storage::ObjectsLocation::parse(&text).map_err(anyhow::Error::msg)?
                }
                None => keyhole_storage::ObjectsLocation::DataDir,
            },
            limits: serve.limits.or(file.limits),
        })
    }
}
