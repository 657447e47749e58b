//! `veil query`: one query through the same policy stage as the API.

use clap::Args;
use veil_api::Store;
use veil_api::service::{load_engine, query_as};

use super::{DataDirArg, Failure};

#[derive(Args)]
pub struct QueryArgs {
    #[command(flatten)]
    dir: DataDirArg,
    /// The principal to ask as.
    #[arg(long = "as", value_name = "NAME")]
    principal: String,
    /// One SELECT statement.
    #[arg(long)]
    sql: String,
    /// The purpose (application scenario) a grant was approved for.
    #[arg(long)]
    purpose: Option<String>,
}

pub fn run(args: QueryArgs) -> Result<(), Failure> {
    let mut store = Store::open(&args.dir.data_dir)?;
    let loaded = load_engine(&store)?;
    for (name, why) in &loaded.skipped {
        eprintln!("veil: dataset `{name}` is unavailable: {why}");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let outcome = runtime.block_on(query_as(
        &mut store,
        &loaded.engine,
        &args.principal,
        &args.sql,
        args.purpose.as_deref(),
    ));
    match outcome {
        Ok(answer) => {
            println!(
                "{}",
                serde_json::to_string_pretty(&answer).unwrap_or_default()
            );
            Ok(())
        }
        Err(e) => Err(Failure::Answer(
            serde_json::to_string_pretty(&e.to_json()).unwrap_or_default(),
        )),
    }
}
