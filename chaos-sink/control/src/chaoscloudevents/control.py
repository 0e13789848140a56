"""Chaos Toolkit control entry points (``module: chaoscloudevents.control``).

Chaos Toolkit calls :func:`configure_control` once per run with the control's ``arguments``
plus the run's experiment, loaded configuration and secrets, settings and event registry. The
control registers a :class:`~chaoscloudevents.handler.CloudEventsRunHandler` on that registry;
everything else happens in the handler. :func:`cleanup_control` is called *before* the final
``finish`` notification, so the flush is done by the handler at ``finish``.

Nothing in this module raises into Chaos Toolkit: a bad argument or an internal error disables
the control for the run with one warning, and the experiment runs as if it were not there.
"""

from __future__ import annotations

import atexit
import logging
import os
import platform
import uuid
import weakref
from typing import Any, Dict, List, Mapping, Optional

from chaoscloudevents.events import EventFactory, experiment_reference
from chaoscloudevents.handler import CloudEventsRunHandler
from chaoscloudevents.options import DEFAULTS, ControlOptions, OptionError
from chaoscloudevents.redact import Redactor, sanitize_url
from chaoscloudevents.sender import RetryPolicy, Sender
from chaoscloudevents.transport import HttpTransport, default_token_path

__all__ = ["configure_control", "cleanup_control"]

logger = logging.getLogger("chaostoolkit.cloudevents")

_live_handlers: "weakref.WeakSet[CloudEventsRunHandler]" = weakref.WeakSet()


def configure_control(
    sink_url: Optional[str] = None,
    mode: str = DEFAULTS["mode"],
    timeout: float = DEFAULTS["timeout"],
    extensions: Optional[Dict[str, Any]] = None,
    flush_timeout: float = DEFAULTS["flush_timeout"],
    max_retries: int = DEFAULTS["max_retries"],
    queue_size: int = DEFAULTS["queue_size"],
    headers: Optional[Dict[str, str]] = None,
    max_output_length: int = DEFAULTS["max_output_length"],
    public_configuration_keys: Optional[List[str]] = None,
    concurrency: int = DEFAULTS["concurrency"],
    experiment: Optional[Dict[str, Any]] = None,
    configuration: Optional[Dict[str, Any]] = None,
    secrets: Optional[Dict[str, Dict[str, Any]]] = None,
    settings: Optional[Dict[str, Any]] = None,
    event_registry: Any = None,
    **unknown: Any,
) -> None:
    """Start emitting this run's events as CloudEvents.

    :param sink_url: where to POST the events (a Knative sink or broker URL); defaults to the
        ``K_SINK`` environment variable. ``${name}`` refers to the configuration or secrets.
    :param mode: ``binary`` (attributes in ``ce-*`` headers, default) or ``structured``.
    :param timeout: seconds allowed for each HTTP attempt (connect and read).
    :param extensions: extra CloudEvents extension attributes put on every event
        (names ``[a-z0-9]``); Knative's ``K_CE_OVERRIDES`` extensions are applied after them.
    :param flush_timeout: at the end of the run, seconds to wait at most for undelivered events.
    :param max_retries: retries per event after the first attempt (exponential backoff).
    :param queue_size: events kept while the sink is slow or down (the oldest are dropped).
    :param headers: extra HTTP headers for every request (e.g. ``Authorization``).
    :param max_output_length: characters kept of an activity's output and of its exception.
    :param public_configuration_keys: configuration keys whose values may appear in events
        (every other configuration value and every secret is masked as ``***``).
    :param concurrency: events in flight at once, one connection each (``1``: one at a time, in
        order).

    ``experiment``, ``configuration``, ``secrets``, ``settings`` and ``event_registry`` are
    injected by Chaos Toolkit.
    """
    try:
        _configure(
            arguments=dict(
                sink_url=sink_url,
                mode=mode,
                timeout=timeout,
                extensions=extensions,
                flush_timeout=flush_timeout,
                max_retries=max_retries,
                queue_size=queue_size,
                headers=headers,
                max_output_length=max_output_length,
                public_configuration_keys=public_configuration_keys,
                concurrency=concurrency,
            ),
            unknown=unknown,
            experiment=experiment or {},
            configuration=configuration or {},
            secrets=secrets or {},
            event_registry=event_registry,
        )
    except OptionError as exc:
        logger.warning("CloudEvents control disabled for this run: %s", exc)
    except Exception:
        logger.warning(
            "CloudEvents control disabled for this run: internal error (details at debug level)"
        )
        logger.debug("CloudEvents control configuration failed", exc_info=True)


