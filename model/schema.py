"""Typed dataclass configuration, read strictly from YAML mappings and from command-line flags.

Every configuration in this project (the worker's `ServiceConfig`, a training recipe, each
command's settings) is a tree of dataclasses with its defaults and checks (`__post_init__`)
written once. `from_mapping` builds one from parsed YAML; `add_arguments` gives a parser one
flag per leaf field and `from_arguments` applies the flags that were given. A wrong key, type
or value is a `ConfigError` naming it.
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

_SCALARS = (bool, int, float, str, Path)
_MISSING = dataclasses.MISSING


class ConfigError(ValueError):
    """A configuration value or key the schema does not accept; the message names it."""


def from_mapping(cls: type, values: Mapping[str, Any], where: str) -> Any:
    """A `cls` dataclass from `values`, recursively and strictly."""
    if not isinstance(values, Mapping):
        raise ConfigError(f"{where} must be a mapping of settings, got {values!r}")
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(f"unknown key(s) in {where}: {unknown}; known: {sorted(known)}")
    kwargs = {name: _value(hints[name], value, f"{where}.{name}") for name, value in values.items()}
    return _built(cls, kwargs, where)


def add_arguments(parser: argparse.ArgumentParser, cls: type) -> None:
    """A flag per leaf field of the dataclass `cls`: nested dataclasses are flattened
    (`--interval` sets `sampling.interval`), a name that two sections share takes its section
    as a prefix (`--self-blend-max-shift`). The type comes from the annotation; bool fields are
    `--name` / `--no-name`; a tuple of fixed length takes that many values, `tuple[T, ...]`
    one or more (repeating the flag adds more); a field without a default is required; a
    field's metadata may give `help`, make it `positional` or name its `flag`."""
    leaves = list(_leaves(cls, ()))
    counts = Counter(path[-1] for path, _, _ in leaves)
    for path, hint, spec in leaves:
        name = path[-1] if counts[path[-1]] == 1 else "_".join(path)
        default = _default(spec)
        kind, optional = _scalar(hint)
        shown = spec.metadata.get("help", "")
        if default is not _MISSING:
            shown = f"{shown} (default: {_shown(default)})".lstrip()
        # Not given: absent from the namespace (a given "none" is a value: None).
        options: dict[str, Any] = {"default": argparse.SUPPRESS, "help": shown or None}
        if kind is bool:
            options["action"] = argparse.BooleanOptionalAction
        elif typing.get_origin(kind) is tuple:
            items = typing.get_args(kind)
            options["type"] = items[0]
            if items[-1] is Ellipsis:
                options.update(nargs="+", action="extend")
            else:
                options["nargs"] = len(items)
        else:
            options["type"] = kind
        if optional and kind is not bool:
            options["help"] = f"{shown}; 'none' for no value".lstrip("; ")
            options["type"] = _or_none(options["type"])
        if kind is not bool:
            options["metavar"] = name.upper()
        if spec.metadata.get("positional"):
            parser.add_argument(".".join(path), **options)
        else:
            options["dest"] = ".".join(path)
            options["required"] = default is _MISSING
            parser.add_argument("--" + spec.metadata.get("flag", name.replace("_", "-")), **options)


def parse_command(parser: argparse.ArgumentParser, cls: type, argv: list[str] | None = None) -> Any:
    """The command line as `cls` (its flags added with `add_arguments`); a value its checks
    refuse is a usage error, exit code 2 and the reason, as argparse reports a malformed one."""
    try:
        return from_arguments(parser.parse_args(argv), cls)
    except ConfigError as error:
        parser.error(str(error))


def from_arguments(args: argparse.Namespace, cls: type, base: Any = None) -> Any:
    """`base` (default: `cls` from its required flags) with the flags of
    `add_arguments(parser, cls)` that were given, checked again by each dataclass it changes."""
    given = {
        name: tuple(value) if isinstance(value, list) else value
        for name, value in vars(args).items()
    }
    if base is None:
        required = [spec.name for spec in dataclasses.fields(cls) if _default(spec) is _MISSING]
        base = _built(cls, {name: given[name] for name in required}, "flags")
    return _replaced(base, given, ())


