// The device-management tutorial with the official Node SDKs against the emulator.
// Usage: node tutorial_check.js [both|device|service]
// Environment: IOTHUB_CONNECTION_STRING, IOTHUB_DEVICE_CONNECTION_STRING, IOTHUB_DEVICE_ID,
// IOTHUB_CA_CERT (also given to Node's HTTPS through NODE_EXTRA_CA_CERTS).
'use strict';
const fs = require('fs');
const { Client: DeviceClient } = require('azure-iot-device');
const { Mqtt } = require('azure-iot-device-mqtt');
const { Client: ServiceClient, Registry } = require('azure-iothub');

const mode = process.argv[2] || 'both';
const deviceId = process.env.IOTHUB_DEVICE_ID || 'myDevice';
const ca = fs.readFileSync(process.env.IOTHUB_CA_CERT, 'utf8');
let passed = 0, failed = 0;
function check(name, ok, detail) {
  console.log((ok ? 'PASS ' : 'FAIL ') + name + (detail !== undefined ? ': ' + JSON.stringify(detail) : ''));
  ok ? passed++ : failed++;
}
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const statusOf = (e) => [e.response && e.response.statusCode, e.response && e.response.headers && e.response.headers['iothub-errorcode']];

async function runDevice() {
  const device = DeviceClient.fromConnectionString(process.env.IOTHUB_DEVICE_CONNECTION_STRING, Mqtt);
  device.setOptions({ ca });
  await device.open();
  const twin = await device.getTwin();
  check('device twin GET', twin.properties && twin.properties.reported !== undefined);
  device.onDeviceMethod('rebootDevice', (request, response) => {
    const now = new Date().toISOString();
    twin.properties.reported.update({ rebootTime: now }, (err) => {
      if (err) console.log('reported patch failed: ' + err);
      response.send(200, { rebooted: true, rebootTime: now }, () => {});
    });
  });
  return device;
}

async function runService() {
  const cs = process.env.IOTHUB_CONNECTION_STRING;
  const service = ServiceClient.fromConnectionString(cs);
  const registry = Registry.fromConnectionString(cs);
  const r = await service.invokeDeviceMethod(deviceId, { methodName: 'rebootDevice', payload: { delay: 1 }, responseTimeoutInSeconds: 30 });
  check('rebootDevice answered 200', r.result.status === 200, r.result.status);
  check('rebootDevice payload', r.result.payload && r.result.payload.rebooted === true, r.result.payload);
  let rebootTime;
  for (let i = 0; i < 50 && !rebootTime; i++) {
    const t = (await registry.getTwin(deviceId)).responseBody;
    rebootTime = t.properties.reported.rebootTime;
    if (!rebootTime) await sleep(100);
  }
  check('service sees rebootTime in the twin', !!rebootTime, rebootTime);
  const query = registry.createQuery(`SELECT * FROM devices WHERE deviceId = '${deviceId}'`, 100);
  const page = await query.nextAsTwin();
  check('twin query returns the device', page.result.length === 1 && page.result[0].deviceId === deviceId, page.result.map((t) => t.deviceId));
  check('query has no more pages', query.hasMoreResults === false);
  try {
    await service.invokeDeviceMethod('no-such-device', { methodName: 'rebootDevice', payload: {} });
    check('unknown device is refused', false);
  } catch (e) {
    check('unknown device is 404 DeviceNotFound', statusOf(e)[0] === 404 && statusOf(e)[1] === 'DeviceNotFound', statusOf(e));
  }
  try { await registry.delete('offlineDeviceNode'); } catch (e) { /* absent */ }
  await registry.create({ deviceId: 'offlineDeviceNode' });
  try {
    await service.invokeDeviceMethod('offlineDeviceNode', { methodName: 'rebootDevice', payload: {} });
    check('offline device is refused', false);
  } catch (e) {
    check('offline device is 404 DeviceNotOnline', statusOf(e)[0] === 404 && statusOf(e)[1] === 'DeviceNotOnline', statusOf(e));
  }
  const wrong = cs.replace(/SharedAccessKey=[^;]+/, 'SharedAccessKey=d3JvbmctZGV2ZWxvcG1lbnQta2V5LTAwMDAwMDAwMDA=');
  try {
    await Registry.fromConnectionString(wrong).getTwin(deviceId);
    check('wrong key is refused', false);
  } catch (e) {
    check('wrong key is 401', statusOf(e)[0] === 401, statusOf(e));
  }
}

(async () => {
  let device;
  try {
    if (mode !== 'service') device = await runDevice();
    if (mode === 'device') {
      console.log('device ready');
      await sleep(600000);
    }
    if (mode !== 'device') await runService();
  } catch (e) {
    check('no unexpected error', false, String(e));
  }
  if (device) await device.close();
  console.log(`${passed} passed, ${failed} failed`);
  process.exit(failed ? 1 : 0);
})();
