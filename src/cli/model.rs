//! `veil model train | list | score`: in-domain models as a principal,
//! through the same checks, budget and audit as `/v1/models`; prints the
//! API's JSON.

use std::path::PathBuf;
use std::sync::Mutex;

use chrono::Utc;
use clap::Subcommand;
use serde_json::json;
use veil_api::Store;
use veil_api::service::ServiceError;
use veil_api::service::models::{self, Inside, ScoreBody, TrainBody};
use veil_api::service::{active_principal, load_engine};
use veil_api::store::AuditEntry;
use veil_api::verification::SubjectDigest;

use super::{DataDirArg, Failure};

#[derive(Subcommand)]
pub enum ModelCommand {
    /// Train a model from a spec: a JSON file with the body of `POST /v1/models`.
    Train {
        #[command(flatten)]
        dir: DataDirArg,
        /// The modeler to train as.
        #[arg(long = "as", value_name = "NAME")]
        principal: String,
        #[arg(long, value_name = "FILE")]
        spec: PathBuf,
    },
    /// The principal's models.
    List {
        #[command(flatten)]
        dir: DataDirArg,
        #[arg(long = "as", value_name = "NAME")]
        principal: String,
    },
    /// Score named subjects (with a grant for the purpose) or rows of feature values.
    Score {
        #[command(flatten)]
        dir: DataDirArg,
        #[arg(long = "as", value_name = "NAME")]
        principal: String,
        /// The model's id.
        #[arg(long)]
        id: String,
        /// A subject's identifier; repeat for several.
        #[arg(long = "subject", value_name = "ID", conflicts_with = "rows")]
        subjects: Vec<String>,
        /// A JSON file with a list of rows of feature values.
        #[arg(long, value_name = "FILE")]
        rows: Option<PathBuf>,
        /// The purpose (application scenario) the grants were approved for.
        #[arg(long)]
        purpose: Option<String>,
    },
}

pub fn run(cmd: ModelCommand) -> Result<(), Failure> {
    match cmd {
        ModelCommand::Train {
            dir,
            principal,
            spec,
        } => {
            let body: TrainBody = match veil_api::wire::body::read_json_file(&spec)? {
                Ok(b) => b,
                Err(e) => return super::print_answer(Err(e)),
            };
            inside(&dir, &principal, |inside, p, _| {
                models::train(inside, p, &body, "veil model train", Utc::now())
            })
        }
        ModelCommand::List { dir, principal } => {
            let store = Store::open(&dir.data_dir)?;
            let answer = active_principal(&store, &principal)
                .and_then(|r| models::list(&store, &r.principal));
            super::print_answer(answer)
        }
        ModelCommand::Score {
            dir,
            principal,
            id,
            subjects,
            rows,
            purpose,
        } => {
            let body = match rows {
                Some(file) => {
                    let rows = match veil_api::wire::body::read_json_file(&file)? {
                        Ok(r) => r,
                        Err(e) => return super::print_answer(Err(e)),
                    };
                    ScoreBody {
                        rows: Some(rows),
                        purpose,
                        ..ScoreBody::default()
                    }
                }
                None => ScoreBody {
                    subjects: Some(subjects),
                    purpose,
                    ..ScoreBody::default()
                },
            };
            inside(&dir, &principal, |inside, p, digest| {
                models::score(
                    inside,
                    p,
                    &id,
                    &body,
                    digest,
                    "veil model score",
                    Utc::now(),
                )
            })
        }
    }
}

/// Runs a model operation as `name` over the store's engine, writes its
/// audit entry, then prints its answer.
fn inside(
    dir: &DataDirArg,
    name: &str,
    work: impl FnOnce(
        Inside<'_>,
        &veil_policies::Principal,
        &SubjectDigest,
    ) -> (Result<serde_json::Value, ServiceError>, AuditEntry),
) -> Result<(), Failure> {
    let store = Store::open(&dir.data_dir)?;
    let record = match active_principal(&store, name) {
        Ok(r) => r,
        Err(e) => return super::print_answer(Err(e)),
    };
    let engine = load_engine(&store)?.engine;
    let signer = store.data_dir().signer()?;
    let digest = SubjectDigest::new(&store.data_dir().master_key()?);
    let store = Mutex::new(store);
    let indexes = veil_api::verification::UnitIndexes::default();
    let (answer, entry) = work(
        Inside {
            store: &store,
            engine: &engine,
            indexes: &indexes,
        },
        &record.principal,
        &digest,
    );
    let mut store = store.into_inner().unwrap_or_else(|e| e.into_inner());
    let seq = store.append_audit(&[entry], &signer)?;
    super::print_answer(answer.map(|mut a| {
        a["audit_seq"] = json!(seq.first());
        a
    }))
}
