//! Flight SQL's commands, each mapped onto the worker's own steps (admission, the SQL gate and
//! sandbox, the loader, uploads) under the Polarway method it amounts to.

use super::*;

#[tonic::async_trait]
impl FlightSqlService for FlightSql {
    type FlightService = FlightSql;

    async fn do_handshake(
        &self,
        request: Request<Streaming<HandshakeRequest>>,
    ) -> std::result::Result<Response<Stream_<HandshakeResponse>>, Status> {
        handshake(&self.w, request).await
    }

    async fn get_flight_info_statement(
        &self,
        query: CommandStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> std::result::Result<Response<FlightInfo>, Status> {
        if query.transaction_id.is_some() {
            return Err(Status::unimplemented(
                "transactions are not supported: every query reads a consistent snapshot on its own",
            ));
        }
        self.sql_info(query.query, None, request).await
    }

    async fn get_flight_info_substrait_plan(
        &self,
        _query: CommandStatementSubstraitPlan,
        _request: Request<FlightDescriptor>,
    ) -> std::result::Result<Response<FlightInfo>, Status> {
        Err(Status::unimplemented(
            "Substrait plans are not supported; send SQL",
        ))
    }

    async fn get_flight_info_prepared_statement(
        &self,
        cmd: CommandPreparedStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> std::result::Result<Response<FlightInfo>, Status> {
        let (admitted, access) = self.admit(request.metadata(), Some("Query")).await?;
        let claims = self
            .signer
            .open(&cmd.prepared_statement_handle, access.who())
            .map_err(|e| self.denied("Query", e))?;
        drop(admitted);
        match claims.what {
            What::Sql { sql, params } => self.sql_info(sql, params, request).await,
            What::Load { .. } => Err(Status::invalid_argument(
                "this handle is not a prepared statement",
            )),
        }
    }

    async fn get_flight_info_catalogs(
        &self,
        query: CommandGetCatalogs,
        request: Request<FlightDescriptor>,
    ) -> std::result::Result<Response<FlightInfo>, Status> {
        self.admit(request.metadata(), None).await?;
        let schema = query.into_builder().schema();
        metadata::command_info(&schema, request.into_inner())
    }

    async fn get_flight_info_schemas(
        &self,
        query: CommandGetDbSchemas,
        request: Request<FlightDescriptor>,
    ) -> std::result::Result<Response<FlightInfo>, Status> {
        self.admit(request.metadata(), None).await?;
        let schema = query.into_builder().schema();
        metadata::command_info(&schema, request.into_inner())
    }

    async fn get_flight_info_tables(
        &self,
        query: CommandGetTables,
        request: Request<FlightDescriptor>,
    ) -> std::result::Result<Response<FlightInfo>, Status> {
        self.admit(request.metadata(), Some("List")).await?;
        let schema = query.into_builder().schema();
        metadata::command_info(&schema, request.into_inner())
    }

    async fn get_flight_info_table_types(
        &self,
        query: CommandGetTableTypes,
        request: Request<FlightDescriptor>,
    ) -> std::result::Result<Response<FlightInfo>, Status> {
        self.admit(request.metadata(), None).await?;
        let schema = query.into_builder().schema();
        metadata::command_info(&schema, request.into_inner())
    }

    async fn get_flight_info_sql_info(
        &self,
        query: CommandGetSqlInfo,
        request: Request<FlightDescriptor>,
    ) -> std::result::Result<Response<FlightInfo>, Status> {
        self.admit(request.metadata(), None).await?;
        let schema = query.into_builder(metadata::sql_info()).schema();
        metadata::command_info(&schema, request.into_inner())
    }

    async fn get_flight_info_primary_keys(
        &self,
        _query: CommandGetPrimaryKeys,
        request: Request<FlightDescriptor>,
    ) -> std::result::Result<Response<FlightInfo>, Status> {
        self.admit(request.metadata(), None).await?;
        metadata::command_info(&metadata::primary_keys_schema(), request.into_inner())
    }

    async fn get_flight_info_exported_keys(
        &self,
        _query: CommandGetExportedKeys,
        request: Request<FlightDescriptor>,
    ) -> std::result::Result<Response<FlightInfo>, Status> {
        self.admit(request.metadata(), None).await?;
        metadata::command_info(&metadata::foreign_keys_schema(), request.into_inner())
    }

    async fn get_flight_info_imported_keys(
        &self,
        _query: CommandGetImportedKeys,
        request: Request<FlightDescriptor>,
    ) -> std::result::Result<Response<FlightInfo>, Status> {
        self.admit(request.metadata(), None).await?;
        metadata::command_info(&metadata::foreign_keys_schema(), request.into_inner())
    }

    async fn get_flight_info_cross_reference(
        &self,
        _query: CommandGetCrossReference,
        request: Request<FlightDescriptor>,
    ) -> std::result::Result<Response<FlightInfo>, Status> {
        self.admit(request.metadata(), None).await?;
        metadata::command_info(&metadata::foreign_keys_schema(), request.into_inner())
    }

    async fn get_flight_info_xdbc_type_info(
        &self,
        query: CommandGetXdbcTypeInfo,
        request: Request<FlightDescriptor>,
    ) -> std::result::Result<Response<FlightInfo>, Status> {
        self.admit(request.metadata(), None).await?;
        let schema = query.into_builder(metadata::xdbc_types()).schema();
        metadata::command_info(&schema, request.into_inner())
    }

    async fn do_get_statement(
        &self,
        ticket: TicketStatementQuery,
        request: Request<Ticket>,
    ) -> std::result::Result<Response<Stream_<FlightData>>, Status> {
        // `grpc.rs` serves DoGet without copying bodies together; this is the path through tonic.
        let stream = self
            .redeem(&ticket.statement_handle, request.metadata())
            .await?;
        Ok(Response::new(Box::pin(
            stream.map_ok(Wire::into_flight_data),
        )))
    }

    async fn do_get_prepared_statement(
        &self,
        _query: CommandPreparedStatementQuery,
        _request: Request<Ticket>,
    ) -> std::result::Result<Response<Stream_<FlightData>>, Status> {
        Err(Status::invalid_argument(
            "call GetFlightInfo with the prepared statement first and DoGet its endpoint's ticket",
        ))
    }

    async fn do_get_catalogs(
        &self,
        query: CommandGetCatalogs,
        request: Request<Ticket>,
    ) -> std::result::Result<Response<Stream_<FlightData>>, Status> {
        self.admit(request.metadata(), None).await?;
        let mut builder = query.into_builder();
        builder.append(CATALOG);
        metadata::batch_stream(builder.build())
    }

    async fn do_get_schemas(
        &self,
        query: CommandGetDbSchemas,
        request: Request<Ticket>,
    ) -> std::result::Result<Response<Stream_<FlightData>>, Status> {
        self.admit(request.metadata(), None).await?;
        let mut builder = query.into_builder();
        builder.append(CATALOG, DB_SCHEMA);
        metadata::batch_stream(builder.build())
    }

    async fn do_get_tables(
        &self,
        query: CommandGetTables,
        request: Request<Ticket>,
    ) -> std::result::Result<Response<Stream_<FlightData>>, Status> {
        let (_admitted, access) = self.admit(request.metadata(), Some("List")).await?;
        let batch = metadata::tables(&self.w, &access, query)
            .await
            .map_err(|e| self.denied("List", e))?;
        metadata::batch_stream(Ok::<_, Status>(batch))
    }

    async fn do_get_table_types(
        &self,
        query: CommandGetTableTypes,
        request: Request<Ticket>,
    ) -> std::result::Result<Response<Stream_<FlightData>>, Status> {
        self.admit(request.metadata(), None).await?;
        let mut builder = query.into_builder();
        builder.append("TABLE");
        metadata::batch_stream(builder.build())
    }

    async fn do_get_sql_info(
        &self,
        query: CommandGetSqlInfo,
        request: Request<Ticket>,
    ) -> std::result::Result<Response<Stream_<FlightData>>, Status> {
        self.admit(request.metadata(), None).await?;
        metadata::batch_stream(query.into_builder(metadata::sql_info()).build())
    }

    async fn do_get_primary_keys(
        &self,
        _query: CommandGetPrimaryKeys,
        request: Request<Ticket>,
    ) -> std::result::Result<Response<Stream_<FlightData>>, Status> {
        self.admit(request.metadata(), None).await?;
        metadata::batch_stream(Ok::<_, Status>(arrow::array::RecordBatch::new_empty(
            metadata::primary_keys_schema(),
        )))
    }

    async fn do_get_exported_keys(
        &self,
        _query: CommandGetExportedKeys,
        request: Request<Ticket>,
    ) -> std::result::Result<Response<Stream_<FlightData>>, Status> {
        self.admit(request.metadata(), None).await?;
        metadata::batch_stream(Ok::<_, Status>(arrow::array::RecordBatch::new_empty(
            metadata::foreign_keys_schema(),
        )))
    }

    async fn do_get_imported_keys(
        &self,
        _query: CommandGetImportedKeys,
        request: Request<Ticket>,
    ) -> std::result::Result<Response<Stream_<FlightData>>, Status> {
        self.admit(request.metadata(), None).await?;
        metadata::batch_stream(Ok::<_, Status>(arrow::array::RecordBatch::new_empty(
            metadata::foreign_keys_schema(),
        )))
    }

    async fn do_get_cross_reference(
        &self,
        _query: CommandGetCrossReference,
        request: Request<Ticket>,
    ) -> std::result::Result<Response<Stream_<FlightData>>, Status> {
        self.admit(request.metadata(), None).await?;
        metadata::batch_stream(Ok::<_, Status>(arrow::array::RecordBatch::new_empty(
            metadata::foreign_keys_schema(),
        )))
    }

    async fn do_get_xdbc_type_info(
        &self,
        query: CommandGetXdbcTypeInfo,
        request: Request<Ticket>,
    ) -> std::result::Result<Response<Stream_<FlightData>>, Status> {
        self.admit(request.metadata(), None).await?;
        metadata::batch_stream(query.into_builder(metadata::xdbc_types()).build())
    }

    async fn do_put_statement_update(
        &self,
        _ticket: CommandStatementUpdate,
        _request: Request<PeekableFlightDataStream>,
    ) -> std::result::Result<i64, Status> {
        Err(Status::invalid_argument(
            "statements that change data (DDL/DML) are not run: datasets are written with DoPut or bulk ingest (adbc_ingest), and SQL is read-only",
        ))
    }

    async fn do_put_prepared_statement_update(
        &self,
        _query: CommandPreparedStatementUpdate,
        _request: Request<PeekableFlightDataStream>,
    ) -> std::result::Result<i64, Status> {
        Err(Status::invalid_argument(
            "statements that change data (DDL/DML) are not run: datasets are written with DoPut or bulk ingest (adbc_ingest), and SQL is read-only",
        ))
    }

    async fn do_put_substrait_plan(
        &self,
        _query: CommandStatementSubstraitPlan,
        _request: Request<PeekableFlightDataStream>,
    ) -> std::result::Result<i64, Status> {
        Err(Status::unimplemented(
            "Substrait plans are not supported; send SQL",
        ))
    }

    async fn do_put_statement_ingest(
        &self,
        cmd: CommandStatementIngest,
        request: Request<PeekableFlightDataStream>,
    ) -> std::result::Result<i64, Status> {
        let (_admitted, access) = self.admit(request.metadata(), Some("Store")).await?;
        if cmd.transaction_id.is_some() {
            return Err(Status::unimplemented("transactions are not supported"));
        }
        if cmd.temporary {
            return Err(Status::invalid_argument(
                "temporary tables are not supported: every ingested dataset is stored",
            ));
        }
        if cmd
            .catalog
            .as_deref()
            .is_some_and(|c| !c.is_empty() && c != CATALOG)
            || cmd
                .schema
                .as_deref()
                .is_some_and(|s| !s.is_empty() && s != DB_SCHEMA)
        {
            return Err(Status::invalid_argument(format!(
                "datasets live in catalog {CATALOG:?}, schema {DB_SCHEMA:?}; leave both unset"
            )));
        }
        let options = cmd.table_definition_options.unwrap_or_default();
        let if_not_exist = TableNotExistOption::try_from(options.if_not_exist)
            .unwrap_or(TableNotExistOption::Unspecified);
        let if_exists = TableExistsOption::try_from(options.if_exists)
            .unwrap_or(TableExistsOption::Unspecified);
        let pinned = if_version(request.metadata(), &cmd.options).map_err(status)?;
        // (create if absent?, what to do if it exists)
        let (create, exists) = match (if_not_exist, if_exists) {
            (TableNotExistOption::Fail, _) => (false, if_exists),
            (_, e) => (true, e),
        };
        let (condition, append) = match (create, exists, pinned) {
            (_, _, Some(v)) => (Condition::IfVersion(v), exists == TableExistsOption::Append),
            (true, TableExistsOption::Replace, None) => (Condition::Always, false),
            (true, TableExistsOption::Append, None) => (Condition::Always, true),
            // Create, failing if it exists (ADBC's "create"; also the default).
            (true, _, None) => (Condition::IfAbsent, false),
            (false, TableExistsOption::Append, None) => (Condition::Always, true),
            (false, TableExistsOption::Replace, None) => (Condition::Always, false),
            (false, _, None) => {
                return Err(Status::invalid_argument(
                    "this ingest could never succeed (if the table does not exist: fail; if it exists: fail)",
                ))
            }
        };
        // Appending or replacing what must already exist: check it does.
        if !create && pinned.is_none() {
            self.w
                .catalog
                .latest(&cmd.table)
                .await
                .map_err(|e| self.denied("Store", e))?;
        }
        let (m, rows) = self
            .put(&cmd.table, &access, condition, append, request.into_inner())
            .await
            .map_err(|e| self.denied("Store", e))?;
        tracing::info!(dataset = ?m.name, version = m.version, rows, "ingested");
        Ok(rows as i64)
    }

    async fn do_put_prepared_statement_query(
        &self,
        query: CommandPreparedStatementQuery,
        request: Request<PeekableFlightDataStream>,
    ) -> std::result::Result<DoPutPreparedStatementResult, Status> {
        let (_admitted, access) = self.admit(request.metadata(), Some("Query")).await?;
        let claims = self
            .signer
            .open(&query.prepared_statement_handle, access.who())
            .map_err(|e| self.denied("Query", e))?;
        let What::Sql { sql, .. } = claims.what else {
            return Err(Status::invalid_argument(
                "this handle is not a prepared statement",
            ));
        };
        let mut batches = FlightRecordBatchStream::new_from_flight_data(
            request.into_inner().map_err(FlightError::from),
        );
        let mut rows = Vec::new();
        while let Some(b) = batches.next().await {
            let b = b.map_err(Status::from)?;
            if b.num_rows() > 0 {
                rows.push(b);
            }
        }
        let params = match rows.as_slice() {
            [] => None,
            [one] => Some(ticket::encode_params(&params::to_ipc(one).map_err(status)?)),
            _ => {
                return Err(Status::invalid_argument(
                    "bind exactly one row of parameters per execution; execute once per row",
                ))
            }
        };
        let claims = Claims::new(
            What::Sql { sql, params },
            Snapshot::new(),
            access.who(),
            HANDLE_TTL,
        );
        Ok(DoPutPreparedStatementResult {
            prepared_statement_handle: Some(self.signer.seal(&claims)),
        })
    }

    async fn do_action_create_prepared_statement(
        &self,
        query: ActionCreatePreparedStatementRequest,
        request: Request<Action>,
    ) -> std::result::Result<ActionCreatePreparedStatementResult, Status> {
        let (_admitted, access) = self.admit(request.metadata(), Some("Query")).await?;
        if query.transaction_id.is_some() {
            return Err(Status::unimplemented("transactions are not supported"));
        }
        let (schema, types) = self
            .describe(&query.query, &access, request.metadata())
            .await
            .map_err(|e| self.denied("Query", e))?;
        let claims = Claims::new(
            What::Sql {
                sql: query.query,
                params: None,
            },
            Snapshot::new(),
            access.who(),
            HANDLE_TTL,
        );
        Ok(ActionCreatePreparedStatementResult {
            prepared_statement_handle: self.signer.seal(&claims),
            dataset_schema: metadata::schema_bytes(&schema)?,
            parameter_schema: metadata::schema_bytes(&params::schema(&types))?,
        })
    }

    async fn do_action_close_prepared_statement(
        &self,
        query: ActionClosePreparedStatementRequest,
        request: Request<Action>,
    ) -> std::result::Result<(), Status> {
        // Nothing is kept for a handle: closing only checks it is one of ours.
        let (_admitted, access) = self.admit(request.metadata(), None).await?;
        self.signer
            .open(&query.prepared_statement_handle, access.who())
            .map_err(status)?;
        Ok(())
    }

    async fn get_flight_info_fallback(
        &self,
        cmd: arrow_flight::sql::Command,
        request: Request<FlightDescriptor>,
    ) -> std::result::Result<Response<FlightInfo>, Status> {
        if is_path(request.get_ref()) {
            let target = path_target(request.get_ref()).map(|(n, v)| (n, v, vec![]));
            return self.load_info(request, target).await;
        }
        if let arrow_flight::sql::Command::Unknown(any) = &cmd {
            if any.type_url == LOAD_REQUEST_TYPE {
                let target = polarway_proto::v1::LoadRequest::decode(any.value.clone())
                    .map(|r| (r.name, r.version, r.columns))
                    .map_err(|e| Error::InvalidArgument(format!("not a LoadRequest: {e}")));
                return self.load_info(request, target).await;
            }
        }
        Err(Status::invalid_argument(
            "unknown command: send a Flight SQL command or a PATH descriptor naming a dataset",
        ))
    }

    async fn do_put_fallback(
        &self,
        mut request: Request<PeekableFlightDataStream>,
        _message: Any,
    ) -> std::result::Result<Response<Stream_<PutResult>>, Status> {
        let desc = match request.get_mut().peek().await {
            Some(Ok(FlightData {
                flight_descriptor: Some(d),
                ..
            })) => d.clone(),
            _ => None.ok_or_else(|| Status::invalid_argument("DoPut needs a flight descriptor"))?,
        };
        if is_path(&desc) {
            return self.path_put(desc, request).await;
        }
        Err(Status::invalid_argument(
            "unknown command: DoPut takes a PATH descriptor naming a dataset, bulk ingest or a prepared statement's parameters",
        ))
    }

    async fn do_action_fallback(
        &self,
        request: Request<Action>,
    ) -> std::result::Result<Response<Stream_<arrow_flight::Result>>, Status> {
        if request.get_ref().r#type == "CancelFlightInfo" {
            return self.cancel(request).await;
        }
        Err(Status::invalid_argument(format!(
            "unknown action {:?}; ListActions lists the supported ones",
            request.get_ref().r#type
        )))
    }

    async fn list_custom_actions(&self) -> Option<Vec<std::result::Result<ActionType, Status>>> {
        Some(vec![Ok(ActionType {
            r#type: "CancelFlightInfo".into(),
            description: "Stop the query of a FlightInfo's ticket".into(),
        })])
    }

    async fn register_sql_info(&self, _id: i32, _result: &SqlInfo) {}
}
