"""rayal's user-facing errors: one base class, :class:`RayalError`, and a few kinds.

Every error that a user can fix (a config field, an input item, the pool's state, the
cluster's resources) is raised as a :class:`RayalError` whose message is ONE line naming
the field or item, e.g. ``"tune.cpus_per_trial: 3.0 CPUs per trial do not fit ..."``.
The ``rayal`` command maps every RayalError (also when Ray Train or a Ray actor wrapped it)
to ``rayal <cmd>: error: <message>`` and exit status 2, with no traceback unless ``--debug``.

This module imports nothing of rayal, so any layer (config, data, pool, pipeline, cli)
may raise these without import cycles. Subclasses keep their ``__init__(message)``
signature, so they pickle through Ray unchanged.
"""

from __future__ import annotations

__all__ = ["ConfigError", "DataError", "PoolError", "RayalError", "RayalWarning", "ResourceError"]


class RayalError(Exception):
    """Base of every user-facing rayal error; ``str(err)`` is the one-line message."""


class ConfigError(RayalError, ValueError):
    """A config file, field or ``--set`` override is invalid; the message names the field.

    Also a ValueError, for callers that caught the config loader's ValueError before.
    """


class DataError(RayalError):
    """An input item (frame, mask, manifest row, score table) is bad; the message names it."""


class PoolError(RayalError):
    """The pool's durable state (snapshot, journal, coordinator) refuses the request."""


class ResourceError(RayalError):
    """The Ray cluster cannot run the requested work (e.g. one Tune trial's bundle does not fit)."""


class RayalWarning(UserWarning):
    """Something rayal ignored or changed for the user (e.g. a ``compare.params`` entry of a
    strategy no longer compared); the ``rayal`` command prints it as ``rayal <cmd>: warning:``."""
