#[global_allocator]
static A: mimalloc::MiMalloc = mimalloc::MiMalloc;
fn rss() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap();
    let g = |n: &str| {
        s.lines()
            .find_map(|l| l.strip_prefix(n))
            .unwrap()
            .trim()
            .trim_end_matches(" kB")
            .trim()
            .parse::<u64>()
            .unwrap()
            * 1024
    };
    g("VmRSS:")
}
fn main() {
    let events: Vec<String> = (0..5000)
        .map(|n| {
            let mut e = serde_json::Map::new();
            for q in 0..20 {
                e.insert(
                    format!("property_{q}"),
                    serde_json::json!(format!("value {n} {q} {}", "v".repeat(60))),
                );
            }
            serde_json::Value::Object(e).to_string()
        })
        .collect();
    let text: usize = events.iter().map(|e| e.len()).sum();
    let base = rss();
    let threaded = std::env::args().nth(1).is_some();
    let work = move || {
        let ctx = keyhole_model::EventContext {
            received_at: chrono::Utc::now(),
            client_ip: None,
            user_agent: None,
            uniqueness_scope: None,
            autofill: None,
        };
        let mut prepared = Vec::new();
        for e in &events {
            let v: serde_json::Value = serde_json::from_str(e).unwrap();
            prepared.push(keyhole_model::prepare_event(v, &ctx).unwrap());
        }
        prepared
    };
    let prepared = if threaded {
        std::thread::spawn(work).join().unwrap()
    } else {
        work()
    };
    let grown = rss() - base;
    println!(
        "threaded {threaded}: text {text} rss grew {grown} ({:.1}x) for {} events",
        grown as f64 / text as f64,
        prepared.len()
    );
}
