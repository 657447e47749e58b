//! `veil request`: the regulation's requests from the command line, with
//! the same checks, effects and audit as `/v1/requests`.

use std::collections::BTreeMap;

use chrono::{NaiveDate, Utc};
use clap::Subcommand;
use veil_api::Store;
use veil_api::service::ServiceError;
use veil_api::service::requests::{self, OpenBody};

use super::{DataDirArg, Failure};

#[derive(Subcommand)]
pub enum RequestCommand {
    /// Open a request as a principal.
    Open {
        #[command(flatten)]
        dir: DataDirArg,
        #[arg(long = "as", value_name = "NAME")]
        principal: String,
        /// sharing, open_data, correction, complaint, emergency_data, catalog_change or qualification.
        #[arg(long)]
        kind: String,
        #[arg(long)]
        dataset: Option<String>,
        #[arg(long)]
        purpose: Option<String>,
        /// Comma-separated fields (sharing and open data; default: all).
        #[arg(long, value_delimiter = ',')]
        fields: Option<Vec<String>>,
        #[arg(long)]
        days: Option<u32>,
        /// KEY=VALUE, repeated: what the request says.
        #[arg(long = "detail", value_name = "KEY=VALUE")]
        detail: Vec<String>,
        /// A correction filed with the data authority.
        #[arg(long)]
        via_authority: bool,
    },
    /// Take a step on a request as a principal.
    Act {
        #[command(flatten)]
        dir: DataDirArg,
        #[arg(long = "as", value_name = "NAME")]
        principal: String,
        #[arg(long)]
        id: String,
        #[arg(long)]
        action: String,
        /// KEY=VALUE, repeated: what the step records (legal_basis, answer, agreement, ...).
        #[arg(long = "note", value_name = "KEY=VALUE")]
        notes: Vec<String>,
    },
    /// Every request with its state and deadline.
    List {
        #[command(flatten)]
        dir: DataDirArg,
    },
    /// Open requests past their deadline on TODAY (default: today, China Standard Time).
    Overdue {
        #[command(flatten)]
        dir: DataDirArg,
        #[arg(long)]
        today: Option<NaiveDate>,
    },
}

fn pairs(items: &[String], what: &str) -> Result<BTreeMap<String, String>, Failure> {
    items
        .iter()
        .map(|item| match item.split_once('=') {
            Some((k, v)) => Ok((k.trim().to_owned(), v.to_owned())),
            None => Err(Failure::Refused(format!("--{what} takes KEY=VALUE"))),
        })
        .collect()
}

/// The principal to act as: an active one, as the API would require.
fn principal(store: &Store, name: &str) -> Result<veil_policies::Principal, Failure> {
    veil_api::service::active_principal(store, name)
        .map(|r| r.principal)
        .map_err(|e| Failure::Refused(e.message))
}

fn print_list(records: &[veil_api::store::RequestRecord]) {
    for r in records {
        println!(
            "{}  {:<15} {:<20} {:<18} {:<12} due {}",
            r.id,
            r.kind.name(),
            r.state,
            r.dataset.as_deref().unwrap_or("-"),
            r.applicant,
            r.due.map_or("-".into(), |d| d.to_string())
        );
    }
}

pub fn run(cmd: RequestCommand) -> Result<(), Failure> {
    match cmd {
        RequestCommand::Open {
            dir,
            principal: name,
            kind,
            dataset,
            purpose,
            fields,
            days,
            detail,
            via_authority,
        } => {
            let service = dir.service()?;
            let who = principal(&*service.reader()?, &name)?;
            let body = OpenBody {
                kind,
                dataset,
                purpose,
                fields,
                days,
                detail: pairs(&detail, "detail")?,
                via_authority,
            };
            let audited = service.open_request(&who, &body, "veil request");
            super::print_audited(&service, audited, false)
        }
        RequestCommand::Act {
            dir,
            principal: name,
            id,
            action,
            notes,
        } => {
            let service = dir.service()?;
            let who = principal(&*service.reader()?, &name)?;
            let notes = pairs(&notes, "note")?;
            let audited = service.act_on_request(&who, &id, &action, &notes, "veil request");
            super::print_audited(&service, audited, false)
        }
        RequestCommand::List { dir } => {
            let store = Store::open(&dir.data_dir)?;
            print_list(&store.requests()?);
            Ok(())
        }
        RequestCommand::Overdue { dir, today } => {
            let service = dir.service()?;
            let today = today.unwrap_or_else(|| requests::today(Utc::now()));
            let admin = veil_policies::Principal::new("cli", veil_policies::Role::Admin);
            let records = service
                .overdue_requests(&admin, today)
                .map_err(|e: ServiceError| {
                    Failure::Failed(format!("{}: {}", e.code.as_str(), e.message))
                })?;
            print_list(&records);
            if records.is_empty() {
                eprintln!("veil: no request is overdue on {today}");
            }
            Ok(())
        }
    }
}
