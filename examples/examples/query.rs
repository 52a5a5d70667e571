//! Twin queries: filters, projections, aggregates, paging. `cargo run --example query`.

use iot_hub_emulator::Emulator;
use iot_service::{Device, IfMatch, ServiceClient, ServiceClientOptions, TwinPatch};
use serde_json::json;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let hub = Emulator::builder().start().await?;
    let service = ServiceClient::from_connection_string(
        &hub.service_connection_string(),
        ServiceClientOptions::new().trust_ca_pem(hub.ca_pem())?,
    )?;
    for (i, region) in ["US", "EU", "US", "APAC", "US"].iter().enumerate() {
        let id = format!("dev-{i}");
        service.create_device(&Device::new(&id, None)).await?;
        service
            .update_twin(
                &id,
                &TwinPatch::new()
                    .tag("region", json!(region))
                    .tag("floor", json!(i)),
                IfMatch::Any,
            )
            .await?;
    }
    let mut us = service
        .query("SELECT * FROM devices WHERE tags.region = 'US'")
        .page_size(2);
    while let Some(page) = us.next_page().await? {
        println!(
            "page: {:?}",
            page.iter().map(|t| &t.device_id).collect::<Vec<_>>()
        );
    }
    let counts = service
        .query_raw("SELECT tags.region AS region, COUNT() AS devices FROM devices WHERE IS_DEFINED(tags.region) GROUP BY tags.region")
        .collect_all()
        .await?;
    println!("per region: {}", serde_json::to_string(&counts)?);
    Ok(())
}
