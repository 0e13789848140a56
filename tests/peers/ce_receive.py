#!/usr/bin/env python3
"""An independent CloudEvents receiver: the official Python SDK (cloudevents 2.x) decoding HTTP requests.

Prints `PORT <n>` once listening on 127.0.0.1, then one JSON line per request:
{"attributes": {...}, "data": ..., "headers": {...}} for an event (answered 202, empty body), or
{"error": "..."} for a request the SDK rejects (answered 400). Exits after --count events.
--fail-first N answers the first N requests 503 (Retry-After: 0) without decoding them.
"""
import argparse
import base64
import json
import sys
from datetime import datetime
from http.server import BaseHTTPRequestHandler, HTTPServer

from cloudevents.core.bindings.http import HTTPMessage, from_http_event


def jsonable(value):
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, (bytes, bytearray)):
        return {"base64": base64.b64encode(value).decode()}
    return value


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=1)
    parser.add_argument("--fail-first", type=int, default=0)
    args = parser.parse_args()
    state = {"events": 0, "requests": 0}

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *_):  # keep stdout for the protocol
            pass

        def do_POST(self):
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length)
            state["requests"] += 1
            if state["requests"] <= args.fail_first:
                self.send_response(503)
                self.send_header("Retry-After", "0")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            headers = {k.lower(): v for k, v in self.headers.items()}
            try:
                event = from_http_event(HTTPMessage(headers=headers, body=body))
                line = {
                    "attributes": {k: jsonable(v) for k, v in event.get_attributes().items()},
                    "data": jsonable(event.get_data()),
                    "headers": headers,
                }
                status = 202
            except Exception as exc:  # the SDK's verdict is what we report
                line = {"error": f"{type(exc).__name__}: {exc}", "headers": headers}
                status = 400
            print(json.dumps(line), flush=True)
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()
            self.wfile.flush()
            # Counted only once answered: the process exits at --count, and must not cut off the reply.
            if status == 202:
                state["events"] += 1

    # One request at a time: handle_request() returns only after the reply is written.
    server = HTTPServer(("127.0.0.1", 0), Handler)
    print(f"PORT {server.server_address[1]}", flush=True)
    while state["events"] < args.count:
        server.handle_request()
    server.server_close()


if __name__ == "__main__":
    sys.exit(main())
