//! `veil records`: a subject principal's own records (Art. 24), audited like
//! `GET /v1/me/records`.

use clap::Args;
use veil_api::service::ServiceError;

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
    let service = args.dir.service()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    super::print_answer(runtime.block_on(async {
        let Some(record) = service.store().principal(&args.principal)? else {
            return Err(ServiceError::not_found(format!(
                "no principal named `{}`",
                args.principal
            )));
        };
        service.own_records(&record.principal, "veil records").await
    }))
}
