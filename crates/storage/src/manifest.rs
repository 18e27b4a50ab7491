//! The manifest: which Parquet files make up each collection, each collection's property schema, and the
//! WAL sequence number through which everything is in those files.
//!
//! It is one JSON file in the data directory, replaced atomically (write a temp file, fsync, rename,
//! fsync the directory), so after a crash it is either the old or the new version, never a mix. What
//! start-up does with files the manifest does not list, or lists but cannot read, is in `recovery`; WAL
//! records with sequence numbers above `flushed_sequence` are replayed.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::{self, Write};
use std::path::Path;

use keyhole_model::ValueKind;
use serde::{Deserialize, Serialize};

use crate::wal::sync_directory;

pub const MANIFEST_FILE: &str = "manifest.json";
const MANIFEST_TEMP_FILE: &str = "manifest.json.tmp";

/// A collection is identified by its project and name.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct CollectionId {
    pub project: String,
    pub collection: String,
}

/// One Parquet file of a collection, covering one UTC day of event time.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DataFile {
    /// Path inside the object store.
    pub path: String,
    pub day: String,
    pub min_timestamp_millis: i64,
    pub max_timestamp_millis: i64,
    pub rows: usize,
    pub bytes: usize,
}

/// Per property path: every kind it has held, and the kind of the most recently written value.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PropertySchema {
    pub kinds: BTreeSet<String>,
    pub latest: String,
}

/// A collection's schema: property path → its kinds.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct CollectionSchema {
    pub properties: BTreeMap<String, PropertySchema>,
}

impl CollectionSchema {
    pub fn record(&mut self, path: &str, kind: ValueKind) {
        // Looked up by `&str` first: the writer records every property of every event, and allocating the
        // path each time showed in the ingest profile.
        if !self.properties.contains_key(path) {
            self.properties.insert(path.to_string(), Default::default());
        }
        let property = self.properties.get_mut(path).expect("inserted just above");
        if property.latest == kind.suffix() && property.kinds.contains(kind.suffix()) {
            return;
        }
        if !property.kinds.contains(kind.suffix()) {
            property.kinds.insert(kind.suffix().to_string());
        }
        if property.latest != kind.suffix() {
            property.latest = kind.suffix().to_string();
        }
    }

    /// Every physical `{path}#{kind}` column the collection has.
    pub fn column_names(&self) -> Vec<String> {
        self.properties
            .iter()
            .flat_map(|(path, property)| {
                property
                    .kinds
                    .iter()
                    .filter_map(|suffix| ValueKind::from_suffix(suffix))
                    .map(move |kind| kind.column_name(path))
            })
            .collect()
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct CollectionManifest {
    pub id: CollectionId,
    pub schema: CollectionSchema,
    pub files: Vec<DataFile>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub flushed_sequence: u64,
    pub collections: Vec<CollectionManifest>,
}

impl Manifest {
    pub fn load(directory: &Path) -> io::Result<Manifest> {
        let path = directory.join(MANIFEST_FILE);
        if !path.exists() {
            return Ok(Manifest::default());
        }
        let bytes = fs::read(&path)?;
        serde_json::from_slice(&bytes)
            .map_err(|error| io::Error::new(io::ErrorKind::InvalidData, error))
    }

    pub fn store(&self, directory: &Path) -> io::Result<()> {
        let temp_path = directory.join(MANIFEST_TEMP_FILE);
        let mut file = fs::File::create(&temp_path)?;
        file.write_all(&serde_json::to_vec_pretty(self).expect("manifest serializes"))?;
        file.sync_all()?;
        fs::rename(&temp_path, directory.join(MANIFEST_FILE))?;
        sync_directory(directory)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stores_atomically_and_loads() {
        let directory = tempfile::tempdir().unwrap();
        assert_eq!(
            Manifest::load(directory.path()).unwrap(),
            Manifest::default()
        );
        let mut schema = CollectionSchema::default();
        schema.record("price", ValueKind::Num);
        schema.record("price", ValueKind::Str);
        let manifest = Manifest {
            flushed_sequence: 7,
            collections: vec![CollectionManifest {
                id: CollectionId {
                    project: "p".into(),
                    collection: "c".into(),
                },
                schema,
                files: vec![],
            }],
        };
        manifest.store(directory.path()).unwrap();
        let loaded = Manifest::load(directory.path()).unwrap();
        assert_eq!(loaded, manifest);
        assert_eq!(
            loaded.collections[0].schema.column_names(),
            ["price#num", "price#str"]
        );
        assert_eq!(
            loaded.collections[0].schema.properties["price"].latest,
            "str"
        );
    }
}