def cleanup_control() -> None:
    """Nothing to do: Chaos Toolkit calls this before its final ``finish`` notification, which is
    where the handler emits ``experiment.finished`` and flushes."""


def _substitute(
    arguments: Dict[str, Any], configuration: Mapping[str, Any], secrets: Mapping[str, Any]
) -> Dict[str, Any]:
    """Resolve ``${name}`` in the arguments (Chaos Toolkit does not for ``configure_control``)."""
    from chaoslib import substitute

    return dict(substitute(arguments, dict(configuration), dict(secrets)) or {})


def _configure(
    arguments: Dict[str, Any],
    unknown: Mapping[str, Any],
    experiment: Dict[str, Any],
    configuration: Mapping[str, Any],
    secrets: Mapping[str, Any],
    event_registry: Any,
) -> None:
    if unknown:
        logger.warning(
            "CloudEvents control: ignoring unknown argument(s): %s", ", ".join(sorted(unknown))
        )
    if event_registry is None or not hasattr(event_registry, "register"):
        logger.warning(
            "CloudEvents control disabled: this Chaos Toolkit does not pass an event registry "
            "to controls (chaostoolkit-lib 1.44 or later is required)"
        )
        return

    options = ControlOptions.from_arguments(
        os.environ, **_substitute(arguments, configuration, secrets)
    )
    if options.sink_url is None:
        logger.warning(
            "CloudEvents control disabled for this run: no sink URL "
            "(set the sink_url argument or the K_SINK environment variable)"
        )
        return
    sink_label = sanitize_url(options.sink_url)

    for existing in getattr(event_registry, "handlers", []):
        if isinstance(existing, CloudEventsRunHandler) and existing.sink_label == sink_label:
            logger.debug("CloudEvents control already emits to %s for this run", sink_label)
            return

    run_id = str(uuid.uuid4())
    redactor = Redactor.for_run(configuration, secrets, options.public_configuration_keys)
    factory = EventFactory(
        run_id=run_id,
        experiment_ref=experiment_reference(experiment),
        hostname=platform.node(),
        title=str(experiment.get("title") or ""),
        redactor=redactor,
        extensions=options.extensions,
        max_output_length=options.max_output_length,
    )
    token_path = default_token_path()

    def new_transport() -> HttpTransport:
        return HttpTransport(
            options.sink_url,  # type: ignore[arg-type]
            timeout=options.timeout,
            headers=options.headers,
            ca_certs_pem=options.ca_certs_pem,
            token_path=token_path,
        )

    sender = Sender(
        new_transport(),
        sink_label=sink_label,
        queue_size=options.queue_size,
        policy=RetryPolicy(max_retries=options.max_retries),
        concurrency=options.concurrency,
        transport_factory=new_transport,
    )
    hypothesis = experiment.get("steady-state-hypothesis") or {}
    handler = CloudEventsRunHandler(
        factory,
        sender,
        sink_label=sink_label,
        mode=options.mode,
        flush_timeout=options.flush_timeout,
        hypothesis_title=str(hypothesis.get("title") or ""),
    )
    event_registry.register(handler)
    _live_handlers.add(handler)
    logger.info(
        "CloudEvents: run %s of experiment %s is sent to %s (%s mode)",
        run_id,
        factory.experiment_ref,
        sink_label,
        options.mode,
    )


@atexit.register
def _flush_at_exit() -> None:
    """Safety net for a process that ends without Chaos Toolkit's ``finish`` notification."""
    for handler in list(_live_handlers):
        try:
            handler.close()
        except Exception:
            logger.debug("CloudEvents control: flush at exit failed", exc_info=True)
