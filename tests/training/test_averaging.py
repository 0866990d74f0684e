"""Checkpoint averaging: exact means (in float64), integer buffers from the last one, ties kept, clear errors."""

from __future__ import annotations

import functools
from pathlib import Path

import pytest
import torch
from torch import nn

from tformer.training.averaging import average_checkpoints, checkpoints_near_the_end, last_n_checkpoints
from tformer.training.checkpoint import load_checkpoint, load_model_weights, save_checkpoint

VOCAB = 11


class TinyNet(nn.Module):
    """Tied embedding/head, a float16 buffer, and BatchNorm (float running stats + an int64 batch counter)."""

    def __init__(self, *, width: int = 6, tied: bool = True, extra_layer: bool = False) -> None:
        super().__init__()
        self.embed = nn.Embedding(VOCAB, width)
        self.proj = nn.Linear(width, width)
        self.norm = nn.BatchNorm1d(width)
        self.head = nn.Linear(width, VOCAB, bias=False)
        if tied:
            self.head.weight = self.embed.weight
        if extra_layer:
            self.extra = nn.Linear(width, width)
        self.register_buffer("scale", torch.ones(3, dtype=torch.float16))


def _perturbed(seed: int, **kwargs) -> TinyNet:
    """A model whose every float tensor (running stats and the float16 buffer too) is random."""
    torch.manual_seed(seed)
    model = TinyNet(**kwargs)
    with torch.no_grad():
        for tensor in model.state_dict().values():
            if tensor.is_floating_point():
                tensor.copy_(torch.randn(tensor.shape))
    model.norm.num_batches_tracked.fill_(seed)
    return model


def _save(model: nn.Module, path: Path, *, step: int) -> Path:
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)  # saved, so its absence is tested
    return save_checkpoint(
        path,
        model=model,
        optimizer=optimizer,
        progress={"step": step},
        run_config={"model": {"width": 6}, "saved_at": step},
        task_state=f'{{"tokenizer of step": {step}}}',
    )


def test_average_of_two_models_is_the_exact_mean(tmp_path):
    first, second = _perturbed(1), _perturbed(2)
    paths = [_save(first, tmp_path / "step-000100.safetensors", step=100)]
    paths.append(_save(second, tmp_path / "step-000200.safetensors", step=200))
    output = average_checkpoints(paths, output=tmp_path / "averaged.safetensors")
    assert output == tmp_path / "averaged.safetensors"
    result = load_checkpoint(output)
    a, b = first.state_dict(), second.state_dict()
    assert result.model_state.keys() == a.keys()
    for name, tensor in result.model_state.items():
        if name == "norm.num_batches_tracked":
            assert tensor.dtype == torch.int64
            assert tensor.item() == 2  # from the last checkpoint, not averaged
            continue
        expected = ((a[name].double() + b[name].double()) / 2).to(a[name].dtype)
        assert tensor.dtype == a[name].dtype, name
        assert torch.equal(tensor, expected), name
    assert result.model_state["scale"].dtype == torch.float16
    assert result.progress == {
        "step": 200,
        "averaged_from": ["step-000100.safetensors", "step-000200.safetensors"],
    }
    assert result.run_config == {"model": {"width": 6}, "saved_at": 200}
    assert result.task_state == '{"tokenizer of step": 200}'
    assert (result.optimizer_state, result.scheduler_state, result.scaler_state, result.rng_state) == (
        None,
        None,
        None,
        None,
    )


def test_mean_is_taken_in_float64(tmp_path):
    # float32 values 2^24, 1, 1. Summed in float32, 2^24 + 1 rounds back to 2^24 (24-bit mantissa), giving
    # 2^24 / 3 = 5592405.33 -> 5592405.5. In float64 the mean is (2^24 + 2) / 3 = 5592406 exactly.
    paths = []
    for index, value in enumerate([2.0**24, 1.0, 1.0]):
        model = nn.Linear(1, 1, bias=False)
        with torch.no_grad():
            model.weight.fill_(value)
        paths.append(
            save_checkpoint(tmp_path / f"{index}.safetensors", model=model, progress={}, run_config={})
        )
    result = load_checkpoint(average_checkpoints(paths, output=tmp_path / "avg.safetensors"))
    assert result.model_state["weight"].item() == 5592406.0
    naive = sum(torch.tensor([v], dtype=torch.float32) for v in [2.0**24, 1.0, 1.0]) / 3
    assert naive.item() == 5592405.5  # what a float32 average would have written


def test_result_loads_into_the_model_and_tied_weights_survive(tmp_path):
    first, second = _perturbed(3), _perturbed(4)
    paths = [
        _save(first, tmp_path / "a.safetensors", step=1),
        _save(second, tmp_path / "b.safetensors", step=2),
    ]
    output = average_checkpoints(paths, output=tmp_path / "avg.safetensors")
    state = load_checkpoint(output).model_state
    assert state["head.weight"] is state["embed.weight"]  # stored once and aliased, as for the trained model
    model = TinyNet()
    load_model_weights(model, output)
    expected = ((first.embed.weight.double() + second.embed.weight.double()) / 2).float()
    assert torch.equal(model.embed.weight, expected)
    assert model.head.weight is model.embed.weight


def test_single_checkpoint_is_copied_unchanged(tmp_path):
    model = _perturbed(5)
    path = _save(model, tmp_path / "step-000001.safetensors", step=1)
    result = load_checkpoint(average_checkpoints([path], output=tmp_path / "avg.safetensors"))
    for name, tensor in model.state_dict().items():
        assert torch.equal(result.model_state[name], tensor), name


