//! The query planner: from a WHERE clause, the lookups (device ids, module ids, tag values)
//! whose union or intersection holds every twin the clause can select, or nothing when only a
//! scan can tell. The evaluator still runs over the candidates, so a plan only has to be a
//! superset of the answer, never exact: an `AND` may keep any of its plannable terms; an `OR`
//! needs all of its terms planned.

use super::ast::{BinOp, Collection, Expr, PathSeg};
use super::eval::eval;
use serde_json::Value;
use std::collections::BTreeSet;

/// A primitive JSON value in the form the tag index keys on: two values have the same key
/// exactly when the evaluator's `=` holds between them (numbers compare as `f64`, so `1` and
/// `1.0` are one key; `-0` is `0`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum IndexValue {
    Null,
    Bool(bool),
    /// The bits of the number as `f64`, with `-0.0` folded into `0.0`.
    Number(u64),
    String(String),
}

/// The index key of a value; `None` for objects and arrays, which `=` never selects.
pub(crate) fn index_value(v: &Value) -> Option<IndexValue> {
    Some(match v {
        Value::Null => IndexValue::Null,
        Value::Bool(b) => IndexValue::Bool(*b),
        Value::Number(n) => {
            let x = n.as_f64()?;
            IndexValue::Number(if x == 0.0 { 0.0f64 } else { x }.to_bits())
        }
        Value::String(s) => IndexValue::String(s.clone()),
        Value::Array(_) | Value::Object(_) => return None,
    })
}

/// Where the candidates of a clause come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Lookup {
    /// Twins of these devices (for `devices.modules`: all their modules).
    DeviceIds(BTreeSet<String>),
    /// Module twins with one of these module ids (`devices.modules` only).
    ModuleIds(BTreeSet<String>),
    /// Twins whose tag at `path` (below `tags`) has one of these values.
    Tag {
        path: Vec<String>,
        values: BTreeSet<IndexValue>,
    },
    /// Twins found by every lookup.
    And(Vec<Lookup>),
    /// Twins found by any lookup.
    Or(Vec<Lookup>),
}

/// The lookups for a query's WHERE clause over `from`; `None` means scan.
pub(crate) fn plan(from: Collection, filter: Option<&Expr>) -> Option<Lookup> {
    if from == Collection::Jobs {
        return None;
    }
    plan_expr(from, filter?)
}

fn plan_expr(from: Collection, e: &Expr) -> Option<Lookup> {
    match e {
        Expr::And(terms) => {
            let planned: Vec<Lookup> = terms.iter().filter_map(|t| plan_expr(from, t)).collect();
            match planned.len() {
                0 => None,
                1 => planned.into_iter().next(),
                _ => Some(Lookup::And(planned)),
            }
        }
        Expr::Or(terms) => terms
            .iter()
            .map(|t| plan_expr(from, t))
            .collect::<Option<Vec<_>>>()
            .map(Lookup::Or),
        Expr::Binary(BinOp::Eq, l, r) => match (&**l, &**r) {
            (Expr::Path(p), c) | (c, Expr::Path(p)) => lookup(from, p, std::slice::from_ref(c)),
            _ => None,
        },
        Expr::In {
            value,
            list,
            negated: false,
        } => match &**value {
            Expr::Path(p) => lookup(from, p, list),
            _ => None,
        },
        _ => None,
    }
}

/// What kind of indexed field a path names.
enum Field<'a> {
    DeviceId,
    ModuleId,
    Tag(&'a [PathSeg]),
}

fn field(from: Collection, path: &[PathSeg]) -> Option<Field<'_>> {
    // The evaluator matches the first segment case-insensitively and the rest exactly.
    let (PathSeg::Field(first), rest) = path.split_first()?;
    if rest.is_empty() && first.eq_ignore_ascii_case("deviceId") {
        Some(Field::DeviceId)
    } else if rest.is_empty()
        && from == Collection::Modules
        && first.eq_ignore_ascii_case("moduleId")
    {
        Some(Field::ModuleId)
    } else if !rest.is_empty() && first.eq_ignore_ascii_case("tags") {
        Some(Field::Tag(rest))
    } else {
        None
    }
}

/// A lookup for `path = one of values`, when the path is indexed and every value is a
/// constant. A constant that is undefined, an object or an array is never equal to anything,
/// so it adds no candidates.
fn lookup(from: Collection, path: &[PathSeg], values: &[Expr]) -> Option<Lookup> {
    let field = field(from, path)?;
    let mut keys = BTreeSet::new();
    for v in values {
        if let Some(key) = constant(v)?.as_ref().and_then(index_value) {
            keys.insert(key);
        }
    }
    let strings = || {
        keys.iter()
            .filter_map(|k| match k {
                IndexValue::String(s) => Some(s.clone()),
                _ => None,
            })
            .collect()
    };
    Some(match field {
        // Ids are strings; `=` between a string and anything else is undefined.
        Field::DeviceId => Lookup::DeviceIds(strings()),
        Field::ModuleId => Lookup::ModuleIds(strings()),
        Field::Tag(rest) => Lookup::Tag {
            path: rest.iter().map(|PathSeg::Field(f)| f.clone()).collect(),
            values: keys,
        },
    })
}

