//! The one reader of JSON bodies, for every endpoint and for files the CLI
//! reads as bodies. A mistake is described by where it is and what kind it
//! is, never by the value met there: a misplaced identifier is not echoed.

use crate::error::ServiceError;

/// Reads `bytes` as the JSON `T`.
pub fn read_json<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, ServiceError> {
    serde_json::from_slice(bytes).map_err(|e| {
        let text = e.to_string();
        let what = if text.starts_with("missing field") {
            // The field is ours, from the type: safe to name.
            text.split(" at line").next().unwrap_or_default().to_owned()
        } else if let Some(rest) = text.strip_prefix("unknown field") {
            // The caller's key is not repeated; the fields we take are.
            let expected = rest
                .split(" at line")
                .next()
                .and_then(|r| r.split_once(", expected "))
                .map_or(String::new(), |(_, e)| format!("; expected {e}"));
            format!("a field this endpoint does not take{expected}")
        } else {
            match e.classify() {
                serde_json::error::Category::Syntax => "it is not valid JSON".to_owned(),
                serde_json::error::Category::Eof => "it ends too soon".to_owned(),
                _ => "a value has the wrong type".to_owned(),
            }
        };
        ServiceError::bad_request(format!(
            "the body is not the JSON this endpoint takes: {what} (line {}, column {})",
            e.line(),
            e.column()
        ))
    })
}

/// A JSON file, read as [`read_json`] reads a body.
pub fn read_json_file<T: serde::de::DeserializeOwned>(
    path: &std::path::Path,
) -> std::io::Result<Result<T, ServiceError>> {
    Ok(read_json(&std::fs::read(path)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Body {
        sql: String,
        epsilon: Option<f64>,
    }

    #[test]
    fn mistakes_are_described_without_the_values_sent() {
        let secret = "53010219900101001X";
        let bodies = [
            format!(r#"{{"sql": 1, "epsilon": "{secret}"}}"#),
            format!(r#"{{"sql": "x", "{secret}": 1}}"#),
            format!(r#"{{"sql": "{secret}""#),
            format!(r#"{{"sql": {secret}}}"#),
            format!(r#"["{secret}"]"#),
        ];
        for body in bodies {
            let e = read_json::<Body>(body.as_bytes()).unwrap_err();
            assert_eq!(e.code, crate::wire::ErrorCode::BadRequest);
            assert!(!e.message.contains(secret), "{e}");
            assert!(!e.message.contains("5301"), "{e}");
        }
        let e = read_json::<Body>(br#"{"epsilon": 1}"#).unwrap_err();
        assert!(e.message.contains("missing field `sql`"), "{e}");
        let e = read_json::<Body>(br#"{"sql": "x", "sqll": 1}"#).unwrap_err();
        assert!(e.message.contains("expected `sql` or `epsilon`"), "{e}");
        assert!(!e.message.contains("sqll"), "{e}");
    }
}
