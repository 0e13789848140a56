"""The control's arguments: defaults, environment fallbacks (Knative) and validation."""

from __future__ import annotations

import json
import logging
import math
import re
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple
from urllib.parse import urlsplit

from chaoscloudevents.events import RESERVED_ATTRIBUTES
from chaoscloudevents.transport import MODES

__all__ = ["ControlOptions", "OptionError", "DEFAULTS"]

logger = logging.getLogger("chaostoolkit.cloudevents")

_EXTENSION_NAME = re.compile(r"^[a-z0-9]+$")
_HEADER_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")  # an RFC 9110 token
_FORBIDDEN_HEADERS = ("content-type", "content-length", "host", "transfer-encoding", "traceparent", "tracestate")

#: Defaults of the control's arguments (documented in the README).
DEFAULTS: Dict[str, Any] = {
    "sink_url": None,  # falls back to $K_SINK
    "mode": "binary",
    "timeout": 2.0,
    "flush_timeout": 5.0,
    "max_retries": 4,
    "queue_size": 1000,
    "max_output_length": 2048,
    "concurrency": 4,
}


class OptionError(ValueError):
    """An argument of the control is invalid; the message names it."""


class ControlOptions:
    """Validated settings of the control for one run (a plain class: see ``events.CloudEvent``)."""

    __slots__ = (
        "sink_url",
        "mode",
        "timeout",
        "flush_timeout",
        "max_retries",
        "queue_size",
        "max_output_length",
        "concurrency",
        "extensions",
        "headers",
        "public_configuration_keys",
        "ca_certs_pem",
    )

    def __init__(
        self,
        sink_url: Optional[str],
        mode: str = DEFAULTS["mode"],
        timeout: float = DEFAULTS["timeout"],
        flush_timeout: float = DEFAULTS["flush_timeout"],
        max_retries: int = DEFAULTS["max_retries"],
        queue_size: int = DEFAULTS["queue_size"],
        max_output_length: int = DEFAULTS["max_output_length"],
        extensions: Optional[Mapping[str, str]] = None,
        headers: Optional[Mapping[str, str]] = None,
        public_configuration_keys: Tuple[str, ...] = (),
        ca_certs_pem: Optional[str] = None,
        concurrency: int = DEFAULTS["concurrency"],
    ) -> None:
        self.concurrency = concurrency
        self.sink_url = sink_url
        self.mode = mode
        self.timeout = timeout
        self.flush_timeout = flush_timeout
        self.max_retries = max_retries
        self.queue_size = queue_size
        self.max_output_length = max_output_length
        self.extensions: Mapping[str, str] = dict(extensions or {})
        self.headers: Mapping[str, str] = dict(headers or {})
        self.public_configuration_keys = public_configuration_keys
        self.ca_certs_pem = ca_certs_pem

    def __repr__(self) -> str:
        # no header values: they may carry credentials
        return (
            f"ControlOptions(sink_url=..., mode={self.mode!r}, timeout={self.timeout!r}, "
            f"flush_timeout={self.flush_timeout!r}, headers={sorted(self.headers)!r})"
        )

    @classmethod
    def from_arguments(
        cls,
        environ: Mapping[str, str],
        sink_url: Optional[str] = None,
        mode: Any = DEFAULTS["mode"],
        timeout: Any = DEFAULTS["timeout"],
        flush_timeout: Any = DEFAULTS["flush_timeout"],
        max_retries: Any = DEFAULTS["max_retries"],
        queue_size: Any = DEFAULTS["queue_size"],
        max_output_length: Any = DEFAULTS["max_output_length"],
        extensions: Optional[Mapping[str, Any]] = None,
        headers: Optional[Mapping[str, Any]] = None,
        public_configuration_keys: Optional[Sequence[str]] = None,
        concurrency: Any = DEFAULTS["concurrency"],
    ) -> "ControlOptions":
        """Validate the control's arguments; Knative's ``K_SINK``, ``K_CE_OVERRIDES`` and
        ``K_CA_CERTS`` are read from ``environ``. Raises :class:`OptionError`."""
        raw_url = sink_url if sink_url not in (None, "") else environ.get("K_SINK", "")
        url: Optional[str] = str(raw_url or "").strip() or None
        if url is not None:
            parts = urlsplit(url)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise OptionError(
                    "sink_url (or K_SINK) must be an absolute http:// or https:// URL"
                )
        mode_value = str(mode or DEFAULTS["mode"]).strip().lower()
        if mode_value not in MODES:
            raise OptionError(f"mode must be one of {', '.join(MODES)}, not {mode!r}")

        ext = _extensions("extensions", extensions or {}, strict=True)
        overrides = _ce_overrides(environ.get("K_CE_OVERRIDES", ""))
        ext.update(overrides)  # Knative's overrides are applied last: they win

        return cls(
            sink_url=url,
            mode=mode_value,
            timeout=_number("timeout", timeout, minimum=0.001),
            flush_timeout=_number("flush_timeout", flush_timeout, minimum=0.0),
            max_retries=int(_number("max_retries", max_retries, minimum=0, integer=True)),
            queue_size=int(_number("queue_size", queue_size, minimum=1, integer=True)),
            max_output_length=int(
                _number("max_output_length", max_output_length, minimum=64, integer=True)
            ),
            extensions=ext,
            headers=_headers(headers or {}),
            public_configuration_keys=_string_list(
                "public_configuration_keys", public_configuration_keys or []
            ),
            ca_certs_pem=(environ.get("K_CA_CERTS") or None),
            concurrency=int(_number("concurrency", concurrency, minimum=1, integer=True)),
        )


