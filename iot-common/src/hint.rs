//! What to do about a failure, shared by both clients: the root cause of a transport error,
//! whether retrying can help, and a hint for the causes users meet most (an untrusted
//! certificate, nothing listening, refused credentials).
//!
//! Transport libraries wrap the interesting part several layers deep (reqwest: "error sending
//! request" → "client error (Connect)" → "invalid peer certificate: UnknownIssuer"; rumqttc:
//! "TLS: I/O: invalid peer certificate: UnknownIssuer"), so an error printed by `?` in `main`
//! would otherwise say only that the hub could not be reached. Everything here reads the
//! error chain's text: no I/O, and no dependency on either transport crate.

use std::error::Error as StdError;

/// Which client a hint is for: the option that trusts a CA differs between them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Client {
    /// `iot-device`'s `DeviceClient`.
    Device,
    /// `iot-service`'s `ServiceClient`.
    Service,
}

impl Client {
    fn options(self) -> &'static str {
        match self {
            Self::Device => "DeviceClientOptions",
            Self::Service => "ServiceClientOptions",
        }
    }
}

/// Source chains are short, but a cyclic custom error must not spin forever.
const MAX_CHAIN: usize = 32;

/// The innermost error's message: the most specific description of what failed.
///
/// ```
/// let e = std::io::Error::other("Connection refused (os error 111)");
/// assert_eq!(iot_common::hint::root_cause(&e), "Connection refused (os error 111)");
/// ```
pub fn root_cause(e: &(dyn StdError + 'static)) -> String {
    let mut deepest = e;
    for _ in 0..MAX_CHAIN {
        match deepest.source() {
            Some(next) => deepest = next,
            None => break,
        }
    }
    deepest.to_string()
}

/// Every message in the chain, joined, for matching on words that may sit at any level.
fn chain_text(e: &(dyn StdError + 'static)) -> String {
    let mut text = e.to_string();
    let mut current = e.source();
    for _ in 0..MAX_CHAIN {
        let Some(next) = current else { break };
        text.push_str(" | ");
        text.push_str(&next.to_string());
        current = next.source();
    }
    text
}

/// `true` when the TLS handshake failed on the peer's certificate: retrying cannot help until
/// the trust configuration changes.
pub fn is_certificate_failure(e: &(dyn StdError + 'static)) -> bool {
    chain_text(e).contains("invalid peer certificate")
}

/// A hint for a transport failure towards `endpoint` (`host:port`), when its cause is one we
/// recognise.
///
/// ```
/// use iot_common::hint::{Client, for_transport};
/// let e = std::io::Error::other("invalid peer certificate: UnknownIssuer");
/// let hint = for_transport(&e, "localhost:8883", Client::Device).unwrap();
/// assert!(hint.contains("localhost:8883") && hint.contains("IOTHUB_CA_CERT"));
/// ```
pub fn for_transport(
    e: &(dyn StdError + 'static),
    endpoint: &str,
    client: Client,
) -> Option<String> {
    let text = chain_text(e);
    let has = |needle: &str| text.contains(needle);
    if has("UnknownIssuer") || has("invalid peer certificate") && has("Unknown") {
        return Some(untrusted_certificate(endpoint, client));
    }
    if has("NotValidForName") {
        return Some(format!(
            "the certificate of {endpoint} is for another name; use the host name the \
             certificate was issued for (the emulator's is valid for localhost, 127.0.0.1 and \
             --host-name)"
        ));
    }
    if has("Expired") && has("certificate") {
        return Some(format!("the certificate of {endpoint} has expired"));
    }
    // The OS's wording, not MQTT's "Connection refused, return code: …" (a CONNACK refusal
    // means something did listen).
    if has("Connection refused (os error") || has("kind: ConnectionRefused") {
        return Some(nothing_listening(endpoint));
    }
    if has("dns error") || has("failed to lookup address") {
        return Some(format!(
            "the host of {endpoint} could not be resolved; check HostName in the connection string"
        ));
    }
    None
}

/// The hint for a certificate no trusted CA vouches for.
pub fn untrusted_certificate(endpoint: &str, client: Client) -> String {
    format!(
        "the certificate of {endpoint} is not trusted; for the emulator, set IOTHUB_CA_CERT to \
         the CA file it printed at start-up, or call {}::trust_ca_file",
        client.options()
    )
}

/// The hint for a refused TCP connection.
pub fn nothing_listening(endpoint: &str) -> String {
    format!(
        "nothing is listening at {endpoint}; start the hub emulator \
         (`cargo run -p iot-hub-emulator`), or check HostName in the connection string"
    )
}

/// The hint for a device whose credentials the hub refused (MQTT CONNACK 4 or 5). The hub
/// answers a disabled device the same way, so the hint names both.
pub fn device_refused(device_id: &str, endpoint: &str) -> String {
    format!(
        "{endpoint} refused device '{device_id}'; check the device key (SharedAccessKey) in its \
         connection string, that the device exists and is enabled (a disabled device is refused \
         the same way), and that the machine's clock is right"
    )
}

/// A hint for an error answer from the service API at `endpoint`, by HTTP status.
pub fn for_status(status: u16, endpoint: &str) -> Option<String> {
    match status {
        401 => Some(format!(
            "{endpoint} refused the credentials; check SharedAccessKeyName and SharedAccessKey \
             in the connection string (and that the machine's clock is right)"
        )),
        403 => Some(
            "the shared access policy lacks the right this call needs (iothubowner has all)"
                .to_owned(),
        ),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::fmt;

    #[derive(Debug)]
    struct Layer(&'static str, Option<Box<Layer>>);
    impl fmt::Display for Layer {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(self.0)
        }
    }
    impl StdError for Layer {
        fn source(&self) -> Option<&(dyn StdError + 'static)> {
            self.1.as_deref().map(|l| l as &(dyn StdError + 'static))
        }
    }

    fn chain(messages: &[&'static str]) -> Layer {
        let mut layer: Option<Box<Layer>> = None;
        for m in messages.iter().rev() {
            layer = Some(Box::new(Layer(m, layer)));
        }
        *layer.unwrap()
    }

    #[test]
    fn the_root_cause_is_the_innermost_message() {
        let e = chain(&[
            "error sending request",
            "client error (Connect)",
            "invalid peer certificate: UnknownIssuer",
        ]);
        assert_eq!(root_cause(&e), "invalid peer certificate: UnknownIssuer");
        assert!(is_certificate_failure(&e));
    }

    #[test]
    fn recognised_causes_get_a_hint_naming_the_endpoint_and_the_option() {
        let untrusted = chain(&["send", "invalid peer certificate: UnknownIssuer"]);
        let hint = for_transport(&untrusted, "localhost:8443", Client::Service).unwrap();
        assert!(
            hint.contains("localhost:8443")
                && hint.contains("IOTHUB_CA_CERT")
                && hint.contains("ServiceClientOptions::trust_ca_file"),
            "{hint}"
        );
        let mqtt = chain(&["TLS: I/O: invalid peer certificate: UnknownIssuer"]);
        let hint = for_transport(&mqtt, "localhost:8883", Client::Device).unwrap();
        assert!(
            hint.contains("DeviceClientOptions::trust_ca_file"),
            "{hint}"
        );
        let refused = chain(&["I/O: Connection refused (os error 111)"]);
        let hint = for_transport(&refused, "localhost:1", Client::Device).unwrap();
        assert!(
            hint.contains("nothing is listening at localhost:1"),
            "{hint}"
        );
        assert!(for_transport(&chain(&["something else"]), "h", Client::Device).is_none());
        assert!(for_status(401, "h:1").unwrap().contains("SharedAccessKey"));
        assert!(for_status(404, "h:1").is_none());
        let refused = device_refused("dev-1", "h:8883");
        assert!(
            refused.contains("dev-1") && refused.contains("enabled"),
            "{refused}"
        );
    }
}
