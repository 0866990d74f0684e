"""Dataclass configs: from/to plain dicts and YAML, dotted command-line overrides, deep merge.

Configs are plain ``@dataclass`` types owned by the modules that use them (``Seq2SeqConfig``, ``TrainConfig``...).
This module only converts: it checks every key and value against the dataclass fields, so that a typo in a
preset or on the command line fails at once with the dotted key, the file and line where known, and what would
be valid.

Typical use (the CLI)::

    data, locations = load_yaml_with_lines(preset)
    overrides = parse_overrides(argv)
    locations |= {key: "command line" for key in flatten(overrides)}
    config = from_dict(RunConfig, merge(data, overrides), where=str(preset), locations=locations)
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import enum
import re
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path, PurePath
from typing import Any, Literal, TypeVar, Union

import yaml

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


# ----------------------------------------------------------------------------------------------------------------
# YAML


class _Loader(yaml.SafeLoader):
    """SafeLoader with YAML 1.2 numbers and booleans.

    YAML 1.1 (PyYAML's default) reads ``3e-4`` as a *string* because it wants ``3.0e-4``, ``yes/no/on/off`` as
    booleans (``lang: no`` becomes False), ``010`` as octal 8 and ``1:30`` as 90. These bite people writing
    learning rates, language codes and seeds, so floats accept any exponent form, only true/false are
    booleans and ints are decimal (or 0x hex); anything else stays a string.
    """


_FLOAT_TAG = "tag:yaml.org,2002:float"
_BOOL_TAG = "tag:yaml.org,2002:bool"
_INT_TAG = "tag:yaml.org,2002:int"
_MERGE_TAG = "tag:yaml.org,2002:merge"
_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag not in (_FLOAT_TAG, _BOOL_TAG, _INT_TAG)]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(
    _INT_TAG, re.compile(r"^(?:[-+]?(?:0|[1-9][0-9_]*)|[-+]?0x[0-9a-fA-F_]+)$"), list("-+0123456789")
)
_Loader.add_implicit_resolver(_BOOL_TAG, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF"))
_Loader.add_implicit_resolver(
    _FLOAT_TAG,
    re.compile(
        r"""^(?:[-+]?[0-9][0-9_]*\.[0-9_]*(?:[eE][-+]?[0-9]+)?
            |[-+]?[0-9][0-9_]*[eE][-+]?[0-9]+
            |[-+]?\.[0-9_]+(?:[eE][-+]?[0-9]+)?
            |[-+]?\.(?:inf|Inf|INF)
            |\.(?:nan|NaN|NAN))$""",
        re.X,
    ),
    list("-+0123456789."),
)


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML file whose top level is a mapping; errors name the file (and line)."""
    return load_yaml_with_lines(path)[0]


def load_yaml_with_lines(path: str | Path) -> tuple[dict[str, Any], dict[str, str]]:
    """Read a YAML mapping and where each key came from: ``{"model.n_layers": "presets/x.yaml:12", ...}``.

    Pass the second value as ``from_dict(..., locations=...)`` so its errors point at the line. Keys inside
    lists are not indexed; errors there point at the list's key. A key given twice is an error (plain YAML
    silently keeps the last one).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file not found: {path}")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise ValueError(f"{path}: not UTF-8 text ({error})") from error
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        # Locations are read before construction because constructing expands `<<` merge keys in place.
        lines: dict[str, int] = {}
        if isinstance(node, yaml.MappingNode):
            _record_key_lines(node, prefix="", path=path, lines=lines)
        data = None if node is None else loader.construct_document(node)
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        line = f":{mark.line + 1}" if mark is not None else ""
        raise ValueError(f"{path}{line}: invalid YAML: {error.problem or error.context}") from error
    except yaml.YAMLError as error:
        raise ValueError(f"{path}: invalid YAML: {error}") from error
    finally:
        loader.dispose()
    if not isinstance(data, dict):
        found = "an empty file" if data is None else f"a {type(data).__name__}"
        raise ValueError(f"{path}: the top level must be a mapping of keys to values, found {found}")
    return data, {key: f"{path}:{line}" for key, line in lines.items()}


def _record_key_lines(node: yaml.MappingNode, *, prefix: str, path: Path, lines: dict[str, int]) -> None:
    for key_node, value_node in node.value:
        if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == _MERGE_TAG:
            continue
        key = f"{prefix}{key_node.value}"
        line = key_node.start_mark.line + 1
        if key in lines:
            raise ValueError(f"{path}:{line}: duplicate key '{key}' (first given on line {lines[key]})")
        lines[key] = line
        if isinstance(value_node, yaml.MappingNode):
            _record_key_lines(value_node, prefix=f"{key}.", path=path, lines=lines)


# ----------------------------------------------------------------------------------------------------------------
# Overrides and merging

_DOTTED_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*")


def parse_overrides(args: Sequence[str]) -> dict[str, Any]:
    """``["--model.n_layers=4", "--train.lr", "3e-4"]`` -> ``{"model": {"n_layers": 4}, "train": {"lr": 3e-4}}``.

    Values are read as YAML (numbers, true/false, null, ``[a, b]`` lists; anything else is a string; quote a
    number to keep it a string: ``--name="'42'"``). A later override of the same key wins.
    """
    result: dict[str, Any] = {}
    index = 0
    while index < len(args):
        item = args[index]
        if not item.startswith("--"):
            raise ValueError(
                f"malformed override {item!r}: expected --section.key=value or --section.key value"
            )
        if "=" in item:
            key, text = item[2:].split("=", 1)
            index += 1
        elif index + 1 < len(args) and not args[index + 1].startswith("--"):
            key, text = item[2:], args[index + 1]
            index += 2
        else:
            raise ValueError(f"override {item!r} has no value: write {item}=VALUE or {item} VALUE")
        if not _DOTTED_KEY.fullmatch(key):
            raise ValueError(f"malformed override {item!r}: {key!r} is not a dotted key like model.n_layers")
        nested: Any = _parse_override_value(text, item=item)
        for part in reversed(key.split(".")):
            nested = {part: nested}
        result = merge(result, nested)
    return result


def _parse_override_value(text: str, *, item: str) -> Any:
    if not text.strip():
        raise ValueError(
            f"override {item!r} has an empty value: write null for None or '' for an empty string"
        )
    try:
        return yaml.load(text, Loader=_Loader)  # _Loader is a SafeLoader: no arbitrary objects
    except yaml.YAMLError as error:
        problem = getattr(error, "problem", None) or error
        raise ValueError(
            f"malformed override {item!r}: cannot read the value as YAML ({problem}); quote it if it is a string"
        ) from error


def merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """Deep merge: nested mappings merge key by key, anything else in ``override`` replaces. Inputs are not changed.

    Replacing a whole section (a mapping) with a scalar or list is an error, as it is almost always a mistyped
    key; replacing it with None (null) is allowed, to switch off an optional section.
    """
    return _merged(base, override, prefix="")


def _merged(base: Mapping[str, Any], override: Mapping[str, Any], *, prefix: str) -> dict[str, Any]:
    result = {key: copy.deepcopy(value) for key, value in base.items()}
    for key, value in override.items():
        dotted = f"{prefix}{key}"
        current = base.get(key)
        if isinstance(current, Mapping) and isinstance(value, Mapping):
            result[key] = _merged(current, value, prefix=f"{dotted}.")
        elif isinstance(current, Mapping) and value is not None:
            raise ValueError(
                f"cannot replace the section '{dotted}' (a mapping) with {value!r}: "
                f"override one of its keys ({dotted}.KEY=...) or set it to null"
            )
        else:
            result[key] = copy.deepcopy(value)
    return result


def flatten(tree: Mapping[str, Any]) -> dict[str, Any]:
    """``{"model": {"n_layers": 4}}`` -> ``{"model.n_layers": 4}``; lists and empty mappings are leaves."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, Mapping) and value:
            flat.update({f"{key}.{sub_key}": sub_value for sub_key, sub_value in flatten(value).items()})
        else:
            flat[str(key)] = value
    return flat


# ----------------------------------------------------------------------------------------------------------------
# Dataclass <-> dict


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
    for member in members:
        try:
            return _convert(member, value, key=key, source=source)
        except (TypeError, ValueError):
            continue
    raise _wrong_type(tp, value, key=key, source=source)


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
