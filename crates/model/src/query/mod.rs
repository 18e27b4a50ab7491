//! Keen queries as typed values, parsed from the JSON parameters of `GET` and `POST
//! /queries/{analysis_type}` (see [`params_from_query_string`] for how a GET query string becomes the same
//! JSON object a POST body is). Parsing checks everything that can be checked without data; execution
//! lives in the `query` crate.

mod filter;
mod time;

use serde_json::Value;

pub use filter::{Filter, GeoRadius, Operator};
pub use time::{Interval, TimeRange, Timeframe, Timezone, Unit, format_instant, now_millis};

/// Why a query was refused. The server maps each to Keen's `error_code` and status.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum QueryError {
    #[error("{0}")]
    InvalidTimeframe(String),
    #[error("{0}")]
    InvalidTimezone(String),
    #[error("{0}")]
    InvalidInterval(String),
    #[error("{0}")]
    InvalidFilter(String),
    #[error("{0}")]
    InvalidGeoFilterProperty(String),
    #[error("{0}")]
    MissingParameter(String),
    #[error("{0}")]
    InvalidParameter(String),
    #[error("{0}")]
    UnknownAnalysis(String),
    #[error("{0}")]
    LimitExceeded(String),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AnalysisType {
    Count,
    CountUnique,
    Minimum,
    Maximum,
    Sum,
    Average,
    Median,
    Percentile,
    StandardDeviation,
    SelectUnique,
    Extraction,
    Funnel,
    MultiAnalysis,
}

impl AnalysisType {
    pub const ALL: [AnalysisType; 13] = [
        AnalysisType::Count,
        AnalysisType::CountUnique,
        AnalysisType::Minimum,
        AnalysisType::Maximum,
        AnalysisType::Sum,
        AnalysisType::Average,
        AnalysisType::Median,
        AnalysisType::Percentile,
        AnalysisType::StandardDeviation,
        AnalysisType::SelectUnique,
        AnalysisType::Extraction,
        AnalysisType::Funnel,
        AnalysisType::MultiAnalysis,
    ];

    pub fn keen_name(self) -> &'static str {
        match self {
            AnalysisType::Count => "count",
            AnalysisType::CountUnique => "count_unique",
            AnalysisType::Minimum => "minimum",
            AnalysisType::Maximum => "maximum",
            AnalysisType::Sum => "sum",
            AnalysisType::Average => "average",
            AnalysisType::Median => "median",
            AnalysisType::Percentile => "percentile",
            AnalysisType::StandardDeviation => "standard_deviation",
            AnalysisType::SelectUnique => "select_unique",
            AnalysisType::Extraction => "extraction",
            AnalysisType::Funnel => "funnel",
            AnalysisType::MultiAnalysis => "multi_analysis",
        }
    }

    pub fn parse(name: &str) -> Result<AnalysisType, QueryError> {
        AnalysisType::ALL
            .into_iter()
            .find(|analysis| analysis.keen_name() == name)
            .ok_or_else(|| {
                QueryError::UnknownAnalysis(format!("'{name}' is not an analysis type."))
            })
    }

    /// Analyses computed over a `target_property`.
    pub(crate) fn needs_target_property(self) -> bool {
        !matches!(
            self,
            AnalysisType::Count
                | AnalysisType::Extraction
                | AnalysisType::Funnel
                | AnalysisType::MultiAnalysis
        )
    }
}

/// One `group_by` entry.
#[derive(Clone, Debug, PartialEq)]
pub enum GroupBy {
    Property(String),
    /// Numeric buckets of `size`, starting at `offset` (`{"property_name", "buckets": {"size", "offset"}}`).
    Buckets {
        property: String,
        size: f64,
        offset: f64,
    },
    /// Explicit ranges `[from, to)` (`{"property_name", "ranges": [{"from", "to"}]}`).
    Ranges {
        property: String,
        ranges: Vec<(Option<f64>, Option<f64>)>,
    },
}

impl GroupBy {
    pub fn property(&self) -> &str {
        match self {
            GroupBy::Property(property)
            | GroupBy::Buckets { property, .. }
            | GroupBy::Ranges { property, .. } => property,
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct OrderBy {
    /// A group_by property, or `result`.
    pub property: String,
    pub descending: bool,
}

/// One labelled analysis of a `multi_analysis`.
#[derive(Clone, Debug, PartialEq)]
pub struct SubAnalysis {
    pub label: String,
    pub analysis: AnalysisType,
    pub target_property: Option<String>,
    pub percentile: Option<f64>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct FunnelStep {
    pub collection: String,
    pub actor_property: String,
    pub timeframe: Option<Timeframe>,
    pub timezone: Option<Timezone>,
    pub filters: Vec<Filter>,
    pub optional: bool,
    pub inverted: bool,
    pub with_actors: bool,
    /// The step as sent, echoed in the response with defaults filled.
    pub echo: Value,
}

/// A parsed Keen query.
#[derive(Clone, Debug, PartialEq)]
pub struct Query {
    pub analysis: AnalysisType,
    /// Absent only for funnels.
    pub collection: Option<String>,
    pub target_property: Option<String>,
    pub percentile: Option<f64>,
    pub timeframe: Option<Timeframe>,
    pub timezone: Timezone,
    pub interval: Option<Interval>,
    pub filters: Vec<Filter>,
    pub group_by: Vec<GroupBy>,
    pub order_by: Vec<OrderBy>,
    pub limit: Option<usize>,
    pub include_metadata: bool,
    pub latest: Option<usize>,
    pub property_names: Option<Vec<String>>,
    pub email: Option<String>,
    pub steps: Vec<FunnelStep>,
    pub analyses: Vec<SubAnalysis>,
}

mod parse;
pub use parse::params_from_query_string;
