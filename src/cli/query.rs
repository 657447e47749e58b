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
    /// Ask for a differentially private answer that alone is ε-DP.
    #[arg(long)]
    epsilon: Option<f64>,
    /// L0: groups one privacy unit may contribute to.
    #[arg(long, default_value_t = 1, requires = "epsilon")]
    max_groups: u64,
    /// Linf: rows one privacy unit may contribute to a group.
    #[arg(long, default_value_t = 1, requires = "epsilon")]
    max_rows: u64,
    /// Print the cost and the expected error without running or spending.
    #[arg(long, requires = "epsilon")]
    dry_run: bool,
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
        args.epsilon.map(|epsilon| {
            (
                veil_engine::DpOptions {
                    epsilon,
                    max_groups: args.max_groups,
                    max_rows: args.max_rows,
                },
                args.dry_run,
            )
        }),
    ));
    super::print_answer(outcome)
}
