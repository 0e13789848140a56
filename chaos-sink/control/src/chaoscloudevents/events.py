"""The event schema: CloudEvents built from Chaos Toolkit's run notifications and journal.

This module is pure: it turns the dictionaries Chaos Toolkit hands to a run event handler
(experiment, journal, activity, run, hypothesis state) into :class:`CloudEvent` values. It does
no I/O and keeps no run state; :mod:`chaoscloudevents.handler` decides *when* to build what.

The contract (types, attributes, extensions, data fields) is documented in
``docs/chaos-events.md`` and formalised by the JSON Schema in ``chaos-sink/schema/``.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from datetime import datetime, timezone
from enum import Enum
from typing import Any, Callable, Dict, Iterable, Mapping, Optional

from chaoscloudevents.redact import Redactor, sanitize_url

__all__ = [
    "ACTIVITY_FINISHED",
    "ACTIVITY_STARTED",
    "ALL_EVENT_TYPES",
    "CloudEvent",
    "EventFactory",
    "EXPERIMENT_FINISHED",
    "EXPERIMENT_STARTED",
    "HYPOTHESIS_FINISHED",
    "HYPOTHESIS_STARTED",
    "METHOD_FINISHED",
    "METHOD_STARTED",
    "RESERVED_ATTRIBUTES",
    "ROLLBACKS_FINISHED",
    "ROLLBACKS_STARTED",
    "experiment_reference",
    "format_time",
    "parse_time",
    "shorten_exception",
    "shorten_output",
]

SPEC_VERSION = "1.0"
DATA_CONTENT_TYPE = "application/json"

EXPERIMENT_STARTED = "org.chaostoolkit.experiment.started"
EXPERIMENT_FINISHED = "org.chaostoolkit.experiment.finished"
HYPOTHESIS_STARTED = "org.chaostoolkit.hypothesis.started"
HYPOTHESIS_FINISHED = "org.chaostoolkit.hypothesis.finished"
METHOD_STARTED = "org.chaostoolkit.method.started"
METHOD_FINISHED = "org.chaostoolkit.method.finished"
ROLLBACKS_STARTED = "org.chaostoolkit.rollbacks.started"
ROLLBACKS_FINISHED = "org.chaostoolkit.rollbacks.finished"
ACTIVITY_STARTED = "org.chaostoolkit.activity.started"
ACTIVITY_FINISHED = "org.chaostoolkit.activity.finished"

ALL_EVENT_TYPES = (
    EXPERIMENT_STARTED,
    EXPERIMENT_FINISHED,
    HYPOTHESIS_STARTED,
    HYPOTHESIS_FINISHED,
    METHOD_STARTED,
    METHOD_FINISHED,
    ROLLBACKS_STARTED,
    ROLLBACKS_FINISHED,
    ACTIVITY_STARTED,
    ACTIVITY_FINISHED,
)

#: Attribute names the control owns; user extensions may not replace them.
RESERVED_ATTRIBUTES = frozenset(
    {
        "specversion",
        "id",
        "source",
        "type",
        "subject",
        "time",
        "datacontenttype",
        "dataschema",
        "data",
        "chaosrunid",
        "chaosexperiment",
        "partitionkey",
    }
)

#: Journal statuses of a run (anything else is coerced to ``completed`` by Chaos Toolkit).
RUN_STATUSES = ("completed", "failed", "aborted", "interrupted")
#: Statuses of a single activity run.
ACTIVITY_STATUSES = ("succeeded", "failed")

_TRUNCATION_MARK = "…[truncated]"
#: one encoder for every call (json.dumps with options builds a new encoder each time)
_JSON_TEXT = json.JSONEncoder(ensure_ascii=False)
_MAX_ITEMS = 100
_MAX_DEPTH = 8


# --------------------------------------------------------------------------------------------
# The event value
# --------------------------------------------------------------------------------------------
class CloudEvent:
    """One CloudEvent 1.0 with JSON data, independent of the HTTP encoding (treat as immutable).

    ``id`` is generated once when the event is built, so every delivery attempt of the same
    event carries the same ``id`` (receivers deduplicate on ``source`` + ``id``).

    A plain class rather than a dataclass: creating dataclasses costs about a millisecond each
    at import, and the import is paid by every ``chaos run`` (see ``bench/overhead.py``).
    """

    __slots__ = ("id", "source", "type", "time", "subject", "extensions", "data")

    def __init__(
        self,
        id: str,  # noqa: A002 - the CloudEvents attribute name
        source: str,
        type: str,  # noqa: A002
        time: str,
        subject: Optional[str],
        extensions: Mapping[str, str],
        data: Mapping[str, Any],
    ) -> None:
        self.id = id
        self.source = source
        self.type = type
        self.time = time
        self.subject = subject
        self.extensions = extensions
        self.data = data

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, CloudEvent):
            return NotImplemented
        return all(getattr(self, n) == getattr(other, n) for n in self.__slots__)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"CloudEvent(id={self.id!r}, type={self.type!r}, time={self.time!r})"

    def attributes(self) -> Dict[str, str]:
        """All context attributes (not the data), as strings, in a stable order."""
        attrs: Dict[str, str] = {
            "specversion": SPEC_VERSION,
            "id": self.id,
            "source": self.source,
            "type": self.type,
            "time": self.time,
            "datacontenttype": DATA_CONTENT_TYPE,
        }
        if self.subject is not None:
            attrs["subject"] = self.subject
        attrs.update(self.extensions)
        return attrs

    def to_structured(self) -> Dict[str, Any]:
        """The event in the JSON event format (what structured mode sends as the body)."""
        body: Dict[str, Any] = dict(self.attributes())
        body["data"] = self.data
        return body


# --------------------------------------------------------------------------------------------
# Helpers: times, experiment reference, output shortening
# --------------------------------------------------------------------------------------------
def utc_now() -> datetime:
    """The current time, timezone-aware, in UTC."""
    return datetime.now(timezone.utc)


def parse_time(value: Any) -> Optional[datetime]:
    """Parse a Chaos Toolkit timestamp (ISO 8601, ``+00:00`` or ``Z``) into an aware datetime.

    Naive values are taken as UTC (Chaos Toolkit always records UTC). Returns ``None`` when the
    value is missing or unparsable.
    """
    if isinstance(value, datetime):
        dt = value
    elif isinstance(value, str) and value:
        text = value.strip()
        if text.endswith(("Z", "z")):
            text = text[:-1] + "+00:00"
        try:
            dt = datetime.fromisoformat(text)
        except ValueError:
            return None
    else:
        return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return dt.astimezone(timezone.utc)


def format_time(dt: datetime) -> str:
    """RFC 3339 UTC with microseconds and a ``Z`` suffix, e.g. ``2026-11-22T20:50:12.635557Z``."""
    if dt.tzinfo is not timezone.utc:
        dt = dt.astimezone(timezone.utc)
    # isoformat is done in C: several times cheaper than strftime("...%fZ"), same text
    return dt.replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def _seconds(start: datetime, end: datetime) -> float:
    return round(max((end - start).total_seconds(), 0.0), 6)


def _duration(value: Any, start: datetime, end: datetime) -> float:
    """Chaos Toolkit's own duration when it recorded one, else ``end - start``."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return round(max(float(value), 0.0), 6)
    return _seconds(start, end)


