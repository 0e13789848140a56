"""Shared fixtures of the chaostoolkit-cloudevents tests.

Integration tests run the real ``chaos`` CLI of the test venv (next to ``sys.executable``) on
the experiments in ``fixtures/experiments`` with the control pointed at a FAKE sink
(:mod:`fake_cloudevents_sink`), on 127.0.0.1 only.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Dict, Iterator

import pytest
from jsonschema import Draft202012Validator

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from cloudevents_testkit import CHAOS, MAIN_SCHEMA, ChaosRun, run_chaos  # noqa: E402
from fake_cloudevents_sink import FakeCloudEventsSink  # noqa: E402


@pytest.fixture(scope="session")
def event_schema() -> Dict[str, Any]:
    return json.loads(MAIN_SCHEMA.read_text(encoding="utf-8"))


@pytest.fixture(scope="session")
def validator(event_schema: Dict[str, Any]) -> Draft202012Validator:
    Draft202012Validator.check_schema(event_schema)
    return Draft202012Validator(event_schema)


@pytest.fixture
def fake_sink() -> Iterator[FakeCloudEventsSink]:
    with FakeCloudEventsSink() as sink:
        yield sink


@pytest.fixture(scope="session")
def chaos_cli() -> Path:
    assert CHAOS.exists(), f"the chaos CLI is not installed next to {sys.executable}"
    return CHAOS


@pytest.fixture
def chaos_run(tmp_path: Path, chaos_cli: Path):
    """``chaos_run(experiment, sink=..., ...)`` runs the real CLI (see :func:`run_chaos`)."""

    def _run(experiment: str, **kwargs: Any) -> ChaosRun:
        return run_chaos(experiment, tmp_path, **kwargs)

    return _run
