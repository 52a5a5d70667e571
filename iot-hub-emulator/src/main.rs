//! `iot-hub-emulator`: a local Azure IoT Hub for development and tests.

use clap::Parser;
use iot_common::Secret;
use iot_hub_emulator::{Emulator, dev_keys};
use std::net::IpAddr;
use std::path::PathBuf;

/// A local Azure IoT Hub: MQTT (TLS) for devices, HTTPS REST for services, MQTT over
/// WebSockets on the HTTPS port. Prints ready-to-paste connection strings on start.
#[derive(Parser, Debug)]
#[command(version, about, long_about = None)]
struct Args {
    /// Address to listen on. Anything but loopback disables the well-known development keys.
    #[arg(long, default_value = "127.0.0.1", env = "IOTHUB_EMULATOR_BIND")]
    bind: IpAddr,
    /// MQTT over TLS port.
    #[arg(long, default_value_t = 8883)]
    mqtt_port: u16,
    /// HTTPS port: REST API and MQTT over WebSockets (`/$iothub/websocket`).
    #[arg(long, default_value_t = 8443)]
    https_port: u16,
    /// AMQP over TLS port: the service plane (CBS put-token, cloud-to-device sends).
    #[arg(long, default_value_t = 5671)]
    amqp_port: u16,
    /// Also serve MQTT without TLS on this port (for debugging with plain MQTT tools).
    #[arg(long)]
    plain_mqtt_port: Option<u16>,
    /// Keep identities, twins and persistent MQTT sessions in DIR/state.db (SQLite) across
    /// restarts; every acknowledged change is committed before it is acknowledged.
    #[arg(long, value_name = "DIR")]
    state: Option<PathBuf>,
    /// JSON file of devices to pre-register: {"devices":[{"deviceId":"…","primaryKey":"…"}]}.
    #[arg(long, value_name = "FILE")]
    seed: Option<PathBuf>,
    /// Where the CA and server certificate are kept (generated on first start).
    /// Default: $HOME/.iot-hub-emulator/certs.
    #[arg(long, value_name = "DIR")]
    cert_dir: Option<PathBuf>,
    /// A device CA (PEM file) that `certificateAuthority` devices chain to; repeatable.
    #[arg(long = "device-ca", value_name = "FILE")]
    device_ca: Vec<PathBuf>,
    /// The hub host name clients use in connection strings and SAS tokens.
    #[arg(long, default_value = "localhost")]
    host_name: String,
    /// Key for the default shared access policies (base64), instead of the well-known one.
    #[arg(long, env = "IOTHUB_EMULATOR_POLICY_KEY", hide_env_values = true)]
    policy_key: Option<String>,
    /// The ID scope of the emulator's Device Provisioning Service (devices register on the
    /// same MQTT and HTTPS ports and are assigned to this hub).
    #[arg(long, default_value = dev_keys::DEV_ID_SCOPE)]
    id_scope: String,
    /// Seconds a connection may outlive its SAS token.
    #[arg(long, default_value_t = 0)]
    token_grace_secs: u64,
    /// A consumer group of the Event Hub-compatible endpoint besides `$Default`; repeatable.
    #[arg(long = "consumer-group", value_name = "NAME")]
    consumer_group: Vec<String>,
    /// Bytes of telemetry events each of the 4 partitions of the Event Hub-compatible
    /// endpoint keeps; the oldest are dropped first.
    #[arg(long, value_name = "BYTES", default_value_t = 64 * 1024 * 1024)]
    event_retention_bytes: u64,
    /// Fault: drop every device connection every SECS seconds.
    #[arg(long, value_name = "SECS")]
    fault_drop_all_every: Option<u64>,
    /// Fault: refuse MQTT connections (CONNACK 3) for the first SECS seconds.
    #[arg(long, value_name = "SECS")]
    fault_refuse_connections: Option<u64>,
    /// Fault: hold each device's method answer for MS milliseconds.
    #[arg(long, value_name = "MS")]
    fault_method_delay_ms: Option<u64>,
    /// Fault: lose every device's method answer (callers get 504101).
    #[arg(long)]
    fault_drop_method_responses: bool,
    /// Fault: close each MQTT connection SECS seconds after it opened (early token expiry).
    #[arg(long, value_name = "SECS")]
    fault_connection_lifetime: Option<u64>,
    /// Fault: answer the first N REST calls 429 (throttled).
    #[arg(long, value_name = "N")]
    fault_throttle_rest: Option<u32>,
    /// Fault: disconnect the first N devices that publish (MQTT throttling).
    #[arg(long, value_name = "N")]
    fault_throttle_mqtt: Option<u32>,
    /// Do not serve the web console at `/` on the HTTPS port.
    #[arg(long)]
    no_console: bool,
}

