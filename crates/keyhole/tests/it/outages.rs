//! Two nodes whose PostgreSQL goes away and comes back (through `outage_proxy`): during the outage every
//! request is answered within 2 s — a write with `503` and `Retry-After` or stored, a read with an answer
//! or `503` — never a `500`; after it, writes are taken again, every node counts every acknowledged event
//! exactly once (writes retried on the other node with the same `Idempotency-Key` included), and a key
//! revoked on one node is refused by the other within a second. The same holds when the link loses
//! packets instead (connections stay open, nothing answers).

use std::time::{Duration, Instant};

use serde_json::json;

use crate::outage_proxy::OutageProxy;
use crate::scale_out::Cluster;
use crate::support::{BinaryServer, ProjectKeys, client, send};

/// What one request during the outage got.
#[derive(Debug)]
struct Answer {
    what: &'static str,
    status: u16,
    took: Duration,
    retry_after: Option<String>,
}

async fn timed(what: &'static str, request: reqwest::RequestBuilder) -> Answer {
    let started = Instant::now();
    let response = request.timeout(Duration::from_secs(30)).send().await;
    let took = started.elapsed();
    match response {
        Ok(response) => Answer {
            what,
            status: response.status().as_u16(),
            took,
            retry_after: response
                .headers()
                .get("retry-after")
                .map(|value| value.to_str().unwrap().to_string()),
        },
        Err(_) => Answer {
            what,
            status: 0,
            took,
            retry_after: None,
        },
    }
}

fn write_request(base_url: &str, keys: &ProjectKeys, n: u64) -> reqwest::RequestBuilder {
    client()
        .post(format!("{base_url}/3.0/projects/{}/events/orders", keys.id))
        .header("Authorization", &keys.write)
        .json(&json!({"n": n}))
}

fn count_request(base_url: &str, keys: &ProjectKeys, key: &str) -> reqwest::RequestBuilder {
    client()
        .post(format!("{base_url}/3.0/projects/{}/queries/count", keys.id))
        .header("Authorization", key)
        .json(&json!({"event_collection": "orders"}))
}

async fn unique_numbers(base_url: &str, keys: &ProjectKeys) -> (u64, usize) {
    let count = send(count_request(base_url, keys, &keys.read)).await;
    assert_eq!(count.0, 200, "{}", count.1);
    let unique = send(
        client()
            .post(format!(
                "{base_url}/3.0/projects/{}/queries/select_unique",
                keys.id
            ))
            .header("Authorization", &keys.read)
            .json(&json!({"event_collection": "orders", "target_property": "n"})),
    )
    .await;
    assert_eq!(unique.0, 200, "{}", unique.1);
    (
        count.1["result"].as_u64().unwrap(),
        unique.1["result"].as_array().unwrap().len(),
    )
}

/// Two nodes whose PostgreSQL is reached through a proxy, with events written (some retried on the other
/// node with the same `Idempotency-Key`) and a read key whose grant node 1 has cached.
struct ProxiedPair {
    /// Holds the nodes' data directories.
    _cluster: Cluster,
    proxy: OutageProxy,
    nodes: [BinaryServer; 2],
    keys: ProjectKeys,
    reader: String,
    number: u64,
    acknowledged: u64,
}

