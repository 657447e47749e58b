//! `veil demo`: from nothing to a working deployment in one command.

use std::path::{Path, PathBuf};

use veil_api::Store;
use veil_api::datadir::write_private;
use veil_api::registry;
use veil_api::service::requests::OpenBody;
use veil_api::service::{AuditMode, Products, Service, ServiceError};
use veil_api::store::NewPrincipal;
use veil_datasets::{DEFAULT_PERSONS, DEFAULT_SEED, Options, TABLES, pums};
use veil_policies::Role;

use super::Failure;

#[derive(clap::Args)]
pub struct DemoArgs {
    /// The demo's data directory; reused when it exists.
    #[arg(
        long = "data-dir",
        env = "VEIL_DATA_DIR",
        default_value = "veil-demo",
        value_name = "DIR"
    )]
    data_dir: PathBuf,
    /// Persons in the generated sample, when it has to be generated.
    #[arg(long, default_value_t = DEFAULT_PERSONS)]
    persons: u64,
    /// Address to serve on; port 0 picks a free one.
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: std::net::SocketAddr,
    /// Address to serve Arrow Flight SQL on (ADBC, JDBC and ODBC drivers,
    /// BI tools); port 0 picks a free one.
    #[arg(long, default_value = "127.0.0.1:50051")]
    flight_sql: std::net::SocketAddr,
    /// Set everything up and exit without serving.
    #[arg(long)]
    no_serve: bool,
}

struct DemoPrincipal {
    name: &'static str,
    role: Role,
    org: &'static str,
    region: Option<&'static str>,
}

/// The demo's data authority: every sample manifest's approving institution.
pub const AUTHORITY: &str = "云南省数据局 (Yunnan Provincial Data Bureau)";

/// The providing institution of `social_insurance`, whose approver the demo
/// has.
pub const PROVIDER: &str =
    "云南省人力资源和社会保障厅 (Yunnan Department of Human Resources and Social Security)";

const PRINCIPALS: [DemoPrincipal; 8] = [
    DemoPrincipal {
        name: "demo-consumer",
        role: Role::Consumer,
        org: "云南省民政厅 (Yunnan Civil Affairs Department)",
        region: None,
    },
    DemoPrincipal {
        name: "demo-kunming",
        role: Role::Consumer,
        org: "昆明市民政局 (Kunming Civil Affairs Bureau)",
        region: Some("530100"),
    },
    DemoPrincipal {
        name: "demo-modeler",
        role: Role::Modeler,
        org: "滇数科技 (a qualified second-tier developer)",
        region: None,
    },
    DemoPrincipal {
        name: "demo-approver",
        role: Role::Approver,
        org: AUTHORITY,
        region: None,
    },
    // A second approver of the authority: policy changes take two.
    DemoPrincipal {
        name: "demo-reviewer",
        role: Role::Approver,
        org: AUTHORITY,
        region: None,
    },
    // An approver of a providing institution: it answers the sharing
    // requests about its own data (Art. 29).
    DemoPrincipal {
        name: "demo-provider",
        role: Role::Approver,
        org: PROVIDER,
        region: None,
    },
    DemoPrincipal {
        name: "demo-admin",
        role: Role::Admin,
        org: "veil operations",
        region: None,
    },
    DemoPrincipal {
        name: "demo-subject",
        role: Role::Subject,
        org: "a resident of Yunnan",
        region: None,
    },
];

