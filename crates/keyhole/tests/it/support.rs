//! Test servers and helpers shared by the test modules.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use keyhole_meta::MetaStore;
use keyhole_server::AppState;
use keyhole_storage::{CollectionId, CollectionScan, Storage, StorageConfig, TimeRange};
use serde_json::Value;

/// A project's id and key secrets.
#[derive(Clone, Debug)]
pub struct ProjectKeys {
    pub id: String,
    pub master: String,
    pub write: String,
    pub read: String,
}

/// `keyhole_server::app` served in-process on 127.0.0.1, with direct access to its storage.
pub struct InProcessServer {
    pub base_url: String,
    pub storage: Storage,
    pub meta: MetaStore,
    pub project: ProjectKeys,
    pub org_key: String,
    pub org_id: String,
    data_dir_guard: tempfile::TempDir,
    server: tokio::task::JoinHandle<()>,
}

/// The limits an in-process server runs under.
#[derive(Clone, Debug, Default)]
pub struct TestLimits {
    pub queries: keyhole_query::QueryLimits,
    pub http: keyhole_server::HttpLimits,
    pub writes: keyhole_server::write_pool::WriteLimits,
    pub max_columns_per_collection: Option<usize>,
    /// The memory budget's limit in bytes (storage's default budget when `None`).
    pub memory_limit: Option<u64>,
    /// How long replaced data files outlive their replacement (storage's default when `None`).
    pub delete_grace: Option<Duration>,
    /// Where the server keeps its metadata (SQLite in the data directory by default).
    pub metadata: MetadataBackend,
}

/// The metadata store an in-process server runs on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum MetadataBackend {
    /// SQLite in the data directory.
    #[default]
    Sqlite,
    /// A fresh database on the test PostgreSQL server (`KEYHOLE_TEST_POSTGRES_URL`).
    Postgres,
}

/// A new, empty database on the test PostgreSQL server; its URL.
pub async fn fresh_postgres_database() -> String {
    let server_url = keyhole_test_env::postgres_url()
        .expect("tests on PostgreSQL return early without KEYHOLE_TEST_POSTGRES_URL");
    let name = format!("keyhole_it_{}", keyhole_model::keys::generate_id());
    keyhole_meta::create_postgres_database(&server_url, &name)
        .await
        .unwrap()
}

/// Declares each listed `async fn(MetadataBackend)` test once per metadata backend (PostgreSQL's return
/// early, announced, without `KEYHOLE_TEST_POSTGRES_URL`), as the metadata conformance suite does.
macro_rules! on_each_metadata_backend {
    ($($test:ident),* $(,)?) => {
        mod on_sqlite {
            $(
                #[tokio::test(flavor = "multi_thread")]
                async fn $test() {
                    super::$test(crate::support::MetadataBackend::Sqlite).await
                }
            )*
        }
        mod on_postgres {
            $(
                #[tokio::test(flavor = "multi_thread")]
                async fn $test() {
                    if keyhole_test_env::postgres_url().is_none() {
                        return;
                    }
                    super::$test(crate::support::MetadataBackend::Postgres).await
                }
            )*
        }
    };
}
pub(crate) use on_each_metadata_backend;

impl InProcessServer {
    pub async fn start() -> InProcessServer {
        InProcessServer::start_with(TestLimits::default()).await
    }

    pub async fn start_with(limits: TestLimits) -> InProcessServer {
        let data_dir = tempfile::tempdir().unwrap();
        let meta = match limits.metadata {
            MetadataBackend::Sqlite => MetaStore::open_sqlite(&data_dir.path().join("meta.sqlite"))
                .await
                .unwrap(),
            MetadataBackend::Postgres => MetaStore::open(&fresh_postgres_database().await)
                .await
                .unwrap(),
        };
        let organization = meta.ensure_organization(None).await.unwrap();
        let (project, keys) = meta.create_project("test").await.unwrap();
        let mut config = StorageConfig::new(data_dir.path().join("events"));
        config.flush_interval = Duration::from_secs(3600);
        if let Some(max) = limits.max_columns_per_collection {
            config.max_columns_per_collection = max;
        }
        if let Some(limit) = limits.memory_limit {
            config.memory_budget = keyhole_model::memory_budget::MemoryBudget::new(limit);
        }
        if let Some(grace) = limits.delete_grace {
            config.delete_grace = grace;
        }
        let storage = Storage::open(config).await.unwrap();
        let state = AppState::new(
            meta.clone(),
            storage.clone(),
            organization.id.clone(),
            limits.queries,
        )
        .unwrap()
        .with_write_limits(limits.writes)
        .unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let app = keyhole_server::app(state);
        let server = tokio::spawn(async move {
            keyhole_server::serve(listener, app, limits.http, std::future::pending())
                .await
                .unwrap();
        });
        InProcessServer {
            base_url: format!("http://{address}"),
            storage,
            meta,
            project: ProjectKeys {
                id: project.id,
                master: keys.master,
                write: keys.write,
                read: keys.read,
            },
            org_key: organization.generated_key.unwrap(),
            org_id: organization.id,
            data_dir_guard: data_dir,
            server,
        }
    }

