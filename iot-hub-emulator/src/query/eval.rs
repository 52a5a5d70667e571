//! Evaluation over JSON documents. A missing property is *undefined*; comparisons are only
//! defined between primitives of the same type; a WHERE clause selects a document only when it
//! evaluates to `true`.

use super::ast::{Aggregate, BinOp, Expr, PathSeg, Projection, Query};
use serde_json::{Map, Value};
use std::cmp::Ordering;

/// The functions the parser accepts.
pub(crate) const FUNCTIONS: &[&str] = &[
    "IS_DEFINED",
    "IS_NULL",
    "IS_BOOL",
    "IS_NUMBER",
    "IS_STRING",
    "IS_OBJECT",
    "IS_ARRAY",
    "IS_PRIMITIVE",
    "STARTSWITH",
    "ENDSWITH",
    "STARTS_WITH",
    "ENDS_WITH",
    "CONTAINS",
    "ARRAY_CONTAINS",
    "LOWER",
    "UPPER",
    "LENGTH",
];

fn resolve<'a>(path: &[PathSeg], doc: &'a Value) -> Option<&'a Value> {
    // Job queries name their fields fully qualified: `devices.jobs.jobId`.
    let path = match path {
        [PathSeg::Field(a), PathSeg::Field(b), rest @ ..]
            if !rest.is_empty()
                && a.eq_ignore_ascii_case("devices")
                && b.eq_ignore_ascii_case("jobs") =>
        {
            rest
        }
        _ => path,
    };
    let mut cur = doc;
    for (i, PathSeg::Field(name)) in path.iter().enumerate() {
        let map = cur.as_object()?;
        cur = match map.get(name) {
            Some(v) => v,
            // Top-level twin fields match case-insensitively (`DeviceId`, `LastActivityTime`).
            None if i == 0 => map.iter().find(|(k, _)| k.eq_ignore_ascii_case(name))?.1,
            None => return None,
        };
    }
    Some(cur)
}

fn bool_val(b: bool) -> Option<Value> {
    Some(Value::Bool(b))
}

fn compare(a: &Value, b: &Value) -> Option<Ordering> {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64()?.partial_cmp(&y.as_f64()?),
        (Value::String(x), Value::String(y)) => Some(x.cmp(y)),
        (Value::Bool(x), Value::Bool(y)) => Some(x.cmp(y)),
        (Value::Null, Value::Null) => Some(Ordering::Equal),
        _ => None,
    }
}

fn num(v: &Option<Value>) -> Option<f64> {
    v.as_ref()?.as_f64()
}

fn to_number(n: f64) -> Option<Value> {
    if n.fract() == 0.0 && n.abs() < 9.0e15 {
        Some(Value::from(n as i64))
    } else {
        serde_json::Number::from_f64(n).map(Value::Number)
    }
}

/// Evaluates an expression; `None` is *undefined*.
pub(crate) fn eval(e: &Expr, doc: &Value) -> Option<Value> {
    match e {
        Expr::Literal(v) => Some(v.clone()),
        Expr::Undefined => None,
        Expr::Path(p) => resolve(p, doc).cloned(),
        Expr::Array(items) => items
            .iter()
            .map(|i| eval(i, doc))
            .collect::<Option<Vec<_>>>()
            .map(Value::Array),
        Expr::And(terms) => all(terms, doc),
        Expr::Or(terms) => any(terms, doc),
        Expr::Not(inner) => match eval(inner, doc)? {
            Value::Bool(b) => bool_val(!b),
            _ => None,
        },
        Expr::Neg(inner) => to_number(-num(&eval(inner, doc))?),
        Expr::Binary(op, l, r) => binary(*op, l, r, doc),
        Expr::In {
            value,
            list,
            negated,
        } => {
            let v = eval(value, doc)?;
            if v.is_object() || v.is_array() {
                return None;
            }
            let found = list.iter().any(|item| {
                eval(item, doc).is_some_and(|x| compare(&v, &x) == Some(Ordering::Equal))
            });
            bool_val(found != *negated)
        }
        Expr::Call(name, args) => call(name, args, doc),
    }
}

