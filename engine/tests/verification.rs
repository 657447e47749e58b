//! Verification products over the generated sample: answers checked against
//! the raw files, refusals, and the index file.

mod common;

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use common::*;
use veil_engine::Engine;
use veil_engine::verification::{
    Claimed, IndexFile, SubjectIndex, VerifyError, VerifyItem, VerifyRequest,
};
use veil_policies::identifiers::CitizenId;
use veil_policies::{Policy, Principal, Role};

fn with_products(policy: Policy) -> Engine {
    let mut engine = build_engine(&fixture().dir, policy);
    engine.install_products(&|d, f| SubjectIndex::build(d, f).map(Arc::new), None, None);
    engine
}

/// The default preset, plus a product whose claim is a date: when each
/// company was established (a credit code does not say).
const ESTABLISHED: &str = r#"
[[product]]
name = "company_established"
dataset = "legal_persons"
subject = "uscc"
per_minute = 12000
daily_per_subject = 10

[[product.claim]]
field = "established_date"
compare = "date"
"#;

fn engine() -> &'static Engine {
    static ENGINE: OnceLock<Engine> = OnceLock::new();
    ENGINE.get_or_init(|| {
        let text = format!("{}{ESTABLISHED}", veil_policies::policy::DEFAULT_PRESET);
        with_products(Policy::parse(&text).unwrap())
    })
}

fn companies() -> &'static Vec<HashMap<String, String>> {
    static COMPANIES: OnceLock<Vec<HashMap<String, String>>> = OnceLock::new();
    COMPANIES.get_or_init(|| table("legal_persons", &["uscc", "established_date"]))
}

fn item(subject: &str, claims: &[(&str, Claimed)]) -> VerifyItem {
    VerifyItem {
        subject: subject.into(),
        claims: claims
            .iter()
            .map(|(n, v)| (n.to_string(), v.clone()))
            .collect(),
    }
}

fn text(s: &str) -> Claimed {
    Claimed::Text(s.into())
}

fn verify_with(
    engine: &Engine,
    principal: &Principal,
    purpose: Option<&str>,
    product: &str,
    items: &[VerifyItem],
) -> Result<Vec<Vec<(String, bool)>>, VerifyError> {
    let request = VerifyRequest {
        principal,
        purpose,
        product,
        items,
        now: now(),
    };
    let checked = engine.verify(&request)?;
    Ok(checked
        .answer()
        .into_iter()
        .map(|r| r.into_iter().map(|(n, b)| (n.to_owned(), b)).collect())
        .collect())
}

fn verify(
    principal: &Principal,
    product: &str,
    items: &[VerifyItem],
) -> Result<Vec<Vec<(String, bool)>>, VerifyError> {
    verify_with(engine(), principal, None, product, items)
}

fn one(product: &str, subject: &str, claims: &[(&str, Claimed)]) -> Vec<(String, bool)> {
    verify(&consumer(), product, &[item(subject, claims)])
        .unwrap()
        .remove(0)
}

fn bits(answer: &[(String, bool)]) -> Vec<bool> {
    answer.iter().map(|(_, b)| *b).collect()
}

fn people() -> &'static Vec<HashMap<String, String>> {
    static PEOPLE: OnceLock<Vec<HashMap<String, String>>> = OnceLock::new();
    PEOPLE.get_or_init(|| {
        table(
            "population",
            &["id_number", "name", "birth_date", "phone", "county_code"],
        )
    })
}

/// A valid identity number that is nobody's in the sample.
fn stranger() -> String {
    let taken: std::collections::HashSet<&str> =
        people().iter().map(|p| p["id_number"].as_str()).collect();
    (0..1000u16)
        .map(|seq| {
            CitizenId::generate(
                530102,
                chrono::NaiveDate::from_ymd_opt(1931, 2, 3).unwrap(),
                seq,
            )
            .unwrap()
            .as_str()
            .to_owned()
        })
        .find(|id| !taken.contains(id.as_str()))
        .unwrap()
}

