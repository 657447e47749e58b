//! What callers get back: masks, generalisations, region filters, k
//! thresholds, pseudonyms, provenance and clear refusals.

mod common;

use std::collections::HashMap;

use common::*;
use veil_engine::QueryError;

#[test]
fn consumers_see_masked_identity_and_contact_fields() {
    let rows = run(&consumer(), "SELECT id_number, name, phone, address, birth_date, county_code, sex FROM population LIMIT 50").unwrap();
    assert_eq!(rows.len(), 50);
    for r in &rows {
        let id: Vec<char> = r[0].chars().collect();
        assert_eq!(id.len(), 18);
        assert!(id[4..14].iter().all(|&c| c == '*'), "{}", r[0]);
        assert!(
            r[1].chars().skip(1).all(|c| c == '*') && r[1].chars().count() >= 2,
            "{}",
            r[1]
        );
        assert!(
            r[2] == "NULL" || (r[2].len() == 11 && &r[2][3..7] == "****"),
            "{}",
            r[2]
        );
        assert!(
            r[3].ends_with("***") && r[3].starts_with("云南省"),
            "{}",
            r[3]
        );
        assert!(
            r[4].ends_with("-01-01"),
            "birth dates are generalised to the year: {}",
            r[4]
        );
        assert!(
            r[5].len() == 6 && r[5].starts_with("53"),
            "county codes are plain: {}",
            r[5]
        );
        assert!(r[6] == "M" || r[6] == "F");
    }
}

#[test]
fn a_region_scope_filters_every_scan() {
    let all = run(&consumer(), "SELECT COUNT(*) FROM population").unwrap();
    let regional = run(&kunming(), "SELECT COUNT(*) FROM population").unwrap();
    let (all, regional): (i64, i64) = (all[0][0].parse().unwrap(), regional[0][0].parse().unwrap());
    assert_eq!(all, PERSONS as i64);
    assert!(regional > 0 && regional < all / 3, "{regional} of {all}");
    let counties = run(
        &kunming(),
        "SELECT DISTINCT county_code FROM population UNION SELECT DISTINCT county_code FROM tax",
    )
    .unwrap();
    assert!(
        counties.iter().all(|r| r[0].starts_with("5301")),
        "{counties:?}"
    );
    let joined = run(
        &kunming(),
        "SELECT COUNT(*) FROM social_insurance s JOIN legal_persons l ON s.county_code = l.county_code WHERE l.county_code LIKE '5303%'",
    )
    .unwrap();
    assert_eq!(joined, vec![vec!["0".to_string()]]);
}

#[test]
fn aggregate_only_fields_release_exactly_the_groups_with_k_units() {
    // Population has one row per person, so rows per group are units per group.
    let plain = run_k(
        &consumer(),
        "SELECT county_code, education, COUNT(*) FROM population GROUP BY county_code, education",
    )
    .unwrap();
    let protected = run_k(&consumer(), "SELECT county_code, education, COUNT(ethnicity) FROM population GROUP BY county_code, education").unwrap();
    let released: HashMap<(String, String), String> = protected
        .into_iter()
        .map(|r| ((r[0].clone(), r[1].clone()), r[2].clone()))
        .collect();
    let mut suppressed = 0;
    for r in plain {
        let n: u32 = r[2].parse().unwrap();
        let key = (r[0].clone(), r[1].clone());
        if n >= 10 {
            assert_eq!(released.get(&key), Some(&r[2]), "{key:?}");
        } else {
            assert!(
                !released.contains_key(&key),
                "{key:?} has {n} persons but was released"
            );
            suppressed += 1;
        }
    }
    assert!(suppressed > 0, "the sample should have some small groups");
}

