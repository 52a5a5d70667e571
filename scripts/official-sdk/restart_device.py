"""A long-running official Python device (azure-iot-device) for the restart checks in run.sh.

Answers every direct method 200 {"pong": true} ("method NAME"), prints "c2d BODY" for each
cloud-to-device message, and patches reported {"tick": n} every second, printing
"reported acked n" once the hub acknowledged it. Prints "device ready" once connected. Runs until
killed and never re-creates its client: reconnecting is the SDK's own business.

Environment: IOTHUB_DEVICE_CONNECTION_STRING, IOTHUB_CA_CERT.
"""

import os
import time

from azure.iot.device import IoTHubDeviceClient, MethodResponse

device = IoTHubDeviceClient.create_from_connection_string(
    os.environ["IOTHUB_DEVICE_CONNECTION_STRING"],
    server_verification_cert=open(os.environ["IOTHUB_CA_CERT"]).read(),
)


def on_method(request):
    print("method " + request.name, flush=True)
    device.send_method_response(MethodResponse.create_from_method_request(request, 200, {"pong": True}))


def on_message(message):
    print("c2d " + message.data.decode(), flush=True)


device.on_method_request_received = on_method
device.on_message_received = on_message
device.connect()
print("device ready", flush=True)
n = 0
while n < 3600:  # bounded: an hour at most
    n += 1
    try:
        device.patch_twin_reported_properties({"tick": n})
        print("reported acked %d" % n, flush=True)
    except Exception as e:  # the connection is down: the next tick tries again
        print("reported failed %d: %r" % (n, e), flush=True)
    time.sleep(1)
