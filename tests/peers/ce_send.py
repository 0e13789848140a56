#!/usr/bin/env python3
"""An independent CloudEvents sender: the official Python SDK (cloudevents 2.x) encoding the request.

Usage: ce_send.py URL binary|structured EVENT_JSON
EVENT_JSON is {"attributes": {...}, "data": ...}; `time` may be an RFC 3339 string.
Prints one JSON line: {"status": N, "body": "...", "sent_headers": {...}}.
"""
import http.client
import json
import sys
from datetime import datetime
from urllib.parse import urlsplit

from cloudevents.core.bindings.http import to_binary_event, to_structured_event
from cloudevents.core.v1.event import CloudEvent


def main() -> None:
    url, mode, spec = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
    attributes = dict(spec["attributes"])
    if isinstance(attributes.get("time"), str):
        attributes["time"] = datetime.fromisoformat(attributes["time"].replace("Z", "+00:00"))
    event = CloudEvent(attributes=attributes, data=spec.get("data"))
    message = to_binary_event(event) if mode == "binary" else to_structured_event(event)
    # http.client sends exactly the SDK's headers (urllib would add a form Content-Type).
    target = urlsplit(url)
    conn = http.client.HTTPConnection(target.hostname, target.port or 80, timeout=10)
    conn.request("POST", target.path or "/", body=message.body, headers=message.headers)
    response = conn.getresponse()
    status, body = response.status, response.read().decode()
    conn.close()
    print(json.dumps({"status": status, "body": body, "sent_headers": dict(message.headers)}), flush=True)


if __name__ == "__main__":
    main()
