//! The hub this invocation talks to: the service client and the parts of the connection
//! string that the emulator-only requests and SAS tokens need.

use crate::error::CliError;
use iot_service::{ServiceClient, ServiceClientOptions, ServiceConnectionString};
use std::path::Path;

/// A configured hub.
pub struct Hub {
    /// The SDK's client.
    pub client: ServiceClient,
    /// The parsed connection string (its key never leaves this process except in a token).
    pub connection: ServiceConnectionString,
    /// The extra CA to trust, PEM.
    pub ca_pem: Option<String>,
}

impl Hub {
    /// Reads the configuration; nothing is sent yet.
    pub fn connect(
        connection_string: Option<&str>,
        ca_cert: Option<&Path>,
    ) -> Result<Self, CliError> {
        let cs = connection_string
            .filter(|s| !s.trim().is_empty())
            .ok_or_else(|| {
                CliError::Usage(
                "no connection string: set IOTHUB_CONNECTION_STRING or pass --connection-string \
                 (a shared access policy's, e.g. iothubowner)"
                    .into(),
            )
            })?;
        // The parser names the bad field, never the key.
        let connection: ServiceConnectionString = cs
            .parse()
            .map_err(|e| CliError::Usage(format!("the connection string is invalid: {e}")))?;
        let ca_pem = ca_cert
            .map(|p| {
                std::fs::read_to_string(p).map_err(|e| {
                    CliError::Usage(format!("cannot read the CA file {}: {e}", p.display()))
                })
            })
            .transpose()?;
        let mut options = ServiceClientOptions::new().product_info("iothub-cli");
        if let Some(pem) = &ca_pem {
            options = options.trust_ca_pem(pem)?;
        }
        let client = ServiceClient::new(connection.clone(), options)?;
        Ok(Self {
            client,
            connection,
            ca_pem,
        })
    }

    /// The hub's name as devices know it: `HostName` without the port that an emulator's
    /// service connection string carries (its HTTPS port, not where devices dial). A real
    /// hub's host name has no port, so this is the host name itself.
    pub fn device_host(&self) -> &str {
        let h = self.connection.host_name.as_str();
        match h.rsplit_once(':') {
            Some((host, port)) if port.parse::<u16>().is_ok() => host,
            _ => h,
        }
    }
}
