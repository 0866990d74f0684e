from __future__ import annotations

import enum
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from tformer.config import (
    flatten,
    from_dict,
    load_yaml,
    load_yaml_with_lines,
    merge,
    parse_overrides,
    to_dict,
)


class Norm(enum.Enum):
    PRE = "pre"
    POST = "post"


class Activation(str, enum.Enum):
    RELU = "relu"
    GELU = "gelu"


class Bits(enum.Enum):
    ONE = 1
    SIXTEEN = 16


@dataclass(frozen=True)
class QuantConfig:
    bits: Bits = Bits.SIXTEEN
    group: Literal[0, 1] = 0


@dataclass(frozen=True)
class ModelConfig:
    d_model: int
    n_heads: int = 8
    n_layers: int = 6
    dropout: float = 0.1
    norm: Norm = Norm.PRE
    activation: Activation = Activation.RELU
    max_length: int | None = None

    def __post_init__(self) -> None:
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model={self.d_model} is not divisible by n_heads={self.n_heads}")


@dataclass(frozen=True)
class OptimConfig:
    lr: float = 3e-4
    betas: tuple[float, float] = (0.9, 0.98)
    kind: Literal["adam", "sgd"] = "adam"


@dataclass(frozen=True)
class ScheduleConfig:
    warmup: int
    decay: float | str = "inverse_sqrt"


@dataclass(frozen=True)
class DataConfig:
    tags: tuple[str, ...] = ()
    lengths: list[int] = field(default_factory=list)
    weights: dict[str, float] = field(default_factory=dict)
    root: Path = Path("data")
    shuffle: bool = True
    name: str = "wmt14"


@dataclass
class HeadConfig:
    d_model: int = 8
    n_heads: int = 2
    head_dim: int = field(init=False)  # derived, so not a key a user may set

    def __post_init__(self) -> None:
        self.head_dim = self.d_model // self.n_heads


@dataclass(frozen=True)
class RunConfig:
    model: ModelConfig
    optim: OptimConfig = field(default_factory=OptimConfig)
    data: DataConfig = field(default_factory=DataConfig)
    schedule: ScheduleConfig | None = None


FULL = RunConfig(
    model=ModelConfig(
        d_model=64, n_heads=4, n_layers=2, dropout=0.0, norm=Norm.POST, activation=Activation.GELU
    ),
    optim=OptimConfig(lr=1e-3, betas=(0.9, 0.999), kind="sgd"),
    data=DataConfig(tags=("a", "b"), lengths=[3, 5], weights={"en": 0.5, "de": 2.0}, root=Path("/tmp/x")),
    schedule=ScheduleConfig(warmup=400, decay=0.5),
)
FULL_DICT = {
    "model": {
        "d_model": 64,
        "n_heads": 4,
        "n_layers": 2,
        "dropout": 0.0,
        "norm": "post",
        "activation": "gelu",
        "max_length": None,
    },
    "optim": {"lr": 1e-3, "betas": [0.9, 0.999], "kind": "sgd"},
    "data": {
        "tags": ["a", "b"],
        "lengths": [3, 5],
        "weights": {"en": 0.5, "de": 2.0},
        "root": "/tmp/x",
        "shuffle": True,
        "name": "wmt14",
    },
    "schedule": {"warmup": 400, "decay": 0.5},
}


# ---------------------------------------------------------------------------------------------- from_dict


def test_from_dict_builds_the_nested_config_with_defaults() -> None:
    config = from_dict(RunConfig, {"model": {"d_model": 32, "n_heads": 2}, "optim": {"lr": 0.01}})
    assert config == RunConfig(model=ModelConfig(d_model=32, n_heads=2), optim=OptimConfig(lr=0.01))


def test_from_dict_converts_every_field_kind() -> None:
    assert from_dict(RunConfig, FULL_DICT) == FULL


def test_unknown_top_level_key_lists_valid_keys() -> None:
    with pytest.raises(
        ValueError, match=r"unknown key 'modle' \(did you mean 'model'\? valid: model, optim, data"
    ):
        from_dict(RunConfig, {"modle": {}})


