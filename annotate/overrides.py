"""Backend settings on the command line: dotted `key=value`, the grammar of atom-train's config
overrides (`frames=8`, `ee_dims=0,1,2`, `camera=none`, `boundaries_settings.window_s=0.4`), checked
against the backend's pydantic config; and the listing of every setting that `atom-annotate
settings` prints, generated from the configs' fields and descriptions."""

from __future__ import annotations

import difflib
import types
import typing
from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import BaseModel

from atomvla.errors import UserError


class OverrideError(UserError, ValueError):
    """A `key=value` setting that is malformed or names no setting of the backend."""


def parse_overrides(backend: str, config: type[BaseModel], items: Sequence[str]) -> dict[str, Any]:
    """{setting: value} from `key=value` items; a dotted key sets a key of a dict setting.

    Values stay text for pydantic to convert and check, except a list (`a,b` or `[a,b]`) and
    `none` for a setting that may be unset.
    """
    out: dict[str, Any] = {}
    fields = config.model_fields
    for item in items:
        key, sep, raw = item.partition("=")
        path = key.strip().split(".")
        if not sep or not all(path):
            raise OverrideError(f"setting {item!r} is not key=value (e.g. frames=8)")
        head = path[0]
        if head not in fields:
            close = difflib.get_close_matches(head, list(fields), n=3, cutoff=0.5)
            hint = f"; did you mean {' or '.join(close)}?" if close else ""
            raise OverrideError(
                f"setting {key!r}: the {backend} backend has no setting {head!r}{hint} "
                f"(`atom-annotate settings --backend {backend}` lists them)"
            )
        if len(path) > 1 and typing.get_origin(fields[head].annotation) is not dict:
            raise OverrideError(f"setting {key!r}: {head!r} is a value, not a group of settings")
        node = out
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = _value(raw.strip(), fields[head].annotation if len(path) == 1 else Any)
    return out


def _value(raw: str, annotation: Any) -> Any:
    args = typing.get_args(annotation)
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        if raw.lower() in ("none", "null") and type(None) in args:
            return None
        annotation = next(a for a in args if a is not type(None))
    if typing.get_origin(annotation) in (tuple, list):
        return [s.strip() for s in raw.strip("[]()").split(",") if s.strip()]
    return raw


def merge(base: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """`base` with `overrides` applied; a dict setting is updated key by key, not replaced."""
    out = dict(base)
    for key, value in overrides.items():
        out[key] = merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def settings_rows(config: type[BaseModel]) -> list[tuple[str, str, str, str]]:
    """(setting, type, default, description) per field of `config`, in declaration order."""
    rows = []
    for name, info in config.model_fields.items():
        default = info.get_default(call_default_factory=True)
        shown = ",".join(map(str, default)) if isinstance(default, (tuple, list)) else default
        rows.append((name, _kind(info.annotation), "none" if shown is None else str(shown), info.description or ""))
    return rows


def _kind(annotation: Any) -> str:
    """How a value of `annotation` is written: `float`, `closed|moved|lifted`, `list of int or none`."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        return " or ".join("none" if a is type(None) else _kind(a) for a in args)
    if origin is typing.Literal:
        return "|".join(map(str, args))
    if origin in (tuple, list):
        return f"list of {_kind(args[0])} (a,b)"
    if origin is dict:
        return "settings (dotted keys)"
    return getattr(annotation, "__name__", str(annotation))
