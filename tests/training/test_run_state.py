"""Progress, the counters a checkpoint stores: written as a plain mapping, read back with every field checked."""

from __future__ import annotations

import dataclasses

import pytest

from tformer.training.run_state import Progress


def test_round_trip_through_a_mapping():
    progress = Progress(step=7, epoch=1, batch_in_epoch=3, best_metric=1.5, best_step=6, train_seconds=2.0)
    stored = progress.to_dict()
    assert set(stored) == {f.name for f in dataclasses.fields(Progress)}
    assert Progress.from_dict(stored, source="c.safetensors") == progress


def test_fields_added_later_take_their_defaults():
    # a checkpoint written before budgets and eval timing stored only the first counters
    old = {"step": 5, "epoch": 0, "batch_in_epoch": 5, "best_metric": None, "best_step": None, "bad_evals": 0}
    progress = Progress.from_dict(old, source="old.safetensors")
    assert (progress.step, progress.planned_steps, progress.eval_seconds, progress.skipped_steps) == (
        5,
        None,
        0.0,
        0,
    )


@pytest.mark.parametrize(
    "edit, message",
    [
        ({"step": -5}, r"c\.safetensors: progress\.step must be an int >= 0, got -5"),
        ({"step": 2.5}, r"progress\.step must be an int >= 0, got 2\.5"),
        ({"epoch": True}, r"progress\.epoch must be an int >= 0, got True"),
        ({"batch_in_epoch": "3"}, r"progress\.batch_in_epoch must be an int >= 0, got '3'"),
        ({"planned_steps": -1}, r"progress\.planned_steps must be an int >= 0 or null, got -1"),
        ({"train_seconds": float("nan")}, r"progress\.train_seconds must be a finite number of seconds >= 0"),
        ({"best_metric": "low"}, r"progress\.best_metric must be a number or null, got 'low'"),
        ({"steps": 3}, r"unknown progress field\(s\) \['steps'\] \(valid: step, epoch"),
    ],
)
def test_bad_values_are_named_with_the_file(edit, message):
    stored = {**Progress(step=3, epoch=0, batch_in_epoch=3).to_dict(), **edit}
    with pytest.raises(ValueError, match=message):
        Progress.from_dict(stored, source="c.safetensors")


def test_missing_counters_and_non_mappings_are_refused():
    with pytest.raises(ValueError, match=r"c\.safetensors: progress lacks epoch, which a resume needs"):
        Progress.from_dict({"step": 3, "batch_in_epoch": 0}, source="c.safetensors")
    with pytest.raises(ValueError, match=r"c\.safetensors: progress must be a mapping, found list"):
        Progress.from_dict([3], source="c.safetensors")
