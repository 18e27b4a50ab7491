//! Several `keyhole` processes sharing one PostgreSQL database and one S3-compatible bucket (both real
//! servers, started by `.ci/run`): writes spread over the nodes are counted by queries on every node, a
//! node killed with SIGKILL during ingest loses no acknowledged event and doubles none, an event
//! acknowledged by one node is counted by another within a second, and a key revoked through one node is
//! refused by another within a second.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::{BinaryServer, ProjectKeys, client, send};

/// The environment of a node of a fresh cluster: a new PostgreSQL database and a new prefix in the test
/// bucket (the `AWS_*` variables naming the S3 endpoint are inherited from the test's environment).
pub(crate) struct Cluster {
    envs: Vec<(String, String)>,
    data_dirs: Vec<tempfile::TempDir>,
}

const ORG_KEY: &str = "scale-out-test-organization-key-0123456789";

impl Cluster {
    /// The same cluster with the nodes reaching PostgreSQL at `address` (a proxy in front of it).
    pub(crate) fn with_metadata_at(mut self, address: &str) -> Cluster {
        let url = url::Url::parse(&self.envs[0].1).unwrap();
        let direct = format!("{}:{}", url.host_str().unwrap(), url.port().unwrap_or(5432));
        self.envs[0].1 = self.envs[0].1.replacen(&direct, address, 1);
        self
    }

    /// The same cluster with the nodes reaching the S3-compatible server at `endpoint` (a proxy).
    pub(crate) fn with_object_store_at(mut self, endpoint: &str) -> Cluster {
        self.envs
            .push(("AWS_ENDPOINT_URL".to_string(), endpoint.to_string()));
        self
    }

    /// The address PostgreSQL listens on (`host:port` of the metadata URL).
    pub(crate) fn metadata_address(&self) -> String {
        let url = url::Url::parse(&self.envs[0].1).unwrap();
        format!("{}:{}", url.host_str().unwrap(), url.port().unwrap_or(5432))
    }

    pub(crate) async fn create(nodes: usize) -> Cluster {
        let bucket = keyhole_test_env::s3_bucket()
            .expect("the scale-out tests return early without KEYHOLE_TEST_S3_BUCKET");
        let prefix = keyhole_model::keys::generate_id();
        Cluster {
            envs: vec![
                (
                    "KEYHOLE_METADATA_URL".into(),
                    crate::support::fresh_postgres_database().await,
                ),
                ("KEYHOLE_OBJECTS".into(), format!("s3://{bucket}/{prefix}")),
                ("KEYHOLE_ORG_KEY".into(), ORG_KEY.into()),
            ],
            data_dirs: (0..nodes).map(|_| tempfile::tempdir().unwrap()).collect(),
        }
    }

    /// Starts node `index` with its log written to `log` (a file), instead of the test's output.
    pub(crate) fn start_logging_to(&self, index: usize, log: &std::path::Path) -> BinaryServer {
        let envs: Vec<(&str, &str)> = self
            .envs
            .iter()
            .map(|(name, value)| (name.as_str(), value.as_str()))
            .collect();
        let args: Vec<String> = ["serve", "--listen", "127.0.0.1:0", "--data-dir"]
            .iter()
            .map(ToString::to_string)
            .chain([self.data_dirs[index].path().display().to_string()])
            .chain(["--flush-rows", "600", "--flush-interval-secs", "1"].map(String::from))
            .collect();
        let file = std::fs::File::create(log).unwrap();
        BinaryServer::start_with_stderr(&args, &envs, std::process::Stdio::from(file))
    }

    /// Starts node `index` (again, after a kill, on the same data directory).
    pub(crate) fn start(&self, index: usize) -> BinaryServer {
        let envs: Vec<(&str, &str)> = self
            .envs
            .iter()
            .map(|(name, value)| (name.as_str(), value.as_str()))
            .collect();
        let args = ["--flush-rows", "600", "--flush-interval-secs", "1"];
        BinaryServer::start(self.data_dirs[index].path(), &args, &envs)
    }
}

async fn query(base_url: &str, keys: &ProjectKeys, analysis: &str, extra: Value) -> (u16, Value) {
    let mut body = json!({"event_collection": "orders"});
    body.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    send(
        client()
            .post(format!(
                "{base_url}/3.0/projects/{}/queries/{analysis}",
                keys.id
            ))
            .header("Authorization", &keys.read)
            .json(&body),
    )
    .await
}

