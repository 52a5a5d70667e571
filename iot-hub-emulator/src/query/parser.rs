//! Recursive-descent parser: `SELECT [TOP n] (* | projections) FROM collection [WHERE expr]
//! [GROUP BY paths]`, with precedence OR < AND < NOT < comparison/IN < + - < * / % < unary.

use super::QueryError;
use super::ast::{Aggregate, BinOp, Collection, Expr, PathSeg, Projection, Query};
use super::lexer::{Tok, Token, lex};
use serde_json::Value;

const RESERVED: [&str; 14] = [
    "select", "from", "where", "group", "by", "as", "and", "or", "not", "in", "nin", "top", "true",
    "false",
];

/// Deepest nesting (parentheses, arrays, function calls, `NOT`, unary minus) a query may use.
/// Recursive descent uses stack per level; without a bound a hostile query of 8 192 `(`
/// overflows a tokio worker's stack and takes the whole emulator down.
/// Chains of `+ - * / %` count as nesting too (each operator is one more tree level); chains
/// of `AND`/`OR` do not, as they are parsed into flat lists.
const MAX_NESTING: usize = crate::limits::MAX_QUERY_NESTING;

struct Parser {
    toks: Vec<Token>,
    i: usize,
    depth: usize,
}

/// Parses a whole query.
pub(crate) fn parse_query(input: &str) -> Result<Query, QueryError> {
    let mut p = Parser {
        toks: lex(input)?,
        i: 0,
        depth: 0,
    };
    let q = p.query()?;
    p.expect_end()?;
    Ok(q)
}

/// Parses a bare condition (a job's `queryCondition`).
pub(crate) fn parse_condition(input: &str) -> Result<Expr, QueryError> {
    let mut p = Parser {
        toks: lex(input)?,
        i: 0,
        depth: 0,
    };
    let e = p.expr()?;
    p.expect_end()?;
    Ok(e)
}

impl Parser {
    fn peek(&self) -> &Token {
        &self.toks[self.i.min(self.toks.len() - 1)]
    }

    fn bump(&mut self) -> Token {
        let t = self.peek().clone();
        if self.i < self.toks.len() - 1 {
            self.i += 1;
        }
        t
    }

    fn is_kw(&self, kw: &str) -> bool {
        matches!(&self.peek().tok, Tok::Ident(s) if s.eq_ignore_ascii_case(kw))
    }

    fn eat_kw(&mut self, kw: &str) -> bool {
        let yes = self.is_kw(kw);
        if yes {
            self.bump();
        }
        yes
    }

    fn expect_kw(&mut self, kw: &str) -> Result<(), QueryError> {
        if self.eat_kw(kw) {
            Ok(())
        } else {
            Err(QueryError::at(
                self.peek().pos,
                format!("expected {}", kw.to_uppercase()),
            ))
        }
    }

    fn is_sym(&self, s: &str) -> bool {
        matches!(self.peek().tok, Tok::Sym(x) if x == s)
    }

    fn eat_sym(&mut self, s: &str) -> bool {
        let yes = self.is_sym(s);
        if yes {
            self.bump();
        }
        yes
    }

    fn expect_sym(&mut self, s: &str) -> Result<(), QueryError> {
        if self.eat_sym(s) {
            Ok(())
        } else {
            Err(QueryError::at(self.peek().pos, format!("expected '{s}'")))
        }
    }

    fn expect_end(&self) -> Result<(), QueryError> {
        match self.peek().tok {
            Tok::End => Ok(()),
            _ => Err(QueryError::at(self.peek().pos, "unexpected input")),
        }
    }

    fn query(&mut self) -> Result<Query, QueryError> {
        self.expect_kw("select")?;
        let top = if self.eat_kw("top") {
            let t = self.bump();
            match t.tok {
                Tok::Num(n) if n >= 0.0 && n.fract() == 0.0 => Some(n as usize),
                _ => return Err(QueryError::at(t.pos, "TOP needs a whole number")),
            }
        } else {
            None
        };
        let projections = if self.eat_sym("*") {
            None
        } else {
            let mut v = vec![self.projection()?];
            while self.eat_sym(",") {
                v.push(self.projection()?);
            }
            Some(v)
        };
        self.expect_kw("from")?;
        let from_pos = self.peek().pos;
        let from = self.path()?;
        let names: Vec<String> = from
            .iter()
            .map(|PathSeg::Field(f)| f.to_ascii_lowercase())
            .collect();
        let from = match names
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>()
            .as_slice()
        {
            ["devices"] => Collection::Devices,
            ["devices", "modules"] => Collection::Modules,
            ["devices", "jobs"] => Collection::Jobs,
            _ => {
                return Err(QueryError::at(
                    from_pos,
                    "FROM must be devices, devices.modules or devices.jobs",
                ));
            }
        };
        let filter = if self.eat_kw("where") {
            Some(self.expr()?)
        } else {
            None
        };
        let mut group_by = Vec::new();
        if self.eat_kw("group") {
            self.expect_kw("by")?;
            group_by.push(self.path()?);
            while self.eat_sym(",") {
                group_by.push(self.path()?);
            }
        }
        Ok(Query {
            top,
            projections,
            from,
            filter,
            group_by,
        })
    }

