// Cloud-to-device with feedback through the official Node SDKs against the emulator:
// azure-iothub `Client.send` (AMQP on 5671, no SASL, CBS put-token) with `ack = 'full'` to the
// official Node device SDK (MQTT), which must receive the body and property; then
// `getFeedbackReceiver` must yield a batch whose record names the message id with statusCode
// Success, which is completed. A send to an unknown device must fail.
// Usage: node c2d_feedback_check.js [tls|ws]   (ws: the service over AMQP over WebSockets,
// `AmqpWs`, wss://{host}:443/$iothub/websocket with sub-protocol AMQPWSB10)
// Environment: IOTHUB_CONNECTION_STRING, IOTHUB_DEVICE_CONNECTION_STRING, IOTHUB_DEVICE_ID,
// IOTHUB_CA_CERT (also given to Node's TLS through NODE_EXTRA_CA_CERTS).
'use strict';
const fs = require('fs');
const { Client: DeviceClient, Message } = require('azure-iot-device');
const { Mqtt } = require('azure-iot-device-mqtt');
const { Client: ServiceClient, AmqpWs } = require('azure-iothub');

const deviceId = process.env.IOTHUB_DEVICE_ID || 'myDevice';
const ca = fs.readFileSync(process.env.IOTHUB_CA_CERT, 'utf8');
let failed = 0;
function check(name, ok, detail) {
  console.log((ok ? 'PASS ' : 'FAIL ') + name + (detail !== undefined ? ': ' + JSON.stringify(detail) : ''));
  if (!ok) failed++;
}
const within = (ms, p, what) => Promise.race([p, new Promise((_, rej) => setTimeout(() => rej(new Error('timed out: ' + what)), ms))]);

async function main() {
  const device = DeviceClient.fromConnectionString(process.env.IOTHUB_DEVICE_CONNECTION_STRING, Mqtt);
  device.setOptions({ ca });
  const received = new Promise((resolve) => device.on('message', (msg) => {
    device.complete(msg, () => resolve(msg));
  }));
  await device.open();

  const overWs = process.argv[2] === 'ws';
  const service = overWs
    ? ServiceClient.fromConnectionString(process.env.IOTHUB_CONNECTION_STRING, AmqpWs)
    : ServiceClient.fromConnectionString(process.env.IOTHUB_CONNECTION_STRING);
  await service.open();
  const receiver = await new Promise((resolve, reject) =>
    service.getFeedbackReceiver((err, r) => (err ? reject(err) : resolve(r))));
  const mid = 'node-c2d-' + (overWs ? 'ws-' : '') + process.pid;
  const feedback = new Promise((resolve) => receiver.on('message', (msg) => {
    const records = JSON.parse(msg.data.toString());
    receiver.complete(msg, () => resolve({ records, contentType: msg.contentType }));
  }));

  const message = new Message('hello from node');
  message.messageId = mid;
  message.ack = 'full';
  message.properties.add('myprop', 'v1');
  await service.send(deviceId, message);
  check('Client.send resolved', true);

  const got = await within(60000, received, 'device message');
  const prop = got.properties.getValue('myprop');
  check('device received body, property and message id',
    got.data.toString() === 'hello from node' && prop === 'v1' && got.messageId === mid,
    { body: got.data.toString(), prop, mid: got.messageId });

  const fb = await within(60000, feedback, 'feedback');
  const mine = fb.records.find((r) => r.originalMessageId === mid);
  check('feedback record: Success for the message id',
    !!mine && mine.statusCode === 'Success' && mine.deviceId === deviceId, fb.records);

  try {
    await service.send('no-such-device', new Message('x'));
    check('send to an unknown device fails', false);
  } catch (e) {
    check('send to an unknown device fails', true, String(e.message || e).slice(0, 120));
  }
  await service.close();
  await device.close();
}

main().then(
  () => process.exit(failed ? 1 : 0),
  (e) => { console.log('FAIL ' + (e && e.stack || e)); process.exit(1); },
);
