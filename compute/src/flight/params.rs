//! Bound parameters of prepared statements: the one-row Arrow batch a client sends, kept as IPC
//! bytes in the handle, and turned into DuckDB values when the statement runs.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use arrow::datatypes::*;
use duckdb::types::{TimeUnit as DuckUnit, Value};

use crate::error::{Error, Result};
use crate::sql::gate::ParamHint;

/// The IPC stream bytes of a parameter batch (exactly one row).
pub fn to_ipc(batch: &RecordBatch) -> Result<Vec<u8>> {
    if batch.num_rows() != 1 {
        return Err(Error::InvalidArgument(format!(
            "bind exactly one row of parameters per execution (got {} rows); execute once per row",
            batch.num_rows()
        )));
    }
    let mut out = Vec::new();
    let mut writer = arrow::ipc::writer::StreamWriter::try_new(&mut out, &batch.schema())
        .map_err(|e| Error::internal("encoding parameters", e))?;
    writer
        .write(batch)
        .and_then(|_| writer.finish())
        .map_err(|e| Error::internal("encoding parameters", e))?;
    drop(writer);
    Ok(out)
}

/// The values of a parameter batch encoded by `to_ipc`, in column order.
pub fn values(ipc: &[u8]) -> Result<Vec<Value>> {
    let reader = arrow::ipc::reader::StreamReader::try_new(std::io::Cursor::new(ipc), None)
        .map_err(|e| Error::internal("decoding parameters", e))?;
    let mut out = Vec::new();
    for batch in reader {
        let batch = batch.map_err(|e| Error::internal("decoding parameters", e))?;
        for (field, column) in batch.schema().fields().iter().zip(batch.columns()) {
            out.push(value(column, 0).map_err(|e| {
                Error::InvalidArgument(format!("parameter {:?}: {e}", field.name()))
            })?);
        }
    }
    Ok(out)
}

fn value(array: &ArrayRef, row: usize) -> std::result::Result<Value, String> {
    if array.is_null(row) {
        return Ok(Value::Null);
    }
    let unit = |u: &TimeUnit| match u {
        TimeUnit::Second => DuckUnit::Second,
        TimeUnit::Millisecond => DuckUnit::Millisecond,
        TimeUnit::Microsecond => DuckUnit::Microsecond,
        TimeUnit::Nanosecond => DuckUnit::Nanosecond,
    };
    Ok(match array.data_type() {
        DataType::Null => Value::Null,
        DataType::Boolean => Value::Boolean(array.as_boolean().value(row)),
        DataType::Int8 => Value::TinyInt(array.as_primitive::<Int8Type>().value(row)),
        DataType::Int16 => Value::SmallInt(array.as_primitive::<Int16Type>().value(row)),
        DataType::Int32 => Value::Int(array.as_primitive::<Int32Type>().value(row)),
        DataType::Int64 => Value::BigInt(array.as_primitive::<Int64Type>().value(row)),
        DataType::UInt8 => Value::UTinyInt(array.as_primitive::<UInt8Type>().value(row)),
        DataType::UInt16 => Value::USmallInt(array.as_primitive::<UInt16Type>().value(row)),
        DataType::UInt32 => Value::UInt(array.as_primitive::<UInt32Type>().value(row)),
        DataType::UInt64 => Value::UBigInt(array.as_primitive::<UInt64Type>().value(row)),
        DataType::Float32 => Value::Float(array.as_primitive::<Float32Type>().value(row)),
        DataType::Float64 => Value::Double(array.as_primitive::<Float64Type>().value(row)),
        DataType::Utf8 => Value::Text(array.as_string::<i32>().value(row).to_string()),
        DataType::LargeUtf8 => Value::Text(array.as_string::<i64>().value(row).to_string()),
        DataType::Utf8View => Value::Text(array.as_string_view().value(row).to_string()),
        DataType::Binary => Value::Blob(array.as_binary::<i32>().value(row).to_vec()),
        DataType::LargeBinary => Value::Blob(array.as_binary::<i64>().value(row).to_vec()),
        DataType::BinaryView => Value::Blob(array.as_binary_view().value(row).to_vec()),
        DataType::Date32 => Value::Date32(array.as_primitive::<Date32Type>().value(row)),
        DataType::Date64 => Value::Date32(
            (array.as_primitive::<Date64Type>().value(row) / 86_400_000) as i32,
        ),
        DataType::Timestamp(u, _) => {
            let v = match u {
                TimeUnit::Second => array.as_primitive::<TimestampSecondType>().value(row),
                TimeUnit::Millisecond => {
                    array.as_primitive::<TimestampMillisecondType>().value(row)
                }
                TimeUnit::Microsecond => {
                    array.as_primitive::<TimestampMicrosecondType>().value(row)
                }
                TimeUnit::Nanosecond => array.as_primitive::<TimestampNanosecondType>().value(row),
            };
            Value::Timestamp(unit(u), v)
        }
        DataType::Time64(TimeUnit::Microsecond) => Value::Time64(
            DuckUnit::Microsecond,
            array.as_primitive::<Time64MicrosecondType>().value(row),
        ),
        DataType::Time64(TimeUnit::Nanosecond) => Value::Time64(
            DuckUnit::Nanosecond,
            array.as_primitive::<Time64NanosecondType>().value(row),
        ),
        // A dense or sparse union (what some drivers send for untyped parameters): its member.
        DataType::Union(_, _) => {
            let u = array.as_union();
            let child = u.child(u.type_id(row));
            value(child, u.value_offset(row))?
        }
        DataType::Dictionary(_, _) => {
            let d = array.as_any_dictionary();
            let key = d.normalized_keys()[row];
            value(&Arc::clone(d.values()), key)?
        }
        other => {
            return Err(format!(
                "values of type {other} cannot be bound; send booleans, numbers, strings, binary, dates, times or timestamps"
            ))
        }
    })
}

