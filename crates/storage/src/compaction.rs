//! Merging a day's data files into one with memory bounded independently of the day's size: an external
//! sort. The files are read row group by row group (by range, `parquet_reader`) in batches of a bounded
//! byte size; rows gather into a run until the run holds [`MergeMemory::run_bytes`], then the run is
//! sorted (clustering properties, then time: `flush::sort_rows`) and spilled to a temporary Arrow IPC file
//! under `<data dir>/tmp/`. The runs are then merged k-way (arrow's row format for comparisons, a binary
//! heap over the runs' current rows), reading each run one small batch at a time, and written as Parquet
//! to a local file whose row groups are closed at [`MergeMemory::row_group_bytes`]; that file is moved or
//! uploaded into the store without being held in memory (`ObjectFiles::put_file_durable`). A day that fits
//! in one run is sorted in memory and written directly, with no spill.
//!
//! Reading, sorting and writing run on a blocking thread (`on_blocking_thread`), never on the request
//! workers.
//!
//! Memory: at most a run and its sorted copy (two to three times `run_bytes` while it is sorted), or, while
//! merging, one batch per run (the batch size is chosen so all runs' batches together take about
//! `run_bytes`) plus the output row group being encoded. The caller reserves it from the memory budget's
//! `Compaction` share.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fs::File;
use std::io::{self, BufReader, BufWriter};
use std::path::{Path, PathBuf};

use arrow::array::{Array, RecordBatch, TimestampMillisecondArray};
use arrow::compute::{concat_batches, interleave_record_batch};
use arrow::datatypes::SchemaRef;
use arrow::ipc::reader::FileReader;
use arrow::ipc::writer::FileWriter;
use arrow::row::{OwnedRow, RowConverter, Rows, SortField};
use futures::StreamExt;
use futures::future::BoxFuture;
use keyhole_model::flat::TIMESTAMP_COLUMN;
use parquet::arrow::ArrowWriter;

use crate::columns::conform_batch;
use crate::flush::{ROW_ORDER, order_columns, sort_rows, writer_properties};
use crate::manifest::DataFile;
use crate::objects::ObjectFiles;
use crate::parquet_reader::{batch_stream, decoded_bytes, stream_builder};
use crate::row_edit::RowEdit;

/// How a merge may use memory.
#[derive(Clone, Copy, Debug)]
pub(crate) struct MergeMemory {
    /// Rows gathered before they are sorted and spilled as one run.
    pub run_bytes: usize,
    /// Decoded bytes per batch read from a data file.
    pub read_batch_bytes: usize,
    /// A Parquet row group of the output is closed once its encoded data reaches this.
    pub row_group_bytes: usize,
}

impl MergeMemory {
    /// Limits that keep a merge within `bytes` (see the module docs for the factors).
    pub(crate) fn within(bytes: usize) -> MergeMemory {
        MergeMemory {
            run_bytes: (bytes / 4).max(1024 * 1024),
            read_batch_bytes: (bytes / 32).clamp(64 * 1024, 4 * 1024 * 1024),
            row_group_bytes: (bytes / 8).clamp(1024 * 1024, 64 * 1024 * 1024),
        }
    }
}

/// A merged day file, written locally and ready to be stored.
pub(crate) struct MergedFile {
    pub local_path: PathBuf,
    /// Sorted runs spilled to disk (0: the day was sorted in memory).
    pub spilled_runs: usize,
    pub rows: usize,
    pub min_timestamp_millis: i64,
    pub max_timestamp_millis: i64,
}

/// A directory removed with everything in it when dropped.
pub(crate) struct SpillDirectory(PathBuf);

impl SpillDirectory {
    /// A fresh directory under `<data dir>/tmp/`.
    pub(crate) fn create(data_dir: &Path) -> io::Result<SpillDirectory> {
        let mut random = [0u8; 8];
        rand::fill(&mut random);
        let path = tmp_dir(data_dir).join(format!("merge-{:016x}", u64::from_be_bytes(random)));
        std::fs::create_dir_all(&path)?;
        Ok(SpillDirectory(path))
    }

