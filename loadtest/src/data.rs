//! Synthetic datasets, encoded once as an Arrow IPC stream so that a store call measures the
//! server and the wire, not the encoder.

use std::sync::Arc;

use anyhow::Result;
use arrow::array::{ArrayRef, Float64Array, Int64Array};
use arrow::datatypes::{DataType, Field, Schema};
use arrow::ipc::writer::StreamWriter;
use arrow::record_batch::RecordBatch;
use bytes::Bytes;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use crate::scenario::Datasets;

pub fn schema(columns: usize) -> Arc<Schema> {
    let fields = (0..columns)
        .map(|i| match i {
            0 => Field::new("k", DataType::Int64, false),
            i if i % 2 == 1 => Field::new(format!("c{i}"), DataType::Float64, false),
            i => Field::new(format!("c{i}"), DataType::Int64, false),
        })
        .collect::<Vec<_>>();
    Arc::new(Schema::new(fields))
}

/// Dataset `index` of the scenario as one IPC stream (deterministic for a seed).
pub fn encode_dataset(spec: &Datasets, index: usize) -> Result<Bytes> {
    let schema = schema(spec.columns);
    let mut rng = SmallRng::seed_from_u64(spec.seed.wrapping_add(index as u64));
    let mut out = Vec::with_capacity(spec.rows * spec.columns * 8 + 4096);
    {
        let mut writer = StreamWriter::try_new(&mut out, &schema)?;
        let mut done = 0;
        while done < spec.rows || (spec.rows == 0 && done == 0) {
            let n = spec.batch_rows.min(spec.rows - done);
            let columns: Vec<ArrayRef> = schema
                .fields()
                .iter()
                .enumerate()
                .map(|(i, f)| -> ArrayRef {
                    match (i, f.data_type()) {
                        (0, _) => Arc::new(Int64Array::from_iter_values(
                            (0..n).map(|_| rng.random_range(0..spec.key_cardinality.max(1))),
                        )),
                        (_, DataType::Float64) => Arc::new(Float64Array::from_iter_values(
                            (0..n).map(|_| rng.random::<f64>() * 1000.0),
                        )),
                        _ => Arc::new(Int64Array::from_iter_values(
                            (0..n).map(|_| rng.random_range(0..1_000_000_000i64)),
                        )),
                    }
                })
                .collect();
            writer.write(&RecordBatch::try_new(schema.clone(), columns)?)?;
            done += n;
            if n == 0 {
                break;
            }
        }
        writer.finish()?;
    }
    Ok(Bytes::from(out))
}
