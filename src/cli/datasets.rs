//! `veil datasets generate | register | list`.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::Instant;

use clap::Subcommand;
use indicatif::{ProgressBar, ProgressStyle};
use veil_api::Store;
use veil_api::registry;
use veil_datasets::{DEFAULT_PERSONS, DEFAULT_SEED, Options, TableSummary};

use super::{DataDirArg, Failure};

#[derive(Subcommand)]
pub enum DatasetsCommand {
    /// Write the synthetic sample datasets as Parquet with their catalog manifests.
    Generate {
        /// Output directory (created when missing).
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// Number of persons in `population`; the other tables scale with it.
        #[arg(long, default_value_t = DEFAULT_PERSONS)]
        persons: u64,
        /// Same seed, same bytes.
        #[arg(long, default_value_t = DEFAULT_SEED)]
        seed: u64,
    },
    /// Register a Parquet or CSV dataset described by a catalog manifest.
    Register {
        #[command(flatten)]
        dir: DataDirArg,
        /// The data file, when it is not the one the manifest names next to itself.
        #[arg(long, value_name = "PATH")]
        file: Option<PathBuf>,
        /// The catalog manifest (TOML; see datasets/README.md).
        manifest: PathBuf,
    },
    /// List the registered datasets.
    List {
        #[command(flatten)]
        dir: DataDirArg,
    },
}

pub fn run(cmd: DatasetsCommand) -> Result<(), Failure> {
    match cmd {
        DatasetsCommand::Generate { out, persons, seed } => {
            let summary = generate(&out, &Options { persons, seed })?;
            print_summary(&summary);
            Ok(())
        }
        DatasetsCommand::Register {
            dir,
            file,
            manifest,
        } => {
            let mut store = Store::open(&dir.data_dir)?;
            let outcome = registry::register(&mut store, &manifest, file.as_deref(), "cli")?;
            let d = &outcome.dataset;
            if outcome.changed {
                super::operator_audit(
                    &mut store,
                    "veil datasets register",
                    format!("register {} v{}", d.manifest.name, d.version),
                    vec![d.manifest.name.clone()],
                )?;
            }
            let verb = if outcome.changed {
                "registered"
            } else {
                "already registered, unchanged:"
            };
            println!(
                "{verb} {} version {} ({} rows, {} fields, sha256 {})",
                d.manifest.name,
                d.version,
                d.rows,
                d.manifest.fields.len(),
                &d.file_sha256[..16]
            );
            Ok(())
        }
        DatasetsCommand::List { dir } => {
            let store = Store::open(&dir.data_dir)?;
            let datasets = store.datasets()?;
            if datasets.is_empty() {
                println!("no datasets registered");
            }
            for d in datasets {
                println!(
                    "{:<18} v{:<3} {:>10} rows  share {:<13} open {:<13} {}",
                    d.manifest.name,
                    d.version,
                    d.rows,
                    d.manifest.share.attribute,
                    d.manifest.open.attribute,
                    d.manifest.title
                );
            }
            Ok(())
        }
    }
}

/// Generates with a progress bar when stderr is a terminal.
pub fn generate(out: &Path, options: &Options) -> Result<Vec<TableSummary>, Failure> {
    let started = Instant::now();
    let bar = if std::io::stderr().is_terminal() {
        let bar = ProgressBar::new(options.persons);
        bar.set_style(
            ProgressStyle::with_template(
                "{spinner} generating {pos}/{len} persons [{bar:30}] {percent}% eta {eta}",
            )
            .expect("valid template")
            .progress_chars("=> "),
        );
        bar
    } else {
        ProgressBar::hidden()
    };
    let summary = veil_datasets::generate(out, options, &|n| bar.inc(n));
    bar.finish_and_clear();
    let summary = summary?;
    eprintln!(
        "generated {} persons into {} in {:.1} s",
        options.persons,
        out.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(summary)
}

fn print_summary(summary: &[TableSummary]) {
    for t in summary {
        println!(
            "{:<18} {:>12} rows {:>10.1} MB",
            t.name,
            t.rows,
            t.bytes as f64 / 1e6
        );
    }
}
