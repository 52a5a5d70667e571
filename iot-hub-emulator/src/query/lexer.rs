//! Tokens of the IoT Hub query language, each with its byte position for error messages.

use super::QueryError;

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Tok {
    Ident(String),
    Str(String),
    Num(f64),
    Sym(&'static str),
    End,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Token {
    pub(crate) tok: Tok,
    pub(crate) pos: usize,
}

const SYMBOLS: [&str; 19] = [
    "[[", "]]", "<=", ">=", "!=", "<>", "=", "<", ">", "(", ")", "[", "]", ",", ".", "*", "+", "-",
    "/",
];

pub(crate) fn lex(input: &str) -> Result<Vec<Token>, QueryError> {
    let bytes = input.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        if c.is_ascii_whitespace() {
            i += 1;
            continue;
        }
        let start = i;
        if c.is_ascii_alphabetic() || c == b'_' || c == b'$' {
            while i < bytes.len()
                && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_' || bytes[i] == b'$')
            {
                i += 1;
            }
            out.push(Token {
                tok: Tok::Ident(input[start..i].to_owned()),
                pos: start,
            });
        } else if c.is_ascii_digit() {
            if c == b'0' && bytes.get(i + 1).is_some_and(|b| *b == b'x' || *b == b'X') {
                i += 2;
                while i < bytes.len() && bytes[i].is_ascii_hexdigit() {
                    i += 1;
                }
                let v = i64::from_str_radix(&input[start + 2..i], 16)
                    .map_err(|_| QueryError::at(start, "invalid hexadecimal number"))?;
                out.push(Token {
                    tok: Tok::Num(v as f64),
                    pos: start,
                });
                continue;
            }
            while i < bytes.len()
                && (bytes[i].is_ascii_digit()
                    || bytes[i] == b'.'
                    || bytes[i] == b'e'
                    || bytes[i] == b'E'
                    || ((bytes[i] == b'-' || bytes[i] == b'+')
                        && matches!(bytes[i - 1], b'e' | b'E')))
            {
                i += 1;
            }
            let v = input[start..i]
                .parse::<f64>()
                .map_err(|_| QueryError::at(start, "invalid number"))?;
            out.push(Token {
                tok: Tok::Num(v),
                pos: start,
            });
        } else if c == b'\'' || c == b'"' {
            i += 1;
            let mut s = String::new();
            loop {
                let Some(&b) = bytes.get(i) else {
                    return Err(QueryError::at(start, "unterminated string"));
                };
                if b == c {
                    i += 1;
                    break;
                }
                if b == b'\\' {
                    let esc = *bytes
                        .get(i + 1)
                        .ok_or_else(|| QueryError::at(i, "bad escape"))?;
                    match esc {
                        b'\'' | b'"' | b'\\' | b'/' => s.push(esc as char),
                        b'n' => s.push('\n'),
                        b't' => s.push('\t'),
                        b'u' => {
                            let hex = input
                                .get(i + 2..i + 6)
                                .ok_or_else(|| QueryError::at(i, "bad \\u escape"))?;
                            let code = u32::from_str_radix(hex, 16)
                                .map_err(|_| QueryError::at(i, "bad \\u escape"))?;
                            s.push(
                                char::from_u32(code)
                                    .ok_or_else(|| QueryError::at(i, "bad \\u escape"))?,
                            );
                            i += 4;
                        }
                        _ => return Err(QueryError::at(i, "bad escape")),
                    }
                    i += 2;
                    continue;
                }
                let ch = input[i..].chars().next().unwrap_or('\u{fffd}');
                s.push(ch);
                i += ch.len_utf8();
            }
            out.push(Token {
                tok: Tok::Str(s),
                pos: start,
            });
        } else if let Some(sym) = SYMBOLS.iter().find(|s| input[i..].starts_with(**s)) {
            i += sym.len();
            out.push(Token {
                tok: Tok::Sym(sym),
                pos: start,
            });
        } else if c == b'%' {
            i += 1;
            out.push(Token {
                tok: Tok::Sym("%"),
                pos: start,
            });
        } else {
            return Err(QueryError::at(start, "unexpected character"));
        }
    }
    out.push(Token {
        tok: Tok::End,
        pos: input.len(),
    });
    Ok(out)
}