def _replaced(config: Any, given: Mapping[str, Any], path: tuple[str, ...]) -> Any:
    changes = {}
    for spec in dataclasses.fields(config):
        dest = ".".join((*path, spec.name))
        current = getattr(config, spec.name)
        if dataclasses.is_dataclass(current):
            nested = _replaced(current, given, (*path, spec.name))
            if nested is not current:
                changes[spec.name] = nested
        elif dest in given and given[dest] != current:
            changes[spec.name] = given[dest]
    if not changes:
        return config
    return _built(type(config), {**_fields(config), **changes}, ".".join(path) or "flags")


def _built(cls: type, kwargs: Mapping[str, Any], where: str) -> Any:
    try:
        return cls(**kwargs)
    except ConfigError:
        raise
    except (ValueError, TypeError) as error:
        raise ConfigError(f"{where}: {error}") from error


def _fields(config: Any) -> dict[str, Any]:
    return {spec.name: getattr(config, spec.name) for spec in dataclasses.fields(config)}


def _leaves(cls: type, path: tuple[str, ...]):
    hints = typing.get_type_hints(cls)
    for spec in dataclasses.fields(cls):
        hint = hints[spec.name]
        if dataclasses.is_dataclass(hint):
            yield from _leaves(hint, (*path, spec.name))
        else:
            yield (*path, spec.name), hint, spec


def _default(spec: dataclasses.Field) -> Any:
    if spec.default is not _MISSING:
        return spec.default
    if spec.default_factory is not _MISSING:
        return spec.default_factory()
    return _MISSING


def _scalar(hint: Any) -> tuple[Any, bool]:
    """The one type a flag parses to, and whether None is allowed too."""
    allowed = _alternatives(hint)
    kinds = [kind for kind in allowed if kind is not type(None)]
    if len(kinds) != 1 or not (kinds[0] in _SCALARS or typing.get_origin(kinds[0]) is tuple):
        raise TypeError(f"no command-line flag for a field of type {hint}")
    return kinds[0], len(kinds) < len(allowed)


def _alternatives(hint: Any) -> tuple[Any, ...]:
    """The types a `A | B` annotation allows; a plain annotation's own type."""
    return typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)


def _or_none(parse: Any) -> Any:
    def parsed(text: str) -> Any:
        return None if text.lower() == "none" else parse(text)

    parsed.__name__ = getattr(parse, "__name__", "value")
    return parsed


def _shown(value: Any) -> str:
    return " ".join(str(item) for item in value) if isinstance(value, tuple) else str(value)


def _value(hint: Any, value: Any, where: str) -> Any:
    if dataclasses.is_dataclass(hint):
        return from_mapping(hint, value, where)
    allowed = _alternatives(hint)
    for kind in allowed:
        if kind is type(None) and value is None:
            return None
        if kind is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if kind is int and isinstance(value, int) and not isinstance(value, bool):
            return value
        if kind in (str, bool) and isinstance(value, kind):
            return value
        if kind is Path and isinstance(value, str):
            return Path(value)
        if typing.get_origin(kind) is tuple and isinstance(value, (list, tuple)):
            return _tuple(kind, value, where)
    names = " or ".join("null" if k is type(None) else _type_name(k) for k in allowed)
    raise ConfigError(f"{where} must be {names}, got {value!r}")


def _tuple(kind: Any, values: list | tuple, where: str) -> tuple:
    items = typing.get_args(kind)
    if items[-1] is Ellipsis:
        items = (items[0],) * len(values)
    elif len(items) != len(values):
        raise ConfigError(f"{where} must hold {len(items)} values, got {list(values)!r}")
    return tuple(_value(item, value, f"{where}[{i}]") for i, (item, value) in
                 enumerate(zip(items, values, strict=True)))  # fmt: skip


def _type_name(kind: Any) -> str:
    return str(kind) if typing.get_origin(kind) is tuple else kind.__name__
