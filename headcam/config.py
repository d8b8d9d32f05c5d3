"""Typed configs: dataclass defaults, overridden by a YAML file, then by ``key=value`` arguments.

One place resolves a run's config (nested dataclasses, dotted keys such as ``optim.lr=0.1``);
an unknown key is a :class:`UsageError` that names its near matches, so a typo never silently
becomes a default.
"""

from __future__ import annotations

import dataclasses
import difflib
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

from headcam.console import UsageError

C = TypeVar("C")


def valid_keys(cls: type, prefix: str = "") -> list[str]:
    """All dotted keys of a (nested) config dataclass."""
    keys = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        t = hints[f.name]
        if dataclasses.is_dataclass(t):
            keys += valid_keys(t, prefix + f.name + ".")
        else:
            keys.append(prefix + f.name)
    return keys


def _unknown(key: str, cls: type) -> UsageError:
    """Near matches only (within the key's own section), else that section's keys: the full list of a
    run's keys is thousands of characters that bury the fix."""
    section, _, leaf = key.rpartition(".")
    keys = valid_keys(cls)
    inside = [k[len(section) + 1:] for k in keys if k.startswith(section + ".")] if section else keys
    if not inside:  # the section itself is unknown: judge its first part at the top level
        section, leaf, inside = "", key.split(".")[0], keys
    names = list(dict.fromkeys(k.split(".")[0] for k in inside))
    # cutoff 0.5: a swap in a two-letter key (rl) still matches; only matches about as close as the best are named
    close = difflib.get_close_matches(leaf, names, n=3, cutoff=0.5)
    if close:
        best = difflib.SequenceMatcher(None, leaf, close[0]).ratio()
        close = [c for c in close if difflib.SequenceMatcher(None, leaf, c).ratio() >= best - 0.1]
    prefix = f"{section}." if section else ""
    if close:
        return UsageError(f"unknown config key '{key}' (did you mean {' or '.join(repr(prefix + c) for c in close)}?)")
    where = f"section '{section}'" if section else "the top level"
    return UsageError(f"unknown config key '{key}'; keys of {where}: {', '.join(names)}")


def _coerce(value: Any, t: Any, key: str) -> Any:
    origin = typing.get_origin(t)
    if t is Any or value is None:
        return value
    if origin in (list, tuple):
        (inner, *_) = typing.get_args(t) or (Any,)
        if not isinstance(value, list | tuple):
            raise UsageError(f"config key '{key}' wants a list, got {value!r}")
        return origin(_coerce(v, inner, key) for v in value)
    if origin is typing.Union or origin is getattr(__import__("types"), "UnionType", None):
        args = [a for a in typing.get_args(t) if a is not type(None)]
        return _coerce(value, args[0], key) if len(args) == 1 else value
    if t is float and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if t is float and isinstance(value, str):  # YAML 1.1 reads "5e-4" (no dot) as a string
        try:
            return float(value)
        except ValueError:
            raise UsageError(f"config key '{key}' wants a number, got {value!r}") from None
    if t in (int, str, bool) and not isinstance(value, t):
        raise UsageError(f"config key '{key}' wants {t.__name__}, got {value!r}")
    return value


def merge_into(obj: Any, data: dict[str, Any], root: type, prefix: str = "") -> Any:
    """``obj`` with the (nested) keys of ``data`` replaced, typed and checked against ``root``'s keys."""
    hints = typing.get_type_hints(type(obj))
    names = {f.name for f in dataclasses.fields(obj)}
    changes = {}
    for k, v in data.items():
        if k not in names:
            raise _unknown(prefix + k, root)
        t = hints[k]
        if dataclasses.is_dataclass(t):
            if not isinstance(v, dict):
                raise UsageError(f"config key '{prefix + k}' is a section; give its keys")
            changes[k] = merge_into(getattr(obj, k), v, root, prefix + k + ".")
        else:
            changes[k] = _coerce(v, t, prefix + k)
    return dataclasses.replace(obj, **changes)


def parse_overrides(overrides: list[str]) -> dict[str, Any]:
    """``["a.b=1", "c=[1,2]"]`` -> nested dict, values parsed as YAML scalars/lists."""
    out: dict[str, Any] = {}
    for item in overrides:
        if "=" not in item:
            raise UsageError(f"expected key=value, got '{item}'")
        key, raw = item.split("=", 1)
        node = out
        *parents, leaf = key.strip().split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = yaml.safe_load(raw) if raw != "" else ""
    return out


def merged(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    """``base`` with ``update`` merged in key by key (nested sections too): the later value of a leaf wins,
    a section given in both keeps the keys of each."""
    out = dict(base)
    for k, v in update.items():
        out[k] = merged(out[k], v) if isinstance(out.get(k), dict) and isinstance(v, dict) else v
    return out


def read_config(path: str | Path | None = None, overrides: list[str] = ()) -> dict[str, Any]:
    """The raw (untyped) settings of a YAML file at ``path`` <- ``key=value`` overrides, merged key by key.

    For stages that resolve a section in two steps (the trainer bases ``augment`` on a recipe's
    preset); everyone else calls :func:`load_config`.
    """
    data: dict[str, Any] = {}
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise UsageError(f"config file not found: {p}")
        try:
            data = yaml.safe_load(p.read_text()) or {}
        except yaml.YAMLError as e:
            raise UsageError(f"cannot parse {p}: {e}") from None
        if not isinstance(data, dict):
            raise UsageError(f"{p} must hold a mapping of config keys")
    return merged(data, parse_overrides(list(overrides)))


def load_config(cls: type[C], path: str | Path | None = None, overrides: list[str] = ()) -> C:
    """Defaults of ``cls`` <- YAML file at ``path`` <- ``key=value`` overrides."""
    return merge_into(cls(), read_config(path, overrides), cls)


def to_dict(cfg: Any) -> dict[str, Any]:
    """Plain dict of a config (tuples as lists), for YAML files beside checkpoints and reports."""
    return _plain(dataclasses.asdict(cfg))


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value
