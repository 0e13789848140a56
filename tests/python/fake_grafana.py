"""A strict FAKE of Grafana's annotations API (no Grafana server is installable here).

Serves what chaos-sink calls (chaos-sink/README.md, "Grafana"), on 127.0.0.1 and a free port:

- ``GET /api/annotations?tags=..&limit=..``: the stored annotations having every given tag, as
  Grafana lists them (``id``, ``time``, ``timeEnd``, ``tags``, ``text``, ...);
- ``POST /api/annotations``: ``{"id": N, "message": "Annotation added"}``;
- ``PATCH /api/annotations/<id>``: updates the given fields (404 for an unknown id).

While :attr:`FakeGrafana.down` is set it answers 503 to everything (an outage). It checks the
``Authorization`` header (401 otherwise), ``Content-Type: application/json`` on
writes, and the JSON shapes: only Grafana's fields, ``time``/``timeEnd`` integer epoch
milliseconds with ``timeEnd >= time``, ``tags`` a list of non-empty strings, ``text`` a string,
``dashboardUID`` a string, ``dashboardId``/``panelId`` integers (not in a PATCH). Every breach is
answered 400 and recorded in :attr:`FakeGrafana.violations`, which the tests assert empty.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Dict, List, Optional, Tuple
from urllib.parse import parse_qs, urlsplit

_FIELDS_POST = {"time", "timeEnd", "tags", "text", "dashboardUID", "dashboardId", "panelId"}
_FIELDS_PATCH = {"time", "timeEnd", "tags", "text"}


def _check(body: Any, patch: bool) -> Optional[str]:
    """The first problem of an annotation body, or None."""
    if not isinstance(body, dict):
        return "body is not a JSON object"
    allowed = _FIELDS_PATCH if patch else _FIELDS_POST
    for key, value in body.items():
        if key not in allowed:
            return f"unexpected field {key!r}"
        if key in ("time", "timeEnd", "dashboardId", "panelId"):
            if not isinstance(value, int) or isinstance(value, bool):
                return f"{key} is not an integer: {value!r}"
        if key in ("time", "timeEnd") and value < 1_000_000_000_000:
            return f"{key} is not epoch milliseconds: {value}"
        if key == "tags" and not (
            isinstance(value, list) and all(isinstance(t, str) and t for t in value)
        ):
            return f"tags is not a list of non-empty strings: {value!r}"
        if key in ("text", "dashboardUID") and not isinstance(value, str):
            return f"{key} is not a string"
    if not patch:
        missing = {"time", "timeEnd", "tags", "text"} - body.keys()
        if missing:
            return f"missing {sorted(missing)}"
        if "panelId" in body and not ({"dashboardUID", "dashboardId"} & body.keys()):
            return "panelId without a dashboard"
    if "time" in body and "timeEnd" in body and body["timeEnd"] < body["time"]:
        return f"timeEnd {body['timeEnd']} before time {body['time']}"
    return None


@dataclass
class Annotation:
    """One stored annotation and how it was made."""

    id: int
    body: Dict[str, Any]
    created: Dict[str, Any]
    patches: List[Dict[str, Any]] = field(default_factory=list)

    @property
    def tags(self) -> List[str]:
        return list(self.body["tags"])


class FakeGrafana:
    """The fake server; use as a context manager. ``url`` is its base URL."""

    def __init__(self, authorization: str) -> None:
        self.authorization = authorization
        self.annotations: Dict[int, Annotation] = {}
        self.requests: List[Tuple[str, str]] = []
        self.violations: List[str] = []
        #: While set, every request is answered 503 (Grafana down) and counted in ``refused``.
        self.down = threading.Event()
        self.refused = 0
        self.deleted = 0
        self.next_id = 0
        self._lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:  # quiet
                pass

            def _reply(self, status: int, payload: Any) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _body(self) -> Optional[Any]:
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                ctype = (self.headers.get("Content-Type") or "").split(";")[0].strip()
                if ctype != "application/json":
                    return fake._violation(self, f"Content-Type {ctype!r} is not application/json")
                try:
                    return json.loads(raw)
                except ValueError as exc:
                    return fake._violation(self, f"body is not JSON: {exc}")

            def _authorized(self) -> bool:
                with fake._lock:
                    fake.requests.append((self.command, self.path))
                    if fake.down.is_set():
                        fake.refused += 1
                if fake.down.is_set():
                    length = int(self.headers.get("Content-Length") or 0)
                    self.rfile.read(length)
                    self._reply(503, {"message": "Service Unavailable"})
                    return False
                if self.headers.get("Authorization") != fake.authorization:
                    self._reply(401, {"message": "Unauthorized"})
                    return False
                return True

            def do_GET(self) -> None:  # noqa: N802 (http.server's names)
                if not self._authorized():
                    return
                url = urlsplit(self.path)
                if url.path != "/api/annotations":
                    self._reply(404, {"message": "Not found"})
                    return
                query = parse_qs(url.query)
                wanted = set(query.get("tags", []))
                limit = int(query.get("limit", ["100"])[0])
                with fake._lock:
                    found = [
                        {"id": a.id, "time": a.body["time"], "timeEnd": a.body["timeEnd"],
                         "tags": a.tags, "text": a.body["text"]}
                        for a in fake.annotations.values()
                        if wanted <= set(a.tags)
                    ][:limit]
                self._reply(200, found)

            def do_POST(self) -> None:  # noqa: N802
                if not self._authorized():
                    return
                if urlsplit(self.path).path != "/api/annotations":
                    self._reply(404, {"message": "Not found"})
                    return
                body = self._body()
                if body is None:
                    return
                problem = _check(body, patch=False)
                if problem:
                    fake._violation(self, f"POST: {problem}")
                    return
                with fake._lock:
                    # ids grow with creation time, as Grafana's do (the sink relies on it)
                    fake.next_id += 1
                    new_id = fake.next_id
                    fake.annotations[new_id] = Annotation(new_id, dict(body), dict(body))
                self._reply(200, {"id": new_id, "message": "Annotation added"})

            def do_DELETE(self) -> None:  # noqa: N802
                if not self._authorized():
                    return
                path = urlsplit(self.path).path
                prefix = "/api/annotations/"
                if not path.startswith(prefix) or not path[len(prefix):].isdigit():
                    fake._violation(self, f"DELETE of {path}")
                    return
                with fake._lock:
                    gone = fake.annotations.pop(int(path[len(prefix):]), None)
                    if gone is not None:
                        fake.deleted += 1
                if gone is None:
                    self._reply(404, {"message": "Annotation not found"})
                else:
                    self._reply(200, {"message": "Annotation deleted"})

            def do_PATCH(self) -> None:  # noqa: N802
                if not self._authorized():
                    return
                path = urlsplit(self.path).path
                prefix = "/api/annotations/"
                if not path.startswith(prefix) or not path[len(prefix):].isdigit():
                    fake._violation(self, f"PATCH of {path}")
                    return
                body = self._body()
                if body is None:
                    return
                problem = _check(body, patch=True)
                if problem:
                    fake._violation(self, f"PATCH: {problem}")
                    return
                with fake._lock:
                    ann = fake.annotations.get(int(path[len(prefix):]))
                    if ann is not None:
                        ann.body.update(body)
                        ann.patches.append(dict(body))
                if ann is None:
                    self._reply(404, {"message": "Could not find annotation to update"})
                else:
                    self._reply(200, {"message": "Annotation patched"})

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def _violation(self, handler: BaseHTTPRequestHandler, message: str) -> None:
        with self._lock:
            self.violations.append(message)
        handler._reply(400, {"message": message})  # type: ignore[attr-defined]
        return None

    def tagged(self, *tags: str) -> List[Annotation]:
        """The annotations having every given tag, oldest first."""
        with self._lock:
            return [a for a in self.annotations.values() if set(tags) <= set(a.tags)]

    def __enter__(self) -> "FakeGrafana":
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._server.shutdown()
        self._server.server_close()
