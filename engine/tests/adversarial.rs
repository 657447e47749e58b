//! The adversarial suite: queries that try to get around the policy, each
//! asserting a refusal or a protected answer, and an oracle check that no raw
//! value of a protected field of the sample data appears in any answer.

mod common;

use std::collections::HashSet;

use arrow::array::AsArray;
use common::*;
use veil_engine::QueryError;
use veil_policies::Principal;

/// What a query must end in.
#[derive(Debug, Clone, Copy)]
enum Expect {
    /// Refused by the policy stage.
    Denied,
    /// Refused before planning, or as SQL the engine does not accept.
    Invalid,
    /// Refused in either way.
    Refused,
    /// Answered, with every cell passing the check.
    Protected(fn(&[Vec<String>]) -> bool),
}

struct Attack {
    name: &'static str,
    who: fn() -> Principal,
    sql: &'static str,
    expect: Expect,
}

fn masked(rows: &[Vec<String>]) -> bool {
    !rows.is_empty()
        && rows
            .iter()
            .all(|r| r.iter().all(|c| c.contains('*') || c == "NULL"))
}

fn all_null(rows: &[Vec<String>]) -> bool {
    rows.iter().all(|r| r.iter().all(|c| c == "NULL"))
}

fn empty(rows: &[Vec<String>]) -> bool {
    rows.is_empty()
}

fn no_small_groups(rows: &[Vec<String>]) -> bool {
    // Every released count (last column) stands for at least k = 10 units.
    rows.iter().all(|r| {
        r.last()
            .and_then(|c| c.parse::<i64>().ok())
            .is_some_and(|n| n >= 10)
    })
}

fn tokens(rows: &[Vec<String>]) -> bool {
    !rows.is_empty()
        && rows
            .iter()
            .all(|r| r.iter().all(|c| c.starts_with("ps_") || c == "NULL"))
}

const fn attack(
    name: &'static str,
    who: fn() -> Principal,
    sql: &'static str,
    expect: Expect,
) -> Attack {
    Attack {
        name,
        who,
        sql,
        expect,
    }
}

