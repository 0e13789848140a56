"""deploy/grafana: the provisioning files and the dashboard. The dashboard's queries run against a real InfluxDB
(TEST_INFLUX_URL, started by scripts/test) holding what the real chaos-sink binary wrote for the fixture runs."""

import json
import os
import re
import subprocess
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
import yaml

from manifest_helpers import REPO, debug_binary, free_port, need

DASHBOARD = REPO / "deploy/grafana/dashboards/chaos.json"
PROVISIONING = REPO / "deploy/grafana/provisioning"
FIXTURES = REPO / "chaos-sink/tests/fixtures"


@pytest.fixture(scope="module")
def dashboard():
    return json.loads(DASHBOARD.read_text())


@pytest.fixture(scope="module")
def datasource():
    (ds,) = yaml.safe_load((PROVISIONING / "datasources/influxdb.yaml").read_text())["datasources"]
    return ds


def measurements_written_by_chaos_sink():
    text = (REPO / "chaos-sink/src/backends/influxdb/encoding.rs").read_text()
    return set(re.findall(r'pub const [A-Z_]+: &str = "(chaos_toolkit\.[a-z_]+)";', text))


def targets(dashboard):
    for p in dashboard["panels"]:
        for t in p.get("targets", []):
            yield p, t


def test_provisioning(datasource, dashboard):
    assert datasource["type"] == "influxdb" and datasource["jsonData"]["dbName"] == "chaos"
    assert datasource["url"] == "http://influxdb:8086"
    providers = yaml.safe_load((PROVISIONING / "dashboards/cts-knative.yaml").read_text())["providers"]
    assert providers[0]["type"] == "file" and providers[0]["options"]["path"]


def test_dashboard_shape(dashboard, datasource):
    assert dashboard["uid"] == "cts-knative-chaos" and dashboard["title"]
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for p in dashboard["panels"]:
        g = p["gridPos"]
        assert g["x"] + g["w"] <= 24 and g["w"] > 0 and g["h"] > 0, p["title"]
        assert p["datasource"]["uid"] == datasource["uid"]
    for p, t in targets(dashboard):
        assert t["datasource"]["uid"] == datasource["uid"] and t["rawQuery"] is True, p["title"]
    var = dashboard["templating"]["list"][0]
    assert var["name"] == "experiment" and var["datasource"]["uid"] == datasource["uid"]
    titles = {p["title"] for p in dashboard["panels"]}
    assert {"Runs", "Outcomes", "Run durations", "Activity durations", "Actions (chaosdb)"} <= titles


def test_queries_use_the_measurements_chaos_sink_writes(dashboard):
    known = measurements_written_by_chaos_sink()
    assert "chaos_toolkit.actions" in known, "chaosdb's measurement"
    used = set()
    for p, t in targets(dashboard):
        found = set(re.findall(r'FROM "([^"]+)"', t["query"]))
        assert found and found <= known, (p["title"], found)
        assert "$timeFilter" in t["query"], p["title"]
        used |= found
    assert "chaos_toolkit.actions" in used and "chaos_toolkit.experiments" in used


def test_annotations_by_tag(dashboard):
    tags = [a["target"]["tags"] for a in dashboard["annotations"]["list"] if a.get("target", {}).get("type") == "tags"]
    assert any("chaostoolkit" in t for t in tags)
    grafana = (REPO / "chaos-sink/src/backends/grafana/encoding.rs").read_text()
    for t in tags:
        for tag in t:
            assert f'"{tag}".to_owned()' in grafana, f"chaos-sink does not tag annotations with {tag}"


# ---- the queries against real data ----------------------------------------------------------------------


def influx_query(url, q, db=None, post=False):
    params = {"q": q, **({"db": db} if db else {})}
    data = urllib.parse.urlencode(params).encode()
    req = (urllib.request.Request(url + "/query", data=data, method="POST") if post
           else urllib.request.Request(url + "/query?" + data.decode()))
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.load(r)


