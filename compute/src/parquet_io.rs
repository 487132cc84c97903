//! Datasets on disk: Arrow record batches to Parquet (zstd) and back, batch by batch.

use std::fs::File;
use std::path::{Path, PathBuf};

use arrow::array::{RecordBatch, RecordBatchOptions};
use arrow::datatypes::{Schema, SchemaRef};
use parquet::arrow::arrow_reader::{ParquetRecordBatchReader, ParquetRecordBatchReaderBuilder};
use parquet::arrow::{ArrowWriter, ProjectionMask};
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;
use parquet::schema::types::ColumnPath;

use crate::error::{Error, Result};
use crate::store::{ColumnInfo, ObjectData};

/// Rows per record batch when reading: large enough to amortise per-batch costs, small enough
/// that one batch of a wide table stays a few MiB.
pub const READ_BATCH_ROWS: usize = 65_536;
/// Rows per Parquet row group: a streaming reader holds about one row group's pages.
const ROW_GROUP_ROWS: usize = 131_072;

pub fn columns_of(schema: &Schema) -> Vec<ColumnInfo> {
    schema
        .fields()
        .iter()
        .map(|f| ColumnInfo {
            name: f.name().clone(),
            data_type: f.data_type().to_string(),
            nullable: f.is_nullable(),
        })
        .collect()
}

/// Writes one dataset version to a staging file.
pub struct ParquetStager {
    path: PathBuf,
    writer: Option<ArrowWriter<File>>,
    schema: SchemaRef,
    rows: u64,
}

