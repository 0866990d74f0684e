"""Dataclass configs: from/to plain dicts and YAML, dotted command-line overrides, deep merge.

Configs are plain ``@dataclass`` types owned by the modules that use them (``Seq2SeqConfig``, ``TrainConfig``...).
This module only converts: it checks every key and value against the dataclass fields, so that a typo in a
preset or on the command line fails at once with the dotted key, the file and line where known, and what would
be valid. Reading YAML (with the line of every key) and parsing and merging overrides live in
``tformer.config_yaml``; they are re-exported here, so the CLI needs only this module.

Typical use (the CLI)::

    data, locations = load_yaml_with_lines(preset)
    overrides = parse_overrides(argv)
    locations |= {key: "command line" for key in flatten(overrides)}
    config = from_dict(RunConfig, merge(data, overrides), where=str(preset), locations=locations)
"""

from __future__ import annotations

import dataclasses
import difflib
import enum
import re
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import PurePath
from typing import Any, Literal, TypeVar, Union

from tformer.config_yaml import flatten, load_yaml, load_yaml_with_lines, merge, parse_overrides

__all__ = [
    "flatten",
    "from_dict",
    "load_yaml",
    "load_yaml_with_lines",
    "merge",
    "parse_overrides",
    "to_dict",
]

ConfigT = TypeVar("ConfigT")


@dataclasses.dataclass(frozen=True)
class _Source:
    """Where the values being converted came from, for error messages."""

    where: str
    locations: Mapping[str, str]

    def prefix(self, key: str) -> str:
        """``"file:line: "`` of the key or its nearest ancestor, else ``where``."""
        parts = re.sub(r"\[\d+\]", "", key).split(".") if key else []
        while parts:
            location = self.locations.get(".".join(parts))
            if location:
                return f"{location}: "
            parts.pop()
        return f"{self.where}: " if self.where else ""


def from_dict(
    cls: type[ConfigT],
    data: Mapping[str, Any],
    *,
    where: str = "",
    locations: Mapping[str, str] | None = None,
) -> ConfigT:
    """Build the dataclass ``cls`` from plain data (a YAML mapping), checking every key and type.

    Nested dataclasses come from mappings, tuples and lists from lists, enums from their values; ints are
    accepted for float fields, bools are not ints. ``where`` prefixes error messages (e.g. the file name);
    ``locations`` maps dotted keys to a more precise place (see ``load_yaml_with_lines``).
    Raises ValueError for unknown or missing keys and invalid choices, TypeError for wrong types.
    """
    if not (isinstance(cls, type) and dataclasses.is_dataclass(cls)):
        raise TypeError(f"from_dict needs a dataclass type, got {cls!r}")
    return _build(cls, data, key="", source=_Source(where, locations or {}))


def _build(cls: type[ConfigT], data: Any, *, key: str, source: _Source) -> ConfigT:
    section = key or cls.__name__
    if not isinstance(data, Mapping):
        raise TypeError(
            f"{source.prefix(key)}'{section}' must be a mapping of {cls.__name__} fields, got {data!r}"
        )
    fields = {field.name: field for field in dataclasses.fields(cls) if field.init}
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for name, value in data.items():
        dotted = _join(key, name)
        if name not in fields:
            raise ValueError(
                f"{source.prefix(dotted)}unknown key '{dotted}' ({_valid_keys_hint(name, fields)})"
            )
        kwargs[name] = _convert(hints[name], value, key=dotted, source=source)
    missing = [
        _join(key, name)
        for name, field in fields.items()
        if name not in kwargs
        and field.default is dataclasses.MISSING
        and field.default_factory is dataclasses.MISSING
    ]
    if missing:
        raise ValueError(f"{source.prefix(key)}missing required key(s): {', '.join(map(repr, missing))}")
    try:
        return cls(**kwargs)
    except ValueError as error:  # the dataclass's own checks (__post_init__): add where it came from
        raise ValueError(f"{source.prefix(key)}invalid '{section}': {error}") from error


def _join(prefix: str, name: object) -> str:
    return f"{prefix}.{name}" if prefix else str(name)


def _valid_keys_hint(name: object, fields: Mapping[str, object]) -> str:
    valid = f"valid: {', '.join(fields)}"
    close = difflib.get_close_matches(str(name), list(fields), n=1)
    return f"did you mean '{close[0]}'? {valid}" if close else valid


