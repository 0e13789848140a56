"""Keep secrets and configuration values on the machine.

Two layers:

1. Structure: events are built from an allow-list of fields (names, types, statuses, times,
   provider ``type``/``module``/``func``/``path``/``url``). The experiment's ``configuration`` and
   ``secrets`` blocks, activity ``arguments``, provider ``headers``, and URL user-info, query and
   fragment are never copied into an event.
2. Values: every free-text field that is sent (title, description, tags, activity names,
   provider fields, output, exception) is scanned for the *values* of the run's loaded secrets
   and configuration, and each occurrence is replaced by ``***``. This catches a probe that
   echoes ``${token}``, a traceback quoting a password, or a title built from ``${service}``.
"""

from __future__ import annotations

import re
from typing import Any, Iterable, Iterator, Mapping, Optional, Pattern, Sequence
from urllib.parse import quote, urlsplit, urlunsplit

__all__ = ["MASK", "Redactor", "sanitize_url", "leaf_values"]

MASK = "***"
#: Values shorter than this are not scrubbed from free text: they carry no secret and would
#: match everywhere (``"1"``, ``"eu"``, ``"yes"``). They are still never sent structurally.
DEFAULT_MIN_LENGTH = 4


def leaf_values(obj: Any) -> Iterator[Any]:
    """Every scalar leaf of a nested mapping/sequence structure."""
    if isinstance(obj, Mapping):
        for value in obj.values():
            yield from leaf_values(value)
    elif isinstance(obj, (list, tuple, set, frozenset)):
        for value in obj:
            yield from leaf_values(value)
    elif obj is not None:
        yield obj


def _as_text(value: Any) -> Optional[str]:
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, (int, float)):
        return str(value)
    return None


class Redactor:
    """Replaces known sensitive values by :data:`MASK` in strings and nested structures."""

    def __init__(self, values: Iterable[Any] = (), min_length: int = DEFAULT_MIN_LENGTH) -> None:
        texts = set()
        for value in values:
            text = _as_text(value)
            if text is None:
                continue
            text = text.strip()
            if len(text) < min_length:
                continue
            texts.add(text)
            # the same value inside a URL or a query string
            encoded = quote(text, safe="")
            if encoded != text:
                texts.add(encoded)
        self._values = frozenset(texts)
        self._pattern: Optional[Pattern[str]] = None
        if texts:
            ordered = sorted(texts, key=len, reverse=True)
            self._pattern = re.compile("|".join(re.escape(t) for t in ordered))

    @classmethod
    def for_run(
        cls,
        configuration: Optional[Mapping[str, Any]],
        secrets: Optional[Mapping[str, Any]],
        public_configuration_keys: Sequence[str] = (),
        min_length: int = DEFAULT_MIN_LENGTH,
    ) -> "Redactor":
        """A redactor for every secret value and every configuration value of a run.

        ``configuration`` and ``secrets`` are the *loaded* values Chaos Toolkit passes to
        controls (environment variables and vault entries already resolved). Top-level
        configuration keys listed in ``public_configuration_keys`` are not redacted.
        """
        values = list(leaf_values(secrets or {}))
        public = set(public_configuration_keys)
        for key, value in (configuration or {}).items():
            if key not in public:
                values.extend(leaf_values(value))
        return cls(values, min_length=min_length)

    def __bool__(self) -> bool:
        return self._pattern is not None

    def scrub_text(self, text: str) -> str:
        """``text`` with every sensitive value replaced by ``***``."""
        if self._pattern is None or not text:
            return text
        return self._pattern.sub(MASK, text)

    def scrub(self, value: Any) -> Any:
        """A copy of a JSON-like structure with sensitive values masked (keys included)."""
        if self._pattern is None:
            return value
        if isinstance(value, str):
            return self.scrub_text(value)
        if isinstance(value, bool) or value is None:
            return value
        if isinstance(value, (int, float)):
            return MASK if str(value) in self._values else value
        if isinstance(value, Mapping):
            return {self.scrub_text(str(k)): self.scrub(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [self.scrub(v) for v in value]
        return value


def sanitize_url(url: str) -> str:
    """``url`` without user-info, query string and fragment (they often carry credentials)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<invalid url>"
    if not parts.scheme and not parts.netloc:
        return parts.path
    host = parts.hostname or ""
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    try:
        port = parts.port
    except ValueError:
        port = None
    netloc = f"{host}:{port}" if port else host
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))