/// `AND` over a flat list: false if any term is false, true if all are true, else undefined.
fn all(terms: &[Expr], doc: &Value) -> Option<Value> {
    let mut all_true = true;
    for t in terms {
        match eval(t, doc) {
            Some(Value::Bool(false)) => return bool_val(false),
            Some(Value::Bool(true)) => {}
            _ => all_true = false,
        }
    }
    if all_true { bool_val(true) } else { None }
}

/// `OR` over a flat list: true if any term is true, false if all are false, else undefined.
fn any(terms: &[Expr], doc: &Value) -> Option<Value> {
    let mut all_false = true;
    for t in terms {
        match eval(t, doc) {
            Some(Value::Bool(true)) => return bool_val(true),
            Some(Value::Bool(false)) => {}
            _ => all_false = false,
        }
    }
    if all_false { bool_val(false) } else { None }
}

fn binary(op: BinOp, l: &Expr, r: &Expr, doc: &Value) -> Option<Value> {
    match op {
        BinOp::Eq | BinOp::Ne | BinOp::Lt | BinOp::Le | BinOp::Gt | BinOp::Ge => {
            let (a, b) = (eval(l, doc)?, eval(r, doc)?);
            let ord = compare(&a, &b)?;
            let ok = match op {
                BinOp::Eq => ord == Ordering::Equal,
                BinOp::Ne => ord != Ordering::Equal,
                BinOp::Lt => ord == Ordering::Less,
                BinOp::Le => ord != Ordering::Greater,
                BinOp::Gt => ord == Ordering::Greater,
                _ => ord != Ordering::Less,
            };
            if matches!(a, Value::Bool(_) | Value::Null) && !matches!(op, BinOp::Eq | BinOp::Ne) {
                return None;
            }
            bool_val(ok)
        }
        BinOp::Add | BinOp::Sub | BinOp::Mul | BinOp::Div | BinOp::Mod => {
            let (a, b) = (num(&eval(l, doc))?, num(&eval(r, doc))?);
            let v = match op {
                BinOp::Add => a + b,
                BinOp::Sub => a - b,
                BinOp::Mul => a * b,
                BinOp::Div if b != 0.0 => a / b,
                BinOp::Mod if b != 0.0 => a % b,
                _ => return None,
            };
            to_number(v)
        }
    }
}

fn call(name: &str, args: &[Expr], doc: &Value) -> Option<Value> {
    let arg = |i: usize| args.get(i).and_then(|a| eval(a, doc));
    let string = |i: usize| match arg(i) {
        Some(Value::String(s)) => Some(s),
        _ => None,
    };
    match name {
        "IS_DEFINED" => bool_val(arg(0).is_some()),
        "IS_NULL" => bool_val(matches!(arg(0), Some(Value::Null))),
        "IS_BOOL" => bool_val(matches!(arg(0), Some(Value::Bool(_)))),
        "IS_NUMBER" => bool_val(matches!(arg(0), Some(Value::Number(_)))),
        "IS_STRING" => bool_val(matches!(arg(0), Some(Value::String(_)))),
        "IS_OBJECT" => bool_val(matches!(arg(0), Some(Value::Object(_)))),
        "IS_ARRAY" => bool_val(matches!(arg(0), Some(Value::Array(_)))),
        "IS_PRIMITIVE" => bool_val(matches!(
            arg(0),
            Some(Value::Null | Value::Bool(_) | Value::Number(_) | Value::String(_))
        )),
        "STARTSWITH" | "STARTS_WITH" => bool_val(string(0)?.starts_with(&string(1)?)),
        "ENDSWITH" | "ENDS_WITH" => bool_val(string(0)?.ends_with(&string(1)?)),
        "CONTAINS" => bool_val(string(0)?.contains(&string(1)?)),
        "ARRAY_CONTAINS" => {
            let Value::Array(items) = arg(0)? else {
                return None;
            };
            let needle = arg(1)?;
            bool_val(
                items
                    .iter()
                    .any(|i| compare(i, &needle) == Some(Ordering::Equal)),
            )
        }
        "LOWER" => Some(Value::String(string(0)?.to_lowercase())),
        "UPPER" => Some(Value::String(string(0)?.to_uppercase())),
        "LENGTH" => Some(Value::from(string(0)?.chars().count())),
        _ => None,
    }
}

