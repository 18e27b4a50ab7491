//! The benchmark's events: a deterministic stream of multi-tenant SaaS events, written as NDJSON.
//!
//! Event `i` depends only on `i` (every field comes from a SplitMix64 hash of the sequence number and a
//! field salt), so any prefix of the stream is the same whatever N is, and two runs produce the same bytes.
//! Each event is ~200 bytes: a tenant drawn from a Zipf distribution over 200 tenants (exponent 1.1, so
//! `t001` holds about a fifth of all events and the long tail a few hundredths of a percent each), a nested
//! `user` object (id, plan) whose id belongs to that tenant, an action, numbers, a list, and three properties whose JSON
//! type drifts between events (`build` number or string, `referrer` string, null or absent, `experiment`
//! bool or string, present on some events). Timestamps are spread uniformly over January 2024 (UTC).
//!
//! Design: the JSON is written with `format!` rather than through `serde_json::Value` so that generating
//! 10M events takes seconds; every string is plain ASCII from fixed alphabets, so nothing needs escaping.

use std::io::Write;

pub const TENANTS: usize = 200;
const ZIPF_EXPONENT: f64 = 1.1;
/// 2024-01-01T00:00:00Z in milliseconds.
pub const JANUARY_START_MILLIS: i64 = 1_704_067_200_000;
const JANUARY_MILLIS: u64 = 31 * 86_400_000;

const ACTIONS: [(&str, u64); 4] = [
    ("page_view", 60),
    ("click", 25),
    ("signup", 10),
    ("purchase", 5),
];
const PLANS: [&str; 3] = ["free", "pro", "team"];
const TAGS: [&str; 4] = ["web", "mobile", "eu", "us"];

