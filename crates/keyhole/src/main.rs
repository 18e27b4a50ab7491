//! The `keyhole` binary: `keyhole serve` runs the HTTP server on the embedded default (SQLite metadata,
//! local-disk Parquet); `keyhole project create|list` manage projects and `keyhole organization
//! rotate-key` the organization key directly in the data directory; `keyhole token mint` derives an embed
//! token from an access key, as a backend would; `keyhole backup` / `restore` copy a live data directory
//! and put a copy back; `keyhole demo` seeds a demo project and serves its vendors' dashboards.
//!
//! Design: `serve` takes the data directory's lock, then the port, before it touches anything in the
//! directory, so a second server started on the same directory (or port) leaves without having changed a
//! byte; and it prints the keys it created only once everything that could still fail has been opened, so
//! a failed first start never prints keys that are then lost.

mod backup;
mod config;
mod demo;
mod settings;
mod tenant_cli;

use std::time::Duration;

use anyhow::Context;
use clap::{CommandFactory, FromArgMatches};
use keyhole_meta::MetaStore;
use keyhole_server::AppState;
use keyhole_storage::{Storage, StorageConfig};

use crate::config::{
    Cli, Command, MintTokenOptions, OrganizationCommand, ProjectCommand, Settings, TokenCommand,
};

/// mimalloc instead of glibc malloc: ingest is allocation-heavy (a JSON tree per event, builders), and with
/// glibc's allocator its malloc/free and arena locks take about 40% of the server's CPU in batch ingest.
#[global_allocator]
static GLOBAL_ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    let matches = Cli::command().get_matches();
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(error) => error.exit(),
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,sqlx=warn".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(log_in_colour(
            std::io::IsTerminal::is_terminal(&std::io::stderr()),
            std::env::var_os("NO_COLOR").as_deref(),
        ))
        .init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    warn_about_secrets_on_the_command_line(&matches);
    runtime.block_on(async move {
        match &cli.command {
            Command::Serve(options) => serve(Settings::resolve(&cli.common, Some(options))?).await,
            Command::Project(command) => {
                project_command(Settings::resolve(&cli.common, None)?, command).await
            }
            Command::Organization(OrganizationCommand::RotateKey(options)) => {
                rotate_organization_key(Settings::resolve(&cli.common, None)?, options).await
            }
            Command::Token(TokenCommand::Mint(options)) => mint_token(options),
            Command::Tenant(command) => {
                tenant_cli::tenant_command(Settings::resolve(&cli.common, None)?, command).await
            }
            Command::Backup(options) => {
                let settings = Settings::resolve(&cli.common, None)?;
                refuse_with_shared_metadata(&settings, "backup")?;
                backup::backup(&settings.data_dir, &options.to).await
            }
            Command::Demo(options) => demo::demo(&cli.common, options).await,
            Command::Settings => {
                print!("{}", config::settings_docs());
                Ok(())
            }
            Command::Restore(options) => {
                let settings = Settings::resolve(&cli.common, None)?;
                refuse_with_shared_metadata(&settings, "restore")?;
                backup::restore(&options.from, &settings.data_dir).await
            }
        }
    })
}

/// A secret passed as an argument is visible to every local user (`ps`); say so.
fn warn_about_secrets_on_the_command_line(matches: &clap::ArgMatches) {
    let Some((_, subcommand)) = matches.subcommand() else {
        return;
    };
    let nested = subcommand.subcommand().map(|(_, nested)| nested);
    for arguments in std::iter::once(subcommand).chain(nested) {
        let on_command_line = arguments
            .try_get_raw("org_key")
            .is_ok_and(|value| value.is_some())
            && arguments.value_source("org_key") == Some(clap::parser::ValueSource::CommandLine);
        let key_on_command_line = arguments
            .try_get_raw("key")
            .is_ok_and(|value| value.is_some())
            && arguments.value_source("key") == Some(clap::parser::ValueSource::CommandLine);
        if key_on_command_line {
            tracing::warn!(
                "a key was passed on the command line, where every local user can read it; prefer its environment variable (see --help) or --key-file"
            );
        }
        if on_command_line {
            tracing::warn!(
                "the organization key was passed on the command line, where every local user can read it; prefer KEYHOLE_ORG_KEY or --org-key-file"
            );
        }
    }
}

