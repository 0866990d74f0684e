"""Plain nested dicts from YAML files and dotted command-line overrides: loading with key lines, merging.

The numbers, booleans and lines read here feed ``tformer.config.from_dict``, which checks them against the
dataclass configs; ``tformer.config`` re-exports everything public from this module.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

__all__ = ["flatten", "load_yaml", "load_yaml_with_lines", "merge", "parse_overrides"]


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