impl ParquetStager {
    pub fn create(path: PathBuf, schema: SchemaRef) -> Result<Self> {
        let mut props = WriterProperties::builder()
            .set_compression(Compression::ZSTD(
                ZstdLevel::try_new(1).expect("valid zstd level"),
            ))
            .set_max_row_group_row_count(Some(ROW_GROUP_ROWS));
        // Floating-point columns rarely repeat: a dictionary attempt costs a third of a store's
        // CPU before the writer gives up on it (profile in docs/benchmarks.md).
        for f in schema
            .fields()
            .iter()
            .filter(|f| f.data_type().is_floating())
        {
            props = props.set_column_dictionary_enabled(ColumnPath::from(f.name().as_str()), false);
        }
        let props = props.build();
        let file = File::create(&path)?;
        let writer = ArrowWriter::try_new(file, schema.clone(), Some(props)).map_err(|e| {
            let _ = std::fs::remove_file(&path);
            Error::InvalidArgument(format!(
                "this Arrow schema cannot be stored as Parquet: {e}"
            ))
        })?;
        Ok(Self {
            path,
            writer: Some(writer),
            schema,
            rows: 0,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    pub fn rows(&self) -> u64 {
        self.rows
    }

    pub fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        let writer = self.writer.as_mut().expect("writer open until finish");
        writer.write(batch).map_err(|e| {
            disk_error(&e).unwrap_or_else(|| {
                Error::InvalidArgument(format!("cannot store this batch as Parquet: {e}"))
            })
        })?;
        self.rows += batch.num_rows() as u64;
        Ok(())
    }

    /// Write the footer; the file is then complete and ready to commit (the store makes it
    /// durable as it takes it).
    pub fn finish(mut self) -> Result<(PathBuf, u64)> {
        let writer = self.writer.take().expect("writer open until finish");
        writer.close().map_err(|e| {
            disk_error(&e).unwrap_or_else(|| Error::internal("finishing Parquet", e))
        })?;
        Ok((std::mem::take(&mut self.path), self.rows))
    }
}

/// The error of a Parquet write that the disk caused (full, failing), if it was the disk.
fn disk_error(e: &parquet::errors::ParquetError) -> Option<Error> {
    match e {
        parquet::errors::ParquetError::External(inner) => {
            inner.downcast_ref::<std::io::Error>().map(Error::storage)
        }
        _ => None,
    }
}

impl Drop for ParquetStager {
    /// An unfinished staging file is garbage.
    fn drop(&mut self) {
        if self.writer.is_some() {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// A batch-by-batch reader over a stored version, projected to `columns` (in that order).
pub struct ParquetBatches {
    reader: ParquetRecordBatchReader,
    /// Reorders the projected columns (Parquet returns them in file order).
    order: Option<Vec<usize>>,
    schema: SchemaRef,
}

impl ParquetBatches {
    pub fn open(data: &ObjectData, columns: &[String]) -> Result<Self> {
        match data {
            ObjectData::File(p) => Self::build(
                ParquetRecordBatchReaderBuilder::try_new(File::open(p)?),
                columns,
            ),
            ObjectData::Temp(p) => {
                let file = File::open(p)?;
                let _ = std::fs::remove_file(p); // ours alone: gone once this read ends
                Self::build(ParquetRecordBatchReaderBuilder::try_new(file), columns)
            }
            ObjectData::Bytes(b) => {
                Self::build(ParquetRecordBatchReaderBuilder::try_new(b.clone()), columns)
            }
        }
    }

    fn build<T: parquet::file::reader::ChunkReader + 'static>(
        builder: parquet::errors::Result<ParquetRecordBatchReaderBuilder<T>>,
        columns: &[String],
    ) -> Result<Self> {
        let builder = builder
            .map_err(|e| Error::internal("opening stored Parquet", e))?
            .with_batch_size(READ_BATCH_ROWS);
        let (indices, order) = projection(builder.schema(), columns)?;
        let builder = match &indices {
            Some(idx) => {
                let mask = ProjectionMask::roots(builder.parquet_schema(), idx.iter().copied());
                builder.with_projection(mask)
            }
            None => builder,
        };
        // The stored Arrow schema, with the schema-level metadata the reader's batches lack
        // (pandas keeps its index and dtypes there).
        let schema = match &indices {
            Some(idx) => std::sync::Arc::new(
                builder
                    .schema()
                    .project(idx)
                    .map_err(|e| Error::internal("projecting", e))?,
            ),
            None => builder.schema().clone(),
        };
        let reader = builder
            .build()
            .map_err(|e| Error::internal("reading stored Parquet", e))?;
        Ok(Self {
            reader,
            order,
            schema,
        })
    }

    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }
}

impl Iterator for ParquetBatches {
    type Item = Result<RecordBatch>;

    fn next(&mut self) -> Option<Self::Item> {
        let batch = self.reader.next()?;
        Some(
            batch
                .map_err(|e| Error::internal("reading stored Parquet", e))
                .and_then(|b| match &self.order {
                    Some(ord) => b.project(ord).map_err(|e| Error::internal("projecting", e)),
                    None => Ok(b),
                })
                .and_then(|b| {
                    let rows = RecordBatchOptions::new().with_row_count(Some(b.num_rows()));
                    RecordBatch::try_new_with_options(
                        self.schema.clone(),
                        b.columns().to_vec(),
                        &rows,
                    )
                    .map_err(|e| Error::internal("reading stored Parquet", e))
                }),
        )
    }
}

/// Column names -> (root indices to read, order to put them in). `None`s: all columns as stored.
#[allow(clippy::type_complexity)]
pub fn projection(
    schema: &Schema,
    columns: &[String],
) -> Result<(Option<Vec<usize>>, Option<Vec<usize>>)> {
    if columns.is_empty() {
        return Ok((None, None));
    }
    let mut indices = Vec::with_capacity(columns.len());
    for c in columns {
        let i = schema.index_of(c).map_err(|_| {
            let have: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
            Error::InvalidArgument(format!(
                "no column {c:?} in this dataset; its columns are {have:?}"
            ))
        })?;
        if indices.contains(&i) {
            return Err(Error::InvalidArgument(format!(
                "column {c:?} is requested twice"
            )));
        }
        indices.push(i);
    }
    let mut sorted = indices.clone();
    sorted.sort_unstable();
    let order = indices
        .iter()
        .map(|i| sorted.binary_search(i).expect("present"))
        .collect();
    Ok((Some(indices), Some(order)))
}
