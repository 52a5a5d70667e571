"""Service side of the restart checks in run.sh, with the standard library only (so that what
is checked is the hub's REST answer, not a client's retry policy).

Usage: restart_service.py method WHEN   invokes `ping` on the device until it answers 200
                                        (at most 150 s: the SDK reconnects on its own schedule)
       restart_service.py c2d BODY      queues a cloud-to-device message (emulator endpoint)

Environment: IOTHUB_CONNECTION_STRING, IOTHUB_DEVICE_ID, IOTHUB_CA_CERT.
"""

import base64
import hashlib
import hmac
import json
import os
import ssl
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

parts = dict(p.split("=", 1) for p in os.environ["IOTHUB_CONNECTION_STRING"].split(";"))
host = parts["HostName"]
device_id = os.environ.get("IOTHUB_DEVICE_ID", "myDevice")
ctx = ssl.create_default_context(cafile=os.environ["IOTHUB_CA_CERT"])


def token():
    expiry = int(time.time()) + 3600
    resource = urllib.parse.quote(host, safe="")
    sig = hmac.new(base64.b64decode(parts["SharedAccessKey"]), ("%s\n%d" % (resource, expiry)).encode(), hashlib.sha256)
    signature = urllib.parse.quote(base64.b64encode(sig.digest()).decode(), safe="")
    return "SharedAccessSignature sr=%s&sig=%s&se=%d&skn=%s" % (resource, signature, expiry, parts["SharedAccessKeyName"])


def call(path, body):
    url = "https://%s%s?api-version=2021-04-12" % (host, path)
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method="POST", headers={"Authorization": token(), "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, context=ctx, timeout=40) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


if sys.argv[1] == "method":
    deadline = time.time() + 150
    while True:
        status, body = call("/twins/%s/methods" % device_id, {"methodName": "ping", "payload": {}, "responseTimeoutInSeconds": 20})
        if status == 200 and json.loads(body).get("payload", {}).get("pong") is True:
            print("PASS method answered 200 %s" % sys.argv[2], flush=True)
            sys.exit(0)
        if time.time() > deadline:
            print("FAIL method %s: %s %s" % (sys.argv[2], status, body[:200]), flush=True)
            sys.exit(1)
        time.sleep(2)
elif sys.argv[1] == "c2d":
    status, body = call("/emulator/devices/%s/messages" % device_id, sys.argv[2].encode())
    print(("PASS" if 200 <= status < 300 else "FAIL") + " c2d queued: %s" % status, flush=True)
    sys.exit(0 if 200 <= status < 300 else 1)
