//! Time in Keen queries: the query's time zone, timeframes (relative like `this_7_days` or absolute
//! `{start, end}`), and interval buckets.
//!
//! Calendar units are computed in the query's time zone (UTC by default): days start at local midnight,
//! weeks on Sunday, so a day across a DST change lasts 23 or 25 hours. Results are UTC instants in epoch
//! milliseconds; ranges are `[start, end)`.
//!
//! Design: `this_N_units` (and `this_unit`, `today`) spans the N−1 complete units before the current one
//! plus the current unit *until now*, as Keen's timeframe docs say — an event stamped later today is not
//! counted yet — so an interval's last bucket is clipped to now. "Now" includes the current millisecond
//! (the range ends at now + 1 ms), so an event acknowledged in the same millisecond as the query is seen.
//! `previous_N_units` ends at the start of the current unit. A local time that a DST
//! change skips resolves to the first instant after the gap; an ambiguous one to its earlier instant.

use chrono::{
    Datelike, Duration, FixedOffset, LocalResult, NaiveDate, NaiveDateTime, TimeZone, Timelike, Utc,
};
use chrono_tz::Tz;
use serde_json::Value;

use super::QueryError;
use crate::timestamp::{EpochMillis, MAX_INSTANT, MIN_INSTANT, parse_timestamp};

/// The zone calendar units are computed in.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Timezone {
    /// A named zone of the tz database (`Europe/Paris`).
    Named(Tz),
    /// A fixed offset from UTC (`-07:00`, or hours as a number).
    Fixed(FixedOffset),
}

impl Default for Timezone {
    fn default() -> Self {
        Timezone::Named(Tz::UTC)
    }
}

impl Timezone {
    /// Accepts IANA names (`US/Pacific`, `Europe/London`, `UTC`), offsets in seconds (`-28800`, as a
    /// number or numeric string, as keen-analysis and the Python SDK send), and `+HH:MM` offsets.
    pub fn parse(value: &Value) -> Result<Timezone, QueryError> {
        let invalid = || {
            QueryError::InvalidTimezone(format!(
                "'{value}' is not a time zone name or an offset in seconds."
            ))
        };
        if let Some(seconds) = value.as_f64() {
            return Timezone::from_offset_seconds(seconds).ok_or_else(invalid);
        }
        let text = value.as_str().ok_or_else(invalid)?.trim();
        if text.is_empty() {
            return Ok(Timezone::default());
        }
        if let Ok(seconds) = text.parse::<f64>() {
            return Timezone::from_offset_seconds(seconds).ok_or_else(invalid);
        }
        if let Ok(zone) = text.parse::<Tz>() {
            return Ok(Timezone::Named(zone));
        }
        if let Ok(offset) = text.parse::<FixedOffset>() {
            return Ok(Timezone::Fixed(offset));
        }
        Err(invalid())
    }

    fn from_offset_seconds(seconds: f64) -> Option<Timezone> {
        if seconds.fract() != 0.0 {
            return None;
        }
        FixedOffset::east_opt(seconds as i32).map(Timezone::Fixed)
    }

    fn instant_to_local(self, millis: EpochMillis) -> NaiveDateTime {
        let instant = Utc
            .timestamp_millis_opt(millis)
            .single()
            .unwrap_or_default();
        match self {
            Timezone::Named(zone) => instant.with_timezone(&zone).naive_local(),
            Timezone::Fixed(offset) => instant.with_timezone(&offset).naive_local(),
        }
    }

    fn local_to_instant(self, local: NaiveDateTime) -> EpochMillis {
        fn resolve<Z: TimeZone>(zone: &Z, local: NaiveDateTime) -> EpochMillis {
            let mut probe = local;
            for _ in 0..48 {
                match zone.from_local_datetime(&probe) {
                    LocalResult::Single(instant) => return instant.timestamp_millis(),
                    LocalResult::Ambiguous(earliest, _) => return earliest.timestamp_millis(),
                    // Skipped by a DST change: the first valid local time after the gap.
                    LocalResult::None => match probe.checked_add_signed(Duration::minutes(30)) {
                        Some(later) => probe = later,
                        None => break,
                    },
                }
            }
            Utc.from_utc_datetime(&local).timestamp_millis()
        }
        match self {
            Timezone::Named(zone) => resolve(&zone, local),
            Timezone::Fixed(offset) => resolve(&offset, local),
        }
    }
}

