"""The control's arguments (options.py) and its Chaos Toolkit entry points (control.py)."""

from __future__ import annotations

import json
import logging
from typing import Any, Dict, List

import pytest
from chaoslib.run import EventHandlerRegistry

from chaoscloudevents import control
from chaoscloudevents.handler import CloudEventsRunHandler
from chaoscloudevents.options import DEFAULTS, ControlOptions, OptionError

SINK = "http://broker-ingress.knative-eventing.svc.cluster.local/chaos/default"


def options(environ: Dict[str, str] = None, **kwargs: Any) -> ControlOptions:
    return ControlOptions.from_arguments(environ or {}, **kwargs)


def test_defaults_with_k_sink() -> None:
    o = options({"K_SINK": SINK})
    assert o.sink_url == SINK
    assert (
        o.mode,
        o.timeout,
        o.flush_timeout,
        o.max_retries,
        o.queue_size,
        o.max_output_length,
    ) == ("binary", 2.0, 5.0, 4, 1000, 2048)
    assert DEFAULTS["mode"] == "binary"
    assert o.extensions == {} and o.headers == {} and o.ca_certs_pem is None


def test_argument_wins_over_k_sink() -> None:
    assert (
        options({"K_SINK": SINK}, sink_url="https://other.example/").sink_url
        == "https://other.example/"
    )


def test_no_sink_at_all() -> None:
    assert options({"K_SINK": ""}).sink_url is None


@pytest.mark.parametrize("url", ["ftp://x", "broker:8080", "/relative", "http://"])
def test_invalid_sink(url: str) -> None:
    with pytest.raises(OptionError, match="sink_url"):
        options(sink_url=url)


def test_mode_is_case_insensitive() -> None:
    assert options(sink_url=SINK, mode="Structured").mode == "structured"


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"mode": "batch"}, "mode must be one of"),
        ({"timeout": 0}, "timeout"),
        ({"timeout": "fast"}, "timeout must be a number"),
        ({"flush_timeout": -1}, "flush_timeout"),
        ({"max_retries": 1.5}, "max_retries must be an integer"),
        ({"queue_size": 0}, "queue_size"),
        ({"max_output_length": True}, "max_output_length"),
        ({"extensions": {"Bad-Name": "x"}}, "a-z and 0-9"),
        ({"extensions": {"chaosrunid": "x"}}, "set by the control"),
        ({"extensions": {"ok": {"nested": 1}}}, "string, number or boolean"),
        ({"extensions": ["x"]}, "mapping"),
        ({"headers": {"ce-id": "x"}}, "control owns it"),
        ({"headers": {"Content-Type": "x"}}, "control owns it"),
        ({"headers": {"X-A": "a\r\nInjected: 1"}}, "line break"),
        ({"headers": {"X-A": "Zürich ✓"}}, "ISO-8859-1"),
        ({"headers": {"X Team": "a"}}, "not a valid HTTP header name"),
        ({"headers": {"X-Team:": "a"}}, "not a valid HTTP header name"),
        ({"public_configuration_keys": "region"}, "list of strings"),
    ],
)
def test_invalid_arguments_name_the_argument(kwargs: Dict[str, Any], message: str) -> None:
    with pytest.raises(OptionError, match=message):
        options(sink_url=SINK, **kwargs)


def test_numbers_from_substituted_strings() -> None:
    o = options(sink_url=SINK, timeout="0.5", max_retries="2")
    assert (o.timeout, o.max_retries) == (0.5, 2)


def test_extensions_and_knative_overrides() -> None:
    environ = {
        "K_CE_OVERRIDES": json.dumps(
            {
                "extensions": {
                    "Team": "platform",
                    "cluster": "prod",
                    "chaosrunid": "no",
                    "bad_name": "x",
                }
            }
        ),
        "K_CA_CERTS": "-----BEGIN CERTIFICATE-----",
    }
    o = options(environ, sink_url=SINK, extensions={"team": "chaos", "tier": 1, "critical": True})
    # overrides are applied last (they win); names are lower-cased; reserved/invalid ones skipped
    assert o.extensions == {"team": "platform", "tier": "1", "critical": "true", "cluster": "prod"}
    assert o.ca_certs_pem == "-----BEGIN CERTIFICATE-----"


