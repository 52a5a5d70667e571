//! The parsed form of a query.

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum PathSeg {
    Field(String),
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Expr {
    Literal(serde_json::Value),
    Undefined,
    Path(Vec<PathSeg>),
    Array(Vec<Expr>),
    /// `a AND b AND …`, kept flat so that a long chain is not a deep tree.
    And(Vec<Expr>),
    /// `a OR b OR …`, flat for the same reason.
    Or(Vec<Expr>),
    Not(Box<Expr>),
    Neg(Box<Expr>),
    Binary(BinOp, Box<Expr>, Box<Expr>),
    In {
        value: Box<Expr>,
        list: Vec<Expr>,
        negated: bool,
    },
    Call(String, Vec<Expr>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BinOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    Add,
    Sub,
    Mul,
    Div,
    Mod,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Aggregate {
    Count,
    Sum,
    Avg,
    Min,
    Max,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Projection {
    Expr {
        expr: Expr,
        alias: Option<String>,
    },
    Aggregate {
        func: Aggregate,
        arg: Option<Expr>,
        alias: Option<String>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Collection {
    Devices,
    Modules,
    Jobs,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Query {
    pub(crate) top: Option<usize>,
    /// `None` for `SELECT *`.
    pub(crate) projections: Option<Vec<Projection>>,
    pub(crate) from: Collection,
    pub(crate) filter: Option<Expr>,
    pub(crate) group_by: Vec<Vec<PathSeg>>,
}
