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
//! What runs is the checked text itself when it names no file, or else the tree turned back into
//! SQL by DuckDB (`json_deserialize_sql`) after the paths were replaced: either way the statement
//! executed is exactly the statement checked.

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;

use duckdb::{Config, Connection};
use serde_json::Value;

use crate::error::{Error, Result};

/// Table functions that read nothing but their arguments.
const PURE_TABLE_FUNCTIONS: &[&str] = &[
    "range",
    "generate_series",
    "unnest",
    "json_each",
    "json_tree",
    "repeat_row",
    "test_vector_types",
];

/// Table functions whose first argument is Parquet files: allowed on the cold directory only.
const PARQUET_FUNCTIONS: &[&str] = &[
    "read_parquet",
    "parquet_scan",
    "parquet_metadata",
    "parquet_schema",
    "parquet_file_metadata",
    "parquet_kv_metadata",
];

/// Scalar functions that reveal the server's configuration (paths, settings, variables) or take
/// SQL text the gate cannot see (planning it would bind whatever it names). Built-in macros
/// whose body reads the catalog are added when the gate starts.
const DENIED_FUNCTIONS: &[&str] = &[
    "current_setting",
    "getvariable",
    "getenv",
    "which_secret",
    "json_serialize_plan",
    "json_serialize_sql",
    "json_deserialize_sql",
    "json_execute_serialized_sql",
];

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
#[derive(Debug, Default, Clone)]
pub struct Reads {
    /// Names used as tables that are not CTEs: stored datasets.
    pub tables: BTreeSet<String>,
    pub paths: Vec<PathUse>,
}

/// What a query's text says about the type of one of its parameters (DuckDB leaves them
/// unknown until values are bound; Flight SQL clients need a type to bind beforehand).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParamHint {
    /// Compared with (or in an IN list or BETWEEN against) this column, by its last name part.
    Column(String),
    /// Cast to this DuckDB type (`?::BIGINT`), or used where DuckDB needs one (LIMIT: BIGINT).
    Type(String),
    Unknown,
}

/// A query that passed the gate: its tree, and what it reads.
#[derive(Clone)]
pub struct Checked {
    tree: Value,
    pub reads: Reads,
}

/// DuckDB used as a parser only: it never sees data, files or settings.
pub struct Gate {
    conn: Mutex<Connection>,
    denied: Vec<String>,
    /// Texts that passed, and what the check found: the same query text comes again and again
    /// (dashboards, Flight SQL's GetFlightInfo then DoGet), and parsing it costs about a ms.
    passed: Mutex<HashMap<String, Checked>>,
}

/// Texts remembered by the gate (forgotten all at once when full), and the longest remembered.
const REMEMBERED_TEXTS: usize = 512;
const REMEMBERED_TEXT_BYTES: usize = 16 * 1024;

impl Gate {
    pub fn new() -> Result<Self> {
        let setup = |e: duckdb::Error| Error::internal("starting the SQL parser", e);
        let config = Config::default()
            .enable_autoload_extension(false)
            .and_then(|c| c.with("autoinstall_known_extensions", "false"))
            .and_then(|c| c.threads(1))
            .map_err(setup)?;
        let conn = Connection::open_in_memory_with_flags(config).map_err(setup)?;
        // Scalar macros are expanded after the gate: those whose body reads something (a system
        // table function such as duckdb_views()) are refused by name.
        let mut denied: Vec<String> = DENIED_FUNCTIONS.iter().map(|f| f.to_string()).collect();
        let mut stmt = conn
            .prepare("SELECT DISTINCT function_name FROM duckdb_functions() WHERE function_type = 'macro' AND macro_definition ILIKE '%from%'")
            .map_err(setup)?;
        let macros = stmt
            .query_map([], |r| r.get::<_, String>(0))
            .map_err(setup)?;
        for m in macros {
            denied.push(m.map_err(setup)?.to_ascii_lowercase());
        }
        drop(stmt);
        conn.execute_batch("SET enable_external_access = false; SET lock_configuration = true;")
            .map_err(setup)?;
        Ok(Self {
            conn: Mutex::new(conn),
            denied,
            passed: Default::default(),
        })
    }