fn default_cert_dir() -> PathBuf {
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir)
        .join(".iot-hub-emulator")
        .join("certs")
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let args = Args::parse();
    let mut b = Emulator::builder()
        .bind(args.bind)
        .mqtt_port(args.mqtt_port)
        .https_port(args.https_port)
        .amqp_port(args.amqp_port)
        .host_name(args.host_name)
        .id_scope(args.id_scope)
        .cert_dir(args.cert_dir.unwrap_or_else(default_cert_dir))
        .token_grace(std::time::Duration::from_secs(args.token_grace_secs))
        .console(!args.no_console)
        .event_retention_bytes(args.event_retention_bytes);
    for g in args.consumer_group {
        b = b.consumer_group(g);
    }
    let mut faults = iot_hub_emulator::FaultSettings::default();
    faults.drop_all_every_secs = args.fault_drop_all_every;
    faults.refuse_connections_secs = args.fault_refuse_connections;
    faults.method_delay_ms = args.fault_method_delay_ms;
    faults.drop_method_responses = args.fault_drop_method_responses.then_some(true);
    faults.connection_lifetime_secs = args.fault_connection_lifetime;
    faults.throttle_rest = args.fault_throttle_rest;
    faults.throttle_mqtt = args.fault_throttle_mqtt;
    b = b.faults(faults);
    if let Some(p) = args.plain_mqtt_port {
        b = b.plain_mqtt_port(p);
    }
    if let Some(d) = args.state {
        b = b.state_dir(d);
    }
    for ca in args.device_ca {
        b = b.device_ca_file(ca);
    }
    if let Some(s) = args.seed {
        b = b.seed_file(s);
    }
    if let Some(k) = args.policy_key {
        b = b.policy_key(Secret::new(k));
    }
    let emu = match b.start().await {
        Ok(e) => e,
        Err(e) => {
            eprintln!("iot-hub-emulator: {e}");
            let mut src = std::error::Error::source(&e);
            while let Some(s) = src {
                eprintln!("  caused by: {s}");
                src = s.source();
            }
            return std::process::ExitCode::FAILURE;
        }
    };
    println!("IoT Hub emulator listening");
    println!("  MQTT (TLS):            {}", emu.mqtt_addr());
    if let Some(a) = emu.plain_mqtt_addr() {
        println!("  MQTT (plain):          {a}");
    }
    println!("  HTTPS + MQTT/WSS:      {}", emu.https_addr());
    println!("  AMQP (TLS):            {}", emu.amqp_addr());
    if let Some(p) = emu.ca_cert_path() {
        println!("  CA certificate:        {}", p.display());
    }
    if !args.no_console {
        println!("  Web console:           {}/", emu.https_url());
    }
    println!();
    println!(
        "export IOTHUB_CONNECTION_STRING=\"{}\"",
        emu.service_connection_string()
    );
    println!(
        "export IOTHUB_DEVICE_CONNECTION_STRING=\"{}\"",
        emu.device_connection_string(dev_keys::DEV_DEVICE_ID)
            .unwrap_or_default()
    );
    println!("export IOTHUB_DEVICE_ID=\"{}\"", dev_keys::DEV_DEVICE_ID);
    println!(
        "export IOTHUB_EVENTHUB_CONNECTION_STRING=\"{}\"",
        emu.event_hub_connection_string()
    );
    println!("export IOTHUB_DPS_ID_SCOPE=\"{}\"", emu.id_scope());
    println!(
        "export IOTHUB_DPS_ENDPOINT=\"{}\"",
        emu.provisioning_endpoint()
    );
    println!(
        "export IOTHUB_DPS_CONNECTION_STRING=\"{}\"",
        emu.provisioning_service_connection_string()
    );
    if let Some(p) = emu.ca_cert_path() {
        println!("export IOTHUB_CA_CERT=\"{}\"", p.display());
    }
    println!();
    let _ = tokio::signal::ctrl_c().await;
    println!("shutting down");
    match emu.shutdown().await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("iot-hub-emulator: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
