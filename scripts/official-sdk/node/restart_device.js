// A long-running official Node device (azure-iot-device-mqtt) for the restart checks in run.sh.
// Answers the direct method `ping` 200 {pong: true} ("method ping"), prints "c2d BODY" for each
// cloud-to-device message (and completes it), and patches reported {tick: n} every second,
// printing "reported acked n" once the hub acknowledged it. Prints "device ready" once connected.
// Runs until killed and never re-creates its client.
// Environment: IOTHUB_DEVICE_CONNECTION_STRING, IOTHUB_CA_CERT.
'use strict';
const fs = require('fs');
const { Client: DeviceClient } = require('azure-iot-device');
const { Mqtt } = require('azure-iot-device-mqtt');

async function main() {
  const device = DeviceClient.fromConnectionString(process.env.IOTHUB_DEVICE_CONNECTION_STRING, Mqtt);
  device.setOptions({ ca: fs.readFileSync(process.env.IOTHUB_CA_CERT, 'utf8') });
  device.on('error', (e) => console.log('device error: ' + e));
  device.on('message', (msg) => {
    console.log('c2d ' + msg.data.toString());
    device.complete(msg, () => {});
  });
  await device.open();
  device.onDeviceMethod('ping', (request, response) => {
    console.log('method ping');
    response.send(200, { pong: true }, () => {});
  });
  const twin = await device.getTwin();
  console.log('device ready');
  for (let n = 1; n <= 3600; n++) { // bounded: an hour at most
    await new Promise((resolve) => {
      twin.properties.reported.update({ tick: n }, (err) => {
        console.log(err ? `reported failed ${n}: ${err}` : `reported acked ${n}`);
        resolve();
      });
    });
    await new Promise((r) => setTimeout(r, 1000));
  }
}

main().catch((e) => { console.log('device failed: ' + e); process.exit(1); });
