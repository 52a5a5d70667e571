#!/usr/bin/env bash
# Runs the tutorial flow with the official Python SDKs (azure-iot-device, azure-iot-hub, pinned
# in requirements.txt) against the emulator, in a private network namespace so that the
# emulator can own 8883 (the Python device SDK always dials it) and 443.
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
  cargo build -q -p iot-hub-emulator --manifest-path "$root/Cargo.toml"
  exec unshare -n "$0" --inside
fi

ip link set lo up
work="$(mktemp -d)"
trap 'kill "${emu_pid:-0}" 2>/dev/null || true; rm -rf "$work"' EXIT
"$root/target/debug/iot-hub-emulator" --mqtt-port 8883 --https-port 443 --cert-dir "$work/certs" \
  > "$work/emulator.log" 2>&1 &
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
status=0
timeout 180 "$venv/bin/python" "$here/tutorial_check.py" || status=$?
if [ "$status" != 0 ]; then
  echo "--- emulator log"; tail -50 "$work/emulator.log"
fi
exit "$status"
