//! Arrow Flight SQL: BI tools and ADBC, JDBC and ODBC drivers connect to
//! veil as to a database. This front end only translates: every statement
//! runs through [`Service::query`](crate::service::Service::query), the
//! use case `POST /v1/query` runs (the policy stage, DP and budgets, the
//! row cap, the audit entry before the first batch, provenance and the
//! receipt), and every refusal is the contract's error.
//!
//! - Authentication: `Handshake` takes the API key as `authorization:
//!   Bearer <key>` (or `Basic` of the principal's name and key, for drivers
//!   that only do Basic) and answers a session token; every call sends
//!   either that token or the key itself as a bearer, and the key behind it
//!   is looked up again on each call, so a revoked key stops at once.
//! - Statements: `GetFlightInfo` checks the statement (a refusal is the
//!   contract's message with its code mapped to a gRPC code, and the
//!   contract's code in the `veil-error-code` trailer) and answers a
//!   ticket: opaque, single-use, the caller's own, valid five minutes.
//!   `DoGet` runs it: charged, audited, streamed, cut at the policy's
//!   `max_rows`. Prepared statements (parameterless) keep the statement
//!   for as many executions as the client wants, each checked and charged
//!   anew.
//! - Options travel as call headers: `x-veil-purpose` (percent-encoded
//!   when it is not ASCII), `x-veil-epsilon`, `x-veil-max-groups`,
//!   `x-veil-max-rows`, `x-veil-bounds` (`auto`), `x-veil-intervals`.
//! - What an answer says about itself (request id, policy version,
//!   provenance, privacy, the row cap) is in its Arrow schema's metadata
//!   under `veil.*` keys, as in the HTTP Arrow stream, and as JSON in the
//!   first message's `app_metadata`; its receipt is kept once the stream
//!   ends, for `GET /v1/receipts/{request_id}` or the `veil.receipt`
//!   action.
//! - Metadata: `GetSqlInfo`, `GetCatalogs` (`veil`), `GetDbSchemas`
//!   (`public`), `GetTables` (the datasets the caller may query, with the
//!   columns it may reference) and `GetTableTypes`.

pub mod listener;
pub mod tickets;

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_flight::error::FlightError;
use arrow_flight::flight_service_server::FlightService;
use arrow_flight::sql::metadata::{SqlInfoData, SqlInfoDataBuilder};
use arrow_flight::sql::server::FlightSqlService;
use arrow_flight::sql::{
    ActionClosePreparedStatementRequest, ActionCreatePreparedStatementRequest,
    ActionCreatePreparedStatementResult, Any, CommandGetCatalogs, CommandGetDbSchemas,
    CommandGetSqlInfo, CommandGetTableTypes, CommandGetTables, CommandPreparedStatementQuery,
    CommandStatementQuery, ProstMessageExt, SqlInfo, TicketStatementQuery,
};
use arrow_flight::{
    Action, FlightData, FlightDescriptor, FlightEndpoint, FlightInfo, HandshakeRequest,
    HandshakeResponse, IpcMessage, SchemaAsIpc, Ticket,
};
use futures::{Stream, StreamExt};
use prost::Message;
use sha2::{Digest, Sha256};
use tonic::metadata::{MetadataMap, MetadataValue};
use tonic::{Request, Response, Status, Streaming};

use self::tickets::{Handles, Session, Statement};
use crate::http::AppState;
use crate::service::ServiceError;
use crate::service::query::{QueryInput, QueryOutcome};
use crate::store::PrincipalRecord;
use crate::wire::ErrorCode;

/// The endpoint's name in the audit log.
pub const ENDPOINT: &str = "Flight SQL";
/// The longest statement accepted, as HTTP's body limit.
pub const MAX_STATEMENT: usize = 1 << 20;
/// Sessions one principal holds at once: past them the oldest ends.
const SESSIONS_PER_PRINCIPAL: usize = 16;

/// The one catalog and schema the tables are in.
pub const CATALOG: &str = "veil";
pub const SCHEMA: &str = "public";

/// The Flight SQL service over one deployment.
pub struct FlightSql {
    state: Arc<AppState>,
    sessions: Handles<Session>,
    tickets: Handles<Statement>,
    prepared: Handles<Statement>,
    info: SqlInfoData,
}

type DoGetStream = Pin<Box<dyn Stream<Item = Result<FlightData, Status>> + Send + 'static>>;

