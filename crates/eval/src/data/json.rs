//! Small JSON accessors whose errors name the file, the record and the field.

use super::Record;
use foveate_core::{Error, Result};
use serde_json::Value;
use std::collections::HashSet;
use std::path::Path;

/// Read and parse a JSON file; a syntax error names the file, line and column, and bytes that
/// are not UTF-8 name the file and the offset.
pub fn read_json(path: &Path) -> Result<Value> {
    let text = foveate_core::read_utf8(path)?;
    serde_json::from_str(&text).map_err(|e| {
        Error::format(
            path.display().to_string(),
            "(json)",
            format!("not valid JSON: {e}"),
        )
    })
}

/// Where in a file we are: used to build `Error::Format` with a precise field path.
pub(crate) struct Ctx<'a> {
    pub file: &'a Path,
}

impl Ctx<'_> {
    pub fn err(&self, field: impl Into<String>, msg: impl Into<String>) -> Error {
        Error::format(self.file.display().to_string(), field, msg)
    }

    /// `root[key]` as an array.
    pub fn array<'v>(&self, root: &'v Value, key: &str) -> Result<&'v Vec<Value>> {
        match root.get(key) {
            Some(Value::Array(a)) => Ok(a),
            Some(other) => Err(self.err(key, format!("expected an array, found {}", kind(other)))),
            None if root.is_object() => Err(self.err(key, "missing")),
            None => Err(self.err(
                "(root)",
                format!("expected an object, found {}", kind(root)),
            )),
        }
    }

    /// A required string field of record `rec` (named `what` in messages).
    pub fn string(&self, rec: &Value, key: &str, what: &str) -> Result<String> {
        match rec.get(key) {
            Some(Value::String(s)) => Ok(s.clone()),
            Some(other) => Err(self.err(
                format!("{what}.{key}"),
                format!("expected a string, found {}", kind(other)),
            )),
            None => Err(self.err(format!("{what}.{key}"), "missing")),
        }
    }

    /// An optional string field: absent or null give `None`.
    pub fn opt_string(&self, rec: &Value, key: &str, what: &str) -> Result<Option<String>> {
        match rec.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(other) => Err(self.err(
                format!("{what}.{key}"),
                format!("expected a string or null, found {}", kind(other)),
            )),
        }
    }

    /// An optional list of strings: absent or null give an empty list.
    pub fn opt_strings(&self, rec: &Value, key: &str, what: &str) -> Result<Vec<String>> {
        if rec.get(key).is_some_and(|v| !v.is_null()) {
            self.strings(rec, key, what)
        } else {
            Ok(Vec::new())
        }
    }

    /// Build one [`Record`] per element of `root.data`, in file order: `build` gets the element
    /// and its name for messages (`data[3] (questionId 24580)`, from `id_key`); a record whose id
    /// repeats an earlier one is refused.
    pub fn data_records(
        &self,
        root: &Value,
        id_key: &str,
        mut build: impl FnMut(&Value, &str) -> Result<Record>,
    ) -> Result<Vec<Record>> {
        let mut seen = HashSet::new();
        self.array(root, "data")?
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let what = rec_name("data", i, id_key, r);
                let rec = build(r, &what)?;
                if !seen.insert(rec.id.key()) {
                    return Err(self.err(what, format!("duplicate {id_key}")));
                }
                Ok(rec)
            })
            .collect()
    }

    /// A required integer field.
    pub fn int(&self, rec: &Value, key: &str, what: &str) -> Result<i64> {
        match rec.get(key) {
            Some(Value::Number(n)) if n.as_i64().is_some() => Ok(n.as_i64().unwrap_or_default()),
            Some(other) => Err(self.err(
                format!("{what}.{key}"),
                format!("expected an integer, found {}", kind(other)),
            )),
            None => Err(self.err(format!("{what}.{key}"), "missing")),
        }
    }

    /// A list of strings (`["a", "b"]`).
    pub fn strings(&self, rec: &Value, key: &str, what: &str) -> Result<Vec<String>> {
        let field = format!("{what}.{key}");
        let arr = match rec.get(key) {
            Some(Value::Array(a)) => a,
            Some(other) => {
                return Err(self.err(field, format!("expected an array, found {}", kind(other))))
            }
            None => return Err(self.err(field, "missing")),
        };
        arr.iter()
            .enumerate()
            .map(|(i, v)| match v {
                Value::String(s) => Ok(s.clone()),
                other => Err(self.err(
                    format!("{field}[{i}]"),
                    format!("expected a string, found {}", kind(other)),
                )),
            })
            .collect()
    }
}

pub(crate) fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// How a record is named in messages: `data[3] (questionId 24580)`.
pub(crate) fn rec_name(list: &str, index: usize, id_key: &str, rec: &Value) -> String {
    match rec.get(id_key) {
        Some(Value::Number(n)) => format!("{list}[{index}] ({id_key} {n})"),
        Some(Value::String(s)) => format!("{list}[{index}] ({id_key} \"{s}\")"),
        _ => format!("{list}[{index}]"),
    }
}