fn attacks() -> Vec<Attack> {
    use Expect::*;
    vec![
        // Subquery smuggling.
        attack(
            "in-subquery on a masked key",
            consumer,
            "SELECT county_code FROM population WHERE id_number IN (SELECT id_number FROM health_visits WHERE diagnosis_category = 'mental')",
            Denied,
        ),
        attack(
            "exists correlated on a masked key",
            consumer,
            "SELECT county_code FROM population p WHERE EXISTS (SELECT 1 FROM health_visits h WHERE h.id_number = p.id_number)",
            Denied,
        ),
        attack(
            "scalar subquery over dp data",
            consumer,
            "SELECT county_code, (SELECT MAX(cost) FROM health_visits h WHERE h.county_code = p.county_code) FROM population p",
            Denied,
        ),
        attack(
            "scalar subquery returns a masked value",
            consumer,
            "SELECT (SELECT name FROM population LIMIT 1) AS n",
            Protected(masked),
        ),
        attack(
            "CTE renames a masked field to filter on it",
            consumer,
            "WITH t AS (SELECT id_number AS x FROM population) SELECT COUNT(*) FROM t WHERE x = '11010519491231002X'",
            Denied,
        ),
        attack(
            "derived table hides an aggregate-only field",
            consumer,
            "SELECT e FROM (SELECT ethnicity AS e FROM population) t",
            Denied,
        ),
        attack(
            "wildcard over an aggregate-only column alone",
            consumer,
            "SELECT * FROM (SELECT ethnicity FROM population) t",
            Denied,
        ),
        // EXPLAIN and statements that are not one SELECT.
        attack(
            "explain",
            consumer,
            "EXPLAIN SELECT * FROM population",
            Invalid,
        ),
        attack(
            "explain analyze",
            consumer,
            "EXPLAIN ANALYZE SELECT COUNT(*) FROM health_visits",
            Invalid,
        ),
        attack(
            "two statements",
            consumer,
            "SELECT 1; SELECT name FROM population",
            Invalid,
        ),
        attack(
            "information_schema",
            consumer,
            "SELECT * FROM information_schema.columns",
            Refused,
        ),
        attack(
            "url table",
            consumer,
            "SELECT * FROM '/etc/passwd'",
            Refused,
        ),
        attack(
            "table function",
            consumer,
            "SELECT * FROM generate_series(1, 10)",
            Refused,
        ),
        // Error oracles.
        attack(
            "division by zero chosen by an aggregate-only value",
            consumer,
            "SELECT education, SUM(CASE WHEN ethnicity = '彝族' THEN 1 / 0 ELSE 0 END) FROM population GROUP BY education",
            Denied,
        ),
        attack(
            "failing cast of an aggregate-only value",
            consumer,
            "SELECT education, SUM(CAST(ethnicity AS INT)) FROM population GROUP BY education",
            Denied,
        ),
        attack(
            "failing cast of a masked value",
            consumer,
            "SELECT CAST(name AS INT) FROM population LIMIT 5",
            Protected(all_null),
        ),
        attack(
            "float division by a protected difference",
            consumer,
            "SELECT subject_type, SUM(amount_billed / (usage - 100)) AS s, COUNT(*) AS n FROM utility_usage GROUP BY subject_type",
            Denied,
        ),
        attack(
            "integer overflow chosen by a protected value",
            consumer,
            "SELECT education, SUM(CASE WHEN ethnicity = '彝族' THEN 9223372036854775807 * 2 ELSE 0 END) FROM population GROUP BY education",
            Denied,
        ),
        attack(
            "negative substring length from a protected value",
            consumer,
            "SELECT education, COUNT(substr(ethnicity, 1, CAST(LENGTH(ethnicity) - 5 AS INT))) FROM population GROUP BY education",
            Denied,
        ),
        // Masking bypasses.
        attack(
            "substr of a masked id",
            consumer,
            "SELECT substr(id_number, 1, 18) FROM population LIMIT 5",
            Protected(masked),
        ),
        attack(
            "concat of a masked name",
            consumer,
            "SELECT concat(name, '') FROM population LIMIT 5",
            Protected(masked),
        ),
        attack(
            "length of a masked phone as a group key",
            consumer,
            "SELECT length(phone), COUNT(*) FROM population GROUP BY length(phone)",
            Denied,
        ),
        attack(
            "md5 of a masked name",
            consumer,
            "SELECT md5(name) FROM population",
            Refused,
        ),
        attack(
            "sha256 of a masked id",
            consumer,
            "SELECT sha256(id_number) FROM population",
            Refused,
        ),
        attack(
            "CASE over a masked id",
            consumer,
            "SELECT CASE WHEN id_number LIKE '5301%' THEN 'kunming' ELSE 'elsewhere' END || name FROM population LIMIT 5",
            Denied,
        ),
        attack(
            "ORDER BY a masked id LIMIT 1",
            consumer,
            "SELECT name FROM population ORDER BY id_number LIMIT 1",
            Denied,
        ),
        attack(
            "MIN of a masked id",
            consumer,
            "SELECT MIN(id_number) FROM population",
            Protected(masked),
        ),
        attack(
            "MAX of an aggregate-only field",
            consumer,
            "SELECT MAX(ethnicity) FROM population",
            Denied,
        ),
        attack(
            "window ordered by a masked id",
            consumer,
            "SELECT first_value(name) OVER (ORDER BY id_number) FROM population",
            Denied,
        ),
        attack(
            "window over an aggregate-only field",
            consumer,
            "SELECT lag(ethnicity) OVER (ORDER BY county_code) FROM population",
            Denied,
        ),
        attack(
            "window partitioned by a masked phone",
            consumer,
            "SELECT row_number() OVER (PARTITION BY phone) FROM population",
            Denied,
        ),
        attack(
            "array_agg of an aggregate-only field",
            consumer,
            "SELECT education, array_agg(ethnicity) FROM population GROUP BY education",
            Denied,
        ),
        attack(
            "string_agg of an aggregate-only field",
            consumer,
            "SELECT education, string_agg(ethnicity, ',') FROM population GROUP BY education",
            Denied,
        ),
        attack(
            "first_value aggregate of an aggregate-only field",
            consumer,
            "SELECT education, first_value(ethnicity) FROM population GROUP BY education",
            Denied,
        ),
        // Filters on masked, compare and deny fields.
        attack(
            "filter on a masked phone",
            consumer,
            "SELECT COUNT(*) FROM population WHERE phone = '13812345678'",
            Denied,
        ),
        attack(
            "filter on a masked name with LIKE",
            consumer,
            "SELECT COUNT(*) FROM population WHERE name LIKE '张%'",
            Denied,
        ),
        attack(
            "filter on dp data",
            consumer,
            "SELECT diagnosis_category FROM health_visits WHERE diagnosis_category = 'mental'",
            Denied,
        ),
        attack(
            "filter on a deny field (core)",
            consumer_denied_phone,
            "SELECT COUNT(*) FROM population WHERE phone = '13812345678'",
            Denied,
        ),
        attack(
            "select a compare-only field",
            consumer_compare_names,
            "SELECT name FROM population LIMIT 1",
            Denied,
        ),
        attack(
            "filter on a compare-only field",
            consumer_compare_names,
            "SELECT COUNT(*) FROM population WHERE name = '张伟'",
            Denied,
        ),
        // GROUP BY an identifier.
        attack(
            "group by a masked identifier",
            consumer,
            "SELECT id_number, COUNT(*) FROM population GROUP BY id_number",
            Denied,
        ),
        attack(
            "group by an aggregate-only identifier (modeler)",
            modeler,
            "SELECT id_number, COUNT(*) FROM social_insurance GROUP BY id_number",
            Denied,
        ),
        attack(
            "count distinct of an aggregate-only identifier (modeler)",
            modeler,
            "SELECT COUNT(DISTINCT id_number) FROM population",
            Denied,
        ),
        // Trackers and differencing against aggregate(k).
        attack(
            "tracker through an identifier filter",
            consumer,
            "SELECT SUM(usage) FROM utility_usage WHERE subject_id <> '11010519491231002X'",
            Denied,
        ),
        attack(
            "one person's group is suppressed",
            consumer,
            "SELECT county_code, sex, education, marital_status, COUNT(ethnicity) FROM population WHERE education = 'postgraduate' AND marital_status = 'widowed' GROUP BY county_code, sex, education, marital_status",
            Protected(no_small_groups),
        ),
        attack(
            "every small group is suppressed",
            consumer,
            "SELECT county_code, education, COUNT(ethnicity) AS n FROM population GROUP BY county_code, education",
            Protected(no_small_groups),
        ),
        attack(
            "global aggregate over a tiny filter",
            consumer,
            "SELECT COUNT(ethnicity) FROM population WHERE county_code = '533324' AND education = 'postgraduate'",
            Protected(empty),
        ),
        // Self-joins and UNION ALL multiplying one unit's rows.
        attack(
            "self-join multiplies one person",
            consumer,
            "SELECT COUNT(a.ethnicity) AS n FROM population a JOIN population b ON a.county_code = b.county_code WHERE a.county_code = '533324' AND a.education = 'postgraduate' AND b.education = 'postgraduate'",
            Denied,
        ),
        attack(
            "UNION ALL multiplies one person",
            consumer,
            "SELECT COUNT(e) FROM (SELECT ethnicity AS e FROM population WHERE county_code = '533324' UNION ALL SELECT ethnicity FROM population WHERE county_code = '533324') t",
            Denied,
        ),
        // NULL privacy units.
        attack(
            "NULL units do not make a crowd",
            consumer,
            "SELECT COUNT(u.usage) FROM utility_usage u LEFT JOIN population p ON u.county_code = p.county_code WHERE u.county_code = '533324' AND p.education = 'none'",
            Denied,
        ),
        // Region filters.
        attack(
            "region escape through a join",
            kunming,
            "SELECT COUNT(*) AS n FROM population p JOIN legal_persons l ON p.county_code = l.county_code WHERE l.county_code NOT LIKE '5301%'",
            Protected(|rows| rows == [vec!["0".to_string()]]),
        ),
        attack(
            "region escape through a subquery",
            kunming,
            "SELECT (SELECT COUNT(*) FROM population WHERE county_code NOT LIKE '5301%') AS n",
            Protected(|rows| rows == [vec!["0".to_string()]]),
        ),
        attack(
            "region escape through IN",
            kunming,
            "SELECT COUNT(*) FROM legal_persons WHERE county_code IN (SELECT county_code FROM population WHERE county_code LIKE '5303%')",
            Protected(|rows| rows == [vec!["0".to_string()]]),
        ),
        // Pseudonyms: tokens, never values.
        attack(
            "pseudonyms for a granted modeler",
            granted_modeler,
            "SELECT id_number FROM social_insurance LIMIT 5",
            Protected(tokens),
        ),
    ]
}

