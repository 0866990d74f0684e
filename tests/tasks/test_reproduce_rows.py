"""The published rows: every recipe loads, CPU recipes carry their time budget, the machine picks the recipe."""

from __future__ import annotations

import pytest

from tformer.tasks.reproduce import ROWS, machine_for, pick_recipe, published_row
from tformer.tasks.runs import load_run_config


@pytest.mark.parametrize("name", sorted(ROWS))
def test_every_row_has_a_cpu_recipe_within_its_stated_budget(name: str) -> None:
    row = published_row(name)
    recipe = row.recipes["cpu"]
    train = load_run_config(recipe.preset).train
    if train.budget_minutes is None:  # a fixed configuration copied from a peer (nanoGPT's CPU run)
        assert "iterations" in recipe.budget
    else:
        stated = float(recipe.budget.split(" min")[0])
        assert train.budget_minutes <= stated
        assert train.max_steps > train.budget_calibration_steps  # the budget, not max_steps, decides


def test_the_device_picks_the_recipe() -> None:
    row = published_row("multi30k_de_en")
    assert machine_for("cpu") == "cpu" and machine_for("cuda:1") == "gpu"
    assert pick_recipe(row, "cpu") == ("cpu", row.recipes["cpu"])
    assert pick_recipe(row, "gpu") == ("gpu", row.recipes["gpu"])
    cpu_only = published_row("multi30k_de_en_lstm")
    assert pick_recipe(cpu_only, "gpu") == ("cpu", cpu_only.recipes["cpu"])  # a GPU runs the CPU recipe
    with pytest.raises(ValueError, match="machine must be one of"):
        pick_recipe(row, "tpu")


def test_a_row_without_a_target_is_reported_not_judged() -> None:
    row = published_row("multi30k_en_fr")
    assert row.reached(12.0, row.recipes["cpu"]) is None
    de_en = published_row("multi30k_de_en")
    assert de_en.reached(37.0, de_en.recipes["cpu"]) is True
    assert de_en.reached(36.9, de_en.recipes["cpu"]) is False
