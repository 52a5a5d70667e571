//! X.509 devices with this crate's clients against the in-process emulator: self-signed and
//! CA-signed devices run the tutorial; another device's certificate, a missing certificate,
//! a key of another certificate and an expired certificate are typed errors; a device
//! provisions through DPS with its certificate and connects with it.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use iot_device::provisioning::ProvisioningClient;
use iot_device::{DeviceClient, DeviceClientOptions, DeviceConnectionString, ErrorKind};
use iot_examples::tutorial;
use iot_hub_emulator::{Emulator, RunningEmulator};
use iot_service::{
    AuthenticationMechanism, Device, IndividualEnrollment, ProvisioningServiceClient,
    ServiceClient, ServiceClientOptions, Thumbprint,
};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use std::time::Duration;

struct Pem {
    cert: String,
    key: String,
    der: Vec<u8>,
}

fn leaf_params(cn: &str, years: (i32, i32)) -> CertificateParams {
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    p.distinguished_name = dn;
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    p.not_before = rcgen::date_time_ymd(years.0, 1, 1);
    p.not_after = rcgen::date_time_ymd(years.1, 1, 1);
    p
}

fn self_signed(cn: &str, years: (i32, i32)) -> Pem {
    let key = KeyPair::generate().unwrap();
    let c = leaf_params(cn, years).self_signed(&key).unwrap();
    Pem {
        cert: c.pem(),
        key: key.serialize_pem(),
        der: c.der().to_vec(),
    }
}

struct Ca {
    pem: String,
    issuer: Issuer<'static, KeyPair>,
}

fn device_ca() -> Ca {
    let key = KeyPair::generate().unwrap();
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "Rust test device CA");
    p.distinguished_name = dn;
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let cert = p.self_signed(&key).unwrap();
    Ca {
        pem: cert.pem(),
        issuer: Issuer::new(p, key),
    }
}

fn ca_signed(cn: &str, ca: &Ca) -> Pem {
    let key = KeyPair::generate().unwrap();
    let c = leaf_params(cn, (2000, 2099))
        .signed_by(&key, &ca.issuer)
        .unwrap();
    Pem {
        // The chain: leaf, then the CA, as devices usually send it.
        cert: format!("{}{}", c.pem(), ca.pem),
        key: key.serialize_pem(),
        der: c.der().to_vec(),
    }
}

struct Setup {
    emu: RunningEmulator,
    service: ServiceClient,
    ca: Ca,
}

async fn setup() -> Setup {
    let ca = device_ca();
    let emu = Emulator::builder()
        .device_ca_pem(ca.pem.clone())
        .dps_retry_after(Duration::ZERO)
        .start()
        .await
        .unwrap();
    let service = ServiceClient::from_connection_string(
        &emu.service_connection_string(),
        ServiceClientOptions::new()
            .trust_ca_pem(emu.ca_pem())
            .unwrap(),
    )
    .unwrap();
    Setup { emu, service, ca }
}

impl Setup {
    async fn register(&self, id: &str, auth: AuthenticationMechanism) {
        let mut d = Device::new(id, None);
        d.authentication = auth;
        self.service.create_device(&d).await.unwrap();
    }

    fn options(&self, pem: &Pem) -> DeviceClientOptions {
        DeviceClientOptions::new()
            .trust_ca_pem(self.emu.ca_pem())
            .unwrap()
            .client_certificate_pem(&pem.cert, &pem.key)
            .unwrap()
    }

    fn connection_string(&self, id: &str) -> DeviceConnectionString {
        self.emu
            .device_connection_string(id)
            .unwrap()
            .parse()
            .unwrap()
    }

    async fn run_tutorial(&self, id: &str, pem: &Pem) {
        let device = DeviceClient::connect(self.connection_string(id), self.options(pem))
            .await
            .unwrap();
        tutorial::serve_reboot(&device, Duration::from_millis(10))
            .await
            .unwrap();
        tutorial::reboot_device(&self.service, id).await.unwrap();
        let twin = self.service.get_twin(id).await.unwrap();
        assert!(
            twin.properties
                .reported
                .properties
                .get("rebootTime")
                .is_some()
        );
        device.close().await.unwrap();
    }
}

#[tokio::test]
async fn self_signed_and_ca_signed_devices_run_the_tutorial() {
    let s = setup().await;
    let own = self_signed("any-subject", (2000, 2099));
    s.register(
        "x509-self",
        AuthenticationMechanism::self_signed(Thumbprint::sha256(&own.der), None),
    )
    .await;
    let cs = s.connection_string("x509-self");
    assert!(matches!(cs.credential, iot_device::DeviceCredential::X509));
    s.run_tutorial("x509-self", &own).await;

    let signed = ca_signed("x509-ca", &s.ca);
    s.register("x509-ca", AuthenticationMechanism::certificate_authority())
        .await;
    s.run_tutorial("x509-ca", &signed).await;
}