@pytest.mark.parametrize("raw", ["", "   ", "not json", "[1]", '{"extensions": 3}'])
def test_odd_k_ce_overrides_are_ignored(raw: str) -> None:
    assert options({"K_CE_OVERRIDES": raw}, sink_url=SINK).extensions == {}


# ---- configure_control --------------------------------------------------------------------------
EXPERIMENT = {
    "title": "t",
    "description": "d",
    "steady-state-hypothesis": {"title": "h", "probes": []},
    "method": [],
}


def handlers(registry: EventHandlerRegistry) -> List[CloudEventsRunHandler]:
    return [h for h in registry.handlers if isinstance(h, CloudEventsRunHandler)]


@pytest.fixture(autouse=True)
def no_knative_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("K_SINK", "K_CE_OVERRIDES", "K_CA_CERTS"):
        monkeypatch.delenv(name, raising=False)


def test_configure_registers_a_handler_with_substituted_arguments(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="chaostoolkit.cloudevents")
    registry = EventHandlerRegistry()
    control.configure_control(
        sink_url="${sink}",
        headers={"Authorization": "Bearer ${token}"},
        experiment=EXPERIMENT,
        configuration={"sink": "http://user:pw@127.0.0.1:9/x?k=v"},
        secrets={"s": {"token": "abcdef"}},
        event_registry=registry,
    )
    [handler] = handlers(registry)
    assert handler.sink_label == "http://127.0.0.1:9/x"
    assert handler.hypothesis_title == "h"
    assert handler.factory.experiment_ref == control.experiment_reference(EXPERIMENT)
    assert handler.sender._transport._headers == {"Authorization": "Bearer abcdef"}  # noqa: SLF001
    messages = " ".join(r.getMessage() for r in caplog.records)
    assert "pw" not in messages and "abcdef" not in messages and "k=v" not in messages
    handler.close()


def test_configure_twice_for_the_same_sink_registers_once() -> None:
    registry = EventHandlerRegistry()
    for _ in range(2):
        control.configure_control(sink_url=SINK, experiment=EXPERIMENT, event_registry=registry)
    control.configure_control(
        sink_url="http://other/", experiment=EXPERIMENT, event_registry=registry
    )
    assert [h.sink_label for h in handlers(registry)] == [SINK, "http://other/"]
    for h in handlers(registry):
        h.close()


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"sink_url": SINK, "timeout": "abc"}, "disabled for this run: timeout must be a number"),
        ({}, "no sink URL"),
        ({"sink_url": SINK, "event_registry": None}, "event registry"),
        ({"sink_url": SINK, "experiment": "not a dict"}, "internal error"),
    ],
)
def test_configure_never_raises(
    kwargs: Dict[str, Any], message: str, caplog: pytest.LogCaptureFixture
) -> None:
    registry = EventHandlerRegistry()
    args: Dict[str, Any] = {"experiment": EXPERIMENT, "event_registry": registry}
    args.update(kwargs)
    control.configure_control(**args)
    assert handlers(registry) == []
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and message in warnings[0]


def test_unknown_arguments_are_reported_not_fatal(caplog: pytest.LogCaptureFixture) -> None:
    registry = EventHandlerRegistry()
    control.configure_control(
        sink_url=SINK, sink="typo", experiment=EXPERIMENT, event_registry=registry
    )
    assert len(handlers(registry)) == 1
    assert any("unknown argument(s): sink" in r.getMessage() for r in caplog.records)
    handlers(registry)[0].close()


def test_cleanup_control_is_harmless() -> None:
    assert control.cleanup_control() is None