    fn call(&self, function: &str, arg: &str) -> Result<String> {
        let conn = self.conn.lock().unwrap_or_else(|e| e.into_inner());
        conn.query_row(&format!("SELECT {function}(?)"), [arg], |r| {
            r.get::<_, String>(0)
        })
        .map_err(|e| Error::internal("the SQL parser", e))
    }

    /// Parse and check `sql`: exactly one read-only statement whose reads are all allowed kinds.
    /// The verdict depends on the text alone (grants are applied to what it reads, later).
    pub fn check(&self, sql: &str) -> Result<Checked> {
        let passed = || self.passed.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(checked) = passed().get(sql) {
            return Ok(checked.clone());
        }
        let checked = self.check_text(sql)?;
        if sql.len() <= REMEMBERED_TEXT_BYTES {
            let mut passed = passed();
            if passed.len() >= REMEMBERED_TEXTS {
                passed.clear();
            }
            passed.insert(sql.to_string(), checked.clone());
        }
        Ok(checked)
    }

    fn check_text(&self, sql: &str) -> Result<Checked> {
        if sql.trim().is_empty() {
            return Err(Error::InvalidArgument(
                "empty SQL: send one SELECT statement".into(),
            ));
        }
        let parsed = parse_tree(&self.call("json_serialize_sql", sql)?)?;
        if parsed["error"].as_bool() == Some(true) {
            let message = parsed["error_message"].as_str().unwrap_or("unknown error");
            return Err(match parsed["error_type"].as_str() {
                Some("not implemented") => Error::denied(
                "statement",
                    "only read-only queries may run: one SELECT statement (WITH, FROM, VALUES, DESCRIBE and SUMMARIZE are \
                     forms of it); COPY, ATTACH, INSTALL, LOAD, SET, PRAGMA, CREATE, INSERT, EXPLAIN and the \
                     other statements are refused",
                ),
                _ => Error::InvalidArgument(format!("{message}; a query is one read-only SQL statement (SELECT ...)")),
            });
        }
        let mut statements = match parsed["statements"].as_array() {
            Some(s) => s.clone(),
            None => return Err(Error::internal("reading the parse tree", "no statements")),
        };
        if statements.is_empty() {
            return Err(Error::InvalidArgument(
                "the SQL holds no statement: send one SELECT statement".into(),
            ));
        }
        if statements.len() != 1 {
            return Err(Error::denied(
                "statement",
                format!(
                    "a query is exactly one statement; this text holds {} (remove the extra `;`-separated statements)",
                    statements.len()
                ),
            ));
        }
        let tree = statements.remove(0);
        let mut walker = Walker {
            scope: Vec::new(),
            path: Vec::new(),
            denied: &self.denied,
            reads: Reads::default(),
        };
        walker.walk(&tree)?;
        Ok(Checked {
            tree,
            reads: walker.reads,
        })
    }

    /// The SQL to run: the checked tree with each path use replaced by `files[i]` (the files the
    /// i-th path use resolved to), turned back into text by DuckDB.
    pub fn render(&self, checked: &Checked, files: &[Vec<String>]) -> Result<String> {
        let mut tree = checked.tree.clone();
        for (use_, files) in checked.reads.paths.iter().zip(files) {
            let replacement = self.reader_node(files, use_.table_ref)?;
            let slot = tree
                .pointer_mut(&use_.pointer)
                .ok_or_else(|| Error::internal("rewriting the query", "lost a node"))?;
            let old = std::mem::replace(slot, replacement);
            if use_.table_ref {
                // `FROM 'x.parquet' AS t(a, b) USING SAMPLE ...` keeps its alias, column names and
                // sample; DuckDB names an unaliased one after the file.
                for key in ["column_name_alias", "sample"] {
                    if let Some(v) = old.get(key) {
                        slot[key] = v.clone();
                    }
                }
                slot["alias"] = match old.get("alias").and_then(Value::as_str) {
                    Some(a) if !a.is_empty() => Value::String(a.to_string()),
                    _ => Value::String(stem(&use_.patterns[0])),
                };
            }
        }
        let doc = serde_json::json!({"error": false, "statements": [tree]});
        self.call("json_deserialize_sql", &doc.to_string())
    }

