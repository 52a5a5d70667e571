"""The official Python SDKs under the same measurements as benches/src/bin/e2e.rs.

  bench.py roundtrip N   python device + python service, N sequential rebootDevice-style calls
  bench.py fleet K       K python device clients connected in this process

Environment: IOTHUB_CONNECTION_STRING, IOTHUB_CA_CERT, BENCH_DEVICE_KEY, BENCH_HOST.
Prints one JSON line.
"""

import json
import os
import sys
import threading
import time

from azure.iot.device import IoTHubDeviceClient, MethodResponse
from azure.iot.hub import IoTHubRegistryManager
from azure.iot.hub.models import CloudToDeviceMethod

CA = open(os.environ["IOTHUB_CA_CERT"]).read()
KEY = os.environ["BENCH_DEVICE_KEY"]


def rss_kb():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def device(device_id):
    cs = "HostName=localhost;DeviceId=%s;SharedAccessKey=%s" % (device_id, KEY)
    return IoTHubDeviceClient.create_from_connection_string(cs, server_verification_cert=CA)


def percentiles(samples):
    samples.sort()
    def at(q):
        rank = max(1, min(len(samples), int(-(-q * len(samples) // 1))))
        return samples[rank - 1] * 1000.0
    return {"count": len(samples), "p50_ms": at(0.5), "p90_ms": at(0.9), "p99_ms": at(0.99), "max_ms": samples[-1] * 1000.0}


def roundtrip(n):
    d = device("rt-0")
    def handler(req):
        d.send_method_response(MethodResponse.create_from_method_request(req, 200, req.payload))
    d.on_method_request_received = handler
    d.connect()
    registry = IoTHubRegistryManager.from_connection_string(os.environ["IOTHUB_CONNECTION_STRING"])
    for i in range(50):
        registry.invoke_device_method("rt-0", CloudToDeviceMethod(method_name="echo", payload={"i": i}, response_timeout_in_seconds=30))
    samples = []
    for i in range(n):
        t = time.perf_counter()
        r = registry.invoke_device_method("rt-0", CloudToDeviceMethod(method_name="echo", payload={"i": i}, response_timeout_in_seconds=30))
        samples.append(time.perf_counter() - t)
        assert r.status == 200
    d.shutdown()
    return percentiles(samples)


def fleet(k):
    before = rss_kb()
    threads_before = threading.active_count()
    clients = []
    t = time.perf_counter()
    for i in range(k):
        c = device("fleet-%d" % i)
        c.connect()
        clients.append(c)
    elapsed = time.perf_counter() - t
    after = rss_kb()
    result = {"clients": k, "connect_all_s": elapsed, "rss_per_client_kb": (after - before) / k,
              "threads_per_client": (threading.active_count() - threads_before) / k}
    for c in clients:
        c.shutdown()
    return result


if __name__ == "__main__":
    mode, n = sys.argv[1], int(sys.argv[2])
    print(json.dumps(roundtrip(n) if mode == "roundtrip" else fleet(n)))