/// `keyhole token mint`: what a backend does to derive an embed token, for trying tokens out by hand.
fn mint_token(options: &MintTokenOptions) -> anyhow::Result<()> {
    let secret = match (&options.key_file, &options.key) {
        (Some(path), _) => std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?
            .trim()
            .to_string(),
        (None, Some(key)) => key.clone(),
        (None, None) => anyhow::bail!("give the access key with --key-file or KEYHOLE_ACCESS_KEY"),
    };
    let mut claims: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(&options.claims).context("--claims must be a JSON object")?;
    let jti = options
        .jti
        .clone()
        .unwrap_or_else(keyhole_model::keys::generate_id);
    claims.insert("jti".into(), jti.into());
    let expires_at = chrono::Utc::now().timestamp() + options.ttl_secs;
    claims.insert("exp".into(), expires_at.into());
    println!(
        "{}",
        keyhole_model::embed_token::mint(&secret, &serde_json::Value::Object(claims))
    );
    Ok(())
}

/// `keyhole backup` and `restore` copy one node's data directory; with metadata (and events) shared by
/// several nodes, the shared systems are backed up with their own tools.
fn refuse_with_shared_metadata(settings: &Settings, command: &str) -> anyhow::Result<()> {
    anyhow::ensure!(
        settings.metadata_url.is_none()
            && settings.objects == keyhole_storage::ObjectsLocation::DataDir,
        "`keyhole {command}` copies a single node's data directory; metadata on PostgreSQL and files in a bucket are backed up with their own tools (pg_dump, the store's versioning or replication; see docs/scale-out.md)"
    );
    Ok(())
}

async fn open_meta(settings: &Settings) -> anyhow::Result<MetaStore> {
    std::fs::create_dir_all(&settings.data_dir)
        .with_context(|| format!("cannot create data dir {}", settings.data_dir.display()))?;
    let opened = match &settings.metadata_url {
        Some(url) => MetaStore::open(url).await,
        None => MetaStore::open_sqlite(&settings.data_dir.join("meta.sqlite")).await,
    };
    opened.context("cannot open metadata")
}

async fn serve(settings: Settings) -> anyhow::Result<()> {
    std::fs::create_dir_all(&settings.data_dir)
        .with_context(|| format!("cannot create data dir {}", settings.data_dir.display()))?;
    let _data_dir_lock =
        keyhole_storage::lock_data_dir(&settings.data_dir, settings.data_dir_lock_wait)
            .await
            .context("cannot take the data directory")?;
    let listener = bind(&settings.listen).await?;
    let meta = open_meta(&settings).await?;
    let storage = open_storage(&settings, &meta, DataFileRemoval::AfterGrace).await?;
    let parts = ServerParts::open(&settings)?;
    let organization = meta
        .ensure_organization(settings.org_key.as_deref())
        .await?;
    let default_project = if organization.created && meta.projects().await?.is_empty() {
        Some(meta.create_project("default").await?)
    } else {
        None
    };
    let address = listener.local_addr()?;
    let mut lines = vec![format!(
        "organization id: {} (also reachable as 'default')",
        organization.id
    )];
    if let Some(key) = &organization.generated_key {
        lines.push(format!(
            "organization key (shown once, store it now): {key}"
        ));
    }
    if let Some((project, keys)) = &default_project {
        lines.push(format!("default project created: {}", project.id));
        lines.push(format!("  master key: {}", keys.master));
        lines.push(format!("  write key:  {}", keys.write));
        lines.push(format!("  read key:   {}", keys.read));
        lines.push("  (keys are shown once; only their hashes are stored)".into());
    }
    lines.push(format!("console: http://{address}/console/"));
    run_http_server(
        &settings,
        listener,
        meta,
        storage,
        parts,
        organization.id,
        move |address| {
            for line in &lines {
                println!("{line}");
            }
            println!("keyhole listening on http://{address}");
        },
    )
    .await
}