/// The value of an expression that reads no document (`'a'`, `3`, `-2`, `true`, `null`):
/// `Some(value)`, where the inner `None` is *undefined*; `None` when it is not a constant.
fn constant(e: &Expr) -> Option<Option<Value>> {
    fn is_constant(e: &Expr) -> bool {
        match e {
            Expr::Literal(_) | Expr::Undefined => true,
            Expr::Neg(inner) => is_constant(inner),
            _ => false,
        }
    }
    is_constant(e).then(|| eval(e, &Value::Null))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::query::parse_query;

    fn plan_of(sql: &str) -> Option<Lookup> {
        let q = parse_query(sql).unwrap();
        plan(q.from, q.filter.as_ref())
    }

    fn ids(v: &[&str]) -> BTreeSet<String> {
        v.iter().map(|s| (*s).to_owned()).collect()
    }

    fn tag(path: &[&str], values: &[IndexValue]) -> Lookup {
        Lookup::Tag {
            path: path.iter().map(|s| (*s).to_owned()).collect(),
            values: values.iter().cloned().collect(),
        }
    }

    fn s(v: &str) -> IndexValue {
        IndexValue::String(v.to_owned())
    }

    fn n(x: f64) -> IndexValue {
        IndexValue::Number(x.to_bits())
    }

    #[test]
    fn device_id_equality_and_in_in_either_order() {
        let a = Some(Lookup::DeviceIds(ids(&["a"])));
        assert_eq!(plan_of("SELECT * FROM devices WHERE deviceId = 'a'"), a);
        assert_eq!(plan_of("SELECT * FROM devices WHERE 'a' = DEVICEID"), a);
        assert_eq!(
            plan_of("SELECT * FROM devices WHERE deviceId IN ['b', 'a', 'b']"),
            Some(Lookup::DeviceIds(ids(&["a", "b"])))
        );
        assert_eq!(
            plan_of("SELECT * FROM devices WHERE deviceId IN ['a', 3, true]"),
            a,
            "non-string constants never equal an id"
        );
        assert_eq!(
            plan_of("SELECT * FROM devices WHERE deviceId = 3"),
            Some(Lookup::DeviceIds(BTreeSet::new()))
        );
    }

    #[test]
    fn and_keeps_planned_terms_or_needs_all() {
        assert_eq!(
            plan_of(
                "SELECT * FROM devices WHERE status = 'enabled' AND deviceId = 'a' AND tags.x = 1"
            ),
            Some(Lookup::And(vec![
                Lookup::DeviceIds(ids(&["a"])),
                tag(&["x"], &[n(1.0)])
            ]))
        );
        assert_eq!(
            plan_of("SELECT * FROM devices WHERE deviceId = 'a' OR tags.x.y = 'v'"),
            Some(Lookup::Or(vec![
                Lookup::DeviceIds(ids(&["a"])),
                tag(&["x", "y"], &[s("v")])
            ]))
        );
        assert_eq!(
            plan_of("SELECT * FROM devices WHERE deviceId = 'a' OR status = 'enabled'"),
            None
        );
        assert_eq!(
            plan_of(
                "SELECT * FROM devices WHERE (deviceId = 'a' OR deviceId = 'b') AND version > 1"
            ),
            Some(Lookup::Or(vec![
                Lookup::DeviceIds(ids(&["a"])),
                Lookup::DeviceIds(ids(&["b"]))
            ]))
        );
    }

    #[test]
    fn tag_values_are_canonical() {
        assert_eq!(
            plan_of("SELECT * FROM devices WHERE tags.a IN [1, 1.0, -0, true, null, 'x', -2]"),
            Some(tag(
                &["a"],
                &[
                    n(1.0),
                    n(0.0),
                    IndexValue::Bool(true),
                    IndexValue::Null,
                    s("x"),
                    n(-2.0)
                ]
            ))
        );
        assert_eq!(index_value(&serde_json::json!(-0.0)), Some(n(0.0)));
        assert_eq!(index_value(&serde_json::json!({"a": 1})), None);
    }

    #[test]
    fn modules_plan_module_ids_devices_do_not() {
        assert_eq!(
            plan_of("SELECT * FROM devices.modules WHERE moduleId IN ['m1'] AND deviceId = 'a'"),
            Some(Lookup::And(vec![
                Lookup::ModuleIds(ids(&["m1"])),
                Lookup::DeviceIds(ids(&["a"]))
            ]))
        );
        assert_eq!(plan_of("SELECT * FROM devices WHERE moduleId = 'm1'"), None);
    }

    #[test]
    fn everything_else_scans() {
        for sql in [
            "SELECT * FROM devices",
            "SELECT * FROM devices WHERE deviceId != 'a'",
            "SELECT * FROM devices WHERE deviceId NIN ['a']",
            "SELECT * FROM devices WHERE NOT (deviceId = 'a')",
            "SELECT * FROM devices WHERE deviceId = tags.x",
            "SELECT * FROM devices WHERE deviceId = LOWER('A')",
            "SELECT * FROM devices WHERE tags = 'x'",
            "SELECT * FROM devices WHERE properties.reported.x = 1",
            "SELECT * FROM devices WHERE deviceId.x = 'a'",
            "SELECT * FROM devices.jobs WHERE deviceId = 'a'",
            "SELECT * FROM devices WHERE STARTSWITH(deviceId, 'a')",
        ] {
            assert_eq!(plan_of(sql), None, "{sql}");
        }
    }
}
