//! `veil principal add | revoke | list` and `veil grant add`.

use clap::Subcommand;
use veil_api::Store;
use veil_api::store::NewPrincipal;
use veil_policies::Role;

use super::{DataDirArg, Failure};

#[derive(Subcommand)]
pub enum PrincipalCommand {
    /// Create a principal; its API key is printed, alone, as the last line of stdout.
    Add {
        #[command(flatten)]
        dir: DataDirArg,
        #[arg(long)]
        name: String,
        /// consumer, modeler, approver, admin or subject.
        #[arg(long)]
        role: String,
        /// The organisation the principal acts for.
        #[arg(long)]
        org: Option<String>,
        /// A division code (530100 is Kunming): only rows of this region are visible.
        #[arg(long)]
        region: Option<String>,
        /// For a subject: the identity number or credit code it stands for.
        #[arg(long)]
        subject: Option<String>,
    },
    /// Revoke every key of a principal at once.
    Revoke {
        #[command(flatten)]
        dir: DataDirArg,
        #[arg(long)]
        name: String,
    },
    /// List principals (never their keys).
    List {
        #[command(flatten)]
        dir: DataDirArg,
    },
}

#[derive(Subcommand)]
pub enum GrantCommand {
    /// Grant a principal access to fields of a dataset for one purpose.
    Add {
        #[command(flatten)]
        dir: DataDirArg,
        #[arg(long)]
        principal: String,
        #[arg(long)]
        dataset: String,
        /// The application scenario the access is for (Art. 28).
        #[arg(long)]
        purpose: String,
        /// Comma-separated field names; all fields when omitted.
        #[arg(long, value_delimiter = ',')]
        fields: Option<Vec<String>>,
        /// Days until the grant expires.
        #[arg(long, default_value_t = 90)]
        days: u32,
    },
}

pub fn run(cmd: PrincipalCommand) -> Result<(), Failure> {
    match cmd {
        PrincipalCommand::Add {
            dir,
            name,
            role,
            org,
            region,
            subject,
        } => {
            let role: Role = role.parse().map_err(Failure::Refused)?;
            let mut store = Store::open(&dir.data_dir)?;
            let (record, key) = store.add_principal(&NewPrincipal {
                name: &name,
                role,
                org: org.as_deref(),
                region: region.as_deref(),
                subject: subject.as_deref(),
            })?;
            println!(
                "created {} `{}`; its API key follows and is shown only once",
                record.principal.role, record.principal.name
            );
            println!("{}", key.expose());
            Ok(())
        }
        PrincipalCommand::Revoke { dir, name } => {
            let mut store = Store::open(&dir.data_dir)?;
            let n = store.revoke_keys(&name)?;
            println!("revoked {n} key(s) of `{name}`");
            Ok(())
        }
        PrincipalCommand::List { dir } => {
            let store = Store::open(&dir.data_dir)?;
            for r in store.principals()? {
                let p = &r.principal;
                println!(
                    "{:<20} {:<9} {:<9} region {:<7} grants {:<3} org {}",
                    p.name,
                    p.role.name(),
                    format!("{:?}", r.status).to_lowercase(),
                    p.region.as_ref().map_or("-", |s| s.code()),
                    p.grants.len(),
                    p.org.as_deref().unwrap_or("-")
                );
            }
            Ok(())
        }
    }
}

pub fn run_grant(cmd: GrantCommand) -> Result<(), Failure> {
    match cmd {
        GrantCommand::Add {
            dir,
            principal,
            dataset,
            purpose,
            fields,
            days,
        } => {
            if purpose.trim().is_empty() {
                return Err(Failure::Refused("a grant needs a purpose (Art. 28)".into()));
            }
            let mut store = Store::open(&dir.data_dir)?;
            let expires = chrono::Utc::now() + chrono::Duration::days(i64::from(days));
            let grant =
                store.add_grant(&principal, &dataset, fields.as_deref(), &purpose, expires)?;
            super::operator_audit(
                &mut store,
                "veil grant add",
                format!("grant {} to {principal} for {purpose}", grant.id),
                vec![dataset.clone()],
            )?;
            println!(
                "granted {} to `{principal}` on `{dataset}` for `{purpose}` until {}",
                grant.id,
                grant.expires_at.format("%Y-%m-%d")
            );
            Ok(())
        }
    }
}