fn consumer_denied_phone() -> Principal {
    let mut p = consumer();
    p.name = "deny-phone".into();
    p
}

fn consumer_compare_names() -> Principal {
    let mut p = consumer();
    p.name = "compare-names".into();
    p
}

fn granted_modeler() -> Principal {
    let mut p = granted("social_insurance");
    p.role = veil_policies::Role::Modeler;
    p
}

/// The engine an attack runs against: the default preset, or a variant for
/// the compare and deny cases (the sample has no such field by default).
fn run_attack(a: &Attack) -> Result<Vec<Vec<String>>, QueryError> {
    let f = fixture();
    let who = (a.who)();
    let purpose = (who.name == "test-granted").then_some("benefits");
    let variant = match who.name.as_str() {
        "deny-phone" => Some(policy_with("L3", "\"deny\"")),
        "compare-names" => Some(policy_with("L3", "\"compare\"")),
        _ => None,
    };
    let engine = variant.map(|p| build_engine(&f.dir, p));
    // These attacks aim at exact aggregates over k units, which the default
    // preset gives only to granted principals: run them where consumers
    // have them too. The default preset's answer to them (differential
    // privacy) is `exact_amounts_leave_only_under_dp` below.
    let engine = engine.as_ref().unwrap_or(k_engine());
    f.runtime
        .block_on(engine.query(&request(&who, a.sql, purpose)))
        .map(|(_, answer)| rows(&answer.batches))
}

