//! Everything a function reads from its environment, read once at start and
//! named when missing.

use std::collections::BTreeMap;

use crate::error::Error;

/// The tables a function may use; it is given (and granted) only those.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Table {
    State,
    Audit,
}

impl Table {
    pub fn var(self) -> &'static str {
        match self {
            Table::State => "STATE_TABLE",
            Table::Audit => "AUDIT_TABLE",
        }
    }
}

/// Table names and queue URLs, from the environment SAM sets:
/// `STATE_TABLE`, `AUDIT_TABLE`, and `<NAME>_QUEUE_URL` per queue
/// (`INBOUND_QUEUE_URL`, `STOCK_QUEUE_URL`, ...; a DLQ is
/// `<NAME>_DLQ_URL`). A function reads only what it uses.
#[derive(Debug, Clone, Default)]
pub struct Config {
    pub state_table: Option<String>,
    pub audit_table: Option<String>,
    /// Logical queue name (`inbound`, `stock-dlq`, ...) to URL.
    pub queues: BTreeMap<String, String>,
    /// The admin API's bearer token (api function only).
    pub admin_token: Option<String>,
}

impl Config {
    /// Reads the tables and the queues this function uses. Every missing
    /// variable is named in one error.
    pub fn from_env(tables: &[Table], queues: &[&str]) -> Result<Config, Error> {
        Self::from_lookup(tables, queues, |k| std::env::var(k).ok())
    }

    pub fn from_lookup(
        tables: &[Table],
        queues: &[&str],
        get: impl Fn(&str) -> Option<String>,
    ) -> Result<Config, Error> {
        let mut missing = vec![];
        let mut need = |k: &str| match get(k).filter(|v| !v.is_empty()) {
            Some(v) => v,
            None => {
                missing.push(k.to_owned());
                String::new()
            }
        };
        let state_table = tables
            .contains(&Table::State)
            .then(|| need(Table::State.var()));
        let audit_table = tables
            .contains(&Table::Audit)
            .then(|| need(Table::Audit.var()));
        let queues = queues
            .iter()
            .map(|q| ((*q).to_owned(), need(&queue_var(q))))
            .collect();
        if !missing.is_empty() {
            return Err(Error::Config(missing.join(", ")));
        }
        Ok(Config {
            state_table,
            audit_table,
            queues,
            admin_token: get("TALLY_ADMIN_TOKEN").filter(|t| !t.is_empty()),
        })
    }
}

/// `stock-dlq` → `STOCK_DLQ_URL`, `inbound` → `INBOUND_QUEUE_URL`.
pub fn queue_var(queue: &str) -> String {
    let upper = queue.to_uppercase().replace('-', "_");
    if upper.ends_with("_DLQ") {
        format!("{upper}_URL")
    } else {
        format!("{upper}_QUEUE_URL")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_missing_variable_is_named() {
        let err = Config::from_lookup(
            &[Table::State, Table::Audit],
            &["inbound", "stock-dlq"],
            |k| (k == "AUDIT_TABLE").then(|| "a".into()),
        )
        .unwrap_err()
        .to_string();
        for v in ["STATE_TABLE", "INBOUND_QUEUE_URL", "STOCK_DLQ_URL"] {
            assert!(err.contains(v), "{v} not named in {err}");
        }
        assert!(!err.contains("AUDIT_TABLE"));
    }

    #[test]
    fn a_complete_environment_reads() {
        let c =
            Config::from_lookup(&[Table::State], &["inbound"], |k| Some(format!("v-{k}"))).unwrap();
        assert_eq!(c.state_table.as_deref(), Some("v-STATE_TABLE"));
        assert_eq!(c.audit_table, None, "a table not asked for is not read");
        assert_eq!(c.queues["inbound"], "v-INBOUND_QUEUE_URL");
    }
}
