//! Event timestamps: parsing the ISO-8601 forms Keen clients send and formatting the one form Keen
//! answers with (`2015-05-27T22:44:50.722Z`). Keyhole keeps event times at millisecond precision,
//! like Keen, so what is stored, filtered and returned is the same instant.

use chrono::{DateTime, NaiveDate, NaiveDateTime, SecondsFormat, TimeZone, Utc};

/// Milliseconds since the Unix epoch, UTC.
pub type EpochMillis = i64;

/// The earliest instant Keyhole reads or computes: 0001-01-01T00:00:00Z.
pub(crate) const MIN_INSTANT: EpochMillis = -62_135_596_800_000;
/// The end of the latest year Keyhole reads or computes: 10000-01-01T00:00:00Z (exclusive for
/// timestamps, the furthest end of a timeframe). Four-digit years, as ISO 8601 writes them.
pub(crate) const MAX_INSTANT: EpochMillis = 253_402_300_800_000;

/// Parses a client timestamp: RFC 3339 with `Z` or an offset, or a naive date-time (Python's
/// `isoformat()` without a zone), which Keen reads as UTC. A bare date means its midnight UTC. Instants
/// outside the years 1 to 9999 are refused, so calendar arithmetic on any accepted instant cannot overflow.
pub fn parse_timestamp(text: &str) -> Option<EpochMillis> {
    parse_any_timestamp(text).filter(|millis| (MIN_INSTANT..MAX_INSTANT).contains(millis))
}

fn parse_any_timestamp(text: &str) -> Option<EpochMillis> {
    let text = text.trim();
    if let Ok(parsed) = DateTime::parse_from_rfc3339(text) {
        return Some(parsed.timestamp_millis());
    }
    for format in [
        "%Y-%m-%dT%H:%M:%S%.f%z",
        "%Y-%m-%dT%H:%M:%S%.f%:z",
        "%Y-%m-%d %H:%M:%S%.f%:z",
    ] {
        if let Ok(parsed) = DateTime::parse_from_str(text, format) {
            return Some(parsed.timestamp_millis());
        }
    }
    for format in [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M",
    ] {
        if let Ok(naive) = NaiveDateTime::parse_from_str(text, format) {
            return Some(Utc.from_utc_datetime(&naive).timestamp_millis());
        }
    }
    if let Ok(date) = NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        return Some(
            Utc.from_utc_datetime(&date.and_hms_opt(0, 0, 0)?)
                .timestamp_millis(),
        );
    }
    None
}

/// Formats an instant the way Keen returns timestamps: UTC, milliseconds, `Z`.
pub fn format_timestamp(millis: EpochMillis) -> String {
    let instant = Utc
        .timestamp_millis_opt(millis)
        .single()
        .unwrap_or_default();
    instant.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// The UTC calendar day of an instant, as `YYYY-MM-DD` (the storage partition key).
pub fn utc_day(millis: EpochMillis) -> String {
    let instant = Utc
        .timestamp_millis_opt(millis)
        .single()
        .unwrap_or_default();
    instant.format("%Y-%m-%d").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_client_forms() {
        let expected = parse_timestamp("2024-03-01T12:30:45.123Z").unwrap();
        assert_eq!(format_timestamp(expected), "2024-03-01T12:30:45.123Z");
        assert_eq!(
            parse_timestamp("2024-03-01T12:30:45.123000"),
            Some(expected)
        );
        assert_eq!(
            parse_timestamp("2024-03-01T12:30:45.123+00:00"),
            Some(expected)
        );
        assert_eq!(
            parse_timestamp("2024-03-01T13:30:45.123+01:00"),
            Some(expected)
        );
        assert_eq!(
            parse_timestamp("2024-03-01T12:30:45.123456"),
            Some(expected)
        );
        assert_eq!(
            parse_timestamp("2024-03-01"),
            parse_timestamp("2024-03-01T00:00:00Z")
        );
        assert_eq!(parse_timestamp("yesterday"), None);
        assert_eq!(parse_timestamp("0001-01-01T00:00:00Z"), Some(MIN_INSTANT));
        assert_eq!(
            parse_timestamp("9999-12-31T23:59:59.999Z"),
            Some(MAX_INSTANT - 1)
        );
        assert_eq!(parse_timestamp("+10000-01-01T00:00:00Z"), None);
        assert_eq!(parse_timestamp("-0001-12-31T00:00:00Z"), None);
        assert_eq!(parse_timestamp(""), None);
    }

    #[test]
    fn day_partition() {
        let instant = parse_timestamp("2024-03-01T23:59:59.999Z").unwrap();
        assert_eq!(utc_day(instant), "2024-03-01");
        assert_eq!(utc_day(instant + 1), "2024-03-02");
    }
}