def wait_http(url, proc, seconds=20):
    deadline = time.time() + seconds
    while time.time() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"{proc.args[0]} exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=1) as r:
                return r.status
        except Exception:
            time.sleep(0.1)
    raise AssertionError(f"{url} did not answer")


@pytest.fixture(scope="module")
def influx_with_runs():
    url = os.environ.get("TEST_INFLUX_URL", "").strip()
    need(url, "InfluxDB", "TEST_INFLUX_URL is not set")
    exe = debug_binary("chaos-sink")
    db = f"dashboard_{os.getpid()}"
    influx_query(url, f'CREATE DATABASE "{db}"', post=True)
    tmp = tempfile.TemporaryDirectory()
    cfg = Path(tmp.name) / "chaos-sink.yaml"
    cfg.write_text(f"influxdb:\n  url: {url}\n  database: {db}\n  precision: ns\n")
    port = free_port()
    env = {"PATH": os.environ.get("PATH", ""), "CHAOS_SINK_CONFIG": str(cfg), "PORT": str(port),
           "HOST": "127.0.0.1", "RUST_LOG": "warn"}
    proc = subprocess.Popen([str(exe)], env=env)
    try:
        wait_http(f"http://127.0.0.1:{port}/healthz", proc)
        for fixture in sorted(FIXTURES.glob("run_*.json")):
            req = urllib.request.Request(f"http://127.0.0.1:{port}/", data=fixture.read_bytes(),
                                         headers={"Content-Type": "application/cloudevents-batch+json"})
            with urllib.request.urlopen(req, timeout=30) as r:
                assert r.status == 202, fixture.name
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    times = [e["time"] for f in FIXTURES.glob("run_*.json") for e in json.loads(f.read_text())]
    yield url, db, min(times), max(times)
    influx_query(url, f'DROP DATABASE "{db}"', post=True)
    tmp.cleanup()


def run(url, db, query, start, end):
    q = (query.replace("$timeFilter", f"time >= '{start}' - 1h AND time <= '{end}' + 1h")
         .replace("$experiment", ".*").replace("$__interval", "1m"))
    (result,) = influx_query(url, q, db)["results"]
    assert "error" not in result, f"{q}: {result['error']}"
    return result.get("series", [])


def test_every_query_runs_on_what_chaos_sink_writes(dashboard, influx_with_runs):
    url, db, start, end = influx_with_runs
    for p, t in targets(dashboard):
        series = run(url, db, t["query"], start, end)
        if p["title"] == "Outcomes":
            continue  # one query per outcome; the fixtures do not have every outcome
        assert series, f"panel {p['title']!r} query {t['refId']} found nothing"
        if t["resultFormat"] == "table":
            # Every selected field and tag exists: a renamed field would come back as an all-null column.
            for s in series:
                for i, col in enumerate(s["columns"]):
                    if col in ("time", "exception", "module", "func"):
                        continue
                    assert any(row[i] is not None for row in s["values"]), f"{p['title']}: column {col} is empty"
    outcomes = {t["alias"]: run(url, db, t["query"], start, end)
                for p, t in targets(dashboard) if p["title"] == "Outcomes"}
    assert outcomes["completed"] and outcomes["deviated"]
    runs = next(t for p, t in targets(dashboard) if p["title"] == "Runs" and p["type"] == "table")
    assert sum(len(s["values"]) for s in run(url, db, runs["query"], start, end)) == len(
        list(FIXTURES.glob("run_*.json")))


def test_the_experiment_variable_lists_the_runs(dashboard, influx_with_runs):
    url, db, _, _ = influx_with_runs
    var = dashboard["templating"]["list"][0]
    (result,) = influx_query(url, var["query"], db)["results"]
    values = {v[1] for s in result["series"] for v in s["values"]}
    titles = {json.loads(f.read_text())[0]["data"]["title"] for f in FIXTURES.glob("run_*.json")}
    assert values == titles
