// X.509 provisioning with the official Node SDKs against the emulator's DPS:
// azure-iot-provisioning-service enrolls a self-signed certificate (individual) and the device
// CA (group); azure-iot-provisioning-device with azure-iot-security-x509 registers over MQTT;
// azure-iot-device connects to the assigned hub with `x509=true` and the same certificate and
// answers rebootDevice, invoked through azure-iothub.
// Environment (printed by the emulator): IOTHUB_CONNECTION_STRING, IOTHUB_DPS_CONNECTION_STRING,
// IOTHUB_DPS_ID_SCOPE, IOTHUB_DPS_ENDPOINT; DEVICE_CA_CERT, DEVICE_CA_KEY (the emulator's
// --device-ca); NODE_EXTRA_CA_CERTS = the emulator's CA.
'use strict';
const fs = require('fs');
const os = require('os');
const path = require('path');
const { execFileSync } = require('child_process');
const { ProvisioningServiceClient } = require('azure-iot-provisioning-service');
const { ProvisioningDeviceClient } = require('azure-iot-provisioning-device');
const { Mqtt: ProvMqtt } = require('azure-iot-provisioning-device-mqtt');
const { X509Security } = require('azure-iot-security-x509');
const { Client: DeviceClient } = require('azure-iot-device');
const { Mqtt } = require('azure-iot-device-mqtt');
const { Client: ServiceClient } = require('azure-iothub');

const work = fs.mkdtempSync(path.join(os.tmpdir(), 'node-x509-'));
let failed = 0;
function check(name, ok, detail) {
  console.log((ok ? 'PASS ' : 'FAIL ') + name + (detail !== undefined ? ': ' + JSON.stringify(detail) : ''));
  if (!ok) failed++;
}
const openssl = (...args) => execFileSync('openssl', args, { stdio: 'pipe' });

// A P-256 certificate with CN `cn`: self-signed, or signed by the device CA (v3 extensions;
// the chain file then holds the CA too).
function leaf(cn, byCa) {
  const key = path.join(work, cn + '.key'), cert = path.join(work, cn + '.pem');
  if (byCa) {
    const csr = path.join(work, cn + '.csr'), ext = path.join(work, cn + '.ext');
    fs.writeFileSync(ext, 'basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\n');
    openssl('req', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', key, '-out', csr, '-subj', '/CN=' + cn);
    openssl('x509', '-req', '-in', csr, '-CA', process.env.DEVICE_CA_CERT, '-CAkey', process.env.DEVICE_CA_KEY,
      '-CAcreateserial', '-out', cert, '-days', '30', '-extfile', ext);
    fs.appendFileSync(cert, fs.readFileSync(process.env.DEVICE_CA_CERT));
  } else {
    openssl('req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', key, '-out', cert, '-subj', '/CN=' + cn, '-days', '30');
  }
  return { cert: fs.readFileSync(cert, 'utf8'), key: fs.readFileSync(key, 'utf8') };
}

async function registerAndRun(name, registrationId, pem) {
  const client = ProvisioningDeviceClient.create(process.env.IOTHUB_DPS_ENDPOINT, process.env.IOTHUB_DPS_ID_SCOPE,
    new ProvMqtt(), new X509Security(registrationId, pem));
  const result = await client.register();
  check(name + ': assigned', result.status === 'assigned' && result.deviceId === registrationId, result.status);
  const device = DeviceClient.fromConnectionString(`HostName=${result.assignedHub};DeviceId=${result.deviceId};x509=true`, Mqtt);
  device.setOptions({ cert: pem.cert, key: pem.key });
  await device.open();
  device.onDeviceMethod('rebootDevice', (request, response) => response.send(200, { rebooted: true }, () => {}));
  const service = ServiceClient.fromConnectionString(process.env.IOTHUB_CONNECTION_STRING);
  const r = await service.invokeDeviceMethod(result.deviceId, { methodName: 'rebootDevice', payload: {}, responseTimeoutInSeconds: 30 });
  check(name + ': the X.509 device answers rebootDevice 200', r.result.status === 200, r.result.status);
  await device.close();
}

async function main() {
  const dps = ProvisioningServiceClient.fromConnectionString(process.env.IOTHUB_DPS_CONNECTION_STRING);
  const self = leaf('node-dps-x509', false);
  await dps.createOrUpdateIndividualEnrollment({
    registrationId: 'node-dps-x509',
    attestation: { type: 'x509', x509: { clientCertificates: { primary: { certificate: self.cert } } } },
  });
  await registerAndRun('individual X.509', 'node-dps-x509', self);

  await dps.createOrUpdateEnrollmentGroup({
    enrollmentGroupId: 'node-grp-x509',
    attestation: { type: 'x509', x509: { signingCertificates: { primary: { certificate: fs.readFileSync(process.env.DEVICE_CA_CERT, 'utf8') } } } },
  });
  await registerAndRun('group X.509', 'node-grp-x509-dev', leaf('node-grp-x509-dev', true));

  try {
    const stranger = leaf('node-stranger', false);
    const client = ProvisioningDeviceClient.create(process.env.IOTHUB_DPS_ENDPOINT, process.env.IOTHUB_DPS_ID_SCOPE,
      new ProvMqtt(), new X509Security('node-stranger', stranger));
    await client.register();
    check('an unenrolled certificate is refused', false);
  } catch (e) {
    check('an unenrolled certificate is refused', true, e.constructor.name);
  }
  fs.rmSync(work, { recursive: true, force: true });
  console.log(`${failed} failed`);
  process.exit(failed ? 1 : 0);
}

main().catch((e) => { console.log('FAIL ' + (e.stack || e)); process.exit(1); });