/// Takes the port of `listen` (refused at once if another process holds it).
async fn bind(listen: &str) -> anyhow::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))
}

/// What the server needs from its settings besides storage and metadata, opened (and so checked) before
/// anything is created: the add-ons' data and the mail server.
struct ServerParts {
    enrichment: keyhole_server::enrichment::Enrichment,
    mailer: Option<keyhole_server::email_extraction::Mailer>,
}

impl ServerParts {
    fn open(settings: &Settings) -> anyhow::Result<ServerParts> {
        let enrichment = keyhole_server::enrichment::Enrichment::new(settings.geoip_db.clone())
            .map_err(|error| anyhow::anyhow!(error))?;
        let mailer = settings
            .smtp_url
            .as_deref()
            .map(|url| keyhole_server::email_extraction::Mailer::new(url, &settings.smtp_from))
            .transpose()
            .map_err(anyhow::Error::msg)?;
        Ok(ServerParts { enrichment, mailer })
    }
}

/// When data files replaced by a delete or a merge are removed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum DataFileRemoval {
    /// After the storage's grace period, so queries already reading them finish (a server).
    AfterGrace,
    /// At once, when the store is this process's own (an admin command, the only reader).
    AtOnceWhenPrivate,
}

/// Opens event storage. With metadata on PostgreSQL and files in a bucket, this node shares the store
/// with every node configured alike (the shared log in PostgreSQL, see `keyhole_storage::shared`);
/// otherwise the store is this node's own (WAL and manifest in the data directory).
async fn open_storage(
    settings: &Settings,
    meta: &MetaStore,
    removal: DataFileRemoval,
) -> anyhow::Result<Storage> {
    let mut storage_config = StorageConfig::new(settings.data_dir.join("events"));
    storage_config.flush_interval = Duration::from_secs(settings.flush_interval_secs.max(1));
    storage_config.flush_rows = settings.flush_rows.max(1);
    let budget = keyhole_model::memory_budget::MemoryBudget::new(settings.memory_limit_bytes);
    let file_cache_share = budget.share(keyhole_model::memory_budget::MemoryConsumer::FileCache);
    // At most its share of the budget; without --file-cache-mb, also at most 512 MiB (a larger cache
    // only pays once the files it would hold are read again and again).
    let file_cache_mb = settings.file_cache_mb;
    storage_config.file_cache_bytes =
        (file_cache_mb as u64 * 1024 * 1024).min(file_cache_share) as usize;
    tracing::info!(
        memory_limit_bytes = budget.limit_bytes(),
        file_cache_bytes = storage_config.file_cache_bytes,
        "memory budget"
    );
    storage_config.memory_budget = budget;
    storage_config.max_columns_per_collection = settings.limits.column_cap();
    storage_config.lock_wait = settings.data_dir_lock_wait;
    storage_config.objects = settings.objects.clone();
    let shared = meta.backend() == keyhole_meta::Backend::Postgres
        && matches!(settings.objects, keyhole_storage::ObjectsLocation::S3(_));
    if shared {
        storage_config.shared_log = Some(keyhole_server::shared_log::shared_log_of(meta));
    } else if removal == DataFileRemoval::AtOnceWhenPrivate {
        storage_config.delete_grace = Duration::ZERO;
    }
    tracing::info!(
        shared,
        "event storage: {}",
        if shared {
            "shared with the other nodes (log in PostgreSQL, files in the bucket)"
        } else {
            "this node's own (WAL and manifest in the data directory)"
        }
    );
    Storage::open(storage_config)
        .await
        .context("cannot open event storage")
}

/// The API served on a loopback port for an admin command's own calls (`keyhole tenant` without
/// `--server`), on the data directory it holds locked.
struct LocalServer {
    base_url: String,
    state: AppState,
    storage: Storage,
    stop: tokio::sync::oneshot::Sender<()>,
    serving: tokio::task::JoinHandle<std::io::Result<()>>,
    _lock: Option<keyhole_storage::DataDirLock>,
}