@pytest.mark.parametrize(
    ("other", "match"),
    [
        (TinyNet(width=4), r"'embed.weight' is \(11, 4\) torch.float32 there, \(11, 6\) torch.float32"),
        (TinyNet(extra_layer=True), r"it has 'extra.weight', which the last one lacks"),
        (TinyNet(tied=False), r"'head.weight' is tied to 'embed.weight' in the last one, not there"),
        (TinyNet().half(), r"torch.float16 there, \(11, 6\) torch.float32 in the last one"),
    ],
    ids=["shape", "extra-name", "untied", "dtype"],
)
def test_mismatched_checkpoints_raise_naming_the_file(tmp_path, other, match):
    odd = _save(other, tmp_path / "odd.safetensors", step=1)
    last = _save(TinyNet(), tmp_path / "last.safetensors", step=2)
    with pytest.raises(ValueError, match=f"odd.safetensors does not match the last checkpoint .*{match}"):
        average_checkpoints([odd, last], output=tmp_path / "avg.safetensors")
    assert not (tmp_path / "avg.safetensors").exists()


def test_missing_name_and_extra_ties_raise(tmp_path):
    last = _save(TinyNet(extra_layer=True), tmp_path / "last.safetensors", step=2)
    fewer = _save(TinyNet(), tmp_path / "fewer.safetensors", step=1)
    with pytest.raises(ValueError, match=r"fewer.safetensors .* it lacks 'extra.weight' \(2 names missing\)"):
        average_checkpoints([fewer, last], output=tmp_path / "avg.safetensors")
    untied_last = _save(TinyNet(tied=False), tmp_path / "untied.safetensors", step=2)
    with pytest.raises(ValueError, match="ties weights that the last one keeps separate"):
        average_checkpoints([fewer, untied_last], output=tmp_path / "avg.safetensors")


def test_bad_path_lists_raise(tmp_path):
    path = _save(TinyNet(), tmp_path / "a.safetensors", step=1)
    with pytest.raises(ValueError, match="at least one checkpoint"):
        average_checkpoints([], output=tmp_path / "avg.safetensors")
    with pytest.raises(ValueError, match="more than once"):
        average_checkpoints([path, tmp_path / "." / "a.safetensors"], output=tmp_path / "avg.safetensors")
    with pytest.raises(TypeError, match="single path"):
        average_checkpoints(path, output=tmp_path / "avg.safetensors")
    with pytest.raises(FileNotFoundError, match="missing.safetensors"):
        average_checkpoints([path, tmp_path / "missing.safetensors"], output=tmp_path / "avg.safetensors")


def test_last_n_checkpoints_picks_the_newest_numbered_files(tmp_path):
    for step in (100, 2000, 300, 1000000, 40):
        (tmp_path / f"step-{step:06d}.safetensors").touch()
    for name in ("last.safetensors", "best.safetensors", "step-abc.safetensors", "step-000500.tmp"):
        (tmp_path / name).touch()
    newest = ["step-000300.safetensors", "step-002000.safetensors", "step-1000000.safetensors"]
    assert [p.name for p in last_n_checkpoints(tmp_path, 3)] == newest
    assert last_n_checkpoints(str(tmp_path), 1) == [tmp_path / "step-1000000.safetensors"]
    with pytest.raises(ValueError, match=r"last 6 checkpoints but .* holds 5 numbered ones"):
        last_n_checkpoints(tmp_path, 6)
    with pytest.raises(ValueError, match="n must be an int >= 1, got 0"):
        last_n_checkpoints(tmp_path, 0)
    with pytest.raises(FileNotFoundError, match="nowhere"):
        last_n_checkpoints(tmp_path / "nowhere", 2)


def test_last_n_then_average(tmp_path):
    models = [_perturbed(seed) for seed in (7, 8, 9)]
    for step, model in zip((10, 20, 30), models, strict=True):
        _save(model, tmp_path / f"step-{step:06d}.safetensors", step=step)
    output = average_checkpoints(last_n_checkpoints(tmp_path, 2), output=tmp_path / "averaged.safetensors")
    result = load_checkpoint(output)
    assert result.progress["averaged_from"] == ["step-000020.safetensors", "step-000030.safetensors"]
    expected = ((models[1].proj.weight.double() + models[2].proj.weight.double()) / 2).float()
    assert torch.equal(result.model_state["proj.weight"], expected)
    assert [p.name for p in last_n_checkpoints(tmp_path, 3)][0] == "step-000010.safetensors"


def test_only_checkpoints_near_the_end_of_the_run_are_averaged(tmp_path):
    for step in (200, 400, 600, 800, 979):
        (tmp_path / f"step-{step:06d}.safetensors").touch()
    (tmp_path / "best.safetensors").touch()
    (tmp_path / "empty").mkdir()
    near = functools.partial(checkpoints_near_the_end, tmp_path, window=0.25)
    assert sorted(near(5, final_step=979)) == [800, 979]  # 800 >= 0.75 * 979; 600 is not
    assert sorted(near(2, final_step=979)) == [800, 979]
    assert near(1, final_step=979) == {979: tmp_path / "step-000979.safetensors"}
    assert sorted(checkpoints_near_the_end(tmp_path, 5, final_step=979, window=1.0)) == [
        200,
        400,
        600,
        800,
        979,
    ]
    with pytest.raises(ValueError, match=r"after this run's last update 900 \(steps \[979\]\)"):
        near(5, final_step=900)  # a longer run left its checkpoints in the same directory
    with pytest.raises(ValueError, match="n must be an int >= 1, got 0"):
        near(0, final_step=979)
    with pytest.raises(ValueError, match="window must be a fraction"):
        checkpoints_near_the_end(tmp_path, 5, final_step=979, window=0.0)
    with pytest.raises(FileNotFoundError, match="no step-"):
        checkpoints_near_the_end(tmp_path / "empty", 5, final_step=10, window=0.25)
