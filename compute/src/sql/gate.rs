//! The gate every query passes before it runs, judged on DuckDB's own parse tree.
//!
//! DuckDB's parser (through the json extension's `json_serialize_sql`) turns the text into a tree;
//! that serializer accepts only SELECT statements, so anything that writes, attaches, loads,
//! sets or copies is refused before it is bound, and the text must hold exactly one statement.
//! The tree is then walked for everything the query could read:
//! - table names: each is a CTE in scope, or a stored dataset the caller must be allowed to
//!   Query (catalogs and schemas other than the default are refused);
//! - file paths (`read_parquet('<cold>/x_*.parquet')`, `FROM '<cold>/x.parquet'`): each must
//!   address the cold directory, and is later replaced by the files the caller may read;
//! - table functions: only those that read nothing outside the query (`range`, `unnest`, ...)
//!   and the Parquet readers with literal paths; `glob`, `read_blob`, `query`, `duckdb_settings`
//!   and every other one are refused;
//! - scalar functions that reveal the server's configuration (`current_setting`, ...) are refused.
//!
//! What runs is the tree turned back into SQL by DuckDB (`json_deserialize_sql`), after the
//! paths were replaced, so the statement executed is exactly the statement checked.

use std::collections::BTreeSet;
use std::sync::Mutex;

use duckdb::{Config, Connection};
use serde_json::Value;

use crate::error::{Error, Result};

/// Table functions that read nothing but their arguments.
const PURE_TABLE_FUNCTIONS: &[&str] =
    &["range", "generate_series", "unnest", "json_each", "json_tree", "repeat_row", "test_vector_types"];

/// Table functions whose first argument is Parquet files: allowed on the cold directory only.
const PARQUET_FUNCTIONS: &[&str] =
    &["read_parquet", "parquet_scan", "parquet_metadata", "parquet_schema", "parquet_file_metadata", "parquet_kv_metadata"];

/// Scalar functions that would reveal the server's configuration (paths, settings, variables).
const DENIED_FUNCTIONS: &[&str] = &["current_setting", "getvariable", "getenv", "which_secret"];

/// A file-reading reference to patch: a Parquet reader's first argument, or a `FROM 'path'`.
#[derive(Debug, Clone)]
pub struct PathUse {
    /// JSON pointer (RFC 6901) to the node to replace.
    pointer: String,
    /// The literal paths (or globs) it names.
    pub patterns: Vec<String>,
    /// `FROM 'path'`: the node is a table reference, replaced by a `read_parquet` call.
    table_ref: bool,
}

/// What a checked query reads.
#[derive(Debug, Default)]
pub struct Reads {
    /// Names used as tables that are not CTEs: stored datasets.
    pub tables: BTreeSet<String>,
    pub paths: Vec<PathUse>,
}

/// A query that passed the gate: its tree, and what it reads.
pub struct Checked {
    tree: Value,
    pub reads: Reads,
}

/// DuckDB used as a parser only: it never sees data, files or settings.
pub struct Gate {
    conn: Mutex<Connection>,
}

impl Gate {
    pub fn new() -> Result<Self> {
        let setup = |e: duckdb::Error| Error::internal("starting the SQL parser", e);
        let config = Config::default()
            .enable_autoload_extension(false)
            .and_then(|c| c.with("autoinstall_known_extensions", "false"))
            .and_then(|c| c.threads(1))
            .map_err(setup)?;
        let conn = Connection::open_in_memory_with_flags(config).map_err(setup)?;
        conn.execute_batch("SET enable_external_access = false; SET lock_configuration = true;").map_err(setup)?;
        Ok(Self { conn: Mutex::new(conn) })
    }

    fn call(&self, function: &str, arg: &str) -> Result<String> {
        let conn = self.conn.lock().unwrap_or_else(|e| e.into_inner());
        conn.query_row(&format!("SELECT {function}(?)"), [arg], |r| r.get::<_, String>(0))
            .map_err(|e| Error::internal("the SQL parser", e))
    }

