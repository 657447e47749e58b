//! `veil init`: a data directory and its data authority (公共数据主管部门,
//! Art. 6-7), set once. Every manifest registered there must name it as its
//! approving institution; its approvers review catalogs, grant
//! qualifications and change the policy (two of them).

use clap::Args;
use veil_api::Store;

use super::{DataDirArg, Failure};

#[derive(Args)]
pub struct InitArgs {
    #[command(flatten)]
    dir: DataDirArg,
    /// The data authority's name, as approvers' `--org` and manifests'
    /// `approving_institution` give it.
    #[arg(long)]
    authority: String,
}

pub fn run(args: InitArgs) -> Result<(), Failure> {
    let mut store = Store::open(&args.dir.data_dir)?;
    store.set_authority(&args.authority)?;
    println!(
        "{} is set up; its data authority is `{}`",
        store.data_dir().root().display(),
        args.authority.trim()
    );
    Ok(())
}
