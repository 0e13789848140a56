"""chaostoolkit-cloudevents: a Chaos Toolkit control that emits a run's events as CloudEvents.

Enable it with the module ``chaoscloudevents.control`` in an experiment's ``controls`` block or
in the Chaos Toolkit settings (see the package README).
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
