//! Flight SQL's metadata commands (SqlInfo, type info, catalogs, schemas, tables, keys) and the
//! catalog as plain Flight lists it (ListFlights).

use std::str::FromStr;
use std::sync::{Arc, LazyLock};

use arrow::array::RecordBatch;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_flight::sql::metadata::{
    SqlInfoData, SqlInfoDataBuilder, XdbcTypeInfo, XdbcTypeInfoData, XdbcTypeInfoDataBuilder,
};
use arrow_flight::sql::{
    CommandGetTables, Nullable, Searchable, SqlInfo, SqlNullOrdering, SqlSupportedCaseSensitivity,
    SqlSupportedTransaction, XdbcDataType,
};
use arrow_flight::{
    FlightData, FlightDescriptor, FlightEndpoint, FlightInfo, IpcMessage, SchemaAsIpc, Ticket,
};
use futures::TryStreamExt;
use polarway_access::Access;
use tonic::{Response, Status};

use super::{Stream_, CATALOG, DB_SCHEMA};
use crate::error::{Error, Result};
use crate::service::Worker;
use crate::store::Manifest;

/// A FlightInfo whose one endpoint's ticket is the command itself (as JDBC and ADBC expect for
/// metadata commands: the Any-packed command, redeemed by DoGet on this same connection).
pub fn command_info(
    schema: &Schema,
    desc: FlightDescriptor,
) -> std::result::Result<Response<FlightInfo>, Status> {
    let endpoint = FlightEndpoint::new().with_ticket(Ticket::new(desc.cmd.clone()));
    let info = FlightInfo::new()
        .try_with_schema(schema)
        .map_err(|e| Status::internal(e.to_string()))?
        .with_endpoint(endpoint)
        .with_descriptor(desc);
    Ok(Response::new(info))
}

/// One batch as a DoGet stream.
pub fn batch_stream<E: std::fmt::Display>(
    batch: std::result::Result<RecordBatch, E>,
) -> std::result::Result<Response<Stream_<FlightData>>, Status> {
    let batch = batch.map_err(|e| Status::internal(e.to_string()))?;
    let stream = FlightDataEncoderBuilder::new()
        .with_schema(batch.schema())
        .build(futures::stream::iter([Ok(batch)]))
        .map_err(Status::from);
    Ok(Response::new(Box::pin(stream)))
}

/// An Arrow schema as the IPC message Flight carries.
pub fn schema_bytes(schema: &Schema) -> std::result::Result<bytes::Bytes, Status> {
    let options = arrow::ipc::writer::IpcWriteOptions::default();
    let message: std::result::Result<IpcMessage, _> = SchemaAsIpc::new(schema, &options).try_into();
    message
        .map(|IpcMessage(b)| b)
        .map_err(|e: arrow::error::ArrowError| Status::internal(e.to_string()))
}

static SQL_INFO: LazyLock<SqlInfoData> = LazyLock::new(|| {
    let mut b = SqlInfoDataBuilder::new();
    b.append(SqlInfo::FlightSqlServerName, "Polarway");
    b.append(SqlInfo::FlightSqlServerVersion, env!("CARGO_PKG_VERSION"));
    b.append(SqlInfo::FlightSqlServerArrowVersion, "1.5");
    // Datasets are written by ingest and DoPut; SQL itself only reads.
    b.append(SqlInfo::FlightSqlServerReadOnly, false);
    b.append(SqlInfo::FlightSqlServerSql, true);
    b.append(SqlInfo::FlightSqlServerSubstrait, false);
    b.append(
        SqlInfo::FlightSqlServerTransaction,
        SqlSupportedTransaction::None as i32,
    );
    b.append(SqlInfo::FlightSqlServerCancel, true);
    b.append(SqlInfo::FlightSqlServerBulkIngestion, true);
    b.append(SqlInfo::FlightSqlServerIngestTransactionsSupported, false);
    b.append(SqlInfo::SqlDdlCatalog, false);
    b.append(SqlInfo::SqlDdlSchema, false);
    b.append(SqlInfo::SqlDdlTable, false);
    b.append(
        SqlInfo::SqlIdentifierCase,
        SqlSupportedCaseSensitivity::SqlCaseSensitivityCaseInsensitive as i32,
    );
    b.append(SqlInfo::SqlIdentifierQuoteChar, "\"");
    b.append(
        SqlInfo::SqlQuotedIdentifierCase,
        SqlSupportedCaseSensitivity::SqlCaseSensitivityCaseInsensitive as i32,
    );
    b.append(SqlInfo::SqlAllTablesAreSelectable, true);
    b.append(
        SqlInfo::SqlNullOrdering,
        SqlNullOrdering::SqlNullsSortedAtEnd as i32,
    );
    b.append(SqlInfo::SqlSearchStringEscape, "\\");
    b.append(SqlInfo::SqlSupportsColumnAliasing, true);
    b.append(SqlInfo::SqlNullPlusNullIsNull, true);
    b.append(SqlInfo::SqlSupportsExpressionsInOrderBy, true);
    b.build().expect("static SqlInfo builds")
});

