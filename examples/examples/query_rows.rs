//! Runs each query of a file (one per line) with `ServiceClient::query`, pages of 2, and
//! prints `{"query":…,"rows":[{"deviceId":…,"tags":…}]}` per line: the Rust side of the
//! query comparison with the official Python SDK (`scripts/official-sdk`).
//!
//! `cargo run -p iot-examples --example query_rows -- QUERIES_FILE`

use iot_examples::settings;
use iot_service::ServiceClient;
use serde_json::{Value, json};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::args()
        .nth(1)
        .ok_or("usage: query_rows QUERIES_FILE")?;
    let service = ServiceClient::from_connection_string(
        &settings::service_connection_string(),
        settings::service_options()?,
    )?;
    for sql in std::fs::read_to_string(path)?
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
    {
        let mut query = service.query(sql).page_size(2);
        let mut rows = Vec::new();
        while let Some(page) = query.next_page().await? {
            rows.extend(
                page.into_iter()
                    .map(|t| json!({ "deviceId": t.device_id, "tags": Value::Object(t.tags) })),
            );
        }
        println!(
            "{}",
            serde_json::to_string(&json!({ "query": sql, "rows": rows }))?
        );
    }
    Ok(())
}