    /// DuckDB's own tree for `read_parquet([files])`: the argument node, or the whole table
    /// reference for a `FROM 'path'`.
    fn reader_node(&self, files: &[String], table_ref: bool) -> Result<Value> {
        let list = files
            .iter()
            .map(|f| format!("'{}'", f.replace('\'', "''")))
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!("SELECT * FROM read_parquet([{list}])");
        let parsed = parse_tree(&self.call("json_serialize_sql", &sql)?)?;
        let from = &parsed["statements"][0]["node"]["from_table"];
        let node = if table_ref {
            from.clone()
        } else {
            from["function"]["arguments"][0]["expression"].clone()
        };
        if node.is_null() {
            return Err(Error::internal(
                "rewriting the query",
                "unexpected parse tree for read_parquet",
            ));
        }
        Ok(node)
    }
}

impl Checked {
    /// For each positional parameter (`?`, `$1`, ...) in order, what the query says of its type.
    pub fn param_hints(&self) -> Vec<ParamHint> {
        let mut count = 0;
        count_params(&self.tree, &mut count);
        let mut hints = vec![ParamHint::Unknown; count];
        collect_hints(&self.tree, &mut hints);
        hints
    }
}

fn count_params(node: &Value, count: &mut usize) {
    if let Some(i) = param_index(node) {
        *count = (*count).max(i + 1);
    }
    match node {
        Value::Object(map) => map.values().for_each(|v| count_params(v, count)),
        Value::Array(items) => items.iter().for_each(|v| count_params(v, count)),
        _ => {}
    }
}

/// The positional index (0-based) of a PARAMETER node.
fn param_index(node: &Value) -> Option<usize> {
    (node["class"] == "PARAMETER")
        .then(|| {
            node["identifier"]
                .as_str()?
                .parse::<usize>()
                .ok()?
                .checked_sub(1)
        })
        .flatten()
}

fn hint_from(partner: &Value) -> ParamHint {
    match (
        partner["class"].as_str(),
        partner["column_names"].as_array(),
    ) {
        (Some("COLUMN_REF"), Some(names)) => names
            .last()
            .and_then(Value::as_str)
            .map_or(ParamHint::Unknown, |n| ParamHint::Column(n.to_string())),
        _ => ParamHint::Unknown,
    }
}

/// Walk the tree, noting each parameter's partner in comparisons, IN lists, BETWEEN, casts and
/// LIMIT/OFFSET. The first informative use of a parameter wins.
fn collect_hints(node: &Value, hints: &mut [ParamHint]) {
    let mut note = |param: &Value, hint: ParamHint| {
        if let Some(slot) = param_index(param).and_then(|i| hints.get_mut(i)) {
            if *slot == ParamHint::Unknown {
                *slot = hint;
            }
        }
    };
    match node {
        Value::Object(map) => {
            match (
                map.get("class").and_then(Value::as_str),
                map.get("type").and_then(Value::as_str),
            ) {
                (Some("COMPARISON"), _) => {
                    note(&node["left"], hint_from(&node["right"]));
                    note(&node["right"], hint_from(&node["left"]));
                }
                (Some("BETWEEN"), _) => {
                    note(&node["lower"], hint_from(&node["input"]));
                    note(&node["upper"], hint_from(&node["input"]));
                }
                (_, Some("COMPARE_IN" | "COMPARE_NOT_IN")) => {
                    if let Some(children) = node["children"].as_array() {
                        for c in children.iter().skip(1) {
                            note(c, hint_from(&children[0]));
                        }
                    }
                }
                (Some("CAST"), _) => {
                    // DuckDB 2 names the type in `type_expr` (with children for DECIMAL(p, s) and
                    // the like, left unknown here); older trees in `cast_type`.
                    let simple = node["type_expr"]["children"]
                        .as_array()
                        .is_none_or(|c| c.is_empty());
                    let name = node["type_expr"]["type_name"]
                        .as_str()
                        .filter(|_| simple)
                        .or_else(|| node["cast_type"]["id"].as_str());
                    if let Some(name) = name {
                        note(&node["child"], ParamHint::Type(name.to_uppercase()));
                    }
                }
                (_, Some("LIMIT_MODIFIER")) => {
                    note(&node["limit"], ParamHint::Type("BIGINT".into()));
                    note(&node["offset"], ParamHint::Type("BIGINT".into()));
                }
                _ => {}
            }
            for v in map.values() {
                collect_hints(v, hints);
            }
        }
        Value::Array(items) => items.iter().for_each(|v| collect_hints(v, hints)),
        _ => {}
    }
}

