//! The manifest: which Parquet files make up each collection, each collection's property schema, and the
//! WAL sequence number through which everything is in those files.
//!
//! With one node it is one JSON file in the data directory, replaced atomically (write a temp file, fsync, rename,
//! fsync the directory), so after a crash it is either the old or the new version, never a mix. What
//! start-up does with files the manifest does not list, or lists but cannot read, is in `recovery`; WAL
//! records with sequence numbers above `flushed_sequence` are replayed. With several nodes the same JSON is
//! the checkpoint stored in the metadata database (`shared`).

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::{self, Write};
use std::path::Path;

use keyhole_model::ValueKind;
use serde::{Deserialize, Serialize};

use crate::wal::sync_directory;

pub(crate) const MANIFEST_FILE: &str = "manifest.json";
const MANIFEST_TEMP_FILE: &str = "manifest.json.tmp";

/// A collection is identified by its project and name.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct CollectionId {
    /// The project's id.
    pub project: String,
    /// The collection's name.
    pub collection: String,
}

/// One Parquet file of a collection, covering one UTC day of event time.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DataFile {
    /// Path inside the object store.
    pub path: String,
    /// The UTC day of `keen.timestamp` the file holds (`YYYY-MM-DD`).
    pub day: String,
    /// The earliest `keen.timestamp` in the file.
    pub min_timestamp_millis: i64,
    /// The latest `keen.timestamp` in the file.
    pub max_timestamp_millis: i64,
    /// Rows in the file.
    pub rows: usize,
    /// The file's size in bytes.
    pub bytes: usize,
}

/// Per property path: every kind it has held, and the kind of the most recently written value.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PropertySchema {
    /// Every JSON kind the property has held (one column each).
    pub kinds: BTreeSet<ValueKind>,
    /// The kind of its most recently written value.
    pub latest: ValueKind,
}

/// A collection's schema: property path → its kinds.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct CollectionSchema {
    /// Each property path's kinds.
    pub properties: BTreeMap<String, PropertySchema>,
}

impl CollectionSchema {
    /// Records that `path` held a value of `kind`.
    pub fn record(&mut self, path: &str, kind: ValueKind) {
        // Looked up by `&str` first: the writer records every property of every event, and allocating the
        // path each time showed in the ingest profile.
        match self.properties.get_mut(path) {
            Some(property) => {
                property.kinds.insert(kind);
                property.latest = kind;
            }
            None => {
                self.properties.insert(
                    path.to_string(),
                    PropertySchema {
                        kinds: BTreeSet::from([kind]),
                        latest: kind,
                    },
                );
            }
        }
    }

    /// Every physical `{path}#{kind}` column the collection has.
    pub(crate) fn column_names(&self) -> Vec<String> {
        self.properties
            .iter()
            .flat_map(|(path, property)| {
                property
                    .kinds
                    .iter()
                    .map(move |kind| kind.column_name(path))
            })
            .collect()
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct CollectionManifest {
    pub id: CollectionId,
    pub schema: CollectionSchema,
    pub files: Vec<DataFile>,
}

/// The manifest format this version writes and the newest it reads. Format 0 (no `version` field) is
/// read as format 1: they differ only in the field.
pub const MANIFEST_FORMAT: u32 = 1;

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct Manifest {
    /// The format that wrote it (0 when absent: written before the field existed).
    #[serde(default)]
    pub version: u32,
    pub flushed_sequence: u64,
    pub collections: Vec<CollectionManifest>,
}

impl Manifest {
    pub(crate) fn load(directory: &Path) -> io::Result<Manifest> {
        let path = directory.join(MANIFEST_FILE);
        if !path.exists() {
            return Ok(Manifest::default());
        }
        Manifest::from_json(&fs::read(&path)?)
    }

    /// Parses a manifest's JSON, refusing a format newer than this version reads.
    pub(crate) fn from_json(bytes: &[u8]) -> io::Result<Manifest> {
        let manifest: Manifest = serde_json::from_slice(bytes)
            .map_err(|error| io::Error::new(io::ErrorKind::InvalidData, error))?;
        if manifest.version > MANIFEST_FORMAT {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "it is format {}, written by a newer keyhole; this version reads up to format {MANIFEST_FORMAT}",
                    manifest.version
                ),
            ));
        }
        Ok(manifest)
    }

    /// The manifest's JSON, marked with the format this version writes.
    pub(crate) fn to_json(&self) -> String {
        let current = Manifest {
            version: MANIFEST_FORMAT,
            ..self.clone()
        };
        serde_json::to_string_pretty(&current).expect("manifest serializes")
    }

    pub(crate) fn store(&self, directory: &Path) -> io::Result<()> {
        let temp_path = directory.join(MANIFEST_TEMP_FILE);
        let mut file = fs::File::create(&temp_path)?;
        file.write_all(self.to_json().as_bytes())?;
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
            version: 0,
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
        assert_eq!(loaded.version, MANIFEST_FORMAT);
        assert_eq!(
            loaded,
            Manifest {
                version: MANIFEST_FORMAT,
                ..manifest.clone()
            }
        );
        // A newer format, or a value kind this version does not know, is refused, not misread.
        let newer = serde_json::json!({"version": MANIFEST_FORMAT + 1, "flushed_sequence": 0, "collections": []});
        fs::write(directory.path().join(MANIFEST_FILE), newer.to_string()).unwrap();
        assert!(Manifest::load(directory.path()).is_err());
        let unknown_kind = serde_json::json!({"flushed_sequence": 0, "collections": [{"id": {"project": "p", "collection": "c"},
            "schema": {"properties": {"x": {"kinds": ["decimal"], "latest": "decimal"}}}, "files": []}]});
        fs::write(
            directory.path().join(MANIFEST_FILE),
            unknown_kind.to_string(),
        )
        .unwrap();
        assert!(Manifest::load(directory.path()).is_err());
        assert_eq!(
            loaded.collections[0].schema.column_names(),
            ["price#num", "price#str"]
        );
        assert_eq!(
            loaded.collections[0].schema.properties["price"].latest,
            ValueKind::Str
        );
    }
}
