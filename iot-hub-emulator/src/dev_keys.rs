//! The well-known development credentials, published like Azurite's development account so
//! that examples run with zero configuration. They are only used on loopback binds.

/// The well-known development key of every default shared access policy (`iothubowner`,
/// `service`, `device`, `registryRead`, `registryReadWrite`), primary.
pub const DEV_POLICY_PRIMARY_KEY: &str = "SW9USHViRW11bGF0b3JEZXZlbG9wbWVudE93bmVyMDE=";
/// The same policies' secondary key.
pub const DEV_POLICY_SECONDARY_KEY: &str = "SW9USHViRW11bGF0b3JEZXZlbG9wbWVudE93bmVyMDI=";
/// The id of the pre-registered development device.
pub const DEV_DEVICE_ID: &str = "myDevice";
/// The development device's primary key.
pub const DEV_DEVICE_PRIMARY_KEY: &str = "SW9USHViRW11bGF0b3JEZXZlbG9wbWVudERldmljZTE=";
/// The development device's secondary key.
pub const DEV_DEVICE_SECONDARY_KEY: &str = "SW9USHViRW11bGF0b3JEZXZlbG9wbWVudERldmljZTI=";

/// The ID scope of the emulator's Device Provisioning Service unless `--id-scope` sets one.
pub const DEV_ID_SCOPE: &str = "0ne00000E01";

/// `true` when `key` is one of the well-known development keys.
pub fn is_well_known(key: &str) -> bool {
    [
        DEV_POLICY_PRIMARY_KEY,
        DEV_POLICY_SECONDARY_KEY,
        DEV_DEVICE_PRIMARY_KEY,
        DEV_DEVICE_SECONDARY_KEY,
    ]
    .contains(&key)
}