    pub(crate) fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for SpillDirectory {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Where merges spill; whatever a crash left there is removed at start-up ([`clear_tmp`]).
pub(crate) fn tmp_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("tmp")
}

/// Removes what interrupted merges left behind.
pub(crate) fn clear_tmp(data_dir: &Path) -> io::Result<()> {
    match std::fs::remove_dir_all(tmp_dir(data_dir)) {
        Err(error) if error.kind() != io::ErrorKind::NotFound => Err(error),
        _ => Ok(()),
    }
}

/// Called now and then during a merge (after each spilled run, and about every
/// [`BETWEEN_WORK_INTERVAL`] while merging): a merge holds the maintenance lock for as long as a large day
/// takes, so the engine uses it to flush the event buffer when it fills, instead of refusing writes until
/// the merge ends.
pub(crate) type BetweenWork =
    std::sync::Arc<dyn Fn() -> BoxFuture<'static, io::Result<()>> + Send + Sync>;

/// How often a merge calls its [`BetweenWork`] at most.
pub(crate) const BETWEEN_WORK_INTERVAL: std::time::Duration = std::time::Duration::from_millis(100);

/// Runs `work` on a blocking thread, driving its I/O with the current runtime: decoding Parquet,
/// sorting and encoding are CPU work the request workers must not wait behind.
async fn on_blocking_thread<T: Send + 'static>(
    work: impl std::future::Future<Output = io::Result<T>> + Send + 'static,
) -> io::Result<T> {
    let runtime = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || runtime.block_on(work))
        .await
        .map_err(io::Error::other)?
}

/// Merges `files` (one collection's day) into one Parquet file under `spill`, every batch conformed to
/// `schema` and rows ordered by `cluster_by` then time. `None` when the files hold no rows.
pub(crate) async fn merge_files(
    objects: &ObjectFiles,
    files: &[DataFile],
    schema: &SchemaRef,
    cluster_by: &[String],
    memory: MergeMemory,
    spill: &SpillDirectory,
    between: BetweenWork,
) -> io::Result<Option<MergedFile>> {
    let (objects, files, schema) = (objects.clone(), files.to_vec(), schema.clone());
    let (cluster_by, spill_path) = (cluster_by.to_vec(), spill.path().to_path_buf());
    on_blocking_thread(async move {
        // Every footer first: they say how many runs the day makes, so how small each run's batches
        // must be for all of them to fit the merge at once.
        let mut builders = Vec::with_capacity(files.len());
        for file in &files {
            builders.push(
                stream_builder(&objects, file)
                    .await
                    .map_err(io::Error::other)?,
            );
        }
        let day_bytes: u64 = builders
            .iter()
            .map(|builder| decoded_bytes(builder.metadata()))
            .sum();
        let runs_expected = day_bytes as usize / memory.run_bytes.max(1) + 1;
        let spill_batch_bytes = (memory.run_bytes / runs_expected).max(16 * 1024);
        let mut runs: Vec<PathBuf> = Vec::new();
        let mut pending: Vec<RecordBatch> = Vec::new();
        let mut pending_bytes = 0usize;
        for builder in builders {
            let mut stream =
                batch_stream(builder, memory.read_batch_bytes).map_err(io::Error::other)?;
            while let Some(batch) = stream.next().await {
                let batch = conform_batch(&batch.map_err(io::Error::other)?, &schema);
                pending_bytes += batch.get_array_memory_size();
                pending.push(batch);
                if pending_bytes >= memory.run_bytes {
                    let run_path = spill_path.join(format!("run-{}.arrow", runs.len()));
                    let batches = std::mem::take(&mut pending);
                    spill_run(&batches, &schema, &cluster_by, &run_path, spill_batch_bytes)?;
                    runs.push(run_path);
                    pending_bytes = 0;
                    between().await?;
                }
            }
        }
        let output = spill_path.join("merged.parquet");
        let mut writer = DayWriter::create(&output, &schema, memory.row_group_bytes)?;
        if runs.is_empty() {
            // The whole day fits in one run: sort it in memory, no spill.
            if pending.is_empty() {
                return Ok(None);
            }
            let sorted = sort_rows(&concat(&pending, &schema)?, &cluster_by);
            drop(pending);
            let row_bytes = sorted.get_array_memory_size() / sorted.num_rows().max(1);
            for slice in byte_slices(&sorted, memory.read_batch_bytes) {
                writer.write(&slice, slice.num_rows() * row_bytes)?;
            }
        } else {
            if !pending.is_empty() {
                let run_path = spill_path.join(format!("run-{}.arrow", runs.len()));
                spill_run(&pending, &schema, &cluster_by, &run_path, spill_batch_bytes)?;
                runs.push(run_path);
                drop(pending);
            }
            let order = order_columns(&schema, &cluster_by);
            merge_runs(&runs, &schema, &order, &mut writer, memory, &between).await?;
        }
        writer.finish(output, runs.len())
    })
    .await
}

