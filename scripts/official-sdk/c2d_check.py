"""Cloud-to-device over AMQP with the official SDKs: azure-iot-hub 2.7
(`IoTHubRegistryManager.send_c2d_message`, uamqp on port 5671 with SASL MSSBCBS and a CBS
put-token) sends to the official Python device SDK (MQTT), which must receive the body and the
application property, and then to this workspace's device client (the `receive_c2d` example,
found in $PATH_EXAMPLES); a send to an unknown device must raise. With the argument `ws` the
service uses AMQP over WebSockets (`TransportType.AmqpOverWebsocket`: port 443, uamqp's path
`/$servicebus/websocket/`, sub-protocol AMQPWSB10).

uamqp trusts only certifi's bundle, so this script appends the emulator's CA to a copy of it and
points `certifi.where` at the copy before the service SDK is imported.

Environment: IOTHUB_CONNECTION_STRING, IOTHUB_DEVICE_CONNECTION_STRING, IOTHUB_DEVICE_ID,
IOTHUB_CA_CERT.
"""

import json
import os
import queue
import subprocess
import sys
import tempfile

import certifi
import logging
logging.basicConfig(level=os.environ.get("C2D_LOG", "WARNING"))

CA = open(os.environ["IOTHUB_CA_CERT"]).read()
bundle = os.path.join(tempfile.mkdtemp(), "cacert.pem")
with open(bundle, "w") as f:
    f.write(open(certifi.where()).read() + "\n" + CA)
certifi.where = lambda: bundle

from azure.iot.device import IoTHubDeviceClient  # noqa: E402
from azure.iot.hub import IoTHubRegistryManager  # noqa: E402
from uamqp import TransportType  # noqa: E402

DEVICE_ID = os.environ.get("IOTHUB_DEVICE_ID", "myDevice")
received = queue.Queue(maxsize=16)

device = IoTHubDeviceClient.create_from_connection_string(
    os.environ["IOTHUB_DEVICE_CONNECTION_STRING"], server_verification_cert=CA
)
device.on_message_received = received.put
device.connect()
failed = 0
try:
    over_ws = sys.argv[1:] == ["ws"]
    transport = TransportType.AmqpOverWebsocket if over_ws else TransportType.Amqp
    registry = IoTHubRegistryManager.from_connection_string(
        os.environ["IOTHUB_CONNECTION_STRING"], transport_type=transport
    )
    registry.send_c2d_message(DEVICE_ID, "hello over amqp", {"myprop": "v1", "messageId": "py-c2d-1"})
    # A message an earlier check left undelivered (its device closed before acknowledging it)
    # may come first: skip to this one, a bounded number of times.
    for _ in range(8):
        msg = received.get(timeout=60)
        if msg.message_id == "py-c2d-1":
            break
    body = msg.data.decode() if isinstance(msg.data, bytes) else msg.data
    if body == "hello over amqp" and msg.custom_properties.get("myprop") == "v1" and msg.message_id == "py-c2d-1":
        print("PASS send_c2d_message delivered to the device with myprop=v1 and the message id", flush=True)
    else:
        failed += 1
        print("FAIL device got body=%r props=%r mid=%r" % (body, msg.custom_properties, msg.message_id), flush=True)
    try:
        registry.send_c2d_message("no-such-device", "x")
        failed += 1
        print("FAIL send_c2d_message to an unknown device did not raise", flush=True)
    except Exception as e:  # azure-iot-hub raises a bare Exception("C2D message send failure")
        print("PASS send_c2d_message to an unknown device raised: %s" % e, flush=True)
    # Closed here rather than at interpreter exit, where uamqp's destructor finds logging gone.
    del registry
finally:
    device.shutdown()


def to_rust_device():
    """The same send, received by this workspace's device client (the `receive_c2d` example)."""
    example = os.path.join(os.environ["PATH_EXAMPLES"], "receive_c2d")
    rust = subprocess.Popen([example, "8"], stdout=subprocess.PIPE, text=True)
    try:
        if rust.stdout.readline().strip() != "ready":
            print("FAIL the rust device did not subscribe", flush=True)
            return 1
        registry = IoTHubRegistryManager.from_connection_string(
            os.environ["IOTHUB_CONNECTION_STRING"], transport_type=transport
        )
        registry.send_c2d_message(DEVICE_ID, "hello rust", {"myprop": "v2", "messageId": "py-c2d-rs"})
        del registry
        got = {}
        for _ in range(8):  # as above: skip a message an earlier run left behind
            got = json.loads(rust.stdout.readline() or "{}")
            if got.get("message_id") in ("py-c2d-rs", None):
                break
        if got.get("body") == "hello rust" and got.get("properties", {}).get("myprop") == "v2" and got.get("message_id") == "py-c2d-rs":
            print("PASS send_c2d_message delivered to the rust device client with myprop=v2 and the message id", flush=True)
            return 0
        print("FAIL the rust device got %r" % got, flush=True)
        return 1
    finally:
        rust.kill()
        rust.wait(timeout=30)


failed += to_rust_device()
sys.exit(1 if failed else 0)