/// Calendar units of timeframes and intervals.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unit {
    /// Minutes.
    Minute,
    /// Hours.
    Hour,
    /// Days.
    Day,
    /// Weeks (starting on Sunday, as Keen's).
    Week,
    /// Months.
    Month,
    /// Years.
    Year,
}

impl Unit {
    fn parse(text: &str) -> Option<Unit> {
        Some(match text.trim_end_matches('s') {
            "minute" => Unit::Minute,
            "hour" => Unit::Hour,
            "day" => Unit::Day,
            "week" => Unit::Week,
            "month" => Unit::Month,
            "year" => Unit::Year,
            _ => return None,
        })
    }

    /// The start of the unit containing `local`.
    fn truncate(self, local: NaiveDateTime) -> NaiveDateTime {
        let date = local.date();
        let midnight = |date: NaiveDate| date.and_hms_opt(0, 0, 0).expect("midnight exists");
        match self {
            Unit::Minute => local
                .with_second(0)
                .and_then(|t| t.with_nanosecond(0))
                .unwrap_or(local),
            Unit::Hour => date.and_hms_opt(local.hour(), 0, 0).unwrap_or(local),
            Unit::Day => midnight(date),
            Unit::Week => midnight(
                date.checked_sub_signed(Duration::days(i64::from(
                    date.weekday().num_days_from_sunday(),
                )))
                .unwrap_or(date),
            ),
            Unit::Month => midnight(date.with_day(1).unwrap_or(date)),
            Unit::Year => midnight(NaiveDate::from_ymd_opt(date.year(), 1, 1).unwrap_or(date)),
        }
    }

    /// `local` moved by `count` units (calendar arithmetic for months and years); `None` when the result
    /// is beyond what the calendar can represent.
    fn add(self, local: NaiveDateTime, count: i64) -> Option<NaiveDateTime> {
        let delta = match self {
            Unit::Minute => Duration::try_minutes(count),
            Unit::Hour => Duration::try_hours(count),
            Unit::Day => Duration::try_days(count),
            Unit::Week => Duration::try_weeks(count),
            Unit::Month | Unit::Year => {
                let months = if self == Unit::Year {
                    count.checked_mul(12)?
                } else {
                    count
                };
                let total = (i64::from(local.year()) * 12 + i64::from(local.month0()))
                    .checked_add(months)?;
                let year = i32::try_from(total.div_euclid(12)).ok()?;
                let month0 = total.rem_euclid(12) as u32;
                let day = local.day().min(days_in_month(year, month0 + 1)?);
                return NaiveDate::from_ymd_opt(year, month0 + 1, day)
                    .map(|date| date.and_time(local.time()));
            }
        };
        local.checked_add_signed(delta?)
    }
}

fn days_in_month(year: i32, month: u32) -> Option<u32> {
    let (next_year, next_month) = if month == 12 {
        (year.checked_add(1)?, 1)
    } else {
        (year, month + 1)
    };
    let first_of_next = NaiveDate::from_ymd_opt(next_year, next_month, 1)?;
    Some(first_of_next.pred_opt()?.day())
}

/// A query's timeframe as sent.
#[derive(Clone, Debug, PartialEq)]
pub enum Timeframe {
    /// `this_N_units` (`current: true`) or `previous_N_units`.
    Relative {
        /// `this_…` (includes the current unit) rather than `previous_…`.
        current: bool,
        /// How many units.
        count: u32,
        /// Which unit.
        unit: Unit,
    },
    /// An absolute range.
    Absolute {
        /// Its start (inclusive).
        start: EpochMillis,
        /// Its end (exclusive).
        end: EpochMillis,
    },
}

/// A resolved `[start, end)` range in UTC epoch milliseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimeRange {
    /// The start (inclusive), epoch milliseconds.
    pub start: EpochMillis,
    /// The end (exclusive), epoch milliseconds.
    pub end: EpochMillis,
}

