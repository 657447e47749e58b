//! `veil backup` and `veil restore` (Art. 43(7): disaster recovery): a
//! consistent snapshot of a running deployment, and a new data directory
//! rebuilt from one after every check.

use std::path::PathBuf;

use clap::Args;

use super::{DataDirArg, Failure};

#[derive(Args)]
pub struct BackupArgs {
    #[command(flatten)]
    dir: DataDirArg,
    /// The backup file to write; it must not exist. It holds the service's
    /// secrets: keep it as the data directory is kept.
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
}

#[derive(Args)]
pub struct RestoreArgs {
    /// The backup file `veil backup` wrote.
    #[arg(long, value_name = "FILE")]
    from: PathBuf,
    /// The data directory to rebuild; it must not hold a deployment.
    #[arg(long = "data-dir", env = "VEIL_DATA_DIR", value_name = "DIR")]
    data_dir: PathBuf,
}

pub fn backup(args: BackupArgs) -> Result<(), Failure> {
    let report = veil_api::backup::backup(&args.dir.data_dir, &args.out)?;
    println!(
        "backed up deployment {} to {}: {} bytes in {:.2} s; the audit log to its signed head (entry {}), the ledger to row {}, {} datasets' catalog entries (their files stay where they were registered)",
        report.deployment,
        report.file.display(),
        report.bytes,
        report.seconds,
        report.audit_head,
        report.ledger_head,
        report.datasets
    );
    Ok(())
}

pub fn restore(args: RestoreArgs) -> Result<(), Failure> {
    let report = veil_api::backup::restore(&args.from, &args.data_dir)?;
    println!(
        "restored deployment {} (backup of {}) into {}: the audit chain is intact ({} entries, reaching its signed head, entry {}), the privacy ledger is intact ({} rows)",
        report.deployment,
        report.taken_at,
        args.data_dir.display(),
        report.entries,
        report.audit_head,
        report.ledger_rows
    );
    println!(
        "datasets' files in place and unchanged: {}",
        report.data_unchanged.len()
    );
    for (dataset, why) in &report.data_missing {
        println!("  {dataset}: {why}; it is not served until it is registered again");
    }
    Ok(())
}
