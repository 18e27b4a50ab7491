//! The scope every read runs in: the project, and the filters the caller's key forces on every query.
//!
//! Design: no plan can be built without a `Scope` — every entry point of this crate takes one — and the
//! scope's filters are AND-ed into the plan in one place (`plan::filtered_frame`), directly above the
//! scan of each collection and before any aggregation, for every sub-query (funnel steps, multi_analysis
//! entries, extraction). A caller's own filters are AND-ed next to them, so they can only narrow.

use keyhole_model::query::Filter;

#[derive(Clone, Debug)]
pub struct Scope {
    project_id: String,
    forced_filters: Vec<Filter>,
}

impl Scope {
    /// Built by the server's auth layer from the resolved key.
    pub fn new(project_id: impl Into<String>, forced_filters: Vec<Filter>) -> Scope {
        Scope {
            project_id: project_id.into(),
            forced_filters,
        }
    }

    pub fn project_id(&self) -> &str {
        &self.project_id
    }

    pub fn forced_filters(&self) -> &[Filter] {
        &self.forced_filters
    }
}