/// `true` when the condition selects the document.
pub(crate) fn matches(cond: &Expr, doc: &Value) -> bool {
    eval(cond, doc) == Some(Value::Bool(true))
}

fn key_name(expr: &Expr, alias: &Option<String>, index: usize) -> String {
    if let Some(a) = alias {
        return a.clone();
    }
    match expr {
        Expr::Path(p) => match p.last() {
            Some(PathSeg::Field(f)) => f.clone(),
            None => format!("${}", index + 1),
        },
        _ => format!("${}", index + 1),
    }
}

fn aggregate(func: Aggregate, arg: &Option<Expr>, docs: &[&Value]) -> Value {
    let values = || {
        docs.iter()
            .filter_map(|d| arg.as_ref().and_then(|a| eval(a, d)))
    };
    let numbers = || values().filter_map(|v| v.as_f64());
    match func {
        Aggregate::Count => Value::from(match arg {
            None => docs.len(),
            Some(_) => values().count(),
        }),
        Aggregate::Sum => to_number(numbers().sum()).unwrap_or(Value::Null),
        Aggregate::Avg => {
            let (sum, n) = numbers().fold((0.0, 0usize), |(s, n), x| (s + x, n + 1));
            if n == 0 {
                Value::Null
            } else {
                to_number(sum / n as f64).unwrap_or(Value::Null)
            }
        }
        Aggregate::Min | Aggregate::Max => {
            let want = if func == Aggregate::Min {
                Ordering::Less
            } else {
                Ordering::Greater
            };
            values()
                .filter(|v| !v.is_object() && !v.is_array())
                .reduce(|best, v| {
                    if compare(&v, &best) == Some(want) {
                        v
                    } else {
                        best
                    }
                })
                .unwrap_or(Value::Null)
        }
    }
}

/// `SELECT *`: the matching documents themselves, shared, not copied.
pub(crate) fn select_shared(
    q: &Query,
    docs: Vec<std::sync::Arc<Value>>,
) -> Vec<std::sync::Arc<Value>> {
    docs.into_iter()
        .filter(|d| q.filter.as_ref().is_none_or(|f| matches(f, d)))
        .collect()
}

/// Runs a query over documents, before TOP and paging.
pub(crate) fn run<D: std::borrow::Borrow<Value>>(q: &Query, docs: &[D]) -> Vec<Value> {
    let selected: Vec<&Value> = docs
        .iter()
        .map(std::borrow::Borrow::borrow)
        .filter(|d| q.filter.as_ref().is_none_or(|f| matches(f, d)))
        .collect();
    let Some(projections) = &q.projections else {
        return selected.into_iter().cloned().collect();
    };
    let has_aggregate = projections
        .iter()
        .any(|p| matches!(p, Projection::Aggregate { .. }));
    if !has_aggregate && q.group_by.is_empty() {
        return selected
            .iter()
            .map(|d| project(projections, &[d]))
            .collect();
    }
    let mut groups: Vec<(String, Vec<&Value>)> = Vec::new();
    for d in selected {
        let key: Vec<Option<Value>> = q.group_by.iter().map(|p| resolve(p, d).cloned()).collect();
        let key = serde_json::to_string(&key).unwrap_or_default();
        match groups.iter_mut().find(|(k, _)| *k == key) {
            Some((_, members)) => members.push(d),
            None => groups.push((key, vec![d])),
        }
    }
    if groups.is_empty() && q.group_by.is_empty() {
        groups.push((String::new(), Vec::new()));
    }
    groups
        .iter()
        .map(|(_, members)| project(projections, members))
        .collect()
}

fn project(projections: &[Projection], docs: &[&Value]) -> Value {
    let mut out = Map::new();
    for (i, p) in projections.iter().enumerate() {
        match p {
            Projection::Expr { expr, alias } => {
                if let Some(v) = docs.first().and_then(|d| eval(expr, d)) {
                    out.insert(key_name(expr, alias, i), v);
                }
            }
            Projection::Aggregate { func, arg, alias } => {
                let name = alias.clone().unwrap_or_else(|| format!("${}", i + 1));
                out.insert(name, aggregate(*func, arg, docs));
            }
        }
    }
    Value::Object(out)
}
