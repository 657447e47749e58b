//! The generator's promises: same seed, same bytes; valid identifiers; keys
//! consistent across tables; manifests that describe the files.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::path::Path;

use arrow::array::{AsArray, RecordBatch};
use arrow::datatypes::DataType;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use veil_datasets::{Options, TABLES, generate, manifests};
use veil_policies::identifiers::{CitizenId, CreditCode};
use veil_policies::{DatasetManifest, FieldType, Policy};

fn read(dir: &Path, table: &str) -> Vec<RecordBatch> {
    let file = File::open(dir.join(format!("{table}.parquet"))).unwrap();
    ParquetRecordBatchReaderBuilder::try_new(file)
        .unwrap()
        .build()
        .unwrap()
        .map(|b| b.unwrap())
        .collect()
}

fn strings(batches: &[RecordBatch], column: &str) -> Vec<String> {
    batches
        .iter()
        .flat_map(|b| {
            let col = b.column_by_name(column).unwrap().as_string::<i32>();
            col.iter().flatten().map(str::to_owned).collect::<Vec<_>>()
        })
        .collect()
}

fn small(seed: u64) -> (tempfile::TempDir, Vec<veil_datasets::TableSummary>) {
    let dir = tempfile::tempdir().unwrap();
    // 45,000 persons: three chunks, the last one partial and ending mid-block.
    let summary = generate(
        dir.path(),
        &Options {
            persons: 45_007,
            seed,
        },
        &|_| {},
    )
    .unwrap();
    (dir, summary)
}

#[test]
fn same_seed_same_bytes_other_seed_other_bytes() {
    let (a, sa) = small(7);
    let (b, sb) = small(7);
    let (c, _) = small(8);
    assert_eq!(sa, sb);
    for table in TABLES {
        let name = format!("{table}.parquet");
        let bytes_a = std::fs::read(a.path().join(&name)).unwrap();
        assert_eq!(
            bytes_a,
            std::fs::read(b.path().join(&name)).unwrap(),
            "{table}"
        );
        assert_ne!(
            bytes_a,
            std::fs::read(c.path().join(&name)).unwrap(),
            "{table}"
        );
        let manifest = format!("{table}.toml");
        assert_eq!(
            std::fs::read(a.path().join(&manifest)).unwrap(),
            manifests::text(table).as_bytes()
        );
    }
    // No temporary files are left behind.
    let leftovers: Vec<_> = std::fs::read_dir(a.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with('.'))
        .collect();
    assert!(leftovers.is_empty());
}