impl Timeframe {
    /// Parses a `timeframe` parameter: a relative name or `{start, end}`.
    pub fn parse(value: &Value) -> Result<Timeframe, QueryError> {
        let invalid = || {
            QueryError::InvalidTimeframe(format!(
                "You sent in an invalid definition for the timeframe: '{value}'."
            ))
        };
        match value {
            Value::String(text) => Timeframe::parse_relative(text.trim()).ok_or_else(invalid),
            Value::Object(object) => {
                let bound = |name: &str| {
                    object
                        .get(name)
                        .and_then(Value::as_str)
                        .and_then(parse_timestamp)
                };
                let (Some(start), Some(end)) = (bound("start"), bound("end")) else {
                    return Err(invalid());
                };
                if start > end {
                    return Err(QueryError::InvalidTimeframe(
                        "The timeframe's start must not be after its end.".into(),
                    ));
                }
                Ok(Timeframe::Absolute { start, end })
            }
            _ => Err(invalid()),
        }
    }

    fn parse_relative(text: &str) -> Option<Timeframe> {
        let shorthand = match text {
            "today" => Some((true, 1, Unit::Day)),
            "yesterday" => Some((false, 1, Unit::Day)),
            _ => None,
        };
        if let Some((current, count, unit)) = shorthand {
            return Some(Timeframe::Relative {
                current,
                count,
                unit,
            });
        }
        let parts: Vec<&str> = text.split('_').collect();
        let (current, rest) = match parts.first()? {
            &"this" => (true, &parts[1..]),
            &"previous" | &"last" => (false, &parts[1..]),
            _ => return None,
        };
        let (count, unit) = match rest {
            [unit] => (1, Unit::parse(unit)?),
            [count, unit] => (
                count.parse::<u32>().ok().filter(|count| *count > 0)?,
                Unit::parse(unit)?,
            ),
            _ => return None,
        };
        Some(Timeframe::Relative {
            current,
            count,
            unit,
        })
    }

    /// The instants this timeframe covers, evaluated at `now` in `timezone`. A relative timeframe reaching
    /// before year 1 or past year 9999 is refused.
    pub fn resolve(&self, now: EpochMillis, timezone: Timezone) -> Result<TimeRange, QueryError> {
        let (current, count, unit) = match *self {
            Timeframe::Absolute { start, end } => return Ok(TimeRange { start, end }),
            Timeframe::Relative {
                current,
                count,
                unit,
            } => (current, count, unit),
        };
        let out_of_range = || {
            QueryError::InvalidTimeframe(format!(
                "You sent in an invalid definition for the timeframe: it reaches beyond the years 1 to 9999 ({count} {unit:?}s)."
            ))
        };
        let current_start = unit.truncate(timezone.instant_to_local(now));
        let (first, last) = if current {
            (
                unit.add(current_start, 1 - i64::from(count)),
                unit.add(current_start, 1),
            )
        } else {
            (
                unit.add(current_start, -i64::from(count)),
                Some(current_start),
            )
        };
        let (Some(first), Some(last)) = (first, last) else {
            return Err(out_of_range());
        };
        let mut range = TimeRange {
            start: timezone.local_to_instant(first),
            end: timezone.local_to_instant(last),
        };
        if current {
            range.end = range.end.min(now.saturating_add(1));
        }
        if range.start < MIN_INSTANT || range.end > MAX_INSTANT {
            return Err(out_of_range());
        }
        Ok(range)
    }
}

/// An interval: named (`daily`, …) or `every_N_units`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Interval {
    /// How many units each bucket spans.
    pub count: u32,
    /// The unit.
    pub unit: Unit,
}