def _json_default(value: Any) -> Any:
    if isinstance(value, Enum):
        return value.value
    return str(value)


def experiment_reference(experiment: Mapping[str, Any]) -> str:
    """The experiment reference: blake2b (12-byte digest) hex of the canonical JSON.

    This is ``chaoslib.experiment_hash`` (used by chaostoolkit-prometheus and
    chaostoolkit-grafana as ``experiment_ref``), so the same experiment gets the same reference
    across tools. When the experiment holds values chaoslib cannot serialise (the ``dry`` enum
    set by ``chaos run --dry``), those are serialised by value instead of failing.
    """
    try:
        from chaoslib import experiment_hash

        return str(experiment_hash(dict(experiment)))
    except (TypeError, ValueError):
        canonical = json.dumps(
            experiment, skipkeys=True, sort_keys=True, indent=None, default=_json_default
        ).encode("utf-8")
        return hashlib.blake2b(canonical, digest_size=12).hexdigest()


def _truncate(text: str, limit: int, keep: str = "head") -> str:
    if len(text) <= limit:
        return text
    room = max(limit - len(_TRUNCATION_MARK), 0)
    if keep == "tail":
        return _TRUNCATION_MARK + text[len(text) - room :]
    return text[:room] + _TRUNCATION_MARK


def _to_json_value(value: Any, depth: int = 0) -> Any:
    """A JSON-compatible copy of ``value``: bounded depth and width, non-JSON types as text."""
    if value is None or isinstance(value, (bool, str, int)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, Enum):
        return _to_json_value(value.value, depth)
    if depth >= _MAX_DEPTH:
        return _truncate(repr(value), 256)
    if isinstance(value, Mapping):
        out: Dict[str, Any] = {}
        for i, (k, v) in enumerate(value.items()):
            if i >= _MAX_ITEMS:
                out["…"] = f"{len(value) - _MAX_ITEMS} more entries"
                break
            out[str(k)] = _to_json_value(v, depth + 1)
        return out
    if isinstance(value, (list, tuple, set, frozenset)):
        items = list(value)
        out_list = [_to_json_value(v, depth + 1) for v in items[:_MAX_ITEMS]]
        if len(items) > _MAX_ITEMS:
            out_list.append(f"… {len(items) - _MAX_ITEMS} more items")
        return out_list
    return str(value)


