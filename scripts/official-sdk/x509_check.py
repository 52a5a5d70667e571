"""X.509 devices with the official Python SDKs against the emulator.

azure-iot-hub registers a selfSigned device (by thumbprint) and a certificateAuthority device;
azure-iot-device's IoTHubDeviceClient connects to each with its certificate and no SAS, and
answers `rebootDevice`. A device presenting another device's certificate, and a CA-signed leaf
whose CN is not the device id, are refused. Then ProvisioningDeviceClient registers with X.509
(an individual enrollment listing the device's certificate, and a group whose signing
certificate is the device CA) and the assigned device connects with the same certificate.
The selfSigned device also runs over MQTT over WebSockets (port 443).

Certificates are made with the openssl command. The device CA is the one the emulator was
started with (`--device-ca`): DEVICE_CA_CERT and DEVICE_CA_KEY name its files.

Environment (printed by the emulator): IOTHUB_CONNECTION_STRING, IOTHUB_DPS_CONNECTION_STRING,
IOTHUB_DPS_ID_SCOPE, IOTHUB_DPS_ENDPOINT, IOTHUB_CA_CERT; plus DEVICE_CA_CERT, DEVICE_CA_KEY.
"""

import base64
import datetime
import hashlib
import hmac
import os
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.parse

import requests
from azure.iot.device import IoTHubDeviceClient, MethodResponse, ProvisioningDeviceClient, X509
from azure.iot.hub import IoTHubRegistryManager
from azure.iot.hub.models import CloudToDeviceMethod

CA = open(os.environ["IOTHUB_CA_CERT"]).read()
HUB_CS = dict(p.split("=", 1) for p in os.environ["IOTHUB_CONNECTION_STRING"].split(";"))
HOST = HUB_CS["HostName"].split(":")[0]
SCOPE = os.environ["IOTHUB_DPS_ID_SCOPE"]
ENDPOINT = os.environ["IOTHUB_DPS_ENDPOINT"]
DEVICE_CA_CERT = os.environ["DEVICE_CA_CERT"]
DEVICE_CA_KEY = os.environ["DEVICE_CA_KEY"]
registry = IoTHubRegistryManager.from_connection_string(os.environ["IOTHUB_CONNECTION_STRING"])
DPS = dict(p.split("=", 1) for p in os.environ["IOTHUB_DPS_CONNECTION_STRING"].split(";"))
work = tempfile.mkdtemp()

failures = []


def check(name, ok, detail=""):
    print(("PASS " if ok else "FAIL ") + name + (": " + str(detail) if detail else ""), flush=True)
    if not ok:
        failures.append(name)


def enrollment_api(method, path, body=None):
    """The enrollment service API, signed by provisioningserviceowner (as in dps_check.py)."""
    expiry = int(time.time()) + 3600
    sr = urllib.parse.quote(DPS["HostName"], safe="")
    sig = base64.b64encode(hmac.new(base64.b64decode(DPS["SharedAccessKey"]), ("%s\n%d" % (sr, expiry)).encode(), hashlib.sha256).digest()).decode()
    token = "SharedAccessSignature sr=%s&sig=%s&se=%d&skn=%s" % (sr, urllib.parse.quote(sig, safe=""), expiry, DPS["SharedAccessKeyName"])
    url = "https://%s/%s?api-version=2021-10-01" % (DPS["HostName"], path)
    r = requests.request(method, url, json=body, verify=os.environ["IOTHUB_CA_CERT"], headers={"Authorization": token}, timeout=30)
    r.raise_for_status()
    return r.json()


def openssl(*args):
    subprocess.run(["openssl", *args], check=True, capture_output=True)


def leaf(cn, signed_by_ca):
    """A P-256 certificate with subject CN `cn`: self-signed, or signed by the device CA (the
    file then holds the CA too, as a device sends its chain). Returns (cert file, key file)."""
    key, csr, cert = (os.path.join(work, cn + ext) for ext in (".key", ".csr", ".pem"))
    if signed_by_ca:
        # Extensions make it a v3 certificate: `x509 -req` without them writes v1, which
        # rustls/webpki (and so the emulator) cannot parse.
        ext = os.path.join(work, cn + ".ext")
        with open(ext, "w") as f:
            f.write("basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\n")
        openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                "-keyout", key, "-out", csr, "-subj", "/CN=" + cn)
        openssl("x509", "-req", "-in", csr, "-CA", DEVICE_CA_CERT, "-CAkey", DEVICE_CA_KEY,
                "-CAcreateserial", "-out", cert, "-days", "30", "-extfile", ext)
        with open(cert, "a") as f:
            f.write(open(DEVICE_CA_CERT).read())
    else:
        openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                "-keyout", key, "-out", cert, "-subj", "/CN=" + cn, "-days", "30")
    return cert, key


def first_pem(cert_file):
    text = open(cert_file).read()
    end = "-----END CERTIFICATE-----"
    return text[: text.index(end) + len(end)] + "\n"