    /// The server's data directory (metadata and events).
    pub fn data_dir(&self) -> &Path {
        self.data_dir_guard.path()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base_url, path)
    }

    /// `{base}/3.0/projects/{id}{rest}`.
    pub fn project_url(&self, rest: &str) -> String {
        format!("{}/3.0/projects/{}{}", self.base_url, self.project.id, rest)
    }

    /// Overwrites an access key's stored options behind the API's back, as if the rules had tightened
    /// since the key was made (through the database file, the way an old version's data would look).
    pub async fn store_key_options(&self, secret: &str, options: Value) {
        let database = self.data_dir_guard.path().join("meta.sqlite");
        let options_text = options.to_string();
        let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", database.display()))
            .await
            .unwrap();
        let updated = sqlx::query("UPDATE project_keys SET options = ? WHERE key_hash = ?")
            .bind(options_text)
            .bind(keyhole_model::KeyHash::of_secret(secret).to_hex())
            .execute(&pool)
            .await
            .unwrap();
        assert_eq!(updated.rows_affected(), 1);
        pool.close().await;
    }

    /// Writes `events` to `collection` as one batch with the write key; every event must be stored.
    pub async fn write_events(&self, collection: &str, events: Vec<Value>) {
        let answer = send(
            client()
                .post(self.project_url("/events"))
                .header("Authorization", &self.project.write)
                .json(&serde_json::json!({ collection: events })),
        )
        .await;
        assert_eq!(answer.0, 200, "{}", answer.1);
        let results = answer.1[collection].as_array().cloned().unwrap_or_default();
        assert!(
            results.iter().all(|result| result["success"] == true),
            "{}",
            answer.1
        );
    }

    /// The newest page of the project's audit log (refusals written first), as `GET /keys/audit` shows it.
    pub async fn audit_entries(&self) -> Value {
        self.meta.flush_audit().await;
        let audit = send(
            client()
                .get(self.project_url("/keys/audit"))
                .header("Authorization", &self.project.master),
        )
        .await;
        assert_eq!(audit.0, 200, "{}", audit.1);
        audit.1["entries"].clone()
    }

    /// Creates an access key over HTTP with the master key; answers its secret.
    pub async fn create_access_key(&self, definition: Value) -> String {
        let created = send(
            client()
                .post(self.project_url("/keys"))
                .header("Authorization", &self.project.master)
                .json(&definition),
        )
        .await;
        assert_eq!(created.0, 201, "{}", created.1);
        created.1["key"].as_str().unwrap().to_string()
    }

    /// `POST {project}{rest}` of a JSON body with `key`.
    pub async fn post_json(&self, rest: &str, key: &str, body: &Value) -> (u16, Value) {
        send(
            client()
                .post(self.project_url(rest))
                .header("Authorization", key)
                .json(body),
        )
        .await
    }

    /// Every event of `collection`, as the master key's extraction answers.
    pub async fn extraction(&self, collection: &str) -> Vec<Value> {
        let answer = send(
            client()
                .post(self.project_url("/queries/extraction"))
                .header("Authorization", &self.project.master)
                .json(&serde_json::json!({"event_collection": collection})),
        )
        .await;
        assert_eq!(answer.0, 200, "{}", answer.1);
        answer.1["result"].as_array().cloned().unwrap_or_default()
    }

    /// `GET /keys/self` with `credential`.
    pub async fn key_self(&self, credential: &str) -> (u16, Value) {
        send(
            client()
                .get(self.project_url("/keys/self"))
                .header("Authorization", credential),
        )
        .await
    }

    pub async fn scan(&self, collection: &str) -> CollectionScan {
        let id = CollectionId {
            project: self.project.id.clone(),
            collection: collection.to_string(),
        };
        self.storage.scan(&id, TimeRange::ALL).await.unwrap()
    }
}

impl Drop for InProcessServer {
    fn drop(&mut self) {
        self.server.abort();
    }
}

pub fn client() -> reqwest::Client {
    // Plain HTTP to local servers: no root certificates. reqwest loads the system's (the rustls native
    // roots object_store's S3 client enables) for every client built, which was most of the tests' time.
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .tls_built_in_root_certs(false)
        .build()
        .unwrap()
}