    fn projection(&mut self) -> Result<Projection, QueryError> {
        let pos = self.peek().pos;
        let agg = match &self.peek().tok {
            Tok::Ident(s) => match s.to_ascii_uppercase().as_str() {
                "COUNT" => Some(Aggregate::Count),
                "SUM" => Some(Aggregate::Sum),
                "AVG" => Some(Aggregate::Avg),
                "MIN" => Some(Aggregate::Min),
                "MAX" => Some(Aggregate::Max),
                _ => None,
            },
            _ => None,
        };
        let next_is_paren = matches!(
            self.toks.get(self.i + 1).map(|t| &t.tok),
            Some(Tok::Sym("("))
        );
        let proj = match agg {
            Some(func) if next_is_paren => {
                self.bump();
                self.expect_sym("(")?;
                let arg = if self.is_sym(")") {
                    None
                } else {
                    Some(self.expr()?)
                };
                self.expect_sym(")")?;
                if func != Aggregate::Count && arg.is_none() {
                    return Err(QueryError::at(pos, "aggregate needs an argument"));
                }
                Projection::Aggregate {
                    func,
                    arg,
                    alias: self.alias()?,
                }
            }
            _ => {
                let expr = self.additive()?;
                Projection::Expr {
                    expr,
                    alias: self.alias()?,
                }
            }
        };
        Ok(proj)
    }

    fn alias(&mut self) -> Result<Option<String>, QueryError> {
        if !self.eat_kw("as") {
            return Ok(None);
        }
        let t = self.bump();
        match t.tok {
            Tok::Ident(s) => Ok(Some(s)),
            _ => Err(QueryError::at(t.pos, "expected an alias")),
        }
    }

    fn path(&mut self) -> Result<Vec<PathSeg>, QueryError> {
        let mut segs = vec![self.segment(true)?];
        while self.eat_sym(".") {
            segs.push(self.segment(false)?);
        }
        Ok(segs)
    }

    fn segment(&mut self, first: bool) -> Result<PathSeg, QueryError> {
        if self.eat_sym("[[") {
            let t = self.bump();
            let Tok::Ident(name) = t.tok else {
                return Err(QueryError::at(t.pos, "expected a name inside [[ ]]"));
            };
            self.expect_sym("]]")?;
            return Ok(PathSeg::Field(name));
        }
        let t = self.bump();
        match t.tok {
            Tok::Ident(s) if !first || !RESERVED.contains(&s.to_ascii_lowercase().as_str()) => {
                Ok(PathSeg::Field(s))
            }
            _ => Err(QueryError::at(t.pos, "expected a property name")),
        }
    }

    fn expr(&mut self) -> Result<Expr, QueryError> {
        let first = self.and()?;
        if !self.is_kw("or") {
            return Ok(first);
        }
        let mut terms = vec![first];
        while self.eat_kw("or") {
            terms.push(self.and()?);
        }
        Ok(Expr::Or(terms))
    }

    fn and(&mut self) -> Result<Expr, QueryError> {
        let first = self.not()?;
        if !self.is_kw("and") {
            return Ok(first);
        }
        let mut terms = vec![first];
        while self.eat_kw("and") {
            terms.push(self.not()?);
        }
        Ok(Expr::And(terms))
    }

    /// Parses a left-associative chain of binary operators: every operator makes the tree one
    /// level deeper, so each one counts against [`MAX_NESTING`].
    fn chain(
        &mut self,
        operand: fn(&mut Self) -> Result<Expr, QueryError>,
        operator: fn(&mut Self) -> Option<BinOp>,
    ) -> Result<Expr, QueryError> {
        let base = self.depth;
        let r = (|| {
            let mut left = operand(self)?;
            while let Some(op) = operator(self) {
                if self.depth >= MAX_NESTING {
                    return Err(QueryError::at(
                        self.peek().pos,
                        "expression nested too deeply",
                    ));
                }
                self.depth += 1;
                left = Expr::Binary(op, Box::new(left), Box::new(operand(self)?));
            }
            Ok(left)
        })();
        self.depth = base;
        r
    }

    /// Runs `f` one nesting level deeper, refusing to go past [`MAX_NESTING`].
    fn nested<T>(
        &mut self,
        f: impl FnOnce(&mut Self) -> Result<T, QueryError>,
    ) -> Result<T, QueryError> {
        if self.depth >= MAX_NESTING {
            return Err(QueryError::at(
                self.peek().pos,
                "expression nested too deeply",
            ));
        }
        self.depth += 1;
        let r = f(self);
        self.depth -= 1;
        r
    }

