//! A small generated sample and an engine over it, for the policy stage's
//! own tests: each rule's file asks it what the stage accepts and refuses.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use chrono::{DateTime, Utc};
use veil_policies::{DatasetManifest, Policy, Principal, Role};

use crate::engine::{DpOptions, Engine, PreparedQuery, QueryRequest};
use crate::error::QueryError;
use crate::tables::Dataset;

/// Persons in the sample: small enough that a query runs in milliseconds.
pub(crate) const PERSONS: u64 = 400;

/// The sample's files, generated once per test process.
pub(crate) fn sample_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("veil-policy-tests-{}", std::process::id()));
        veil_datasets::generate(
            &dir,
            &veil_datasets::Options {
                persons: PERSONS,
                seed: 7,
            },
            &|_| {},
        )
        .expect("the sample generates");
        dir
    })
}

/// An engine over the tables in `dir` (manifests as generated), deciding
/// with `policy`.
pub(crate) fn engine_over(dir: &Path, policy: &Policy) -> Engine {
    let mut engine = Engine::new(policy.clone(), "v-test", [3; 32]);
    for name in veil_datasets::TABLES {
        let text = std::fs::read_to_string(dir.join(format!("{name}.toml"))).unwrap();
        let manifest = DatasetManifest::parse(&text, &|g| policy.grade(g).is_some()).unwrap();
        let source = crate::source::check_source(&manifest, dir, None).unwrap();
        let path = dir.join(&manifest.path);
        engine.add_dataset(
            Dataset::open(manifest, 1, &path)
                .unwrap()
                .with_unique_units(source.unique_units),
        );
    }
    engine
}

pub(crate) fn engine() -> &'static Engine {
    static ENGINE: OnceLock<Engine> = OnceLock::new();
    ENGINE.get_or_init(|| engine_over(sample_dir(), &Policy::default_preset()))
}

pub(crate) fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap()
    })
}

pub(crate) fn now() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-11-27T08:00:00Z")
        .unwrap()
        .with_timezone(&Utc)
}

pub(crate) fn consumer() -> Principal {
    let mut p = Principal::new("rule-tests", Role::Consumer);
    p.org = Some("Yunnan Civil Affairs".into());
    p
}

/// A modeler with a grant on `dataset` for the purpose `benefits`: L3
/// fields are aggregate-only for it.
pub(crate) fn granted_modeler(dataset: &str) -> Principal {
    let mut p = Principal::new("rule-tests-modeler", Role::Modeler);
    p.grants.push(veil_policies::Grant {
        id: "g-rules".into(),
        dataset: dataset.into(),
        fields: None,
        purpose: "benefits".into(),
        expires_at: now() + chrono::Duration::days(30),
    });
    p
}

pub(crate) fn prepare(
    principal: &Principal,
    sql: &str,
    dp: Option<DpOptions>,
) -> Result<PreparedQuery, QueryError> {
    // A principal with a grant asks for its purpose.
    let purpose = principal.grants.first().map(|g| g.purpose.as_str());
    engine().prepare(&QueryRequest {
        principal,
        purpose,
        sql,
        now: now(),
        dp,
    })
}

/// The rule that refuses `sql` (`invalid` for a malformed or unsupported
/// query); panics when it is accepted.
pub(crate) fn rule_of(result: Result<PreparedQuery, QueryError>, sql: &str) -> &'static str {
    match result {
        Ok(_) => panic!("expected a refusal of {sql}"),
        Err(QueryError::Denied(r)) => r.rule,
        Err(QueryError::InvalidSql(_)) => "invalid",
        Err(e) => panic!("unexpected error for {sql}: {e:?}"),
    }
}

pub(crate) fn refused(sql: &str) -> &'static str {
    rule_of(prepare(&consumer(), sql, None), sql)
}

pub(crate) fn refused_dp(sql: &str) -> &'static str {
    rule_of(prepare(&consumer(), sql, Some(DpOptions::new(1.0))), sql)
}

pub(crate) fn accepts(sql: &str) -> PreparedQuery {
    prepare(&consumer(), sql, None).unwrap_or_else(|e| panic!("{sql}: {e:?}"))
}

pub(crate) fn accepts_dp(sql: &str) -> PreparedQuery {
    prepare(&consumer(), sql, Some(DpOptions::new(1.0))).unwrap_or_else(|e| panic!("{sql}: {e:?}"))
}

/// The datasets a DP query is charged to.
pub(crate) fn charged(sql: &str) -> Vec<String> {
    let prepared = accepts_dp(sql);
    prepared
        .dp
        .expect("a DP query")
        .costs
        .iter()
        .map(|c| c.dataset.clone())
        .collect()
}

#[test]
fn a_refusals_datasets_are_the_catalogs_names_the_statement_uses() {
    let e = engine();
    assert_eq!(
        e.datasets_named("SELECT p.name FROM population p JOIN tax t ON p.id_number = t.uscc"),
        ["population", "tax"]
    );
    assert_eq!(
        e.datasets_named("WITH x AS (SELECT * FROM HEALTH_VISITS) SELECT * FROM x, no_such_table"),
        ["health_visits"]
    );
    assert!(e.datasets_named("SELECT 1").is_empty());
    assert!(e.datasets_named("not sql at all").is_empty());
    assert!(e.datasets_named(r#"SELECT * FROM "Population""#).is_empty());
}
