"""Read-only queries behind scripts/demo's summary (standard library only).

    demo_report.py cypher TITLE QUERY      Cypher over the graph's HTTP API, printed as a table
    demo_report.py influx DATABASE         measurements and points in InfluxDB 1.x
    demo_report.py pushgateway             metric groups and series in the Pushgateway
    demo_report.py metric URL NAME [LABEL=VALUE]   sum of one Prometheus series (prints a number)

Addresses and credentials come from the environment, never from the command line (it is visible to
other users): DEMO_GRAPH_HTTP (ArcadeDB http://host:2480 or Neo4j http://host:7474), DEMO_GRAPH_KIND
(arcadedb | neo4j), DEMO_GRAPH_DB, NEO4J_USER, NEO4J_PASSWORD; DEMO_INFLUX_URL, DEMO_INFLUX_USER,
DEMO_INFLUX_PASSWORD; DEMO_PUSHGATEWAY_URL. Exit code 1 with one line on stderr when a backend cannot
be read.
"""

import base64
import json
import os
import sys
import urllib.error
import urllib.parse
import urllib.request


def _request(url, body=None, user=None, password=None, timeout=15):
    headers = {"Accept": "application/json"}
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    if user:
        token = base64.b64encode(f"{user}:{password or ''}".encode()).decode()
        headers["Authorization"] = f"Basic {token}"
    req = urllib.request.Request(url, data=data, headers=headers)
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        return resp.read().decode()


def _cell(value):
    if value is None:
        return "-"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, (list, dict)):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


def print_table(columns, rows, indent="    "):
    """Prints rows (lists of cells) under their column names, aligned."""
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [len(c) for c in columns]
    for row in cells:
        for i, v in enumerate(row):
            widths[i] = max(widths[i], min(len(v), 60))
    line = "  ".join(c.ljust(widths[i]) for i, c in enumerate(columns))
    print(indent + line.rstrip())
    print(indent + "  ".join("-" * w for w in widths))
    for row in cells:
        print(indent + "  ".join(v[:60].ljust(widths[i]) for i, v in enumerate(row)).rstrip())
    if not rows:
        print(indent + "(no rows)")


def cypher(query):
    """Runs a read query; returns (columns, rows)."""
    base = os.environ["DEMO_GRAPH_HTTP"].rstrip("/")
    kind = os.environ.get("DEMO_GRAPH_KIND", "arcadedb")
    db = os.environ.get("DEMO_GRAPH_DB") or "neo4j"
    user, password = os.environ.get("NEO4J_USER"), os.environ.get("NEO4J_PASSWORD")
    if kind == "arcadedb":
        url = f"{base}/api/v1/query/{urllib.parse.quote(db)}"
        answer = json.loads(_request(url, {"language": "cypher", "command": query}, user, password))
        records = answer.get("result", [])
        columns = []
        for rec in records:
            for key in rec:
                if not key.startswith("@") and key not in columns:
                    columns.append(key)
        return columns, [[rec.get(c) for c in columns] for rec in records]
    # Neo4j's transactional HTTP endpoint (4.x and 5.x).
    url = f"{base}/db/{urllib.parse.quote(db)}/tx/commit"
    answer = json.loads(_request(url, {"statements": [{"statement": query}]}, user, password))
    if answer.get("errors"):
        raise RuntimeError(answer["errors"][0].get("message", "query failed"))
    result = answer["results"][0]
    return result["columns"], [d["row"] for d in result["data"]]


def influx(database):
    """Prints each measurement of DATABASE with its number of points."""
    base = os.environ["DEMO_INFLUX_URL"].rstrip("/")
    user, password = os.environ.get("DEMO_INFLUX_USER"), os.environ.get("DEMO_INFLUX_PASSWORD")

    def query(q):
        url = f"{base}/query?" + urllib.parse.urlencode({"db": database, "q": q})
        answer = json.loads(_request(url, None, user, password))
        result = answer["results"][0]
        if "error" in result:
            raise RuntimeError(result["error"])
        return result.get("series", [])

    rows = []
    for series in query("SHOW MEASUREMENTS"):
        for (name,) in series.get("values", []):
            # A point has several fields, count(*) counts each: the largest count is the points.
            counted = query(f'SELECT count(*) FROM "{name}"')
            counts = counted[0]["values"][0][1:] if counted else [0]
            tags = query(f'SHOW TAG VALUES FROM "{name}" WITH KEY = "experiment"')
            experiments = sorted({v[1] for s in tags for v in s.get("values", [])})
            rows.append([name, max(c or 0 for c in counts), ", ".join(experiments)])
    print_table(["measurement", "points", "experiment"], rows)
    return sum(r[1] for r in rows)


def pushgateway():
    """Prints the metric groups of the Pushgateway and their series."""
    base = os.environ["DEMO_PUSHGATEWAY_URL"].rstrip("/")
    answer = json.loads(_request(f"{base}/api/v1/metrics"))
    rows, total = [], 0
    for group in answer.get("data", []):
        labels = group.get("labels", {})
        names = [
            k for k, v in group.items()
            if isinstance(v, dict) and "metrics" in v and not k.startswith("push_")
        ]
        series = sum(len(group[k]["metrics"]) for k in names)
        total += series
        run = labels.get("chaostoolkit_run_trace_id", "-")
        rest = ",".join(
            f"{k}={v}" for k, v in sorted(labels.items())
            if k not in ("job", "chaostoolkit_run_trace_id")
        )
        rows.append([labels.get("job", "-"), run, rest, len(names), series])
    print_table(["job", "run", "other grouping labels", "metrics", "series"], rows)
    return total


def metric(url, name, selector=()):
    """Sum of the samples of metric NAME whose labels include every LABEL=VALUE."""
    text = _request(url)
    want = [s.split("=", 1) for s in selector]
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name) or line.startswith("#"):
            continue
        head, _, value = line.rpartition(" ")
        metric_name = head.split("{", 1)[0]
        if metric_name != name:
            continue
        labels = head[len(metric_name):]
        if all(f'{k}="{v}"' in labels for k, v in want):
            total += float(value)
    return total


def main(argv):
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    cmd = argv[1]
    try:
        if cmd == "cypher" and len(argv) == 4:
            print(f"  {argv[2]}")
            print(f"    {' '.join(argv[3].split())}")
            columns, rows = cypher(argv[3])
            print_table(columns, rows, indent="      ")
        elif cmd == "cypher-value" and len(argv) == 3:
            _, rows = cypher(argv[2])
            print(_cell(rows[0][0]) if rows else "0")
        elif cmd == "influx" and len(argv) == 3:
            influx(argv[2])
        elif cmd == "pushgateway" and len(argv) == 2:
            pushgateway()
        elif cmd == "metric" and len(argv) >= 4:
            print(_cell(metric(argv[2], argv[3], argv[4:])))
        else:
            print(__doc__, file=sys.stderr)
            return 2
    except (OSError, urllib.error.URLError, KeyError, ValueError, RuntimeError, IndexError) as e:
        print(f"demo_report {cmd}: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
