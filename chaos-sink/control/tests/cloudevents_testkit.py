"""Helpers of the chaostoolkit-cloudevents tests (paths, running the real `chaos` CLI).

Kept out of ``conftest.py`` so test modules can import them without clashing with another
directory's ``conftest`` when pytest runs several test directories at once.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional

from fake_cloudevents_sink import FakeCloudEventsSink

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[2]
SCHEMA_DIR = REPO / "chaos-sink" / "schema"
MAIN_SCHEMA = SCHEMA_DIR / "chaostoolkit-events.schema.json"
EXPERIMENTS = HERE / "fixtures" / "experiments"
PYLIB = HERE / "fixtures" / "pylib"
CHAOS = Path(sys.executable).with_name("chaos")

#: Values the redaction tests put in the environment of `chaos run` (see secrets.json).
ENV_CONFIG_VALUE = "env-config-value-99"
ENV_SECRET_VALUE = "env-secret-value-77"


@dataclass
class ChaosRun:
    """Result of one real `chaos run`."""

    experiment: str
    returncode: int
    stdout: str
    stderr: str
    wall_seconds: float
    journal: Dict[str, Any]
    events: List[Dict[str, Any]] = field(default_factory=list)
    raw: List[bytes] = field(default_factory=list)

    def types(self) -> List[str]:
        return [e["type"].replace("org.chaostoolkit.", "") for e in self.events]

    def of(self, short_type: str) -> List[Dict[str, Any]]:
        return [e for e in self.events if e["type"] == f"org.chaostoolkit.{short_type}"]


def run_chaos(
    experiment: str,
    tmp_path: Path,
    sink: Optional[FakeCloudEventsSink] = None,
    sink_url: Optional[str] = None,
    settings: Optional[Dict[str, Any]] = None,
    extra_args: Optional[List[str]] = None,
    env: Optional[Dict[str, str]] = None,
    experiment_path: Optional[Path] = None,
    timeout: float = 60.0,
) -> ChaosRun:
    """Run the real `chaos run` CLI on a fixture experiment, return journal and received events."""
    workdir = tmp_path / experiment.replace(".json", "")
    workdir.mkdir(parents=True, exist_ok=True)
    settings_path = workdir / "settings.json"
    settings_path.write_text(json.dumps(settings or {}), encoding="utf-8")
    journal_path = workdir / "journal.json"
    run_env = {
        k: v for k, v in os.environ.items() if k not in ("K_SINK", "K_CE_OVERRIDES", "K_CA_CERTS")
    }
    run_env.update(
        {
            "PYTHONPATH": str(PYLIB),
            "CE_TEST_FROM_ENV": ENV_CONFIG_VALUE,
            "CE_TEST_SECRET_ENV": ENV_SECRET_VALUE,
        }
    )
    url = sink_url or (sink.url if sink is not None else None)
    if url:
        run_env["K_SINK"] = url
    run_env.update(env or {})
    cmd = [
        str(CHAOS),
        "--no-version-check",
        "--log-file",
        str(workdir / "chaostoolkit.log"),
        "--settings",
        str(settings_path),
        "run",
        "--journal-path",
        str(journal_path),
        *(extra_args or []),
        str(experiment_path or EXPERIMENTS / experiment),
    ]
    started = time.monotonic()
    proc = subprocess.run(
        cmd, cwd=workdir, env=run_env, capture_output=True, text=True, timeout=timeout
    )
    wall = time.monotonic() - started
    journal = json.loads(journal_path.read_text(encoding="utf-8")) if journal_path.exists() else {}
    result = ChaosRun(experiment, proc.returncode, proc.stdout, proc.stderr, wall, journal)
    if sink is not None:
        result.events = sink.events()
        result.raw = [r.raw_headers + b"\r\n" + r.body for r in sink.requests]
    return result
