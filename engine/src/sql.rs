//! From SQL text to an unchecked logical plan: exactly one read-only SELECT,
//! planned against the tables and columns the principal may reference.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::datatypes::DataType;
use datafusion::common::{
    DataFusionError, Result as DfResult, TableReference, config::ConfigOptions, plan_err,
};
use datafusion::execution::session_state::SessionState;
use datafusion::logical_expr::planner::{ContextProvider, ExprPlanner, RelationPlanner};
use datafusion::logical_expr::{
    AggregateUDF, HigherOrderUDF, LogicalPlan, ScalarUDF, TableSource, WindowUDF,
};
use datafusion::sql::parser::{DFParserBuilder, Statement as DfStatement};
use datafusion::sql::planner::{ParserOptions, SqlToRel};
use datafusion::sql::sqlparser::ast::Statement;
use datafusion::sql::sqlparser::dialect::GenericDialect;

use crate::error::{QueryError, invalid};

/// Nesting deeper than this is refused by the parser.
const RECURSION_LIMIT: usize = 64;

/// Operators (`+`, `=`, `AND`, `UNION`, `JOIN`, ...) a statement may hold.
/// A chain of operators parses into a tree as deep as the chain is long,
/// and the planner and DataFusion's rewrites recurse over it: with at most
/// this many, and parentheses and subqueries nested at most
/// [`RECURSION_LIMIT`] deep, no accepted statement is deeper than a few
/// hundred levels, which the query threads' stacks hold many times over
/// (`veil_api::service::pool`).
pub const MAX_OPERATORS: usize = 256;

/// Tokens a statement may hold (long `IN` lists are fine up to this).
pub const MAX_TOKENS: usize = 50_000;

/// Table references a statement may hold: a list of tables plans into a
/// chain of joins as deep as it is long.
pub const MAX_TABLES: usize = 64;

/// Refuses a parsed statement that references more than [`MAX_TABLES`]
/// tables (its depth is already bounded, so the walk is safe).
fn check_tables(statement: &Statement) -> Result<(), QueryError> {
    use datafusion::sql::sqlparser::ast::visit_relations;
    let mut tables = 0usize;
    let _ = visit_relations(statement, |_| {
        tables += 1;
        if tables > MAX_TABLES {
            std::ops::ControlFlow::Break(())
        } else {
            std::ops::ControlFlow::Continue(())
        }
    });
    if tables > MAX_TABLES {
        return Err(invalid(format!(
            "the statement references more than {MAX_TABLES} tables, the most one statement may join; split it into smaller queries"
        )));
    }
    Ok(())
}

/// Refuses a statement too large or too deep to plan safely, before the
/// parser builds anything from it. Counting is iterative and cheap; the
/// error names the limit, never the text.
fn check_size(sql: &str) -> Result<(), QueryError> {
    use datafusion::sql::sqlparser::keywords::Keyword;
    use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer};
    let tokens = Tokenizer::new(&GenericDialect {}, sql)
        .tokenize()
        .map_err(|e| {
            invalid(format!(
                "the SQL does not parse: {}",
                strip_prefix(&e.to_string())
            ))
        })?;
    let (mut count, mut operators) = (0usize, 0usize);
    for token in &tokens {
        match token {
            Token::Whitespace(_) | Token::EOF => continue,
            Token::Word(w) => {
                if matches!(
                    w.keyword,
                    Keyword::AND
                        | Keyword::OR
                        | Keyword::NOT
                        | Keyword::UNION
                        | Keyword::INTERSECT
                        | Keyword::EXCEPT
                        | Keyword::JOIN
                        | Keyword::BETWEEN
                        | Keyword::LIKE
                        | Keyword::ILIKE
                        | Keyword::IS
                ) && w.quote_style.is_none()
                {
                    operators += 1;
                }
            }
            Token::Number(..)
            | Token::Comma
            | Token::LParen
            | Token::RParen
            | Token::Period
            | Token::SemiColon
            | Token::SingleQuotedString(_)
            | Token::DoubleQuotedString(_)
            | Token::NationalStringLiteral(_)
            | Token::EscapedStringLiteral(_)
            | Token::HexStringLiteral(_)
            | Token::Placeholder(_) => {}
            // Every other token is an operator of some kind.
            _ => operators += 1,
        }
        count += 1;
    }
    if count > MAX_TOKENS {
        return Err(invalid(format!(
            "the statement has more than {MAX_TOKENS} tokens; send a shorter one"
        )));
    }
    if operators > MAX_OPERATORS {
        return Err(invalid(format!(
            "the statement has more than {MAX_OPERATORS} operators (+, =, AND, OR, UNION, JOIN and the like), the most one statement may chain; split it into smaller queries"
        )));
    }
    Ok(())
}

