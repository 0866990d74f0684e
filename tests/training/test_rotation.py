"""Checkpoint file naming and rotation helpers, on plain files (the trainer tests cover them in a real run)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tformer.training import rotation
from tformer.training.rotation import link_or_copy, numbered_checkpoint, numbered_checkpoints, prune_numbered


def _touch_steps(out_dir: Path, steps: list[int]) -> None:
    for step in steps:
        numbered_checkpoint(out_dir, step).write_bytes(str(step).encode())


def test_numbered_checkpoint_name_is_zero_padded_to_six_digits(tmp_path: Path) -> None:
    assert numbered_checkpoint(tmp_path, 42) == tmp_path / "step-000042.safetensors"
    assert numbered_checkpoint(tmp_path, 1234567).name == "step-1234567.safetensors"


def test_numbered_checkpoints_ignores_other_files(tmp_path: Path) -> None:
    _touch_steps(tmp_path, [3, 20, 1_000_000])
    for name in (
        "last.safetensors",
        "best.safetensors",
        "step-abc.safetensors",
        "step-000007.safetensors.tmp",
    ):
        (tmp_path / name).touch()
    assert numbered_checkpoints(tmp_path) == {
        3: tmp_path / "step-000003.safetensors",
        20: tmp_path / "step-000020.safetensors",
        1_000_000: tmp_path / "step-1000000.safetensors",
    }


def test_prune_keeps_the_newest_by_step_not_by_name(tmp_path: Path) -> None:
    # As text "step-900000" sorts after "step-2000000"; the step number must decide.
    _touch_steps(tmp_path, [1_000_000, 5, 2_000_000, 900_000])
    (tmp_path / "last.safetensors").touch()
    prune_numbered(tmp_path, 2)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "last.safetensors",
        "step-1000000.safetensors",
        "step-2000000.safetensors",
    ]


def test_link_or_copy_replaces_dst_with_src_content(tmp_path: Path) -> None:
    src, dst = tmp_path / "step-000001.safetensors", tmp_path / "last.safetensors"
    src.write_bytes(b"new")
    dst.write_bytes(b"old")
    link_or_copy(src, dst)
    assert dst.read_bytes() == b"new"
    assert sorted(p.name for p in tmp_path.iterdir()) == [dst.name, src.name]  # no .tmp left behind


def test_link_or_copy_copies_where_hard_links_fail(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_links(src: os.PathLike, dst: os.PathLike) -> None:
        raise OSError("hard links not supported")

    monkeypatch.setattr(rotation.os, "link", no_links)
    src, dst = tmp_path / "a", tmp_path / "b"
    src.write_bytes(b"x" * 1000)
    link_or_copy(src, dst)
    assert dst.read_bytes() == src.read_bytes()
    assert os.stat(dst).st_ino != os.stat(src).st_ino  # a copy, not a link
    src.write_bytes(b"changed")
    assert dst.read_bytes() == b"x" * 1000