#[test]
fn identity_claims_match_the_record_and_nothing_else() {
    let p = people().iter().find(|p| !p["phone"].is_empty()).unwrap();
    let answer = one(
        "person_identity",
        &p["id_number"],
        &[("name", text(&p["name"])), ("phone", text(&p["phone"]))],
    );
    assert_eq!(answer, vec![("name".into(), true), ("phone".into(), true)]);

    // The forms people type the same values in.
    let full_width_phone: String = p["phone"]
        .chars()
        .map(|c| char::from_u32(c as u32 + 0xFEE0).unwrap())
        .collect();
    let answer = one(
        "person_identity",
        &format!(" {} ", p["id_number"].to_lowercase()),
        &[
            ("name", text(&format!("  {}\u{3000}", p["name"]))),
            ("phone", text(&full_width_phone)),
        ],
    );
    assert_eq!(bits(&answer), [true, true]);
    let c = &companies()[0];
    let date = chrono::NaiveDate::parse_from_str(&c["established_date"], "%Y-%m-%d").unwrap();
    for form in ["%Y年%-m月%-d日", "%Y/%-m/%-d", "%Y%m%d"] {
        let answer = one(
            "company_established",
            &c["uscc"],
            &[("established_date", text(&date.format(form).to_string()))],
        );
        assert_eq!(bits(&answer), [true], "{form}");
    }

    // Another person's values do not match.
    let other = people()
        .iter()
        .find(|o| o["name"] != p["name"] && o["phone"] != p["phone"])
        .unwrap();
    let answer = one(
        "person_identity",
        &p["id_number"],
        &[
            ("name", text(&other["name"])),
            ("phone", text(&other["phone"])),
        ],
    );
    assert_eq!(bits(&answer), [false, false]);

    // An unknown subject fails every claim, exactly like a wrong claim.
    let answer = one(
        "person_identity",
        &stranger(),
        &[("name", text(&p["name"])), ("phone", text(&p["phone"]))],
    );
    assert_eq!(bits(&answer), [false, false]);
}

#[test]
fn every_person_verifies_in_one_batch() {
    let items: Vec<VerifyItem> = people()
        .iter()
        .take(2000)
        .map(|p| item(&p["id_number"], &[("name", text(&p["name"]))]))
        .collect();
    let answers = verify(&consumer(), "person_identity", &items).unwrap();
    assert_eq!(answers.len(), 2000);
    assert!(answers.iter().all(|a| bits(a) == [true]));
    // Shift the names by one: only people who share a name still match.
    let shifted: Vec<VerifyItem> = people()
        .iter()
        .take(2000)
        .zip(people().iter().skip(1))
        .map(|(p, next)| item(&p["id_number"], &[("name", text(&next["name"]))]))
        .collect();
    let answers = verify(&consumer(), "person_identity", &shifted).unwrap();
    let expected = people()
        .iter()
        .take(2000)
        .zip(people().iter().skip(1))
        .map(|(p, n)| p["name"] == n["name"]);
    assert!(answers.iter().map(|a| a[0].1).eq(expected));
}

#[test]
fn predicates_answer_from_every_row_of_the_subject() {
    // Insured in a month: a month with a record, and one without.
    let insurance = table("social_insurance", &["id_number", "month"]);
    let mut months: HashMap<&str, Vec<&str>> = HashMap::new();
    for r in &insurance {
        months.entry(&r["id_number"]).or_default().push(&r["month"]);
    }
    let (id, have) = months.iter().find(|(_, m)| m.len() < 12).unwrap();
    let missing = (1..=12)
        .map(|m| format!("2025-{m:02}"))
        .find(|m| !have.contains(&m.as_str()))
        .unwrap();
    assert_eq!(
        bits(&one(
            "insured_in_month",
            id,
            &[("insured_in", text(have[0]))]
        )),
        [true]
    );
    assert_eq!(
        bits(&one(
            "insured_in_month",
            id,
            &[("insured_in", text(&missing))]
        )),
        [false]
    );

    // Arrears: the sum over the subject's accounts in its latest month.
    let usage = table("utility_usage", &["subject_id", "month", "arrears"]);
    let mut latest: HashMap<&str, (&str, f64)> = HashMap::new();
    for r in &usage {
        let arrears: f64 = r["arrears"].parse().unwrap();
        let e = latest.entry(&r["subject_id"]).or_insert((&r["month"], 0.0));
        if r["month"].as_str() > e.0 {
            *e = (&r["month"], arrears);
        } else if r["month"].as_str() == e.0 {
            e.1 += arrears;
        }
    }
    let (subject, (_, owed)) = latest.iter().find(|(_, (_, a))| *a > 100.0).unwrap();
    let above = |y: f64| {
        bits(&one(
            "utility_arrears",
            subject,
            &[("arrears_above", Claimed::Number(y))],
        ))[0]
    };
    assert!(above(owed - 0.01));
    assert!(!above(*owed));
    assert!(above(0.0));
    let (clear, _) = latest.iter().find(|(_, (_, a))| *a == 0.0).unwrap();
    assert_eq!(
        bits(&one(
            "utility_arrears",
            clear,
            &[("arrears_above", Claimed::Number(0.0))]
        )),
        [false]
    );

    // The legal representative of a company.
    let companies = table("legal_persons", &["uscc", "name", "legal_rep_id_number"]);
    let c = &companies[0];
    let d = companies
        .iter()
        .find(|d| d["legal_rep_id_number"] != c["legal_rep_id_number"])
        .unwrap();
    let answer = one(
        "legal_representative",
        &c["uscc"],
        &[
            ("legal_representative", text(&c["legal_rep_id_number"])),
            ("name", text(&c["name"])),
        ],
    );
    assert_eq!(bits(&answer), [true, true]);
    let answer = one(
        "legal_representative",
        &c["uscc"],
        &[("legal_representative", text(&d["legal_rep_id_number"]))],
    );
    assert_eq!(bits(&answer), [false]);
}