/// The Arrow type to announce for a parameter: the type of the column it is compared with (among
/// `columns`, the read datasets' columns, if the name is unambiguous), the type it is cast to, or a
/// string, which DuckDB casts to whatever the query needs.
pub fn param_type(hint: &ParamHint, columns: &[(String, DataType)]) -> DataType {
    match hint {
        ParamHint::Column(name) => {
            let mut types = columns
                .iter()
                .filter(|(c, _)| c.eq_ignore_ascii_case(name))
                .map(|(_, t)| t);
            match types.next() {
                Some(first) if types.all(|t| t == first) => first.clone(),
                _ => DataType::Utf8,
            }
        }
        ParamHint::Type(id) => duckdb_to_arrow(id),
        ParamHint::Unknown => DataType::Utf8,
    }
}

/// The Arrow type of a DuckDB type name, for the types a cast commonly names.
fn duckdb_to_arrow(duckdb_type: &str) -> DataType {
    match duckdb_type {
        "BOOLEAN" => DataType::Boolean,
        "TINYINT" => DataType::Int8,
        "SMALLINT" => DataType::Int16,
        "INTEGER" => DataType::Int32,
        "BIGINT" => DataType::Int64,
        "UTINYINT" => DataType::UInt8,
        "USMALLINT" => DataType::UInt16,
        "UINTEGER" => DataType::UInt32,
        "UBIGINT" => DataType::UInt64,
        "FLOAT" => DataType::Float32,
        "DOUBLE" => DataType::Float64,
        "DATE" => DataType::Date32,
        "TIME" => DataType::Time64(TimeUnit::Microsecond),
        "TIMESTAMP" => DataType::Timestamp(TimeUnit::Microsecond, None),
        "TIMESTAMP_NS" => DataType::Timestamp(TimeUnit::Nanosecond, None),
        "TIMESTAMP_MS" => DataType::Timestamp(TimeUnit::Millisecond, None),
        "TIMESTAMP_S" => DataType::Timestamp(TimeUnit::Second, None),
        "TIMESTAMP WITH TIME ZONE" => {
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
        }
        "BLOB" => DataType::Binary,
        _ => DataType::Utf8,
    }
}

/// The parameter schema of a statement whose parameters have `types`, in order.
pub fn schema(types: &[DataType]) -> Schema {
    Schema::new(
        types
            .iter()
            .enumerate()
            .map(|(i, t)| Field::new(format!("${}", i + 1), t.clone(), true))
            .collect::<Vec<_>>(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int64Array, StringArray};

    #[test]
    fn one_row_round_trip() {
        let batch = RecordBatch::try_from_iter([
            ("a", Arc::new(Int64Array::from(vec![7])) as ArrayRef),
            (
                "b",
                Arc::new(StringArray::from(vec![Some("x")])) as ArrayRef,
            ),
            (
                "c",
                Arc::new(StringArray::from(vec![None::<&str>])) as ArrayRef,
            ),
        ])
        .unwrap();
        let v = values(&to_ipc(&batch).unwrap()).unwrap();
        assert_eq!(v, [Value::BigInt(7), Value::Text("x".into()), Value::Null]);
        let two =
            RecordBatch::try_from_iter([("a", Arc::new(Int64Array::from(vec![1, 2])) as ArrayRef)])
                .unwrap();
        assert!(matches!(to_ipc(&two), Err(Error::InvalidArgument(_))));
    }

    #[test]
    fn announced_types() {
        let cols = [
            ("id".to_string(), DataType::Int32),
            (
                "ts".to_string(),
                DataType::Timestamp(TimeUnit::Nanosecond, None),
            ),
            ("k".to_string(), DataType::Int64),
            ("K".to_string(), DataType::Utf8),
        ];
        let t = |h: ParamHint| param_type(&h, &cols);
        assert_eq!(t(ParamHint::Column("ID".into())), DataType::Int32);
        assert_eq!(t(ParamHint::Column("ts".into())), cols[1].1);
        // Ambiguous (two tables, two types) or unknown: a string.
        assert_eq!(t(ParamHint::Column("k".into())), DataType::Utf8);
        assert_eq!(t(ParamHint::Column("nope".into())), DataType::Utf8);
        assert_eq!(t(ParamHint::Type("BIGINT".into())), DataType::Int64);
        assert_eq!(t(ParamHint::Unknown), DataType::Utf8);
    }
}