/// Sends a request and returns (status, JSON body or Null).
pub async fn send(request: reqwest::RequestBuilder) -> (u16, Value) {
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// Asserts a Keen error body: status, `error_code`, and a non-empty `message`.
pub fn assert_keen_error(answer: &(u16, Value), status: u16, error_code: &str) {
    assert_eq!(answer.0, status, "unexpected status, body {}", answer.1);
    assert_eq!(answer.1["error_code"], error_code, "body {}", answer.1);
    assert!(
        answer.1["message"].as_str().is_some_and(|m| !m.is_empty()),
        "body {}",
        answer.1
    );
}

/// The real `keyhole` binary running as a child process on a data directory.
pub struct BinaryServer {
    pub child: Child,
    pub base_url: String,
    pub stdout_lines: Vec<String>,
}

pub fn keyhole_binary() -> &'static str {
    env!("CARGO_BIN_EXE_keyhole")
}

impl BinaryServer {
    /// Starts `keyhole serve` and waits until it prints its address.
    pub fn start(data_dir: &Path, extra_args: &[&str], envs: &[(&str, &str)]) -> BinaryServer {
        let mut args = vec![
            "serve".to_string(),
            "--listen".into(),
            "127.0.0.1:0".into(),
            "--data-dir".into(),
        ];
        args.push(data_dir.to_str().unwrap().to_string());
        args.extend(extra_args.iter().map(std::string::ToString::to_string));
        BinaryServer::start_raw(&args, envs)
    }

    /// Starts the binary with exactly these arguments (no defaults added).
    pub fn start_raw(args: &[String], envs: &[(&str, &str)]) -> BinaryServer {
        BinaryServer::start_with_stderr(args, envs, Stdio::inherit())
    }

    /// Like [`BinaryServer::start_raw`], with the server's log output sent to `stderr`.
    pub fn start_with_stderr(
        args: &[String],
        envs: &[(&str, &str)],
        stderr: Stdio,
    ) -> BinaryServer {
        let mut command = Command::new(keyhole_binary());
        command
            .args(args)
            .env_remove("KEYHOLE_ORG_KEY")
            .env_remove("KEYHOLE_LISTEN")
            .env_remove("KEYHOLE_DATA_DIR")
            .env_remove("KEYHOLE_CONFIG")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(stderr);
        for (name, value) in envs {
            command.env(name, value);
        }
        let mut child = command.spawn().unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut reader = BufReader::new(stdout);
        let mut stdout_lines = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        let base_url = loop {
            assert!(
                Instant::now() < deadline,
                "server did not start: {stdout_lines:?}"
            );
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap() == 0 {
                panic!("server exited before listening: {stdout_lines:?}");
            }
            let line = line.trim_end().to_string();
            if let Some(address) = line.strip_prefix("keyhole listening on ") {
                break address.to_string();
            }
            stdout_lines.push(line);
        };
        // Keep draining stdout so the child never blocks on a full pipe.
        std::thread::spawn(move || for _ in reader.lines() {});
        BinaryServer {
            child,
            base_url,
            stdout_lines,
        }
    }

    /// Starts `keyhole serve` on `directory/data` with its log written to the file it returns
    /// (`directory/server.log`).
    pub fn start_logging_to_file(
        directory: &Path,
        envs: &[(&str, &str)],
    ) -> (BinaryServer, PathBuf) {
        let log_path = directory.join("server.log");
        let log = std::fs::File::create(&log_path).unwrap();
        let args: Vec<String> = ["serve", "--listen", "127.0.0.1:0", "--data-dir"]
            .iter()
            .map(ToString::to_string)
            .chain([directory.join("data").display().to_string()])
            .collect();
        let server = BinaryServer::start_with_stderr(&args, envs, Stdio::from(log));
        (server, log_path)
    }

    /// The organization key printed on the first start.
    pub fn printed_organization_key(&self) -> String {
        self.stdout_lines
            .iter()
            .find_map(|line| {
                line.split("organization key (shown once, store it now): ")
                    .nth(1)
            })
            .unwrap_or_else(|| panic!("no organization key printed: {:?}", self.stdout_lines))
            .trim()
            .to_string()
    }

    /// The default project printed on the first start.
    pub fn printed_project(&self) -> ProjectKeys {
        let value_after = |prefix: &str| {
            self.stdout_lines
                .iter()
                .find_map(|line| {
                    line.trim()
                        .strip_prefix(prefix)
                        .map(|rest| rest.trim().to_string())
                })
                .unwrap_or_else(|| {
                    panic!(
                        "no line starting with {prefix:?} in {:?}",
                        self.stdout_lines
                    )
                })
        };
        ProjectKeys {
            id: value_after("default project created:"),
            master: value_after("master key:"),
            write: value_after("write key:"),
            read: value_after("read key:"),
        }
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then waits for a clean exit.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let child = rustix::process::Pid::from_raw(self.child.id() as i32).expect("a child's pid");
        rustix::process::kill_process(child, rustix::process::Signal::TERM).unwrap();
        self.child.wait().unwrap()
    }

