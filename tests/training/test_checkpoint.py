from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn

from tformer.seeding import capture_rng_state, restore_rng_state, seed_everything
from tformer.training import checkpoint as ckpt_module
from tformer.training.checkpoint import (
    FORMAT_VERSION,
    Checkpoint,
    load_checkpoint,
    load_model_weights,
    restore_training_state,
    save_checkpoint,
)
from tformer.training.losses import label_smoothed_cross_entropy
from tformer.training.named_state import load_optimizer_state_by_name
from tformer.training.optim import build_optimizer
from tformer.training.schedules import ScheduleConfig, build_scheduler

VOCAB = 13


class TinyLM(nn.Module):
    """Tied embedding/head, dropout (so resuming needs the RNG state), a norm and a biased projection."""

    def __init__(self, width: int = 8) -> None:
        super().__init__()
        self.embed = nn.Embedding(VOCAB, width)
        self.drop = nn.Dropout(0.3)
        self.proj = nn.Linear(width, width)
        self.norm = nn.LayerNorm(width)
        self.head = nn.Linear(width, VOCAB, bias=False)
        self.head.weight = self.embed.weight

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.head(self.norm(torch.relu(self.proj(self.drop(self.embed(ids))))))


class Wrapper(nn.Module):
    """Stands in for DistributedDataParallel, which keeps the model as `.module`."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module


def _setup(seed: int):
    torch.manual_seed(seed)
    model = TinyLM()
    optimizer = build_optimizer(model, lr=1e-2, weight_decay=0.1)
    scheduler = build_scheduler(optimizer, ScheduleConfig(kind="cosine", warmup_steps=2, total_steps=20))
    return model, optimizer, scheduler


def _train(model: nn.Module, optimizer, scheduler, *, first_step: int, n_steps: int) -> None:
    for step in range(first_step, first_step + n_steps):
        data = torch.Generator().manual_seed(step)  # the data depends on the step only
        ids = torch.randint(0, VOCAB, (4, 6), generator=data)
        logits = model(ids[:, :-1])
        loss = label_smoothed_cross_entropy(logits, ids[:, 1:], smoothing=0.1)
        loss.backward()
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)


def _save(path: Path, model, optimizer=None, scheduler=None, **extra) -> Path:
    return save_checkpoint(
        path,
        model=model,
        optimizer=optimizer,
        scheduler=scheduler,
        progress=extra.pop("progress", {"step": 3}),
        run_config=extra.pop("run_config", {"model": {"d_model": 8}}),
        **extra,
    )


def test_round_trip_keeps_every_part(tmp_path: Path) -> None:
    model, optimizer, scheduler = _setup(0)
    _train(model, optimizer, scheduler, first_step=0, n_steps=3)
    scaler = torch.amp.GradScaler("cpu", init_scale=1024.0)
    progress = {
        "step": 3,
        "epoch": 0,
        "batch_in_epoch": 3,
        "best_metric": float("inf"),
        "history": [1.5, 2.5],
    }
    run_config = {"model": {"d_model": 8, "n_layers": 1}, "task": "lm", "tags": ["a", "b"]}
    tokenizer = json.dumps({"model": {"type": "BPE", "vocab": {"<pad>": 0, '"quoted"': 1}}})
    rng = capture_rng_state()
    path = save_checkpoint(
        tmp_path / "ckpt.safetensors",
        model=model,
        optimizer=optimizer,
        scheduler=scheduler,
        scaler=scaler,
        progress=progress,
        run_config=run_config,
        task_state=tokenizer,
        rng_state=rng,
    )
    assert path == tmp_path / "ckpt.safetensors"
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.safetensors"]  # no .tmp left behind

    ckpt = load_checkpoint(path)
    assert isinstance(ckpt, Checkpoint) and ckpt.path == path
    assert ckpt.format_version == FORMAT_VERSION == 1
    assert ckpt.progress == progress and ckpt.run_config == run_config and ckpt.task_state == tokenizer
    assert ckpt.scheduler_state == scheduler.state_dict()
    assert ckpt.scaler_state == scaler.state_dict()
    assert ckpt.model_state.keys() == model.state_dict().keys()
    for name, tensor in model.state_dict().items():
        assert torch.equal(ckpt.model_state[name], tensor), name
    assert ckpt.rng_state["python"] == json.loads(json.dumps(rng["python"]))
    assert torch.equal(ckpt.rng_state["torch_cpu"], rng["torch_cpu"])
    # optimizer state is keyed by parameter name
    assert set(ckpt.optimizer_state["state"]) == {name for name, _ in model.named_parameters()}
    exp_avg = optimizer.state[model.proj.weight]["exp_avg"]
    assert torch.equal(ckpt.optimizer_state["state"]["proj.weight"]["exp_avg"], exp_avg)
    assert ckpt.optimizer_state["param_groups"][0]["params"] == ["proj.weight"]


def test_resuming_from_a_checkpoint_is_bit_identical(tmp_path: Path) -> None:
    model, optimizer, scheduler = _setup(0)
    seed_everything(5)
    _train(model, optimizer, scheduler, first_step=0, n_steps=3)
    _save(tmp_path / "c.safetensors", model, optimizer, scheduler, rng_state=capture_rng_state())
    _train(model, optimizer, scheduler, first_step=3, n_steps=4)  # the uninterrupted run

    resumed, resumed_opt, resumed_sched = _setup(1)  # other initial weights, fresh optimizer state
    ckpt = load_checkpoint(tmp_path / "c.safetensors")
    restore_training_state(ckpt, model=resumed, optimizer=resumed_opt, scheduler=resumed_sched)
    restore_rng_state(ckpt.rng_state)
    _train(resumed, resumed_opt, resumed_sched, first_step=3, n_steps=4)

    assert resumed.head.weight is resumed.embed.weight  # loading kept the tie
    for (name, p), q in zip(model.named_parameters(), resumed.parameters(), strict=True):
        assert torch.equal(p, q), name
    for p, q in zip(model.parameters(), resumed.parameters(), strict=True):
        for key in ("step", "exp_avg", "exp_avg_sq"):
            assert torch.equal(optimizer.state[p][key], resumed_opt.state[q][key]), key
    assert resumed_sched.lr == scheduler.lr
    assert [g["betas"] for g in resumed_opt.param_groups] == [(0.9, 0.98)] * 2


def test_resuming_without_the_rng_state_differs(tmp_path: Path) -> None:
    # guards the test above: with dropout active the RNG state really matters
    model, optimizer, scheduler = _setup(0)
    _train(model, optimizer, scheduler, first_step=0, n_steps=1)
    _save(tmp_path / "c.safetensors", model, optimizer, scheduler)
    _train(model, optimizer, scheduler, first_step=1, n_steps=2)
    resumed, resumed_opt, resumed_sched = _setup(0)
    restore_training_state(
        load_checkpoint(tmp_path / "c.safetensors"),
        model=resumed,
        optimizer=resumed_opt,
        scheduler=resumed_sched,
    )
    _train(resumed, resumed_opt, resumed_sched, first_step=1, n_steps=2)
    assert not torch.equal(model.proj.weight, resumed.proj.weight)


def test_wrapped_models_save_canonical_names_and_load_either_way(tmp_path: Path) -> None:
    model, _, _ = _setup(0)
    wrapped = Wrapper(torch.compile(model))  # names become module._orig_mod.*
    assert next(iter(wrapped.state_dict())).startswith("module._orig_mod.")
    optimizer = build_optimizer(wrapped, lr=1e-3)
    model(torch.tensor([[1, 2]])).sum().backward()
    optimizer.step()
    path = _save(tmp_path / "w.safetensors", wrapped, optimizer)

    ckpt = load_checkpoint(path)
    assert set(ckpt.model_state) == set(TinyLM().state_dict())
    assert set(ckpt.optimizer_state["state"]) == {name for name, _ in model.named_parameters()}

    bare, bare_opt, _ = _setup(1)
    restore_training_state(ckpt, model=bare, optimizer=bare_opt)
    assert torch.equal(bare.proj.weight, model.proj.weight)
    assert torch.equal(
        bare_opt.state[bare.proj.weight]["exp_avg"], optimizer.state[model.proj.weight]["exp_avg"]
    )
    rewrapped = Wrapper(TinyLM())
    load_model_weights(rewrapped, path)
    assert torch.equal(rewrapped.module.embed.weight, model.embed.weight)


def test_tied_weights_are_stored_once_and_restored_under_both_names(tmp_path: Path) -> None:
    model, _, _ = _setup(0)
    path = _save(tmp_path / "t.safetensors", model)
    with safe_open(path, framework="pt") as file:
        keys = set(file.keys())
        header = json.loads(file.metadata()["tformer"])
    assert "model/embed.weight" in keys and "model/head.weight" not in keys
    assert header["aliases"] == {"model/head.weight": "model/embed.weight"}
    ckpt = load_checkpoint(path)
    assert torch.equal(ckpt.model_state["head.weight"], model.embed.weight)
    fresh = TinyLM()
    load_model_weights(fresh, ckpt)
    assert fresh.head.weight is fresh.embed.weight and torch.equal(fresh.head.weight, model.embed.weight)


def test_partially_overlapping_views_are_copied(tmp_path: Path) -> None:
    model = nn.Module()
    model.register_buffer("table", torch.arange(10.0))
    model.register_buffer("window", model.table[2:5])  # shares memory with table, but is not an alias
    model.register_buffer("strided", model.table[::2])  # not contiguous
    ckpt = load_checkpoint(_save(tmp_path / "v.safetensors", model))
    assert torch.equal(ckpt.model_state["window"], torch.tensor([2.0, 3.0, 4.0]))
    assert torch.equal(ckpt.model_state["strided"], torch.arange(0.0, 10.0, 2.0))


def test_scaler_state_round_trip(tmp_path: Path) -> None:
    model, _, _ = _setup(0)
    scaler = torch.amp.GradScaler("cpu", init_scale=512.0, growth_interval=7)
    path = save_checkpoint(tmp_path / "s.safetensors", model=model, scaler=scaler, progress={}, run_config={})
    fresh = torch.amp.GradScaler("cpu")
    restore_training_state(load_checkpoint(path), model=TinyLM(), scaler=fresh)
    assert fresh.state_dict() == scaler.state_dict()


def test_newer_format_version_is_rejected(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model, _, _ = _setup(0)
    with monkeypatch.context() as patch:
        patch.setattr(ckpt_module, "FORMAT_VERSION", FORMAT_VERSION + 1)
        path = _save(tmp_path / "new.safetensors", model)
    with pytest.raises(
        ValueError, match=f"new.safetensors has checkpoint format version {FORMAT_VERSION + 1}"
    ):
        load_checkpoint(path)


def test_pickle_disguised_as_checkpoint_is_rejected_without_unpickling(tmp_path: Path) -> None:
    class CreatesMarker:
        def __init__(self, marker: Path) -> None:
            self.marker = marker

        def __reduce__(self):
            return (open, (str(self.marker), "w"))

    payload = pickle.dumps({"model": CreatesMarker(tmp_path / "marker")})
    pickle.loads(pickle.dumps(CreatesMarker(tmp_path / "proof")))  # the payload really would run code
    assert (tmp_path / "proof").exists()

    path = tmp_path / "evil.safetensors"
    path.write_bytes(payload)
    with pytest.raises(ValueError, match="evil.safetensors is not a readable safetensors file"):
        load_checkpoint(path)
    torch_style = tmp_path / "torch_save.safetensors"
    torch.save({"x": CreatesMarker(tmp_path / "marker")}, torch_style)
    with pytest.raises(ValueError, match="torch_save.safetensors is not a readable safetensors file"):
        load_checkpoint(torch_style)
    assert not (tmp_path / "marker").exists()


@pytest.mark.parametrize("keep", [0, 7, 100, -5])
def test_truncated_or_empty_file_is_rejected(tmp_path: Path, keep: int) -> None:
    model, _, _ = _setup(0)
    path = _save(tmp_path / "full.safetensors", model)
    data = path.read_bytes()
    assert len(data) > 200
    path.write_bytes(data[:keep])
    with pytest.raises(ValueError, match="full.safetensors .*expected a .safetensors checkpoint"):
        load_checkpoint(path)


def test_safetensors_file_without_tformer_metadata_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "plain.safetensors"
    save_file({"w": torch.zeros(2)}, path, metadata={"format": "pt"})
    with pytest.raises(ValueError, match="plain.safetensors is a safetensors file without tformer metadata"):
        load_checkpoint(path)
    with pytest.raises(FileNotFoundError, match="nothing.safetensors"):
        load_checkpoint(tmp_path / "nothing.safetensors")


def test_crash_during_write_leaves_the_previous_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model, _, _ = _setup(0)
    path = _save(tmp_path / "last.safetensors", model, progress={"step": 1})
    before = path.read_bytes()

    def crash_midway(tensors, filename, metadata=None) -> None:
        Path(filename).write_bytes(b"half a file")
        raise RuntimeError("simulated crash")

    monkeypatch.setattr(ckpt_module, "save_file", crash_midway)
    with pytest.raises(RuntimeError, match="simulated crash"):
        _save(path, model, progress={"step": 2})
    assert path.read_bytes() == before
    assert load_checkpoint(path).progress == {"step": 1}
    assert not path.with_suffix(".tmp").exists()


def test_stale_tmp_file_from_a_killed_run_does_not_matter(tmp_path: Path) -> None:
    model, _, _ = _setup(0)
    (tmp_path / "last.tmp").write_bytes(b"left over")
    path = _save(tmp_path / "last.safetensors", model, progress={"step": 9})
    assert load_checkpoint(path).progress == {"step": 9}
    assert not (tmp_path / "last.tmp").exists()


def test_unwritable_destination_names_the_path(tmp_path: Path) -> None:
    blocker = tmp_path / "not_a_dir"
    blocker.write_text("a file where a directory should be")
    model, _, _ = _setup(0)
    with pytest.raises(OSError, match="could not write checkpoint .*not_a_dir/c.safetensors"):
        _save(blocker / "c.safetensors", model)


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write to read-only directories")
def test_read_only_directory_keeps_the_old_checkpoint(tmp_path: Path) -> None:
    model, _, _ = _setup(0)
    path = _save(tmp_path / "ro" / "c.safetensors", model, progress={"step": 1})
    path.parent.chmod(0o500)
    try:
        with pytest.raises(PermissionError, match="could not write checkpoint"):
            _save(path, model, progress={"step": 2})
    finally:
        path.parent.chmod(0o700)
    assert load_checkpoint(path).progress == {"step": 1}


def test_load_model_weights_is_strict_and_names_the_file(tmp_path: Path) -> None:
    path = _save(tmp_path / "m.safetensors", TinyLM(width=8))
    with pytest.raises(
        ValueError,
        match=r"m.safetensors do not fit TinyLM: shape mismatch \(6\): embed.weight \(13, 8\) in file vs \(13, 6\)",
    ):
        load_model_weights(TinyLM(width=6), path)

    class Bigger(TinyLM):
        def __init__(self) -> None:
            super().__init__()
            self.extra = nn.Linear(2, 2)

    with pytest.raises(ValueError, match=r"missing \(2\): extra.weight, extra.bias"):
        load_model_weights(Bigger(), path)
    bigger_path = _save(tmp_path / "big.safetensors", Bigger())
    with pytest.raises(
        ValueError, match=r"big.safetensors do not fit TinyLM: unexpected \(2\): extra.weight"
    ):
        load_model_weights(TinyLM(), bigger_path)


def test_restoring_an_optimizer_that_was_not_saved_raises(tmp_path: Path) -> None:
    model, optimizer, _ = _setup(0)
    ckpt = load_checkpoint(_save(tmp_path / "weights_only.safetensors", model))
    with pytest.raises(ValueError, match="weights_only.safetensors holds no optimizer state"):
        restore_training_state(ckpt, model=model, optimizer=optimizer)


def test_optimizer_with_other_parameters_is_rejected(tmp_path: Path) -> None:
    model, optimizer, _ = _setup(0)
    ckpt = load_checkpoint(_save(tmp_path / "o.safetensors", model, optimizer))
    other = torch.optim.AdamW([model.proj.weight, model.proj.bias, model.embed.weight], lr=1e-3)
    with pytest.raises(ValueError, match="param groups"):
        restore_training_state(ckpt, model=model, optimizer=other)


def test_non_json_values_are_rejected_with_their_path(tmp_path: Path) -> None:
    model, _, _ = _setup(0)
    with pytest.raises(TypeError, match="run_config/data/root: a PosixPath cannot go into a checkpoint"):
        _save(tmp_path / "x.safetensors", model, run_config={"data": {"root": Path("/data")}})
    with pytest.raises(ValueError, match="must end in .safetensors"):
        _save(tmp_path / "x.pt", model)
    assert list(tmp_path.iterdir()) == []


def test_a_checkpoint_with_the_old_gated_ffn_name_loads_weights_and_optimizer_state(tmp_path: Path) -> None:
    # the gated FFN's output layer was `down` before it took FeedForward's name `linear2`
    from tformer.models.gpt import GPT, GPTConfig
    from tformer.nn.feedforward import FeedForwardKind

    config = GPTConfig(
        vocab_size=13,
        context_length=8,
        d_model=16,
        n_heads=2,
        n_layers=2,
        d_ff=24,
        feedforward=FeedForwardKind.SWIGLU,
    )
    torch.manual_seed(0)
    old = GPT(config)
    optimizer = build_optimizer(old, lr=1e-2, betas=(0.9, 0.99), eps=1e-8, weight_decay=0.1)
    ids = torch.randint(0, 13, (2, 6))
    old(ids).logits.square().mean().backward()
    optimizer.step()
    with torch.no_grad():
        expected = old(ids).logits
    for block in old.blocks.layers:  # the module as it was named then
        block.feedforward.down = block.feedforward.linear2
        del block.feedforward.linear2
    path = save_checkpoint(
        tmp_path / "old.safetensors", model=old, optimizer=optimizer, progress={"step": 1}, run_config={}
    )
    with safe_open(path, framework="pt") as file:
        assert any(".feedforward.down." in key for key in file.keys())  # noqa: SIM118

    stored = load_checkpoint(path)
    assert not any(".down." in name for name in [*stored.model_state, *stored.optimizer_state["state"]])
    torch.manual_seed(1)
    new = GPT(config)
    load_model_weights(new, stored)
    new_optimizer = build_optimizer(new, lr=1e-2, betas=(0.9, 0.99), eps=1e-8, weight_decay=0.1)
    load_optimizer_state_by_name(new_optimizer, new, stored.optimizer_state, path)
    with torch.no_grad():
        torch.testing.assert_close(new(ids).logits, expected, atol=0, rtol=0)
    moments = new_optimizer.state[new.blocks.layers[0].feedforward.linear2.weight]["exp_avg"]
    assert moments.abs().sum() > 0
