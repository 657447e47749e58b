//! `veil records`: a subject principal's own records (Art. 24), audited like
//! `GET /v1/me/records`.

use clap::Args;
use veil_api::Store;
use veil_api::service::{load_engine, own_records};
use veil_api::wire::{ApiError, ErrorCode};

use super::{DataDirArg, Failure};

#[derive(Args)]
pub struct RecordsArgs {
    #[command(flatten)]
    dir: DataDirArg,
    /// The subject principal.
    #[arg(long = "as", value_name = "NAME")]
    principal: String,
}

pub fn run(args: RecordsArgs) -> Result<(), Failure> {
    let mut store = Store::open(&args.dir.data_dir)?;
    let Some(record) = store.principal(&args.principal)? else {
        return super::print_answer(Err(ApiError::new(
            ErrorCode::NotFound,
            format!("no principal named `{}`", args.principal),
        )));
    };
    let engine = load_engine(&store)?.engine;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let outcome = runtime.block_on(own_records(&engine, &record.principal, "veil records"));
    let signer = store.data_dir().signer()?;
    match outcome {
        Ok((mut json, entry)) => {
            let seq = store.append_audit(&[entry], &signer)?;
            json["audit_seq"] = serde_json::json!(seq.first());
            super::print_answer(Ok(json))
        }
        Err(e) => super::print_answer(Err(e)),
    }
}
