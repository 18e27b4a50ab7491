//! E-mailed extractions (`email` on an extraction): refused with 400 naming `--smtp-url` on a server
//! without a mail server; with one (a real SMTP server, Python's aiosmtpd, started by the test) the
//! tenant key's events — and only them — arrive as a CSV or gzip'd JSON attachment, and a mail server
//! that is gone is told to the caller.

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{Value, json};

use crate::support::{BinaryServer, InProcessServer, assert_keen_error, client, repo_root, send};

/// The SMTP server of a test: its port and the directory it writes each message it takes to.
struct SmtpSink {
    child: Child,
    port: u16,
    out_dir: tempfile::TempDir,
}

impl SmtpSink {
    fn start() -> SmtpSink {
        let out_dir = tempfile::tempdir().unwrap();
        let mut child = Command::new("python3")
            .arg(repo_root().join("sdk-tests/python/smtp_sink.py"))
            .arg(out_dir.path())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = line
            .trim()
            .strip_prefix("smtp listening on ")
            .unwrap_or_else(|| panic!("the SMTP sink did not start: {line:?}"))
            .parse()
            .unwrap();
        SmtpSink {
            child,
            port,
            out_dir,
        }
    }

    /// The `number`th message taken (from 1), waiting for it a little.
    fn message(&self, number: usize) -> Value {
        let path = self.out_dir.path().join(format!("{number}.json"));
        let deadline = Instant::now() + Duration::from_secs(10);
        while !path.exists() {
            assert!(Instant::now() < deadline, "no message {number} arrived");
            std::thread::sleep(Duration::from_millis(50));
        }
        serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
    }

    fn messages(&self) -> usize {
        std::fs::read_dir(self.out_dir.path())
            .unwrap()
            .filter(|entry| {
                entry
                    .as_ref()
                    .unwrap()
                    .path()
                    .extension()
                    .is_some_and(|extension| extension == "json")
            })
            .count()
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn attachment_bytes(message: &Value) -> (String, Vec<u8>) {
    let attachment = &message["attachments"][0];
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(attachment["base64"].as_str().unwrap())
        .unwrap();
    (attachment["filename"].as_str().unwrap().to_string(), bytes)
}

#[tokio::test(flavor = "multi_thread")]
async fn without_a_mail_server_an_emailed_extraction_is_refused_naming_the_option() {
    let server = InProcessServer::start().await;
    server.write_events("orders", vec![json!({"n": 1})]).await;
    let answer = server
        .post_json(
            "/queries/extraction",
            &server.project.read,
            &json!({"event_collection": "orders", "email": "ops@example.com"}),
        )
        .await;
    assert_keen_error(&answer, 400, "InvalidParameterError");
    assert!(
        answer.1["message"].as_str().unwrap().contains("--smtp-url"),
        "{}",
        answer.1
    );
    // An address that is not one is refused before anything else.
    let answer = server
        .post_json(
            "/queries/extraction",
            &server.project.read,
            &json!({"event_collection": "orders", "email": "ops@example.com\r\nBcc: x@example.com"}),
        )
        .await;
    assert_keen_error(&answer, 400, "InvalidParameterError");
}

#[test]
fn an_emailed_extraction_sends_the_tenants_events_and_only_them() {
    if !crate::support::has_python_sdk() {
        return;
    }
    let sink = SmtpSink::start();
    let data_dir = tempfile::tempdir().unwrap();
    let smtp_url = format!("smtp://127.0.0.1:{}", sink.port);
    let server = BinaryServer::start(
        data_dir.path(),
        &[
            "--smtp-url",
            &smtp_url,
            "--smtp-from",
            "Reports <reports@keyhole.test>",
        ],
        &[],
    );
    let project = server.printed_project();
    let url = |path: &str| format!("{}/3.0/projects/{}{path}", server.base_url, project.id);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let tenant_key = runtime.block_on(async {
        let events: Vec<Value> = (0..9)
            .map(|index| {
                let tenant = ["acme", "globex", "initech"][index % 3];
                json!({"tenant": tenant, "order": {"id": index, "note": format!("line, \"{index}\"")}})
            })
            .collect();
        let written = send(client().post(url("/events/orders")).header("Authorization", &project.write).json(&events)).await;
        assert_eq!(written.0, 200, "{}", written.1);
        let created = send(client().post(url("/keys")).header("Authorization", &project.master).json(&json!({
            "name": "acme", "permitted": ["queries"],
            "options": {"queries": {"filters": [{"property_name": "tenant", "operator": "eq", "property_value": "acme"}]}}
        }))).await;
        assert_eq!(created.0, 201, "{}", created.1);
        created.1["key"].as_str().unwrap().to_string()
    });
    let extract = |body: Value| {
        runtime.block_on(send(
            client()
                .post(url("/queries/extraction"))
                .header("Authorization", &tenant_key)
                .json(&body),
        ))
    };

    // CSV: a header of every property path, then acme's three events.
    let answer = extract(json!({"event_collection": "orders", "email": "ops@example.com"}));
    assert_eq!(
        answer,
        (
            200,
            json!({"result": "Processing. Check the specified email for the extraction results."})
        )
    );
    let message = sink.message(1);
    assert_eq!(message["to"], json!(["ops@example.com"]));
    assert_eq!(message["from"], "reports@keyhole.test");
    assert!(
        message["subject"].as_str().unwrap().contains("3 events"),
        "{message}"
    );
    let (filename, bytes) = attachment_bytes(&message);
    assert_eq!(filename, "orders-extraction.csv");
    let mut reader = csv::Reader::from_reader(&bytes[..]);
    let header: Vec<String> = reader
        .headers()
        .unwrap()
        .iter()
        .map(str::to_string)
        .collect();
    assert_eq!(
        header,
        [
            "keen.created_at",
            "keen.id",
            "keen.timestamp",
            "order.id",
            "order.note",
            "tenant"
        ]
    );
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), 3);
    let mut ids: Vec<&str> = rows.iter().map(|row| &row[3]).collect();
    ids.sort_unstable();
    assert_eq!(ids, ["0", "3", "6"]);
    assert!(rows.iter().all(|row| &row[5] == "acme"));
    assert!(rows.iter().any(|row| &row[4] == "line, \"3\""));

    // JSON, gzip'd, with the extraction's own parameters applied.
    let answer = extract(
        json!({"event_collection": "orders", "email": "ops@example.com",
        "content_type": "application/json", "content_encoding": "gzip", "property_names": ["order.id"], "latest": 2}),
    );
    assert_eq!(answer.0, 200, "{}", answer.1);
    let (filename, bytes) = attachment_bytes(&sink.message(2));
    assert_eq!(filename, "orders-extraction.json.gz");
    let mut text = String::new();
    flate2::read::GzDecoder::new(&bytes[..])
        .read_to_string(&mut text)
        .unwrap();
    let events: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(events.as_array().unwrap().len(), 2);
    assert!(
        events.as_array().unwrap().iter().all(|event| event
            .as_object()
            .unwrap()
            .keys()
            .eq(["order"]))
    );

    // A query error is told at once, and nothing is sent.
    let answer = extract(
        json!({"event_collection": "orders", "email": "ops@example.com", "timeframe": "this_7_eons"}),
    );
    assert_eq!(answer.0, 400, "{}", answer.1);
    assert_eq!(sink.messages(), 2);
    // The mail server gone: 502, not a silent loss.
    drop(sink);
    let answer = extract(json!({"event_collection": "orders", "email": "ops@example.com"}));
    assert_keen_error(&answer, 502, "MailDeliveryError");
}
