//! `veil query`: one query through the same policy stage as the API.

use clap::Args;
use veil_api::service::pool::QueryPool;
use veil_api::service::query::{QueryInput, QueryOutcome, Release};
use veil_api::service::{Service, ServiceError, active_principal};
use veil_api::wire;

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
    /// With --dry-run: a 95% half-width to reach; each noisy column says
    /// the smallest ε that reaches it.
    #[arg(long, requires = "dry_run")]
    target_ci95: Option<f64>,
    /// Estimate every aggregate's clamping bounds under DP from a share of
    /// ε, declared ones too.
    #[arg(long, requires = "epsilon")]
    auto_bounds: bool,
    /// Give each noisy cell a 95% interval (`{column}_ci95_lo`, `_hi`).
    #[arg(long, requires = "epsilon")]
    intervals: bool,
}

pub fn run(args: QueryArgs) -> Result<(), Failure> {
    let service = args.dir.service()?;
    for (name, why) in &service.skipped {
        eprintln!("veil: dataset `{name}` is unavailable: {why}");
    }
    let input = QueryInput {
        sql: args.sql,
        purpose: args.purpose,
        epsilon: args.epsilon,
        max_groups: args.epsilon.map(|_| args.max_groups),
        max_rows: args.epsilon.map(|_| args.max_rows),
        dry_run: args.dry_run,
        target_ci95: args.target_ci95,
        auto_bounds: args.auto_bounds,
        intervals: args.intervals,
        request_id: None,
    };
    // On the query pool's deep stacks, as in the server.
    let pool = QueryPool::new()?;
    let service = std::sync::Arc::new(service);
    let principal = args.principal;
    let outcome = pool.block_on(async move {
        let caller = active_principal(&service.store(), &principal)?;
        let outcome = service
            .query(&caller.principal, ENDPOINT, &input, TIMEOUT)
            .await?;
        match outcome {
            QueryOutcome::DryRun(price) => Ok(price),
            QueryOutcome::Released(release) => collect(&service, *release).await,
        }
    });
    super::print_answer(outcome.and_then(|answer| answer))
}

const ENDPOINT: &str = "veil query";

/// How long planning may take.
const TIMEOUT: std::time::Duration = std::time::Duration::from_secs(600);

/// Reads the whole answer, records the completion and returns the
/// answer's JSON.
async fn collect(service: &Service, release: Release) -> Result<serde_json::Value, ServiceError> {
    let whole = release.collect(service).await?;
    let mut json = wire::answer(&whole.prepared, &whole.schema, &whole.batches);
    json["truncated"] = serde_json::json!(whole.truncated);
    json["audit_seq"] = serde_json::json!(whole.claims.audit_seq);
    Ok(json)
}
