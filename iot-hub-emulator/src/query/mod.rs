//! The IoT Hub query language over twins (`devices`, `devices.modules`) and device jobs
//! (`devices.jobs`): a lexer, a recursive-descent parser, a planner (which index lookups can
//! stand in for a scan) and an evaluator.

mod ast;
mod eval;
mod lexer;
mod parser;
pub(crate) mod plan;
#[cfg(test)]
mod tests;

pub(crate) use ast::{Collection, Expr};
pub(crate) use eval::{matches, run, select_shared};
pub(crate) use parser::{parse_condition, parse_query};

/// A syntax error with the byte position where it was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct QueryError {
    pub(crate) position: usize,
    pub(crate) message: String,
}

impl QueryError {
    pub(crate) fn at(position: usize, message: impl Into<String>) -> Self {
        Self {
            position,
            message: message.into(),
        }
    }
}

impl std::fmt::Display for QueryError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "The query is invalid. Please check the format of the query and try again. {} at position {}.",
            self.message, self.position
        )
    }
}