#[test]
fn a_regional_caller_verifies_only_subjects_of_its_region() {
    let inside = people()
        .iter()
        .find(|p| p["county_code"].starts_with("5301"))
        .unwrap();
    let outside = people()
        .iter()
        .find(|p| !p["county_code"].starts_with("5301"))
        .unwrap();
    for (p, expect) in [(inside, true), (outside, false)] {
        let answers = verify(
            &kunming(),
            "person_identity",
            &[item(&p["id_number"], &[("name", text(&p["name"]))])],
        )
        .unwrap();
        assert_eq!(answers[0][0].1, expect, "county {}", p["county_code"]);
    }
}

#[test]
fn bad_requests_are_refused_before_any_lookup_and_never_echo_values() {
    let p = &people()[0];
    let id = &p["id_number"];
    let mut bad_check = id[..17].to_owned();
    bad_check.push(if id.ends_with('0') { '1' } else { '0' });
    let messages = std::cell::RefCell::new(Vec::new());
    let refusal = |product: &str, items: &[VerifyItem]| match verify(&consumer(), product, items) {
        Err(VerifyError::BadRequest(m)) => {
            messages.borrow_mut().push(m.clone());
            m
        }
        other => panic!("expected bad_request, got {other:?}"),
    };
    let m = refusal(
        "person_identity",
        &[item(&bad_check, &[("name", text(&p["name"]))])],
    );
    assert!(
        m.contains("subject") && m.contains("check character"),
        "{m}"
    );
    let batch = [
        item(id, &[("name", text("x"))]),
        item("12345", &[("name", text("x"))]),
    ];
    let m = refusal("person_identity", &batch);
    assert!(m.starts_with("items[1].subject"), "{m}");
    let m = refusal("person_identity", &[item(id, &[("salary", text("1"))])]);
    assert!(
        m.contains("no such claim") && m.contains("name, phone"),
        "{m}"
    );
    let m = refusal(
        "company_established",
        &[item(
            &companies()[0]["uscc"],
            &[("established_date", text("the day after Christmas 1990"))],
        )],
    );
    assert!(m.contains("expected a date"), "{m}");
    let m = refusal("person_identity", &[item(id, &[])]);
    assert!(m.contains("no claim"), "{m}");
    let m = refusal(
        "utility_arrears",
        &[item(id, &[("arrears_above", text("lots"))])],
    );
    assert!(m.contains("expected a number"), "{m}");
    let c = &table("legal_persons", &["uscc"])[0]["uscc"];
    let m = refusal(
        "legal_representative",
        &[item(c, &[("legal_representative", text(&bad_check))])],
    );
    assert!(
        m.contains("claims.legal_representative") && m.contains("check character"),
        "{m}"
    );
    let too_many: Vec<VerifyItem> = (0..10_001)
        .map(|_| item(id, &[("name", text("x"))]))
        .collect();
    assert!(refusal("person_identity", &too_many).contains("at most 10000"));
    for m in messages.borrow().iter() {
        assert!(
            !m.contains(&bad_check) && !m.contains(id.as_str()) && !m.contains(&p["name"]),
            "{m}"
        );
    }
    match verify(&consumer(), "nope", &[item(id, &[("name", text("x"))])]) {
        Err(VerifyError::NotFound(m)) => assert!(m.contains("person_identity"), "{m}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn roles_purposes_and_levels_gate_products() {
    let p = &people()[0];
    let items = [item(&p["id_number"], &[("name", text(&p["name"]))])];
    match verify(&modeler(), "person_identity", &items) {
        Err(VerifyError::Forbidden(m)) => {
            assert!(m.contains("is for consumer; you are a modeler"), "{m}")
        }
        other => panic!("{other:?}"),
    }

    // A product that needs a granted purpose.
    let text_policy = veil_policies::policy::DEFAULT_PRESET.replacen(
        "per_minute = 12000\ndaily_per_subject = 10\n",
        "per_minute = 12000\ndaily_per_subject = 10\npurposes = [\"benefits\"]\n",
        1,
    );
    let engine = with_products(Policy::parse(&text_policy).unwrap());
    match verify_with(
        &engine,
        &consumer(),
        Some("benefits"),
        "person_identity",
        &items,
    ) {
        Err(VerifyError::Denied(m)) => assert!(m.contains("needs a live grant"), "{m}"),
        other => panic!("{other:?}"),
    }
    match verify_with(
        &engine,
        &granted("population"),
        None,
        "person_identity",
        &items,
    ) {
        Err(VerifyError::Denied(m)) => {
            assert!(m.contains("needs a `purpose`, one of: benefits"), "{m}")
        }
        other => panic!("{other:?}"),
    }
    let answers = verify_with(
        &engine,
        &granted("population"),
        Some("benefits"),
        "person_identity",
        &items,
    )
    .unwrap();
    assert_eq!(bits(&answers[0]), [true]);

    // A field its grade denies to the caller cannot be compared either.
    let engine = with_products(policy_with("L3", "\"deny\""));
    match verify_with(&engine, &consumer(), None, "person_identity", &items) {
        Err(VerifyError::Denied(m)) => {
            assert!(m.contains("`population.id_number` is denied to you"), "{m}")
        }
        other => panic!("{other:?}"),
    }
    let _ = Role::Consumer;
}

#[test]
fn products_over_missing_datasets_or_fields_are_unavailable() {
    let text_policy = format!(
        "{}\n[[product]]\nname = \"ghost\"\ndataset = \"nowhere\"\nsubject = \"id\"\n[[product.claim]]\nfield = \"x\"\n\n[[product]]\nname = \"typo\"\ndataset = \"population\"\nsubject = \"id_number\"\n[[product.claim]]\nfield = \"nmae\"\n",
        veil_policies::policy::DEFAULT_PRESET
    );
    let engine = with_products(Policy::parse(&text_policy).unwrap());
    let unavailable: HashMap<&str, &str> = engine
        .products()
        .filter_map(|(n, t)| t.err().map(|e| (n, e)))
        .collect();
    assert!(
        unavailable["ghost"].contains("`nowhere` is not registered"),
        "{unavailable:?}"
    );
    assert!(
        unavailable["typo"].contains("has no field `nmae`"),
        "{unavailable:?}"
    );
    assert_eq!(
        unavailable.len(),
        2,
        "the preset's products are all available: {unavailable:?}"
    );
    match verify_with(
        &engine,
        &consumer(),
        None,
        "typo",
        &[item(&people()[0]["id_number"], &[("nmae", text("x"))])],
    ) {
        Err(VerifyError::NotFound(m)) => assert!(m.contains("unavailable"), "{m}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn the_index_file_round_trips_and_refuses_other_data() {
    let dataset = engine().dataset("population").unwrap();
    let index = SubjectIndex::build(&dataset, "id_number").unwrap();
    assert_eq!(index.subjects(), PERSONS as usize);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("population.idx");
    index.save(&path, "population:1:id_number").unwrap();
    assert_eq!(
        SubjectIndex::load(&path, "population:1:id_number").unwrap(),
        index
    );
    let err = SubjectIndex::load(&path, "population:2:id_number").unwrap_err();
    assert!(err.contains("another version"), "{err}");
    // Looked up in place, the file answers as the index does.
    let in_place = IndexFile::open(&path, "population:1:id_number").unwrap();
    for person in people().iter().take(50) {
        let key = veil_engine::verification::subject_key(&person["id_number"]).unwrap();
        assert_eq!(in_place.rows(key).unwrap(), index.rows(key));
    }
    assert!(in_place.rows(1).unwrap().is_empty());
    assert!(in_place.rows(u128::MAX).unwrap().is_empty());
    let err = IndexFile::open(&path, "population:2:id_number")
        .err()
        .unwrap();
    assert!(err.contains("another version"), "{err}");
    let mut bytes = std::fs::read(&path).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 1;
    std::fs::write(&path, &bytes).unwrap();
    assert!(
        SubjectIndex::load(&path, "population:1:id_number")
            .unwrap_err()
            .contains("checksum")
    );
    let err = IndexFile::open(&path, "population:1:id_number")
        .err()
        .unwrap();
    assert!(err.contains("checksum"), "{err}");
    std::fs::write(&path, &bytes[..10]).unwrap();
    assert!(SubjectIndex::load(&path, "population:1:id_number").is_err());
    assert!(IndexFile::open(&path, "population:1:id_number").is_err());
    let key = veil_engine::verification::subject_key(&people()[5]["id_number"]).unwrap();
    assert_eq!(index.rows(key), [5]);
}
