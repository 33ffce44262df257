"""YAML -> validated :class:`RayalConfig`, with ``--set a.b=c`` overrides."""
from __future__ import annotations

import copy
import warnings
from pathlib import Path
from typing import Any, Iterable

import yaml
from pydantic import ValidationError

from rayal.config.sections import RayalConfig
from rayal.errors import ConfigError, RayalWarning   # ConfigError: re-exported here


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"scoring.mc_samples=4"`` -> ``(["scoring", "mc_samples"], 4)``.

    The value is parsed as YAML, so ``[1, 2]``, ``null``, ``true`` and numbers
    keep their types; anything else stays a string.
    """
    if "=" not in text:
        raise ConfigError(f"override {text!r} must look like key.path=value")
    key, raw = text.split("=", 1)
    path = [part for part in key.strip().split(".") if part]
    if not path:
        raise ConfigError(f"override {text!r} has an empty key")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return path, value


def apply_overrides(raw: dict, overrides: Iterable[str]) -> dict:
    """Return a copy of ``raw`` with each ``key.path=value`` applied."""
    merged = copy.deepcopy(raw)
    for text in overrides:
        path, value = parse_override(text)
        set_path(merged, path, value, f"override {text!r}")
    return merged


def set_path(raw: dict, path: list[str], value, where: str) -> None:
    """``raw[path[0]]...[path[-1]] = value`` in place, creating missing sections; ConfigError
    ``{where}: 'x' is not a section`` when a step is not a dict."""
    node = raw
    for part in path[:-1]:
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            raise ConfigError(f"{where}: {part!r} is not a section")
        node = child
    node[path[-1]] = value


def _format_validation_error(err: ValidationError, source: str) -> str:
    """One line: ``invalid config SOURCE: field: message (got value); field: ...``."""
    parts = []
    for item in err.errors():
        field = ".".join(str(p) for p in item["loc"]) or "(root)"
        msg = item["msg"]
        if item["type"] == "extra_forbidden":
            msg = "unknown key"
        elif item["type"] == "value_error":   # a validator's own message already names the field
            parts.append(f"{field}: {str(msg).removeprefix('Value error, ')}")
            continue
        got = repr(item.get("input"))
        parts.append(f"{field}: {msg} (got {got if len(got) <= 80 else got[:77] + '...'})")
    return f"invalid config {source}: " + "; ".join(parts)


def _names_follow_num_classes(raw: dict, merged: dict, overrides: Iterable[str]) -> None:
    """An override of ``data.num_classes`` (another dataset) that leaves the file's
    ``data.class_names`` of another length drops those names, with a warning, instead of
    failing: ``--set data.root=... --set data.num_classes=N`` then runs a config unchanged."""
    keys = {".".join(parse_override(text)[0]) for text in overrides}
    data = merged.get("data") or {}
    names, n = data.get("class_names"), data.get("num_classes")
    if ("data.num_classes" in keys and "data.class_names" not in keys and names is not None
            and n is not None and len(names) != n and (raw.get("data") or {}).get("class_names") == names):
        warnings.warn(f"data.class_names ({len(names)} names in the config) dropped: "
                      f"data.num_classes was set to {n}", RayalWarning, stacklevel=3)
        data["class_names"] = None


def config_from_dict(raw: dict, overrides: Iterable[str] = (), source: str = "<dict>") -> RayalConfig:
    overrides = list(overrides)
    merged = apply_overrides(raw or {}, overrides)
    _names_follow_num_classes(raw or {}, merged, overrides)
    try:
        return RayalConfig.model_validate(merged)
    except ValidationError as err:
        raise ConfigError(_format_validation_error(err, source)) from None


def load_config(path: str | Path | None, overrides: Iterable[str] = ()) -> RayalConfig:
    """Read a YAML config (or defaults when ``path`` is None) and validate it.

    Relative ``data.root`` / ``data.manifest`` / ``model.checkpoint`` are kept as
    given: they are resolved against the working directory, like any CLI path.
    """
    raw: dict = {}
    source = "<defaults>"
    if path is not None:
        source = str(path)
        try:
            text = Path(path).read_text()
        except FileNotFoundError:
            raise ConfigError(f"config file not found: {path}") from None
        try:
            raw = yaml.safe_load(text) or {}
        except yaml.YAMLError as err:
            raise ConfigError(f"config {path} is not valid YAML: {err}") from None
        if not isinstance(raw, dict):
            raise ConfigError(f"config {path} must be a mapping at the top level")
    return config_from_dict(raw, overrides, source)


def dump_config(config: RayalConfig) -> str:
    """The resolved config as YAML (written into every run directory)."""
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)