impl LocalServer {
    /// Opens the data directory (refused while a server runs on it, with `instead`) and serves it.
    async fn open(settings: &Settings, instead: &str) -> anyhow::Result<LocalServer> {
        let lock = lock_for_admin(settings, instead).await?;
        let meta = open_meta(settings).await?;
        let organization = meta.ensure_organization(None).await?;
        if let Some(key) = &organization.generated_key {
            println!("organization key (shown once, store it now): {key}");
        }
        let storage = open_storage(settings, &meta, DataFileRemoval::AtOnceWhenPrivate).await?;
        let state = AppState::new(
            meta,
            storage.clone(),
            organization.id,
            settings.limits.query_limits(),
        )
        .context("cannot start the query runtime")?;
        let listener = bind("127.0.0.1:0").await?;
        let base_url = format!("http://{}", listener.local_addr()?);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let app = keyhole_server::app(state.clone());
        let limits = settings.limits.http_limits();
        let serving = tokio::spawn(async move {
            keyhole_server::serve(listener, app, limits, async move {
                let _ = stopped.await;
            })
            .await
        });
        Ok(LocalServer {
            base_url,
            state,
            storage,
            stop,
            serving,
            _lock: lock,
        })
    }

    /// Stops serving, flushes and closes the store.
    async fn close(self) -> anyhow::Result<()> {
        let _ = self.stop.send(());
        self.serving.await.context("the local server failed")??;
        self.state.flush_before_exit().await;
        self.storage.close().await?;
        Ok(())
    }
}

/// Serves the API (and the console) on `settings.listen` until SIGINT/SIGTERM, then flushes and closes.
async fn run_http_server(
    settings: &Settings,
    listener: tokio::net::TcpListener,
    meta: MetaStore,
    storage: Storage,
    parts: ServerParts,
    organization_id: String,
    on_listening: impl FnOnce(std::net::SocketAddr),
) -> anyhow::Result<()> {
    let mut query_limits = settings.limits.query_limits();
    // One query may hold at most what all queries together may.
    let queries_share = storage
        .memory_budget()
        .share(keyhole_model::memory_budget::MemoryConsumer::Queries);
    query_limits.memory_bytes = query_limits.memory_bytes.min(queries_share as usize);
    let mut state = AppState::new(meta, storage.clone(), organization_id, query_limits)
        .context("cannot start the query runtime")?
        .with_enrichment(parts.enrichment)
        .with_write_limits(settings.limits.write_limits())
        .context("cannot start the write pool")?;
    if let Some(mailer) = parts.mailer {
        state = state.with_mailer(mailer);
    }
    state.refresh_all_clustering().await;

    let shutdown = shutdown_signal()?;
    let address = listener.local_addr()?;
    on_listening(address);
    tracing::info!(%address, data_dir = %settings.data_dir.display(), "serving");
    let state_at_exit = state.clone();
    let app = keyhole_server::app(state);
    keyhole_server::serve(listener, app, settings.limits.http_limits(), shutdown).await?;
    tracing::info!("http server stopped; flushing events");
    state_at_exit.flush_before_exit().await;
    storage.close().await?;
    tracing::info!("shut down cleanly");
    Ok(())
}

/// Installs the SIGINT and SIGTERM handlers now, before the listener opens, and returns the future
/// that completes on either. Installing them lazily (on the future's first poll) left a window in
/// which a server already answering requests died of a SIGTERM instead of shutting down cleanly.
fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut interrupt = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
    let mut terminate = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
    Ok(async move {
        tokio::select! {
            _ = interrupt.recv() => {},
            _ = terminate.recv() => {},
        }
        tracing::info!("shutdown requested");
    })
}

