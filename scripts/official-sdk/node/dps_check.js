// Device provisioning with the official Node SDKs against the emulator's DPS: enrollments made
// with azure-iot-provisioning-service, registrations with azure-iot-provisioning-device over
// MQTT and HTTPS (symmetric key, individual and group), then azure-iot-device connects to the
// assigned hub and answers rebootDevice invoked through azure-iothub.
// Environment (printed by the emulator): IOTHUB_CONNECTION_STRING, IOTHUB_DPS_CONNECTION_STRING,
// IOTHUB_DPS_ID_SCOPE, IOTHUB_DPS_ENDPOINT; NODE_EXTRA_CA_CERTS = the emulator's CA.
'use strict';
const crypto = require('crypto');
const { ProvisioningServiceClient } = require('azure-iot-provisioning-service');
const { ProvisioningDeviceClient } = require('azure-iot-provisioning-device');
const { Mqtt: ProvMqtt } = require('azure-iot-provisioning-device-mqtt');
const { Http: ProvHttp } = require('azure-iot-provisioning-device-http');
const { SymmetricKeySecurityClient } = require('azure-iot-security-symmetric-key');
const { Client: DeviceClient } = require('azure-iot-device');
const { Mqtt } = require('azure-iot-device-mqtt');
const { Client: ServiceClient } = require('azure-iothub');

const scope = process.env.IOTHUB_DPS_ID_SCOPE;
const host = process.env.IOTHUB_DPS_ENDPOINT;
let failed = 0;
function check(name, ok, detail) {
  console.log((ok ? 'PASS ' : 'FAIL ') + name + (detail !== undefined ? ': ' + JSON.stringify(detail) : ''));
  if (!ok) failed++;
}
const derive = (groupKey, id) => crypto.createHmac('sha256', Buffer.from(groupKey, 'base64')).update(id).digest('base64');

async function register(transport, registrationId, key) {
  const client = ProvisioningDeviceClient.create(host, scope, transport, new SymmetricKeySecurityClient(registrationId, key));
  return client.register();
}

async function runTutorial(name, result, key) {
  const cs = `HostName=${result.assignedHub};DeviceId=${result.deviceId};SharedAccessKey=${key}`;
  const device = DeviceClient.fromConnectionString(cs, Mqtt);
  await device.open();
  device.onDeviceMethod('rebootDevice', (request, response) => response.send(200, { rebooted: true }, () => {}));
  const service = ServiceClient.fromConnectionString(process.env.IOTHUB_CONNECTION_STRING);
  const r = await service.invokeDeviceMethod(result.deviceId, { methodName: 'rebootDevice', payload: {}, responseTimeoutInSeconds: 30 });
  check(name + ': provisioned device answers rebootDevice 200', r.result.status === 200, r.result.status);
  await device.close();
}

async function main() {
  const dps = ProvisioningServiceClient.fromConnectionString(process.env.IOTHUB_DPS_CONNECTION_STRING);
  const ind = (await dps.createOrUpdateIndividualEnrollment({
    registrationId: 'node-ind', attestation: { type: 'symmetricKey', symmetricKey: { primaryKey: '', secondaryKey: '' } },
  })).responseBody;
  check('service: individual enrollment created with an etag', !!ind.etag, ind.etag);
  const key = (await dps.getIndividualEnrollmentAttestationMechanism('node-ind')).responseBody.symmetricKey.primaryKey;
  const group = (await dps.createOrUpdateEnrollmentGroup({
    enrollmentGroupId: 'node-grp', attestation: { type: 'symmetricKey', symmetricKey: { primaryKey: '', secondaryKey: '' } },
  })).responseBody;
  const fetched = (await dps.getEnrollmentGroup('node-grp')).responseBody;
  check('service: enrollment group round-trips with its etag', fetched.etag === group.etag, [fetched.etag, group.etag]);
  const groupKey = group.attestation.symmetricKey.primaryKey;

  const mqttInd = await register(new ProvMqtt(), 'node-ind', key);
  check('MQTT individual: assigned', mqttInd.status === 'assigned' && mqttInd.deviceId === 'node-ind', mqttInd);
  await runTutorial('MQTT individual', mqttInd, key);

  const httpGrp = await register(new ProvHttp(), 'node-grp-dev-1', derive(groupKey, 'node-grp-dev-1'));
  check('HTTPS group: assigned with the derived key', httpGrp.status === 'assigned' && httpGrp.deviceId === 'node-grp-dev-1', httpGrp);
  await runTutorial('HTTPS group', httpGrp, derive(groupKey, 'node-grp-dev-1'));

  const mqttGrp = await register(new ProvMqtt(), 'node-grp-dev-2', derive(groupKey, 'node-grp-dev-2'));
  check('MQTT group: assigned with the derived key', mqttGrp.status === 'assigned', mqttGrp.status);

  try {
    await register(new ProvMqtt(), 'node-grp-dev-3', derive(Buffer.from('not the group key, 32 bytes long').toString('base64'), 'node-grp-dev-3'));
    check('wrong derived key is refused', false);
  } catch (e) {
    check('wrong derived key is refused', true, e.constructor.name);
  }
  const states = (await dps.getDeviceRegistrationState('node-ind')).responseBody;
  check('service: registration state of node-ind', states.status === 'assigned', states.status);
  await dps.deleteIndividualEnrollment('node-ind');
  console.log(`${failed} failed`);
  process.exit(failed ? 1 : 0);
}

main().catch((e) => { console.log('FAIL ' + (e.stack || e)); process.exit(1); });
