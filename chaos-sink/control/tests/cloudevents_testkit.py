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


def _in_order(declaration: Any) -> Any:
    """A copy of an experiment or settings whose cloudevents control declarations get
    ``concurrency: 1`` (unless they set it)."""
    declaration = json.loads(json.dumps(declaration))
    controls = declaration.get("controls") if isinstance(declaration, dict) else None
    entries = controls.values() if isinstance(controls, dict) else (controls or [])
    for control in entries:
        provider = control.get("provider") if isinstance(control, dict) else None
        if isinstance(provider, dict) and provider.get("module") == "chaoscloudevents.control":
            arguments = provider.setdefault("arguments", {})
            if isinstance(arguments, dict):
                arguments.setdefault("concurrency", 1)
    return declaration


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
    in_order: bool = True,
) -> ChaosRun:
    """Run the real `chaos run` CLI on a fixture experiment, return journal and received events.

    ``in_order`` (default): the control is declared with ``concurrency: 1``, so the events arrive in
    the order the control emits them, which most tests check; ``False`` keeps the declaration (the
    default concurrency sends several at once)."""
    workdir = tmp_path / experiment.replace(".json", "")
    workdir.mkdir(parents=True, exist_ok=True)
    settings_path = workdir / "settings.json"
    settings = _in_order(settings or {}) if in_order else (settings or {})
    settings_path.write_text(json.dumps(settings), encoding="utf-8")
    if in_order:
        source = experiment_path or EXPERIMENTS / experiment
        declared = json.loads(source.read_text(encoding="utf-8"))
        experiment_path = workdir / f"in-order-{source.name}"
        experiment_path.write_text(json.dumps(_in_order(declared), ensure_ascii=False), encoding="utf-8")
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