    /// Parse and check `sql`: exactly one read-only statement whose reads are all allowed kinds.
    pub fn check(&self, sql: &str) -> Result<Checked> {
        if sql.trim().is_empty() {
            return Err(Error::InvalidArgument("empty SQL: send one SELECT statement".into()));
        }
        let parsed: Value = serde_json::from_str(&self.call("json_serialize_sql", sql)?)
            .map_err(|e| Error::internal("reading the parse tree", e))?;
        if parsed["error"].as_bool() == Some(true) {
            let message = parsed["error_message"].as_str().unwrap_or("unknown error");
            return Err(match parsed["error_type"].as_str() {
                Some("not implemented") => Error::denied(
                "statement",
                    "only read-only queries may run: one SELECT statement (WITH, FROM, VALUES, DESCRIBE, SUMMARIZE and \
                     PIVOT are forms of it); COPY, ATTACH, INSTALL, LOAD, SET, PRAGMA, CREATE, INSERT, EXPLAIN and the \
                     other statements are refused",
                ),
                _ => Error::InvalidArgument(format!("{message}; a query is one read-only SQL statement (SELECT ...)")),
            });
        }
        let mut statements = match parsed["statements"].as_array() {
            Some(s) => s.clone(),
            None => return Err(Error::internal("reading the parse tree", "no statements")),
        };
        if statements.len() != 1 {
            return Err(Error::denied("statement", format!(
                "a query is exactly one statement; this text holds {} (remove the extra `;`-separated statements)",
                statements.len()
            )));
        }
        let tree = statements.remove(0);
        let mut reads = Reads::default();
        walk(&tree, "", &mut Vec::new(), &mut reads)?;
        Ok(Checked { tree, reads })
    }

    /// The SQL to run: the checked tree with each path use replaced by `files[i]` (the files the
    /// i-th path use resolved to), turned back into text by DuckDB.
    pub fn render(&self, checked: &Checked, files: &[Vec<String>]) -> Result<String> {
        let mut tree = checked.tree.clone();
        for (use_, files) in checked.reads.paths.iter().zip(files) {
            let replacement = self.reader_node(files, use_.table_ref)?;
            let slot = tree.pointer_mut(&use_.pointer).ok_or_else(|| Error::internal("rewriting the query", "lost a node"))?;
            let alias = slot.get("alias").cloned();
            *slot = replacement;
            // `FROM 'x.parquet' t` keeps its alias; DuckDB names an unaliased one after the file.
            if let (true, Some(alias)) = (use_.table_ref, alias) {
                if alias.as_str().is_some_and(|a| !a.is_empty()) {
                    slot["alias"] = alias;
                } else {
                    slot["alias"] = Value::String(stem(&use_.patterns[0]));
                }
            }
        }
        let doc = serde_json::json!({"error": false, "statements": [tree]});
        self.call("json_deserialize_sql", &doc.to_string())
    }

    /// DuckDB's own tree for `read_parquet([files])`: the argument node, or the whole table
    /// reference for a `FROM 'path'`.
    fn reader_node(&self, files: &[String], table_ref: bool) -> Result<Value> {
        let list = files.iter().map(|f| format!("'{}'", f.replace('\'', "''"))).collect::<Vec<_>>().join(", ");
        let sql = format!("SELECT * FROM read_parquet([{list}])");
        let parsed: Value = serde_json::from_str(&self.call("json_serialize_sql", &sql)?)
            .map_err(|e| Error::internal("reading the parse tree", e))?;
        let from = &parsed["statements"][0]["node"]["from_table"];
        let node = if table_ref { from.clone() } else { from["function"]["arguments"][0]["expression"].clone() };
        if node.is_null() {
            return Err(Error::internal("rewriting the query", "unexpected parse tree for read_parquet"));
        }
        Ok(node)
    }
}