#[test]
fn k_counts_distinct_units_not_rows() {
    // Each insured person has up to 12 monthly rows. Counted from the file:
    // per county, the rows and the distinct persons of March.
    use arrow::array::AsArray;
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    let file = std::fs::File::open(fixture().dir.join("social_insurance.parquet")).unwrap();
    let mut per_county: HashMap<String, std::collections::HashSet<String>> = HashMap::new();
    for batch in ParquetRecordBatchReaderBuilder::try_new(file)
        .unwrap()
        .build()
        .unwrap()
    {
        let batch = batch.unwrap();
        let ids = batch
            .column_by_name("id_number")
            .unwrap()
            .as_string::<i32>();
        let counties = batch
            .column_by_name("county_code")
            .unwrap()
            .as_string::<i32>();
        for i in 0..batch.num_rows() {
            per_county
                .entry(counties.value(i).to_owned())
                .or_default()
                .insert(ids.value(i).to_owned());
        }
    }
    let small = per_county
        .iter()
        .find(|(_, ids)| (1..10).contains(&ids.len()))
        .map(|(c, _)| c.clone())
        .expect("a county with few insured persons");
    let large = per_county
        .iter()
        .find(|(_, ids)| ids.len() >= 40)
        .map(|(c, _)| c.clone())
        .unwrap();
    let query = |county: &str| {
        run_k(
            &consumer(),
            &format!(
                "SELECT COUNT(paid), COUNT(*) FROM social_insurance WHERE county_code = '{county}'"
            ),
        )
        .unwrap()
    };
    let rows_in_small = run_k(
        &consumer(),
        &format!("SELECT COUNT(*) FROM social_insurance WHERE county_code = '{small}'"),
    )
    .unwrap();
    assert!(
        rows_in_small[0][0].parse::<u32>().unwrap() >= 10,
        "the small county has at least k rows: {rows_in_small:?}"
    );
    assert!(query(&small).is_empty(), "fewer than k persons: suppressed");
    let released = query(&large);
    assert_eq!(released.len(), 1);
    assert_eq!(released[0][0], released[0][1]);
}

#[test]
fn select_star_leaves_out_what_may_not_be_seen_row_by_row() {
    let f = fixture();
    let c = consumer();
    let (prepared, answer) = f
        .runtime
        .block_on(
            f.engine
                .query(&request(&c, "SELECT * FROM population LIMIT 3", None)),
        )
        .unwrap();
    let names: Vec<&str> = answer
        .schema
        .fields()
        .iter()
        .map(|f| f.name().as_str())
        .collect();
    assert!(!names.contains(&"ethnicity"));
    assert!(names.contains(&"name") && names.contains(&"county_code"));
    assert_eq!(prepared.omitted, vec!["ethnicity".to_string()]);
}

#[test]
fn answers_carry_provenance_and_the_policy_version() {
    let (prepared, _) = run_as(
        &consumer(),
        None,
        "SELECT l.industry, COUNT(*) FROM legal_persons l JOIN tax t ON l.uscc = t.uscc GROUP BY l.industry",
    )
    .unwrap();
    assert_eq!(prepared.provenance.datasets, vec!["legal_persons", "tax"]);
    assert_eq!(prepared.provenance.providers.len(), 2);
    assert!(
        prepared
            .provenance
            .providers
            .iter()
            .any(|p| p.contains("税务"))
    );
    assert_eq!(
        prepared.provenance.versions,
        vec![("legal_persons".to_string(), 1), ("tax".to_string(), 1)]
    );
    assert_eq!(prepared.provenance.retrieved_at, now());
    assert_eq!(prepared.policy_version, "v1-test");
    assert!(prepared.fields.contains(&"tax.uscc".to_string()));
    assert_eq!(prepared.privacy.mode, "plain");
}

#[test]
fn pseudonyms_are_stable_per_purpose_and_join_within_it() {
    let mut modeler = granted("social_insurance");
    modeler.role = veil_policies::Role::Modeler;
    let sql = "SELECT id_number FROM social_insurance WHERE month = '2025-01' ORDER BY contribution_base LIMIT 0";
    assert!(
        run_as(&modeler, Some("benefits"), sql).is_err(),
        "ordering by an aggregate-only field is refused"
    );
    // No ORDER BY: rows arrive in whatever order the partitions finish, so
    // compare them as sets.
    let sql = "SELECT id_number, employer_uscc FROM social_insurance WHERE month = '2025-01'";
    let sorted = |mut rows: Vec<Vec<String>>| {
        rows.sort();
        rows
    };
    let a = sorted(run_as(&modeler, Some("benefits"), sql).unwrap().1);
    let b = sorted(run_as(&modeler, Some("benefits"), sql).unwrap().1);
    assert!(a.len() > 100, "{}", a.len());
    assert_eq!(a, b);
    assert!(
        a.iter()
            .all(|r| r[0].starts_with("ps_") && r[1].starts_with("ps_"))
    );
    let joined = run_as(
        &modeler,
        Some("benefits"),
        "SELECT COUNT(*) FROM social_insurance a JOIN social_insurance b ON a.id_number = b.id_number WHERE a.month = '2025-01' AND b.month = '2025-02'",
    )
    .unwrap()
    .1;
    assert!(joined[0][0].parse::<i64>().unwrap() > 1000, "{joined:?}");
    // Without the purpose the grant does not apply: the field is aggregate-only.
    assert!(matches!(
        run_as(&modeler, None, sql),
        Err(QueryError::Denied(_))
    ));
}

