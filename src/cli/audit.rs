//! `veil audit verify` and `veil receipt verify`: checks anyone can run.

use std::path::PathBuf;

use clap::Subcommand;
use veil_api::Store;
use veil_api::receipt;
use veil_api::store::ChainReport;

use super::{DataDirArg, Failure};

#[derive(Subcommand)]
pub enum AuditCommand {
    /// Exit 0 when the audit chain is intact; non-zero, naming the first bad entry, when it is not.
    Verify {
        #[command(flatten)]
        dir: DataDirArg,
    },
}

#[derive(Subcommand)]
pub enum ReceiptCommand {
    /// Check a receipt offline with the service's public key.
    Verify {
        /// The service's public key: hex, or a file holding it (DIR/public.key).
        #[arg(long, value_name = "KEY")]
        public_key: String,
        /// A saved JSON answer: its receipt is checked against its body.
        #[arg(long, value_name = "FILE")]
        answer: Option<PathBuf>,
        /// A receipt (for CSV and Arrow answers, from GET /v1/receipts/{id}).
        receipt: Option<String>,
        /// The body of a CSV or Arrow answer, to check its digest.
        #[arg(long, value_name = "FILE")]
        body: Option<PathBuf>,
    },
}

pub fn run(cmd: AuditCommand) -> Result<(), Failure> {
    match cmd {
        AuditCommand::Verify { dir } => {
            // Opened without the start check, so a cut end is reported
            // with its place rather than refused.
            let store = Store::open_without_chain_checks(&dir.data_dir)?;
            let public = store.data_dir().public_key()?;
            match store.verify_audit(&public)? {
                ChainReport::Intact {
                    entries,
                    checkpoints,
                    head,
                    ledger_rows,
                } => {
                    println!(
                        "the audit chain is intact: {entries} entries, {checkpoints} signed checkpoints, reaching its signed head (entry {head}); the privacy ledger is intact: {ledger_rows} rows"
                    );
                    Ok(())
                }
                ChainReport::Broken { seq: 0, reason } => Err(Failure::Refused(format!(
                    "the audit chain is broken: {reason}"
                ))),
                ChainReport::Broken { seq, reason } => Err(Failure::Refused(format!(
                    "the audit chain is broken at entry {seq}: {reason}"
                ))),
            }
        }
    }
}

pub fn run_receipt(cmd: ReceiptCommand) -> Result<(), Failure> {
    let ReceiptCommand::Verify {
        public_key,
        answer,
        receipt: given,
        body,
    } = cmd;
    let key_text = std::fs::read_to_string(&public_key).unwrap_or(public_key);
    let key = veil_api::signing::unhex(&key_text)
        .ok_or_else(|| Failure::Refused("the public key is not hex".into()))?;
    let outcome = match (answer, given, body) {
        (Some(path), _, _) => {
            let bytes = std::fs::read(&path)?;
            let (digested, found) = receipt::split_json_answer(&bytes)
                .ok_or_else(|| Failure::Refused("the answer carries no receipt".into()))?;
            receipt::check_answer(&found, &key, digested)
        }
        (None, Some(r), Some(path)) => receipt::check_answer(&r, &key, &std::fs::read(&path)?),
        (None, Some(r), None) => receipt::check(&r, &key),
        (None, None, _) => return Err(Failure::Refused("give a receipt or --answer FILE".into())),
    };
    match outcome {
        Ok(claims) => {
            println!(
                "valid receipt: request {} at {}, policy {}, privacy {}, audit entry {}",
                claims.request_id,
                claims.time,
                claims.policy_version,
                claims.privacy,
                claims.audit_seq.map_or("-".into(), |s| s.to_string())
            );
            Ok(())
        }
        Err(e) => Err(Failure::Refused(e.to_string())),
    }
}
