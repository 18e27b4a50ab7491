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
    /// `TimeframeDefinitionError`.
    #[error("{0}")]
    InvalidTimeframe(String),
    /// `InvalidTimezoneError`.
    #[error("{0}")]
    InvalidTimezone(String),
    /// `InvalidIntervalError`.
    #[error("{0}")]
    InvalidInterval(String),
    /// `InvalidFilterError`.
    #[error("{0}")]
    InvalidFilter(String),
    /// `InvalidPropertyNameForGeoFilter`.
    #[error("{0}")]
    InvalidGeoFilterProperty(String),
    /// `MissingParameterError`.
    #[error("{0}")]
    MissingParameter(String),
    /// `InvalidParameterError`.
    #[error("{0}")]
    InvalidParameter(String),
    /// An analysis type Keen does not have (404).
    #[error("{0}")]
    UnknownAnalysis(String),
    /// `LimitExceededError`.
    #[error("{0}")]
    LimitExceeded(String),
}

/// A Keen analysis type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AnalysisType {
    /// `count`.
    Count,
    /// `count_unique`.
    CountUnique,
    /// `minimum`.
    Minimum,
    /// `maximum`.
    Maximum,
    /// `sum`.
    Sum,
    /// `average`.
    Average,
    /// `median`.
    Median,
    /// `percentile`.
    Percentile,
    /// `standard_deviation`.
    StandardDeviation,
    /// `select_unique`.
    SelectUnique,
    /// `extraction`.
    Extraction,
    /// `funnel`.
    Funnel,
    /// `multi_analysis`.
    MultiAnalysis,
}

impl AnalysisType {
    /// Every analysis type.
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

    /// Keen's name for the analysis.
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

    /// The analysis named `name`; an unknown name is `UnknownAnalysis`.
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
    /// Group by a property's values.
    Property(String),
    /// Numeric buckets of `size`, starting at `offset` (`{"property_name", "buckets": {"size", "offset"}}`).
    Buckets {
        /// The property path.
        property: String,
        /// The bucket width.
        size: f64,
        /// Where the first bucket starts.
        offset: f64,
    },
    /// Explicit ranges `[from, to)` (`{"property_name", "ranges": [{"from", "to"}]}`).
    Ranges {
        /// The property path.
        property: String,
        /// The ranges, each `[from, to)` (`None`: unbounded).
        ranges: Vec<(Option<f64>, Option<f64>)>,
    },
}

impl GroupBy {
    /// The property the entry groups by.
    pub fn property(&self) -> &str {
        match self {
            GroupBy::Property(property)
            | GroupBy::Buckets { property, .. }
            | GroupBy::Ranges { property, .. } => property,
        }
    }
}

/// One `order_by` entry.
#[derive(Clone, Debug, PartialEq)]
pub struct OrderBy {
    /// A group_by property, or `result`.
    pub property: String,
    /// Largest first.
    pub descending: bool,
}

/// One labelled analysis of a `multi_analysis`.
#[derive(Clone, Debug, PartialEq)]
pub struct SubAnalysis {
    /// The analysis' label in the answer.
    pub label: String,
    /// The analysis.
    pub analysis: AnalysisType,
    /// The property it reads, where it needs one.
    pub target_property: Option<String>,
    /// The percentile, for `percentile`.
    pub percentile: Option<f64>,
}

/// One step of a funnel.
#[derive(Clone, Debug, PartialEq)]
pub struct FunnelStep {
    /// The step's collection.
    pub collection: String,
    /// The property identifying an actor across steps.
    pub actor_property: String,
    /// The step's own timeframe (absent: the funnel's).
    pub timeframe: Option<Timeframe>,
    /// The step's own time zone (absent: the funnel's).
    pub timezone: Option<Timezone>,
    /// The step's filters.
    pub filters: Vec<Filter>,
    /// Reported, but does not constrain later steps.
    pub optional: bool,
    /// Counts the actors who did not take the step.
    pub inverted: bool,
    /// Lists the step's actors in the answer.
    pub with_actors: bool,
    /// The step as sent, echoed in the response with defaults filled.
    pub echo: Value,
}

/// A parsed Keen query.
#[derive(Clone, Debug, PartialEq)]
pub struct Query {
    /// The analysis.
    pub analysis: AnalysisType,
    /// Absent only for funnels.
    pub collection: Option<String>,
    /// The property it reads (`target_property`).
    pub target_property: Option<String>,
    /// The percentile, for `percentile`.
    pub percentile: Option<f64>,
    /// The timeframe (required but for funnels).
    pub timeframe: Option<Timeframe>,
    /// The time zone of timeframes and intervals.
    pub timezone: Timezone,
    /// The interval, for a series of buckets.
    pub interval: Option<Interval>,
    /// The caller's filters (AND-ed with the key's).
    pub filters: Vec<Filter>,
    /// The `group_by` entries.
    pub group_by: Vec<GroupBy>,
    /// The `order_by` entries.
    pub order_by: Vec<OrderBy>,
    /// How many groups to keep after ordering.
    pub limit: Option<usize>,
    /// Whether to add `execution_metadata`.
    pub include_metadata: bool,
    /// Extraction: keep the N most recent events.
    pub latest: Option<usize>,
    /// Extraction: the property paths to keep.
    pub property_names: Option<Vec<String>>,
    /// Extraction: Keen's e-mail delivery (`email`, `content_type`, `content_encoding`); read for
    /// extractions only.
    pub email: Option<EmailDelivery>,
    /// Funnel: the steps.
    pub steps: Vec<FunnelStep>,
    /// Multi-analysis: the labelled analyses.
    pub analyses: Vec<SubAnalysis>,
}

/// Where and how an extraction is e-mailed instead of answered: Keen's `email`, with the Explorer's
/// `content_type` (`text/csv`, the default, or `application/json`) and `content_encoding` (`gzip`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EmailDelivery {
    /// The recipient's address, as sent (one address; checked again by the mailer).
    pub to: String,
    /// Whether the attachment is JSON (an array of the events) rather than CSV.
    pub json: bool,
    /// Whether the attachment is gzip-compressed.
    pub gzip: bool,
}

mod parse;
pub use parse::params_from_query_string;