#[test]
fn refusals_name_the_field_and_rule_and_never_the_value() {
    let message = denied(
        &consumer(),
        "SELECT COUNT(*) FROM population WHERE phone = '13812345678'",
    );
    assert!(
        message.contains("population.phone") && message.contains("masked"),
        "{message}"
    );
    assert!(!message.contains("13812345678"));
    let message = denied(&consumer(), "SELECT ethnicity FROM population");
    assert!(
        message.contains("population.ethnicity")
            && message.contains("only through differential privacy"),
        "{message}"
    );
    let message = denied(&consumer(), "SELECT id_number FROM health_visits");
    assert!(
        message.contains("health_visits.id_number") && message.contains("differential privacy"),
        "{message}"
    );
}

#[test]
fn hidden_fields_are_refused_by_rule() {
    let f = fixture();
    let engine = build_engine(&f.dir, policy_with("L3", "\"deny\""));
    let c = consumer();
    let err = f
        .runtime
        .block_on(engine.query(&request(&c, "SELECT phone FROM population", None)))
        .unwrap_err();
    let QueryError::Denied(refusal) = err else {
        panic!("{err:?}")
    };
    assert_eq!(refusal.rule, "deny");
    assert_eq!(refusal.field.as_deref(), Some("population.phone"));
    // SELECT * expands to what remains.
    let (_, answer) = f
        .runtime
        .block_on(engine.query(&request(&c, "SELECT * FROM population LIMIT 1", None)))
        .unwrap();
    let names: Vec<&str> = answer
        .schema
        .fields()
        .iter()
        .map(|f| f.name().as_str())
        .collect();
    assert_eq!(names, ["sex", "county_code", "education", "marital_status"]);
}

#[test]
fn unknown_tables_are_not_found() {
    for sql in [
        "SELECT * FROM nothing_here",
        "SELECT * FROM veil.population",
        "SELECT * FROM information_schema.tables",
    ] {
        assert!(
            matches!(run(&consumer(), sql), Err(QueryError::UnknownTable(_))),
            "{sql}"
        );
    }
    // A subject may query nothing: every dataset is unknown to it.
    let subject = veil_policies::Principal::new("s", veil_policies::Role::Subject);
    assert!(matches!(
        run(&subject, "SELECT COUNT(*) FROM population"),
        Err(QueryError::UnknownTable(_))
    ));
}

#[test]
fn integers_never_wrap_and_casts_and_divisions_never_fail() {
    let rows = run(&consumer(), "SELECT 9223372036854775807 + year, year * 0 - 9223372036854775807 - 2, year / 0, CAST('x' AS INT) FROM tax LIMIT 1").unwrap();
    assert_eq!(
        rows,
        vec![vec![
            "NULL".to_string(),
            "NULL".to_string(),
            "NULL".to_string(),
            "NULL".to_string()
        ]]
    );
    let sum = run(&consumer(), "SELECT SUM(year * 1000000000000000) FROM tax").unwrap();
    assert!(
        !sum[0][0].starts_with('-') && sum[0][0].len() > 19,
        "{sum:?}"
    );
}

#[test]
fn not_a_select_is_invalid_sql() {
    for sql in [
        "DROP TABLE population",
        "EXPLAIN SELECT 1",
        "SELECT $1",
        "SELECT * FROM population WHERE",
    ] {
        assert!(
            matches!(run(&consumer(), sql), Err(QueryError::InvalidSql(_))),
            "{sql}"
        );
    }
}