/// Whether the log is coloured: only on a terminal, and not when `NO_COLOR` is set to anything but the
/// empty string (no-color.org).
fn log_in_colour(stderr_is_terminal: bool, no_color: Option<&std::ffi::OsStr>) -> bool {
    stderr_is_terminal && no_color.is_none_or(std::ffi::OsStr::is_empty)
}

async fn rotate_organization_key(
    settings: Settings,
    options: &config::RotateKeyOptions,
) -> anyhow::Result<()> {
    let _lock = lock_for_admin(
        &settings,
        "stop the server first: the organization key is rotated on a stopped server and the new key holds from its next start",
    )
    .await?;
    let meta = open_meta(&settings).await?;
    let given = config::organization_key(options.org_key.clone(), options.org_key_file.as_ref())?;
    let generated = given.is_none().then(keyhole_model::keys::generate_secret);
    let new_key = given.or_else(|| generated.clone()).expect("one of the two");
    meta.ensure_organization(Some(&new_key))
        .await
        .map(|_| ())
        .or_else(|error| match error {
            keyhole_meta::MetaError::OrganizationKeyMismatch => Ok(()),
            other => Err(other),
        })?;
    meta.rotate_organization_key(&new_key).await?;
    println!("organization key replaced");
    if let Some(key) = generated {
        println!("new organization key (shown once, store it now): {key}");
    }
    Ok(())
}

/// Takes the data directory's lock for an admin command that writes metadata, without waiting: a
/// running server holds it, and two processes changing one SQLite file would leave the server's caches
/// behind the change. Refused with the lock message of a second `serve`, plus `instead`: what to do
/// through the running server. With metadata on PostgreSQL, nodes hear of changes, and nothing is locked.
async fn lock_for_admin(
    settings: &Settings,
    instead: &str,
) -> anyhow::Result<Option<keyhole_storage::DataDirLock>> {
    if settings.metadata_url.is_some() {
        return Ok(None);
    }
    std::fs::create_dir_all(&settings.data_dir)
        .with_context(|| format!("cannot create data dir {}", settings.data_dir.display()))?;
    match keyhole_storage::lock_data_dir(&settings.data_dir, Duration::ZERO).await {
        Ok(lock) => Ok(Some(lock)),
        Err(error @ keyhole_storage::StorageError::DataDirInUse(_)) => {
            anyhow::bail!("cannot take the data directory: {error}; {instead}")
        }
        Err(error) => Err(anyhow::Error::new(error).context("cannot take the data directory")),
    }
}

async fn project_command(settings: Settings, command: &ProjectCommand) -> anyhow::Result<()> {
    let _lock = match command {
        ProjectCommand::Create { .. } => {
            lock_for_admin(
                &settings,
                "create the project through the running server instead: POST /3.0/organizations/{organization_id}/projects with the organization key in the Authorization header and {\"name\": \"...\"} as the body",
            )
            .await?
        }
        ProjectCommand::List => None,
    };
    let meta = open_meta(&settings).await?;
    meta.ensure_organization(None).await.map(|bootstrap| {
        if let Some(key) = bootstrap.generated_key {
            println!("organization key (shown once, store it now): {key}");
        }
    })?;
    match command {
        ProjectCommand::Create { name } => {
            let (project, keys) = meta.create_project(name).await?;
            println!(
                "{}",
                serde_json::to_string_pretty(&keyhole_server::created_project_json(
                    &project, &keys
                ))?
            );
        }
        ProjectCommand::List => {
            for project in meta.projects().await? {
                println!(
                    "{}  {}  master {}…  write {}…  read {}…",
                    project.id,
                    project.name,
                    project.key_prefixes.master,
                    project.key_prefixes.write,
                    project.key_prefixes.read
                );
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::ffi::OsStr;

    #[test]
    fn the_log_is_coloured_only_on_a_terminal_without_no_color() {
        assert!(super::log_in_colour(true, None));
        assert!(super::log_in_colour(true, Some(OsStr::new(""))));
        assert!(!super::log_in_colour(true, Some(OsStr::new("1"))));
        assert!(!super::log_in_colour(false, None));
    }
}