async fn count_on(base_url: &str, keys: &ProjectKeys) -> u64 {
    let answer = query(base_url, keys, "count", json!({})).await;
    assert_eq!(answer.0, 200, "{}", answer.1);
    answer.1["result"].as_u64().unwrap()
}

/// Writes batches of 20 numbered events to one node until it stops answering; the numbers acknowledged.
async fn write_until_refused(
    base_url: String,
    keys: ProjectKeys,
    writer: u64,
    acknowledged: Arc<Mutex<Vec<u64>>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
) {
    let mut batch_number = 0u64;
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        let numbers: Vec<u64> = (0..20)
            .map(|index| writer * 1_000_000_000 + batch_number * 20 + index)
            .collect();
        batch_number += 1;
        let events: Vec<Value> = numbers.iter().map(|n| json!({"n": n})).collect();
        let answer = client()
            .post(format!("{base_url}/3.0/projects/{}/events", keys.id))
            .header("Authorization", &keys.write)
            .json(&json!({"orders": events}))
            .timeout(Duration::from_secs(10))
            .send()
            .await;
        let Ok(response) = answer else { return };
        if response.status() != 200 {
            return;
        }
        let Ok(body) = response.json::<Value>().await else {
            return;
        };
        let stored = body["orders"]
            .as_array()
            .is_some_and(|results| results.iter().all(|result| result["success"] == true));
        assert!(stored, "{body}");
        acknowledged.lock().unwrap().extend(numbers);
    }
}

