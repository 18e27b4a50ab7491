//! The scope every read runs in: the project, the filters the caller's grant forces on every query, and
//! the earliest event time it may see (`options.queries.max_lookback`).
//!
//! Design: no plan can be built without a `Scope` — every entry point of this crate takes one — and a
//! scope is built only from a grant ([`Scope::for_grant`]). Its filters and window are AND-ed into the
//! plan in one place (`plan::filtered_frame`), directly above the scan of each collection and before any
//! aggregation, for every sub-query (funnel steps, multi_analysis entries, extraction, schema visibility).
//! A caller's own filters and timeframe are AND-ed next to them, so they can only narrow.

use keyhole_model::Grant;
use keyhole_model::query::Filter;
use keyhole_model::timestamp::EpochMillis;

#[derive(Clone, Debug)]
/// A read's scope: the project, the filters the grant forces and the earliest time it may see.
pub struct Scope {
    project_id: String,
    forced_filters: Vec<Filter>,
    earliest_millis: Option<EpochMillis>,
}

impl Scope {
    /// The scope of a grant's reads made at `now`.
    pub fn for_grant(grant: &Grant, now: EpochMillis) -> Scope {
        Scope {
            project_id: grant.project_id().to_string(),
            forced_filters: grant.forced_query_filters().to_vec(),
            earliest_millis: grant.read_window_start(now),
        }
    }

    /// The scope of a grant's reads of saved queries at `now`: its forced filters plus
    /// `options.saved_queries.filters`.
    pub fn for_saved_query(grant: &Grant, now: EpochMillis) -> Scope {
        Scope {
            project_id: grant.project_id().to_string(),
            forced_filters: grant.stored_query_filters(),
            earliest_millis: grant.read_window_start(now),
        }
    }

    /// The project the scope reads.
    pub fn project_id(&self) -> &str {
        &self.project_id
    }

    /// The filters AND-ed into every read of the scope.
    pub fn forced_filters(&self) -> &[Filter] {
        &self.forced_filters
    }

    /// The earliest event time the scope may read, if its grant limits how far back reads look.
    pub fn earliest_millis(&self) -> Option<EpochMillis> {
        self.earliest_millis
    }

    /// Whether the scope hides any event of the project (filters or a look-back window). Reads of a
    /// restricted scope must not report totals of the whole collection.
    pub fn is_restricted(&self) -> bool {
        !self.forced_filters.is_empty() || self.earliest_millis.is_some()
    }
}