pub fn run(args: DemoArgs) -> Result<(), Failure> {
    let mut store = Store::open(&args.data_dir)?;
    store.set_authority(AUTHORITY)?;
    let root = store.data_dir().root().to_path_buf();
    let sample = store.data_dir().datasets_dir().join("sample");
    if !sample.join("population.parquet").exists() {
        super::datasets::generate(
            &sample,
            &Options {
                persons: args.persons,
                seed: DEFAULT_SEED,
            },
        )?;
    }
    for table in TABLES {
        register(&mut store, &sample.join(format!("{table}.toml")))?;
    }
    let pums_dir = store.data_dir().datasets_dir().join("pums");
    std::fs::create_dir_all(&pums_dir)?;
    for (name, text) in [
        (pums::CSV_NAME, pums::CSV),
        (pums::MANIFEST_NAME, pums::MANIFEST),
    ] {
        if !pums_dir.join(name).exists() {
            std::fs::write(pums_dir.join(name), text)?;
        }
    }
    register(&mut store, &pums_dir.join(pums::MANIFEST_NAME))?;

    let keys_path = root.join("demo-keys.toml");
    let subject = veil_datasets::first_person(&sample);
    let keys = ensure_principals(&mut store, &keys_path, subject.as_deref())?;
    qualify_modeler(&root)?;
    open_sharing_request(&root)?;
    let policy = store
        .active_policy()?
        .map(|p| p.label())
        .unwrap_or_default();

    println!("veil demo is ready in {}", root.display());
    println!(
        "  policy {policy}; datasets: {}",
        store
            .datasets()?
            .iter()
            .map(|d| d.manifest.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!("  principals and their API keys: {}", keys_path.display());
    for (name, role, _) in &keys {
        println!("    {name:<15} {role}");
    }
    drop(store);
    if args.no_serve {
        println!("\nServe it with: veil serve --data-dir {}", root.display());
        return Ok(());
    }
    let consumer_key = keys
        .iter()
        .find(|(n, _, _)| n == "demo-consumer")
        .map(|(_, _, k)| k.clone())
        .unwrap_or_default();
    let modeler_key = keys
        .iter()
        .find(|(n, _, _)| n == "demo-modeler")
        .map(|(_, _, k)| k.clone())
        .unwrap_or_default();
    // A verification of a real resident's number with a name that is almost
    // certainly not theirs: one bit, `mismatch`.
    let verification = subject
        .as_deref()
        .and_then(|id| veil_policies::identifiers::CitizenId::parse(id).ok())
        .map(|id| {
            format!(
                r#"{{"product": "person_identity", "subject": "{}", "claims": {{"name": "张三"}}}}"#,
                id.as_str()
            )
        });
    let banner = |addr: std::net::SocketAddr, flight: Option<std::net::SocketAddr>| {
        println!();
        println!("Serving the API on http://{addr} (docs at http://{addr}/docs); Ctrl-C stops it.");
        if let Some(flight) = flight {
            println!(
                "Arrow Flight SQL on grpc://{flight}: connect ADBC, JDBC or ODBC Flight SQL drivers with an API key as the bearer token (README, \"Connect a tool\")."
            );
        }
        println!(
            "The approvers' console is at http://{addr}/console: sign in with demo-provider's, demo-approver's or demo-admin's key from demo-keys.toml."
        );
        println!("Try:");
        println!("  curl -s http://{addr}/v1/catalog -H 'Authorization: Bearer {consumer_key}'");
        println!(
            "  curl -s http://{addr}/v1/query -H 'Authorization: Bearer {consumer_key}' -H 'Content-Type: application/json' \\\n       -d '{{\"sql\": \"SELECT county_code, COUNT(*) AS n FROM population GROUP BY county_code ORDER BY n DESC LIMIT 5\"}}'"
        );
        if let Some(body) = &verification {
            println!(
                "  curl -s http://{addr}/v1/verify -H 'Authorization: Bearer {consumer_key}' -H 'Content-Type: application/json' \\\n       -d '{body}'"
            );
        }
        println!(
            "  curl -s http://{addr}/v1/models -H 'Authorization: Bearer {modeler_key}' -H 'Content-Type: application/json' \\\n       -d '{{\"template\": \"linear_regression\", \"features\": [\"tax.revenue\", \"legal_persons.registered_capital\"], \"target\": \"tax.tax_paid\", \"epsilon\": 0.5}}'"
        );
        println!(
            "  veil query --data-dir {} --as demo-consumer --sql \"SELECT name, phone FROM population LIMIT 3\"",
            root.display()
        );
    };
    let mut config = veil_api::http::ServerConfig::new(root.clone(), args.listen);
    config.flight_sql = Some(args.flight_sql);
    super::serve::run_server(config, Some(&banner))
}

/// Gives the demo modeler its development qualification (Art. 39) through
/// the regulation's own workflow: it applies, and the demo approver (the
/// data authority) grants it under an agreement. Both steps are audited.
fn qualify_modeler(root: &Path) -> Result<(), Failure> {
    let service = Service::open_with(root, AuditMode::Direct, Products::None)?;
    if service.reader()?.qualified("demo-modeler")? {
        return Ok(());
    }
    let principal = |name: &str| -> Result<veil_policies::Principal, Failure> {
        service
            .reader()?
            .principal(name)?
            .map(|r| r.principal)
            .ok_or_else(|| Failure::Refused(format!("the demo principal `{name}` is missing")))
    };
    let (modeler, approver) = (principal("demo-modeler")?, principal("demo-approver")?);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let refused = |e: ServiceError| Failure::Answer(e.to_json().to_string());
    let body = OpenBody {
        kind: "qualification".into(),
        dataset: None,
        purpose: None,
        fields: None,
        days: None,
        detail: [
            ("organisation", "滇数科技 (a second-tier developer)"),
            (
                "scope",
                "credit models on tax, utility usage and legal persons",
            ),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect(),
        via_authority: false,
    };
    let opened = service.open_request(&modeler, &body, "veil demo");
    let (request, _) = runtime.block_on(service.settle(opened)).map_err(refused)?;
    let id = request["id"].as_str().unwrap_or_default().to_owned();
    let notes = [(
        "agreement".to_owned(),
        "veil demo development agreement".to_owned(),
    )]
    .into();
    let granted = service.act_on_request(&approver, &id, "grant", &notes, "veil demo");
    runtime.block_on(service.settle(granted)).map_err(refused)?;
    Ok(())
}

/// Opens the demo consumer's sharing request for `social_insurance`
/// (conditional data: the provider answers within 5 working days), once,
/// so the provider's approver has a request to answer in the console.
fn open_sharing_request(root: &Path) -> Result<(), Failure> {
    let service = Service::open_with(root, AuditMode::Direct, Products::None)?;
    let consumer = service
        .reader()?
        .principal("demo-consumer")?
        .map(|r| r.principal)
        .ok_or_else(|| Failure::Refused("the demo principal `demo-consumer` is missing".into()))?;
    let existing = service
        .request_records(&consumer)
        .map_err(|e| Failure::Answer(e.to_json().to_string()))?;
    if existing.iter().any(|r| {
        r.kind == veil_policies::requests::Kind::Sharing
            && r.dataset.as_deref() == Some("social_insurance")
    }) {
        return Ok(());
    }
    let body = OpenBody {
        kind: "sharing".into(),
        dataset: Some("social_insurance".into()),
        purpose: Some("benefits".into()),
        fields: None,
        days: None,
        detail: [(
            "scenario".to_owned(),
            "最低生活保障资格复核 (review of minimum-living-allowance eligibility)".to_owned(),
        )]
        .into(),
        via_authority: false,
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let opened = service.open_request(&consumer, &body, "veil demo");
    runtime
        .block_on(service.settle(opened))
        .map_err(|e| Failure::Answer(e.to_json().to_string()))?;
    Ok(())
}

fn register(store: &mut Store, manifest: &Path) -> Result<(), Failure> {
    let outcome = registry::register(store, manifest, None, "demo")?;
    if outcome.changed {
        eprintln!(
            "registered {} ({} rows)",
            outcome.dataset.manifest.name, outcome.dataset.rows
        );
    }
    Ok(())
}

/// Makes sure every demo principal exists with a live key recorded in
/// `demo-keys.toml`. Keys are stored hashed, so a principal whose key is not
/// in the file (or no longer works) gets a fresh one.
fn ensure_principals(
    store: &mut Store,
    keys_path: &Path,
    subject: Option<&str>,
) -> Result<Vec<(String, Role, String)>, Failure> {
    let existing = std::fs::read_to_string(keys_path).unwrap_or_default();
    let known = parse_keys(&existing);
    let mut keys = Vec::new();
    for p in &PRINCIPALS {
        let subject = if p.role == Role::Subject {
            match subject {
                Some(s) => Some(s),
                None => continue,
            }
        } else {
            None
        };
        let live = known
            .iter()
            .find(|(name, _)| name == p.name)
            .filter(|(_, key)| {
                store
                    .authenticate(key)
                    .ok()
                    .flatten()
                    .is_some_and(|r| r.principal.name == p.name)
            });
        let key = match live {
            Some((_, key)) => key.clone(),
            None if store.principal(p.name)?.is_some() => {
                store.revoke_keys(p.name)?;
                store.issue_key(p.name)?.expose().to_owned()
            }
            None => {
                let new = NewPrincipal {
                    name: p.name,
                    role: p.role,
                    org: Some(p.org),
                    region: p.region,
                    subject,
                };
                store.add_principal(&new)?.1.expose().to_owned()
            }
        };
        keys.push((p.name.to_owned(), p.role, key));
    }
    let mut text =
        String::from("# API keys of the veil demo principals. Keep this file private.\n");
    for (name, role, key) in &keys {
        text.push_str(&format!("\n[{name}]\nrole = \"{role}\"\nkey = \"{key}\"\n"));
    }
    write_private(keys_path, text.as_bytes())?;
    Ok(keys)
}

/// Reads `[name]` / `key = "..."` pairs back from a demo keys file.
fn parse_keys(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut current: Option<String> = None;
    for line in text.lines().map(str::trim) {
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            current = Some(name.to_owned());
        } else if let (Some(name), Some(rest)) = (&current, line.strip_prefix("key = \"")) {
            out.push((name.clone(), rest.trim_end_matches('"').to_owned()));
        }
    }
    out
}
