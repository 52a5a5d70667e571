//! The identity registry: devices, modules, statistics.

use crate::client::{Call, Retry, ServiceClient};
use crate::twins::IfMatch;
use crate::{Error, ErrorKind, Result};
use iot_common::registry::{Device, Module, RegistryStatistics};
use reqwest::Method;

fn check_id(field: &'static str, id: &str) -> Result<()> {
    iot_common::connection_string::validate_id(field, id)
        .map_err(|e| Error::new(ErrorKind::InvalidInput, e.to_string()))
}

impl ServiceClient {
    /// Registers a device; the hub generates keys when `device` has none.
    ///
    /// # Errors
    /// [`ErrorKind::Conflict`] when it exists; [`ErrorKind::Unauthorized`] without
    /// RegistryWrite.
    ///
    /// # Cancel safety
    /// Dropping the future abandons the request; if it was already sent the hub may still
    /// apply it, exactly as after a timeout. Creating it again gives `Conflict`, which tells you it was applied.
    ///
    /// # Examples
    /// ```no_run
    /// # async fn example(service: iot_service::ServiceClient) -> Result<(), iot_service::Error> {
    /// use iot_service::Device;
    /// let created = service.create_device(&Device::new("sensor-42", None)).await?;
    /// println!("{} created, etag {:?}", created.device_id, created.etag);
    /// # Ok(()) }
    /// ```
    pub async fn create_device(&self, device: &Device) -> Result<Device> {
        check_id("deviceId", &device.device_id)?;
        let call = Call::new(Method::PUT, vec!["devices", &device.device_id]).json(device)?;
        self.send(call).await?.json()
    }

    /// A device identity.
    ///
    /// # Errors
    /// [`ErrorKind::NotFound`].
    ///
    /// # Cancel safety
    /// Cancel-safe: dropping the future abandons the request; nothing changes on the hub.
    ///
    /// # Examples
    /// ```no_run
    /// # async fn example(service: iot_service::ServiceClient) -> Result<(), iot_service::Error> {
    /// let device = service.get_device("myDevice").await?;
    /// println!("{:?} since {:?}", device.connection_state, device.connection_state_updated_time);
    /// # Ok(()) }
    /// ```
    pub async fn get_device(&self, device_id: &str) -> Result<Device> {
        self.send(Call::new(Method::GET, vec!["devices", device_id]))
            .await?
            .json()
    }

    /// Updates a device identity (status, keys, capabilities).
    ///
    /// # Errors
    /// [`ErrorKind::PreconditionFailed`] when the etag is stale; [`ErrorKind::NotFound`].
    ///
    /// # Cancel safety
    /// Dropping the future abandons the request; if it was already sent the hub may still
    /// apply it, exactly as after a timeout. Repeating it with the same etag is safe: a stale etag gives `PreconditionFailed`.
    ///
    /// # Examples
    /// ```no_run
    /// # async fn example(service: iot_service::ServiceClient) -> Result<(), iot_service::Error> {
    /// use iot_service::{DeviceStatus, IfMatch};
    /// let mut device = service.get_device("sensor-42").await?;
    /// device.status = DeviceStatus::Disabled;
    /// let etag = device.etag.clone().unwrap_or_default();
    /// service.update_device(&device, IfMatch::Etag(etag)).await?;
    /// # Ok(()) }
    /// ```
    pub async fn update_device(&self, device: &Device, if_match: IfMatch) -> Result<Device> {
        let call = Call::new(Method::PUT, vec!["devices", &device.device_id])
            .json(device)?
            .header("If-Match", if_match.header())
            .retry(if_match.retry());
        self.send(call).await?.json()
    }

    /// Deletes a device and its modules.
    ///
    /// # Errors
    /// [`ErrorKind::PreconditionFailed`]; [`ErrorKind::NotFound`].
    ///
    /// # Cancel safety
    /// Dropping the future abandons the request; if it was already sent the hub may still
    /// apply it, exactly as after a timeout. Repeating it is safe: a second delete gives `NotFound`.
    ///
    /// # Examples
    /// ```no_run
    /// # async fn example(service: iot_service::ServiceClient) -> Result<(), iot_service::Error> {
    /// use iot_service::IfMatch;
    /// service.delete_device("sensor-42", IfMatch::Any).await?;
    /// # Ok(()) }
    /// ```
    pub async fn delete_device(&self, device_id: &str, if_match: IfMatch) -> Result<()> {
        let call = Call::new(Method::DELETE, vec!["devices", device_id])
            .header("If-Match", if_match.header())
            .retry(if_match.retry());
        self.send(call).await.map(drop)
    }

    /// Up to `top` (1–1000) device identities.
    ///
    /// # Errors
    /// [`ErrorKind::Unauthorized`] without RegistryRead.
    ///
    /// # Cancel safety
    /// Cancel-safe: dropping the future abandons the request; nothing changes on the hub.
    ///
    /// # Examples
    /// ```no_run
    /// # async fn example(service: iot_service::ServiceClient) -> Result<(), iot_service::Error> {
    /// for device in service.list_devices(100).await? {
    ///     println!("{} {:?}", device.device_id, device.connection_state);
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn list_devices(&self, top: u32) -> Result<Vec<Device>> {
        let mut call = Call::new(Method::GET, vec!["devices"]);
        call.query.push(("top", top.clamp(1, 1000).to_string()));
        self.send(call).await?.json()
    }