/// `/data/cold/trades_1.parquet` -> `trades_1`.
fn stem(path: &str) -> String {
    let file = path.rsplit('/').next().unwrap_or(path);
    file.strip_suffix(".parquet").unwrap_or(file).to_string()
}

fn escape_pointer(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

/// Visit every node; `scope` holds the CTE names visible here.
fn walk(v: &Value, pointer: &str, scope: &mut Vec<String>, reads: &mut Reads) -> Result<()> {
    match v {
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                walk(item, &format!("{pointer}/{i}"), scope, reads)?;
            }
            Ok(())
        }
        Value::Object(map) => {
            // A WITH list: CTE i sees the ones before it (and itself when recursive); the rest of
            // the node sees them all.
            let ctes: Vec<(String, &Value)> = map
                .get("cte_map")
                .and_then(|c| c["map"].as_array())
                .map(|list| list.iter().map(|e| (e["key"].as_str().unwrap_or_default().to_string(), &e["value"])).collect())
                .unwrap_or_default();
            let depth = scope.len();
            for (i, (name, cte)) in ctes.iter().enumerate() {
                let recursive = cte["query_node"]["type"].as_str() == Some("RECURSIVE_CTE_NODE");
                scope.truncate(depth);
                scope.extend(ctes[..i].iter().map(|(n, _)| n.clone()));
                if recursive {
                    scope.push(name.clone());
                }
                walk(cte, &format!("{pointer}/cte_map/map/{i}/value"), scope, reads)?;
            }
            scope.truncate(depth);
            scope.extend(ctes.iter().map(|(n, _)| n.clone()));
            let result = visit_node(map, pointer, scope, reads);
            scope.truncate(depth);
            result
        }
        _ => Ok(()),
    }
}

fn visit_node(map: &serde_json::Map<String, Value>, pointer: &str, scope: &mut Vec<String>, reads: &mut Reads) -> Result<()> {
    let kind = map.get("type").and_then(Value::as_str).unwrap_or_default();
    let class = map.get("class").and_then(Value::as_str).unwrap_or_default();
    let mut skip_function = false;
    match kind {
        "BASE_TABLE" => table_ref(map, pointer, scope, reads)?,
        "TABLE_FUNCTION" => {
            table_function(map, pointer, scope, reads)?;
            skip_function = true;
        }
        "SHOW_REF" if map.get("query").is_none_or(Value::is_null) => {
            return Err(Error::denied(
                "statement",
                "SHOW of the catalog is not available; `list` shows the datasets, DESCRIBE <dataset> their columns",
            ))
        }
        _ => {}
    }
    if class == "FUNCTION" {
        let name = map.get("function_name").and_then(Value::as_str).unwrap_or_default().to_ascii_lowercase();
        if DENIED_FUNCTIONS.contains(&name.as_str()) {
            return Err(Error::denied("statement", format!(
                "{name}() is not available in queries: the server's settings are not readable"
            )));
        }
    }
    for (key, child) in map {
        if key == "cte_map" || (skip_function && key == "function") {
            continue;
        }
        walk(child, &format!("{pointer}/{}", escape_pointer(key)), scope, reads)?;
    }
    Ok(())
}

fn table_ref(map: &serde_json::Map<String, Value>, pointer: &str, scope: &[String], reads: &mut Reads) -> Result<()> {
    let text = |k: &str| map.get(k).and_then(Value::as_str).unwrap_or_default();
    let (catalog, schema, name) = (text("catalog_name"), text("schema_name"), text("table_name"));
    let unqualified = catalog.is_empty() && schema.is_empty();
    // DuckDB resolves identifiers case-insensitively, CTE names included.
    if unqualified && scope.iter().any(|c| c.eq_ignore_ascii_case(name)) {
        return Ok(());
    }
    if unqualified && looks_like_path(name) {
        reads.paths.push(PathUse { pointer: pointer.to_string(), patterns: vec![name.to_string()], table_ref: true });
        return Ok(());
    }
    let default_schema = matches!(schema, "" | "main") && matches!(catalog, "" | "memory");
    if !default_schema {
        let shown: String = [catalog, schema, name].iter().filter(|s| !s.is_empty()).copied().collect::<Vec<_>>().join(".");
        return Err(Error::denied("statement", format!(
            "{shown:?} is not a stored dataset: queries read datasets by their plain names (system catalogs are not readable)"
        )));
    }
    if map.get("at_clause").is_some_and(|a| !a.is_null()) {
        return Err(Error::InvalidArgument(format!(
            "AT (VERSION => ...) is not supported on {name:?}: load an older version with `load(name, version=N)`"
        )));
    }
    reads.tables.insert(name.to_string());
    Ok(())
}

