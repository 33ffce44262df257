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

__all__ = ["load_plugins", "resolve"]


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
            continue
        path = os.path.abspath(spec)
        name = "rayal_plugin_" + hashlib.sha1(path.encode()).hexdigest()[:12]
        names.append(name)
        if name in sys.modules:
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
    return names


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