def thumbprint(cert_file):
    return hashlib.sha256(ssl.PEM_cert_to_DER_cert(first_pem(cert_file))).hexdigest().upper()


def device_client(device_id, cert, websockets=False):
    return IoTHubDeviceClient.create_from_x509_certificate(
        x509=X509(cert_file=cert[0], key_file=cert[1]), hostname=HOST, device_id=device_id,
        server_verification_cert=CA, websockets=websockets)


def answers_reboot(name, device_id, cert, websockets=False):
    device = device_client(device_id, cert, websockets)

    def on_method(request):
        now = datetime.datetime.now(datetime.timezone.utc).isoformat()
        device.patch_twin_reported_properties({"rebootTime": now})
        device.send_method_response(MethodResponse.create_from_method_request(request, 200, {"rebooted": True}))

    before = (registry.get_twin(device_id).properties.reported or {}).get("rebootTime")
    device.on_method_request_received = on_method
    device.connect()
    device.send_message("hello from " + device_id)
    answer = registry.invoke_device_method(device_id, CloudToDeviceMethod(method_name="rebootDevice", payload={}, response_timeout_in_seconds=30))
    check(name + ": X.509 device answers rebootDevice 200", answer.status == 200, answer.status)
    reboot_time = None
    for _ in range(50):
        reboot_time = (registry.get_twin(device_id).properties.reported or {}).get("rebootTime")
        if reboot_time and reboot_time != before:
            break
        time.sleep(0.1)
    check(name + ": rebootTime reported", reboot_time is not None and reboot_time != before, reboot_time)
    device.shutdown()


def refused(name, device_id, cert):
    device = device_client(device_id, cert)
    device.connection_retry = False
    try:
        device.connect()
        check(name, False, "connected")
        device.shutdown()
    except Exception as e:  # CredentialError / ConnectionFailedError, depending on the stage
        check(name, True, type(e).__name__)


# 1. selfSigned, by SHA-256 thumbprint.
self_cert = leaf("py-x509-self", signed_by_ca=False)
registry.create_device_with_x509("py-x509-self", thumbprint(self_cert[0]), None, "enabled")
device = registry.get_device("py-x509-self")
check("selfSigned: registry returns the type and thumbprint",
      device.authentication.type == "selfSigned"
      and device.authentication.x509_thumbprint.primary_thumbprint == thumbprint(self_cert[0]),
      device.authentication.type)
answers_reboot("selfSigned", "py-x509-self", self_cert)
answers_reboot("selfSigned over WebSockets", "py-x509-self", self_cert, websockets=True)

# 2. certificateAuthority, a leaf with CN = device id signed by the device CA.
registry.create_device_with_certificate_authority("py-x509-ca", "enabled")
ca_cert = leaf("py-x509-ca", signed_by_ca=True)
answers_reboot("certificateAuthority", "py-x509-ca", ca_cert)

# 3. Refusals: another device's certificate, and a CA-signed leaf with another CN.
refused("another device's certificate is refused", "py-x509-self", ca_cert)
registry.create_device_with_certificate_authority("py-x509-ca-2", "enabled")
refused("a CA-signed leaf whose CN is not the device id is refused", "py-x509-ca-2", ca_cert)

# 4. DPS: an individual enrollment listing the device's certificate.
dps_self = leaf("py-dps-x509", signed_by_ca=False)
enrollment_api("PUT", "enrollments/py-dps-x509", {"registrationId": "py-dps-x509", "attestation": {
    "type": "x509", "x509": {"clientCertificates": {"primary": {"certificate": first_pem(dps_self[0])}}}}})


def register(registration_id, cert):
    client = ProvisioningDeviceClient.create_from_x509_certificate(
        provisioning_host=ENDPOINT, registration_id=registration_id, id_scope=SCOPE,
        x509=X509(cert_file=cert[0], key_file=cert[1]), server_verification_cert=CA)
    return client.register()


result = register("py-dps-x509", dps_self)
check("DPS individual X.509: register() assigned", result.status == "assigned", result.status)
check("DPS individual X.509: device id", result.registration_state.device_id == "py-dps-x509", result.registration_state.device_id)
answers_reboot("DPS individual X.509", result.registration_state.device_id, dps_self)

# 5. DPS: a group whose signing certificate is the device CA.
enrollment_api("PUT", "enrollmentGroups/py-grp-x509", {"enrollmentGroupId": "py-grp-x509", "attestation": {
    "type": "x509", "x509": {"signingCertificates": {"primary": {"certificate": open(DEVICE_CA_CERT).read()}}}}})
dps_ca = leaf("py-grp-x509-dev", signed_by_ca=True)
result = register("py-grp-x509-dev", dps_ca)
check("DPS group X.509: register() assigned", result.status == "assigned", result.status)
answers_reboot("DPS group X.509", result.registration_state.device_id, dps_ca)

print("%d failed" % len(failures))
sys.exit(1 if failures else 0)