def _convert(tp: Any, value: Any, *, key: str, source: _Source) -> Any:
    """Check ``value`` against the annotation ``tp`` and convert it (list -> tuple, str -> enum, ...)."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        return _convert_union(tp, args, value, key=key, source=source)
    if origin is Literal:
        return _choose(tp, args, value, key=key, source=source)
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return value if isinstance(value, tp) else _build(tp, value, key=key, source=source)
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return value if isinstance(value, tp) else _choose(tp, list(tp), value, key=key, source=source)
    if tp in (tuple, list) or origin in (tuple, list):
        return _convert_sequence(tp, value, key=key, source=source)
    if tp is dict or origin is dict:
        if not isinstance(value, Mapping):
            raise _wrong_type(tp, value, key=key, source=source)
        key_type, value_type = args or (Any, Any)
        return {
            _convert(key_type, k, key=key, source=source): _convert(
                value_type, v, key=_join(key, k), source=source
            )
            for k, v in value.items()
        }
    if tp is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if tp is int and isinstance(value, bool):  # bool is a subclass of int, but True is not a layer count
        raise _wrong_type(tp, value, key=key, source=source)
    if isinstance(tp, type) and issubclass(tp, PurePath) and isinstance(value, str):
        return tp(value)
    if tp is type(None) or tp is None:
        if value is None:
            return None
        raise _wrong_type(type(None), value, key=key, source=source)
    if not isinstance(tp, type):
        raise TypeError(f"unsupported annotation {tp!r} on config field '{key}'")
    if isinstance(value, tp):
        return value
    raise _wrong_type(tp, value, key=key, source=source)


def _convert_union(tp: Any, args: tuple[Any, ...], value: Any, *, key: str, source: _Source) -> Any:
    if value is None and type(None) in args:
        return None
    members = [arg for arg in args if arg is not type(None)]
    if len(members) == 1:  # Optional[X]: X's own error is the most useful one
        return _convert(members[0], value, key=key, source=source)
    tagged = _tagged_members(members)
    if tagged and isinstance(value, Mapping):
        return _convert_tagged(tagged, value, key=key, source=source)
    for member in members:
        try:
            return _convert(member, value, key=key, source=source)
        except (TypeError, ValueError):
            continue
    raise _wrong_type(tp, value, key=key, source=source)


def _tagged_members(members: list[Any]) -> dict[str, type] | None:
    """A union of dataclasses that each fix a `type: Literal["name"]` field: the tag -> member table, else None.

    Such a union is chosen by its `type` key (say `model.type: lstm_attention`), so errors come from the chosen
    class, not from a guess; a mapping without `type` gets the first member, the family's default."""
    table = {}
    for member in members:
        hint = typing.get_type_hints(member).get("type") if dataclasses.is_dataclass(member) else None
        if typing.get_origin(hint) is not Literal or len(typing.get_args(hint)) != 1:
            return None
        table[typing.get_args(hint)[0]] = member
    return table


def _convert_tagged(tagged: dict[str, type], value: Mapping, *, key: str, source: _Source) -> Any:
    tag = value.get("type", next(iter(tagged)))
    if not isinstance(tag, str) or tag not in tagged:
        dotted = _join(key, "type")
        raise ValueError(
            f"{source.prefix(dotted)}unknown {dotted} {tag!r} (valid: {', '.join(map(str, tagged))})"
        )
    return _build(tagged[tag], value, key=key, source=source)


def _choose(tp: Any, choices: Sequence[Any], value: Any, *, key: str, source: _Source) -> Any:
    """Pick the Literal value or enum member equal to ``value`` (same type too, so that True is not 1)."""
    for choice in choices:
        plain = choice.value if isinstance(choice, enum.Enum) else choice
        if type(plain) is type(value) and plain == value:
            return choice
    valid = ", ".join(repr(choice.value if isinstance(choice, enum.Enum) else choice) for choice in choices)
    raise ValueError(f"{source.prefix(key)}invalid value {value!r} for '{key}' (valid: {valid})")


def _convert_sequence(tp: Any, value: Any, *, key: str, source: _Source) -> Any:
    if not isinstance(value, (list, tuple)):
        raise _wrong_type(tp, value, key=key, source=source)
    container = typing.get_origin(tp) or tp
    args = typing.get_args(tp)
    if not args:
        return container(value)
    if container is list or (len(args) == 2 and args[1] is Ellipsis):
        item_types = [args[0]] * len(value)
    elif len(args) == len(value):
        item_types = list(args)
    else:
        raise _wrong_type(tp, value, key=key, source=source)
    return container(
        _convert(item_type, item, key=f"{key}[{index}]", source=source)
        for index, (item_type, item) in enumerate(zip(item_types, value, strict=True))
    )


def _wrong_type(tp: Any, value: Any, *, key: str, source: _Source) -> TypeError:
    return TypeError(
        f"{source.prefix(key)}wrong type for '{key}': expected {_type_name(tp)}, "
        f"got {value!r} ({type(value).__name__})"
    )


def _type_name(tp: Any) -> str:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (Union, types.UnionType):
        return " | ".join(_type_name(arg) for arg in args)
    if origin is Literal:
        return " | ".join(repr(arg) for arg in args)
    if origin in (tuple, list) and args:
        if origin is list or (len(args) == 2 and args[1] is Ellipsis):
            return f"a list of {_type_name(args[0])}"
        return f"a list of {len(args)} items ({', '.join(_type_name(arg) for arg in args)})"
    if tp in (tuple, list):
        return "a list"
    if origin is dict or tp is dict:
        return "a mapping"
    if tp is type(None):
        return "null"
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return f"a mapping of {tp.__name__} fields"
    if isinstance(tp, type) and issubclass(tp, PurePath):
        return "a path (str)"
    return getattr(tp, "__name__", repr(tp))


def to_dict(obj: Any) -> dict[str, Any]:
    """A dataclass instance as plain YAML/JSON data: enums by value, tuples as lists, paths as str.

    ``from_dict(type(obj), to_dict(obj)) == obj``. Fields with ``init=False`` are derived, so they are left out.
    """
    if not dataclasses.is_dataclass(obj) or isinstance(obj, type):
        raise TypeError(f"to_dict needs a dataclass instance, got {obj!r}")
    return _plain(obj, key="")


def _plain(value: Any, *, key: str) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {
            field.name: _plain(getattr(value, field.name), key=_join(key, field.name))
            for field in dataclasses.fields(value)
            if field.init
        }
    if isinstance(value, enum.Enum):  # before the int/str check: IntEnum and str enums are ints and strs
        return _plain(value.value, key=key)
    if isinstance(value, (list, tuple)):
        return [_plain(item, key=f"{key}[{index}]") for index, item in enumerate(value)]
    if isinstance(value, Mapping):
        return {_plain(k, key=key): _plain(v, key=_join(key, k)) for k, v in value.items()}
    if isinstance(value, PurePath):
        return str(value)
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(
        f"cannot write config field '{key}' = {value!r} ({type(value).__name__}): "
        "use plain values (bool, int, float, str, None), enums, paths, lists, mappings or dataclasses"
    )