def test_unknown_nested_key_names_the_dotted_key_and_valid_keys() -> None:
    with pytest.raises(ValueError) as info:
        from_dict(RunConfig, {"model": {"d_model": 8, "n_layer": 2}})
    message = str(info.value)
    assert "unknown key 'model.n_layer'" in message
    assert "did you mean 'n_layers'?" in message
    assert "valid: d_model, n_heads, n_layers, dropout, norm, activation, max_length" in message


def test_missing_required_key() -> None:
    with pytest.raises(ValueError, match=r"missing required key\(s\): 'model.d_model'"):
        from_dict(RunConfig, {"model": {"n_heads": 2}})
    with pytest.raises(ValueError, match=r"missing required key\(s\): 'model'"):
        from_dict(RunConfig, {})


@pytest.mark.parametrize(
    ("data", "key", "expected"),
    [
        ({"model": {"d_model": "64"}}, "model.d_model", "expected int, got '64' (str)"),
        ({"model": {"d_model": True}}, "model.d_model", "expected int, got True (bool)"),
        ({"model": {"d_model": 64.0}}, "model.d_model", "expected int, got 64.0 (float)"),
        ({"model": {"d_model": 8, "dropout": False}}, "model.dropout", "expected float, got False (bool)"),
        ({"model": {"d_model": 8, "dropout": "0.1"}}, "model.dropout", "expected float, got '0.1' (str)"),
        ({"model": {"d_model": 8}, "data": {"shuffle": "yes"}}, "data.shuffle", "expected bool, got 'yes'"),
        ({"model": {"d_model": 8}, "data": {"name": ["a"]}}, "data.name", "expected str, got ['a'] (list)"),
        (
            {"model": {"d_model": 8}, "data": {"tags": "a,b"}},
            "data.tags",
            "expected a list of str, got 'a,b'",
        ),
        ({"model": {"d_model": 8}, "data": {"tags": ["a", 1]}}, "data.tags[1]", "expected str, got 1 (int)"),
        ({"model": {"d_model": 8}, "data": {"root": 3}}, "data.root", "expected a path (str), got 3"),
        ({"model": {"d_model": 8}, "data": {"weights": {"en": "x"}}}, "data.weights.en", "expected float"),
        ({"model": {"d_model": 8}, "data": {"weights": [1.0]}}, "data.weights", "expected a mapping"),
        ({"model": {"d_model": 8, "max_length": "x"}}, "model.max_length", "expected int, got 'x'"),
        (
            {"model": {"d_model": 8}, "schedule": {"warmup": 1, "decay": None}},
            "schedule.decay",
            "expected float | str, got None",
        ),
    ],
)
def test_wrong_types_name_the_key_value_and_expected_type(data: dict, key: str, expected: str) -> None:
    with pytest.raises(TypeError, match=re.escape(f"wrong type for '{key}': {expected}")):
        from_dict(RunConfig, data)


def test_section_that_is_not_a_mapping() -> None:
    with pytest.raises(TypeError, match=r"'model' must be a mapping of ModelConfig fields, got 3"):
        from_dict(RunConfig, {"model": 3})
    with pytest.raises(TypeError, match=r"'RunConfig' must be a mapping"):
        from_dict(RunConfig, [("model", {})])  # type: ignore[arg-type]


def test_int_is_accepted_for_float_and_becomes_float() -> None:
    config = from_dict(OptimConfig, {"lr": 1, "betas": [1, 0]})
    assert config == OptimConfig(lr=1.0, betas=(1.0, 0.0))
    assert type(config.lr) is float
    assert all(type(beta) is float for beta in config.betas)


def test_enum_fields_map_from_their_values() -> None:
    config = from_dict(ModelConfig, {"d_model": 8, "norm": "post", "activation": "gelu"})
    assert config.norm is Norm.POST
    assert config.activation is Activation.GELU
    assert from_dict(ModelConfig, {"d_model": 8, "norm": Norm.POST}).norm is Norm.POST


