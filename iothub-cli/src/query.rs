//! `iothub query`: an IoT Hub query, fetched page by page (`Query::next_page`) until the
//! rows run out or `--top` is reached.

use crate::cli::QueryArgs;
use crate::error::CliError;
use crate::hub::Hub;
use crate::output::{Column, Output};
use serde_json::Value;

const TWIN_COLUMNS: &[Column] = &[
    Column("Device", "/deviceId"),
    Column("Status", "/status"),
    Column("Connection", "/connectionState"),
    Column("Last activity", "/lastActivityTime"),
    Column("Tags", "/tags"),
];

/// Runs `query`.
///
/// # Cancel safety
/// Cancel-safe: queries only read. Each page is bounded by the client's timeout and the pages
/// by `--top` or the hub running out of rows.
pub async fn run(hub: &Hub, out: &Output, a: QueryArgs) -> Result<(), CliError> {
    let top = a.top.unwrap_or(u64::MAX);
    let mut rows: Vec<Value> = Vec::new();
    {
        let spinner = out.spinner("querying");
        // No point asking for pages larger than the rows wanted.
        let page_size = u32::try_from(top).map_or(a.page_size, |t| a.page_size.min(t.max(1)));
        let mut q = hub.client.query_raw(&a.sql).page_size(page_size);
        let mut pages = 0u64;
        while (rows.len() as u64) < top {
            let Some(page) = q.next_page().await? else {
                break;
            };
            pages += 1;
            let room = usize::try_from(top - rows.len() as u64).unwrap_or(usize::MAX);
            rows.extend(page.into_iter().take(room));
            spinner.set_message(format!("querying: {} rows in {pages} pages", rows.len()));
        }
    }
    let is_twin = |r: &Value| r.get("deviceId").is_some() && r.get("properties").is_some();
    if !rows.is_empty() && rows.iter().all(is_twin) {
        out.rows(&rows, TWIN_COLUMNS);
    } else {
        print_projection(out, &rows);
    }
    Ok(())
}

/// Rows of a projection or aggregate: one column per field, in the order first seen.
fn print_projection(out: &Output, rows: &[Value]) {
    let mut names: Vec<String> = Vec::new();
    for r in rows {
        if let Value::Object(m) = r {
            for k in m.keys() {
                if !names.contains(k) {
                    names.push(k.clone());
                }
            }
        }
    }
    // Column takes &'static str: the few field names of one invocation live until exit.
    let columns: Vec<Column> = names
        .into_iter()
        .map(|n| {
            let pointer: &'static str =
                Box::leak(format!("/{}", n.replace('~', "~0").replace('/', "~1")).into_boxed_str());
            Column(Box::leak(n.into_boxed_str()), pointer)
        })
        .collect();
    out.rows(rows, &columns);
}
