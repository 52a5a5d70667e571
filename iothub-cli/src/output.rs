//! Rendering: tables (comfy-table) or JSON on stdout, spinners (indicatif) and one-line
//! errors on stderr. Colour only on a terminal and never with `NO_COLOR`.

use crate::error::CliError;
use comfy_table::{Attribute, Cell, Color, ContentArrangement, Table, presets};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::Value;
use std::io::{IsTerminal, Write};
use std::time::Duration;

/// A column of a table: its header and where its value is in each row (a JSON pointer).
pub struct Column(pub &'static str, pub &'static str);

/// How this invocation prints.
pub struct Output {
    json: bool,
    color_out: bool,
    color_err: bool,
    spinners: bool,
}

fn no_color() -> bool {
    std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty())
}

impl Output {
    /// Decides colours and spinners from the terminals and `NO_COLOR`.
    pub fn new(json: bool) -> Self {
        let stderr_tty = std::io::stderr().is_terminal();
        Self {
            json,
            color_out: !no_color() && std::io::stdout().is_terminal(),
            color_err: !no_color() && stderr_tty,
            spinners: stderr_tty,
        }
    }

    /// Whether `--json` was given.
    pub fn is_json(&self) -> bool {
        self.json
    }

    /// One object: pretty JSON, or a two-column table of its fields.
    pub fn object(&self, v: &Value) {
        if self.json {
            return self.print_json(v);
        }
        let mut t = self.table(&["Field", "Value"]);
        if let Value::Object(map) = v {
            for (k, val) in map {
                t.add_row(vec![Cell::new(k), Cell::new(text(val, true))]);
            }
        }
        println!("{t}");
    }

    /// Named values in the given order, as a two-column table (for people only: callers
    /// print the full object with `object` under `--json`).
    pub fn fields(&self, fields: &[(&str, Value)]) {
        let mut t = self.table(&["Field", "Value"]);
        for (k, val) in fields {
            t.add_row(vec![Cell::new(k), Cell::new(text(val, true))]);
        }
        println!("{t}");
    }

    /// Many rows: a JSON array, or a table of the given columns.
    pub fn rows(&self, rows: &[Value], columns: &[Column]) {
        if self.json {
            return self.print_json(&Value::Array(rows.to_vec()));
        }
        let headers: Vec<&str> = columns.iter().map(|c| c.0).collect();
        let mut t = self.table(&headers);
        for r in rows {
            t.add_row(
                columns
                    .iter()
                    .map(|c| Cell::new(r.pointer(c.1).map(|v| text(v, false)).unwrap_or_default()))
                    .collect::<Vec<_>>(),
            );
        }
        println!("{t}");
    }

    /// A result that is one piece of text for people (a token, a connection string) and an
    /// object for `--json`.
    pub fn text_or_json(&self, text: &str, v: &Value) {
        if self.json {
            self.print_json(v);
        } else {
            println!("{text}");
        }
    }

    /// One JSON value on one line (for streams such as `monitor --json`).
    pub fn json_line(&self, v: &Value) {
        let mut out = std::io::stdout().lock();
        // A closed pipe (`| head`) is not an error worth reporting.
        let _ = writeln!(out, "{v}").and_then(|()| out.flush());
    }

    /// A plain line on stdout, flushed (streams).
    pub fn line(&self, s: &str) {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{s}").and_then(|()| out.flush());
    }

    fn print_json(&self, v: &Value) {
        let s = serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string());
        println!("{s}");
    }

    fn table(&self, headers: &[&str]) -> Table {
        let mut t = Table::new();
        t.load_preset(presets::UTF8_FULL_CONDENSED)
            .set_content_arrangement(ContentArrangement::Dynamic);
        t.set_header(headers.iter().map(|h| {
            let c = Cell::new(h);
            if self.color_out {
                c.add_attribute(Attribute::Bold).fg(Color::Cyan)
            } else {
                c
            }
        }));
        t
    }

    /// A spinner on stderr while something slow runs; nothing when stderr is not a terminal.
    /// It disappears when the guard is dropped.
    pub fn spinner(&self, message: impl Into<String>) -> Spinner {
        if !self.spinners {
            return Spinner(None);
        }
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
        if let Ok(style) = ProgressStyle::with_template("{spinner} {msg} ({elapsed})") {
            bar.set_style(style);
        }
        bar.set_message(message.into());
        bar.enable_steady_tick(Duration::from_millis(100));
        Spinner(Some(bar))
    }

    /// A progress bar of `len` steps on stderr, only when stderr is a terminal.
    pub fn progress(&self, len: u64, message: impl Into<String>) -> Spinner {
        if !self.spinners {
            return Spinner(None);
        }
        let bar = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr());
        if let Ok(style) =
            ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} ({elapsed}, {eta} left)")
        {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.set_message(message.into());
        bar.enable_steady_tick(Duration::from_millis(100));
        Spinner(Some(bar))
    }

    /// The one-line error on stderr.
    pub fn error(&self, e: &CliError) {
        let line = e.to_string().replace(['\n', '\r'], " ");
        if self.color_err {
            eprintln!("\x1b[1;31merror\x1b[0m: {line}");
        } else {
            eprintln!("error: {line}");
        }
    }
}

/// Clears its spinner when dropped.
pub struct Spinner(Option<ProgressBar>);

impl Spinner {
    /// One more step of a progress bar done.
    pub fn inc(&self) {
        if let Some(b) = &self.0 {
            b.inc(1);
        }
    }

    /// Prints a line above the bar (or plainly, without one), so it is not overdrawn.
    pub fn println(&self, line: &str) {
        match &self.0 {
            Some(b) => b.println(line),
            None => eprintln!("{line}"),
        }
    }

    /// Changes the message.
    pub fn set_message(&self, message: impl Into<String>) {
        if let Some(b) = &self.0 {
            b.set_message(message.into());
        }
    }
}

impl Drop for Spinner {
    fn drop(&mut self) {
        if let Some(b) = &self.0 {
            b.finish_and_clear();
        }
    }
}

/// A cell's text: strings as they are, nothing for null, other values as JSON (pretty in a
/// two-column table, where a nested twin section reads better over several lines).
fn text(v: &Value, pretty: bool) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        Value::Object(_) | Value::Array(_) if pretty => {
            serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string())
        }
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells() {
        assert_eq!(text(&Value::Null, false), "");
        assert_eq!(text(&serde_json::json!("a"), false), "a");
        assert_eq!(text(&serde_json::json!({"a":1}), false), "{\"a\":1}");
        assert!(text(&serde_json::json!({"a":1}), true).contains('\n'));
    }
}