impl Interval {
    /// The named intervals (`every_N_units` names the others).
    pub const NAMED: [(&'static str, Unit); 6] = [
        ("minutely", Unit::Minute),
        ("hourly", Unit::Hour),
        ("daily", Unit::Day),
        ("weekly", Unit::Week),
        ("monthly", Unit::Month),
        ("yearly", Unit::Year),
    ];

    /// Parses an `interval` parameter: a name (`daily`) or `every_N_units`.
    pub fn parse(value: &Value) -> Result<Interval, QueryError> {
        let invalid = || QueryError::InvalidInterval(format!("'{value}' is not a valid interval."));
        let text = value.as_str().ok_or_else(invalid)?.trim();
        let named = Interval::NAMED
            .iter()
            .find(|(name, _)| *name == text)
            .map(|(_, unit)| *unit);
        if let Some(unit) = named {
            return Ok(Interval { count: 1, unit });
        }
        let parts: Vec<&str> = text.split('_').collect();
        match parts.as_slice() {
            ["every", count, unit] => {
                let count = count
                    .parse::<u32>()
                    .ok()
                    .filter(|count| *count > 0)
                    .ok_or_else(invalid)?;
                Ok(Interval {
                    count,
                    unit: Unit::parse(unit).ok_or_else(invalid)?,
                })
            }
            ["every", unit] => Ok(Interval {
                count: 1,
                unit: Unit::parse(unit).ok_or_else(invalid)?,
            }),
            _ => Err(invalid()),
        }
    }

    /// Bucket boundaries over `range`: the range's start, every calendar boundary of the interval inside
    /// it, and its end; so the first and last buckets are clipped to the timeframe.
    pub fn boundaries(
        &self,
        range: TimeRange,
        timezone: Timezone,
        max_buckets: usize,
    ) -> Result<Vec<EpochMillis>, QueryError> {
        let mut boundaries = vec![range.start];
        let mut local = self.unit.truncate(timezone.instant_to_local(range.start));
        while let Some(next) = self.unit.add(local, i64::from(self.count)) {
            local = next;
            let instant = timezone.local_to_instant(local);
            if instant >= range.end {
                break;
            }
            if instant > *boundaries.last().expect("not empty") {
                boundaries.push(instant);
            }
            if boundaries.len() > max_buckets {
                return Err(QueryError::InvalidInterval(format!(
                    "This interval and timeframe give more than {max_buckets} buckets; choose a longer interval."
                )));
            }
        }
        if range.end > range.start {
            boundaries.push(range.end);
        }
        Ok(boundaries)
    }
}

/// Formats an instant as Keen does in interval results.
pub fn format_instant(millis: EpochMillis) -> String {
    crate::timestamp::format_timestamp(millis)
}

/// `now` for callers that want the wall clock.
pub fn now_millis() -> EpochMillis {
    Utc::now().timestamp_millis()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn at(text: &str) -> EpochMillis {
        parse_timestamp(text).unwrap()
    }

    fn iso(millis: EpochMillis) -> String {
        format_instant(millis)
    }

    fn resolve(timeframe: &str, now: &str, zone: &str) -> (String, String) {
        let range = Timeframe::parse(&json!(timeframe))
            .unwrap()
            .resolve(at(now), Timezone::parse(&json!(zone)).unwrap())
            .unwrap();
        (iso(range.start), iso(range.end))
    }

    #[test]
    fn relative_timeframes_in_utc() {
        let now = "2024-03-13T15:30:00Z"; // a Wednesday
        assert_eq!(
            resolve("this_day", now, "UTC"),
            (
                "2024-03-13T00:00:00.000Z".into(),
                "2024-03-13T15:30:00.001Z".into()
            )
        );
        assert_eq!(
            resolve("this_3_days", now, "UTC"),
            (
                "2024-03-11T00:00:00.000Z".into(),
                "2024-03-13T15:30:00.001Z".into()
            )
        );
        assert_eq!(
            resolve("previous_3_days", now, "UTC"),
            (
                "2024-03-10T00:00:00.000Z".into(),
                "2024-03-13T00:00:00.000Z".into()
            )
        );
        assert_eq!(
            resolve("yesterday", now, "UTC"),
            (
                "2024-03-12T00:00:00.000Z".into(),
                "2024-03-13T00:00:00.000Z".into()
            )
        );
        assert_eq!(
            resolve("previous_week", now, "UTC"),
            (
                "2024-03-03T00:00:00.000Z".into(),
                "2024-03-10T00:00:00.000Z".into()
            )
        );
        assert_eq!(
            resolve("this_2_hours", now, "UTC"),
            (
                "2024-03-13T14:00:00.000Z".into(),
                "2024-03-13T15:30:00.001Z".into()
            )
        );
        assert_eq!(
            resolve("previous_minute", now, "UTC"),
            (
                "2024-03-13T15:29:00.000Z".into(),
                "2024-03-13T15:30:00.000Z".into()
            )
        );
        assert_eq!(
            resolve("previous_2_months", "2024-03-31T12:00:00Z", "UTC"),
            (
                "2024-01-01T00:00:00.000Z".into(),
                "2024-03-01T00:00:00.000Z".into()
            )
        );
        assert_eq!(
            resolve("this_year", now, "UTC"),
            (
                "2024-01-01T00:00:00.000Z".into(),
                "2024-03-13T15:30:00.001Z".into()
            )
        );
    }

    #[test]
    fn relative_timeframes_in_zones_and_offsets() {
        // 2024-03-10 is the US spring-forward day: 23 hours long in US/Pacific.
        assert_eq!(
            resolve("previous_day", "2024-03-11T20:00:00Z", "US/Pacific"),
            (
                "2024-03-10T08:00:00.000Z".into(),
                "2024-03-11T07:00:00.000Z".into()
            )
        );
        assert_eq!(
            resolve("previous_day", "2024-03-11T20:00:00Z", "-28800"),
            (
                "2024-03-10T08:00:00.000Z".into(),
                "2024-03-11T08:00:00.000Z".into()
            )
        );
        // `this_day` starts at local midnight and ends now (Keen: "until now").
        assert_eq!(
            resolve("this_day", "2024-03-10T20:00:00Z", "US/Pacific"),
            (
                "2024-03-10T08:00:00.000Z".into(),
                "2024-03-10T20:00:00.001Z".into()
            )
        );
        assert_eq!(
            resolve("today", "2024-03-10T20:00:00Z", "UTC").1,
            "2024-03-10T20:00:00.001Z"
        );
        assert_eq!(
            Timeframe::parse(&json!("this_day")).unwrap().resolve(
                at("2024-03-10T20:00:00Z"),
                Timezone::parse(&json!(-28800)).unwrap()
            ),
            Timeframe::parse(&json!("this_day")).unwrap().resolve(
                at("2024-03-10T20:00:00Z"),
                Timezone::parse(&json!("-08:00")).unwrap()
            )
        );
    }

    #[test]
    fn bad_timeframes_and_zones_are_refused() {
        for bad in [
            json!("this_0_days"),
            json!("next_2_days"),
            json!("this_2_fortnights"),
            json!({"start": "x", "end": "2024-01-01"}),
            json!(5),
        ] {
            assert!(
                matches!(Timeframe::parse(&bad), Err(QueryError::InvalidTimeframe(_))),
                "{bad}"
            );
        }
        assert!(
            Timeframe::parse(
                &json!({"start": "2024-02-01T00:00:00Z", "end": "2024-01-01T00:00:00Z"})
            )
            .is_err()
        );
        assert!(Timezone::parse(&json!("Mars/Olympus")).is_err());
        assert!(Timezone::parse(&json!(1.5)).is_err());
    }

    #[test]
    fn absurd_relative_timeframes_are_refused_not_panics() {
        let now = at("2026-11-29T12:00:00Z");
        for text in [
            "this_4294967295_weeks",
            "this_99999999_days",
            "this_300000_years",
            "previous_4294967295_years",
            "this_4294967295_months",
            "previous_4294967295_minutes",
            "this_9000_years",
        ] {
            let timeframe = Timeframe::parse(&json!(text)).unwrap();
            for zone in ["UTC", "Pacific/Kiritimati", "-43200"] {
                assert!(
                    matches!(
                        timeframe.resolve(now, Timezone::parse(&json!(zone)).unwrap()),
                        Err(QueryError::InvalidTimeframe(_))
                    ),
                    "{text} in {zone}"
                );
            }
        }
        let widest = Timeframe::parse(&json!("previous_2000_years")).unwrap();
        assert!(widest.resolve(now, Timezone::default()).is_ok());
    }

    fn buckets(interval: &str, start: &str, end: &str, zone: &str) -> Vec<String> {
        let range = TimeRange {
            start: at(start),
            end: at(end),
        };
        let zone = Timezone::parse(&json!(zone)).unwrap();
        Interval::parse(&json!(interval))
            .unwrap()
            .boundaries(range, zone, 10_000)
            .unwrap()
            .into_iter()
            .map(iso)
            .collect()
    }

    #[test]
    fn weekly_buckets_start_on_sunday_and_are_clipped() {
        // Keen's fixture: June 2015, weekly → 06-01, 06-07, 06-14, 06-21, 06-28, 07-01.
        assert_eq!(
            buckets(
                "weekly",
                "2015-06-01T00:00:00Z",
                "2015-07-01T00:00:00Z",
                "UTC"
            ),
            [
                "2015-06-01T00:00:00.000Z",
                "2015-06-07T00:00:00.000Z",
                "2015-06-14T00:00:00.000Z",
                "2015-06-21T00:00:00.000Z",
                "2015-06-28T00:00:00.000Z",
                "2015-07-01T00:00:00.000Z"
            ]
        );
    }

    #[test]
    fn daily_buckets_follow_dst_in_two_zones() {
        // Europe/Berlin falls back on 2024-10-27: that day is 25 hours.
        assert_eq!(
            buckets(
                "daily",
                "2024-10-25T22:00:00Z",
                "2024-10-28T23:00:00Z",
                "Europe/Berlin"
            ),
            [
                "2024-10-25T22:00:00.000Z",
                "2024-10-26T22:00:00.000Z",
                "2024-10-27T23:00:00.000Z",
                "2024-10-28T23:00:00.000Z"
            ]
        );
        // US/Pacific springs forward on 2024-03-10: that day is 23 hours.
        assert_eq!(
            buckets(
                "daily",
                "2024-03-09T08:00:00Z",
                "2024-03-12T07:00:00Z",
                "US/Pacific"
            ),
            [
                "2024-03-09T08:00:00.000Z",
                "2024-03-10T08:00:00.000Z",
                "2024-03-11T07:00:00.000Z",
                "2024-03-12T07:00:00.000Z"
            ]
        );
        assert_eq!(
            buckets(
                "every_2_hours",
                "2024-03-10T08:00:00Z",
                "2024-03-10T14:00:00Z",
                "US/Pacific"
            ),
            // Local 00:00, 02:00 does not exist (→ 03:00 PDT = 10:00Z), 04:00 PDT = 11:00Z, 06:00 PDT = 13:00Z.
            [
                "2024-03-10T08:00:00.000Z",
                "2024-03-10T10:00:00.000Z",
                "2024-03-10T11:00:00.000Z",
                "2024-03-10T13:00:00.000Z",
                "2024-03-10T14:00:00.000Z"
            ]
        );
        assert_eq!(
            buckets(
                "monthly",
                "2024-01-15T00:00:00Z",
                "2024-04-01T00:00:00Z",
                "UTC"
            ),
            [
                "2024-01-15T00:00:00.000Z",
                "2024-02-01T00:00:00.000Z",
                "2024-03-01T00:00:00.000Z",
                "2024-04-01T00:00:00.000Z"
            ]
        );
    }

    #[test]
    fn interval_names() {
        assert_eq!(
            Interval::parse(&json!("every_7_days")).unwrap(),
            Interval {
                count: 7,
                unit: Unit::Day
            }
        );
        assert_eq!(
            Interval::parse(&json!("hourly")).unwrap(),
            Interval {
                count: 1,
                unit: Unit::Hour
            }
        );
        assert!(Interval::parse(&json!("every_0_days")).is_err());
        assert!(Interval::parse(&json!("fortnightly")).is_err());
        let tiny = TimeRange {
            start: at("2024-01-01T00:00:00Z"),
            end: at("2024-01-02T00:00:00Z"),
        };
        assert!(
            Interval::parse(&json!("minutely"))
                .unwrap()
                .boundaries(tiny, Timezone::default(), 100)
                .is_err()
        );
    }
}
