"""Untrusted and damaged files: nothing in them runs, and every bad file is a ValueError that names the problem.

- A pickle that runs code when unpickled, named like a checkpoint, goes through every way tformer opens one
  (load_checkpoint, load_trained, Trainer resume, `tformer evaluate|translate|info|generate`): no code runs.
- A checkpoint of another architecture, cut at every length, with a byte flipped at every position, of a newer
  format, or with a crafted header: each a clear ValueError, or (a flip in padding) the same checkpoint.
- No module of tformer calls a loader that can run code (torch.load, pickle, eval, unsafe YAML).
"""

from __future__ import annotations

import dataclasses
import json
import pickle
import re
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from tformer.cli.main import main
from tformer.tasks.runs import load_trained
from tformer.training import integrity
from tformer.training.checkpoint import FORMAT_VERSION, Checkpoint, load_checkpoint, save_checkpoint
from tformer.training.trainer import Trainer
from training.toy_task import ToyModel, ToyTask, toy_config

SRC = Path(__file__).resolve().parents[2] / "src" / "tformer"


class _WritesMarker:
    """Unpickling this creates the file `marker`: the stand-in for arbitrary code in a downloaded file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (open, (str(self.marker), "w"))


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("run")
    assert (
        main(["train", "tiny_dates", f"--out_dir={out}", "--train.max_steps=2", "--train.eval_every=2"]) == 0
    )
    return out / "last.safetensors"


def _payloads(tmp_path: Path, marker: Path) -> list[Path]:
    """The payload as a bare pickle and as a torch.save zip archive, each under a .safetensors and a .pt name."""
    paths = []
    for style, write in (
        ("pickle", lambda p: p.write_bytes(pickle.dumps({"model": _WritesMarker(marker)}))),
        ("torch_save", lambda p: torch.save({"model": _WritesMarker(marker)}, p)),
    ):
        for suffix in (".safetensors", ".pt"):
            path = tmp_path / f"{style}{suffix}"
            write(path)
            paths.append(path)
    return paths


def test_the_payload_really_runs_code_when_unpickled(tmp_path: Path) -> None:
    # guards the tests below: were anything to unpickle these files, the marker would appear
    marker = tmp_path / "marker"
    for path in _payloads(tmp_path, marker):
        marker.unlink(missing_ok=True)
        if path.name.startswith("pickle"):
            pickle.loads(path.read_bytes())
        else:  # (torch.load treats a .safetensors name as safetensors: load a copy under .pt)
            copy = path.with_name("copy.pt")
            copy.write_bytes(path.read_bytes())
            torch.load(copy, weights_only=False)
        assert marker.exists(), path


def test_code_in_a_pickle_named_like_a_checkpoint_never_runs(tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    for path in _payloads(tmp_path, marker):
        for load in (load_checkpoint, lambda p: load_trained(p, device="cpu")):
            with pytest.raises(
                ValueError, match=f"{re.escape(str(path))} is not a readable safetensors file"
            ):
                load(path)
        run_dir = tmp_path / f"resume-{path.name}"
        run_dir.mkdir()
        (run_dir / "last.safetensors").write_bytes(path.read_bytes())
        trainer = Trainer(ToyModel(), ToyTask(), toy_config(), out_dir=run_dir, run_config={})
        with pytest.raises(ValueError, match="last.safetensors is not a readable safetensors file"):
            trainer.fit(resume=True)
    assert not marker.exists()


@pytest.mark.parametrize(
    "argv",
    [
        ["evaluate", "{path}"],
        ["translate", "{path}", "ein Satz"],
        ["info", "{path}"],
        ["generate", "{path}", "x"],
    ],
)
def test_cli_refuses_a_pickle_in_one_line_and_runs_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture, argv: list[str]
) -> None:
    marker = tmp_path / "marker"
    for path in _payloads(tmp_path, marker):
        assert main([arg.format(path=path) for arg in argv]) == 2
        err = capsys.readouterr().err
        assert str(path) in err and "not a readable safetensors file" in err
        assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not marker.exists()


# ---------------------------------------------------------------------------------------------------------------
# Other architectures


def test_resuming_with_another_architecture_names_the_mismatch(tmp_path: Path) -> None:
    Trainer(ToyModel(d_model=16), ToyTask(), toy_config(max_steps=1), out_dir=tmp_path, run_config={}).fit()
    trainer = Trainer(
        ToyModel(d_model=8), ToyTask(), toy_config(max_steps=2), out_dir=tmp_path, run_config={}
    )
    with pytest.raises(
        ValueError,
        match=r"last.safetensors do not fit ToyModel: shape mismatch \(2\): embed.weight \(16, 16\) in file vs "
        r"\(16, 8\) in model",
    ):
        trainer.fit(resume=True)


def test_weights_that_do_not_match_the_stored_config_name_the_mismatch(trained: Path, tmp_path: Path) -> None:
    # a stored config of one size with the weights of another, as a hand-edited or mixed-up file would have
    ckpt, right = load_checkpoint(trained), load_trained(trained, device="cpu")
    other = type(right.model)(dataclasses.replace(right.config.model, d_ff=96))
    mixed = save_checkpoint(
        tmp_path / "mixed.safetensors",
        model=other,
        progress=ckpt.progress,
        run_config=ckpt.run_config,
        task_state=ckpt.task_state,
    )
    with pytest.raises(
        ValueError, match=r"mixed.safetensors do not fit Seq2SeqTransformer: shape mismatch .*\(96, 32\)"
    ):
        load_trained(mixed, device="cpu")


# ---------------------------------------------------------------------------------------------------------------
# Truncated and damaged files


class _AllDtypes(nn.Module):
    """Parameters and buffers of every dtype a checkpoint commonly holds, tied weights included."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.linear = nn.Linear(3, 2)
        self.tied = nn.Linear(3, 2)
        self.tied.weight = self.linear.weight
        self.register_buffer("low_precision", torch.randn(3).to(torch.bfloat16))
        self.register_buffer("count", torch.tensor([7, -1], dtype=torch.int64))
        self.register_buffer("mask", torch.tensor([True, False]))


