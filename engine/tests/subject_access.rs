//! Subject access (Art. 24): the records about a subject, and nobody else's.

mod common;

use common::*;
use veil_engine::subject_access::OwnRecords;
use veil_policies::Policy;

fn records_of(engine: &veil_engine::Engine, subject: &str) -> Vec<OwnRecords> {
    fixture()
        .runtime
        .block_on(engine.records_of(subject))
        .unwrap()
}

fn count(records: &[OwnRecords], dataset: &str) -> usize {
    records
        .iter()
        .find(|r| r.dataset == dataset)
        .map_or(0, |r| r.answer.batches.iter().map(|b| b.num_rows()).sum())
}

#[test]
fn a_person_reads_every_row_about_them_and_only_those() {
    let visits = table("health_visits", &["id_number"]);
    let insurance = table("social_insurance", &["id_number"]);
    let person = &visits[0]["id_number"];
    let records = records_of(&fixture().engine, &person.to_lowercase());
    assert_eq!(count(&records, "population"), 1);
    assert_eq!(
        count(&records, "health_visits"),
        visits.iter().filter(|r| &r["id_number"] == person).count()
    );
    assert_eq!(
        count(&records, "social_insurance"),
        insurance
            .iter()
            .filter(|r| &r["id_number"] == person)
            .count()
    );
    // Every row returned carries the person's own identifier.
    for r in &records {
        for line in rows(&r.answer.batches) {
            assert!(
                line.iter().any(|cell| cell == person),
                "{}: {line:?}",
                r.dataset
            );
        }
    }
    let names: Vec<&str> = records.iter().map(|r| r.dataset.as_str()).collect();
    assert!(
        !names.contains(&"legal_persons") && !names.contains(&"tax"),
        "{names:?}"
    );
    assert!(
        !names.contains(&"pums_pid"),
        "its unit is not an identity number"
    );
}

#[test]
fn an_organisation_reads_its_own_registration_and_tax_records() {
    let tax = table("tax", &["uscc"]);
    let company = &tax[0]["uscc"];
    let records = records_of(&fixture().engine, company);
    assert_eq!(count(&records, "legal_persons"), 1);
    assert_eq!(
        count(&records, "tax"),
        tax.iter().filter(|r| &r["uscc"] == company).count()
    );
    assert_eq!(count(&records, "population"), 0);
}

#[test]
fn fields_no_role_may_see_stay_in_the_domain() {
    // Grade L3 made core-like: released to nobody.
    let text = veil_policies::policy::DEFAULT_PRESET.replacen(
        "levels = { consumer = [\"masked\", \"generalized\", \"dp\"], modeler = [\"generalized\", \"dp\"] }\ngranted = { consumer = \"plain\", modeler = [\"pseudonym\", \"generalized\", \"aggregate\"] }",
        "levels = {}\ngranted = {}",
        1,
    );
    let engine = build_engine(&fixture().dir, Policy::parse(&text).unwrap());
    let company = &table("tax", &["uscc"])[0]["uscc"];
    let records = records_of(&engine, company);
    let tax = records.iter().find(|r| r.dataset == "tax").unwrap();
    assert_eq!(tax.withheld, ["revenue", "tax_paid"]);
    let columns: Vec<&str> = tax
        .answer
        .schema
        .fields()
        .iter()
        .map(|f| f.name().as_str())
        .collect();
    assert_eq!(columns, ["uscc", "year", "county_code"]);
    // A dataset whose unit is withheld matches nobody.
    let person = &table("population", &["id_number"])[0]["id_number"];
    let records = records_of(&engine, person);
    assert!(records.iter().all(|r| r.dataset != "population"));
}
