//! `veil model train | list | score`: in-domain models as a principal,
//! through the same checks, budget and audit as `/v1/models`; prints the
//! API's JSON.

use std::path::PathBuf;

use clap::Subcommand;
use veil_api::service::active_principal;
use veil_api::service::models::{ScoreBody, TrainBody};

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
            let service = dir.service()?;
            let who = match active_principal(&*service.reader()?, &principal) {
                Ok(r) => r.principal,
                Err(e) => return super::print_answer(Err(e)),
            };
            let audited = service.train(&who, &body, "veil model train");
            super::print_audited(&service, audited, true)
        }
        ModelCommand::List { dir, principal } => {
            let service = dir.service()?;
            let answer = active_principal(&*service.reader()?, &principal)
                .and_then(|r| service.models(&r.principal));
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
            let service = dir.service()?;
            let who = match active_principal(&*service.reader()?, &principal) {
                Ok(r) => r.principal,
                Err(e) => return super::print_answer(Err(e)),
            };
            let audited = service.score(&who, &id, &body, "veil model score");
            super::print_audited(&service, audited, true)
        }
    }
}