def _number(name: str, value: Any, minimum: float, integer: bool = False) -> float:
    if isinstance(value, bool):
        raise OptionError(f"{name} must be a number, not a boolean")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise OptionError(f"{name} must be a number, not {value!r}") from None
    if not math.isfinite(number) or number < minimum:
        raise OptionError(f"{name} must be a number >= {minimum}, not {value!r}")
    if integer and not number.is_integer():
        raise OptionError(f"{name} must be an integer, not {value!r}")
    return number


def _attribute_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _extensions(name: str, values: Any, strict: bool) -> Dict[str, str]:
    if not isinstance(values, Mapping):
        raise OptionError(f"{name} must be a mapping of extension name to value")
    out: Dict[str, str] = {}
    for key, value in values.items():
        ext = str(key).lower()
        problem = None
        if not _EXTENSION_NAME.match(ext):
            problem = f"extension name {key!r} must use only a-z and 0-9"
        elif ext in RESERVED_ATTRIBUTES:
            problem = f"extension name {key!r} is an attribute set by the control"
        elif value is None or isinstance(value, (dict, list)):
            problem = f"extension {key!r} must have a string, number or boolean value"
        if problem:
            if strict:
                raise OptionError(f"{name}: {problem}")
            logger.warning("CloudEvents control: ignoring %s: %s", name, problem)
            continue
        if len(ext) > 20:
            logger.warning(
                "CloudEvents control: extension name %r is longer than the 20 characters "
                "CloudEvents recommends",
                ext,
            )
        out[ext] = _attribute_value(value)
    return out


def _ce_overrides(raw: str) -> Dict[str, str]:
    """Knative's ``K_CE_OVERRIDES`` (``{"extensions": {...}}``; may be empty)."""
    if not raw or not raw.strip():
        return {}
    try:
        parsed = json.loads(raw)
    except ValueError:
        logger.warning("CloudEvents control: ignoring K_CE_OVERRIDES, it is not valid JSON")
        return {}
    if not isinstance(parsed, Mapping):
        logger.warning("CloudEvents control: ignoring K_CE_OVERRIDES, it is not a JSON object")
        return {}
    extensions = parsed.get("extensions") or {}
    if not isinstance(extensions, Mapping):
        logger.warning("CloudEvents control: ignoring K_CE_OVERRIDES.extensions, not an object")
        return {}
    return _extensions("K_CE_OVERRIDES", extensions, strict=False)


def _headers(values: Any) -> Dict[str, str]:
    if not isinstance(values, Mapping):
        raise OptionError("headers must be a mapping of HTTP header name to value")
    out: Dict[str, str] = {}
    for key, value in values.items():
        name = str(key).strip()
        lower = name.lower()
        if not name or lower in _FORBIDDEN_HEADERS or lower.startswith("ce-"):
            raise OptionError(f"headers: {key!r} cannot be set (the control owns it)")
        if not _HEADER_NAME.fullmatch(name):
            raise OptionError(f"headers: {key!r} is not a valid HTTP header name")
        text = _attribute_value(value)
        if "\r" in text or "\n" in text:
            raise OptionError(f"headers: the value of {key!r} contains a line break")
        try:
            text.encode("latin-1")
        except UnicodeEncodeError:
            raise OptionError(f"headers: the value of {key!r} is not ISO-8859-1 text") from None
        out[name] = text
    return out


def _string_list(name: str, values: Any) -> Tuple[str, ...]:
    if isinstance(values, str) or not isinstance(values, (list, tuple)):
        raise OptionError(f"{name} must be a list of strings")
    items: List[str] = []
    for value in values:
        if not isinstance(value, str):
            raise OptionError(f"{name} must be a list of strings")
        items.append(value)
    return tuple(items)