/// `/data/cold/trades_1.parquet` -> `trades_1`.
fn stem(path: &str) -> String {
    let file = path.rsplit('/').next().unwrap_or(path);
    file.strip_suffix(".parquet").unwrap_or(file).to_string()
}

/// How deep a parse tree may nest (DuckDB's own limit on expression depth comes first for
/// ordinary queries; this keeps the walk's recursion bounded whatever the text).
const MAX_TREE_DEPTH: usize = 2_000;

/// The deepest nesting of `{`/`[` in a JSON text, strings skipped.
fn json_depth(text: &str) -> usize {
    let (mut depth, mut max, mut in_string, mut escaped) = (0usize, 0usize, false, false);
    for b in text.bytes() {
        match (in_string, escaped, b) {
            (true, true, _) => escaped = false,
            (true, false, b'\\') => escaped = true,
            (true, false, b'"') => in_string = false,
            (true, false, _) => {}
            (false, _, b'"') => in_string = true,
            (false, _, b'{' | b'[') => {
                depth += 1;
                max = max.max(depth);
            }
            (false, _, b'}' | b']') => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    max
}

/// Parse DuckDB's JSON (deeper than serde_json's default limit: long expressions nest deeply).
fn parse_tree(text: &str) -> Result<Value> {
    if json_depth(text) > MAX_TREE_DEPTH {
        return Err(Error::InvalidArgument(
            "the query nests too deeply; simplify it".into(),
        ));
    }
    let mut de = serde_json::Deserializer::from_str(text);
    de.disable_recursion_limit();
    serde::Deserialize::deserialize(&mut de)
        .map_err(|e| Error::internal("reading the parse tree", e))
}

/// One walk over a parse tree.
struct Walker<'a> {
    /// CTE names visible at the current node.
    scope: Vec<String>,
    /// JSON pointer segments to the current node (joined only for nodes to rewrite).
    path: Vec<String>,
    denied: &'a [String],
    reads: Reads,
}

impl Walker<'_> {
    fn pointer(&self, extra: &[&str]) -> String {
        let escape = |k: &str| k.replace('~', "~0").replace('/', "~1");
        self.path
            .iter()
            .map(|p| p.as_str())
            .chain(extra.iter().copied())
            .map(|p| format!("/{}", escape(p)))
            .collect()
    }

    /// Visit `v`, the child `key` of the current node.
    fn child(&mut self, key: &str, v: &Value) -> Result<()> {
        self.path.push(key.to_string());
        let result = self.walk(v);
        self.path.pop();
        result
    }

    fn walk(&mut self, v: &Value) -> Result<()> {
        match v {
            Value::Array(items) => items
                .iter()
                .enumerate()
                .try_for_each(|(i, item)| self.child(&i.to_string(), item)),
            Value::Object(map) => {
                // A WITH list: CTE i sees the ones before it (and itself when recursive); the rest
                // of the node sees them all.
                let ctes: Vec<(String, &Value)> = map
                    .get("cte_map")
                    .and_then(|c| c["map"].as_array())
                    .map(|list| {
                        list.iter()
                            .map(|e| {
                                (
                                    e["key"].as_str().unwrap_or_default().to_string(),
                                    &e["value"],
                                )
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                let depth = self.scope.len();
                let mut result = Ok(());
                for (i, (name, cte)) in ctes.iter().enumerate() {
                    let recursive =
                        cte["query_node"]["type"].as_str() == Some("RECURSIVE_CTE_NODE");
                    self.scope.truncate(depth);
                    self.scope.extend(ctes[..i].iter().map(|(n, _)| n.clone()));
                    if recursive {
                        self.scope.push(name.clone());
                    }
                    self.path
                        .extend(["cte_map".to_string(), "map".to_string(), i.to_string()]);
                    result = self.child("value", cte);
                    self.path.truncate(self.path.len() - 3);
                    if result.is_err() {
                        break;
                    }
                }
                if result.is_ok() {
                    self.scope.truncate(depth);
                    self.scope.extend(ctes.iter().map(|(n, _)| n.clone()));
                    result = self.node(map);
                }
                self.scope.truncate(depth);
                result
            }
            _ => Ok(()),
        }
    }

    fn node(&mut self, map: &serde_json::Map<String, Value>) -> Result<()> {
        let kind = map.get("type").and_then(Value::as_str).unwrap_or_default();
        let class = map.get("class").and_then(Value::as_str).unwrap_or_default();
        let mut skip_function = false;
        match kind {
            "BASE_TABLE" => self.table_ref(map)?,
            "TABLE_FUNCTION" => {
                self.table_function(map)?;
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
            let name = map
                .get("function_name")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_ascii_lowercase();
            if self.denied.contains(&name) {
                return Err(Error::denied(
                    "statement",
                    format!("{name}() is not available in queries: it reads the server's settings or runs SQL the gate cannot see"),
                ));
            }
        }
        for (key, child) in map {
            if key == "cte_map" || (skip_function && key == "function") {
                continue;
            }
            self.child(key, child)?;
        }
        Ok(())
    }

    fn table_ref(&mut self, map: &serde_json::Map<String, Value>) -> Result<()> {
        let text = |k: &str| map.get(k).and_then(Value::as_str).unwrap_or_default();
        let (catalog, schema, name) = (
            text("catalog_name"),
            text("schema_name"),
            text("table_name"),
        );
        let parts = map
            .get("qualified_name")
            .and_then(|q| q["path"].as_array())
            .map_or(0, Vec::len);
        let unqualified = catalog.is_empty() && schema.is_empty() && parts <= 1;
        // DuckDB resolves identifiers case-insensitively, CTE names included.
        if unqualified && self.scope.iter().any(|c| c.eq_ignore_ascii_case(name)) {
            return Ok(());
        }
        if unqualified && looks_like_path(name) {
            let pointer = self.pointer(&[]);
            self.reads.paths.push(PathUse {
                pointer,
                patterns: vec![name.to_string()],
                table_ref: true,
            });
            return Ok(());
        }
        let default_schema =
            matches!(schema, "" | "main") && matches!(catalog, "" | "memory") && parts <= 3;
        if !default_schema {
            let shown: String = [catalog, schema, name]
                .iter()
                .filter(|s| !s.is_empty())
                .copied()
                .collect::<Vec<_>>()
                .join(".");
            return Err(Error::denied(
                "statement",
                format!("{shown:?} is not a stored dataset: queries read datasets by their plain names (system catalogs are not readable)"),
            ));
        }
        if map.get("at_clause").is_some_and(|a| !a.is_null()) {
            return Err(Error::InvalidArgument(format!(
                "AT (VERSION => ...) is not supported on {name:?}: load an older version with `load(name, version=N)`"
            )));
        }
        self.reads.tables.insert(name.to_string());
        Ok(())
    }

    fn table_function(&mut self, map: &serde_json::Map<String, Value>) -> Result<()> {
        let Some(function) = map.get("function") else {
            return Err(Error::internal(
                "reading the parse tree",
                "a table function without its call",
            ));
        };
        let name = function["function_name"]
            .as_str()
            .unwrap_or_default()
            .to_ascii_lowercase();
        let qualified = ["schema", "catalog"]
            .iter()
            .any(|k| function[*k].as_str().is_some_and(|s| !s.is_empty()));
        if qualified {
            return Err(Error::denied(
                "statement",
                format!("table function {name} is not available in queries"),
            ));
        }
        let args = function["arguments"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if PARQUET_FUNCTIONS.contains(&name.as_str()) {
            let first = args
                .first()
                .map(|a| &a["expression"])
                .filter(|e| !e.is_null());
            let patterns = first.and_then(literal_strings).ok_or_else(|| {
                Error::denied(
                    "statement",
                    format!(
                        "{name}() takes literal file paths here: a string or a list of strings"
                    ),
                )
            })?;
            let pointer = self.pointer(&["function", "arguments", "0", "expression"]);
            self.reads.paths.push(PathUse {
                pointer,
                patterns,
                table_ref: false,
            });
            // Named options (`filename = true`) are visited like any expression.
            self.path
                .extend(["function".to_string(), "arguments".to_string()]);
            let result = args
                .iter()
                .enumerate()
                .skip(1)
                .try_for_each(|(i, arg)| self.child(&i.to_string(), arg));
            self.path.truncate(self.path.len() - 2);
            return result;
        }
        if PURE_TABLE_FUNCTIONS.contains(&name.as_str()) {
            self.path.push("function".to_string());
            let result = self.child("arguments", &function["arguments"]);
            self.path.pop();
            return result;
        }
        Err(Error::denied(
            "statement",
            format!("table function {name}() is not available in queries: read stored datasets by name, or their files with read_parquet('<cold directory>/NAME.parquet')"),
        ))
    }
}

/// A replacement scan's string: `FROM '/data/cold/x.parquet'`.
fn looks_like_path(name: &str) -> bool {
    name.contains('/') || name.contains('*') || name.ends_with(".parquet")
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
    if e["class"].as_str() == Some("FUNCTION") && e["function_name"].as_str() == Some("list_value")
    {
        let items: Option<Vec<String>> = e["arguments"]
            .as_array()?
            .iter()
            .map(|a| one(&a["expression"]))
            .collect();
        return items.filter(|i| !i.is_empty());
    }
    None
}

#[cfg(test)]
mod param_tests {
    use super::*;

    #[test]
    fn parameter_hints_from_the_tree() {
        let gate = Gate::new().unwrap();
        let hints = |sql: &str| gate.check(sql).unwrap().param_hints();
        use ParamHint::*;
        assert_eq!(
            hints("SELECT * FROM t WHERE id = ? AND ? < t.s AND x IN (?, ?) AND y BETWEEN ? AND 9"),
            [
                Column("id".into()),
                Column("s".into()),
                Column("x".into()),
                Column("x".into()),
                Column("y".into())
            ]
        );
        assert_eq!(
            hints("SELECT ?::BIGINT, upper(?) FROM t LIMIT ?"),
            [Type("BIGINT".into()), Unknown, Type("BIGINT".into())]
        );
        assert_eq!(
            hints("SELECT $2::DATE, $1 = a FROM t"),
            [Column("a".into()), Type("DATE".into())]
        );
        assert!(hints("SELECT 1").is_empty());
    }
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
        for ok in [
            "SELECT 1",
            "(select 1)",
            "-- c\nWITH a AS (SELECT 1) SELECT * FROM a",
            "/* x */ FROM t",
            "VALUES (1)",
            "DESCRIBE t",
        ] {
            assert!(g.check(ok).is_ok(), "{ok}");
        }
        assert!(matches!(g.check("SELEC 1"), Err(Error::InvalidArgument(_))));
        assert!(matches!(g.check("  "), Err(Error::InvalidArgument(_))));
        assert!(matches!(
            g.check("-- nothing"),
            Err(Error::InvalidArgument(_))
        ));
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
            "SELECT json_serialize_plan('SELECT current_setting(''allowed_paths'')')",
            "SELECT pg_get_viewdef(1)",
            "SELECT * FROM memory.main.main.t",
        ] {
            assert!(
                matches!(g.check(bad), Err(Error::PermissionDenied { .. })),
                "{bad}: {:?}",
                g.check(bad).err()
            );
        }
    }

    #[test]
    fn deep_queries_are_parsed_or_refused_cleanly() {
        let g = gate();
        let long = format!(
            "SELECT {} AS x",
            (0..200)
                .map(|i| i.to_string())
                .collect::<Vec<_>>()
                .join(" + ")
        );
        assert!(g.check(&long).is_ok());
        let deep = format!("SELECT {}1{}", "abs(".repeat(3000), ")".repeat(3000));
        assert!(matches!(g.check(&deep), Err(Error::InvalidArgument(_))));
    }

    #[test]
    fn tables_and_ctes() {
        let g = gate();
        let reads = |sql: &str| {
            g.check(sql)
                .unwrap()
                .reads
                .tables
                .into_iter()
                .collect::<Vec<_>>()
        };
        assert_eq!(
            reads("WITH t AS (SELECT * FROM alice_x) SELECT * FROM t JOIN \"bob y\" USING (k)"),
            ["alice_x", "bob y"]
        );
        assert_eq!(
            reads("SELECT * FROM a WHERE x IN (SELECT x FROM b) UNION SELECT * FROM (FROM c)"),
            ["a", "b", "c"]
        );
        // A CTE does not hide a table of the same name from the CTEs before it, nor from itself.
        assert_eq!(
            reads("WITH a AS (SELECT * FROM b), b AS (SELECT 1) SELECT * FROM a, b"),
            ["b"]
        );
        assert_eq!(reads("WITH a AS (SELECT * FROM a) SELECT * FROM a"), ["a"]);
        assert_eq!(
            reads("WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 3) SELECT * FROM r"),
            Vec::<String>::new()
        );
        // Out of the subquery that defines it, a CTE name is a table again.
        assert_eq!(
            reads("SELECT * FROM (WITH x AS (SELECT 1) SELECT * FROM x), x"),
            ["x"]
        );
        assert_eq!(reads("SELECT * FROM main.t, memory.main.u"), ["t", "u"]);
        assert_eq!(
            reads("SELECT (SELECT max(v) FROM s), * FROM t, LATERAL (SELECT * FROM u WHERE u.k = t.k)"),
            ["s", "t", "u"]
        );
    }

    #[test]
    fn paths_are_found_and_rewritten() {
        let g = gate();
        let c = g.check("SELECT count(*) FROM parquet_scan('/data/cold/trades_*.parquet', filename = true) JOIN '/data/cold/q.parquet' q USING (k)").unwrap();
        let pats: Vec<_> = c.reads.paths.iter().map(|p| p.patterns.clone()).collect();
        assert_eq!(
            pats,
            [
                vec!["/data/cold/trades_*.parquet".to_string()],
                vec!["/data/cold/q.parquet".to_string()]
            ]
        );
        let sql = g
            .render(
                &c,
                &[
                    vec!["/proc/self/fd/7".into(), "/proc/self/fd/8".into()],
                    vec!["/proc/self/fd/9".into()],
                ],
            )
            .unwrap();
        assert!(
            sql.contains("/proc/self/fd/7") && sql.contains("/proc/self/fd/9"),
            "{sql}"
        );
        assert!(!sql.contains("/data/cold"), "{sql}");
        // The rewritten statement passes the gate again, with the new files only.
        let again = g.check(&sql).unwrap();
        assert_eq!(again.reads.paths.len(), 2);
    }
}
