//! What to do about a failure: the root cause of a transport error, and a hint for the causes
//! users meet most (an untrusted certificate, nothing listening, a refused key).
//!
//! reqwest wraps the interesting part several layers deep ("error sending request" → "client
//! error (Connect)" → "invalid peer certificate: UnknownIssuer"), so a `Box<dyn Error>` printed
//! by `?` in `main` used to say only "the hub could not be reached". The error's `Display` now
//! carries the deepest cause and the hint itself.

use std::error::Error as StdError;

/// The innermost error's message: the most specific description of what failed.
pub(crate) fn root_cause(e: &(dyn StdError + 'static)) -> String {
    let mut deepest = e;
    // Bounded: source chains are short, but a cyclic custom error must not spin forever.
    for _ in 0..32 {
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
    for _ in 0..32 {
        let Some(next) = current else { break };
        text.push_str(" | ");
        text.push_str(&next.to_string());
        current = next.source();
    }
    text
}

/// `true` when the TLS handshake failed on the peer's certificate: retrying cannot help.
pub(crate) fn is_certificate_failure(e: &(dyn StdError + 'static)) -> bool {
    chain_text(e).contains("invalid peer certificate")
}

/// A hint for a transport failure towards `endpoint`, when its cause is one we recognise.
pub(crate) fn for_transport(e: &(dyn StdError + 'static), endpoint: &str) -> Option<String> {
    let text = chain_text(e);
    let has = |needle: &str| text.contains(needle);
    if has("UnknownIssuer") || has("invalid peer certificate") && has("Unknown") {
        return Some(format!(
            "the certificate of {endpoint} is not trusted; for the emulator, set IOTHUB_CA_CERT \
             to the CA file it printed at start-up, or call ServiceClientOptions::trust_ca_file"
        ));
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
    if has("Connection refused") || has("ConnectionRefused") {
        return Some(format!(
            "nothing is listening at {endpoint}; start the hub emulator \
             (`cargo run -p iot-hub-emulator`), or check HostName in the connection string"
        ));
    }
    if has("dns error") || has("failed to lookup address") {
        return Some(format!(
            "the host of {endpoint} could not be resolved; check HostName in the connection string"
        ));
    }
    None
}

/// A hint for an error answer from the hub, by status.
pub(crate) fn for_status(status: u16, endpoint: &str) -> Option<String> {
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
        *layer.expect("at least one message")
    }

    #[test]
    fn the_root_cause_is_the_innermost_message() {
        let e = chain(&[
            "error sending request",
            "client error (Connect)",
            "invalid peer certificate: UnknownIssuer",
        ]);
        assert_eq!(root_cause(&e), "invalid peer certificate: UnknownIssuer");
    }

    #[test]
    fn recognised_causes_get_a_hint_naming_the_endpoint() {
        let untrusted = chain(&["send", "invalid peer certificate: UnknownIssuer"]);
        let hint = for_transport(&untrusted, "localhost:8443").expect("hint");
        assert!(
            hint.contains("localhost:8443") && hint.contains("IOTHUB_CA_CERT"),
            "{hint}"
        );
        let refused = chain(&[
            "send",
            "tcp connect error",
            "Connection refused (os error 111)",
        ]);
        let hint = for_transport(&refused, "localhost:1").expect("hint");
        assert!(
            hint.contains("nothing is listening at localhost:1"),
            "{hint}"
        );
        assert!(for_transport(&chain(&["something else"]), "h").is_none());
        assert!(
            for_status(401, "h:1")
                .expect("hint")
                .contains("SharedAccessKey")
        );
        assert!(for_status(404, "h:1").is_none());
    }
}
