//! `veil policy check | load`.

use std::path::PathBuf;

use clap::Subcommand;
use veil_api::Store;
use veil_api::service::active_principal;
use veil_policies::{DatasetManifest, Policy};

use super::{DataDirArg, Failure};

#[derive(Subcommand)]
pub enum PolicyCommand {
    /// Validate policy files (and catalog manifests, against those policies or the default preset).
    Check {
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
    },
    /// Check a policy file and propose it as an approver of the data
    /// authority (`--as`): a second approver makes it active. Without
    /// `--as`, load it at once: only while the authority has no approvers
    /// (setting a data directory up).
    Load {
        #[command(flatten)]
        dir: DataDirArg,
        /// The approver of the data authority proposing it.
        #[arg(long = "as", value_name = "NAME")]
        principal: Option<String>,
        file: PathBuf,
    },
}

pub fn run(cmd: PolicyCommand) -> Result<(), Failure> {
    match cmd {
        PolicyCommand::Check { files } => check(&files),
        PolicyCommand::Load {
            dir,
            principal,
            file,
        } => {
            let text = std::fs::read_to_string(&file)
                .map_err(|e| Failure::Refused(format!("{}: {e}", file.display())))?;
            if let Some(name) = principal {
                let service = dir.service()?;
                let who = match active_principal(&*service.reader()?, &name) {
                    Ok(r) => r.principal,
                    Err(e) => return super::print_answer(Err(e)),
                };
                let audited = service.propose_policy(&who, &text, "veil policy load");
                return super::print_audited(&service, audited, false);
            }
            let mut store = Store::open(&dir.data_dir)?;
            if let Some(approver) = authority_approver(&store)? {
                return Err(Failure::Refused(format!(
                    "the data authority has approvers (`{approver}`): a policy change is proposed by one (`--as NAME`) and made active by a second"
                )));
            }
            let active = store.load_policy(&text, "cli")?;
            // The policy stands whatever happens here: a missing index is
            // built again when the service loads.
            if let Err(e) = veil_api::indexes::build_indexes(&store, None) {
                eprintln!("veil: the subject indexes could not all be built: {e}");
            }
            println!(
                "loaded policy `{}` as {}",
                active.policy.name,
                active.label()
            );
            Ok(())
        }
    }
}

/// An approver of the data authority, if the deployment has one.
fn authority_approver(store: &Store) -> Result<Option<String>, Failure> {
    let Some(authority) = store.authority()? else {
        return Ok(None);
    };
    Ok(store
        .principals()?
        .into_iter()
        .find(|r| {
            r.principal.role == veil_policies::Role::Approver
                && r.principal.org.as_deref() == Some(authority.as_str())
        })
        .map(|r| r.principal.name))
}

/// Checks every file and reports every problem of every file. A file with a
/// `[dataset]` table is a catalog manifest; its grades are checked against
/// the policies among `files`, or the default preset when there are none.
fn check(files: &[PathBuf]) -> Result<(), Failure> {
    let mut texts = Vec::new();
    let mut report = Vec::new();
    for file in files {
        match std::fs::read_to_string(file) {
            Ok(text) => texts.push((file, text)),
            Err(e) => report.push(format!("{}: cannot be read: {}", file.display(), e.kind())),
        }
    }
    let is_manifest = |text: &str| text.lines().any(|l| l.trim() == "[dataset]");
    let mut policies = Vec::new();
    for (file, text) in texts.iter().filter(|(_, t)| !is_manifest(t)) {
        match Policy::parse(text) {
            Ok(p) => {
                println!(
                    "{}: ok (policy `{}`, {} grades, {} verification products, digest {})",
                    file.display(),
                    p.name,
                    p.grades.len(),
                    p.products.len(),
                    p.digest()
                );
                policies.push((file, p));
            }
            Err(problems) => report.extend(
                problems
                    .0
                    .iter()
                    .map(|p| format!("{}: {p}", file.display())),
            ),
        }
    }
    let preset = Policy::default_preset();
    let checked_policies: Vec<&Policy> = if policies.is_empty() {
        vec![&preset]
    } else {
        policies.iter().map(|(_, p)| p).collect()
    };
    let grade_known = |g: &str| checked_policies.iter().any(|p| p.grade(g).is_some());
    for (file, text) in texts.iter().filter(|(_, t)| is_manifest(t)) {
        match DatasetManifest::parse(text, &grade_known) {
            Ok(m) => {
                println!(
                    "{}: ok (manifest `{}`, {} fields)",
                    file.display(),
                    m.name,
                    m.fields.len()
                );
                // Products of the policies given that read this dataset.
                for (policy_file, policy) in &policies {
                    for product in policy.products.iter().filter(|p| p.dataset == m.name) {
                        report.extend(
                            product
                                .check_against(&m)
                                .iter()
                                .map(|p| format!("{}: {p}", policy_file.display())),
                        );
                    }
                }
            }
            Err(problems) => report.extend(
                problems
                    .0
                    .iter()
                    .map(|p| format!("{}: {p}", file.display())),
            ),
        }
    }
    if report.is_empty() {
        Ok(())
    } else {
        Err(Failure::Refused(report.join("\n")))
    }
}
