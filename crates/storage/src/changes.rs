//! Which event times changed since a moment: the basis on which stored results of closed time buckets
//! (dataset results) stay valid. Every change to a collection (a write, a delete, a property removal, its
//! creation) takes the engine's next change version and records the earliest `keen.timestamp` it
//! touched; [`ChangeLog::earliest_since`] answers "what is the earliest event time changed after version
//! v". A result over `[start, end)` computed at version v is still exact if that time is `>= end`.
//!
//! Design: the log is a stack whose versions and times both increase, so the first entry after v holds
//! the minimum of everything after v (a new change pops the entries with later-or-equal times: every
//! question they answered, it answers with an earlier or equal time). A change less than
//! [`COALESCE_MILLIS`] after the newest entry's time only moves that entry to its version, so writes at
//! "now" keep the log at one entry a minute instead of one per write group (the record runs under the
//! state lock on every write). The stack is bounded by merging its two oldest entries into one (keeping
//! the earlier time under the later version). Both can only make answers earlier — more invalidation,
//! never less: an answer is at most a minute early while the log is under its bound.

use std::collections::VecDeque;

/// Most entries kept per collection.
const MAX_ENTRIES: usize = 1024;
/// Changes this close after the newest entry's time join that entry.
pub(crate) const COALESCE_MILLIS: i64 = 60_000;

/// A collection's changes (see the module docs).
#[derive(Clone, Debug, Default)]
pub(crate) struct ChangeLog {
    /// (version, earliest event time changed at or after it), increasing in both.
    entries: VecDeque<(u64, i64)>,
}

impl ChangeLog {
    /// Records a change at `version` (greater than every recorded one) touching times from `earliest`.
    pub(crate) fn record(&mut self, version: u64, earliest: i64) {
        while self
            .entries
            .back()
            .is_some_and(|&(_, time)| time >= earliest)
        {
            self.entries.pop_back();
        }
        if let Some(newest) = self.entries.back_mut()
            && earliest.saturating_sub(newest.1) < COALESCE_MILLIS
        {
            newest.0 = version;
            return;
        }
        self.entries.push_back((version, earliest));
        if self.entries.len() > MAX_ENTRIES
            && let Some((_, oldest_time)) = self.entries.pop_front()
            && let Some(next) = self.entries.front_mut()
        {
            next.1 = oldest_time;
        }
    }

    /// The earliest event time changed by a change after `version`, if any.
    pub(crate) fn earliest_since(&self, version: u64) -> Option<i64> {
        let first_after = self
            .entries
            .partition_point(|&(recorded, _)| recorded <= version);
        self.entries.get(first_after).map(|&(_, time)| time)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn writes_at_now_keep_the_log_small() {
        let mut log = ChangeLog::default();
        for version in 1..=100_000u64 {
            log.record(version, 1_700_000_000_000 + version as i64);
        }
        assert_eq!(log.entries.len(), 2);
        assert_eq!(log.earliest_since(99_999), Some(1_700_000_060_001));
        assert_eq!(log.earliest_since(100_000), None);
    }

    proptest! {
        /// Against the plain definition (minimum over every change after v): never later, and less than
        /// a coalescing step earlier while the log is under its bound.
        #[test]
        fn answers_the_minimum_over_later_changes(times in proptest::collection::vec(-5_000_000i64..5_000_000, 0..2000), probe in 0u64..2100) {
            let mut log = ChangeLog::default();
            for (index, time) in times.iter().enumerate() {
                log.record(index as u64 + 1, *time);
            }
            let exact = times
                .iter()
                .enumerate()
                .filter(|(index, _)| *index as u64 + 1 > probe)
                .map(|(_, time)| *time)
                .min();
            let answer = log.earliest_since(probe);
            prop_assert_eq!(answer.is_some(), exact.is_some());
            if let (Some(answer), Some(exact)) = (answer, exact) {
                prop_assert!(answer <= exact);
                if times.len() <= MAX_ENTRIES {
                    prop_assert!(exact - answer < COALESCE_MILLIS, "{} vs {}", answer, exact);
                }
            }
        }
    }
}