def test_invalid_enum_value_lists_valid_values() -> None:
    with pytest.raises(ValueError, match=r"invalid value 'middle' for 'norm' \(valid: 'pre', 'post'\)"):
        from_dict(ModelConfig, {"d_model": 8, "norm": "middle"})
    with pytest.raises(ValueError, match=r"invalid value 'PRE' for 'norm'"):  # by value, not by member name
        from_dict(ModelConfig, {"d_model": 8, "norm": "PRE"})


def test_choices_match_value_and_type_so_bools_are_not_ints() -> None:
    assert from_dict(QuantConfig, {"bits": 1, "group": 1}) == QuantConfig(bits=Bits.ONE, group=1)
    with pytest.raises(ValueError, match=r"invalid value True for 'bits' \(valid: 1, 16\)"):
        from_dict(QuantConfig, {"bits": True})
    with pytest.raises(ValueError, match=r"invalid value 16.0 for 'bits'"):
        from_dict(QuantConfig, {"bits": 16.0})
    with pytest.raises(ValueError, match=r"invalid value True for 'group' \(valid: 0, 1\)"):
        from_dict(QuantConfig, {"group": True})


def test_literal_fields() -> None:
    assert from_dict(OptimConfig, {"kind": "sgd"}).kind == "sgd"
    with pytest.raises(ValueError, match=r"invalid value 'adamw' for 'kind' \(valid: 'adam', 'sgd'\)"):
        from_dict(OptimConfig, {"kind": "adamw"})


def test_tuple_fields_from_lists_and_fixed_length_checked() -> None:
    config = from_dict(DataConfig, {"tags": ["x", "y", "z"], "lengths": (1, 2)})
    assert config.tags == ("x", "y", "z")
    assert config.lengths == [1, 2]
    with pytest.raises(TypeError, match=r"'betas': expected a list of 2 items \(float, float\), got \[0.9\]"):
        from_dict(OptimConfig, {"betas": [0.9]})


def test_optional_fields() -> None:
    assert from_dict(ModelConfig, {"d_model": 8, "max_length": None}).max_length is None
    assert from_dict(ModelConfig, {"d_model": 8, "max_length": 128}).max_length == 128
    assert from_dict(RunConfig, {"model": {"d_model": 8}, "schedule": None}).schedule is None
    config = from_dict(RunConfig, {"model": {"d_model": 8}, "schedule": {"warmup": 10}})
    assert config.schedule == ScheduleConfig(warmup=10)
    # The error of an Optional nested section is the section's own, not a vague "wrong type".
    with pytest.raises(ValueError, match=r"unknown key 'schedule.warmpu'"):
        from_dict(RunConfig, {"model": {"d_model": 8}, "schedule": {"warmpu": 10}})


def test_union_fields_try_each_member() -> None:
    assert from_dict(ScheduleConfig, {"warmup": 1, "decay": "cosine"}).decay == "cosine"
    decay = from_dict(ScheduleConfig, {"warmup": 1, "decay": 2}).decay
    assert decay == 2.0
    assert type(decay) is float


@dataclass(frozen=True)
class _Transformer:
    type: Literal["transformer"] = "transformer"
    d_model: int = 8


@dataclass(frozen=True)
class _Lstm:
    type: Literal["lstm"] = "lstm"
    d_hidden: int = 4


@dataclass(frozen=True)
class _Run:
    model: _Transformer | _Lstm = field(default_factory=_Transformer)


def test_a_union_of_tagged_dataclasses_is_chosen_by_its_type_key() -> None:
    assert from_dict(_Run, {"model": {"type": "lstm", "d_hidden": 6}}).model == _Lstm(d_hidden=6)
    assert from_dict(_Run, {"model": {"d_model": 16}}).model == _Transformer(
        d_model=16
    )  # default: first member
    # the chosen class's own error, not a vague "wrong type" after trying every member
    with pytest.raises(ValueError, match=r"unknown key 'model.d_model' \(valid: type, d_hidden\)"):
        from_dict(_Run, {"model": {"type": "lstm", "d_model": 6}})
    with pytest.raises(ValueError, match=r"unknown model.type 'gru' \(valid: transformer, lstm\)"):
        from_dict(_Run, {"model": {"type": "gru"}})