/// Rewrites one data file without what `edit` removes, streaming: read in batches of a bounded byte size, each kept batch written at once to a
/// local Parquet file under `spill`. The rows keep their order. Answers what was removed and the new file
/// (`None` when nothing was removed, or nothing is left).
pub(crate) async fn rewrite_file(
    objects: &ObjectFiles,
    file: &DataFile,
    memory: MergeMemory,
    spill: &SpillDirectory,
    edit: RowEdit,
) -> io::Result<(usize, Option<MergedFile>)> {
    let (objects, file) = (objects.clone(), file.clone());
    let output = spill.path().join("rewritten.parquet");
    on_blocking_thread(async move {
        let builder = stream_builder(&objects, &file)
            .await
            .map_err(io::Error::other)?;
        let mut stream =
            batch_stream(builder, memory.read_batch_bytes).map_err(io::Error::other)?;
        let mut writer: Option<DayWriter> = None;
        let mut removed = 0;
        while let Some(batch) = stream.next().await {
            let (kept, gone) = edit.apply(&batch.map_err(io::Error::other)?);
            removed += gone;
            if kept.num_rows() == 0 {
                continue;
            }
            let writer = match &mut writer {
                Some(writer) => writer,
                None => writer.insert(DayWriter::create(
                    &output,
                    &kept.schema(),
                    memory.row_group_bytes,
                )?),
            };
            writer.write(&kept, kept.get_array_memory_size())?;
        }
        match (removed, writer) {
            (0, _) => Ok((0, None)),
            (_, None) => Ok((removed, None)),
            (_, Some(writer)) => Ok((removed, writer.finish(output, 0)?)),
        }
    })
    .await
}

fn concat(batches: &[RecordBatch], schema: &SchemaRef) -> io::Result<RecordBatch> {
    concat_batches(schema, batches).map_err(io::Error::other)
}

/// Slices of `batch` of about `target_bytes` each.
fn byte_slices(batch: &RecordBatch, target_bytes: usize) -> Vec<RecordBatch> {
    let rows = batch.num_rows();
    if rows == 0 {
        return Vec::new();
    }
    let row_bytes = (batch.get_array_memory_size() / rows).max(1);
    let step = (target_bytes / row_bytes).clamp(1, 8192);
    (0..rows)
        .step_by(step)
        .map(|start| batch.slice(start, step.min(rows - start)))
        .collect()
}

/// Sorts one run and writes it as an Arrow IPC file in batches of about `batch_bytes`.
fn spill_run(
    batches: &[RecordBatch],
    schema: &SchemaRef,
    cluster_by: &[String],
    path: &Path,
    batch_bytes: usize,
) -> io::Result<()> {
    let sorted = sort_rows(&concat(batches, schema)?, cluster_by);
    let file = BufWriter::new(File::create(path)?);
    let mut writer = FileWriter::try_new(file, schema).map_err(io::Error::other)?;
    for slice in byte_slices(&sorted, batch_bytes) {
        // A slice is written compactly (only its rows' bytes), so each batch read back is small.
        writer.write(&slice).map_err(io::Error::other)?;
    }
    writer.finish().map_err(io::Error::other)?;
    Ok(())
}