    /// Registers a module; keys are generated when it has none.
    ///
    /// # Errors
    /// [`ErrorKind::Conflict`]; [`ErrorKind::NotFound`] for an unknown device.
    ///
    /// # Cancel safety
    /// Dropping the future abandons the request; if it was already sent the hub may still
    /// apply it, exactly as after a timeout. Creating it again gives `Conflict`, which tells you it was applied.
    ///
    /// # Examples
    /// ```no_run
    /// # async fn example(service: iot_service::ServiceClient) -> Result<(), iot_service::Error> {
    /// use iot_service::Module;
    /// let module = service.create_module(&Module::new("myDevice", "thermostat", None)).await?;
    /// println!("{}/{}", module.device_id, module.module_id);
    /// # Ok(()) }
    /// ```
    pub async fn create_module(&self, module: &Module) -> Result<Module> {
        check_id("moduleId", &module.module_id)?;
        let call = Call::new(
            Method::PUT,
            vec!["devices", &module.device_id, "modules", &module.module_id],
        )
        .json(module)?;
        self.send(call).await?.json()
    }

    /// A module identity.
    ///
    /// # Errors
    /// [`ErrorKind::NotFound`].
    ///
    /// # Cancel safety
    /// Cancel-safe: dropping the future abandons the request; nothing changes on the hub.
    ///
    /// # Examples
    /// ```no_run
    /// # async fn example(service: iot_service::ServiceClient) -> Result<(), iot_service::Error> {
    /// let module = service.get_module("myDevice", "thermostat").await?;
    /// println!("{:?}", module.connection_state);
    /// # Ok(()) }
    /// ```
    pub async fn get_module(&self, device_id: &str, module_id: &str) -> Result<Module> {
        self.send(Call::new(
            Method::GET,
            vec!["devices", device_id, "modules", module_id],
        ))
        .await?
        .json()
    }

    /// Updates a module identity.
    ///
    /// # Errors
    /// [`ErrorKind::PreconditionFailed`]; [`ErrorKind::NotFound`].
    ///
    /// # Cancel safety
    /// Dropping the future abandons the request; if it was already sent the hub may still
    /// apply it, exactly as after a timeout. Repeating it with the same etag is safe: a stale etag gives `PreconditionFailed`.
    ///
    /// # Examples
    /// ```no_run
    /// # async fn example(service: iot_service::ServiceClient) -> Result<(), iot_service::Error> {
    /// use iot_service::IfMatch;
    /// let mut module = service.get_module("myDevice", "thermostat").await?;
    /// module.managed_by = Some("ops".to_owned());
    /// service.update_module(&module, IfMatch::Any).await?;
    /// # Ok(()) }
    /// ```
    pub async fn update_module(&self, module: &Module, if_match: IfMatch) -> Result<Module> {
        let call = Call::new(
            Method::PUT,
            vec!["devices", &module.device_id, "modules", &module.module_id],
        )
        .json(module)?
        .header("If-Match", if_match.header())
        .retry(if_match.retry());
        self.send(call).await?.json()
    }

    /// Deletes a module.
    ///
    /// # Errors
    /// [`ErrorKind::PreconditionFailed`]; [`ErrorKind::NotFound`].
    ///
    /// # Cancel safety
    /// Dropping the future abandons the request; if it was already sent the hub may still
    /// apply it, exactly as after a timeout. Repeating it is safe: a second delete gives `NotFound`.
    ///
    /// # Examples
    /// ```no_run
    /// # async fn example(service: iot_service::ServiceClient) -> Result<(), iot_service::Error> {
    /// use iot_service::IfMatch;
    /// service.delete_module("myDevice", "thermostat", IfMatch::Any).await?;
    /// # Ok(()) }
    /// ```
    pub async fn delete_module(
        &self,
        device_id: &str,
        module_id: &str,
        if_match: IfMatch,
    ) -> Result<()> {
        let call = Call::new(
            Method::DELETE,
            vec!["devices", device_id, "modules", module_id],
        )
        .header("If-Match", if_match.header())
        .retry(if_match.retry());
        self.send(call).await.map(drop)
    }

    /// The modules of a device.
    ///
    /// # Errors
    /// [`ErrorKind::NotFound`].
    ///
    /// # Cancel safety
    /// Cancel-safe: dropping the future abandons the request; nothing changes on the hub.
    ///
    /// # Examples
    /// ```no_run
    /// # async fn example(service: iot_service::ServiceClient) -> Result<(), iot_service::Error> {
    /// for module in service.list_modules("myDevice").await? {
    ///     println!("{}", module.module_id);
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn list_modules(&self, device_id: &str) -> Result<Vec<Module>> {
        self.send(Call::new(
            Method::GET,
            vec!["devices", device_id, "modules"],
        ))
        .await?
        .json()
    }

    /// Device counts.
    ///
    /// # Errors
    /// [`ErrorKind::Unauthorized`] without RegistryRead.
    ///
    /// # Cancel safety
    /// Cancel-safe: dropping the future abandons the request; nothing changes on the hub.
    ///
    /// # Examples
    /// ```no_run
    /// # async fn example(service: iot_service::ServiceClient) -> Result<(), iot_service::Error> {
    /// let stats = service.device_statistics().await?;
    /// println!("{} devices, {} enabled", stats.total_device_count, stats.enabled_device_count);
    /// # Ok(()) }
    /// ```
    pub async fn device_statistics(&self) -> Result<RegistryStatistics> {
        self.send(Call::new(Method::GET, vec!["statistics", "devices"]).retry(Retry::Idempotent))
            .await?
            .json()
    }
}
