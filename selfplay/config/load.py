"""Loading a config: TOML file or dict -> Config, types checked per field (a Literal field takes
a string; checks.py says which names are allowed), dotted overrides applied the same way."""
from __future__ import annotations

import dataclasses
import sys
from pathlib import Path
from typing import Any, Literal, get_args, get_origin, get_type_hints

from selfplay.config.schema import Config

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


def _coerce(value: Any, typ: Any, name: str) -> Any:
    origin = get_origin(typ)
    if origin is list:
        (inner,) = get_args(typ)
        if not isinstance(value, list):
            raise ValueError(f"config: {name}: expected a list, got {type(value).__name__}")
        return [_coerce(v, inner, f"{name}[{i}]") for i, v in enumerate(value)]
    if origin is Literal:
        typ = type(get_args(typ)[0])  # the allowed names are checks.py's rule, with the field's name
    if typ is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if typ in (int, float, str, bool) and (type(value) is not typ):
        raise ValueError(f"config: {name}: expected {typ.__name__}, got {value!r}")
    return value


# fields renamed since an earlier release: say where they went, not only that they are unknown
_MOVED = {"pose.sandbox": "sandbox.mode", "pose.exec_timeout": "sandbox.timeout"}


def _fill(obj: Any, data: dict[str, Any], prefix: str) -> None:
    hints = get_type_hints(type(obj))
    names = {f.name for f in dataclasses.fields(obj)}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if key not in names:
            if name in _MOVED:
                raise ValueError(f"config: {name}: moved to {_MOVED[name]}")
            raise ValueError(f"config: {name}: unknown field (known: {', '.join(sorted(names))})")
        current = getattr(obj, key)
        if dataclasses.is_dataclass(current):
            if not isinstance(value, dict):
                raise ValueError(f"config: {name}: expected a table [{name}]")
            _fill(current, value, f"{name}.")
        else:
            setattr(obj, key, _coerce(value, hints[key], name))


def from_dict(data: dict[str, Any]) -> Config:
    cfg = Config()
    _fill(cfg, data, "")
    return cfg


def load_config(path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> Config:
    """Defaults <- TOML file <- overrides ({"solve.samples": 4, ...}); then validate."""
    data: dict[str, Any] = {}
    if path is not None:
        p = Path(path)
        if not p.exists():
            raise ValueError(f"config: {p}: file not found")
        if not p.is_file():
            raise ValueError(f"config: {p}: is a directory, not a TOML file")
        try:
            data = tomllib.loads(p.read_text())
        except tomllib.TOMLDecodeError as e:
            raise ValueError(f"config: {p}: invalid TOML ({e})") from None
    return apply_overrides(from_dict(data), overrides).validate()


def parse_setting(text: str) -> tuple[str, Any]:
    """One `SECTION.FIELD=VALUE` setting (`selfplay run --set`, the ablation scripts' variants):
    the value is read as TOML (true, 3, 0.5, "x", ["a", "b"]); anything else is a bare string. The
    field itself is checked where it is applied (apply_overrides)."""
    key, eq, value = text.partition("=")
    key = key.strip()
    if not eq or "." not in key or not all(key.split(".")):
        raise ValueError(f"config: --set {text!r}: expected SECTION.FIELD=VALUE (e.g. pose.enabled=false)")
    try:
        return key, tomllib.loads(f"v = {value.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        return key, value.strip()


def apply_overrides(cfg: Config, overrides: dict[str, Any] | None) -> Config:
    """Set dotted fields ({"solve.samples": 4, ...}; None values are skipped) with the same type
    checks as the file's; the one way every command layers flags over a config."""
    for dotted, value in (overrides or {}).items():
        if value is None:
            continue
        *parents, leaf = dotted.split(".")
        target: Any = cfg
        for part in parents:
            if not hasattr(target, part):
                raise ValueError(f"config: {dotted}: unknown field")
            target = getattr(target, part)
        _fill(target, {leaf: value}, ".".join(parents) + "." if parents else "")
    return cfg
