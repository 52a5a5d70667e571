"""Telemetry through the Event Hub-compatible endpoint with the official SDKs: the official
Python device SDK (azure-iot-device, MQTT), the official Node device SDK (azure-iot-device-mqtt,
`node/send_telemetry.js`) and this workspace's device client (the `send_telemetry` example) send
telemetry with properties; azure-eventhub 5.15's
`EventHubConsumerClient`, given the emulator's Event Hub-compatible connection string and its CA
(`connection_verify=`), must receive every message with its body, application properties, message
id, content type and the hub's annotations, from the start (`-1`) and, for a second round, from
an enqueued time (which must leave out the first round).

Environment: IOTHUB_EVENTHUB_CONNECTION_STRING, IOTHUB_DEVICE_CONNECTION_STRING,
IOTHUB_DEVICE_ID, IOTHUB_CA_CERT, PATH_EXAMPLES.
"""

import datetime
import json
import os
import shutil
import subprocess
import sys
import threading
import time

from azure.eventhub import EventHubConsumerClient
from azure.iot.device import IoTHubDeviceClient, Message

CA = os.environ["IOTHUB_CA_CERT"]
DEVICE_ID = os.environ.get("IOTHUB_DEVICE_ID", "myDevice")
EXAMPLE = os.path.join(os.environ["PATH_EXAMPLES"], "send_telemetry")
# The official Node device SDK sends a third pair when its packages are installed (run.sh).
HERE = os.path.dirname(os.path.abspath(__file__))
NODE_SENDER = os.path.join(HERE, "node", "send_telemetry.js")
if not (os.path.isdir(os.path.join(HERE, "node", "node_modules")) and shutil.which("node")):
    print("(node or its packages missing: the Node device SDK's telemetry is not checked)")
    NODE_SENDER = None
failed = 0


def check(ok, what):
    global failed
    if not ok:
        failed += 1
    print(("PASS " if ok else "FAIL ") + what, flush=True)


def send_round(device, tag):
    """Two messages from the Python device and two from the Rust one; returns their ids."""
    ids = []
    device.connect()
    for i in range(2):
        m = Message(json.dumps({"py": i}), message_id="py-%s-%d" % (tag, i),
                    content_encoding="utf-8", content_type="application/json")
        m.custom_properties["source"] = "python"
        device.send_message(m)
        ids.append("py-%s-%d" % (tag, i))
    # Both clients are the same device: one connection at a time, or the hub drops the older.
    device.disconnect()
    subprocess.run([EXAMPLE, "2", "rs-" + tag], check=True, timeout=60, stdout=subprocess.DEVNULL)
    ids += ["rs-%s-0" % tag, "rs-%s-1" % tag]
    if NODE_SENDER:
        subprocess.run(["node", NODE_SENDER, "2", "node-" + tag], check=True, timeout=60,
                       stdout=subprocess.DEVNULL)
        ids += ["node-%s-0" % tag, "node-%s-1" % tag]
    return ids


def receive(starting_position, want, wait=60):
    """Events received on every partition from `starting_position` until every id in `want`
    arrived (or `wait` seconds passed), plus one more second to see extras: {message id: event}."""
    client = EventHubConsumerClient.from_connection_string(
        os.environ["IOTHUB_EVENTHUB_CONNECTION_STRING"], consumer_group="$Default",
        connection_verify=CA)
    got = {}
    lock = threading.Lock()

    def on_event(_ctx, event):
        if event is not None:
            mid = event.system_properties.get(b"message-id")
            mid = mid.decode() if isinstance(mid, bytes) else str(mid)
            with lock:
                got[mid] = event

    t = threading.Thread(target=client.receive, daemon=True,
                         kwargs={"on_event": on_event, "starting_position": starting_position})
    t.start()
    deadline = time.time() + wait
    while time.time() < deadline:
        with lock:
            if all(w in got for w in want):
                break
        time.sleep(0.2)
    time.sleep(1)
    client.close()
    t.join(10)
    return got


device = IoTHubDeviceClient.create_from_connection_string(
    os.environ["IOTHUB_DEVICE_CONNECTION_STRING"], server_verification_cert=open(CA).read())
try:
    client = EventHubConsumerClient.from_connection_string(
        os.environ["IOTHUB_EVENTHUB_CONNECTION_STRING"], consumer_group="$Default",
        connection_verify=CA)
    ids = client.get_partition_ids()
    check(ids == ["0", "1", "2", "3"], "get_partition_ids() == %r" % ids)
    props = client.get_eventhub_properties()
    check(props["eventhub_name"] and props["partition_ids"] == ids,
          "get_eventhub_properties() = %r" % props)
    client.close()

    first = send_round(device, "a")
    got = receive("-1", first)
    check(all(i in got for i in first), "from the start: received %s of %s" % (sorted(got), first))
    for mid in first:
        e = got.get(mid)
        if e is None:
            continue
        sp = e.system_properties
        source = {"py": b"python", "rs": b"rust", "node": b"node"}[mid.split("-")[0]]
        body = json.loads(e.body_as_str())
        ok = (sp.get(b"iothub-connection-device-id") == DEVICE_ID.encode()
              and sp.get(b"iothub-message-source") == b"Telemetry"
              and sp.get(b"content-type") == b"application/json"
              and e.properties.get(b"source") == source
              and isinstance(e.sequence_number, int) and e.offset is not None
              and e.enqueued_time is not None and isinstance(body, dict))
        check(ok, "%s: device id, message source, content type, property source=%s, body %s, "
              "sequence number %s, offset %s" % (mid, source.decode(), body, e.sequence_number, e.offset))

    # A second round after a cut-off time: reading from that time must skip the first round.
    time.sleep(0.5)
    cut = datetime.datetime.now(datetime.timezone.utc)
    time.sleep(0.5)
    second = send_round(device, "b")
    got = receive(cut, second)
    check(all(i in got for i in second), "from %s: received the second round %s" % (cut.isoformat(), second))
    check(not any(i in got for i in first), "from %s: none of the first round (got %s)" % (cut.isoformat(), sorted(got)))
finally:
    device.shutdown()
sys.exit(1 if failed else 0)
