"""Bad configuration: unknown keys, wrong types, negative sizes, heads that do not divide d_model, non-finite rates.

Each is a ValueError or TypeError naming the key (and, from a YAML file, the file and line), never another
exception type, a crash later while building the model, or a silently accepted value.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import tempfile
from pathlib import Path
from typing import Any

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from tformer.config import flatten, from_dict, to_dict
from tformer.models.gpt import GPTConfig
from tformer.models.seq2seq import Seq2SeqConfig
from tformer.registry import MODEL_FAMILIES
from tformer.tasks.runs import load_run_config
from tformer.tasks.translation import TranslationRunConfig
from tformer.training.train_config import TrainConfig

PROPERTY = settings(max_examples=300, deadline=None)
FEWER = settings(max_examples=120, deadline=None)  # each example builds a model or writes a file
SCALAR = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**40), max_value=2**40),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=8),
)
JSON_VALUE = st.recursive(
    SCALAR,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
)


@functools.cache
def _tiny_dates() -> dict[str, Any]:
    """The tiny preset as plain data (read once: callers change copies only, through _set)."""
    return to_dict(load_run_config("tiny_dates"))


def _set(tree: dict[str, Any], dotted: str, value: Any) -> dict[str, Any]:
    tree = json.loads(json.dumps(tree))
    *parents, leaf = dotted.split(".")
    node = tree
    for key in parents:
        node = node[key]
    node[leaf] = value
    return tree


# ---------------------------------------------------------------------------------------------------------------
# from_dict: any value at any key


@PROPERTY
@given(data=st.data())
def test_any_value_at_any_key_is_accepted_or_a_clear_error(data: st.DataObject) -> None:
    base = _tiny_dates()
    dotted = data.draw(st.sampled_from(sorted(flatten(base))), label="key")
    value = data.draw(JSON_VALUE, label="value")
    try:
        config = from_dict(TranslationRunConfig, _set(base, dotted, value), where="run.yaml")
    except (TypeError, ValueError) as error:
        message = str(error)
        assert message.startswith("run.yaml: ")
        section, _, field = dotted.rpartition(".")
        assert field in message or section in message, message  # names the key (or its section's check)
        return
    assert isinstance(config, TranslationRunConfig)


@pytest.mark.parametrize("value", [[], {"a": 1}])
def test_an_unhashable_model_type_is_a_clear_error(value: Any) -> None:
    with pytest.raises((TypeError, ValueError), match="run.yaml: .*model.type"):
        from_dict(TranslationRunConfig, _set(_tiny_dates(), "model.type", value), where="run.yaml")


@PROPERTY
@given(
    section=st.sampled_from(["", "data.", "model.", "train.", "train.schedule.", "decode."]),
    name=st.from_regex(r"[a-z_]{1,12}", fullmatch=True),
)
def test_an_unknown_key_is_named_with_the_valid_ones(section: str, name: str) -> None:
    base = _tiny_dates()
    if f"{section}{name}" in flatten(base) or (section and name in _sections(base, section)):
        return  # a real key
    with pytest.raises(ValueError, match=f"unknown key '{section}{name}' .*valid: "):
        from_dict(TranslationRunConfig, _set(base, f"{section}{name}", 1))


def _sections(base: dict[str, Any], section: str) -> dict[str, Any]:
    node = base
    for key in section.rstrip(".").split("."):
        node = node[key]
    return node


SIZE_FIELDS = {
    Seq2SeqConfig: (
        "src_vocab_size",
        "tgt_vocab_size",
        "d_model",
        "n_heads",
        "n_encoder_layers",
        "n_decoder_layers",
        "d_ff",
        "max_len",
    ),
    GPTConfig: ("vocab_size", "context_length", "d_model", "n_heads", "n_layers", "d_ff"),
}


@pytest.mark.parametrize("cls, field", [(cls, f) for cls, fields in SIZE_FIELDS.items() for f in fields])
@pytest.mark.parametrize("size", [0, -1, -512])
def test_zero_or_negative_sizes_are_named(cls: type, field: str, size: int) -> None:
    with pytest.raises(ValueError, match=rf"{field} must be an int >= 1, got {size}"):
        from_dict(cls, {field: size})


@pytest.mark.parametrize("cls", [Seq2SeqConfig, GPTConfig])
@pytest.mark.parametrize("d_model, n_heads", [(32, 5), (512, 3), (10, 4)])
def test_heads_that_do_not_divide_d_model_are_named(cls: type, d_model: int, n_heads: int) -> None:
    with pytest.raises(ValueError, match=f"n_heads={n_heads} must divide d_model={d_model}"):
        from_dict(cls, {"d_model": d_model, "n_heads": n_heads})


@pytest.mark.parametrize(
    "field, value",
    [
        ("lr", math.inf),
        ("lr", math.nan),
        ("eps", math.inf),
        ("weight_decay", math.inf),
        ("clip_norm", math.nan),
    ],
)
def test_non_finite_rates_are_rejected(field: str, value: float) -> None:
    with pytest.raises(ValueError, match=f"TrainConfig.{field}="):
        TrainConfig(**{field: value})


@pytest.mark.parametrize(
    "changes, error, message",
    [
        ({"d_model": "big"}, TypeError, "wrong type for 'd_model': expected int, got 'big'"),
        ({"d_model": 32.0}, TypeError, "wrong type for 'd_model': expected int"),
        ({"n_layers": True}, TypeError, "wrong type for 'n_layers': expected int, got True"),
        ({"dropout": "0.1"}, TypeError, "wrong type for 'dropout': expected float"),
        ({"dropout": 1.5}, ValueError, r"dropout must be a number in \[0, 1\)"),
        ({"feedforward": "swish"}, ValueError, "invalid value 'swish' for 'feedforward' \\(valid: "),
        ({"n_layer": 3}, ValueError, "unknown key 'n_layer' \\(did you mean 'n_layers'"),
    ],
)
def test_hand_cases_name_the_key(changes: dict[str, Any], error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        from_dict(GPTConfig, changes)


# ---------------------------------------------------------------------------------------------------------------
# A config that passes its checks builds a working model

SMALL = st.integers(min_value=-2, max_value=12)


@FEWER
@given(
    family=st.sampled_from(sorted(MODEL_FAMILIES)),
    sizes=st.fixed_dictionaries(
        {},
        optional={
            "d_model": SMALL.map(lambda n: 4 * n),
            "n_heads": SMALL,
            "n_kv_heads": st.none() | SMALL,
            "d_ff": SMALL,
            # not vocab_size - 1 (= 10): the families' example_inputs then draw ids from an empty range
            "pad_id": st.integers(-2, 9),
            "dropout": st.floats(-0.5, 1.5),
        },
    ),
)
def test_a_model_config_that_passes_its_checks_builds_and_runs(family: str, sizes: dict[str, Any]) -> None:
    kind = MODEL_FAMILIES[family]
    fields = {f.name for f in dataclasses.fields(kind.config_cls)}
    small = {
        "src_vocab_size": 11,
        "tgt_vocab_size": 11,
        "vocab_size": 11,
        "max_len": 16,
        "context_length": 16,
    }
    small |= {
        "n_encoder_layers": 1,
        "n_decoder_layers": 1,
        "n_layers": 1,
        "d_model": 8,
        "n_heads": 2,
        "d_ff": 8,
    }
    values = {key: value for key, value in {**small, **sizes}.items() if key in fields}
    try:
        config = from_dict(kind.config_cls, values)
    except (TypeError, ValueError):
        return
    model = kind.build(config).eval()  # a config that passed its checks must build: no late errors
    inputs = kind.example_inputs(config, length=5)
    with torch.no_grad():
        model(**inputs)


@pytest.mark.parametrize("n_kv_heads", [0, -1, 3])
def test_seq2seq_config_checks_n_kv_heads(n_kv_heads: int) -> None:
    with pytest.raises(ValueError, match=f"n_kv_heads={n_kv_heads}"):
        from_dict(Seq2SeqConfig, {"d_model": 8, "n_heads": 2, "n_kv_heads": n_kv_heads})


@pytest.mark.parametrize("pad_id", [-2, 11, 100])
def test_seq2seq_config_checks_pad_id(pad_id: int) -> None:
    with pytest.raises(ValueError, match=f"pad_id={pad_id}"):
        from_dict(Seq2SeqConfig, {"src_vocab_size": 11, "tgt_vocab_size": 11, "pad_id": pad_id})


# ---------------------------------------------------------------------------------------------------------------
# YAML files: the error points at the file and line


def _yaml_text(tree: dict[str, Any], *, sections: set[str]) -> tuple[str, dict[str, int]]:
    """YAML written by hand (the `sections` as blocks, every other value as a JSON flow value), and the line of
    each dotted key, known without the loader under test."""
    rows: list[str] = []
    lines: dict[str, int] = {}

    def emit(node: dict[str, Any], prefix: str, depth: int) -> None:
        for key, value in node.items():
            nested = prefix + key in sections
            rows.append(f"{'  ' * depth}{key}:" + ("" if nested else f" {json.dumps(value)}"))
            lines[prefix + key] = len(rows)
            if nested:
                emit(value, f"{prefix}{key}.", depth + 1)

    emit(tree, "", 0)
    return "\n".join(rows) + "\n", lines


def test_the_hand_written_yaml_reads_back_as_the_preset() -> None:
    # guards the line bookkeeping below: the text is the preset, and each line holds the key it says
    base = _tiny_dates()
    text, lines = _yaml_text(base, sections=_section_names(base))
    rows = text.splitlines()
    for dotted, line in lines.items():
        assert rows[line - 1].strip().startswith(f"{dotted.rpartition('.')[2]}:"), (dotted, rows[line - 1])
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "run.yaml"
        path.write_text(text, encoding="utf-8")
        assert load_run_config(str(path)) == load_run_config("tiny_dates")


@FEWER
@given(data=st.data())
def test_a_bad_value_in_a_yaml_file_names_the_file_and_line(data: st.DataObject) -> None:
    base = _tiny_dates()
    dotted = data.draw(st.sampled_from(sorted(k for k in flatten(base) if k != "task")), label="key")
    value = data.draw(JSON_VALUE, label="value")
    text, lines = _yaml_text(_set(base, dotted, value), sections=_section_names(base))
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "run.yaml"
        path.write_text(text, encoding="utf-8")
        try:
            load_run_config(str(path))
        except (TypeError, ValueError) as error:
            # the key's own line, or its section's for checks across fields (n_heads vs d_model)
            places = {f"{path}:{lines[k]}:" for k in _self_and_parents(dotted) if k in lines}
            assert any(str(error).startswith(place) for place in places), (str(error), places)


def _section_names(tree: dict[str, Any], prefix: str = "") -> set[str]:
    names = set()
    for key, value in tree.items():
        if isinstance(value, dict):
            names |= {prefix + key} | _section_names(value, f"{prefix}{key}.")
    return names


def _self_and_parents(dotted: str) -> list[str]:
    parts = dotted.split(".")
    return [".".join(parts[:n]) for n in range(len(parts), 0, -1)]
