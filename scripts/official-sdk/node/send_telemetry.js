// Sends telemetry from the device of IOTHUB_DEVICE_CONNECTION_STRING with the official Node
// device SDK (azure-iot-device-mqtt): COUNT messages {"node": i} with message id PREFIX-i,
// content type application/json, encoding utf-8 and the property source=node, each
// acknowledged by the hub; then closes. Used by eventhub_check.py.
// Usage: node send_telemetry.js COUNT PREFIX
'use strict';

const fs = require('fs');
const { Client, Message } = require('azure-iot-device');
const { Mqtt } = require('azure-iot-device-mqtt');

async function main() {
  const count = Number(process.argv[2] || 2);
  const prefix = process.argv[3] || 'node';
  const device = Client.fromConnectionString(process.env.IOTHUB_DEVICE_CONNECTION_STRING, Mqtt);
  device.setOptions({ ca: fs.readFileSync(process.env.IOTHUB_CA_CERT, 'utf8') });
  await device.open();
  for (let i = 0; i < count; i++) {
    const m = new Message(JSON.stringify({ node: i }));
    m.messageId = `${prefix}-${i}`;
    m.contentType = 'application/json';
    m.contentEncoding = 'utf-8';
    m.properties.add('source', 'node');
    await device.sendEvent(m);
    console.log(`sent ${prefix}-${i}`);
  }
  await device.close();
}

main().then(() => process.exit(0), (e) => { console.error(e); process.exit(1); });
