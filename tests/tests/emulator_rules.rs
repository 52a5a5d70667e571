//! The emulator's device-plane rules, checked with a raw MQTT client (rumqttc) on its plain
//! port: identities are bound to their own topics, tokens to their hub and lifetime.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use iot_common::{SasToken, Secret, mqtt, topic};
use iot_hub_emulator::{Emulator, RunningEmulator};
use rumqttc::{
    AsyncClient, ConnectReturnCode, ConnectionError, Event, EventLoop, MqttOptions, Packet, QoS,
    SubscribeReasonCode,
};
use serde_json::json;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const WAIT: Duration = Duration::from_secs(15);

async fn hub() -> RunningEmulator {
    Emulator::builder()
        .plain_mqtt_port(0)
        .start()
        .await
        .unwrap()
}

fn key_of(cs: &str) -> Secret {
    Secret::new(
        cs.split("SharedAccessKey=")
            .nth(1)
            .unwrap()
            .split(';')
            .next()
            .unwrap(),
    )
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn raw(hub: &RunningEmulator, device: &str, token: &str) -> (AsyncClient, EventLoop) {
    let port = hub.plain_mqtt_addr().unwrap().port();
    let mut o = MqttOptions::new(device, "127.0.0.1", port);
    o.set_credentials(
        mqtt::username(
            "localhost",
            device,
            None,
            mqtt::API_VERSION,
            "raw-test",
            None,
        ),
        token,
    );
    o.set_keep_alive(Duration::from_secs(30));
    o.set_max_packet_size(2 * 1024 * 1024, 2 * 1024 * 1024);
    AsyncClient::new(o, 16)
}

fn token_for(hub: &RunningEmulator, device: &str, ttl: u64) -> String {
    let key = key_of(&hub.hub().create_device(device).unwrap());
    SasToken::for_device("localhost", device, &key, now() + ttl)
        .unwrap()
        .as_secret()
        .expose()
        .to_owned()
}

/// Polls until CONNACK; returns the refusal code if refused.
async fn connack(ev: &mut EventLoop) -> Result<(), ConnectReturnCode> {
    loop {
        match tokio::time::timeout(WAIT, ev.poll()).await.unwrap() {
            Ok(Event::Incoming(Packet::ConnAck(_))) => return Ok(()),
            Ok(_) => {}
            Err(ConnectionError::ConnectionRefused(code)) => return Err(code),
            Err(e) => panic!("{e}"),
        }
    }
}

/// Polls until the connection fails; panics if it stays up for `WAIT`.
async fn closed(ev: &mut EventLoop) {
    tokio::time::timeout(WAIT, async {
        loop {
            if ev.poll().await.is_err() {
                return;
            }
        }
    })
    .await
    .expect("the emulator should close the connection");
}

async fn suback(ev: &mut EventLoop) -> Vec<SubscribeReasonCode> {
    loop {
        if let Event::Incoming(Packet::SubAck(s)) = tokio::time::timeout(WAIT, ev.poll())
            .await
            .unwrap()
            .unwrap()
        {
            return s.return_codes;
        }
    }
}

#[tokio::test]
async fn a_device_cannot_publish_to_another_devices_topics() {
    let hub = hub().await;
    hub.hub().create_device("victim").unwrap();
    let (c, mut ev) = raw(&hub, "attacker", &token_for(&hub, "attacker", 600));
    connack(&mut ev).await.unwrap();
    c.publish(
        "devices/victim/messages/events/",
        QoS::AtLeastOnce,
        false,
        "spoofed",
    )
    .await
    .unwrap();
    closed(&mut ev).await;
    assert!(hub.hub().telemetry(Some("victim")).is_empty());
}

#[tokio::test]
async fn a_device_cannot_subscribe_to_another_devices_messages() {
    let hub = hub().await;
    hub.hub().create_device("victim").unwrap();
    let (c, mut ev) = raw(&hub, "attacker", &token_for(&hub, "attacker", 600));
    connack(&mut ev).await.unwrap();
    c.subscribe(topic::c2d_filter("victim"), QoS::AtLeastOnce)
        .await
        .unwrap();
    assert_eq!(suback(&mut ev).await, vec![SubscribeReasonCode::Failure]);
    c.subscribe("#", QoS::AtLeastOnce).await.unwrap();
    assert_eq!(suback(&mut ev).await, vec![SubscribeReasonCode::Failure]);
    c.subscribe(topic::c2d_filter("attacker"), QoS::ExactlyOnce)
        .await
        .unwrap();
    assert_eq!(
        suback(&mut ev).await,
        vec![SubscribeReasonCode::Success(QoS::AtLeastOnce)]
    );
}

#[tokio::test]
async fn qos2_unknown_topics_and_oversized_packets_close_only_that_connection() {
    let hub = hub().await;
    let (bystander, mut bystander_ev) = raw(&hub, "bystander", &token_for(&hub, "bystander", 600));
    connack(&mut bystander_ev).await.unwrap();
    for (i, (topic, qos, size)) in [
        ("devices/bad0/messages/events/", QoS::ExactlyOnce, 10),
        ("not/an/iothub/topic", QoS::AtLeastOnce, 10),
        (
            "devices/bad2/messages/events/",
            QoS::AtLeastOnce,
            300 * 1024,
        ),
    ]
    .into_iter()
    .enumerate()
    {
        let id = format!("bad{i}");
        let (c, mut ev) = raw(&hub, &id, &token_for(&hub, &id, 600));
        connack(&mut ev).await.unwrap();
        c.publish(topic, qos, false, vec![b'x'; size])
            .await
            .unwrap();
        closed(&mut ev).await;
    }
    bystander
        .publish(
            "devices/bystander/messages/events/",
            QoS::AtLeastOnce,
            false,
            "still here",
        )
        .await
        .unwrap();
    loop {
        if let Event::Incoming(Packet::PubAck(_)) = tokio::time::timeout(WAIT, bystander_ev.poll())
            .await
            .unwrap()
            .unwrap()
        {
            break;
        }
    }
    assert_eq!(hub.hub().telemetry(Some("bystander")).len(), 1);
}

#[tokio::test]
async fn bad_expired_wrongly_scoped_and_foreign_hub_tokens_are_refused() {
    let hub = hub().await;
    let key = key_of(&hub.hub().create_device("dev").unwrap());
    hub.hub().create_device("other").unwrap();
    let cases = [
        ("garbage", "not a token".to_owned()),
        (
            "expired",
            SasToken::for_device("localhost", "dev", &key, now() - 10)
                .unwrap()
                .as_secret()
                .expose()
                .to_owned(),
        ),
        (
            "other device's scope",
            SasToken::for_device("localhost", "other", &key, now() + 600)
                .unwrap()
                .as_secret()
                .expose()
                .to_owned(),
        ),
        (
            "another hub",
            SasToken::for_device("otherhub.azure-devices.net", "dev", &key, now() + 600)
                .unwrap()
                .as_secret()
                .expose()
                .to_owned(),
        ),
        (
            "wrong key",
            SasToken::for_device(
                "localhost",
                "dev",
                &Secret::new("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="),
                now() + 600,
            )
            .unwrap()
            .as_secret()
            .expose()
            .to_owned(),
        ),
    ];
    for (what, token) in cases {
        let (_c, mut ev) = raw(&hub, "dev", &token);
        assert_eq!(
            connack(&mut ev).await,
            Err(ConnectReturnCode::NotAuthorized),
            "{what}"
        );
    }
    let (_c, mut ev) = raw(
        &hub,
        "nobody",
        SasToken::for_device("localhost", "nobody", &key, now() + 600)
            .unwrap()
            .as_secret()
            .expose(),
    );
    assert_eq!(
        connack(&mut ev).await,
        Err(ConnectReturnCode::NotAuthorized),
        "unknown device"
    );
}

#[tokio::test]
async fn the_connection_closes_when_its_token_expires() {
    let hub = hub().await;
    let (_c, mut ev) = raw(&hub, "short", &token_for(&hub, "short", 2));
    connack(&mut ev).await.unwrap();
    let started = tokio::time::Instant::now();
    closed(&mut ev).await;
    assert!(started.elapsed() >= Duration::from_secs(1));
}

#[tokio::test]
async fn a_second_connection_replaces_the_first() {
    let hub = hub().await;
    let token = token_for(&hub, "twice", 600);
    let (_a, mut first) = raw(&hub, "twice", &token);
    connack(&mut first).await.unwrap();
    let (_b, mut second) = raw(&hub, "twice", &token);
    connack(&mut second).await.unwrap();
    closed(&mut first).await;
    assert_eq!(hub.hub().connected_count(), 1);
}

#[tokio::test]
async fn disabled_devices_are_refused() {
    let hub = hub().await;
    let token = token_for(&hub, "off", 600);
    hub.hub()
        .update_twin("off", None, &json!({"tags": {"x": 1}}), false)
        .unwrap();
    let svc = iot_service::ServiceClient::from_connection_string(
        &hub.service_connection_string(),
        iot_service::ServiceClientOptions::new()
            .trust_ca_pem(hub.ca_pem())
            .unwrap(),
    )
    .unwrap();
    let mut d = svc.get_device("off").await.unwrap();
    d.status = iot_service::DeviceStatus::Disabled;
    svc.update_device(&d, iot_service::IfMatch::Any)
        .await
        .unwrap();
    let (_c, mut ev) = raw(&hub, "off", &token);
    assert_eq!(
        connack(&mut ev).await,
        Err(ConnectReturnCode::NotAuthorized)
    );
}

#[tokio::test]
async fn restart_with_state_loses_nothing() {
    let dir = std::env::temp_dir().join(format!("iot-emu-state-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let cs = {
        let hub = Emulator::builder().state_dir(&dir).start().await.unwrap();
        let cs = hub.hub().create_device("keeper").unwrap();
        let device = iot_device::DeviceClient::from_connection_string(
            &cs,
            iot_device::DeviceClientOptions::new()
                .trust_ca_pem(hub.ca_pem())
                .unwrap(),
        )
        .await
        .unwrap();
        device.update_reported(&json!({"fw": "1.2"})).await.unwrap();
        hub.hub()
            .update_twin(
                "keeper",
                None,
                &json!({"tags": {"site": "A"}, "properties": {"desired": {"mode": "eco"}}}),
                false,
            )
            .unwrap();
        hub.hub().create_module("keeper", "m").unwrap();
        device.close().await.unwrap();
        hub.shutdown().await.unwrap();
        cs
    };
    let hub = Emulator::builder().state_dir(&dir).start().await.unwrap();
    let twin = hub.hub().get_twin("keeper", None).unwrap();
    assert_eq!(twin.tags["site"], "A");
    assert_eq!(twin.properties.desired.properties["mode"], "eco");
    assert_eq!(twin.properties.reported.properties["fw"], "1.2");
    assert_eq!(
        (
            twin.properties.desired.version,
            twin.properties.reported.version
        ),
        (Some(2), Some(2))
    );
    assert!(hub.hub().get_twin("keeper", Some("m")).is_ok());
    // The same key still works (the port changed, so rebuild the connection string).
    let key = cs
        .split("SharedAccessKey=")
        .nth(1)
        .unwrap()
        .split(';')
        .next()
        .unwrap();
    assert_eq!(
        hub.device_connection_string("keeper")
            .unwrap()
            .split("SharedAccessKey=")
            .nth(1)
            .unwrap()
            .split(';')
            .next()
            .unwrap(),
        key
    );
    hub.shutdown().await.unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn mqtt_over_websockets_on_the_https_port() {
    let hub = Emulator::builder().start().await.unwrap();
    let cs = hub.hub().create_device("ws").unwrap();
    let cs = format!(
        "{};GatewayHostName=localhost:{}",
        cs.split(";GatewayHostName").next().unwrap(),
        hub.https_addr().port()
    );
    let options = iot_device::DeviceClientOptions::new()
        .trust_ca_pem(hub.ca_pem())
        .unwrap()
        .transport(iot_device::Transport::MqttWebSocket);
    let device = iot_device::DeviceClient::from_connection_string(&cs, options)
        .await
        .unwrap();
    device
        .on_method("ping", |_: serde_json::Value| async {
            Ok::<_, iot_device::MethodError>(json!("pong over wss"))
        })
        .await
        .unwrap();
    let mut call = iot_common::MethodInvocation::new("ping", serde_json::Value::Null);
    call.response_timeout_in_seconds = Some(10);
    let r = hub.hub().invoke_method("ws", None, call).await.unwrap();
    assert_eq!(r.payload, json!("pong over wss"));
    assert_eq!(
        device
            .update_reported(&json!({"via": "wss"}))
            .await
            .unwrap(),
        2
    );
}

#[tokio::test]
async fn well_known_keys_are_refused_off_loopback() {
    use iot_hub_emulator::dev_keys;
    let any = std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED);
    let err = Emulator::builder()
        .bind(any)
        .policy_key(Secret::new(dev_keys::DEV_POLICY_PRIMARY_KEY))
        .start()
        .await
        .unwrap_err();
    assert!(err.to_string().contains("well-known"), "{err}");

    let hub = Emulator::builder().bind(any).start().await.unwrap();
    let cs = hub.service_connection_string();
    assert!(!cs.contains(dev_keys::DEV_POLICY_PRIMARY_KEY));
    let opts = || {
        iot_service::ServiceClientOptions::new()
            .trust_ca_pem(hub.ca_pem())
            .unwrap()
    };
    let generated = iot_service::ServiceClient::from_connection_string(&cs, opts()).unwrap();
    assert!(generated.get_device("myDevice").await.is_ok());
    let well_known = cs.replace(
        cs.split("SharedAccessKey=").nth(1).unwrap(),
        dev_keys::DEV_POLICY_PRIMARY_KEY,
    );
    let e = iot_service::ServiceClient::from_connection_string(&well_known, opts())
        .unwrap()
        .get_device("myDevice")
        .await
        .unwrap_err();
    assert_eq!(e.kind(), iot_service::ErrorKind::Unauthorized);
    let device_cs = format!(
        "HostName=localhost;DeviceId=myDevice;SharedAccessKey={};GatewayHostName=localhost:{}",
        dev_keys::DEV_DEVICE_PRIMARY_KEY,
        hub.mqtt_addr().port()
    );
    let e = iot_device::DeviceClient::from_connection_string(
        &device_cs,
        iot_device::DeviceClientOptions::new()
            .trust_ca_pem(hub.ca_pem())
            .unwrap(),
    )
    .await
    .unwrap_err();
    assert_eq!(e.kind(), iot_device::ErrorKind::Unauthorized);
}
