"""Plugins and lazy references: import a module (or a ``.py`` file) so that it registers its
strategies, measures and units; resolve ``"package.module:attribute"`` hooks on first use.

numpy / pyarrow layer: imports nothing from the rest of rayal.
"""
from __future__ import annotations

import hashlib
import importlib
import importlib.util
import os
import sys
from typing import Any, Callable, Iterable

__all__ = ["ENV_VAR", "load_env_plugins", "load_plugins", "resolve"]

# plugins loaded in this process, passed on to processes it starts (local Ray workers inherit
# the environment): a registry lookup that misses in a worker imports them (load_env_plugins)
ENV_VAR = "RAYAL_PLUGINS"


def load_plugins(plugins: Iterable[str] | None = ()) -> list[str]:
    """Import strategy / measure / unit plugins: module names (``my_pkg.strategies``) or ``.py``
    files. Importing a plugin runs its ``register_*`` calls.

    A file is imported once per process under a name derived from its absolute path, so loading
    it again (every ``select`` carries its plugins, which survives actor restarts) is a no-op.
    Returns the module names imported (or found already imported).

    Raises:
        ImportError: a plugin cannot be found or imported; the message names the plugin.
    """
    names = []
    for spec in plugins or ():
        spec = str(spec)
        if not spec.endswith(".py"):
            try:
                importlib.import_module(spec)
            except ModuleNotFoundError as err:
                if err.name and spec.startswith(err.name):
                    raise ImportError(f"cannot import plugin {spec!r}: no module named {err.name!r}") from None
                raise
            names.append(spec)
            _remember(spec)
            continue
        path = os.path.abspath(spec)
        name = "rayal_plugin_" + hashlib.sha1(path.encode()).hexdigest()[:12]
        names.append(name)
        if name in sys.modules:
            _remember(path)
            continue
        module_spec = importlib.util.spec_from_file_location(name, path)
        if module_spec is None or module_spec.loader is None or not os.path.isfile(path):
            raise ImportError(f"cannot import plugin {path}: no such file")
        module = importlib.util.module_from_spec(module_spec)
        sys.modules[name] = module
        try:
            module_spec.loader.exec_module(module)
        except BaseException:
            del sys.modules[name]
            raise
        _remember(path)
    return names


def _remember(spec: str) -> None:
    known = [s for s in os.environ.get(ENV_VAR, "").split(os.pathsep) if s]
    if spec not in known:
        os.environ[ENV_VAR] = os.pathsep.join(known + [spec])


def load_env_plugins() -> bool:
    """Import the plugins named in ``$RAYAL_PLUGINS`` (set by :func:`load_plugins` in the
    process that started this one); True when that imported anything new."""
    specs = [s for s in os.environ.get(ENV_VAR, "").split(os.pathsep) if s]
    before = len(sys.modules)
    load_plugins(specs)
    return len(sys.modules) != before


def resolve(hook: Callable | str | None) -> Callable | None:
    """A hook given as a callable, or as ``"package.module:attribute"`` (imported now)."""
    if hook is None or callable(hook):
        return hook
    module, sep, attr = str(hook).partition(":")
    if not sep or not module or not attr:
        raise ValueError(f"hook {hook!r} must be a callable or 'package.module:attribute'")
    target: Any = importlib.import_module(module)
    for part in attr.split("."):
        target = getattr(target, part)
    return target