#[test]
fn identifiers_are_valid_unique_and_consistent_across_tables() {
    let (dir, summary) = small(20_240_301);
    let rows: HashMap<&str, u64> = summary.iter().map(|s| (s.name, s.rows)).collect();
    assert_eq!(rows["population"], 45_007);
    assert_eq!(rows["legal_persons"], 45_007u64.div_ceil(20));
    for table in ["utility_usage", "social_insurance", "health_visits"] {
        assert!(
            rows[table] > rows["population"] / 2,
            "{table}: {}",
            rows[table]
        );
    }
    assert!(
        rows["tax"] > 3 * rows["legal_persons"],
        "tax: {}",
        rows["tax"]
    );

    let population = read(dir.path(), "population");
    let ids = strings(&population, "id_number");
    let persons: HashSet<&String> = ids.iter().collect();
    assert_eq!(persons.len(), ids.len(), "identity numbers are unique");
    let sexes = strings(&population, "sex");
    let counties = strings(&population, "county_code");
    for ((id, sex), county) in ids.iter().zip(&sexes).zip(&counties) {
        let parsed = CitizenId::parse(id).unwrap_or_else(|e| panic!("{id}: {e}"));
        let male = parsed.sex() == veil_policies::identifiers::Sex::Male;
        assert_eq!(male, sex == "M");
        assert!(county.starts_with("53"), "{county}");
    }
    // Birth dates agree with the numbers.
    for b in &population {
        let ids = b.column_by_name("id_number").unwrap().as_string::<i32>();
        let dates = b
            .column_by_name("birth_date")
            .unwrap()
            .as_primitive::<arrow::datatypes::Date32Type>();
        for i in 0..b.num_rows() {
            let born = CitizenId::parse(ids.value(i)).unwrap().birth_date();
            let epoch = chrono::NaiveDate::from_ymd_opt(1970, 1, 1).unwrap();
            assert_eq!((born - epoch).num_days() as i32, dates.value(i));
        }
    }
    // Realistic repetition of names: common names recur, most are rare.
    let names = strings(&population, "name");
    let mut freq: HashMap<&String, usize> = HashMap::new();
    for n in &names {
        *freq.entry(n).or_default() += 1;
    }
    let top = freq.values().max().copied().unwrap_or(0);
    assert!(
        top > 30 && freq.len() > 5_000,
        "top {top}, distinct {}",
        freq.len()
    );

    let legal = read(dir.path(), "legal_persons");
    let codes = strings(&legal, "uscc");
    let companies: HashSet<&String> = codes.iter().collect();
    assert_eq!(companies.len(), codes.len(), "credit codes are unique");
    for code in &codes {
        CreditCode::parse(code).unwrap_or_else(|e| panic!("{code}: {e}"));
    }
    for rep in strings(&legal, "legal_rep_id_number") {
        assert!(
            persons.contains(&rep),
            "legal representative {rep} is not a person"
        );
    }

    let utility = read(dir.path(), "utility_usage");
    let subjects = strings(&utility, "subject_id");
    let kinds = strings(&utility, "subject_type");
    let mut organisations = 0;
    for (subject, kind) in subjects.iter().zip(&kinds) {
        match kind.as_str() {
            "person" => assert!(persons.contains(subject), "utility subject {subject}"),
            "organisation" => {
                assert!(companies.contains(subject), "utility subject {subject}");
                organisations += 1;
            }
            other => panic!("subject_type {other}"),
        }
    }
    assert!(organisations > 0);

    let insurance = read(dir.path(), "social_insurance");
    for id in strings(&insurance, "id_number") {
        assert!(persons.contains(&id));
    }
    for employer in strings(&insurance, "employer_uscc") {
        assert!(companies.contains(&employer), "employer {employer}");
    }
    for code in strings(&read(dir.path(), "tax"), "uscc") {
        assert!(companies.contains(&code));
    }
    for id in strings(&read(dir.path(), "health_visits"), "id_number") {
        assert!(persons.contains(&id));
    }
}

#[test]
fn manifests_are_valid_and_describe_the_files() {
    let (dir, _) = small(1);
    let policy = Policy::default_preset();
    for table in TABLES {
        let manifest =
            DatasetManifest::parse(manifests::text(table), &|g| policy.grade(g).is_some())
                .unwrap_or_else(|e| panic!("{table}: {e}"));
        assert_eq!(manifest.name, table);
        let batches = read(dir.path(), table);
        let schema = batches[0].schema();
        let declared: Vec<&str> = manifest.fields.iter().map(|f| f.name.as_str()).collect();
        let actual: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
        assert_eq!(declared, actual, "{table}");
        for (spec, field) in manifest.fields.iter().zip(schema.fields()) {
            let expected = match field.data_type() {
                DataType::Utf8 => FieldType::String,
                DataType::Float64 => FieldType::Float,
                DataType::Int64 => FieldType::Integer,
                DataType::Date32 => FieldType::Date,
                other => panic!("{other}"),
            };
            assert_eq!(spec.field_type, expected, "{table}.{}", spec.name);
            // Declared domains hold every value in the data.
            if let (Some(domain), DataType::Utf8) = (&spec.domain, field.data_type()) {
                let allowed: HashSet<&String> = domain.iter().collect();
                for v in strings(&batches, &spec.name) {
                    assert!(
                        allowed.contains(&v),
                        "{table}.{}: {v} outside the declared domain",
                        spec.name
                    );
                }
            }
        }
    }
}