pub fn sql_info() -> &'static SqlInfoData {
    &SQL_INFO
}

/// The types DuckDB offers, as JDBC's getTypeInfo and ADBC describe them.
static XDBC_TYPES: LazyLock<XdbcTypeInfoData> = LazyLock::new(|| {
    let mut b = XdbcTypeInfoDataBuilder::new();
    let types: &[(&str, XdbcDataType, Option<i32>, Option<&str>)] = &[
        ("BOOLEAN", XdbcDataType::XdbcBit, Some(1), None),
        ("TINYINT", XdbcDataType::XdbcTinyint, Some(3), None),
        ("SMALLINT", XdbcDataType::XdbcSmallint, Some(5), None),
        ("INTEGER", XdbcDataType::XdbcInteger, Some(10), None),
        ("BIGINT", XdbcDataType::XdbcBigint, Some(19), None),
        ("FLOAT", XdbcDataType::XdbcFloat, Some(24), None),
        ("DOUBLE", XdbcDataType::XdbcDouble, Some(53), None),
        ("DECIMAL", XdbcDataType::XdbcDecimal, Some(38), None),
        ("VARCHAR", XdbcDataType::XdbcVarchar, None, Some("'")),
        ("BLOB", XdbcDataType::XdbcVarbinary, None, Some("'")),
        ("DATE", XdbcDataType::XdbcDate, Some(10), Some("'")),
        ("TIME", XdbcDataType::XdbcTime, Some(15), Some("'")),
        (
            "TIMESTAMP",
            XdbcDataType::XdbcTimestamp,
            Some(26),
            Some("'"),
        ),
    ];
    for (name, ty, size, quote) in types {
        b.append(XdbcTypeInfo {
            type_name: name.to_string(),
            data_type: *ty,
            column_size: *size,
            literal_prefix: quote.map(str::to_string),
            literal_suffix: quote.map(str::to_string),
            create_params: None,
            nullable: Nullable::NullabilityNullable,
            case_sensitive: *name == "VARCHAR",
            searchable: Searchable::Full,
            unsigned_attribute: size.map(|_| false),
            fixed_prec_scale: false,
            auto_increment: Some(false),
            local_type_name: Some(name.to_string()),
            minimum_scale: None,
            maximum_scale: None,
            sql_data_type: *ty,
            datetime_subcode: None,
            num_prec_radix: size.map(|_| 10),
            interval_precision: None,
        });
    }
    b.build().expect("static type info builds")
});

pub fn xdbc_types() -> &'static XdbcTypeInfoData {
    &XDBC_TYPES
}

/// CommandGetPrimaryKeys' result schema (datasets have no keys, so it is always empty).
pub fn primary_keys_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("catalog_name", DataType::Utf8, true),
        Field::new("db_schema_name", DataType::Utf8, true),
        Field::new("table_name", DataType::Utf8, false),
        Field::new("column_name", DataType::Utf8, false),
        Field::new("key_name", DataType::Utf8, true),
        Field::new("key_sequence", DataType::Int32, false),
    ]))
}