def test_where_prefixes_messages() -> None:
    with pytest.raises(ValueError, match=r"^run\.yaml: unknown key 'x'"):
        from_dict(RunConfig, {"x": 1}, where="run.yaml")


def test_dataclass_own_validation_errors_get_the_section() -> None:
    with pytest.raises(ValueError, match=r"^cfg: invalid 'model': d_model=10 is not divisible by n_heads=4"):
        from_dict(RunConfig, {"model": {"d_model": 10, "n_heads": 4}}, where="cfg")


def test_from_dict_rejects_non_dataclass() -> None:
    with pytest.raises(TypeError, match="needs a dataclass type"):
        from_dict(dict, {})
    with pytest.raises(TypeError, match="needs a dataclass type"):
        from_dict(FULL, {})  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------- to_dict


def test_to_dict_gives_plain_data() -> None:
    plain = to_dict(FULL)
    assert plain == FULL_DICT
    assert json.loads(json.dumps(plain)) == plain  # only JSON types
    assert isinstance(plain["optim"]["betas"], list)


def test_round_trip_through_dict_and_yaml(tmp_path: Path) -> None:
    assert from_dict(RunConfig, to_dict(FULL)) == FULL
    default = RunConfig(model=ModelConfig(d_model=8, n_heads=2))
    assert from_dict(RunConfig, to_dict(default)) == default
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(to_dict(FULL)))
    assert from_dict(RunConfig, load_yaml(path)) == FULL


def test_derived_fields_are_neither_read_nor_written() -> None:
    config = HeadConfig(d_model=12, n_heads=3)
    assert to_dict(config) == {"d_model": 12, "n_heads": 3}
    assert from_dict(HeadConfig, to_dict(config)).head_dim == 4
    with pytest.raises(ValueError, match=r"unknown key 'head_dim' \(valid: d_model, n_heads\)"):
        from_dict(HeadConfig, {"head_dim": 4})


def test_to_dict_rejects_values_it_cannot_write() -> None:
    odd = DataConfig(weights={"en": object()})  # type: ignore[dict-item]
    with pytest.raises(TypeError, match=r"cannot write config field 'weights.en'"):
        to_dict(odd)
    with pytest.raises(TypeError, match="needs a dataclass instance"):
        to_dict(RunConfig)


# ---------------------------------------------------------------------------------------------- YAML


def test_load_yaml_reads_a_mapping_with_yaml_1_2_scalars(tmp_path: Path) -> None:
    path = tmp_path / "x.yaml"
    path.write_text("train:\n  lr: 3e-4\n  warmup: 1e3\n  amp: true\n  seed: 010\ndata:\n  lang: no\n")
    assert load_yaml(path) == {
        "train": {"lr": 3e-4, "warmup": 1000.0, "amp": True, "seed": "010"},
        "data": {"lang": "no"},
    }


def test_missing_file_names_it(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=re.escape(str(tmp_path / "nope.yaml"))):
        load_yaml(tmp_path / "nope.yaml")


def test_yaml_syntax_error_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("model:\n  d_model: 8\n  n_heads: [2, 4\n")
    with pytest.raises(ValueError, match=re.escape(f"{path}:4: invalid YAML")):
        load_yaml(path)
    path.write_text("model:\n  d_model: 8\n n_heads: 2\n")  # bad indentation
    with pytest.raises(ValueError, match=re.escape(f"{path}:3: invalid YAML")):
        load_yaml(path)


@pytest.mark.parametrize(
    ("text", "found"), [("- a\n- b\n", "a list"), ("", "an empty file"), ("3\n", "a int")]
)
def test_top_level_must_be_a_mapping(tmp_path: Path, text: str, found: str) -> None:
    path = tmp_path / "top.yaml"
    path.write_text(text)
    with pytest.raises(
        ValueError, match=re.escape(f"{path}: the top level must be a mapping") + f".*{found}"
    ):
        load_yaml(path)


