//! Uploads: DoPut of a PATH descriptor and Flight SQL's bulk ingest, written batch by batch to a
//! staged Parquet file (as Store does) and committed as a dataset version.

use super::*;

impl FlightSql {
    /// A Store from a Flight upload: the batches of `stream` as a new version of `name`.
    pub(super) async fn put(
        &self,
        name: &str,
        access: &Access,
        condition: Condition,
        append: bool,
        stream: PeekableFlightDataStream,
    ) -> Result<(crate::store::Manifest, u64)> {
        validate_name(name)?;
        access.check("Store", name)?;
        // Messages with only app_metadata never reach the decoder, which takes every message for
        // an IPC one.
        let data = stream.filter_map(|item| async move {
            match item {
                Ok(d) if d.data_header.is_empty() => None,
                other => Some(other.map_err(FlightError::from)),
            }
        });
        let mut messages = FlightDataDecoder::new(data);
        let max = self.w.max_upload_bytes;
        let (mut total, mut rows) = (0u64, 0u64);
        let mut schema: Option<SchemaRef> = None;
        let mut stager: Option<store::BatchStager> = None;
        let mut condition = condition;
        let received: Result<()> = async {
            loop {
                // Arrow's reader panics on some malformed messages instead of returning an error
                // (see ipc.rs): that is the caller's bad input, not the worker's failure.
                let next = crate::panics::quietly_async(messages.next())
                    .await
                    .ok_or_else(|| {
                        Error::InvalidArgument(
                            "the uploaded Arrow data is invalid: a message's buffers lie outside its body".into(),
                        )
                    })?;
                let Some(message) = next else { break };
                let message = message.map_err(|e| match e {
                    FlightError::Tonic(s) => Error::Status(*s),
                    other => Error::InvalidArgument(format!(
                        "the uploaded Arrow data is invalid: {other}"
                    )),
                })?;
                let batch = match message.payload {
                    DecodedPayload::Schema(s) => {
                        schema = Some(s);
                        continue;
                    }
                    DecodedPayload::RecordBatch(batch) => batch,
                    DecodedPayload::None => continue,
                };
                total += batch.get_array_memory_size() as u64;
                if total > max {
                    return Err(Error::ResourceExhausted(format!(
                        "the upload exceeds the server's {max} byte limit (--max-upload-bytes)"
                    )));
                }
                if stager.is_none() {
                    let (s, c) = self
                        .start_stager(name, access, batch.schema(), condition, append)
                        .await?;
                    stager = Some(s);
                    condition = c;
                }
                rows += batch.num_rows() as u64;
                stager.as_ref().expect("started").write(batch).await?;
            }
            Ok(())
        }
        .await;
        if let Err(e) = received {
            if let Some(s) = stager {
                if let Some(inner) = s.abort().await {
                    return Err(inner);
                }
            }
            return Err(e);
        }
        let stager = match stager {
            Some(s) => s,
            // No batch: the schema alone (an empty dataset).
            None => {
                let schema = schema.ok_or_else(|| {
                    Error::InvalidArgument("the upload carried no Arrow schema".into())
                })?;
                let (s, c) = self
                    .start_stager(name, access, schema, condition, append)
                    .await?;
                condition = c;
                s
            }
        };
        let staged = stager.finish(name.to_string(), condition).await?;
        let m = store::commit_one(&self.w, staged).await?;
        self.w.metrics.rows_received("Store", m.rows);
        Ok((m, rows))
    }

    /// The writer for an upload; an append starts with the current version's rows and commits
    /// only if that version is still the latest.
    async fn start_stager(
        &self,
        name: &str,
        access: &Access,
        schema: SchemaRef,
        condition: Condition,
        append: bool,
    ) -> Result<(store::BatchStager, Condition)> {
        if !append {
            return Ok((
                store::BatchStager::start(self.w.clone(), schema, None)?,
                condition,
            ));
        }
        let current = match condition {
            Condition::IfVersion(v) => Some(v),
            _ => None,
        };
        match load::open(&self.w, &access.clone(), name, current, vec![]).await {
            Ok(old) => {
                if let Condition::IfAbsent = condition {
                    return Err(Error::AlreadyExists(format!(
                        "dataset {name:?} already exists"
                    )));
                }
                let version = old.manifest.version;
                let stager = store::BatchStager::start(self.w.clone(), schema, Some(old))?;
                Ok((stager, Condition::IfVersion(version)))
            }
            Err(Error::NotFound(_)) if current.is_none() => Ok((
                store::BatchStager::start(self.w.clone(), schema, None)?,
                Condition::IfAbsent,
            )),
            Err(e) => Err(e),
        }
    }

    /// DoPut of a PATH descriptor: the upload becomes the dataset's next version (`[name, "v3"]`
    /// or `x-polarway-if-version: 3`: only if 3 is still its latest version).
    pub(super) async fn path_put(
        &self,
        desc: FlightDescriptor,
        request: Request<PeekableFlightDataStream>,
    ) -> std::result::Result<Response<Stream_<PutResult>>, Status> {
        let (_admitted, access) = self.admit(request.metadata(), Some("Store")).await?;
        let run = async {
            let (name, version) = path_target(&desc)?;
            let condition = match version {
                Some(v) => Condition::IfVersion(v),
                None => match if_version(request.metadata(), &HashMap::new())? {
                    Some(v) => Condition::IfVersion(v),
                    None => Condition::Always,
                },
            };
            self.put(&name, &access, condition, false, request.into_inner())
                .await
        };
        let (m, _) = run.await.map_err(|e| self.denied("Store", e))?;
        tracing::info!(dataset = ?m.name, version = m.version, rows = m.rows, "stored by DoPut");
        let meta = serde_json::json!({"name": m.name, "version": m.version, "rows": m.rows});
        Ok(Response::new(Box::pin(futures::stream::iter(vec![Ok(
            PutResult {
                app_metadata: meta.to_string().into(),
            },
        )]))))
    }
}

/// A version condition from the `x-polarway-if-version` call header or the ingest option.
pub(super) fn if_version(
    md: &MetadataMap,
    options: &HashMap<String, String>,
) -> Result<Option<u64>> {
    let text = options.get(IF_VERSION_OPTION).cloned().or_else(|| {
        md.get(IF_VERSION_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    });
    match text {
        None => Ok(None),
        Some(t) => t.trim().parse::<u64>().map(Some).map_err(|_| {
            Error::InvalidArgument(format!(
                "{IF_VERSION_OPTION} (or {IF_VERSION_HEADER}) must be a version number, not {t:?}"
            ))
        }),
    }
}
