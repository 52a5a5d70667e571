"""Seeds a small fleet with the official Python service SDK and writes what its
`query_iot_hub` returns for each query in queries.txt (pages of 2, following continuation
tokens) as normalized JSON lines, for comparison with this workspace's `query`.

Usage: query_check.py OUT_FILE
"""

import json
import os
import sys

from azure.iot.hub import IoTHubRegistryManager
from azure.iot.hub.models import QuerySpecification, Twin, TwinProperties

registry = IoTHubRegistryManager.from_connection_string(os.environ["IOTHUB_CONNECTION_STRING"])
fleet = {
    "fleet-a": {"region": "US", "floor": 1},
    "fleet-b": {"region": "EU", "floor": 2},
    "fleet-c": {"region": "US", "floor": 3},
    "fleet-d": {"region": "APAC", "floor": 0},
    "fleet-e": {"region": "US"},
}
for device_id, tags in fleet.items():
    try:
        registry.create_device_with_sas(device_id, None, None, "enabled")
    except Exception:
        pass
    desired = {"mode": "eco"} if tags.get("floor", 0) % 2 == 1 else {"mode": "performance"}
    registry.update_twin(device_id, Twin(tags=tags, properties=TwinProperties(desired=desired)), "*")

here = os.path.dirname(os.path.abspath(__file__))
with open(os.path.join(here, "queries.txt")) as f, open(sys.argv[1], "w") as out:
    for sql in (line.strip() for line in f):
        if not sql:
            continue
        rows, token = [], None
        while True:
            page = registry.query_iot_hub(QuerySpecification(query=sql), continuation_token=token, max_item_count=2)
            rows.extend({"deviceId": t.device_id, "tags": t.tags or {}} for t in page.items)
            token = page.continuation_token
            if not token:
                break
        out.write(json.dumps({"query": sql, "rows": rows}, sort_keys=True) + "\n")
print("python queries written")
