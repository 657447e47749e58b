//! What can go wrong with a query, by who is at fault. Messages of refusals
//! name fields and rules, never values; execution failures carry no detail
//! out of the engine at all (a message could echo a protected value).

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueryError {
    /// The SQL is not a single read-only SELECT, or does not plan.
    #[error("{0}")]
    InvalidSql(String),
    /// The SQL names a table that is not in the catalog (or not visible).
    #[error("{0}")]
    UnknownTable(String),
    /// The policy stage refused the query.
    #[error("{0}")]
    Denied(Refusal),
    /// The query went past a limit one query has (its memory, its time):
    /// the message names the limit and nothing of the data.
    #[error("{0}")]
    Limit(String),
    /// Execution failed. `detail` is for the service's log only: it may
    /// echo a value, so it never reaches a caller.
    #[error("the query failed while running; nothing was released")]
    Internal { detail: String },
}

/// A policy refusal: the field (as `dataset.field`) and the rule it broke.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub field: Option<String>,
    pub rule: &'static str,
    pub message: String,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

pub(crate) fn deny(
    field: Option<String>,
    rule: &'static str,
    message: impl Into<String>,
) -> QueryError {
    QueryError::Denied(Refusal {
        field,
        rule,
        message: message.into(),
    })
}

pub(crate) fn invalid(message: impl Into<String>) -> QueryError {
    QueryError::InvalidSql(message.into())
}

/// A message of DataFusion's (or its SQL parser's), without what the
/// caller wrote into it: string literals (`'…'`), the values of literal
/// expressions (`Utf8("…")`, `Int64(…)`), and the token a parse failed at
/// (`found: …`). Names of fields, functions and types stay.
pub(crate) fn redact(message: &str) -> String {
    /// Displays of DataFusion's scalar values: `Name(value)`.
    const SCALARS: [&str; 22] = [
        "Utf8",
        "Utf8View",
        "LargeUtf8",
        "Binary",
        "LargeBinary",
        "BinaryView",
        "Int8",
        "Int16",
        "Int32",
        "Int64",
        "UInt8",
        "UInt16",
        "UInt32",
        "UInt64",
        "Float16",
        "Float32",
        "Float64",
        "Decimal128",
        "Decimal256",
        "Date32",
        "Date64",
        "Boolean",
    ];
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(c) = rest.chars().next() {
        if c == '\'' {
            // A quoted literal, '' inside it escaping a quote.
            let mut end = rest.len();
            let mut i = 1;
            let bytes = rest.as_bytes();
            while i < bytes.len() {
                if bytes[i] == b'\'' {
                    if bytes.get(i + 1) == Some(&b'\'') {
                        i += 2;
                        continue;
                    }
                    end = i + 1;
                    break;
                }
                i += 1;
            }
            out.push_str("'…'");
            rest = &rest[end..];
            continue;
        }
        if let Some(after) = rest.strip_prefix("found: ") {
            out.push_str("found: …");
            let end = after.find(" at Line").unwrap_or(after.len());
            rest = &after[end..];
            continue;
        }
        let word_start = out
            .chars()
            .last()
            .is_none_or(|p| !(p.is_alphanumeric() || p == '_'));
        if word_start
            && let Some(name) = SCALARS
                .iter()
                .filter(|n| rest.starts_with(&format!("{n}(")))
                .max_by_key(|n| n.len())
        {
            // Up to the matching parenthesis, quotes and nesting included.
            let body = &rest[name.len()..];
            let (mut depth, mut quoted, mut end) = (0usize, false, body.len());
            for (i, ch) in body.char_indices() {
                match ch {
                    '"' | '\'' => quoted = !quoted,
                    '(' if !quoted => depth += 1,
                    ')' if !quoted => {
                        depth -= 1;
                        if depth == 0 {
                            end = i + 1;
                            break;
                        }
                    }
                    _ => {}
                }
            }
            out.push_str(name);
            out.push_str("(…)");
            rest = &body[end..];
            continue;
        }
        out.push(c);
        rest = &rest[c.len_utf8()..];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn messages_keep_names_and_lose_what_was_written() {
        let secret = "53010219491231002X";
        for (message, kept) in [
            (
                format!("Cannot cast string '{secret}' to value of Int64 type"),
                "Cannot cast string '…' to value of Int64 type",
            ),
            (
                format!("Invalid comparison h.cost = Utf8(\"{secret}\") AND Int64(530102)"),
                "Invalid comparison h.cost = Utf8(…) AND Int64(…)",
            ),
            (
                format!(
                    "sql parser error: Expected: end of statement, found: {secret} at Line: 1, Column: 9"
                ),
                "sql parser error: Expected: end of statement, found: … at Line: 1, Column: 9",
            ),
            (
                format!("it''s '{secret}''s' and 'an unterminated {secret}"),
                "it'…'s '…' and '…'",
            ),
            (
                "No field named population.nosuch. Valid fields are population.sex.".to_owned(),
                "No field named population.nosuch. Valid fields are population.sex.",
            ),
            (
                format!("MyInt64(3) and Utf8View(\"{secret})\") then Float64(NULL)"),
                "MyInt64(3) and Utf8View(…) then Float64(…)",
            ),
        ] {
            let redacted = redact(&message);
            assert_eq!(redacted, kept);
            assert!(!redacted.contains("1949"), "{redacted}");
        }
        // Nothing to redact, or malformed: never a panic, never longer text.
        for m in ["", "'", "Utf8(", "Int64(()", "found: ", "naïve 'é'"] {
            assert!(redact(m).chars().count() <= m.chars().count() + 4, "{m}");
        }
    }
}