#[tokio::test]
async fn another_device_s_certificate_is_refused() {
    let s = setup().await;
    let mine = self_signed("mine", (2000, 2099));
    let theirs = self_signed("theirs", (2000, 2099));
    s.register(
        "x509-mine",
        AuthenticationMechanism::self_signed(Thumbprint::sha1(&mine.der), None),
    )
    .await;
    s.register(
        "x509-theirs",
        AuthenticationMechanism::self_signed(Thumbprint::sha1(&theirs.der), None),
    )
    .await;
    let err = tokio::time::timeout(
        Duration::from_secs(60),
        DeviceClient::connect(s.connection_string("x509-mine"), s.options(&theirs)),
    )
    .await
    .expect("a refused certificate must not hang")
    .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unauthorized, "{err}");
    // A CA-signed certificate whose CN names another device is refused too.
    let wrong_cn = ca_signed("someone-else", &s.ca);
    s.register("x509-cn", AuthenticationMechanism::certificate_authority())
        .await;
    let err = DeviceClient::connect(s.connection_string("x509-cn"), s.options(&wrong_cn))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unauthorized, "{err}");
}

#[tokio::test]
async fn certificate_mistakes_are_typed_before_connecting() {
    let s = setup().await;
    s.register(
        "x509-none",
        AuthenticationMechanism::certificate_authority(),
    )
    .await;
    let no_cert = DeviceClientOptions::new()
        .trust_ca_pem(s.emu.ca_pem())
        .unwrap();
    let err = DeviceClient::connect(s.connection_string("x509-none"), no_cert)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Configuration, "{err}");
    assert!(err.to_string().contains("client_certificate"), "{err}");

    let a = self_signed("a", (2000, 2099));
    let b = self_signed("b", (2000, 2099));
    let err = DeviceClientOptions::new()
        .client_certificate_pem(&a.cert, &b.key)
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Certificate, "{err}");
    assert!(err.to_string().contains("does not match"), "{err}");
    assert!(!err.to_string().contains("PRIVATE KEY"));

    let old = self_signed("old", (2000, 2001));
    let err = DeviceClient::connect(s.connection_string("x509-none"), s.options(&old))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Certificate, "{err}");
    assert!(err.to_string().contains("expired"), "{err}");
}

#[tokio::test]
async fn a_device_provisions_with_its_certificate_and_connects_with_it() {
    let s = setup().await;
    let pem = self_signed("dps-x509-dev", (2000, 2099));
    let dps = ProvisioningServiceClient::from_connection_string(
        &s.emu.provisioning_service_connection_string(),
        ServiceClientOptions::new()
            .trust_ca_pem(s.emu.ca_pem())
            .unwrap(),
    )
    .unwrap();
    let mut e = IndividualEnrollment::with_symmetric_key("dps-x509-dev");
    e.attestation = serde_json::from_value(serde_json::json!({
        "type": "x509",
        "x509": {"clientCertificates": {"primary": {"certificate": pem.cert}}}
    }))
    .unwrap();
    dps.create_or_update_enrollment(&e).await.unwrap();

    let registration = ProvisioningClient::with_x509(s.emu.id_scope(), s.options(&pem))
        .unwrap()
        .endpoint(s.emu.provisioning_endpoint())
        .register()
        .await
        .unwrap();
    assert_eq!(registration.device_id(), "dps-x509-dev");
    let device = registration.connect().await.unwrap();
    device
        .update_reported(&serde_json::json!({"provisioned": "x509"}))
        .await
        .unwrap();
    let twin = s.service.get_twin("dps-x509-dev").await.unwrap();
    assert_eq!(twin.properties.reported.properties["provisioned"], "x509");
}

#[tokio::test]
async fn x509_works_over_websockets_and_for_modules() {
    let s = setup().await;
    let pem = self_signed("ws-x509", (2000, 2099));
    s.register(
        "x509-ws",
        AuthenticationMechanism::self_signed(Thumbprint::sha256(&pem.der), None),
    )
    .await;
    let mut cs = s.connection_string("x509-ws");
    cs.gateway_host_name = Some(format!("localhost:{}", s.emu.https_addr().port()));
    let device = DeviceClient::connect(
        cs,
        s.options(&pem)
            .transport(iot_device::Transport::MqttWebSocket),
    )
    .await
    .unwrap();
    device
        .update_reported(&serde_json::json!({"over": "wss"}))
        .await
        .unwrap();
    device.close().await.unwrap();

    // A module with its own certificate (CA-signed; its CN is the device id).
    s.register(
        "x509-edge",
        AuthenticationMechanism::certificate_authority(),
    )
    .await;
    let mut module = iot_service::Module::new("x509-edge", "filter", None);
    module.authentication = AuthenticationMechanism::certificate_authority();
    s.service.create_module(&module).await.unwrap();
    let module_pem = ca_signed("x509-edge", &s.ca);
    let cs: DeviceConnectionString = s
        .emu
        .module_connection_string("x509-edge", "filter")
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(cs.module_id.as_deref(), Some("filter"));
    let client = DeviceClient::connect(cs, s.options(&module_pem))
        .await
        .unwrap();
    client
        .update_reported(&serde_json::json!({"module": true}))
        .await
        .unwrap();
    let twin = s
        .service
        .get_module_twin("x509-edge", "filter")
        .await
        .unwrap();
    assert_eq!(twin.properties.reported.properties["module"], true);
}
