//! Plan snapshots: the checked plan of one query per rewrite, as text.

mod common;

use common::*;
use veil_policies::Principal;

fn check(principal: &Principal, purpose: Option<&str>, sql: &str) -> String {
    check_on(&fixture().engine, principal, purpose, sql)
}

/// On the engine whose L3 gives consumers exact aggregates over k units.
fn check_k(principal: &Principal, sql: &str) -> String {
    check_on(k_engine(), principal, None, sql)
}

fn check_on(
    engine: &veil_engine::Engine,
    principal: &Principal,
    purpose: Option<&str>,
    sql: &str,
) -> String {
    let prepared = engine.prepare(&request(principal, sql, purpose)).unwrap();
    format!("{sql}\n\n{}", prepared.plan_text())
}

#[test]
fn masks_and_generalisations_replace_values_at_the_scan() {
    insta::assert_snapshot!(check(
        &consumer(),
        None,
        "SELECT name, birth_date FROM population WHERE county_code = '530102'"
    ));
}

#[test]
fn region_filters_go_under_every_scan() {
    insta::assert_snapshot!(check(
        &kunming(),
        None,
        "SELECT p.county_code, COUNT(*) FROM population p WHERE p.county_code IN (SELECT county_code FROM legal_persons) GROUP BY p.county_code"
    ));
}

#[test]
fn aggregate_only_fields_get_a_k_threshold_on_distinct_units() {
    insta::assert_snapshot!(check_k(
        &consumer(),
        "SELECT month, SUM(usage) AS total FROM utility_usage GROUP BY month"
    ));
}

#[test]
fn joins_carry_units_from_both_sides() {
    insta::assert_snapshot!(check_k(
        &consumer(),
        "SELECT l.industry, SUM(t.revenue) FROM legal_persons l JOIN tax t ON l.uscc = t.uscc GROUP BY l.industry"
    ));
}

#[test]
fn pseudonyms_replace_identifiers_for_a_granted_modeler() {
    let mut modeler = granted("social_insurance");
    modeler.role = veil_policies::Role::Modeler;
    insta::assert_snapshot!(check(
        &modeler,
        Some("benefits"),
        "SELECT id_number, month FROM social_insurance"
    ));
}

#[test]
fn error_oracles_are_closed() {
    insta::assert_snapshot!(check(
        &consumer(),
        None,
        "SELECT CAST(county_code AS INT) / year AS a, year + 1 AS b, SUM(year) OVER () AS c FROM tax"
    ));
}

#[test]
fn select_star_projects_what_may_be_seen() {
    insta::assert_snapshot!(check(&consumer(), None, "SELECT * FROM population"));
}