/// A replacement scan's string: `FROM '/data/cold/x.parquet'`.
fn looks_like_path(name: &str) -> bool {
    name.contains('/') || name.contains('*') || name.ends_with(".parquet")
}

fn table_function(map: &serde_json::Map<String, Value>, pointer: &str, scope: &mut Vec<String>, reads: &mut Reads) -> Result<()> {
    let function = &map["function"];
    let name = function["function_name"].as_str().unwrap_or_default().to_ascii_lowercase();
    let qualified = ["schema", "catalog"].iter().any(|k| function[*k].as_str().is_some_and(|s| !s.is_empty()));
    if qualified {
        return Err(Error::denied("statement", format!("table function {name} is not available in queries")));
    }
    let args = function["arguments"].as_array().cloned().unwrap_or_default();
    if PARQUET_FUNCTIONS.contains(&name.as_str()) {
        let first = args.first().map(|a| &a["expression"]).filter(|e| !e.is_null());
        let patterns = first.and_then(literal_strings).ok_or_else(|| {
            Error::denied("statement", format!("{name}() takes literal file paths here: a string or a list of strings"))
        })?;
        reads.paths.push(PathUse {
            pointer: format!("{pointer}/function/arguments/0/expression"),
            patterns,
            table_ref: false,
        });
        // Named options (`filename = true`) are visited like any expression.
        for (i, arg) in args.iter().enumerate().skip(1) {
            walk(arg, &format!("{pointer}/function/arguments/{i}"), scope, reads)?;
        }
        return Ok(());
    }
    if PURE_TABLE_FUNCTIONS.contains(&name.as_str()) {
        return walk(&function["arguments"], &format!("{pointer}/function/arguments"), scope, reads);
    }
    Err(Error::denied("statement", format!(
        "table function {name}() is not available in queries: read stored datasets by name, or their files with read_parquet('<cold directory>/NAME.parquet')"
    )))
}

