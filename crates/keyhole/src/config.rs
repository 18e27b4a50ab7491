//! Configuration: each setting comes from the command line, else its `KEYHOLE_*` environment variable
//! (both handled by clap), else the optional TOML file (`--config`), else the default.

use std::path::PathBuf;

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
    /// TOML file with any of: data_dir, listen, org_key, flush_interval_secs, flush_rows, file_cache_mb
    #[arg(long, env = "KEYHOLE_CONFIG", global = true)]
    pub config: Option<PathBuf>,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Start the HTTP server
    Serve(ServeOptions),
    /// Manage projects directly in the data directory
    #[command(subcommand)]
    Project(ProjectCommand),
}

#[derive(Args, Debug, Clone)]
pub struct ServeOptions {
    /// Address to listen on [default: 127.0.0.1:7070]
    #[arg(long, env = "KEYHOLE_LISTEN")]
    pub listen: Option<String>,
    /// Organization key; when absent on the first start, one is generated and printed once
    #[arg(long, env = "KEYHOLE_ORG_KEY", hide_env_values = true)]
    pub org_key: Option<String>,
    /// Seconds between background flushes of buffered events to Parquet [default: 30]
    #[arg(long, env = "KEYHOLE_FLUSH_INTERVAL_SECS")]
    pub flush_interval_secs: Option<u64>,
    /// Buffered events that trigger a flush to Parquet [default: 200000]
    #[arg(long, env = "KEYHOLE_FLUSH_ROWS")]
    pub flush_rows: Option<usize>,
    /// MiB of Parquet files kept in memory for queries; 0 turns the cache off [default: 512]
    #[arg(long, env = "KEYHOLE_FILE_CACHE_MB")]
    pub file_cache_mb: Option<usize>,
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
    pub listen: Option<String>,
    pub org_key: Option<String>,
    pub flush_interval_secs: Option<u64>,
    pub flush_rows: Option<usize>,
    pub file_cache_mb: Option<usize>,
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
    pub listen: String,
    pub org_key: Option<String>,
    pub flush_interval_secs: u64,
    pub flush_rows: usize,
    pub file_cache_mb: usize,
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
            flush_interval_secs: None,
            flush_rows: None,
            file_cache_mb: None,
        });
        Ok(Settings {
            data_dir: common
                .data_dir
                .clone()
                .or(file.data_dir)
                .unwrap_or_else(|| DEFAULT_DATA_DIR.into()),
            listen: serve
                .listen
                .or(file.listen)
                .unwrap_or_else(|| DEFAULT_LISTEN.into()),
            org_key: serve.org_key.or(file.org_key),
            flush_interval_secs: serve
                .flush_interval_secs
                .or(file.flush_interval_secs)
                .unwrap_or(30),
            flush_rows: serve.flush_rows.or(file.flush_rows).unwrap_or(200_000),
            file_cache_mb: serve.file_cache_mb.or(file.file_cache_mb).unwrap_or(512),
        })
    }
}