def _shorten_strings(value: Any, limit: int) -> Any:
    if isinstance(value, str):
        return _truncate(value, limit)
    if isinstance(value, dict):
        return {k: _shorten_strings(v, limit) for k, v in value.items()}
    if isinstance(value, list):
        return [_shorten_strings(v, limit) for v in value]
    return value


def shorten_output(value: Any, limit: int, redactor: Optional[Redactor] = None) -> Any:
    """The activity output made JSON-safe, redacted, then shortened to about ``limit`` characters.

    Redaction happens before truncation, so a secret is never cut into a fragment that no longer
    matches. The output keeps its JSON shape when it fits (long strings inside are truncated with
    a ``…[truncated]`` mark); otherwise it becomes the truncated text of its JSON serialisation.
    """
    if value is None:
        return None
    jsonable = _to_json_value(value)
    if redactor is not None:
        jsonable = redactor.scrub(jsonable)
    if jsonable is None or isinstance(jsonable, (bool, int, float)):
        return jsonable  # a scalar (the usual output of a probe) is short: nothing to shorten
    shortened = _shorten_strings(jsonable, max(64, limit // 4))
    text = _JSON_TEXT.encode(shortened)
    if len(text) <= limit:
        return shortened
    return _truncate(_JSON_TEXT.encode(jsonable), limit)


def shorten_exception(value: Any, limit: int, redactor: Optional[Redactor] = None) -> Optional[str]:
    """The journal's ``exception`` (a list of traceback lines) as one redacted string.

    Long tracebacks keep their *end*, where the exception message is.
    """
    if value is None:
        return None
    if isinstance(value, (list, tuple)):
        text = "".join(str(v) for v in value)
    else:
        text = str(value)
    if redactor is not None:
        text = redactor.scrub_text(text)
    return _truncate(text, limit, keep="tail")


def provider_summary(provider: Any, redactor: Optional[Redactor] = None) -> Dict[str, str]:
    """``type`` plus ``module``/``func`` (python), ``path`` (process) or ``url`` (http).

    Arguments, headers and secrets of the provider are never included; URLs lose their
    user-info, query and fragment.
    """
    if not isinstance(provider, Mapping):
        return {"type": "unknown"}
    summary: Dict[str, str] = {"type": str(provider.get("type") or "unknown")}
    for key in ("module", "func", "path"):
        value = provider.get(key)
        if isinstance(value, str) and value:
            summary[key] = value
    url = provider.get("url")
    if isinstance(url, str) and url:
        summary["url"] = sanitize_url(url)
    if redactor is not None:
        summary = {k: redactor.scrub_text(v) for k, v in summary.items()}
    return summary


# --------------------------------------------------------------------------------------------
# The factory
# --------------------------------------------------------------------------------------------
def _new_id() -> str:
    """A random (version 4) UUID as text; ``str(uuid.uuid4())`` without the ``UUID`` object."""
    b = bytearray(os.urandom(16))
    b[6] = (b[6] & 0x0F) | 0x40
    b[8] = (b[8] & 0x3F) | 0x80
    h = b.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


class EventFactory:
    """Builds the run's CloudEvents. One factory per run (it holds the run id).

    Every event gets ``source`` = ``urn:chaostoolkit:<hostname>``, ``subject`` = the experiment
    title, and the extensions ``chaosrunid``, ``chaosexperiment`` and ``partitionkey`` (= the run
    id, so an ordered broker keeps a run together), plus the user's extra extensions.
    """

    def __init__(
        self,
        run_id: str,
        experiment_ref: str,
        hostname: str,
        title: str,
        redactor: Optional[Redactor] = None,
        extensions: Optional[Mapping[str, str]] = None,
        max_output_length: int = 2048,
        id_factory: Callable[[], str] = _new_id,
    ) -> None:
        self.run_id = run_id
        self.experiment_ref = experiment_ref
        self.hostname = hostname
        self.title = title
        self.redactor = redactor if redactor is not None else Redactor()
        self.extensions: Mapping[str, str] = dict(extensions or {})
        self.max_output_length = max_output_length
        self.id_factory = id_factory
        self._title = self.redactor.scrub_text(self.title)
        self._source = f"urn:chaostoolkit:{self.hostname or 'unknown'}"
        ext = {k: v for k, v in self.extensions.items() if k not in RESERVED_ATTRIBUTES}
        ext.update(
            {
                "chaosrunid": self.run_id,
                "chaosexperiment": self.experiment_ref,
                "partitionkey": self.run_id,
            }
        )
        self._extensions = ext

    @property
    def source(self) -> str:
        """The ``source`` attribute of every event of this run."""
        return self._source

    def event(self, event_type: str, time: datetime, data: Dict[str, Any]) -> CloudEvent:
        """Wrap ``data`` into a CloudEvent of ``event_type`` happening at ``time``."""
        return CloudEvent(
            id=self.id_factory(),
            source=self._source,
            type=event_type,
            time=format_time(time),
            subject=self._title,
            extensions=dict(self._extensions),
            data=data,
        )

    # ---- experiment -----------------------------------------------------------------------
    def experiment_started(
        self, experiment: Mapping[str, Any], journal: Mapping[str, Any], now: datetime
    ) -> CloudEvent:
        """``experiment.started`` at the journal's ``start``.

        Besides the design's fields it carries ``dry``: the ``chaos run --dry`` mode (``probes``,
        ``actions``, ``activities``, ``pause``) or null for a real run.
        """
        start = parse_time(journal.get("start")) or now
        tags = experiment.get("tags") or []
        description = experiment.get("description")
        dry = experiment.get("dry")
        if isinstance(dry, Enum):
            dry = dry.value
        data: Dict[str, Any] = {
            "title": self._title,
            "description": (
                self.redactor.scrub_text(str(description)) if description is not None else None
            ),
            "tags": [self.redactor.scrub_text(str(t)) for t in tags]
            if isinstance(tags, (list, tuple))
            else [],
            "start": format_time(start),
            "dry": str(dry) if dry else None,
        }
        return self.event(EXPERIMENT_STARTED, start, data)

    def experiment_finished(self, journal: Mapping[str, Any], now: datetime) -> CloudEvent:
        """``experiment.finished`` from the final journal (status, deviated, start/end/duration).

        ``status`` is the journal's: a deviated run is ``completed`` with ``deviated: true``, and a
        before-hypothesis that is not met is ``completed`` with ``deviated: false`` and
        ``before_hypothesis_met: false``. A journal without a valid status (Chaos Toolkit crashed
        before it could set one) is reported as ``aborted``.
        """
        start = parse_time(journal.get("start")) or now
        end = parse_time(journal.get("end")) or now
        status = journal.get("status")
        if status not in RUN_STATUSES:
            status = "completed" if journal.get("end") else "aborted"
        steady = journal.get("steady_states") or {}
        data = {
            "title": self._title,
            "status": status,
            "deviated": bool(journal.get("deviated", False)),
            "start": format_time(start),
            "end": format_time(end),
            "duration": _duration(journal.get("duration"), start, end),
            "before_hypothesis_met": _met(steady.get("before")),
            "after_hypothesis_met": _met(steady.get("after")),
        }
        return self.event(EXPERIMENT_FINISHED, end, data)

    # ---- hypothesis -----------------------------------------------------------------------
    def hypothesis_started(self, title: str, phase: str, start: datetime) -> CloudEvent:
        """``hypothesis.started`` for ``phase`` ``before``, ``after`` or ``during``."""
        data = {
            "title": self.redactor.scrub_text(title),
            "phase": phase,
            "start": format_time(start),
        }
        return self.event(HYPOTHESIS_STARTED, start, data)

    def hypothesis_finished(
        self, title: str, phase: str, start: datetime, end: datetime, met: Optional[bool]
    ) -> CloudEvent:
        """``hypothesis.finished``; ``met`` is ``None`` when the hypothesis was cut short."""
        data = {
            "title": self.redactor.scrub_text(title),
            "phase": phase,
            "start": format_time(start),
            "met": met,
            "end": format_time(end),
            "duration": _seconds(start, end),
        }
        return self.event(HYPOTHESIS_FINISHED, end, data)

    # ---- method and rollbacks -------------------------------------------------------------
    def section_started(self, event_type: str, start: datetime) -> CloudEvent:
        """``method.started`` or ``rollbacks.started``."""
        return self.event(event_type, start, {"start": format_time(start)})

    def section_finished(self, event_type: str, start: datetime, end: datetime) -> CloudEvent:
        """``method.finished`` or ``rollbacks.finished``."""
        data = {
            "start": format_time(start),
            "end": format_time(end),
            "duration": _seconds(start, end),
        }
        return self.event(event_type, end, data)

    # ---- activities -----------------------------------------------------------------------
    def _activity_head(self, activity: Mapping[str, Any], phase: str) -> Dict[str, Any]:
        return {
            "name": self.redactor.scrub_text(str(activity.get("name") or "")),
            "type": str(activity.get("type") or "unknown"),
            "provider": provider_summary(activity.get("provider"), self.redactor),
            "phase": phase,
        }

    def activity_started(
        self, activity: Mapping[str, Any], phase: str, start: datetime
    ) -> CloudEvent:
        """``activity.started`` for a probe or action in ``phase``."""
        data = self._activity_head(activity, phase)
        data["start"] = format_time(start)
        return self.event(ACTIVITY_STARTED, start, data)

    def activity_finished(
        self, activity: Mapping[str, Any], run: Mapping[str, Any], phase: str, now: datetime
    ) -> CloudEvent:
        """``activity.finished`` from the journal's run of the activity.

        A run cut short by an interruption has no status in the journal; it is reported as
        ``failed`` (it did not succeed) and the run's ``experiment.finished`` says
        ``interrupted``.
        """
        start = parse_time(run.get("start")) or now
        end = parse_time(run.get("end")) or now
        status = run.get("status")
        if status not in ACTIVITY_STATUSES:
            status = "failed"
        tolerance_met = run.get("tolerance_met")
        data = self._activity_head(activity, phase)
        data.update(
            {
                "start": format_time(start),
                "status": status,
                "end": format_time(end),
                "duration": _duration(run.get("duration"), start, end),
                "tolerance_met": tolerance_met if isinstance(tolerance_met, bool) else None,
                "output": shorten_output(run.get("output"), self.max_output_length, self.redactor),
                "exception": shorten_exception(
                    run.get("exception"), self.max_output_length, self.redactor
                ),
            }
        )
        return self.event(ACTIVITY_FINISHED, end, data)


def _met(state: Any) -> Optional[bool]:
    if isinstance(state, Mapping):
        met = state.get("steady_state_met")
        if isinstance(met, bool):
            return met
    return None


def hypothesis_met(state: Any) -> Optional[bool]:
    """``steady_state_met`` of a hypothesis state, or ``None``."""
    return _met(state)


def merge_met(values: Iterable[Optional[bool]]) -> Optional[bool]:
    """All met -> True, any not met -> False, nothing known -> None (continuous hypothesis)."""
    result: Optional[bool] = None
    for value in values:
        if value is False:
            return False
        if value is True:
            result = True
    return result
