//! Where a running emulator listens, and the connection strings that lead there.

use crate::hub::Hub;
use crate::locks::lock;
use std::net::SocketAddr;

/// The listeners' addresses.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Endpoints {
    pub(crate) mqtt: SocketAddr,
    pub(crate) https: SocketAddr,
    pub(crate) amqp: SocketAddr,
    pub(crate) plain_mqtt: Option<SocketAddr>,
}

fn endpoint(host: &str, port: u16, default: u16) -> String {
    if port == default {
        host.to_owned()
    } else {
        format!("{host}:{port}")
    }
}

impl Endpoints {
    fn dial_host<'h>(&self, hub: &'h Hub) -> &'h str {
        if self.mqtt.ip().is_loopback() {
            "localhost"
        } else {
            hub.host_name()
        }
    }

    pub(crate) fn provisioning_endpoint(&self, hub: &Hub) -> String {
        endpoint(self.dial_host(hub), self.mqtt.port(), 8883)
    }

    pub(crate) fn https_url(&self, hub: &Hub) -> String {
        format!("https://{}:{}", self.dial_host(hub), self.https.port())
    }

    pub(crate) fn policy_connection_string(&self, hub: &Hub, policy: &str) -> Option<String> {
        let key = lock(&hub.registry).policies.get(policy)?.primary.clone();
        Some(format!(
            "HostName={};SharedAccessKeyName={policy};SharedAccessKey={}",
            endpoint(hub.host_name(), self.https.port(), 443),
            key.expose()
        ))
    }

    /// `Endpoint=sb://{host}[:port]/;…;EntityPath={hub name}`: what the portal calls the
    /// Event Hub-compatible endpoint, served on the AMQP port with the hub's policy keys.
    pub(crate) fn event_hub_connection_string(&self, hub: &Hub, policy: &str) -> Option<String> {
        let key = lock(&hub.registry).policies.get(policy)?.primary.clone();
        Some(format!(
            "Endpoint=sb://{}/;SharedAccessKeyName={policy};SharedAccessKey={};EntityPath={}",
            endpoint(self.dial_host(hub), self.amqp.port(), 5671),
            key.expose(),
            hub.event_hub_name()
        ))
    }

    pub(crate) fn identity_connection_string(
        &self,
        hub: &Hub,
        device: &str,
        module: Option<&str>,
    ) -> Option<String> {
        let reg = lock(&hub.registry);
        let rec = reg.devices.get(device)?;
        let auth = match module {
            Some(m) => &rec.modules.get(m)?.module.authentication,
            None => &rec.device.authentication,
        };
        // X.509 identities get `x509=true`: the certificate is given to the client apart.
        let credential = match auth.kind.as_str() {
            "selfSigned" | "certificateAuthority" => "x509=true".to_owned(),
            _ => {
                let key = auth.symmetric_key.as_ref()?.primary_key.as_ref()?;
                format!("SharedAccessKey={}", key.expose())
            }
        };
        let mut s = format!("HostName={};DeviceId={device}", hub.host_name());
        if let Some(m) = module {
            s.push_str(&format!(";ModuleId={m}"));
        }
        s.push(';');
        s.push_str(&credential);
        if self.mqtt.port() != 8883 || self.dial_host(hub) != hub.host_name() {
            s.push_str(&format!(
                ";GatewayHostName={}",
                endpoint(self.dial_host(hub), self.mqtt.port(), 8883)
            ));
        }
        Some(s)
    }
}
