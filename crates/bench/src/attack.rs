//! `keyhole-bench attack`: each class of hostile request on its own, against the release `keyhole` binary
//! holding a realistic tenant data set, measuring what the class costs the server: how it was answered,
//! whether any answer was a 500 or not Keen-style, whether the process survived, and the server's peak
//! resident memory while the class ran (the peak is reset between classes). The table it prints is the
//! one in `docs/reliability.md`.

use anyhow::bail;
use serde_json::{Value, json};

use crate::server::{KeyholeServer, keyhole_binary};
use crate::soak::{
    COLLECTION, Dice, HOSTILE_CLASSES, activity_event, create_key, hostile_request_of, judge, timed,
};

#[derive(clap::Args, Clone)]
pub struct AttackOptions {
    /// Events written before the attack (20 tenants, 5,000 users, the last two days).
    #[arg(long, default_value_t = 200_000)]
    pub events: usize,
    /// Requests sent per class.
    #[arg(long, default_value_t = 40)]
    pub requests: usize,
    /// Requests of a class in flight at once.
    #[arg(long, default_value_t = 4)]
    pub concurrency: usize,
    /// The keyhole binary (default: `keyhole` next to this binary).
    #[arg(long)]
    pub keyhole: Option<std::path::PathBuf>,
}

pub async fn run(options: &AttackOptions) -> anyhow::Result<String> {
    let binary = keyhole_binary(options.keyhole.as_ref())?;
    let data_dir = tempfile::tempdir()?;
    let mut server = KeyholeServer::start(&binary, data_dir.path())?;
    let http = reqwest::Client::new();
    let mut keys = Vec::new();
    for tenant in 0..20 {
        keys.push(create_key(&server, &http, &format!("t{tenant:02}")).await?);
    }
    let mut dice = Dice(42);
    let now = chrono::Utc::now().timestamp_millis();
    for chunk in 0..options.events.div_ceil(1_000) {
        let events: Vec<Value> = (0..1_000)
            .map(|_| {
                let at = now - dice.next(2 * 86_400_000) as i64;
                let mut event = activity_event(&mut dice);
                event["keen"] =
                    json!({"timestamp": keyhole_model::timestamp::format_timestamp(at)});
                event
            })
            .collect();
        let key = &keys[chunk % keys.len()];
        let response = http
            .post(server.project_url("events"))
            .header("Authorization", key)
            .json(&json!({ COLLECTION: events }))
            .send()
            .await?;
        if !response.status().is_success() {
            bail!("loading events failed: {}", response.status());
        }
    }
    let idle_rss = server.rss_mib();
    let mut report = format!(
        "{} events loaded (20 tenants, 5,000 users, two days); server RSS before the attack {idle_rss:.0} MiB.\n\n",
        options.events
    );
    report.push_str("| input class | cases | answers | failures (500, non-Keen, dropped) | server restarts | peak RSS (MiB) | p50 / max time (ms) |\n|---|---|---|---|---|---|---|\n");
    let mut failed = false;
    for (class, name) in HOSTILE_CLASSES.iter().enumerate() {
        server.reset_peak_rss();
        let mut statuses = std::collections::BTreeMap::<u16, usize>::new();
        let mut failures = 0;
        let mut times = Vec::new();
        for round in 0..options.requests.div_ceil(options.concurrency) {
            let sends = (0..options.concurrency).map(|slot| {
                let (method, path, body) = hostile_request_of(class as u64, &mut dice);
                let key = if method == reqwest::Method::DELETE {
                    server.master_key.clone()
                } else {
                    keys[(round + slot) % keys.len()].clone()
                };
                let mut request = http
                    .request(method, server.project_url(&path))
                    .header("Authorization", key);
                if let Some(body) = body {
                    request = request.json(&body);
                }
                async move {
                    let (answer, elapsed) = timed(request).await;
                    let answer = judge(answer).await;
                    let bad = answer.as_ref().is_none_or(|answer| answer.misanswered);
                    (answer.map(|answer| answer.status), bad, elapsed)
                }
            });
            for (status, bad, elapsed) in futures::future::join_all(sends).await {
                if let Some(status) = status {
                    *statuses.entry(status).or_default() += 1;
                }
                failures += usize::from(bad);
                times.push(elapsed);
            }
        }
        let restarts = usize::from(!server.is_running());
        failed |= failures > 0 || restarts > 0;
        let answers = statuses
            .iter()
            .map(|(status, count)| format!("{count}× {status}"))
            .collect::<Vec<_>>()
            .join(", ");
        let max = times.iter().copied().fold(0.0, f64::max);
        report.push_str(&format!(
            "| {name} | {} | {answers} | {failures} | {restarts} | {:.0} | {:.0} / {max:.0} |\n",
            times.len(),
            server.peak_rss_mib(),
            crate::soak::percentile(&times, 50.0),
        ));
        if restarts > 0 {
            break;
        }
    }
    if failed {
        bail!("{report}\nsome hostile requests were misanswered or the server died");
    }
    Ok(report)
}
