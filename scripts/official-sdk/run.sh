#!/usr/bin/env bash
# Runs the tutorial flow with the official Python SDKs (azure-iot-device, azure-iot-hub,
# azure-eventhub, pinned in requirements.txt) and, when Node is installed, the official Node SDKs (pinned in
# node/package-lock.json) against the emulator, each paired with this workspace's clients too,
# in a private network namespace so that the emulator can own 8883 (the SDKs' device clients
# always dial it), 443 (the Node service SDK takes no port in HostName) and 5671 (AMQP: uamqp
# always dials it).
# Usage: scripts/official-sdk/run.sh   (needs root for unshare; installs into a virtualenv)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
venv="${SDK_VENV:-$root/target/sdk-venv}"

if [ "${1:-}" != "--inside" ]; then
  if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
  fi
  "$venv/bin/pip" install -q --disable-pip-version-check -r "$here/requirements.txt"
  if command -v npm >/dev/null; then
    (cd "$here/node" && npm ci --no-audit --no-fund --loglevel=error)
  fi
  cargo build -q --manifest-path "$root/Cargo.toml" -p iot-hub-emulator
  cargo build -q --manifest-path "$root/Cargo.toml" -p iot-examples --examples
  exec unshare -n "$0" --inside
fi

ip link set lo up
work="$(mktemp -d)"
devices=()
trap 'kill "${emu_pid:-0}" "${devices[@]}" 2>/dev/null || true; rm -rf "$work"' EXIT
# The device CA that x509_check.py signs certificateAuthority devices' leaves with.
export DEVICE_CA_CERT="$work/device-ca.pem" DEVICE_CA_KEY="$work/device-ca.key"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 \
  -keyout "$DEVICE_CA_KEY" -out "$DEVICE_CA_CERT" -subj "/CN=Official SDK check device CA" \
  -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,digitalSignature" 2>/dev/null
"$root/target/debug/iot-hub-emulator" --mqtt-port 8883 --https-port 443 --amqp-port 5671 --cert-dir "$work/certs" \
  --device-ca "$DEVICE_CA_CERT" > "$work/emulator.log" 2>&1 &
emu_pid=$!
for _ in $(seq 1 100); do
  grep -q '^export IOTHUB_CA_CERT' "$work/emulator.log" 2>/dev/null && break
  sleep 0.1
done
if ! grep -q '^export IOTHUB_CA_CERT' "$work/emulator.log"; then
  cat "$work/emulator.log"; echo "emulator did not start"; exit 1
fi
eval "$(grep '^export ' "$work/emulator.log")"
export REQUESTS_CA_BUNDLE="$IOTHUB_CA_CERT"
export PATH_EXAMPLES="$root/target/debug/examples"
failed=0
run() { echo "== $1"; shift; if ! "$@"; then failed=$((failed + 1)); echo "FAILED: $*"; fi; }

wait_for() { # file pattern
  for _ in $(seq 1 200); do grep -q "$2" "$1" 2>/dev/null && return 0; sleep 0.1; done
  cat "$1"; return 1
}

# 1. Python device + Python service.
run "python device + python service" timeout 180 "$venv/bin/python" "$here/tutorial_check.py" both

# pairing NAME READY SIGNAL DEVICE SERVICE...: starts the DEVICE function in the background,
# waits for READY in its log, runs SERVICE as check NAME, then stops the device with SIGNAL.
pairing() {
  local name=$1 ready=$2 signal=$3 device=$4
  shift 4
  local log="$work/device-${#devices[@]}.log"
  "$device" > "$log" 2>&1 &
  local pid=$!
  devices+=("$pid")
  if wait_for "$log" "$ready"; then
    run "$name" "$@"
  else
    failed=$((failed + 1)); echo "FAILED: $name: the device did not start"
  fi
  kill "-$signal" "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true
}
# Device commands exec so that the background PID is the device itself.
py_device() { exec "$venv/bin/python" "$here/tutorial_check.py" device; }
rs_device() {
  export REBOOT_DELAY_MS=200
  exec "$PATH_EXAMPLES/dmpatterns_getstarted_device"
}
node_device() { exec node "$here/node/tutorial_check.js" device; }

# 2. Python device + this crate's service (the tutorial's service app).
pairing "python device + rust service" "device ready" TERM py_device \
  timeout 120 "$PATH_EXAMPLES/dmpatterns_getstarted_service"

# 3. This crate's device (the tutorial's device app) + Python service.
pairing "rust device + python service" "waiting for rebootDevice" INT rs_device \
  timeout 180 "$venv/bin/python" "$here/tutorial_check.py" service

# 4. The same queries through the official Python service SDK and through this crate.
compare_queries() {
  "$venv/bin/python" "$here/query_check.py" "$work/py-queries.jsonl" &&
    "$PATH_EXAMPLES/query_rows" "$here/queries.txt" > "$work/rs-queries.jsonl" &&
    python3 -c 'import json,sys; a=[json.loads(l) for l in open(sys.argv[1])]; b=[json.loads(l) for l in open(sys.argv[2])]; n=sum(len(x["rows"]) for x in a); print(n, "rows in all"); sys.exit(0 if a == b and n >= 20 else 1)' "$work/py-queries.jsonl" "$work/rs-queries.jsonl" &&
    echo "$(wc -l < "$work/py-queries.jsonl") queries: identical rows from azure-iot-hub and iot-service"
}
run "python query_iot_hub == rust query" compare_queries
checks=5
run "python ProvisioningDeviceClient (individual + group) + IoTHubDeviceClient" timeout 180 "$venv/bin/python" "$here/dps_check.py"
checks=$((checks + 2))
run "python X.509 IoTHubDeviceClient (selfSigned, CA) + ProvisioningDeviceClient X.509" timeout 180 "$venv/bin/python" "$here/x509_check.py"
checks=$((checks + 1))
run "python send_c2d_message (AMQP, CBS) + python device + rust device" timeout 120 "$venv/bin/python" "$here/c2d_check.py"
checks=$((checks + 1))
run "python EventHubConsumerClient reads telemetry of the python, node and rust devices" \
  timeout 240 "$venv/bin/python" "$here/eventhub_check.py"