def test_duplicate_key_is_an_error_with_both_lines(tmp_path: Path) -> None:
    path = tmp_path / "dup.yaml"
    path.write_text("model:\n  d_model: 8\n  d_model: 16\n")
    with pytest.raises(
        ValueError, match=re.escape(f"{path}:3: duplicate key 'model.d_model' (first given on line 2)")
    ):
        load_yaml(path)


def test_locations_of_keys(tmp_path: Path) -> None:
    path = tmp_path / "x.yaml"
    path.write_text("# preset\nmodel:\n  d_model: 8\n\n  n_heads: 2\ndata:\n  tags: [a, b]\n")
    data, locations = load_yaml_with_lines(path)
    assert data == {"model": {"d_model": 8, "n_heads": 2}, "data": {"tags": ["a", "b"]}}
    assert locations == {
        "model": f"{path}:2",
        "model.d_model": f"{path}:3",
        "model.n_heads": f"{path}:5",
        "data": f"{path}:6",
        "data.tags": f"{path}:7",
    }


def test_yaml_merge_keys_are_not_duplicates(tmp_path: Path) -> None:
    path = tmp_path / "anchors.yaml"
    path.write_text("base: &base\n  d_model: 8\n  n_heads: 2\nmodel:\n  <<: *base\n  n_heads: 4\n")
    data, locations = load_yaml_with_lines(path)
    assert data["model"] == {"d_model": 8, "n_heads": 4}
    assert locations["model.n_heads"] == f"{path}:6"


def test_from_dict_errors_point_at_the_yaml_line(tmp_path: Path) -> None:
    path = tmp_path / "preset.yaml"
    path.write_text("model:\n  d_model: 8\n  n_layer: 2\ndata:\n  tags: [a, 3]\n")
    data, locations = load_yaml_with_lines(path)
    with pytest.raises(ValueError, match=re.escape(f"{path}:3: unknown key 'model.n_layer'")):
        from_dict(RunConfig, data, where=str(path), locations=locations)
    del data["model"]["n_layer"]
    with pytest.raises(TypeError, match=re.escape(f"{path}:5: wrong type for 'data.tags[1]'")):
        from_dict(RunConfig, data, where=str(path), locations=locations)
    data["data"]["tags"] = ["a"]
    del data["model"]["d_model"]  # a missing key points at its section
    with pytest.raises(ValueError, match=re.escape(f"{path}:1: missing required key(s): 'model.d_model'")):
        from_dict(RunConfig, data, where=str(path), locations=locations)


def test_overridden_keys_point_at_the_command_line(tmp_path: Path) -> None:
    path = tmp_path / "preset.yaml"
    path.write_text("model:\n  d_model: 8\n  n_layers: 2\n")
    data, locations = load_yaml_with_lines(path)
    overrides = parse_overrides(["--model.n_layers=two", "--model.n_heads=2"])
    locations |= {key: "command line" for key in flatten(overrides)}
    with pytest.raises(
        TypeError, match=r"^command line: wrong type for 'model.n_layers': expected int, got 'two'"
    ):
        from_dict(RunConfig, merge(data, overrides), where=str(path), locations=locations)


# ---------------------------------------------------------------------------------------------- overrides


def test_parse_overrides_example_from_the_docs() -> None:
    args = ["--model.n_layers=4", "--train.lr", "3e-4", "--data.tags=[a,b]"]
    assert parse_overrides(args) == {
        "model": {"n_layers": 4},
        "train": {"lr": 3e-4},
        "data": {"tags": ["a", "b"]},
    }


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("4", 4),
        ("-1", -1),
        ("+3", 3),
        ("-0.5", -0.5),
        ("3e-4", 3e-4),
        ("-1e-3", -1e-3),
        ("1E5", 1e5),
        ("2.5e+2", 250.0),
        (".5", 0.5),
        ("1_000", 1000),
        ("true", True),
        ("False", False),
        ("null", None),
        ("no", "no"),
        ("on", "on"),
        ("010", "010"),
        ("'4'", "4"),
        ("hello world", "hello world"),
        ("data/wmt14.en", "data/wmt14.en"),
        ("[1, -2.5, x]", [1, -2.5, "x"]),
        ("{a: 1}", {"a": 1}),
    ],
)
def test_override_values(text: str, value: object) -> None:
    for args in ([f"--a.b={text}"], ["--a.b", text]):
        parsed = parse_overrides(args)["a"]["b"]
        assert parsed == value
        assert type(parsed) is type(value)