/// One run being merged: its reader, current batch, that batch's rows in comparable form, and the
/// next row to take.
struct RunCursor {
    reader: FileReader<BufReader<File>>,
    batch: RecordBatch,
    rows: Rows,
    position: usize,
}

impl RunCursor {
    /// Loads the next non-empty batch; false when the run is exhausted.
    fn advance_batch(&mut self, converter: &RowConverter, order: &[usize]) -> io::Result<bool> {
        for batch in self.reader.by_ref() {
            let batch = batch.map_err(io::Error::other)?;
            if batch.num_rows() == 0 {
                continue;
            }
            self.rows = order_rows(converter, &batch, order)?;
            self.batch = batch;
            self.position = 0;
            return Ok(true);
        }
        Ok(false)
    }
}

fn order_rows(converter: &RowConverter, batch: &RecordBatch, order: &[usize]) -> io::Result<Rows> {
    let columns: Vec<_> = order
        .iter()
        .map(|&index| batch.column(index).clone())
        .collect();
    converter
        .convert_columns(&columns)
        .map_err(io::Error::other)
}

/// Merges sorted runs into `writer`, in order (async only to await `between`: it runs on the merge's
/// blocking thread).
async fn merge_runs(
    runs: &[PathBuf],
    schema: &SchemaRef,
    order: &[String],
    writer: &mut DayWriter,
    memory: MergeMemory,
    between: &BetweenWork,
) -> io::Result<()> {
    let order: Vec<usize> = order
        .iter()
        .map(|name| schema.index_of(name).map_err(io::Error::other))
        .collect::<io::Result<_>>()?;
    let converter = RowConverter::new(
        order
            .iter()
            .map(|&index| {
                SortField::new_with_options(schema.field(index).data_type().clone(), ROW_ORDER)
            })
            .collect(),
    )
    .map_err(io::Error::other)?;
    let mut cursors: Vec<RunCursor> = Vec::with_capacity(runs.len());
    let mut heap: BinaryHeap<Reverse<(OwnedRow, usize)>> = BinaryHeap::new();
    for path in runs {
        let reader = FileReader::try_new(BufReader::new(File::open(path)?), None)
            .map_err(io::Error::other)?;
        let empty = RecordBatch::new_empty(schema.clone());
        let mut cursor = RunCursor {
            reader,
            rows: order_rows(&converter, &empty, &order)?,
            batch: empty,
            position: 0,
        };
        if cursor.advance_batch(&converter, &order)? {
            heap.push(Reverse((cursor.rows.row(0).owned(), cursors.len())));
        }
        cursors.push(cursor);
    }
    let output_rows = output_batch_rows(&cursors, memory.read_batch_bytes);
    let mut taken: Vec<(usize, usize)> = Vec::with_capacity(output_rows);
    let mut last_between = std::time::Instant::now();
    while let Some(Reverse((_, run))) = heap.pop() {
        if last_between.elapsed() >= BETWEEN_WORK_INTERVAL {
            between().await?;
            last_between = std::time::Instant::now();
        }
        let cursor = &mut cursors[run];
        taken.push((run, cursor.position));
        cursor.position += 1;
        if cursor.position < cursor.batch.num_rows() {
            heap.push(Reverse((cursor.rows.row(cursor.position).owned(), run)));
            if taken.len() >= output_rows {
                emit(&cursors, &mut taken, writer)?;
            }
            continue;
        }
        // The run's batch is used up: what was taken from it goes out before the batch is replaced.
        emit(&cursors, &mut taken, writer)?;
        let cursor = &mut cursors[run];
        if cursor.advance_batch(&converter, &order)? {
            heap.push(Reverse((cursor.rows.row(0).owned(), run)));
        }
    }
    emit(&cursors, &mut taken, writer)
}

