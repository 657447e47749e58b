//! Answers on the wire: JSON, CSV or an Arrow IPC stream, written batch by
//! batch, with every byte hashed for the receipt that closes the answer.

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use axum::http::{HeaderMap, header};
use bytes::Bytes;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;
use veil_engine::PreparedQuery;

use super::state::AppState;
use crate::receipt::{self, Claims};
use crate::service::ServiceError;
use crate::signing::hex;
use crate::wire;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    Csv,
    Arrow,
}

const ARROW_STREAM: &str = "application/vnd.apache.arrow.stream";

impl Format {
    /// The first supported type in `Accept`, JSON when absent or `*/*`.
    pub fn negotiate(headers: &HeaderMap) -> Result<Format, ServiceError> {
        let Some(accept) = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()) else {
            return Ok(Format::Json);
        };
        for part in accept.split(',') {
            match part.split(';').next().unwrap_or("").trim() {
                "application/json" | "*/*" | "application/*" | "" => return Ok(Format::Json),
                "text/csv" | "text/*" => return Ok(Format::Csv),
                ARROW_STREAM => return Ok(Format::Arrow),
                _ => {}
            }
        }
        Err(ServiceError::bad_request(format!(
            "answers come as application/json, text/csv or {ARROW_STREAM}"
        )))
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Format::Json => "application/json",
            Format::Csv => "text/csv; charset=utf-8",
            Format::Arrow => ARROW_STREAM,
        }
    }
}

/// Encodes batches in the negotiated format, hashing every byte it sends
/// for the receipt.
pub struct AnswerWriter {
    format: Format,
    schema: SchemaRef,
    sender: mpsc::Sender<Result<Bytes, std::io::Error>>,
    digest: Sha256,
    pub rows: u64,
    pub truncated: bool,
    started: bool,
    arrow: Option<arrow::ipc::writer::StreamWriter<Vec<u8>>>,
}

impl AnswerWriter {
    pub fn new(
        format: Format,
        schema: SchemaRef,
        sender: mpsc::Sender<Result<Bytes, std::io::Error>>,
    ) -> Self {
        AnswerWriter {
            format,
            schema: wire::portable_schema(&schema),
            sender,
            digest: Sha256::new(),
            rows: 0,
            truncated: false,
            started: false,
            arrow: None,
        }
    }

    /// Metadata the Arrow stream's schema carries (the other formats carry
    /// it in the body or not at all).
    pub fn with_metadata(mut self, metadata: std::collections::HashMap<String, String>) -> Self {
        if self.format == Format::Arrow {
            self.schema = std::sync::Arc::new(self.schema.as_ref().clone().with_metadata(metadata));
        }
        self
    }

    async fn send(&mut self, bytes: Vec<u8>, digested: bool) -> bool {
        if digested {
            self.digest.update(&bytes);
        }
        self.sender.send(Ok(Bytes::from(bytes))).await.is_ok()
    }

    async fn start(&mut self) -> bool {
        self.started = true;
        match self.format {
            Format::Json => {
                let head = format!("{{\"columns\":{},\"rows\":[", wire::columns(&self.schema));
                self.send(head.into_bytes(), true).await
            }
            Format::Csv => {
                let mut out = Vec::new();
                let ok = arrow::csv::WriterBuilder::new()
                    .with_header(true)
                    .build(&mut out)
                    .write(&RecordBatch::new_empty(self.schema.clone()))
                    .is_ok();
                ok && self.send(out, true).await
            }
            Format::Arrow => {
                match arrow::ipc::writer::StreamWriter::try_new(Vec::new(), &self.schema) {
                    Ok(mut w) => {
                        let head = std::mem::take(w.get_mut());
                        self.arrow = Some(w);
                        self.send(head, true).await
                    }
                    Err(_) => false,
                }
            }
        }
    }

    /// Writes one batch, cut at `max_rows`; false when the client is gone.
    pub async fn write(&mut self, batch: RecordBatch, max_rows: u64) -> bool {
        if !self.started && !self.start().await {
            return false;
        }
        let batch = crate::service::query::cut(batch, self.rows, max_rows, &mut self.truncated);
        if batch.num_rows() == 0 {
            return true;
        }
        let Ok(batch) = wire::portable(&batch) else {
            return false;
        };
        let out = match self.format {
            Format::Json => {
                let mut out = Vec::new();
                for (i, row) in wire::rows(&batch).iter().enumerate() {
                    if self.rows > 0 || i > 0 {
                        out.push(b',');
                    }
                    let _ = serde_json::to_writer(&mut out, row);
                }
                out
            }
            Format::Csv => {
                let mut out = Vec::new();
                let _ = arrow::csv::WriterBuilder::new()
                    .with_header(false)
                    .build(&mut out)
                    .write(&batch);
                out
            }
            Format::Arrow => match self.arrow.as_mut() {
                Some(w) => {
                    let _ = w.write(&batch);
                    std::mem::take(w.get_mut())
                }
                None => Vec::new(),
            },
        };
        self.rows += batch.num_rows() as u64;
        self.send(out, true).await
    }

    /// Closes the answer: for JSON, the metadata and the receipt; for CSV and
    /// Arrow, the end of the stream, with the receipt kept for
    /// `GET /v1/receipts/{id}`.
    pub async fn finish(
        mut self,
        prepared: &PreparedQuery,
        (id, principal): (&str, &str),
        mut claims: Claims,
        failed: bool,
        state: &AppState,
    ) {
        if !self.started && !self.start().await {
            return;
        }
        match self.format {
            Format::Json => {
                let mut tail = serde_json::Map::new();
                tail.insert("truncated".into(), json!(self.truncated));
                tail.extend(wire::answer_meta(prepared));
                tail.insert("request_id".into(), json!(id));
                if failed {
                    tail.insert(
                        "error".into(),
                        ServiceError::new(crate::wire::ErrorCode::Internal, "").to_json()["error"]
                            .clone(),
                    );
                }
                let tail = Value::Object(tail).to_string();
                let mut bytes = b"]".to_vec();
                bytes.push(b',');
                bytes.extend_from_slice(&tail.as_bytes()[1..tail.len() - 1]);
                if !self.send(bytes, true).await {
                    return;
                }
                claims.result_sha256 = hex(&self.digest.clone().finalize());
                let receipt = receipt::issue(&state.signer, &claims);
                let _ = self
                    .send(format!(",\"receipt\":\"{receipt}\"}}").into_bytes(), false)
                    .await;
            }
            Format::Csv | Format::Arrow => {
                if let Some(mut w) = self.arrow.take() {
                    let _ = w.finish();
                    let end = std::mem::take(w.get_mut());
                    if !self.send(end, true).await {
                        return;
                    }
                }
                claims.result_sha256 = hex(&self.digest.clone().finalize());
                let receipt = receipt::issue(&state.signer, &claims);
                if let Err(e) = state.store().save_receipt(id, principal, &receipt) {
                    tracing::error!(error = %e, "a receipt could not be stored");
                }
                if failed {
                    let _ = self
                        .sender
                        .send(Err(std::io::Error::other("the query failed while running")))
                        .await;
                }
            }
        }
    }
}