    fn not(&mut self) -> Result<Expr, QueryError> {
        if self.eat_kw("not") {
            return self.nested(|p| Ok(Expr::Not(Box::new(p.not()?))));
        }
        self.comparison()
    }

    fn comparison(&mut self) -> Result<Expr, QueryError> {
        let left = self.additive()?;
        let op = match self.peek().tok {
            Tok::Sym("=") => Some(BinOp::Eq),
            Tok::Sym("!=") | Tok::Sym("<>") => Some(BinOp::Ne),
            Tok::Sym("<") => Some(BinOp::Lt),
            Tok::Sym("<=") => Some(BinOp::Le),
            Tok::Sym(">") => Some(BinOp::Gt),
            Tok::Sym(">=") => Some(BinOp::Ge),
            _ => None,
        };
        if let Some(op) = op {
            self.bump();
            let right = self.additive()?;
            return Ok(Expr::Binary(op, Box::new(left), Box::new(right)));
        }
        let negated = if self.eat_kw("nin") {
            true
        } else if self.eat_kw("in") {
            false
        } else {
            return Ok(left);
        };
        let close = if self.eat_sym("[") {
            "]"
        } else if self.eat_sym("(") {
            ")"
        } else {
            return Err(QueryError::at(self.peek().pos, "expected '[' after IN"));
        };
        let mut list = Vec::new();
        if !self.is_sym(close) {
            list.push(self.additive()?);
            while self.eat_sym(",") {
                list.push(self.additive()?);
            }
        }
        self.expect_sym(close)?;
        Ok(Expr::In {
            value: Box::new(left),
            list,
            negated,
        })
    }

    fn additive(&mut self) -> Result<Expr, QueryError> {
        self.chain(Self::multiplicative, |p| {
            if p.eat_sym("+") {
                Some(BinOp::Add)
            } else if p.eat_sym("-") {
                Some(BinOp::Sub)
            } else {
                None
            }
        })
    }

    fn multiplicative(&mut self) -> Result<Expr, QueryError> {
        self.chain(Self::unary, |p| {
            if p.eat_sym("*") {
                Some(BinOp::Mul)
            } else if p.eat_sym("/") {
                Some(BinOp::Div)
            } else if p.eat_sym("%") {
                Some(BinOp::Mod)
            } else {
                None
            }
        })
    }

    fn unary(&mut self) -> Result<Expr, QueryError> {
        self.nested(|p| {
            if p.eat_sym("-") {
                return Ok(Expr::Neg(Box::new(p.unary()?)));
            }
            p.primary()
        })
    }

    fn primary(&mut self) -> Result<Expr, QueryError> {
        let t = self.peek().clone();
        match t.tok {
            Tok::Num(n) => {
                self.bump();
                Ok(Expr::Literal(number(n)))
            }
            Tok::Str(s) => {
                self.bump();
                Ok(Expr::Literal(Value::String(s)))
            }
            Tok::Sym("(") => {
                self.bump();
                let e = self.expr()?;
                self.expect_sym(")")?;
                Ok(e)
            }
            Tok::Sym("[") => {
                self.bump();
                let mut items = Vec::new();
                if !self.is_sym("]") {
                    items.push(self.additive()?);
                    while self.eat_sym(",") {
                        items.push(self.additive()?);
                    }
                }
                self.expect_sym("]")?;
                Ok(Expr::Array(items))
            }
            Tok::Sym("[[") => Ok(Expr::Path(self.path()?)),
            Tok::Ident(ref s) => {
                let lower = s.to_ascii_lowercase();
                match lower.as_str() {
                    "true" | "false" => {
                        self.bump();
                        Ok(Expr::Literal(Value::Bool(lower == "true")))
                    }
                    "null" => {
                        self.bump();
                        Ok(Expr::Literal(Value::Null))
                    }
                    "undefined" => {
                        self.bump();
                        Ok(Expr::Undefined)
                    }
                    _ if matches!(
                        self.toks.get(self.i + 1).map(|t| &t.tok),
                        Some(Tok::Sym("("))
                    ) =>
                    {
                        self.bump();
                        self.bump();
                        let mut args = Vec::new();
                        if !self.is_sym(")") {
                            args.push(self.expr()?);
                            while self.eat_sym(",") {
                                args.push(self.expr()?);
                            }
                        }
                        self.expect_sym(")")?;
                        let name = s.to_ascii_uppercase();
                        if !super::eval::FUNCTIONS.contains(&name.as_str()) {
                            return Err(QueryError::at(t.pos, format!("unknown function {s}")));
                        }
                        Ok(Expr::Call(name, args))
                    }
                    _ => Ok(Expr::Path(self.path()?)),
                }
            }
            _ => Err(QueryError::at(t.pos, "expected a value")),
        }
    }
}

fn number(n: f64) -> Value {
    if n.fract() == 0.0 && n.abs() < 9.0e15 {
        Value::from(n as i64)
    } else {
        serde_json::Number::from_f64(n).map_or(Value::Null, Value::Number)
    }
}