#[test]
fn every_attack_is_refused_or_answered_protected() {
    let list = attacks();
    assert!(list.len() >= 40, "the suite has {} attacks", list.len());
    let mut failures = Vec::new();
    for a in &list {
        let outcome = run_attack(a);
        let ok = match (&a.expect, &outcome) {
            (Expect::Denied, Err(QueryError::Denied(_))) => true,
            (Expect::Invalid, Err(QueryError::InvalidSql(_))) => true,
            (
                Expect::Refused,
                Err(
                    QueryError::Denied(_) | QueryError::InvalidSql(_) | QueryError::UnknownTable(_),
                ),
            ) => true,
            (Expect::Protected(check), Ok(rows)) => check(rows),
            _ => false,
        };
        if !ok {
            failures.push(format!(
                "{}: expected {:?}, got {:?}",
                a.name,
                a.expect,
                outcome.map(|r| r.into_iter().take(3).collect::<Vec<_>>())
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} attacks got through:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// The raw values of the protected fields of the sample, read from the files.
fn protected_values() -> (HashSet<String>, HashSet<String>) {
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    let f = fixture();
    let mut long = HashSet::new();
    let mut names = HashSet::new();
    let columns = [
        ("population", "id_number"),
        ("population", "phone"),
        ("population", "address"),
        ("population", "name"),
        ("legal_persons", "legal_rep_id_number"),
        ("utility_usage", "account_id"),
        ("health_visits", "id_number"),
    ];
    for (table, column) in columns {
        let file = std::fs::File::open(f.dir.join(format!("{table}.parquet"))).unwrap();
        for batch in ParquetRecordBatchReaderBuilder::try_new(file)
            .unwrap()
            .build()
            .unwrap()
        {
            let batch = batch.unwrap();
            let values = batch.column_by_name(column).unwrap().as_string::<i32>();
            for v in values.iter().flatten() {
                if column == "name" {
                    names.insert(v.to_owned())
                } else {
                    long.insert(v.to_owned())
                };
            }
        }
    }
    (long, names)
}

#[test]
fn no_raw_protected_value_appears_in_any_answer() {
    let (long, names) = protected_values();
    assert!(long.len() > 40_000 && names.len() > 1_000);
    let mut answered = 0;
    for a in attacks() {
        let Ok(rows) = run_attack(&a) else { continue };
        answered += 1;
        for cell in rows.iter().flatten() {
            assert!(!names.contains(cell), "{}: a raw name appears", a.name);
            for token in cell.split([',', ' ', '[', ']']) {
                assert!(
                    !long.contains(token),
                    "{}: a raw protected value appears",
                    a.name
                );
            }
            assert!(
                !long
                    .iter()
                    .any(|v| v.len() >= 11 && cell.contains(v.as_str())),
                "{}: a raw protected value appears inside a cell",
                a.name
            );
        }
    }
    assert!(
        answered >= 10,
        "only {answered} attacks produced answers to inspect"
    );
}

/// The three ways a consumer without a grant read exact amounts, against the
/// default preset: refused, or answered under differential privacy and
/// charged, as a consumer and as a region-scoped consumer.
#[test]
fn exact_amounts_leave_only_under_dp() {
    let f = fixture();
    let company = table("tax", &["uscc"])[0]["uscc"].clone();
    let person = table("social_insurance", &["id_number"])[0]["id_number"].clone();
    let masked = format!("{}**********{}", &person[..4], &person[14..]);
    for who in [consumer(), kunming()] {
        let prepare = |sql: &str| f.engine.prepare(&request(&who, sql, None));
        // 1. A condition inside the aggregate: FILTER is refused; a CASE
        // is a DP sum of an expression, charged, whose automatic bounds
        // come from a noisy histogram where one company's revenue is one
        // row: they stay around the zeros of everyone else, so the
        // revenue is clamped to nothing.
        let sql = format!("SELECT SUM(tax_paid) FILTER (WHERE uscc = '{company}') FROM tax");
        assert!(prepare(&sql).is_err(), "{sql}");
        let sql = format!(
            "SELECT SUM(CASE WHEN uscc = '{company}' AND year = 2024 THEN revenue ELSE 0 END) FROM tax"
        );
        match f
            .runtime
            .block_on(f.engine.query(&request(&who, &sql, None)))
        {
            Err(QueryError::Denied(_) | QueryError::InvalidSql(_)) => {}
            // Too few companies for the ε to bound anything: nothing is
            // released (the service keeps the charge), and nothing echoed.
            Err(QueryError::Limit(m)) => {
                assert!(m.contains("automatic bounds"), "{m}");
                assert!(!m.contains(&company), "{m}");
            }
            Ok((prepared, _)) => {
                let dp = prepared.dp.as_ref().expect("a DP answer");
                assert!(
                    dp.costs
                        .iter()
                        .any(|c| c.dataset == "tax" && c.epsilon > 0.0)
                );
                let noise = &dp.noise[0];
                assert!(noise.auto_bounds, "{noise:?}");
                let (lo, hi) = noise.bounds.unwrap();
                assert!(lo > -1.0 && hi < 1.0, "{sql}: bounds [{lo}, {hi}]");
            }
            Err(e) => panic!("{sql}: {e:?}"),
        }
        // 2. Masked values as a key inside an aggregate.
        for sql in [
            format!(
                "SELECT SUM(CASE WHEN id_number = '{masked}' THEN contribution_base END) FROM social_insurance"
            ),
            format!(
                "SELECT COUNT(CASE WHEN id_number = '{masked}' AND month = '2024-03' THEN 1 END) FROM social_insurance"
            ),
        ] {
            match prepare(&sql) {
                Err(QueryError::Denied(r)) => assert!(!r.message.contains(&masked), "{sql}"),
                other => panic!("{sql}: {other:?}"),
            }
        }
        // 3. Differencing: both halves are DP answers, charged to `tax`.
        for sql in [
            "SELECT SUM(revenue) FROM tax WHERE year = 2025".to_owned(),
            format!("SELECT SUM(revenue) FROM tax WHERE year = 2025 AND uscc <> '{company}'"),
        ] {
            let prepared = prepare(&sql).unwrap_or_else(|e| panic!("{sql}: {e:?}"));
            assert_eq!(prepared.privacy.mode, "dp", "{sql}");
            let dp = prepared.dp.as_ref().unwrap();
            assert!(
                dp.costs
                    .iter()
                    .any(|c| c.dataset == "tax" && c.epsilon > 0.0)
            );
        }
    }
    // A granted principal still gets exact aggregates over k units, and the
    // conditional forms stay refused for it.
    let mut modeler = granted("tax");
    modeler.role = veil_policies::Role::Modeler;
    let (prepared, _) = f
        .runtime
        .block_on(f.engine.query(&request(
            &modeler,
            "SELECT county_code, SUM(revenue) FROM tax GROUP BY county_code",
            Some("benefits"),
        )))
        .unwrap();
    assert_eq!(prepared.privacy.mode, "aggregate");
    let sql = format!("SELECT SUM(revenue) FILTER (WHERE uscc = '{company}') FROM tax");
    assert!(matches!(
        f.engine.prepare(&request(&modeler, &sql, Some("benefits"))),
        Err(QueryError::Denied(_))
    ));
}

/// Statements built to be deep or wide (issue 18's crash: a chain of 350
/// additions overflowed a worker's stack): for every shape, at the limits
/// and past them, the answer is a result or a clear `invalid_sql` naming
/// the limit, and never the process going down. Run on a thread with the
/// query pool's stack, as the service runs queries.
#[test]
fn deep_and_wide_statements_are_answered_or_refused_never_crash() {
    type Shape = fn(usize) -> String;
    let shapes: Vec<(&str, Shape)> = vec![
        ("additions", |n| format!("SELECT 1{}", " + 1".repeat(n))),
        ("ors", |n| {
            format!(
                "SELECT COUNT(*) FROM legal_persons WHERE industry = 'a'{}",
                " OR industry = 'b'".repeat(n)
            )
        }),
        ("unions", |n| {
            format!("SELECT 1 AS x{}", " UNION ALL SELECT 1".repeat(n))
        }),
        ("parentheses", |n| {
            format!("SELECT {}1{}", "(".repeat(n), ")".repeat(n))
        }),
        ("functions", |n| {
            format!("SELECT {}1{}", "abs(".repeat(n), ")".repeat(n))
        }),
        ("cases", |n| {
            format!(
                "SELECT {}1{}",
                "CASE WHEN 1 = 1 THEN ".repeat(n),
                " END".repeat(n)
            )
        }),
        ("tables", |n| {
            format!(
                "SELECT COUNT(*) FROM legal_persons{}",
                ", legal_persons".repeat(n)
            )
        }),
        ("in list", |n| {
            format!(
                "SELECT COUNT(*) FROM legal_persons WHERE industry IN ('x'{})",
                ", 'y'".repeat(n * 40)
            )
        }),
    ];
    let who = consumer();
    std::thread::Builder::new()
        .stack_size(64 << 20)
        .spawn(move || {
            let f = fixture();
            for (name, shape) in &shapes {
                for n in [10, 100, 255, 257, 1_000, 5_000] {
                    let sql = shape(n);
                    let outcome = f
                        .runtime
                        .block_on(f.engine.query(&request(&who, &sql, None)));
                    match outcome {
                        Ok(_) | Err(QueryError::Denied(_)) => {}
                        Err(QueryError::InvalidSql(message)) => {
                            assert!(
                                message.len() < 400 && !message.contains("1 + 1 + 1"),
                                "{name} {n}: {message}"
                            );
                        }
                        Err(other) => panic!("{name} {n}: {other}"),
                    }
                }
            }
            // Past the operator limit, the refusal names it.
            let sql = format!("SELECT 1{}", " + 1".repeat(veil_engine::MAX_OPERATORS + 1));
            let err = f
                .runtime
                .block_on(f.engine.query(&request(&who, &sql, None)))
                .unwrap_err();
            assert!(err.to_string().contains("operators"), "{err}");
            // At it, the statement is answered.
            let sql = format!("SELECT 1{}", " + 1".repeat(veil_engine::MAX_OPERATORS));
            let (_, answer) = f
                .runtime
                .block_on(f.engine.query(&request(&who, &sql, None)))
                .unwrap();
            assert_eq!(
                rows(&answer.batches),
                [[(veil_engine::MAX_OPERATORS + 1).to_string()]]
            );
        })
        .unwrap()
        .join()
        .unwrap();
}

/// A query whose operators need more memory than one query may hold fails
/// with a clear `Limit` naming the limit, plain or under DP, and the same
/// engine answers the next query: the limit is the query's own.
#[test]
fn a_query_past_its_memory_is_refused_by_name_and_the_next_is_answered() {
    let f = fixture();
    let mut engine = build_engine(&f.dir, veil_policies::Policy::default_preset());
    engine.set_query_memory(256 << 10);
    let who = consumer();
    let heavy = [
        "SELECT a.industry, COUNT(*) FROM legal_persons a JOIN legal_persons b ON a.industry = b.industry GROUP BY a.industry",
        "SELECT name, COUNT(*) FROM legal_persons GROUP BY name ORDER BY name",
        "SELECT industry, COUNT(*) FROM legal_persons GROUP BY industry",
    ];
    let mut refused = 0;
    for sql in heavy {
        match f.runtime.block_on(engine.query(&request(&who, sql, None))) {
            Err(QueryError::Limit(message)) => {
                assert!(message.contains("(256 KiB)"), "{message}");
                refused += 1;
            }
            Err(QueryError::Denied(_)) => {}
            Ok(_) => {}
            Err(other) => panic!("{sql}: {other}"),
        }
    }
    assert!(refused > 0, "no query reached a 256 KiB limit");
    let small = f.runtime.block_on(engine.query(&request(
        &who,
        "SELECT COUNT(*) FROM legal_persons",
        None,
    )));
    assert!(small.is_ok(), "{:?}", small.err());
}
