//! `veil verify`: one verification as a principal, through the same checks,
//! limits and audit as `POST /v1/verify`; prints the API's JSON.

use std::path::PathBuf;

use clap::Args;
use serde_json::{Map, Value};
use veil_api::service::{AuditMode, Products, Service, ServiceError, active_principal};
use veil_api::verification::CLI_ENDPOINT;

use super::{DataDirArg, Failure};

#[derive(Args)]
pub struct VerifyArgs {
    #[command(flatten)]
    dir: DataDirArg,
    /// The principal to verify as.
    #[arg(long = "as", value_name = "NAME")]
    principal: String,
    /// The verification product.
    #[arg(long)]
    product: String,
    /// The subject's identifier.
    #[arg(long, required_unless_present = "items", conflicts_with = "items")]
    subject: Option<String>,
    /// A claim as NAME=VALUE; repeat for several.
    #[arg(long = "claim", value_name = "NAME=VALUE", requires = "subject")]
    claims: Vec<String>,
    /// A JSON file with a list of `{"subject": ..., "claims": {...}}` (up to 10,000).
    #[arg(long, value_name = "FILE")]
    items: Option<PathBuf>,
    /// The purpose (application scenario) a grant was approved for.
    #[arg(long)]
    purpose: Option<String>,
}

pub fn run(args: VerifyArgs) -> Result<(), Failure> {
    let mut body = Map::new();
    body.insert("product".into(), Value::String(args.product.clone()));
    if let Some(p) = &args.purpose {
        body.insert("purpose".into(), Value::String(p.clone()));
    }
    match (&args.subject, &args.items) {
        (Some(subject), _) => {
            let mut claims = Map::new();
            for c in &args.claims {
                let Some((name, value)) = c.split_once('=') else {
                    return Err(Failure::Refused(format!(
                        "--claim `{}` is not NAME=VALUE",
                        c.split('=').next().unwrap_or_default()
                    )));
                };
                claims.insert(name.trim().to_owned(), Value::String(value.to_owned()));
            }
            body.insert("subject".into(), Value::String(subject.clone()));
            body.insert("claims".into(), Value::Object(claims));
        }
        (None, Some(file)) => {
            let text = std::fs::read_to_string(file)?;
            let items: Value = serde_json::from_str(&text)
                .map_err(|e| Failure::Refused(format!("{} is not JSON: {e}", file.display())))?;
            body.insert("items".into(), items);
        }
        (None, None) => unreachable!("clap requires --subject or --items"),
    }
    let product = args.product.clone();
    let service = Service::open_with(
        &args.dir.data_dir,
        AuditMode::Direct,
        Products::Only(&product),
    )?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    super::print_answer(runtime.block_on(async {
        let caller = active_principal(&service.store(), &args.principal)?;
        let answer = service
            .verify(&caller.principal, CLI_ENDPOINT, Ok(Value::Object(body)))
            .await?;
        serde_json::from_str(&answer.0).map_err(ServiceError::internal)
    }))
}
