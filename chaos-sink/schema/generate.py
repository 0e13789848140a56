#!/usr/bin/env python3
"""Write one self-contained JSON Schema per event type from chaostoolkit-events.schema.json.

    python3 chaos-sink/schema/generate.py          # (re)write events/*.schema.json
    python3 chaos-sink/schema/generate.py --check  # exit 1 if a file is missing or stale

The main file is the source of truth. Each per-type file validates the whole event (attributes
and data) of one type and carries a copy of the main file's ``$defs``, so it needs no external
reference resolution.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Dict

HERE = Path(__file__).resolve().parent
MAIN = HERE / "chaostoolkit-events.schema.json"
OUT = HERE / "events"


def per_type_schemas() -> Dict[Path, str]:
    """File path -> JSON text of every per-type schema."""
    main = json.loads(MAIN.read_text(encoding="utf-8"))
    files: Dict[Path, str] = {}
    for branch in main["allOf"][1:]:
        event_type = branch["if"]["properties"]["type"]["const"]
        data_ref = branch["then"]["properties"]["data"]["$ref"]
        schema = {
            "$schema": main["$schema"],
            "$id": f"urn:chaostoolkit-cloudevents:schema:v1:{event_type}",
            "title": f"{event_type} (CloudEvents 1.0, JSON event format)",
            "description": (
                f"Generated from {MAIN.name} by generate.py; do not edit. See docs/chaos-events.md."
            ),
            "allOf": [{"$ref": "#/$defs/envelope"}],
            "properties": {"type": {"const": event_type}, "data": {"$ref": data_ref}},
            "$defs": main["$defs"],
        }
        files[OUT / f"{event_type}.schema.json"] = json.dumps(schema, indent=2) + "\n"
    return files


def main(argv: list) -> int:
    files = per_type_schemas()
    if "--check" in argv:
        stale = [
            p
            for p, text in files.items()
            if not p.exists() or p.read_text(encoding="utf-8") != text
        ]
        extra = [p for p in OUT.glob("*.schema.json") if p not in files]
        for p in stale + extra:
            print(
                f"out of date: {p.relative_to(HERE)} (run {Path(__file__).name})", file=sys.stderr
            )
        return 1 if stale or extra else 0
    OUT.mkdir(exist_ok=True)
    for path, text in files.items():
        path.write_text(text, encoding="utf-8")
        print(f"wrote {path.relative_to(HERE)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