/// SplitMix64: a well-mixed 64-bit hash of (sequence, salt).
fn mix(sequence: u64, salt: u64) -> u64 {
    let mut value = sequence
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .wrapping_add(salt.wrapping_mul(0xD1B5_4A32_D192_ED03));
    value = (value ^ (value >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    value = (value ^ (value >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    value ^ (value >> 31)
}

fn uniform(sequence: u64, salt: u64) -> f64 {
    (mix(sequence, salt) >> 11) as f64 / (1u64 << 53) as f64
}

pub struct EventGenerator {
    tenant_cumulative_weights: Vec<f64>,
}

impl Default for EventGenerator {
    fn default() -> Self {
        Self::new()
    }
}

impl EventGenerator {
    pub fn new() -> EventGenerator {
        let weights: Vec<f64> = (1..=TENANTS)
            .map(|rank| 1.0 / (rank as f64).powf(ZIPF_EXPONENT))
            .collect();
        let total: f64 = weights.iter().sum();
        let mut running = 0.0;
        let tenant_cumulative_weights = weights
            .iter()
            .map(|weight| {
                running += weight / total;
                running
            })
            .collect();
        EventGenerator {
            tenant_cumulative_weights,
        }
    }

    /// The tenant rank (1-based) of event `sequence`.
    pub fn tenant_rank(&self, sequence: u64) -> usize {
        let draw = uniform(sequence, 1);
        let index = self
            .tenant_cumulative_weights
            .partition_point(|cumulative| *cumulative < draw);
        index.min(TENANTS - 1) + 1
    }

    /// The expected share of all events that tenant `rank` holds.
    #[cfg(test)]
    pub fn tenant_share(&self, rank: usize) -> f64 {
        let previous = if rank <= 1 {
            0.0
        } else {
            self.tenant_cumulative_weights[rank - 2]
        };
        self.tenant_cumulative_weights[rank - 1] - previous
    }

    /// Event `sequence` as one line of JSON (no trailing newline).
    pub fn event_json(&self, sequence: u64) -> String {
        let tenant = self.tenant_rank(sequence);
        // Bigger tenants have more users; a user's plan and country are fixed per user.
        let users_in_tenant = (20_000 / tenant as u64).max(50);
        let user = mix(sequence, 2) % users_in_tenant;
        let user_key = (tenant as u64) << 32 | user;
        let plan = PLANS[(mix(user_key, 3) % 3) as usize];
        let action = pick_action(mix(sequence, 5) % 100);
        let duration_ms = mix(sequence, 7) % 10_000;
        let amount_cents = mix(sequence, 8) % 10_000;
        let tags = match mix(sequence, 9) % 4 {
            0 => format!(r#"["{}","{}"]"#, TAGS[0], TAGS[2]),
            1 => format!(r#"["{}","{}"]"#, TAGS[1], TAGS[3]),
            2 => format!(r#"["{}"]"#, TAGS[0]),
            _ => format!(r#"["{}"]"#, TAGS[1]),
        };
        let build = mix(sequence, 10) % 300 + 100;
        let build = if mix(sequence, 11).is_multiple_of(5) {
            format!(r#""{}.{}.{}""#, build / 100, build / 10 % 10, build % 10)
        } else {
            build.to_string()
        };
        let referrer = match mix(sequence, 12) % 10 {
            0 => String::new(),
            1 | 2 => r#","referrer":null"#.to_string(),
            other => format!(r#","referrer":"r{other}.io""#),
        };
        let experiment = match mix(sequence, 13) % 10 {
            0 | 1 => r#","experiment":true"#,
            2 => r#","experiment":"B""#,
            _ => "",
        };
        let millis = JANUARY_START_MILLIS + (mix(sequence, 14) % JANUARY_MILLIS) as i64;
        let timestamp = keyhole_model::timestamp::format_timestamp(millis);
        format!(
            concat!(
                r#"{{"tenant_id":"t{tenant:03}","user":{{"id":"u{tenant}-{user}","plan":"{plan}"}},"#,
                r#""action":"{action}","duration_ms":{duration_ms},"amount":{amount_whole}.{amount_fraction:02},"#,
                r#""tags":{tags},"build":{build}{referrer}{experiment},"keen":{{"timestamp":"{timestamp}"}}}}"#
            ),
            tenant = tenant,
            user = user,
            plan = plan,
            action = action,
            duration_ms = duration_ms,
            amount_whole = amount_cents / 100,
            amount_fraction = amount_cents % 100,
            tags = tags,
            build = build,
            referrer = referrer,
            experiment = experiment,
            timestamp = timestamp,
        )
    }

    /// Writes events `0..count` as NDJSON.
    pub fn write_ndjson(&self, count: u64, output: impl Write) -> std::io::Result<()> {
        let mut output = std::io::BufWriter::with_capacity(1 << 20, output);
        for sequence in 0..count {
            output.write_all(self.event_json(sequence).as_bytes())?;
            output.write_all(b"\n")?;
        }
        output.flush()
    }
}

fn pick_action(percent: u64) -> &'static str {
    let mut threshold = 0;
    for (action, weight) in ACTIONS {
        threshold += weight;
        if percent < threshold {
            return action;
        }
    }
    ACTIONS[0].0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_deterministic_valid_json_of_about_200_bytes() {
        let generator = EventGenerator::new();
        let mut total_bytes = 0;
        for sequence in 0..10_000 {
            let line = generator.event_json(sequence);
            assert_eq!(line, EventGenerator::new().event_json(sequence));
            let event: serde_json::Value = serde_json::from_str(&line).expect("valid JSON");
            assert!(event["user"]["id"].is_string());
            total_bytes += line.len();
        }
        let average = total_bytes / 10_000;
        assert!((170..=230).contains(&average), "average {average} bytes");
    }

    #[test]
    fn tenant_sizes_follow_the_zipf_weights() {
        let generator = EventGenerator::new();
        let mut counts = vec![0usize; TENANTS + 1];
        let samples = 200_000;
        for sequence in 0..samples {
            counts[generator.tenant_rank(sequence)] += 1;
        }
        for rank in [1, 2, 10, 50] {
            let expected = generator.tenant_share(rank) * samples as f64;
            let observed = counts[rank] as f64;
            assert!(
                (observed - expected).abs() < 5.0 * expected.sqrt() + 5.0,
                "tenant {rank}: {observed} vs {expected}"
            );
        }
        assert!(counts[1] > 10 * counts[20]);
    }
}
