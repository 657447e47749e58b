//! The one-row-per-unit check at registration: it lets k thresholds count
//! rows and DP skip contribution bounding, so it must hold exactly.

use veil_policies::{DatasetManifest, Policy};

fn unique_units(csv: &str) -> bool {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("PUMS_pid.csv"), csv).unwrap();
    let policy = Policy::default_preset();
    let manifest = DatasetManifest::parse(veil_datasets::pums::MANIFEST, &|g| {
        policy.grade(g).is_some()
    })
    .unwrap();
    veil_engine::source::check_source(&manifest, dir.path(), None)
        .unwrap()
        .unique_units
}

const HEADER: &str = "age,sex,educ,race,income,married,pid\n";

#[test]
fn one_row_per_unit_needs_every_unit_present_and_none_repeated() {
    let rows = [
        "59,1,9,1,0.0,1,1\n",
        "31,0,1,3,17000.0,0,2\n",
        "40,1,9,1,5.0,1,3\n",
    ];
    assert!(unique_units(&format!("{HEADER}{}", rows.concat())));
    // A repeated unit anywhere in the file.
    assert!(!unique_units(&format!(
        "{HEADER}{}{}",
        rows.concat(),
        "20,1,9,1,0.0,1,2\n"
    )));
    // A row without a unit: its rows would count as a person each.
    assert!(!unique_units(&format!(
        "{HEADER}{}{}",
        rows.concat(),
        "20,1,9,1,0.0,1,\n"
    )));
    // The published sample has one row per person.
    assert!(unique_units(veil_datasets::pums::CSV));
}