/// A string constant, or `[...]` (list_value) of string constants.
fn literal_strings(e: &Value) -> Option<Vec<String>> {
    let one = |e: &Value| -> Option<String> {
        (e["class"].as_str() == Some("CONSTANT") && e["literal"]["kind"].as_str() == Some("STRING"))
            .then(|| e["literal"]["text"].as_str().map(str::to_string))
            .flatten()
    };
    if let Some(s) = one(e) {
        return Some(vec![s]);
    }
    if e["class"].as_str() == Some("FUNCTION") && e["function_name"].as_str() == Some("list_value") {
        let items: Option<Vec<String>> = e["arguments"].as_array()?.iter().map(|a| one(&a["expression"])).collect();
        return items.filter(|i| !i.is_empty());
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gate() -> Gate {
        Gate::new().unwrap()
    }

    #[test]
    fn one_read_only_statement() {
        let g = gate();
        for ok in ["SELECT 1", "(select 1)", "-- c\nWITH a AS (SELECT 1) SELECT * FROM a", "/* x */ FROM t", "VALUES (1)", "DESCRIBE t"] {
            assert!(g.check(ok).is_ok(), "{ok}");
        }
        assert!(matches!(g.check("SELEC 1"), Err(Error::InvalidArgument(_))));
        assert!(matches!(g.check("  "), Err(Error::InvalidArgument(_))));
        for bad in [
            "COPY t TO '/tmp/x'",
            "ATTACH 'x.db'",
            "INSTALL httpfs",
            "LOAD httpfs",
            "SET x=1",
            "PRAGMA version",
            "EXPLAIN ANALYZE SELECT 1",
            "EXPLAIN /**/ ANALYZE COPY (SELECT 1) TO 'x'",
            "create table x(a int)",
            "SELECT 1 AS victim; COPY (SELECT 666) TO '/tmp/v.parquet'; SELECT 2",
            "SELECT 1; SELECT 2",
            "SHOW TABLES",
            "SELECT current_setting('allowed_paths')",
            "SELECT * FROM duckdb_settings()",
            "SELECT * FROM glob('/data/cold/*')",
            "SELECT * FROM read_blob('/etc/passwd')",
            "SELECT * FROM query('COPY (SELECT 1) TO ''x''')",
            "SELECT * FROM read_parquet(concat('/a', '.parquet'))",
            "SELECT * FROM information_schema.tables",
            "SELECT * FROM system.main.duckdb_settings",
        ] {
            assert!(matches!(g.check(bad), Err(Error::PermissionDenied { .. })), "{bad}: {:?}", g.check(bad).err());
        }
    }

    #[test]
    fn tables_and_ctes() {
        let g = gate();
        let reads = |sql: &str| g.check(sql).unwrap().reads.tables.into_iter().collect::<Vec<_>>();
        assert_eq!(reads("WITH t AS (SELECT * FROM alice_x) SELECT * FROM t JOIN \"bob y\" USING (k)"), ["alice_x", "bob y"]);
        assert_eq!(reads("SELECT * FROM a WHERE x IN (SELECT x FROM b) UNION SELECT * FROM (FROM c)"), ["a", "b", "c"]);
        // A CTE does not hide a table of the same name from the CTEs before it, nor from itself.
        assert_eq!(reads("WITH a AS (SELECT * FROM b), b AS (SELECT 1) SELECT * FROM a, b"), ["b"]);
        assert_eq!(reads("WITH a AS (SELECT * FROM a) SELECT * FROM a"), ["a"]);
        assert_eq!(reads("WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 3) SELECT * FROM r"), Vec::<String>::new());
        // Out of the subquery that defines it, a CTE name is a table again.
        assert_eq!(reads("SELECT * FROM (WITH x AS (SELECT 1) SELECT * FROM x), x"), ["x"]);
        assert_eq!(reads("SELECT * FROM main.t, memory.main.u"), ["t", "u"]);
        assert_eq!(reads("SELECT (SELECT max(v) FROM s), * FROM t, LATERAL (SELECT * FROM u WHERE u.k = t.k)"), ["s", "t", "u"]);
    }

    #[test]
    fn paths_are_found_and_rewritten() {
        let g = gate();
        let c = g.check("SELECT count(*) FROM parquet_scan('/data/cold/trades_*.parquet', filename = true) JOIN '/data/cold/q.parquet' q USING (k)").unwrap();
        let pats: Vec<_> = c.reads.paths.iter().map(|p| p.patterns.clone()).collect();
        assert_eq!(pats, [vec!["/data/cold/trades_*.parquet".to_string()], vec!["/data/cold/q.parquet".to_string()]]);
        let sql = g.render(&c, &[vec!["/proc/self/fd/7".into(), "/proc/self/fd/8".into()], vec!["/proc/self/fd/9".into()]]).unwrap();
        assert!(sql.contains("/proc/self/fd/7") && sql.contains("/proc/self/fd/9"), "{sql}");
        assert!(!sql.contains("/data/cold"), "{sql}");
        // The rewritten statement passes the gate again, with the new files only.
        let again = g.check(&sql).unwrap();
        assert_eq!(again.reads.paths.len(), 2);
    }
}
