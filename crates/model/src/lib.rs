//! Keyhole's pure domain model: Keen JSON events and the typed, flattened form storage keeps them in,
//! collection/property naming rules, timestamps, and access-key primitives. Nothing here does I/O, so
//! every layer above (storage, meta, server) shares one definition of what a valid event or key is.

pub mod access;
pub mod event;
pub mod flat;
pub mod keys;
pub mod names;
pub mod query;
pub mod query_string;
pub mod timestamp;

pub use event::{EventContext, EventError, PreparedEvent, prepare_event, reload_event};
pub use flat::{FlatEvent, FlatValue, ValueKind};
pub use keys::{KeyHash, Operation};

#[cfg(test)]
mod fuzz_tests;