/// The result schema of the foreign-key commands (always empty).
pub fn foreign_keys_schema() -> SchemaRef {
    let utf8 = |n: &str, null: bool| Field::new(n, DataType::Utf8, null);
    Arc::new(Schema::new(vec![
        utf8("pk_catalog_name", true),
        utf8("pk_db_schema_name", true),
        utf8("pk_table_name", false),
        utf8("pk_column_name", false),
        utf8("fk_catalog_name", true),
        utf8("fk_db_schema_name", true),
        utf8("fk_table_name", false),
        utf8("fk_column_name", false),
        Field::new("key_sequence", DataType::Int32, false),
        utf8("fk_key_name", true),
        utf8("pk_key_name", true),
        Field::new("update_rule", DataType::UInt8, false),
        Field::new("delete_rule", DataType::UInt8, false),
    ]))
}

/// The Arrow schema of a stored version: from its manifest, else (a type the manifest's text
/// cannot say exactly) from its data.
pub async fn dataset_schema(w: &Arc<Worker>, m: &Manifest) -> Result<SchemaRef> {
    let parsed: Option<Vec<Field>> = m
        .columns
        .iter()
        .map(|c| {
            DataType::from_str(&c.data_type)
                .ok()
                .map(|t| Field::new(&c.name, t, c.nullable))
        })
        .collect();
    if let Some(fields) = parsed {
        return Ok(Arc::new(Schema::new(fields)));
    }
    let opened =
        crate::service::load::open(w, &Access::everything(), &m.name, Some(m.version), vec![])
            .await?;
    Ok(opened.schema().clone())
}

/// A listed dataset's columns, for a caller who may also Describe it (as the native List, which
/// names datasets without their columns); an empty schema otherwise.
async fn schema_for(w: &Arc<Worker>, access: &Access, m: &Manifest) -> Result<SchemaRef> {
    match access.allows("Describe", &m.name) {
        true => dataset_schema(w, m).await,
        false => Ok(Arc::new(Schema::empty())),
    }
}

/// The datasets `access` may list, latest versions, by name.
async fn listed(w: &Worker, access: &Access) -> Result<Vec<Manifest>> {
    let mut out = Vec::new();
    for name in w.catalog.names().await? {
        if !access.allows("List", &name) {
            continue;
        }
        match w.catalog.latest(&name).await {
            Ok(m) => out.push(m),
            Err(Error::NotFound(_)) => {} // deleted meanwhile
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}

pub async fn tables(
    w: &Arc<Worker>,
    access: &Access,
    query: CommandGetTables,
) -> Result<RecordBatch> {
    let include_schema = query.include_schema;
    let mut builder = query.into_builder();
    for m in listed(w, access).await? {
        let schema = match include_schema {
            true => schema_for(w, access, &m).await?,
            false => Arc::new(Schema::empty()),
        };
        builder
            .append(CATALOG, DB_SCHEMA, &m.name, "TABLE", &schema)
            .map_err(|e| Error::internal("listing tables", e))?;
    }
    builder
        .build()
        .map_err(|e| Error::internal("listing tables", e))
}

/// Every dataset the caller may list, as a FlightInfo with a PATH descriptor and a ticket.
pub async fn list_flights(w: &Arc<Worker>, access: &Access) -> Result<Vec<FlightInfo>> {
    let mut out = Vec::new();
    for m in listed(w, access).await? {
        let schema = schema_for(w, access, &m).await?;
        let desc = FlightDescriptor::new_path(vec![m.name.clone(), format!("v{}", m.version)]);
        out.push(
            FlightInfo::new()
                .try_with_schema(&schema)
                .map_err(|e| Error::internal("encoding a schema", e))?
                .with_descriptor(desc)
                .with_total_records(m.rows as i64)
                .with_total_bytes(m.bytes as i64),
        );
    }
    Ok(out)
}