/// Parses `sql` and accepts exactly one query statement. Everything else is
/// refused before planning: EXPLAIN (plans print exact statistics), DDL, DML,
/// COPY, SET, SHOW and the like. A statement over [`MAX_TOKENS`] tokens or
/// [`MAX_OPERATORS`] operators is refused before it is parsed.
pub fn parse_select(sql: &str) -> Result<Statement, QueryError> {
    check_size(sql)?;
    let mut statements = DFParserBuilder::new(sql)
        .with_dialect(&GenericDialect {})
        .with_recursion_limit(RECURSION_LIMIT)
        .build()
        .and_then(|mut p| p.parse_statements())
        .map_err(|e| {
            invalid(format!(
                "the SQL does not parse: {}",
                strip_prefix(&e.to_string())
            ))
        })?;
    if statements.len() != 1 {
        return Err(invalid(format!(
            "send exactly one SELECT statement (got {})",
            statements.len()
        )));
    }
    match statements.pop_front() {
        Some(DfStatement::Statement(statement)) => match *statement {
            Statement::Query(_) => {
                check_tables(&statement)?;
                Ok(*statement)
            }
            Statement::Explain { .. } | Statement::ExplainTable { .. } => Err(invalid(
                "EXPLAIN is not available: plans reveal exact statistics of the data",
            )),
            other => Err(invalid(format!(
                "only SELECT queries are accepted, not {}",
                statement_kind(&other)
            ))),
        },
        Some(DfStatement::Explain(_)) => Err(invalid(
            "EXPLAIN is not available: plans reveal exact statistics of the data",
        )),
        Some(_) => Err(invalid("only SELECT queries are accepted")),
        None => Err(invalid("send exactly one SELECT statement (got 0)")),
    }
}

/// Whether the outermost SELECT list has `*` or `t.*`: then columns the
/// caller may not see row by row are left out instead of refused.
pub fn selects_wildcard(statement: &Statement) -> bool {
    use datafusion::sql::sqlparser::ast::{SelectItem, SetExpr};
    let Statement::Query(query) = statement else {
        return false;
    };
    match query.body.as_ref() {
        SetExpr::Select(select) => select.projection.iter().any(|item| {
            matches!(
                item,
                SelectItem::Wildcard(_) | SelectItem::QualifiedWildcard(..)
            )
        }),
        _ => false,
    }
}

/// The first word of a statement, for messages.
fn statement_kind(statement: &Statement) -> String {
    let text = statement.to_string();
    text.split_whitespace()
        .take(2)
        .collect::<Vec<_>>()
        .join(" ")
        .to_uppercase()
}

/// DataFusion's message without its prefix, and without what the caller
/// wrote into it (`crate::error::redact`).
fn strip_prefix(message: &str) -> String {
    crate::error::redact(
        message
            .strip_prefix("SQL error: ")
            .or_else(|| message.strip_prefix("Error during planning: "))
            .unwrap_or(message)
            .trim(),
    )
}

/// Resolves table names to the principal's view of each dataset, and
/// functions to the engine's registry. No table functions, URL tables,
/// information_schema, variables or recursive CTEs.
pub(crate) struct Tables<'a> {
    pub state: &'a SessionState,
    pub tables: &'a HashMap<String, Arc<dyn TableSource>>,
}

