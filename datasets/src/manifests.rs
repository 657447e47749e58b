//! The catalog manifests of the sample tables, kept as files in
//! `datasets/manifests/` so they document the format by example.

/// The manifest text of a sample table.
pub fn text(table: &str) -> &'static str {
    match table {
        "population" => include_str!("../manifests/population.toml"),
        "legal_persons" => include_str!("../manifests/legal_persons.toml"),
        "utility_usage" => include_str!("../manifests/utility_usage.toml"),
        "social_insurance" => include_str!("../manifests/social_insurance.toml"),
        "tax" => include_str!("../manifests/tax.toml"),
        "health_visits" => include_str!("../manifests/health_visits.toml"),
        other => panic!("no manifest for {other}"),
    }
}