/// A contract error as a gRPC status: the contract's message, its code
/// mapped, and the contract's code itself in `veil-error-code`.
pub fn status(e: ServiceError) -> Status {
    use tonic::Code;
    let code = match e.code {
        ErrorCode::BadRequest | ErrorCode::InvalidSql => Code::InvalidArgument,
        ErrorCode::Unauthenticated => Code::Unauthenticated,
        ErrorCode::Forbidden | ErrorCode::PolicyDenied | ErrorCode::BudgetExhausted => {
            Code::PermissionDenied
        }
        ErrorCode::NotFound => Code::NotFound,
        ErrorCode::Conflict => Code::AlreadyExists,
        ErrorCode::PayloadTooLarge | ErrorCode::RateLimited => Code::ResourceExhausted,
        ErrorCode::Internal => Code::Internal,
        ErrorCode::Unavailable => Code::Unavailable,
    };
    let mut metadata = MetadataMap::new();
    metadata.insert(
        "veil-error-code",
        MetadataValue::from_static(e.code.as_str()),
    );
    if let Some(seconds) = e.retry_after
        && let Ok(v) = MetadataValue::try_from(seconds.to_string())
    {
        metadata.insert("retry-after", v);
    }
    Status::with_metadata(code, e.message, metadata)
}

fn unauthenticated(message: &str) -> Status {
    status(ServiceError::new(ErrorCode::Unauthenticated, message))
}

fn bad_request(message: impl Into<String>) -> Status {
    status(ServiceError::bad_request(message))
}

/// A handle that is not (or no longer) the caller's.
fn unknown(what: &str) -> Status {
    status(ServiceError::not_found(format!(
        "this {what} is unknown, used, expired or not yours"
    )))
}

fn full(what: &str) -> Status {
    status(ServiceError::rate_limited(
        format!(
            "at most {} open {what}s per principal; run or close some",
            tickets::MAX_OPEN_PER_PRINCIPAL
        ),
        1,
    ))
}