    /// SIGTERM, then waits up to `limit` for the exit; `None` (and killed) if it did not exit by then.
    pub fn terminate_within(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let child = rustix::process::Pid::from_raw(self.child.id() as i32).expect("a child's pid");
        rustix::process::kill_process(child, rustix::process::Signal::TERM).unwrap();
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.kill();
        None
    }
}

impl Drop for BinaryServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Runs `sdk-tests/node/{script}` (a Chromium run through playwright-core) with `envs` and `SCREENSHOT_DIR`
/// set to `artifacts/`; the JSON it prints. Fails the test with its output when it fails.
pub fn run_node_script(script: &str, envs: &[(&str, &str)]) -> Value {
    let artifacts = repo_root().join("artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();
    let mut command = Command::new("node");
    command
        .arg(script)
        .current_dir(repo_root().join("sdk-tests/node"))
        .env("SCREENSHOT_DIR", &artifacts);
    for (name, value) in envs {
        command.env(name, value);
    }
    let output = command.output().unwrap();
    assert!(
        output.status.success(),
        "{script} failed:\nstdout: {}\nstderr: {}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

/// Opens a data directory's event storage directly (the server must be stopped).
pub async fn open_storage(data_dir: &Path) -> Storage {
    Storage::open(StorageConfig::new(data_dir.join("events")))
        .await
        .unwrap()
}

/// Every value of a string column across a scan (nulls skipped).
pub fn string_values(scan: &CollectionScan, column: &str) -> Vec<String> {
    use arrow::array::{Array, StringArray};
    let mut values = Vec::new();
    for batch in &scan.batches {
        let Some(array) = batch.column_by_name(column) else {
            continue;
        };
        let strings = array.as_any().downcast_ref::<StringArray>().unwrap();
        for row in 0..strings.len() {
            if strings.is_valid(row) {
                values.push(strings.value(row).to_string());
            }
        }
    }
    values
}

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

/// Whether the PostgreSQL server and the S3-compatible bucket the multi-node tests need are set
/// (`keyhole_test_env` announces what is missing).
pub fn has_cluster_services() -> bool {
    let postgres = keyhole_test_env::postgres_url().is_some();
    let s3 = keyhole_test_env::s3_bucket().is_some();
    postgres && s3
}

/// Whether the Python Keen SDK and the Python test helpers are installed.
pub fn has_python_sdk() -> bool {
    keyhole_test_env::python_modules(&[
        "keen",
        "cryptography",
        "mmdb_writer",
        "netaddr",
        "aiosmtpd",
    ])
}

/// Whether this build embeds the third-party files (console bundles, add-on data).
pub fn has_third_party_assets() -> bool {
    keyhole_test_env::prerequisite(
        "the third-party assets (console bundles, add-on data)",
        "run scripts/install-assets, then build and test again",
        keyhole_server::third_party::file("regexes.yaml").is_some()
            && keyhole_server::third_party::file("keen-dataviz.min.js").is_some(),
    )
}

/// Whether everything the browser tests drive is here: Chromium, playwright-core and the SDKs under
/// Node, the Python helpers that write the GeoIP database, and the console bundles.
pub fn has_browser() -> bool {
    let browser = keyhole_test_env::chromium();
    let python = has_python_sdk();
    let assets = has_third_party_assets();
    browser && python && assets
}

/// `value` with every timestamp that is "now" — a `this_…` timeframe's end, the clipped end of its last
/// interval bucket — replaced by `"<now>"`, so two answers computed a few milliseconds apart compare equal.
/// A timestamp counts as now when it lies in the last ten minutes and is not on a whole minute (a bucket
/// boundary always is).
pub fn with_now_redacted(value: &Value) -> Value {
    let now = chrono::Utc::now();
    match value {
        Value::String(text) => match chrono::DateTime::parse_from_rfc3339(text) {
            Ok(time) => {
                let time = time.with_timezone(&chrono::Utc);
                let recent = time > now - chrono::Duration::minutes(10)
                    && time <= now + chrono::Duration::seconds(1);
                let on_a_minute = time.timestamp_millis() % 60_000 == 0;
                if recent && !on_a_minute {
                    Value::String("<now>".to_string())
                } else {
                    value.clone()
                }
            }
            Err(_) => value.clone(),
        },
        Value::Array(items) => Value::Array(items.iter().map(with_now_redacted).collect()),
        Value::Object(fields) => Value::Object(
            fields
                .iter()
                .map(|(name, field)| (name.clone(), with_now_redacted(field)))
                .collect(),
        ),
        _ => value.clone(),
    }
}
