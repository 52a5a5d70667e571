"""The device-management tutorial with the official Python SDKs, against the emulator.

Usage: tutorial_check.py [both|device|service]
  both     Python device and Python service (default)
  device   only the Python device; prints "device ready" and runs until killed
  service  only the Python service checks, against a device run by someone else

Device side: azure-iot-device answers `rebootDevice` (patches `rebootTime`, replies 200) and
unknown methods with 404. Service side: azure-iot-hub invokes it, reads the twin until
`rebootTime` is there, queries twins, and checks the hub's answers for an unknown device, an
offline device, a wrong key and an unknown method.

Environment: IOTHUB_CONNECTION_STRING, IOTHUB_DEVICE_CONNECTION_STRING, IOTHUB_DEVICE_ID,
IOTHUB_CA_CERT (the emulator's CA; also given to `requests` through REQUESTS_CA_BUNDLE).
Exits non-zero on the first failed check.
"""

import datetime
import os
import sys
import time

from azure.iot.device import IoTHubDeviceClient, MethodResponse
from azure.iot.hub import IoTHubRegistryManager
from azure.iot.hub.models import CloudToDeviceMethod, QuerySpecification

SERVICE_CS = os.environ["IOTHUB_CONNECTION_STRING"]
DEVICE_CS = os.environ["IOTHUB_DEVICE_CONNECTION_STRING"]
DEVICE_ID = os.environ.get("IOTHUB_DEVICE_ID", "myDevice")
CA = open(os.environ["IOTHUB_CA_CERT"]).read()

failures = []
passes = []


def check(name, ok, detail=""):
    print(("PASS " if ok else "FAIL ") + name + (": " + str(detail) if detail else ""), flush=True)
    (passes if ok else failures).append(name)


def status_of(exc):
    response = getattr(exc, "response", None)
    return getattr(response, "status_code", None), (response.headers.get("iothub-errorcode") if response is not None else None)


MODE = sys.argv[1] if len(sys.argv) > 1 else "both"
device = IoTHubDeviceClient.create_from_connection_string(DEVICE_CS, server_verification_cert=CA) if MODE != "service" else None


def on_method(request):
    if request.name == "rebootDevice":
        now = datetime.datetime.now(datetime.timezone.utc).isoformat()
        device.patch_twin_reported_properties({"rebootTime": now})
        device.send_method_response(MethodResponse.create_from_method_request(request, 200, {"rebooted": True, "rebootTime": now}))
    else:
        device.send_method_response(MethodResponse.create_from_method_request(request, 404, {"error": "unknown method " + request.name}))


if device is not None:
    device.on_method_request_received = on_method
    device.connect()
    twin = device.get_twin()
    check("device twin GET has desired and reported", "desired" in twin and "reported" in twin, twin)
    if MODE == "device":
        print("device ready", flush=True)
        time.sleep(600)
        sys.exit(0)

registry = IoTHubRegistryManager.from_connection_string(SERVICE_CS)
result = registry.invoke_device_method(DEVICE_ID, CloudToDeviceMethod(method_name="rebootDevice", payload={"delay": 1}, response_timeout_in_seconds=30))
check("rebootDevice answered 200", result.status == 200, result.status)
check("rebootDevice payload", isinstance(result.payload, dict) and result.payload.get("rebooted") is True, result.payload)

reboot_time = None
for _ in range(50):
    t = registry.get_twin(DEVICE_ID)
    reboot_time = (t.properties.reported or {}).get("rebootTime")
    if reboot_time:
        break
    time.sleep(0.1)
check("service sees rebootTime in the twin", reboot_time is not None, reboot_time)

rows = registry.query_iot_hub(QuerySpecification(query="SELECT * FROM devices WHERE deviceId = '%s'" % DEVICE_ID))
items = rows.items
check("twin query returns the device", len(items) == 1 and items[0].device_id == DEVICE_ID, [i.device_id for i in items])
check("twin query shows rebootTime", bool(items and items[0].properties.reported.get("rebootTime")))

unknown = registry.invoke_device_method(DEVICE_ID, CloudToDeviceMethod(method_name="noSuchMethod", payload=None, response_timeout_in_seconds=10))
check("unknown method answered 404 by the device", unknown.status == 404, unknown.status)

try:
    registry.invoke_device_method("no-such-device", CloudToDeviceMethod(method_name="rebootDevice", payload={}))
    check("unknown device is refused", False)
except Exception as e:  # msrest HttpOperationError
    code = status_of(e)
    check("unknown device is 404 DeviceNotFound", code == (404, "DeviceNotFound"), code)

try:
    registry.delete_device("offlineDevice")
except Exception:
    pass
registry.create_device_with_sas("offlineDevice", None, None, "enabled")
try:
    registry.invoke_device_method("offlineDevice", CloudToDeviceMethod(method_name="rebootDevice", payload={}))
    check("offline device is refused", False)
except Exception as e:
    code = status_of(e)
    check("offline device is 404 DeviceNotOnline", code == (404, "DeviceNotOnline"), code)

parts = dict(p.split("=", 1) for p in SERVICE_CS.split(";"))
wrong = "HostName=%s;SharedAccessKeyName=%s;SharedAccessKey=%s" % (parts["HostName"], parts["SharedAccessKeyName"], "d3JvbmctZGV2ZWxvcG1lbnQta2V5LTAwMDAwMDAwMDA=")
try:
    IoTHubRegistryManager.from_connection_string(wrong).get_twin(DEVICE_ID)
    check("wrong key is refused", False)
except Exception as e:
    code = status_of(e)
    check("wrong key is 401", code[0] == 401, code)

if device is not None:
    device.shutdown()
print("%d passed, %d failed" % (len(passes), len(failures)))
sys.exit(1 if failures else 0)