run "python send_c2d_message (AMQP over WebSockets) + python device + rust device" timeout 120 "$venv/bin/python" "$here/c2d_check.py" ws
if [ "$failed" != 0 ] && [ -f "$work/rs-queries.jsonl" ]; then diff "$work/py-queries.jsonl" "$work/rs-queries.jsonl" | head -20; fi

# The official Node SDKs (azure-iot-device-mqtt, azure-iothub), when Node is installed.
if [ -d "$here/node/node_modules" ] && command -v node >/dev/null; then
  checks=$((checks + 6))
  export NODE_EXTRA_CA_CERTS="$IOTHUB_CA_CERT"
  run "node device + node service" timeout 120 node "$here/node/tutorial_check.js" both
  pairing "node device + rust service" "device ready" TERM node_device \
    timeout 120 "$PATH_EXAMPLES/dmpatterns_getstarted_service"
  pairing "rust device + node service" "waiting for rebootDevice" INT rs_device \
    timeout 120 node "$here/node/tutorial_check.js" service
  run "node provisioning device (MQTT, HTTPS) + provisioning service + device" \
    timeout 180 node "$here/node/dps_check.js"
  run "node provisioning device X.509 (individual, group) + X.509 device" \
    timeout 180 node "$here/node/dps_x509_check.js"
  run "node Client.send with full feedback (AMQP) + node device, getFeedbackReceiver" \
    timeout 150 node "$here/node/c2d_feedback_check.js" tls
  run "node Client.send with full feedback (AMQP over WebSockets, AmqpWs) + node device" \
    timeout 150 node "$here/node/c2d_feedback_check.js" ws
else
  echo "== node SDK checks skipped: node or npm not installed"
fi

# 8-9. Restart checks: an official device SDK, whose process is never restarted, stays with the
# hub across kill -9 and restart with --state. The hub is killed, comes back refusing devices
# (CONNACK 3) while a C2D message is queued, is killed again and comes back: the device must
# reconnect by itself, get the pending message, answer a method and have its reported patches
# acknowledged, all on the persistent MQTT session the hub stored.
start_emu() { # extra emulator arguments
  "$root/target/debug/iot-hub-emulator" --mqtt-port 8883 --https-port 443 --amqp-port 5671 --cert-dir "$work/certs" \
    --state "$work/state" "$@" >> "$work/emulator.log" 2>&1 &
  emu_pid=$!
  for _ in $(seq 1 100); do
    [ "$(grep -c '^export IOTHUB_CA_CERT' "$work/emulator.log")" -gt "$starts" ] && starts=$((starts + 1)) && return 0
    sleep 0.1
  done
  echo "emulator did not restart"; return 1
}
kill9_emu() { kill -9 "$emu_pid" 2>/dev/null || true; wait "$emu_pid" 2>/dev/null || true; }
seen_after() { # file first-line pattern: waits up to 150 s for pattern at or after first-line
  for _ in $(seq 1 1500); do tail -n "+$2" "$1" | grep -q "$3" && return 0; sleep 0.1; done
  echo "not seen after the restart: $3"; tail -20 "$1"; return 1
}
restart_check() { # NAME DEVICE_FUNCTION
  local name=$1 device=$2 log="$work/restart-$1.log" ok=0
  kill9_emu; rm -rf "$work/state"
  start_emu || return 1
  "$device" > "$log" 2>&1 &
  local pid=$!
  devices+=("$pid")
  seen_after "$log" 1 "reported acked 1" || ok=1
  "$venv/bin/python" "$here/restart_service.py" method "before the kill" || ok=1
  kill9_emu; start_emu --fault-refuse-connections 30 || ok=1
  "$venv/bin/python" "$here/restart_service.py" c2d "pending-$name" || ok=1
  kill9_emu
  local mark=$(($(wc -l < "$log") + 1))
  start_emu || ok=1
  "$venv/bin/python" "$here/restart_service.py" method "after the restart" || ok=1
  seen_after "$log" "$mark" "c2d pending-$name" && echo "PASS pending c2d delivered after the restart" || ok=1
  seen_after "$log" "$mark" "reported acked" && echo "PASS reported patch acknowledged after the restart" || ok=1
  kill -TERM "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true
  [ "$ok" = 0 ] || { echo "--- device log"; tail -30 "$log"; }
  return "$ok"
}
starts=1
py_restart_device() { exec "$venv/bin/python" "$here/restart_device.py"; }
node_restart_device() { exec node "$here/node/restart_device.js"; }
checks=$((checks + 1))
run "python device across kill -9 + restart with --state" restart_check python py_restart_device
if [ -d "$here/node/node_modules" ] && command -v node >/dev/null; then
  checks=$((checks + 1))
  run "node device across kill -9 + restart with --state" restart_check node node_restart_device
fi

if [ "$failed" != 0 ]; then
  echo "--- emulator log"; tail -50 "$work/emulator.log"
  echo "--- device logs"; cat "$work"/device-*.log 2>/dev/null | tail -40
fi
echo "official SDK checks: $((checks - failed)) passed, $failed failed"
exit "$failed"
