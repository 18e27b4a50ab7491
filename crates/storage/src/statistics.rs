//! Answers that the data files' own statistics give without reading their rows: the smallest and largest
//! value of a number column, from each Parquet row group's min/max (written by `flush`) and the in-memory
//! rows. The query layer uses it for plain `minimum`/`maximum` queries.

use arrow::array::{Array, Float64Array};
use parquet::file::metadata::{FooterTail, ParquetMetaData, ParquetMetaDataReader};
use parquet::file::statistics::Statistics;

use crate::config::Result;
use crate::manifest::DataFile;
use crate::objects::ObjectFiles;
use crate::snapshot::CollectionSnapshot;

/// The smallest and largest value of the Float64 column `column` in a collection `snapshot`, from file
/// statistics and memory; `None` when there is no value, or when a file holding the column has a row
/// group without statistics for it (the caller then scans).
pub(crate) async fn number_range(
    objects: &ObjectFiles,
    snapshot: &CollectionSnapshot,
    column: &str,
) -> Result<Option<(f64, f64)>> {
    let mut range: Option<(f64, f64)> = None;
    let mut widen = |low: f64, high: f64| {
        range = Some(match range {
            Some((min, max)) => (min.min(low), max.max(high)),
            None => (low, high),
        });
    };
    for file in &snapshot.files {
        let metadata = footer(objects, file).await?;
        for row_group in metadata.row_groups() {
            let Some(chunk) = row_group
                .columns()
                .iter()
                .find(|chunk| chunk.column_path().string() == column)
            else {
                continue;
            };
            match chunk.statistics() {
                Some(Statistics::Double(stats)) => {
                    if let (Some(low), Some(high)) = (stats.min_opt(), stats.max_opt()) {
                        widen(*low, *high);
                    } else if stats.null_count_opt() != Some(row_group.num_rows() as u64) {
                        return Ok(None);
                    }
                }
                _ => return Ok(None),
            }
        }
    }
    for batch in &snapshot.memory {
        let Some(values) = batch
            .column_by_name(column)
            .and_then(|column| column.as_any().downcast_ref::<Float64Array>())
        else {
            continue;
        };
        if let (Some(low), Some(high)) = (arrow::compute::min(values), arrow::compute::max(values))
        {
            widen(low, high);
        }
    }
    Ok(range)
}

/// A data file's Parquet footer, read by range (the last 8 bytes give its length): a file that is not
/// in the file cache is not read whole for its statistics.
async fn footer(objects: &ObjectFiles, file: &DataFile) -> Result<ParquetMetaData> {
    let size = file.bytes as u64;
    let invalid = |message: String| std::io::Error::new(std::io::ErrorKind::InvalidData, message);
    if size < 8 {
        return Err(invalid(format!("{} is too short for Parquet", file.path)).into());
    }
    let tail = objects.get_range(&file.path, size - 8..size).await?;
    let tail: [u8; 8] = tail[..]
        .try_into()
        .map_err(|_| invalid(format!("{}: short read of the footer", file.path)))?;
    let footer_length = FooterTail::try_new(&tail)
        .map_err(std::io::Error::other)?
        .metadata_length() as u64;
    if footer_length + 8 > size {
        return Err(invalid(format!("{}: footer longer than the file", file.path)).into());
    }
    let footer = objects
        .get_range(&file.path, size - 8 - footer_length..size - 8)
        .await?;
    Ok(ParquetMetaDataReader::decode_metadata(&footer).map_err(std::io::Error::other)?)
}