impl ContextProvider for Tables<'_> {
    fn get_table_source(&self, name: TableReference) -> DfResult<Arc<dyn TableSource>> {
        if name.schema().is_some() || name.catalog().is_some() {
            return plan_err!("VEIL_UNKNOWN_TABLE {name}");
        }
        self.tables
            .get(name.table())
            .cloned()
            .ok_or_else(|| DataFusionError::Plan(format!("VEIL_UNKNOWN_TABLE {name}")))
    }

    fn get_expr_planners(&self) -> &[Arc<dyn ExprPlanner>] {
        self.state.expr_planners()
    }

    fn get_relation_planners(&self) -> &[Arc<dyn RelationPlanner>] {
        self.state.relation_planners()
    }

    fn get_function_meta(&self, name: &str) -> Option<Arc<ScalarUDF>> {
        self.state.scalar_functions().get(name).cloned()
    }

    fn get_higher_order_meta(&self, _name: &str) -> Option<Arc<HigherOrderUDF>> {
        None
    }

    fn get_aggregate_meta(&self, name: &str) -> Option<Arc<AggregateUDF>> {
        self.state.aggregate_functions().get(name).cloned()
    }

    fn get_window_meta(&self, name: &str) -> Option<Arc<WindowUDF>> {
        self.state.window_functions().get(name).cloned()
    }

    fn get_variable_type(&self, _names: &[String]) -> Option<DataType> {
        None
    }

    fn options(&self) -> &ConfigOptions {
        self.state.config_options()
    }

    fn udf_names(&self) -> Vec<String> {
        self.state.scalar_functions().keys().cloned().collect()
    }

    fn higher_order_function_names(&self) -> Vec<String> {
        Vec::new()
    }

    fn udaf_names(&self) -> Vec<String> {
        self.state.aggregate_functions().keys().cloned().collect()
    }

    fn udwf_names(&self) -> Vec<String> {
        self.state.window_functions().keys().cloned().collect()
    }
}

/// Plans a checked statement against `tables`.
pub(crate) fn plan(tables: &Tables<'_>, statement: Statement) -> Result<LogicalPlan, QueryError> {
    let options = ParserOptions::from(&tables.state.config_options().sql_parser);
    SqlToRel::new_with_options(tables, options)
        .sql_statement_to_plan(statement)
        .map_err(|e| {
            let message = e.to_string();
            if let Some(rest) = message.split("VEIL_UNKNOWN_TABLE ").nth(1) {
                let name = rest.split_whitespace().next().unwrap_or(rest);
                return QueryError::UnknownTable(format!(
                    "there is no dataset named `{name}` that you may query"
                ));
            }
            invalid(strip_prefix(&message))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_one_select_is_accepted() {
        assert!(parse_select("SELECT 1").is_ok());
        assert!(parse_select("WITH t AS (SELECT 1 AS a) SELECT a FROM t").is_ok());
        assert!(parse_select("SELECT 1 UNION ALL SELECT 2").is_ok());
        let refused = [
            ("EXPLAIN SELECT 1", "EXPLAIN"),
            ("EXPLAIN ANALYZE SELECT 1", "EXPLAIN"),
            ("SELECT 1; SELECT 2", "exactly one"),
            ("", "exactly one"),
            ("CREATE TABLE t (a INT)", "only SELECT"),
            (
                "CREATE EXTERNAL TABLE t STORED AS CSV LOCATION '/etc/passwd'",
                "only SELECT",
            ),
            ("INSERT INTO population VALUES (1)", "only SELECT"),
            ("DELETE FROM population", "only SELECT"),
            ("COPY population TO '/tmp/x.csv'", "only SELECT"),
            ("SET datafusion.execution.batch_size = 1", "only SELECT"),
            ("SHOW TABLES", "only SELECT"),
            ("DROP TABLE population", "only SELECT"),
            ("SELEC 1", "does not parse"),
        ];
        for (sql, why) in refused {
            let err = parse_select(sql).unwrap_err();
            assert!(matches!(err, QueryError::InvalidSql(_)), "{sql}");
            assert!(err.to_string().contains(why), "{sql}: {err}");
        }
    }
}