/// `%XX` escapes (two hex digits) decoded, any other `%` kept as it is;
/// `None` when the bytes do not make UTF-8.
fn percent_decoded(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let hex = |b: u8| (b as char).to_digit(16);
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escape = (bytes[i] == b'%')
            .then(|| Some(hex(*bytes.get(i + 1)?)? * 16 + hex(*bytes.get(i + 2)?)?))
            .flatten();
        match escape {
            Some(b) => {
                out.push(b as u8);
                i += 3;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// The query options of a call, from its headers. A value that does not
/// parse is refused by the header's name, never echoed.
fn options(metadata: &MetadataMap, sql: String) -> Result<QueryInput, Status> {
    if sql.len() > MAX_STATEMENT {
        return Err(status(ServiceError::new(
            ErrorCode::PayloadTooLarge,
            format!("a statement is at most {MAX_STATEMENT} bytes"),
        )));
    }
    let text = |name: &str| -> Result<Option<String>, Status> {
        match metadata.get(name) {
            None => Ok(None),
            Some(v) => v
                .to_str()
                .ok()
                .and_then(percent_decoded)
                .map(Some)
                .ok_or_else(|| bad_request(format!("`{name}` must be text (percent-encoded)"))),
        }
    };
    let number = |name: &str| -> Result<Option<f64>, Status> {
        text(name)?
            .map(|v| {
                v.trim()
                    .parse::<f64>()
                    .map_err(|_| bad_request(format!("`{name}` must be a number")))
            })
            .transpose()
    };
    let count = |name: &str| -> Result<Option<u64>, Status> {
        text(name)?
            .map(|v| {
                v.trim()
                    .parse::<u64>()
                    .map_err(|_| bad_request(format!("`{name}` must be a whole number")))
            })
            .transpose()
    };
    let auto_bounds = match text("x-veil-bounds")?.as_deref().map(str::trim) {
        None | Some("declared") => false,
        Some("auto") => true,
        Some(_) => return Err(bad_request("`x-veil-bounds` is `auto` or `declared`")),
    };
    let intervals = match text("x-veil-intervals")?.as_deref().map(str::trim) {
        None | Some("false") => false,
        Some("true") => true,
        Some(_) => return Err(bad_request("`x-veil-intervals` is `true` or `false`")),
    };
    Ok(QueryInput {
        sql,
        purpose: text("x-veil-purpose")?,
        epsilon: number("x-veil-epsilon")?,
        max_groups: count("x-veil-max-groups")?,
        max_rows: count("x-veil-max-rows")?,
        dry_run: false,
        target_ci95: None,
        auto_bounds,
        intervals,
        request_id: None,
    })
}

fn encode(message: &impl ProstMessageExt) -> bytes::Bytes {
    message.as_any().encode_to_vec().into()
}

/// A one-message answer of a metadata call.
fn one_batch(batch: Result<RecordBatch, FlightError>) -> DoGetStream {
    let stream = FlightDataEncoderBuilder::new()
        .build(futures::stream::once(async move { batch }))
        .map(|r| r.map_err(Status::from));
    Box::pin(stream)
}

impl FlightSql {
    pub fn new(state: Arc<AppState>) -> Self {
        let mut info = SqlInfoDataBuilder::new();
        info.append(SqlInfo::FlightSqlServerName, "veil");
        info.append(SqlInfo::FlightSqlServerVersion, env!("CARGO_PKG_VERSION"));
        info.append(SqlInfo::FlightSqlServerArrowVersion, "1.3");
        info.append(SqlInfo::FlightSqlServerReadOnly, true);
        info.append(SqlInfo::FlightSqlServerSql, true);
        info.append(SqlInfo::FlightSqlServerSubstrait, false);
        info.append(SqlInfo::FlightSqlServerTransaction, 0i32);
        info.append(SqlInfo::FlightSqlServerCancel, false);
        info.append(SqlInfo::SqlIdentifierQuoteChar, "\"");
        info.append(SqlInfo::SqlDdlCatalog, false);
        info.append(SqlInfo::SqlDdlSchema, false);
        info.append(SqlInfo::SqlDdlTable, false);
        let per = tickets::MAX_OPEN_PER_PRINCIPAL;
        let ticket_lifetime = state.config.ticket_lifetime;
        FlightSql {
            state,
            sessions: Handles::new(
                tickets::SESSION_LIFETIME,
                SESSIONS_PER_PRINCIPAL,
                tickets::MAX_SESSIONS,
            ),
            tickets: Handles::new(ticket_lifetime, per, 100_000),
            prepared: Handles::new(tickets::PREPARED_LIFETIME, per, 100_000),
            info: info.build().expect("the SQL info is well formed"),
        }
    }

    /// The principal behind a key, active.
    fn principal_of(&self, key_hash: &[u8; 32]) -> Result<Arc<PrincipalRecord>, Status> {
        match self.state.caller(key_hash) {
            Err(e) => Err(status(ServiceError::from(e))),
            Ok(None) => Err(unauthenticated(
                "this API key or session is unknown or revoked",
            )),
            Ok(Some(r)) => crate::http::auth::active(r).map_err(status),
        }
    }

    /// The caller of a call: its bearer is a session token from the
    /// handshake or an API key.
    fn caller<T>(&self, request: &Request<T>) -> Result<Arc<PrincipalRecord>, Status> {
        let bearer = request
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|h| h.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token.trim())
            .ok_or_else(|| {
                unauthenticated(
                    "send your API key, or the token the handshake answered, as `authorization: Bearer <token>`",
                )
            })?;
        let key_hash = self
            .sessions
            .find(bearer)
            .unwrap_or_else(|| crate::store::key_hash(bearer));
        self.principal_of(&key_hash)
    }

    /// Admits one call of `principal` under the per-principal limits.
    fn admit(&self, principal: &str) -> Result<tokio::sync::OwnedSemaphorePermit, Status> {
        self.state.limits.admit(principal).map_err(status)
    }

    /// Checks `input` as `caller` would run it: the answer's schema, with
    /// the metadata the answer will carry (as of now), or the (audited)
    /// refusal.
    async fn check(
        &self,
        caller: &PrincipalRecord,
        input: &QueryInput,
    ) -> Result<SchemaRef, Status> {
        let (state, principal, input) =
            (self.state.clone(), caller.principal.clone(), input.clone());
        let planned = self
            .state
            .queries
            .run(async move { state.service.plan(&principal, ENDPOINT, &input).await })
            .await
            .map_err(status)?
            .map_err(status)?;
        let schema = crate::wire::portable_schema(&planned.schema);
        Ok(Arc::new(
            schema.as_ref().clone().with_metadata(planned.metadata),
        ))
    }

    /// A FlightInfo with one endpoint whose ticket runs `input` once.
    fn ticketed(
        &self,
        caller: &PrincipalRecord,
        input: QueryInput,
        schema: &SchemaRef,
        descriptor: FlightDescriptor,
    ) -> Result<FlightInfo, Status> {
        let handle = self
            .tickets
            .insert(&caller.principal.name, input)
            .map_err(|_| full("ticket"))?;
        let ticket = TicketStatementQuery {
            statement_handle: handle.into_bytes().into(),
        };
        let expires = (SystemTime::now() + self.state.config.ticket_lifetime)
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default();
        let endpoint = FlightEndpoint::new()
            .with_ticket(Ticket::new(encode(&ticket)))
            .with_expiration_time(prost_types::Timestamp {
                seconds: expires.as_secs() as i64,
                nanos: expires.subsec_nanos() as i32,
            });
        FlightInfo::new()
            .try_with_schema(schema)
            .map_err(|_| status(ServiceError::internal("the schema could not be encoded")))
            .map(|info| {
                info.with_endpoint(endpoint)
                    .with_descriptor(descriptor)
                    .with_ordered(true)
            })
    }

    /// Runs `input` as `caller`: the same use case as `POST /v1/query`,
    /// streamed as Flight data.
    async fn run(
        &self,
        caller: Arc<PrincipalRecord>,
        input: QueryInput,
        permit: tokio::sync::OwnedSemaphorePermit,
    ) -> Result<DoGetStream, Status> {
        let state = self.state.clone();
        let principal = caller.principal.clone();
        let outcome = self
            .state
            .queries
            .run(async move {
                state
                    .service
                    .query(&principal, ENDPOINT, &input, state.config.timeout)
                    .await
            })
            .await
            .map_err(status)?
            .map_err(status)?;
        let release = match outcome {
            QueryOutcome::Released(r) => *r,
            QueryOutcome::DryRun(_) => {
                return Err(bad_request("a dry run has no answer to stream"));
            }
        };
        let id = release.completion.request_id.clone();
        let metadata = crate::wire::stream_metadata(&release.prepared, &id, release.max_rows);
        let head = serde_json::to_vec(&metadata).unwrap_or_default();
        let schema = Arc::new(
            crate::wire::portable_schema(&release.stream.schema())
                .as_ref()
                .clone()
                .with_metadata(metadata),
        );

        // How the release ends, recorded once: by the task when the query
        // fails (the client then sees an error, and nothing after it), or
        // after the last message when it does not.
        let ending = Arc::new(std::sync::Mutex::new(Some((
            release.completion,
            release.prepared,
            permit,
        ))));
        let take_ending = |ending: &std::sync::Mutex<Option<_>>| {
            ending.lock().unwrap_or_else(|e| e.into_inner()).take()
        };

        // The batches, cut at the row cap, from the query pool.
        let (sender, receiver) = tokio::sync::mpsc::channel::<Result<RecordBatch, FlightError>>(4);
        let rows = Arc::new(AtomicU64::new(0));
        let (max_rows, deadline) = (
            release.max_rows,
            tokio::time::Instant::now() + self.state.config.timeout,
        );
        let mut stream = release.stream;
        let (task_rows, task_schema, task_ending) = (rows.clone(), schema.clone(), ending.clone());
        let (task_id, task_state) = (id.clone(), self.state.clone());
        self.state.queries.spawn(async move {
            let (mut sent, mut truncated, mut failed) = (0u64, false, false);
            loop {
                let batch = match tokio::time::timeout_at(deadline, stream.next()).await {
                    Ok(Some(Ok(batch))) => batch,
                    Ok(None) => break,
                    Ok(Some(Err(e))) => {
                        tracing::error!(request = %task_id, detail = %e, "query failed while streaming");
                        failed = true;
                        break;
                    }
                    Err(_) => {
                        tracing::error!(request = %task_id, "query timed out while streaming");
                        failed = true;
                        break;
                    }
                };
                let batch = crate::service::query::cut(batch, sent, max_rows, &mut truncated);
                let batch = crate::wire::portable(&batch)
                    .and_then(|b| RecordBatch::try_new(task_schema.clone(), b.columns().to_vec()));
                let Ok(batch) = batch else {
                    failed = true;
                    break;
                };
                sent += batch.num_rows() as u64;
                task_rows.store(sent, Ordering::SeqCst);
                if batch.num_rows() > 0 && sender.send(Ok(batch)).await.is_err() {
                    return; // the client went away; the release entry stands
                }
                if truncated {
                    break;
                }
            }
            if failed {
                if let Some((completion, prepared, _permit)) = take_ending(&task_ending) {
                    task_state.metrics.rows_released(sent);
                    completion
                        .finish(&task_state.service, &prepared, sent, true)
                        .await;
                }
                let _ = sender
                    .send(Err(FlightError::ExternalError(
                        "the query failed while running; nothing more was released".into(),
                    )))
                    .await;
            }
        });

        // Encoded, digested as sent (each message's header and body bytes,
        // in order); once the last message is out, the completion entry and
        // the receipt.
        let digest = Arc::new(std::sync::Mutex::new(Sha256::new()));
        let seen = digest.clone();
        let data = FlightDataEncoderBuilder::new()
            .with_schema(schema)
            .with_metadata(head.into())
            .build(tokio_stream::wrappers::ReceiverStream::new(receiver))
            .map(move |r| {
                let data = r.map_err(|e| match e {
                    FlightError::ExternalError(m) => Status::internal(m.to_string()),
                    _ => status(ServiceError::internal("the answer could not be encoded")),
                })?;
                let mut d = seen.lock().unwrap_or_else(|e| e.into_inner());
                d.update(&data.data_header);
                d.update(&data.data_body);
                Ok(data)
            });
        let state = self.state.clone();
        let principal = caller.principal.name.clone();
        let tail = futures::stream::once(async move {
            let (completion, prepared, _permit) = take_ending(&ending)?;
            let rows = rows.load(Ordering::SeqCst);
            state.metrics.rows_released(rows);
            let mut claims = completion
                .finish(&state.service, &prepared, rows, false)
                .await;
            let digest = digest.lock().unwrap_or_else(|e| e.into_inner()).clone();
            claims.result_sha256 = crate::signing::hex(&digest.finalize());
            let receipt = crate::receipt::issue(&state.signer, &claims);
            if let Err(e) = state.store().save_receipt(&id, &principal, &receipt) {
                tracing::error!(error = %e, "a receipt could not be stored");
            }
            None
        })
        .filter_map(futures::future::ready);
        Ok(Box::pin(data.chain(tail)))
    }

    /// The datasets the caller may query, each with the columns it may
    /// reference.
    fn tables(&self, caller: &PrincipalRecord, purpose: Option<&str>) -> Vec<(String, SchemaRef)> {
        self.state
            .engine()
            .visible_tables(&caller.principal, purpose, chrono::Utc::now())
    }
}

/// A prepared statement's options as one execution sets them: each
/// `x-veil-*` header the execution sends replaces the one it was prepared
/// with.
fn executed_with(input: &mut QueryInput, metadata: &MetadataMap) -> Result<(), Status> {
    let now = options(metadata, String::new())?;
    let sent = |name: &str| metadata.get(name).is_some();
    if sent("x-veil-purpose") {
        input.purpose = now.purpose;
    }
    if sent("x-veil-epsilon") {
        input.epsilon = now.epsilon;
    }
    if sent("x-veil-max-groups") {
        input.max_groups = now.max_groups;
    }
    if sent("x-veil-max-rows") {
        input.max_rows = now.max_rows;
    }
    if sent("x-veil-bounds") {
        input.auto_bounds = now.auto_bounds;
    }
    if sent("x-veil-intervals") {
        input.intervals = now.intervals;
    }
    Ok(())
}

/// What `FlightInfo` of a metadata command looks like: its schema, and a
/// ticket that is the command itself.
fn metadata_info(
    command: &impl ProstMessageExt,
    schema: &arrow::datatypes::Schema,
    descriptor: FlightDescriptor,
) -> Result<Response<FlightInfo>, Status> {
    let endpoint = FlightEndpoint::new().with_ticket(Ticket::new(encode(command)));
    let info = FlightInfo::new()
        .try_with_schema(schema)
        .map_err(|_| status(ServiceError::internal("the schema could not be encoded")))?
        .with_endpoint(endpoint)
        .with_descriptor(descriptor);
    Ok(Response::new(info))
}

#[tonic::async_trait]
impl FlightSqlService for FlightSql {
    type FlightService = FlightSql;

    async fn do_handshake(
        &self,
        request: Request<Streaming<HandshakeRequest>>,
    ) -> Result<
        Response<Pin<Box<dyn Stream<Item = Result<HandshakeResponse, Status>> + Send>>>,
        Status,
    > {
        use base64::Engine as _;
        let header = request
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|h| h.split_once(' '))
            .map(|(scheme, rest)| (scheme.to_ascii_lowercase(), rest.trim().to_owned()));
        let (name, key) = match header {
            Some((scheme, key)) if scheme == "bearer" => (None, key),
            Some((scheme, encoded)) if scheme == "basic" => {
                let decoded = base64::engine::general_purpose::STANDARD
                    .decode(encoded)
                    .ok()
                    .and_then(|b| String::from_utf8(b).ok())
                    .and_then(|t| t.split_once(':').map(|(n, k)| (n.to_owned(), k.to_owned())));
                match decoded {
                    Some((name, key)) => (Some(name), key),
                    None => {
                        return Err(unauthenticated(
                            "Basic credentials are `name:key` in base64",
                        ));
                    }
                }
            }
            _ => {
                return Err(unauthenticated(
                    "send your API key as `authorization: Bearer <key>`, or Basic with your principal's name and key",
                ));
            }
        };
        let hash = crate::store::key_hash(&key);
        let record = self.principal_of(&hash)?;
        if name.is_some_and(|n| n != record.principal.name) {
            return Err(unauthenticated(
                "this API key or session is unknown or revoked",
            ));
        }
        let _permit = self.admit(&record.principal.name)?;
        let token = self
            .sessions
            .insert_evicting(&record.principal.name, hash)
            .map_err(|_| {
                status(ServiceError::new(
                    ErrorCode::Unavailable,
                    "the service holds as many Flight SQL sessions as it may; send the API key as the bearer instead",
                ))
            })?;
        let mut response: Response<Pin<Box<dyn Stream<Item = _> + Send>>> =
            Response::new(Box::pin(futures::stream::iter([Ok(HandshakeResponse {
                protocol_version: 0,
                payload: token.clone().into_bytes().into(),
            })])));
        if let Ok(v) = MetadataValue::try_from(format!("Bearer {token}")) {
            response.metadata_mut().insert("authorization", v);
        }
        Ok(response)
    }

    async fn get_flight_info_statement(
        &self,
        query: CommandStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let caller = self.caller(&request)?;
        let _permit = self.admit(&caller.principal.name)?;
        let mut input = options(request.metadata(), query.query)?;
        // The answer's request id, said in the FlightInfo's schema already
        // (drivers hand that schema on).
        input.request_id = Some(crate::service::query::request_id());
        let schema = self.check(&caller, &input).await?;
        let info = self.ticketed(&caller, input, &schema, request.into_inner())?;
        Ok(Response::new(info))
    }

    async fn get_flight_info_prepared_statement(
        &self,
        cmd: CommandPreparedStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let caller = self.caller(&request)?;
        let _permit = self.admit(&caller.principal.name)?;
        let handle = String::from_utf8(cmd.prepared_statement_handle.to_vec())
            .map_err(|_| unknown("prepared statement"))?;
        let mut input = self
            .prepared
            .get(&caller.principal.name, &handle)
            .map_err(|_| unknown("prepared statement"))?;
        executed_with(&mut input, request.metadata())?;
        input.request_id = Some(crate::service::query::request_id());
        let schema = self.check(&caller, &input).await?;
        let info = self.ticketed(&caller, input, &schema, request.into_inner())?;
        Ok(Response::new(info))
    }

    async fn do_get_statement(
        &self,
        ticket: TicketStatementQuery,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        let caller = self.caller(&request)?;
        // Admitted before the ticket is used up: a rate-limited DoGet can
        // be tried again with the same ticket.
        let permit = self.admit(&caller.principal.name)?;
        let handle =
            String::from_utf8(ticket.statement_handle.to_vec()).map_err(|_| unknown("ticket"))?;
        let input = self
            .tickets
            .take(&caller.principal.name, &handle)
            .map_err(|_| unknown("ticket"))?;
        Ok(Response::new(self.run(caller, input, permit).await?))
    }

    async fn do_get_prepared_statement(
        &self,
        query: CommandPreparedStatementQuery,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        let caller = self.caller(&request)?;
        let permit = self.admit(&caller.principal.name)?;
        let handle = String::from_utf8(query.prepared_statement_handle.to_vec())
            .map_err(|_| unknown("prepared statement"))?;
        let mut input = self
            .prepared
            .get(&caller.principal.name, &handle)
            .map_err(|_| unknown("prepared statement"))?;
        executed_with(&mut input, request.metadata())?;
        Ok(Response::new(self.run(caller, input, permit).await?))
    }

    async fn do_action_create_prepared_statement(
        &self,
        query: ActionCreatePreparedStatementRequest,
        request: Request<Action>,
    ) -> Result<ActionCreatePreparedStatementResult, Status> {
        let caller = self.caller(&request)?;
        let _permit = self.admit(&caller.principal.name)?;
        let input = options(request.metadata(), query.query)?;
        let schema = self.check(&caller, &input).await?;
        let IpcMessage(dataset_schema) = SchemaAsIpc::new(&schema, &Default::default())
            .try_into()
            .map_err(|_| status(ServiceError::internal("the schema could not be encoded")))?;
        let handle = self
            .prepared
            .insert(&caller.principal.name, input)
            .map_err(|_| full("prepared statement"))?;
        Ok(ActionCreatePreparedStatementResult {
            prepared_statement_handle: handle.into_bytes().into(),
            dataset_schema,
            parameter_schema: Default::default(),
        })
    }

    async fn do_action_close_prepared_statement(
        &self,
        query: ActionClosePreparedStatementRequest,
        request: Request<Action>,
    ) -> Result<(), Status> {
        let caller = self.caller(&request)?;
        if let Ok(handle) = String::from_utf8(query.prepared_statement_handle.to_vec()) {
            self.prepared.remove(&caller.principal.name, &handle);
        }
        Ok(())
    }

    async fn do_action_fallback(
        &self,
        request: Request<Action>,
    ) -> Result<Response<<Self as FlightService>::DoActionStream>, Status> {
        let caller = self.caller(&request)?;
        let _permit = self.admit(&caller.principal.name)?;
        if !matches!(
            caller.principal.role,
            veil_policies::Role::Consumer | veil_policies::Role::Modeler
        ) {
            return Err(status(ServiceError::forbidden(
                "receipts are for consumers and modelers",
            )));
        }
        let action = request.into_inner();
        if action.r#type != "veil.receipt" {
            return Err(status(ServiceError::not_found(
                "no such action; veil answers `veil.receipt` (body: a request id) besides Flight SQL's",
            )));
        }
        let id = String::from_utf8(action.body.to_vec()).unwrap_or_default();
        let receipt = self
            .state
            .store()
            .receipt(id.trim(), &caller.principal.name)
            .map_err(|e| status(ServiceError::from(e)))?
            .ok_or_else(|| status(ServiceError::not_found("no receipt for this request")))?;
        let body = serde_json::json!({"request_id": id.trim(), "receipt": receipt}).to_string();
        let result = arrow_flight::Result {
            body: body.into_bytes().into(),
        };
        Ok(Response::new(Box::pin(futures::stream::iter([Ok(result)]))))
    }

    async fn get_flight_info_sql_info(
        &self,
        query: CommandGetSqlInfo,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.caller(&request)?;
        let schema = query.clone().into_builder(&self.info).schema();
        metadata_info(&query, &schema, request.into_inner())
    }

    async fn do_get_sql_info(
        &self,
        query: CommandGetSqlInfo,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        self.caller(&request)?;
        Ok(Response::new(one_batch(
            query.into_builder(&self.info).build(),
        )))
    }

    async fn get_flight_info_catalogs(
        &self,
        query: CommandGetCatalogs,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.caller(&request)?;
        let schema = query.into_builder().schema();
        metadata_info(&query, &schema, request.into_inner())
    }

    async fn do_get_catalogs(
        &self,
        query: CommandGetCatalogs,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        self.caller(&request)?;
        let mut builder = query.into_builder();
        builder.append(CATALOG);
        Ok(Response::new(one_batch(builder.build())))
    }

    async fn get_flight_info_schemas(
        &self,
        query: CommandGetDbSchemas,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.caller(&request)?;
        let schema = query.clone().into_builder().schema();
        metadata_info(&query, &schema, request.into_inner())
    }

    async fn do_get_schemas(
        &self,
        query: CommandGetDbSchemas,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        self.caller(&request)?;
        let mut builder = query.into_builder();
        builder.append(CATALOG, SCHEMA);
        Ok(Response::new(one_batch(builder.build())))
    }

    async fn get_flight_info_tables(
        &self,
        query: CommandGetTables,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.caller(&request)?;
        let schema = query.clone().into_builder().schema();
        metadata_info(&query, &schema, request.into_inner())
    }

    async fn do_get_tables(
        &self,
        query: CommandGetTables,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        let caller = self.caller(&request)?;
        let purpose = options(request.metadata(), String::new())?.purpose;
        let mut builder = query.into_builder();
        for (name, schema) in self.tables(&caller, purpose.as_deref()) {
            builder
                .append(CATALOG, SCHEMA, name, "TABLE", &schema)
                .map_err(|_| status(ServiceError::internal("a table could not be listed")))?;
        }
        Ok(Response::new(one_batch(builder.build())))
    }

    async fn get_flight_info_table_types(
        &self,
        query: CommandGetTableTypes,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.caller(&request)?;
        metadata_info(&query, &table_types_schema(), request.into_inner())
    }

    async fn do_get_table_types(
        &self,
        _query: CommandGetTableTypes,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        self.caller(&request)?;
        let batch = RecordBatch::try_new(
            Arc::new(table_types_schema()),
            vec![Arc::new(arrow::array::StringArray::from(vec!["TABLE"]))],
        );
        Ok(Response::new(one_batch(batch.map_err(FlightError::from))))
    }

    async fn do_get_fallback(
        &self,
        request: Request<Ticket>,
        _message: Any,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        self.caller(&request)?;
        Err(unknown("ticket"))
    }

    async fn register_sql_info(&self, _id: i32, _result: &SqlInfo) {}
}