/// Output rows per batch, from the runs' first batches' row width.
fn output_batch_rows(cursors: &[RunCursor], target_bytes: usize) -> usize {
    let (bytes, rows) = cursors.iter().fold((0, 0), |(bytes, rows), cursor| {
        (
            bytes + cursor.batch.get_array_memory_size(),
            rows + cursor.batch.num_rows(),
        )
    });
    if rows == 0 {
        return 8192;
    }
    (target_bytes / (bytes / rows).max(1)).clamp(1, 8192)
}

fn emit(
    cursors: &[RunCursor],
    taken: &mut Vec<(usize, usize)>,
    writer: &mut DayWriter,
) -> io::Result<()> {
    if taken.is_empty() {
        return Ok(());
    }
    let batches: Vec<&RecordBatch> = cursors.iter().map(|cursor| &cursor.batch).collect();
    let merged = interleave_record_batch(&batches, taken).map_err(io::Error::other)?;
    taken.clear();
    writer.write(&merged, merged.get_array_memory_size())
}

/// The output Parquet file, with row groups closed by encoded size, and what the manifest needs of it.
struct DayWriter {
    writer: ArrowWriter<BufWriter<File>>,
    row_group_bytes: usize,
    /// Decoded bytes written into the row group in progress: a row group is closed by these as well as
    /// by its encoded size, since repeated long strings encode to almost nothing and a reader decodes
    /// them whole.
    row_group_decoded_bytes: usize,
    rows: usize,
    min_timestamp_millis: Option<i64>,
    max_timestamp_millis: Option<i64>,
}

impl DayWriter {
    fn create(path: &Path, schema: &SchemaRef, row_group_bytes: usize) -> io::Result<DayWriter> {
        let file = BufWriter::new(File::create(path)?);
        let writer = ArrowWriter::try_new(file, schema.clone(), Some(writer_properties(schema)))
            .map_err(io::Error::other)?;
        Ok(DayWriter {
            writer,
            row_group_bytes,
            row_group_decoded_bytes: 0,
            rows: 0,
            min_timestamp_millis: None,
            max_timestamp_millis: None,
        })
    }

    /// Writes `batch`, whose rows decode to about `decoded_bytes`.
    fn write(&mut self, batch: &RecordBatch, decoded_bytes: usize) -> io::Result<()> {
        if let Some(times) = batch
            .column_by_name(TIMESTAMP_COLUMN)
            .and_then(|column| column.as_any().downcast_ref::<TimestampMillisecondArray>())
        {
            for time in times.iter().flatten() {
                self.min_timestamp_millis =
                    Some(self.min_timestamp_millis.map_or(time, |m| m.min(time)));
                self.max_timestamp_millis =
                    Some(self.max_timestamp_millis.map_or(time, |m| m.max(time)));
            }
        }
        self.rows += batch.num_rows();
        self.writer.write(batch).map_err(io::Error::other)?;
        self.row_group_decoded_bytes += decoded_bytes;
        if self.writer.in_progress_size() >= self.row_group_bytes
            || self.row_group_decoded_bytes >= self.row_group_bytes
        {
            self.writer.flush().map_err(io::Error::other)?;
            self.row_group_decoded_bytes = 0;
        }
        Ok(())
    }

    fn finish(self, path: PathBuf, spilled_runs: usize) -> io::Result<Option<MergedFile>> {
        let file = self.writer.into_inner().map_err(io::Error::other)?;
        let file = file
            .into_inner()
            .map_err(std::io::IntoInnerError::into_error)?;
        file.sync_all()?;
        if self.rows == 0 {
            return Ok(None);
        }
        Ok(Some(MergedFile {
            local_path: path,
            spilled_runs,
            rows: self.rows,
            min_timestamp_millis: self.min_timestamp_millis.unwrap_or_default(),
            max_timestamp_millis: self.max_timestamp_millis.unwrap_or_default(),
        }))
    }
}
