//! Harnesses for the fuzz targets (built only with `--cfg fuzzing`): the real MQTT connection
//! handler over an in-memory stream, and the real REST router, on an in-memory hub brought up
//! by the same bootstrap as the emulator's (development policies and device).

use crate::bootstrap::{HubConfig, app_state, start_hub};
use crate::dev_keys;
use crate::http::router;
use crate::hub::{Hub, HubOptions};
use iot_common::{SasToken, Secret};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;
use tower::ServiceExt;

/// An in-memory hub with the development policies and device.
pub struct Harness {
    hub: Arc<Hub>,
    shutdown: watch::Receiver<bool>,
    _tx: watch::Sender<bool>,
    token: String,
    connect: Vec<u8>,
}

impl Harness {
    /// A fresh hub.
    pub fn new() -> Self {
        let config = HubConfig {
            options: HubOptions {
                host_name: "localhost".into(),
                token_grace: Duration::ZERO,
                telemetry_capacity: 100,
                telemetry_max_bytes: 1024 * 1024,
                event_retention_bytes: 1024 * 1024,
                consumer_groups: Vec::new(),
                refuse_well_known: false,
                id_scope: crate::dev_keys::DEV_ID_SCOPE.into(),
                dps_retry_after: 0,
                device_cas: Default::default(),
            },
            state_dir: None,
            seed_file: None,
            policy_key: None,
            devices: Vec::new(),
            faults: Default::default(),
        };
        let hub = start_hub(&config).unwrap_or_else(|e| panic!("fuzzing hub: {e}"));
        let far = crate::clock::unix_now() + 3600;
        let token = SasToken::for_service(
            "localhost",
            "iothubowner",
            &Secret::new(dev_keys::DEV_POLICY_PRIMARY_KEY),
            far,
        )
        .map(|t| t.as_secret().expose().to_owned())
        .unwrap_or_default();
        let device_token = SasToken::for_device(
            "localhost",
            "myDevice",
            &Secret::new(dev_keys::DEV_DEVICE_PRIMARY_KEY),
            far,
        )
        .map(|t| t.as_secret().expose().to_owned())
        .unwrap_or_default();
        let mut c = rumqttc::Connect::new("myDevice");
        c.set_login(
            iot_common::mqtt::username("localhost", "myDevice", None, "2021-04-12", "fuzz", None),
            device_token,
        );
        let mut connect = bytes::BytesMut::new();
        let _ = rumqttc::Packet::Connect(c).write(&mut connect, 1 << 20);
        let (tx, rx) = watch::channel(false);
        Self {
            hub,
            shutdown: rx,
            _tx: tx,
            token,
            connect: connect.to_vec(),
        }
    }

    /// An authenticated device connection that sends `input` after its CONNECT.
    pub async fn mqtt(&self, input: &[u8]) {
        let (mut client, server) = tokio::io::duplex(1 << 20);
        let task = tokio::spawn(crate::mqtt::serve(
            self.hub.clone(),
            server,
            std::sync::Arc::from(Vec::new()),
            self.shutdown.clone(),
        ));
        let _ = client.write_all(&self.connect).await;
        let _ = client.write_all(input).await;
        let _ = client.shutdown().await;
        let mut sink = Vec::new();
        let _ =
            tokio::time::timeout(Duration::from_millis(200), client.read_to_end(&mut sink)).await;
        drop(client);
        let _ = tokio::time::timeout(Duration::from_millis(200), task).await;
    }

    /// One REST request with a valid `iothubowner` token; returns the status.
    pub async fn rest(&self, method: &str, path: &str, body: Vec<u8>) -> u16 {
        let app = router(app_state(self.hub.clone(), self.shutdown.clone(), None, 0));
        let Ok(request) = axum::http::Request::builder()
            .method(method)
            .uri(path)
            .header("authorization", &self.token)
            .header("content-type", "application/json")
            .body(axum::body::Body::from(body))
        else {
            return 0;
        };
        match tokio::time::timeout(Duration::from_millis(500), app.oneshot(request)).await {
            Ok(Ok(r)) => r.status().as_u16(),
            _ => 0,
        }
    }
}

/// One runtime and one harness per fuzzing process, shared by every input.
pub fn shared() -> &'static (tokio::runtime::Runtime, Harness) {
    static SHARED: std::sync::OnceLock<(tokio::runtime::Runtime, Harness)> =
        std::sync::OnceLock::new();
    SHARED.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap_or_else(|e| panic!("fuzzing runtime: {e}"));
        let harness = rt.block_on(async { Harness::new() });
        (rt, harness)
    })
}

impl std::fmt::Debug for Harness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Harness").finish_non_exhaustive()
    }
}

impl Default for Harness {
    fn default() -> Self {
        Self::new()
    }
}
