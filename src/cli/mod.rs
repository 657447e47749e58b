//! The command line: one module per command group.

mod audit;
mod backup;
mod calendar;
mod datasets;
mod demo;
mod init;
mod model;
mod policy;
mod principal;
mod query;
mod records;
mod request;
mod serve;
mod verify;

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use veil_api::StoreError;

#[derive(Parser)]
#[command(
    name = "veil",
    version,
    about = "A privacy-preserving public-data service: usable but not visible"
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Generate and register the sample data, create demo principals, print how to use them.
    Demo(demo::DemoArgs),
    /// Set up a data directory with its data authority (set once).
    Init(init::InitArgs),
    /// Generate, register and list datasets.
    #[command(subcommand)]
    Datasets(datasets::DatasetsCommand),
    /// Check and load policy files.
    #[command(subcommand)]
    Policy(policy::PolicyCommand),
    /// Create, list and revoke principals.
    #[command(subcommand)]
    Principal(principal::PrincipalCommand),
    /// Record grants (approved sharing requests).
    #[command(subcommand)]
    Grant(principal::GrantCommand),
    /// Run one query as a principal, through the policy stage; prints the API's JSON.
    Query(query::QueryArgs),
    /// The regulation's requests: sharing, open data, correction, complaint, emergency data, catalog change, qualification.
    #[command(subcommand)]
    Request(request::RequestCommand),
    /// A subject principal's own records across datasets (Art. 24).
    Records(records::RecordsArgs),
    /// Verify claims about a subject through a verification product; prints the API's JSON.
    Verify(verify::VerifyArgs),
    /// Train, list and score in-domain models (Art. 32, 39); prints the API's JSON.
    #[command(subcommand)]
    Model(model::ModelCommand),
    /// Serve the HTTP API.
    Serve(serve::ServeArgs),
    /// Check the audit log.
    #[command(subcommand)]
    Audit(audit::AuditCommand),
    /// Back up a deployment, while it runs, into one file (store, keys, signed heads).
    Backup(backup::BackupArgs),
    /// Rebuild a data directory from a backup, after checking all of it.
    Restore(backup::RestoreArgs),
    /// Check receipts offline.
    #[command(subcommand)]
    Receipt(audit::ReceiptCommand),
    /// Working days on the State Council's calendar.
    #[command(subcommand)]
    Calendar(calendar::CalendarCommand),
}

/// The data directory, from `--data-dir` or `VEIL_DATA_DIR`.
#[derive(clap::Args, Clone)]
pub struct DataDirArg {
    /// The deployment's data directory; created and initialised when missing.
    #[arg(long = "data-dir", env = "VEIL_DATA_DIR", value_name = "DIR")]
    pub data_dir: PathBuf,
}

impl DataDirArg {
    /// The service over the data directory, for one command: no products'
    /// tables, one audit transaction per entry.
    pub fn service(&self) -> Result<veil_api::service::Service, Failure> {
        Ok(veil_api::service::Service::open_with(
            &self.data_dir,
            veil_api::service::AuditMode::Direct,
            veil_api::service::Products::None,
        )?)
    }
}

pub fn run(cli: Cli) -> Result<(), Failure> {
    match cli.command {
        Command::Demo(args) => demo::run(args),
        Command::Init(args) => init::run(args),
        Command::Datasets(cmd) => datasets::run(cmd),
        Command::Policy(cmd) => policy::run(cmd),
        Command::Principal(cmd) => principal::run(cmd),
        Command::Grant(cmd) => principal::run_grant(cmd),
        Command::Query(args) => query::run(args),
        Command::Verify(args) => verify::run(args),
        Command::Records(args) => records::run(args),
        Command::Request(cmd) => request::run(cmd),
        Command::Model(cmd) => model::run(cmd),
        Command::Serve(args) => serve::run(args),
        Command::Audit(cmd) => audit::run(cmd),
        Command::Backup(args) => backup::backup(args),
        Command::Restore(args) => backup::restore(args),
        Command::Receipt(cmd) => audit::run_receipt(cmd),
        Command::Calendar(cmd) => calendar::run(cmd),
    }
}

/// Why a command did not succeed: what to print and which exit code.
#[derive(Debug)]
pub enum Failure {
    /// Refused: the input or the request is not acceptable. Exit 1.
    Refused(String),
    /// Something broke. Exit 1.
    Failed(String),
    /// A refusal already formatted as the API's error JSON, for stdout. Exit 1.
    Answer(String),
}

impl Failure {
    pub fn exit_code(&self) -> u8 {
        1
    }

    pub fn report(&self) {
        match self {
            Failure::Refused(m) => eprintln!("veil: refused:\n{}", indent(m)),
            Failure::Failed(m) => eprintln!("veil: failed: {m}"),
            Failure::Answer(json) => println!("{json}"),
        }
    }
}

/// Prints an answer as the API's JSON, or turns its error JSON into the
/// failure that prints it.
fn print_answer(
    outcome: Result<serde_json::Value, veil_api::service::ServiceError>,
) -> Result<(), Failure> {
    let (json, ok) = match &outcome {
        Ok(answer) => (answer.clone(), true),
        Err(e) => (e.to_json(), false),
    };
    let text = serde_json::to_string_pretty(&json).unwrap_or_default();
    if ok {
        println!("{text}");
        Ok(())
    } else {
        Err(Failure::Answer(text))
    }
}

/// Writes a use case's audit entry, then prints its answer (with the
/// entry's sequence number when `with_seq`) or its refusal.
fn print_audited<T: serde::Serialize>(
    service: &veil_api::service::Service,
    audited: veil_api::service::Audited<T>,
    with_seq: bool,
) -> Result<(), Failure> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let settled = runtime.block_on(service.settle(audited));
    print_answer(settled.and_then(|(value, seq)| {
        let mut json =
            serde_json::to_value(value).map_err(veil_api::service::ServiceError::internal)?;
        if with_seq && json.is_object() {
            json["audit_seq"] = serde_json::json!(seq);
        }
        Ok(json)
    }))
}

/// Records an operator's command in the audit log: the operator acts on
/// the data directory from the host, outside any principal's scope, and
/// the log says so.
fn operator_audit(
    store: &mut veil_api::Store,
    endpoint: &str,
    request: String,
    datasets: Vec<String>,
) -> Result<(), Failure> {
    let signer = store.data_dir().signer()?;
    let entry = veil_api::store::AuditEntry {
        principal: "cli".into(),
        role: "operator".into(),
        endpoint: endpoint.into(),
        request,
        datasets,
        privacy: "{}".into(),
        outcome: "ok".into(),
        ..Default::default()
    };
    store.append_audit(&[entry], &signer)?;
    Ok(())
}

fn indent(text: &str) -> String {
    text.lines()
        .map(|l| format!("  {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

impl From<StoreError> for Failure {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Invalid(_) | StoreError::Conflict(_) | StoreError::NotFound(_) => {
                Failure::Refused(e.to_string())
            }
            other => Failure::Failed(other.to_string()),
        }
    }
}

impl From<veil_datasets::GenerateError> for Failure {
    fn from(e: veil_datasets::GenerateError) -> Self {
        Failure::Failed(e.to_string())
    }
}

impl From<std::io::Error> for Failure {
    fn from(e: std::io::Error) -> Self {
        Failure::Failed(e.to_string())
    }
}
