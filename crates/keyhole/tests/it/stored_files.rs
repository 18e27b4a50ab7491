//! What a data directory holds, read the way a test checks that something is gone: the string values of
//! every Parquet file, and the raw bytes of the event store's other files (the write-ahead log, the
//! manifest).

use std::path::{Path, PathBuf};

fn files_under(directory: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let Ok(entries) = std::fs::read_dir(directory) else {
        return files;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            files.extend(files_under(&path));
        } else {
            files.push(path);
        }
    }
    files
}

/// Whether any string value of the Parquet file contains `needle` (a file deleted meanwhile holds nothing).
fn parquet_file_contains(path: &Path, needle: &str) -> bool {
    use arrow::array::{Array, StringArray};
    let Ok(file) = std::fs::File::open(path) else {
        return false;
    };
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
        .unwrap()
        .build()
        .unwrap();
    for batch in reader {
        let batch = batch.unwrap();
        for column in batch.columns() {
            let Ok(text) = arrow::compute::cast(column, &arrow::datatypes::DataType::Utf8) else {
                continue;
            };
            let text = text.as_any().downcast_ref::<StringArray>().unwrap();
            if (0..text.len()).any(|row| !text.is_null(row) && text.value(row).contains(needle)) {
                return true;
            }
        }
    }
    false
}

pub fn parquet_files_containing(directory: &Path, needle: &str) -> Vec<PathBuf> {
    files_under(directory)
        .into_iter()
        .filter(|path| {
            path.extension()
                .is_some_and(|extension| extension == "parquet")
        })
        .filter(|path| parquet_file_contains(path, needle))
        .collect()
}

/// Other files of the event store (the write-ahead log, the manifest) holding `needle` as raw bytes.
pub fn other_event_files_containing(directory: &Path, needle: &str) -> Vec<PathBuf> {
    files_under(directory)
        .into_iter()
        .filter(|path| {
            path.extension()
                .is_none_or(|extension| extension != "parquet")
        })
        .filter(|path| {
            std::fs::read(path).is_ok_and(|bytes| {
                bytes
                    .windows(needle.len())
                    .any(|window| window == needle.as_bytes())
            })
        })
        .collect()
}