/// `GetTableTypes`' schema, as Flight SQL defines it.
fn table_types_schema() -> arrow::datatypes::Schema {
    arrow::datatypes::Schema::new(vec![arrow::datatypes::Field::new(
        "table_type",
        arrow::datatypes::DataType::Utf8,
        false,
    )])
}

/// Serves Flight SQL for `state` on `listener` until `shutdown` resolves.
pub async fn serve(
    state: Arc<AppState>,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), tonic::transport::Error> {
    let config = state.config.clone();
    let service =
        arrow_flight::flight_service_server::FlightServiceServer::new(FlightSql::new(state))
            .max_decoding_message_size(config.body_limit + (64 << 10));
    tonic::transport::Server::builder()
        .timeout(config.timeout)
        .concurrency_limit_per_connection(config.concurrency_per_principal.max(1) * 4)
        .max_concurrent_streams(Some(256))
        .http2_keepalive_interval(Some(std::time::Duration::from_secs(30)))
        .http2_keepalive_timeout(Some(std::time::Duration::from_secs(10)))
        .tcp_nodelay(true)
        .add_service(service)
        .serve_with_incoming_shutdown(
            listener::admitted(
                listener,
                config.max_connections,
                config.max_connections_per_peer,
            ),
            shutdown,
        )
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_set_the_options_and_bad_values_are_named_not_echoed() {
        let mut m = MetadataMap::new();
        m.insert("x-veil-epsilon", MetadataValue::from_static("0.5"));
        m.insert(
            "x-veil-purpose",
            MetadataValue::from_static("%E7%A8%8E%E5%8A%A1"),
        );
        m.insert("x-veil-bounds", MetadataValue::from_static("auto"));
        let input = options(&m, "SELECT 1".into()).unwrap();
        assert_eq!(input.epsilon, Some(0.5));
        assert_eq!(input.purpose.as_deref(), Some("税务"));
        assert!(input.auto_bounds && !input.intervals);
        m.insert(
            "x-veil-purpose",
            MetadataValue::from_static("a 50% sample, %+F kept"),
        );
        let input = options(&m, "SELECT 1".into()).unwrap();
        assert_eq!(input.purpose.as_deref(), Some("a 50% sample, %+F kept"));
        m.insert(
            "x-veil-epsilon",
            MetadataValue::from_static("53262119800101001X"),
        );
        let e = options(&m, "SELECT 1".into()).unwrap_err();
        assert_eq!(e.code(), tonic::Code::InvalidArgument);
        assert!(!e.message().contains("5326"), "{}", e.message());
        assert_eq!(
            e.metadata()
                .get("veil-error-code")
                .unwrap()
                .to_str()
                .unwrap(),
            "bad_request"
        );
    }
}
