"""The JSON Schema files in chaos-sink/schema and the examples in docs/chaos-events.md."""

from __future__ import annotations

import copy
import json
import re
import subprocess
import sys
from typing import Any, Dict, List

import pytest
from jsonschema import Draft202012Validator

from chaoscloudevents.events import ALL_EVENT_TYPES
from cloudevents_testkit import REPO, SCHEMA_DIR

DOC = REPO / "docs" / "chaos-events.md"


def doc_events() -> List[Dict[str, Any]]:
    blocks = re.findall(r"```json\n(.*?)```", DOC.read_text(encoding="utf-8"), flags=re.S)
    return [json.loads(b) for b in blocks if '"specversion"' in b]


def test_per_type_files_are_generated_from_the_main_schema() -> None:
    proc = subprocess.run(
        [sys.executable, str(SCHEMA_DIR / "generate.py"), "--check"], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr


def test_one_schema_file_per_event_type() -> None:
    files = sorted(p.name for p in (SCHEMA_DIR / "events").glob("*.schema.json"))
    assert files == sorted(f"{t}.schema.json" for t in ALL_EVENT_TYPES)
    for path in (SCHEMA_DIR / "events").glob("*.schema.json"):
        Draft202012Validator.check_schema(json.loads(path.read_text(encoding="utf-8")))


def test_the_documentation_has_a_valid_example_of_every_type(
    validator: Draft202012Validator,
) -> None:
    examples = doc_events()
    assert {e["type"] for e in examples} == set(ALL_EVENT_TYPES)
    for example in examples:
        validator.validate(example)
        per_type = json.loads(
            (SCHEMA_DIR / "events" / f"{example['type']}.schema.json").read_text(encoding="utf-8")
        )
        Draft202012Validator(per_type).validate(example)


def test_per_type_schema_rejects_other_types() -> None:
    example = next(e for e in doc_events() if e["type"] == "org.chaostoolkit.method.started")
    schema = json.loads(
        (SCHEMA_DIR / "events" / "org.chaostoolkit.method.finished.schema.json").read_text()
    )
    assert not Draft202012Validator(schema).is_valid(example)


def _finished() -> Dict[str, Any]:
    return copy.deepcopy(
        next(e for e in doc_events() if e["type"] == "org.chaostoolkit.experiment.finished")
    )


@pytest.mark.parametrize(
    "mutate",
    [
        lambda e: e.pop("chaosrunid"),
        lambda e: e.pop("partitionkey"),
        lambda e: e.update(chaosexperiment="not-hex"),
        lambda e: e.update(time="2026-11-23T09:30:41.919503+00:00"),  # the event format uses Z
        lambda e: e.update(source="/chaostoolkit"),
        lambda e: e.update(specversion="0.3"),
        lambda e: e.update(type="org.chaostoolkit.run.finished"),
        lambda e: e["data"].update(status="deviated"),  # deviated is a flag, not a status
        lambda e: e["data"].pop("deviated"),
        lambda e: e["data"].update(duration=-1),
        lambda e: e.update({"Bad_Ext": "x"}),
        lambda e: e.update({"nested": {"x": 1}}),
    ],
)
def test_schema_rejects_broken_events(validator: Draft202012Validator, mutate: Any) -> None:
    event = _finished()
    mutate(event)
    assert not validator.is_valid(event)


def test_schema_accepts_unknown_data_fields_and_user_extensions(
    validator: Draft202012Validator,
) -> None:
    event = _finished()
    event["data"]["new_field"] = {"anything": [1, 2]}
    event["team"] = "chaos"
    validator.validate(event)
