//! Keyhole's pure domain model: Keen JSON events and the typed, flattened form storage keeps them in,
//! collection/property naming rules, timestamps, access-key definitions and the typed grant a key or embed token carries. Nothing here does I/O, so
//! every layer above (storage, meta, server) shares one definition of what a valid event or key is.

#![warn(missing_docs)]

pub mod access;
pub mod addons;
pub mod autofill;
pub mod dashboard;
pub mod dataset;
pub mod embed_token;
pub mod event;
mod event_parse;
pub mod flat;
pub mod flat_edit;
pub mod footprint;
pub mod grant;
pub mod key_options;
pub mod keys;
pub mod memory_budget;
pub mod names;
pub mod origins;
pub mod query;
pub mod query_string;
pub mod reachability;
pub mod saved_query;
pub mod strict_json;
pub mod tenant;
pub mod timestamp;
pub mod webhook;

pub use event::{
    EventContext, EventError, PreparedEvent, prepare_event, prepare_event_enriched, reload_event,
};
pub use flat::{FlatEvent, FlatValue, ValueKind};
pub use grant::{Grant, KeyKind};
pub use keys::{KeyHash, Operation};

#[cfg(test)]
mod fuzz_tests;
#[cfg(test)]
mod memory_tests;