fn start_proxied_pair(runtime: &tokio::runtime::Runtime) -> ProxiedPair {
    let cluster = runtime.block_on(Cluster::create(2));
    let proxy = OutageProxy::start(&cluster.metadata_address());
    let cluster = cluster.with_metadata_at(&proxy.address.to_string());
    let first = cluster.start(0);
    let keys = first.printed_project();
    let nodes = [first, cluster.start(1)];
    let mut acknowledged = 0u64;
    let mut number = 0u64;
    let reader = runtime.block_on(async {
        for _ in 0..20 {
            number += 1;
            let written = send(write_request(&nodes[0].base_url, &keys, number)).await;
            assert_eq!(written.0, 201, "{}", written.1);
            acknowledged += 1;
        }
        // A write retried on the other node with the same Idempotency-Key is stored once (checked after
        // the outage: no number is counted twice on either node).
        for _ in 0..10 {
            number += 1;
            let key = format!("retry-{number}");
            for node in &nodes {
                let written = send(
                    write_request(&node.base_url, &keys, number).header("Idempotency-Key", &key),
                )
                .await;
                assert_eq!(written.0, 201, "{}", written.1);
            }
            acknowledged += 1;
        }
        // An access key, used once on node 1 so its grant is cached there.
        let created = send(
            client()
                .post(format!(
                    "{}/3.0/projects/{}/keys",
                    nodes[0].base_url, keys.id
                ))
                .header("Authorization", &keys.master)
                .json(&json!({"name": "dashboard", "permitted": ["queries"]})),
        )
        .await;
        assert_eq!(created.0, 201, "{}", created.1);
        let reader = created.1["key"].as_str().unwrap().to_string();
        let deadline = Instant::now() + Duration::from_secs(5);
        while send(count_request(&nodes[1].base_url, &keys, &reader))
            .await
            .0
            != 200
        {
            assert!(Instant::now() < deadline, "node 1 never took the new key");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        reader
    });
    ProxiedPair {
        _cluster: cluster,
        proxy,
        nodes,
        keys,
        reader,
        number,
        acknowledged,
    }
}

impl ProxiedPair {
    /// Writes and reads on both nodes for `seconds`, each timed.
    fn requests_for(&mut self, runtime: &tokio::runtime::Runtime, seconds: u64) -> Vec<Answer> {
        let mut during = Vec::new();
        runtime.block_on(async {
            let started = Instant::now();
            while started.elapsed() < Duration::from_secs(seconds) {
                for node in &self.nodes {
                    self.number += 1;
                    let written = timed(
                        "write",
                        write_request(&node.base_url, &self.keys, self.number),
                    )
                    .await;
                    if written.status == 201 {
                        self.acknowledged += 1;
                    }
                    during.push(written);
                    let read = count_request(&node.base_url, &self.keys, &self.reader);
                    during.push(timed("read", read).await);
                }
            }
        });
        during
    }
}

#[test]
fn a_postgresql_outage_is_answered_at_once_and_nothing_is_lost_or_doubled() {
    if !crate::support::has_cluster_services() {
        return;
    }
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let mut pair = start_proxied_pair(&runtime);
    pair.proxy.cut();
    let during = pair.requests_for(&runtime, 5);
    pair.proxy.restore();
    let ProxiedPair {
        _cluster,
        nodes,
        keys,
        reader,
        mut number,
        mut acknowledged,
        ..
    } = pair;
    eprintln!("during the outage: {during:?}");
    every_answer_prompt_and_clear(&during);
    runtime.block_on(async {
        writes_are_taken_again(&nodes, &keys, &mut number, &mut acknowledged).await;
        // A key revoked on node 0 is refused by node 1 within a second.
        let revoked = send(
            client()
                .post(format!(
                    "{}/3.0/projects/{}/keys/{reader}/revoke",
                    nodes[0].base_url, keys.id
                ))
                .header("Authorization", &keys.master),
        )
        .await;
        assert_eq!(revoked.0, 200, "{}", revoked.1);
        let revoked_at = Instant::now();
        loop {
            let answer = send(count_request(&nodes[1].base_url, &keys, &reader)).await;
            if answer.0 == 401 {
                break;
            }
            assert!(
                revoked_at.elapsed() < Duration::from_secs(1),
                "node 1 still takes the revoked key: {answer:?}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        eprintln!(
            "revocation after the outage reached node 1 in {:?}",
            revoked_at.elapsed()
        );
        every_acknowledged_event_once(&nodes, &keys, acknowledged).await;
    });
}

#[test]
fn a_postgresql_link_that_loses_packets_is_answered_at_once_and_nothing_is_lost_or_doubled() {
    if !crate::support::has_cluster_services() {
        return;
    }
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let mut pair = start_proxied_pair(&runtime);
    // Connections stay open and nothing answers: no error tells the nodes, only time does.
    pair.proxy.drop_packets();
    let lost_at = Instant::now();
    let during = pair.requests_for(&runtime, 6);
    eprintln!("with packets lost: {during:?}");
    every_answer_prompt_and_clear(&during);
    // Only the call that finds the link silent waits out its timeout; for a second after it, calls to
    // PostgreSQL fail at once, so most answers come at once.
    let at_once = during
        .iter()
        .filter(|answer| answer.took < Duration::from_millis(100))
        .count();
    assert!(
        at_once * 2 > during.len(),
        "{at_once} of {} answers within 100 ms",
        during.len()
    );
    // The cached grant is not trusted over a silent link: once the listener has heard nothing for its
    // limit, node 1 reads the key again, cannot, and refuses.
    let cached_read = runtime.block_on(timed(
        "read",
        count_request(&pair.nodes[1].base_url, &pair.keys, &pair.reader),
    ));
    assert!(lost_at.elapsed() > Duration::from_secs(2));
    assert_eq!(cached_read.status, 503, "{cached_read:?}");
    pair.proxy.restore();
    let ProxiedPair {
        _cluster,
        nodes,
        keys,
        mut number,
        mut acknowledged,
        ..
    } = pair;
    runtime.block_on(async {
        writes_are_taken_again(&nodes, &keys, &mut number, &mut acknowledged).await;
        every_acknowledged_event_once(&nodes, &keys, acknowledged).await;
    });
}

/// Every answer within 2.5 s, a 200, 201 or 503 (with `Retry-After`), and some write refused.
fn every_answer_prompt_and_clear(during: &[Answer]) {
    for answer in during {
        assert!(
            answer.took < Duration::from_millis(2500),
            "an answer took {:?}: {answer:?}",
            answer.took
        );
        assert!(
            matches!(answer.status, 200 | 201 | 503),
            "answered {answer:?}"
        );
        if answer.status == 503 {
            assert!(
                answer.retry_after.is_some(),
                "503 without Retry-After: {answer:?}"
            );
        }
    }
    assert!(
        during
            .iter()
            .any(|answer| answer.what == "write" && answer.status == 503),
        "writes are refused while the shared log is unreachable"
    );
}

/// Writes are taken again on every node (within 15 s of the service's return).
async fn writes_are_taken_again(
    nodes: &[BinaryServer],
    keys: &ProjectKeys,
    number: &mut u64,
    acknowledged: &mut u64,
) {
    for node in nodes {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            *number += 1;
            let written = send(write_request(&node.base_url, keys, *number)).await;
            if written.0 == 201 {
                *acknowledged += 1;
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{} takes no write after the outage: {:?}",
                node.base_url,
                written
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Every acknowledged event once on every node (a write answered 503 may be stored too, and reach a node
/// late: the counts are read until two readings agree). Never doubled: each carries its own number, so
/// the count equals the distinct numbers.
async fn every_acknowledged_event_once(
    nodes: &[BinaryServer],
    keys: &ProjectKeys,
    acknowledged: u64,
) {
    for node in nodes {
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut previous = None;
        loop {
            let reading = unique_numbers(&node.base_url, keys).await;
            let (count, unique) = reading;
            if previous == Some(reading) && count as usize == unique && count >= acknowledged {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{} counts {count} events with {unique} distinct numbers, {acknowledged} acknowledged",
                node.base_url
            );
            previous = Some(reading);
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

#[test]
fn a_node_whose_postgresql_never_returns_answers_503_and_shuts_down_without_panicking() {
    if !crate::support::has_cluster_services() {
        return;
    }
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let cluster = runtime.block_on(Cluster::create(1));
    let proxy = OutageProxy::start(&cluster.metadata_address());
    let cluster = cluster.with_metadata_at(&proxy.address.to_string());
    let log_dir = tempfile::tempdir().unwrap();
    let log = log_dir.path().join("node.log");
    let mut node = cluster.start_logging_to(0, &log);
    let keys = node.printed_project();
    runtime.block_on(async {
        for n in 0..50 {
            let written = send(write_request(&node.base_url, &keys, n)).await;
            assert_eq!(written.0, 201, "{}", written.1);
        }
    });
    proxy.cut();
    let answer = runtime.block_on(timed("write", write_request(&node.base_url, &keys, 99)));
    assert_eq!(answer.status, 503, "{answer:?}");
    let started = Instant::now();
    let status = node.terminate_within(Duration::from_secs(30));
    let text = std::fs::read_to_string(&log).unwrap();
    eprintln!(
        "shutdown without PostgreSQL took {:?}, exit {status:?}",
        started.elapsed()
    );
    assert!(!text.contains("panicked"), "a panic at shutdown:\n{text}");
    assert!(status.is_some(), "no exit within 30 s of SIGTERM:\n{text}");
}

#[test]
fn an_unreachable_object_store_is_answered_503_at_once_and_served_again_after() {
    if !crate::support::has_cluster_services() {
        return;
    }
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let cluster = runtime.block_on(Cluster::create(1));
    let endpoint =
        std::env::var("AWS_ENDPOINT_URL").expect("the S3 endpoint of the test environment");
    let proxy = OutageProxy::start(endpoint.trim_start_matches("http://"));
    let cluster = cluster.with_object_store_at(&format!("http://{}", proxy.address));
    let mut node = cluster.start(0);
    let keys = node.printed_project();
    runtime.block_on(async {
        for n in 0..200 {
            let written = send(write_request(&node.base_url, &keys, n)).await;
            assert_eq!(written.0, 201, "{}", written.1);
        }
    });
    // A clean stop flushes every row to the bucket; started again, the node holds no file in its cache.
    assert!(node.terminate().success());
    let node = cluster.start(0);
    let by_number = || {
        client()
            .post(format!(
                "{}/3.0/projects/{}/queries/count",
                node.base_url, keys.id
            ))
            .header("Authorization", &keys.read)
            .json(&json!({"event_collection": "orders", "group_by": "n"}))
    };
    proxy.cut();
    let answer = runtime.block_on(timed("read", by_number()));
    eprintln!("a read with the bucket unreachable: {answer:?}");
    assert_eq!(answer.status, 503, "{answer:?}");
    assert!(answer.retry_after.is_some(), "{answer:?}");
    assert!(answer.took < Duration::from_millis(2500), "{answer:?}");
    proxy.restore();
    let answer = runtime.block_on(send(by_number()));
    assert_eq!(answer.0, 200, "{}", answer.1);
    assert_eq!(answer.1["result"].as_array().unwrap().len(), 200);
}