#[test]
fn three_nodes_share_events_and_a_killed_node_loses_nothing_acknowledged() {
    if !crate::support::has_cluster_services() {
        return;
    }
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let cluster = runtime.block_on(Cluster::create(3));
    let first = cluster.start(0);
    let keys = first.printed_project();
    let mut nodes = vec![first, cluster.start(1), cluster.start(2)];
    let acknowledged = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writers: Vec<_> = (0..6u64)
        .map(|writer| {
            runtime.spawn(write_until_refused(
                nodes[writer as usize % 3].base_url.clone(),
                keys.clone(),
                writer,
                acknowledged.clone(),
                stop.clone(),
            ))
        })
        .collect();
    // Long enough for several flushes and a compaction on the shared store, then node 2 dies mid-ingest.
    std::thread::sleep(Duration::from_millis(2500));
    nodes[1].kill();
    std::thread::sleep(Duration::from_millis(1500));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for writer in writers {
        runtime.block_on(writer).unwrap();
    }
    let acknowledged = acknowledged.lock().unwrap().clone();
    assert!(
        acknowledged.len() > 1_000,
        "only {} events acknowledged",
        acknowledged.len()
    );

    // Restarted, the killed node starts from the shared checkpoint and log.
    nodes[1] = cluster.start(1);
    runtime.block_on(async {
        for node in &nodes {
            let deadline = Instant::now() + Duration::from_secs(5);
            // Events whose acknowledgement the kill cut off may be stored too; none may be missing or doubled.
            while count_on(&node.base_url, &keys).await < acknowledged.len() as u64 {
                assert!(
                    Instant::now() < deadline,
                    "{} never counted every acknowledged event",
                    node.base_url
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            let unique = query(
                &node.base_url,
                &keys,
                "select_unique",
                json!({"target_property": "n"}),
            )
            .await;
            assert_eq!(unique.0, 200, "{}", unique.1);
            let stored: std::collections::HashSet<u64> = unique.1["result"]
                .as_array()
                .unwrap()
                .iter()
                .map(|value| value.as_u64().unwrap())
                .collect();
            let missing = acknowledged.iter().filter(|n| !stored.contains(n)).count();
            assert_eq!(missing, 0, "{} misses acknowledged events", node.base_url);
            assert_eq!(
                count_on(&node.base_url, &keys).await,
                stored.len() as u64,
                "no event is doubled"
            );
        }
    });
    // Flushes and compactions ran on the shared store while nodes wrote and one died.
    let maintenance = runtime.block_on(async {
        sqlx::any::install_default_drivers();
        let mut database = <sqlx::AnyConnection as sqlx::Connection>::connect(&cluster.envs[0].1)
            .await
            .unwrap();
        let count = |kind: &'static str| {
            sqlx::query("SELECT COUNT(*) AS records FROM storage_log WHERE kind = $1").bind(kind)
        };
        let flushed: i64 = sqlx::Row::get(
            &count("flushed").fetch_one(&mut database).await.unwrap(),
            "records",
        );
        let swapped: i64 = sqlx::Row::get(
            &count("swapped").fetch_one(&mut database).await.unwrap(),
            "records",
        );
        (flushed, swapped)
    });
    assert!(maintenance.0 >= 2, "flushes recorded: {maintenance:?}");

    // Cross-node freshness: an event acknowledged by node 0 is counted by node 2 within a second.
    let mut delays = Vec::new();
    runtime.block_on(async {
        for round in 0..20 {
            let before = count_on(&nodes[2].base_url, &keys).await;
            let written = send(
                client()
                    .post(format!(
                        "{}/3.0/projects/{}/events/orders",
                        nodes[0].base_url, keys.id
                    ))
                    .header("Authorization", &keys.write)
                    .json(&json!({"n": 9_000_000_000u64 + round})),
            )
            .await;
            assert_eq!(written.0, 201, "{}", written.1);
            let acknowledged_at = Instant::now();
            assert_eq!(
                count_on(&nodes[0].base_url, &keys).await,
                before + 1,
                "read-your-writes on the same node"
            );
            while count_on(&nodes[2].base_url, &keys).await < before + 1 {
                assert!(
                    acknowledged_at.elapsed() < Duration::from_secs(1),
                    "node 2 did not count the event within 1 s"
                );
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            delays.push(acknowledged_at.elapsed());
        }
    });
    delays.sort();
    eprintln!(
        "cross-node freshness over {} writes: median {:?}, max {:?}",
        delays.len(),
        delays[delays.len() / 2],
        delays[delays.len() - 1]
    );
}

#[test]
fn a_key_revoked_on_one_node_is_refused_by_another_within_a_second() {
    if !crate::support::has_cluster_services() {
        return;
    }
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let cluster = runtime.block_on(Cluster::create(2));
    let first = cluster.start(0);
    let keys = first.printed_project();
    let second = cluster.start(1);
    runtime.block_on(async {
        let created = send(
            client()
                .post(format!("{}/3.0/projects/{}/keys", first.base_url, keys.id))
                .header("Authorization", &keys.master)
                .json(&json!({"name": "dashboard", "permitted": ["queries"]})),
        )
        .await;
        assert_eq!(created.0, 201, "{}", created.1);
        let secret = created.1["key"].as_str().unwrap().to_string();
        let query_with = |base_url: String, secret: String| {
            let project = keys.id.clone();
            async move {
                send(
                    client()
                        .get(format!(
                            "{base_url}/3.0/projects/{project}/queries/count?event_collection=orders"
                        ))
                        .header("Authorization", &secret),
                )
                .await
                .0
            }
        };
        let mut delays = Vec::new();
        for _ in 0..5 {
            // Used on node 1 first, so its grant is cached there.
            for _ in 0..3 {
                assert_eq!(query_with(second.base_url.clone(), secret.clone()).await, 200);
            }
            let revoked = send(
                client()
                    .post(format!("{}/3.0/projects/{}/keys/{secret}/revoke", first.base_url, keys.id))
                    .header("Authorization", &keys.master),
            )
            .await;
            assert_eq!(revoked.0, 200, "{}", revoked.1);
            let revoked_at = Instant::now();
            while query_with(second.base_url.clone(), secret.clone()).await == 200 {
                assert!(revoked_at.elapsed() < Duration::from_secs(1), "node 1 still accepts the revoked key after 1 s");
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            delays.push(revoked_at.elapsed());
            let restored = send(
                client()
                    .post(format!("{}/3.0/projects/{}/keys/{secret}/unrevoke", first.base_url, keys.id))
                    .header("Authorization", &keys.master),
            )
            .await;
            assert_eq!(restored.0, 200, "{}", restored.1);
            let restored_at = Instant::now();
            while query_with(second.base_url.clone(), secret.clone()).await != 200 {
                assert!(restored_at.elapsed() < Duration::from_secs(1), "node 1 still refuses the restored key after 1 s");
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }
        delays.sort();
        eprintln!("revocation reached the other node in: median {:?}, max {:?}", delays[2], delays[4]);
    });
}