@given(st.floats(allow_nan=False, allow_infinity=False))
def test_any_float_repr_round_trips(number: float) -> None:
    parsed = parse_overrides([f"--x={number!r}"])["x"]
    assert type(parsed) is float
    assert parsed == number and math.copysign(1.0, parsed) == math.copysign(1.0, number)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["model.n_layers=4"], "malformed override 'model.n_layers=4'"),
        (["-model.n_layers=4"], "malformed override '-model.n_layers=4'"),
        (["--=4"], "malformed override '--=4'"),
        (["--model..n=4"], "malformed override '--model..n=4': 'model..n' is not a dotted key"),
        (["--model.n-layers=4"], "is not a dotted key"),
        (["--model.n_layers"], "override '--model.n_layers' has no value"),
        (["--model.n_layers", "--train.lr=1"], "override '--model.n_layers' has no value"),
        (["--model.n_layers="], "override '--model.n_layers=' has an empty value"),
        (["--data.tags=[a, b"], r"malformed override '--data.tags=\[a, b': cannot read the value as YAML"),
        (["--x=1", "stray"], "malformed override 'stray'"),
        (["--model.n=1", "--model=3"], "cannot replace the section 'model'"),
    ],
)
def test_malformed_overrides(args: list[str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_overrides(args)


def test_later_override_wins_and_siblings_merge() -> None:
    args = ["--model.n_layers=2", "--model.d_model=8", "--model.n_layers=4"]
    assert parse_overrides(args) == {"model": {"n_layers": 4, "d_model": 8}}


# ---------------------------------------------------------------------------------------------- merge, flatten


def test_merge_is_deep_and_override_wins() -> None:
    base = {"model": {"d_model": 8, "n_heads": 2}, "data": {"tags": ["a", "b"]}, "seed": 0}
    override = {"model": {"n_heads": 4, "dropout": 0.0}, "data": {"tags": ["c"]}, "name": "x"}
    assert merge(base, override) == {
        "model": {"d_model": 8, "n_heads": 4, "dropout": 0.0},
        "data": {"tags": ["c"]},  # lists are replaced, not appended
        "seed": 0,
        "name": "x",
    }


def test_merge_does_not_change_its_inputs() -> None:
    base = {"model": {"d_model": 8}, "tags": ["a"]}
    override = {"model": {"n_heads": 4}}
    merged = merge(base, override)
    merged["model"]["d_model"] = 99
    merged["tags"].append("b")
    assert base == {"model": {"d_model": 8}, "tags": ["a"]}
    assert override == {"model": {"n_heads": 4}}


def test_merge_rejects_a_section_replaced_by_a_value() -> None:
    with pytest.raises(ValueError, match=r"cannot replace the section 'model.block' \(a mapping\) with 3"):
        merge({"model": {"block": {"norm": "pre"}}}, {"model": {"block": 3}})
    with pytest.raises(ValueError, match=r"cannot replace the section 'data'"):
        merge({"data": {"tags": []}}, {"data": ["a"]})


def test_merge_allows_null_to_switch_off_a_section_and_a_section_to_replace_null() -> None:
    assert merge({"schedule": {"warmup": 4}}, {"schedule": None}) == {"schedule": None}
    assert merge({"schedule": None}, {"schedule": {"warmup": 4}}) == {"schedule": {"warmup": 4}}


def test_flatten() -> None:
    tree = {"model": {"d_model": 8, "block": {"norm": "pre"}}, "tags": ["a"], "empty": {}, "seed": 0}
    assert flatten(tree) == {
        "model.d_model": 8,
        "model.block.norm": "pre",
        "tags": ["a"],
        "empty": {},
        "seed": 0,
    }