def _small_checkpoint(path: Path) -> Path:
    model = _AllDtypes()
    optimizer = torch.optim.AdamW(model.parameters())
    model.linear(torch.randn(1, 3)).sum().backward()
    optimizer.step()
    return save_checkpoint(
        path,
        model=model,
        optimizer=optimizer,
        progress={"step": 1, "best_metric": 0.5},
        run_config={"lr": 1e-3, "task": "toy"},
        task_state='{"vocab": {"a": 0}}',
    )


def _same_checkpoint(a: Any, b: Any) -> bool:
    if isinstance(a, Checkpoint):
        return all(_same_checkpoint(getattr(a, f.name), getattr(b, f.name)) for f in dataclasses.fields(a))
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_same_checkpoint(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return isinstance(b, list) and len(a) == len(b) and all(map(_same_checkpoint, a, b))
    return type(a) is type(b) and a == b


def test_a_file_cut_at_any_length_is_rejected(tmp_path: Path) -> None:
    data = _small_checkpoint(tmp_path / "full.safetensors").read_bytes()
    cut = tmp_path / "cut.safetensors"
    for length in range(len(data)):
        cut.write_bytes(data[:length])
        with pytest.raises(ValueError, match="cut.safetensors"):
            load_checkpoint(cut)


def test_a_byte_changed_anywhere_is_an_error_or_changes_nothing(tmp_path: Path) -> None:
    path = _small_checkpoint(tmp_path / "good.safetensors")
    original, data = load_checkpoint(path), path.read_bytes()
    damaged = tmp_path / "damaged.safetensors"
    outcomes = {"rejected by the checksum": 0, "rejected otherwise": 0, "loaded unchanged": 0}
    for mask in (0x01, 0x80, 0xFF):  # the lowest bit, the highest, every bit
        for position in range(len(data)):
            flipped = bytearray(data)
            flipped[position] ^= mask
            damaged.write_bytes(flipped)
            try:
                loaded = load_checkpoint(damaged)
            except ValueError as error:
                assert "damaged.safetensors" in str(error)
                outcomes[
                    "rejected by the checksum" if "is damaged" in str(error) else "rejected otherwise"
                ] += 1
                continue
            loaded.path = path
            assert _same_checkpoint(original, loaded), (mask, position)
            outcomes["loaded unchanged"] += 1
    assert sum(outcomes.values()) == 3 * len(data)
    # every byte of the tensor data is covered by the checksum alone (the header may fail parsing first)
    assert outcomes["rejected by the checksum"] >= 3 * _tensor_bytes(original)


def _tensor_bytes(ckpt: Checkpoint) -> int:
    stored = {id(t): t for t in ckpt.model_state.values()}  # a tied weight is stored once
    return sum(t.numel() * t.element_size() for t in stored.values())


def test_a_checkpoint_without_a_checksum_still_loads(tmp_path: Path) -> None:
    # files written before checksums existed (format 1 without the entry) stay readable
    path = _small_checkpoint(tmp_path / "new.safetensors")
    ckpt_tensors, metadata = _read_raw(path)
    header = json.loads(metadata["tformer"])
    del header["checksum"], metadata[integrity.CHECKSUM_KEY]
    metadata["tformer"] = json.dumps(header)
    old = tmp_path / "old.safetensors"
    save_file(ckpt_tensors, old, metadata=metadata)
    loaded = load_checkpoint(old)
    loaded.path = path
    assert _same_checkpoint(load_checkpoint(path), loaded)


# ---------------------------------------------------------------------------------------------------------------
# Crafted headers: valid safetensors, valid checksum, nonsense inside


def _read_raw(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    from safetensors import safe_open

    with safe_open(path, framework="pt") as file:
        return {key: file.get_tensor(key) for key in file.keys()}, dict(file.metadata())  # noqa: SIM118


def _craft(tmp_path: Path, header_text: str, *, checksum: bool = True) -> Path:
    tensors, metadata = _read_raw(_small_checkpoint(tmp_path / "base.safetensors"))
    metadata["tformer"] = header_text
    metadata.pop(integrity.CHECKSUM_KEY)
    if checksum:
        metadata[integrity.CHECKSUM_KEY] = integrity.checksum(tensors, metadata)
    path = tmp_path / "crafted.safetensors"
    save_file(tensors, path, metadata=metadata)
    return path


def _header(tmp_path: Path) -> dict[str, Any]:
    _, metadata = _read_raw(_small_checkpoint(tmp_path / "base.safetensors"))
    return json.loads(metadata["tformer"])


@pytest.mark.parametrize(
    "version, message",
    [
        (
            FORMAT_VERSION + 1,
            f"checkpoint format version {FORMAT_VERSION + 1}; this tformer reads versions 1 to",
        ),
        (99, "format version 99; .*upgrade tformer"),
        (0, "format version 0"),
        ("1", "format version '1'"),
        (True, "format version True"),
        (None, "format version None"),
    ],
)
def test_a_newer_or_invalid_format_version_is_named(tmp_path: Path, version: Any, message: str) -> None:
    header = _header(tmp_path)
    header["format_version"] = version
    with pytest.raises(ValueError, match=message):
        load_checkpoint(_craft(tmp_path, json.dumps(header)))


def _edit(tmp_path: Path, change: Any) -> str:
    header = _header(tmp_path)
    change(header)
    return json.dumps(header)


@pytest.mark.parametrize(
    "make_header, message",
    [
        (lambda t: "{not json", "damaged tformer metadata"),
        (lambda t: "[" * 100_000 + "]" * 100_000, "damaged tformer metadata"),
        (lambda t: json.dumps({"format_version": 1}), "damaged tformer metadata"),
        (lambda t: _edit(t, lambda h: h.update(tree=[1, 2])), "malformed tree or alias table"),
        (lambda t: _edit(t, lambda h: h.update(aliases=["x"])), "malformed tree or alias table"),
        (lambda t: _edit(t, lambda h: h.update(aliases={"a": 5})), "malformed tree or alias table"),
        (lambda t: _edit(t, lambda h: h["aliases"].update(a="nowhere")), "alias 'a' points at 'nowhere'"),
        (lambda t: _edit(t, lambda h: h["tree"].update(model="weights")), "'model' must map parameter names"),
        (lambda t: _edit(t, lambda h: h["tree"]["model"].update(x=3)), "'model' must map parameter names"),
        (
            lambda t: _edit(t, lambda h: h["tree"].update(progress=[1])),
            "'progress' must be a mapping, found list",
        ),
        (
            lambda t: _edit(t, lambda h: h["tree"].update(optimizer=7)),
            "'optimizer' must be a mapping or null",
        ),
        (
            lambda t: _edit(t, lambda h: h["tree"].pop("run_config")),
            r"lacks the checkpoint parts \['run_config'\]",
        ),
        (
            lambda t: _edit(t, lambda h: h["tree"].update(progress={"__tensor__": "gone"})),
            "refers to tensor 'gone'",
        ),
        (
            lambda t: _edit(t, lambda h: h["tree"].update(progress={"__tensor__": [1]})),
            r"refers to tensor \[1\]",
        ),
        (lambda t: _deep_progress(t, 700), "nested too deeply"),  # JSON reads it, a recursive walk cannot
        (lambda t: _edit(t, lambda h: h.update(checksum="sha256")), "a 'sha256' checksum"),
    ],
)
def test_a_crafted_header_is_a_clear_error(tmp_path: Path, make_header: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        load_checkpoint(_craft(tmp_path, make_header(tmp_path)))


def _deep_progress(tmp_path: Path, depth: int) -> str:
    """A header whose progress is {"a": {"a": ... {}}}, `depth` levels deep."""
    header = _header(tmp_path)
    header["tree"]["progress"] = "DEEP"
    return json.dumps(header).replace('"DEEP"', '{"a": ' * depth + "{}" + "}" * depth)


def test_a_declared_checksum_whose_entry_is_gone_is_an_error(tmp_path: Path) -> None:
    path = _craft(tmp_path, json.dumps(_header(tmp_path)), checksum=False)  # header says crc32, entry missing
    with pytest.raises(ValueError, match="crafted.safetensors is damaged: its header declares a checksum"):
        load_checkpoint(path)


# ---------------------------------------------------------------------------------------------------------------
# No code-running loaders anywhere in tformer

_UNSAFE = re.compile(
    r"torch\.load\(|pickle\.loads?\(|\bdill\b|joblib\.load|marshal\.loads?\(|(?:np|numpy)\.load\(|"
    r"yaml\.(?:unsafe_load|full_load|load_all)\(|Loader=yaml\.(?:Loader|UnsafeLoader|FullLoader)|"
    r"(?<![.\w])(?:eval|exec)\(|trust_remote_code"
)


def test_no_module_uses_a_loader_that_can_run_code() -> None:
    sources = sorted(SRC.rglob("*.py"))
    assert len(sources) > 30
    hits = [
        f"{path.relative_to(SRC)}:{number}: {line.strip()}"
        for path in sources
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if _UNSAFE.search(line)
    ]
    assert hits == []
    # the one YAML loader is a SafeLoader
    from tformer.config_yaml import _Loader

    assert issubclass(_Loader, __import__("yaml").SafeLoader)
