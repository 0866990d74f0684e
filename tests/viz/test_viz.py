from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from tformer.viz.attention import attention_figure, plot_attention
from tformer.viz.curves import curve_points, curves_figure, plot_curves

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
SOURCE = ["<s>", "Der", "Hund", "bellt", "</s>"]
TARGET = ["The", "dog", "barks", "</s>"]


def _weights(seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.softmax(torch.randn(len(TARGET), len(SOURCE), generator=generator), dim=-1)


def _assert_png(path: Path) -> None:
    assert path.is_file()
    assert path.stat().st_size > len(PNG_MAGIC)
    assert path.read_bytes()[: len(PNG_MAGIC)] == PNG_MAGIC


# ---------------------------------------------------------------------------------------------- attention


def test_plot_attention_writes_a_png(tmp_path: Path) -> None:
    path = tmp_path / "maps" / "attention.png"  # missing folders are created
    result = plot_attention(
        _weights(), source_tokens=SOURCE, target_tokens=TARGET, path=path, title="layer 6"
    )
    assert result == path
    _assert_png(path)


def test_attention_figure_draws_the_weights_with_token_labels() -> None:
    weights = _weights().requires_grad_()  # straight from a model: still attached to the graph
    figure = attention_figure(weights, source_tokens=SOURCE, target_tokens=TARGET, title="cost $5")
    heatmap, colorbar = figure.axes
    np.testing.assert_allclose(heatmap.images[0].get_array(), weights.detach().numpy(), rtol=1e-6)
    assert [label.get_text() for label in heatmap.get_xticklabels()] == SOURCE
    assert [label.get_text() for label in heatmap.get_yticklabels()] == TARGET
    assert heatmap.get_xlabel() == "source" and heatmap.get_ylabel() == "target"
    assert heatmap.get_title() == r"cost \$5"  # escaped so that matplotlib draws the dollar sign literally
    assert colorbar is not heatmap


def test_tokens_with_dollar_signs_render(tmp_path: Path) -> None:
    # Unescaped, "$^$" is invalid mathtext and makes savefig raise.
    tokens = ["$^$", "$x$", "$"]
    path = plot_attention(
        np.eye(3), source_tokens=tokens, target_tokens=tokens, path=tmp_path / "dollars.png"
    )
    _assert_png(path)


def test_attention_shape_mismatch_names_both_shapes(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"shape \(4, 5\) but the tokens give .* = \(4, 6\)"):
        plot_attention(
            _weights(), source_tokens=[*SOURCE, "x"], target_tokens=TARGET, path=tmp_path / "a.png"
        )
    with pytest.raises(ValueError, match=r"shape \(4, 5\) but the tokens give .* = \(3, 5\)"):
        plot_attention(_weights(), source_tokens=SOURCE, target_tokens=TARGET[:3], path=tmp_path / "a.png")
    assert not (tmp_path / "a.png").exists()


def test_attention_weights_must_be_2d(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"must be 2-D \[target, source\], got shape \(2, 4, 5\)"):
        plot_attention(
            torch.rand(2, 4, 5), source_tokens=SOURCE, target_tokens=TARGET, path=tmp_path / "a.png"
        )


def test_figures_must_be_saved_as_png(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"must end in \.png, got '.*attention\.pdf'"):
        plot_attention(
            _weights(), source_tokens=SOURCE, target_tokens=TARGET, path=tmp_path / "attention.pdf"
        )


# ---------------------------------------------------------------------------------------------- curves

HISTORY = [
    {"step": 10, "loss": 3.0, "lr": 1e-4},
    {"step": 20, "loss": 2.0, "lr": 2e-4},
    {"step": 20, "val_loss": 2.5},
    {"step": 30, "loss": 1.5, "lr": 3e-4},
    {"step": 40, "loss": torch.tensor(1.25), "lr": 3e-4, "val_loss": np.float32(2.0)},
]


def test_plot_curves_writes_a_png(tmp_path: Path) -> None:
    path = tmp_path / "curves.png"
    assert plot_curves(HISTORY, keys=["loss", "val_loss", "lr"], path=path) == path
    _assert_png(path)


def test_curve_points_skip_records_without_the_key() -> None:
    assert curve_points(HISTORY, key="loss") == ([10.0, 20.0, 30.0, 40.0], [3.0, 2.0, 1.5, 1.25])
    assert curve_points(HISTORY, key="val_loss") == ([20.0, 40.0], [2.5, 2.0])
    assert curve_points([{"epoch": 1, "acc": 0.5}], key="acc", x_key="epoch") == ([1.0], [0.5])


def test_curves_figure_has_one_axis_per_key_with_its_points() -> None:
    figure = curves_figure(HISTORY, keys=["loss", "val_loss"])
    assert len(figure.axes) == 2
    for axes, key in zip(figure.axes, ["loss", "val_loss"], strict=True):
        (line,) = axes.get_lines()
        assert axes.get_ylabel() == key
        assert (list(line.get_xdata()), list(line.get_ydata())) == curve_points(HISTORY, key=key)
    assert figure.axes[-1].get_xlabel() == "step"


def test_unknown_curve_key_lists_the_keys_in_the_history(tmp_path: Path) -> None:
    with pytest.raises(
        ValueError, match=r"no history record has the key 'los' \(keys in the history: loss, lr, "
    ):
        plot_curves(HISTORY, keys=["loss", "los"], path=tmp_path / "c.png")
    assert not (tmp_path / "c.png").exists()


def test_curve_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="keys must be a non-empty list"):
        plot_curves(HISTORY, keys=[], path=tmp_path / "c.png")
    with pytest.raises(ValueError, match="keys must be a non-empty list"):
        plot_curves(HISTORY, keys="loss", path=tmp_path / "c.png")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"history record 1 has 'loss' but no 'step'"):
        plot_curves([{"step": 1, "loss": 1.0}, {"loss": 2.0}], keys=["loss"], path=tmp_path / "c.png")
    with pytest.raises(TypeError, match=r"history record 0: 'loss' = 'high' is not a number"):
        plot_curves([{"step": 1, "loss": "high"}], keys=["loss"], path=tmp_path / "c.png")


# ---------------------------------------------------------------------------------------------- import hygiene


def test_importing_viz_leaves_matplotlib_alone() -> None:
    code = (
        "import sys, tformer.viz.attention, tformer.viz.curves; "
        "assert 'matplotlib' not in sys.modules, 'matplotlib imported at import time'; "
        "import numpy as np, matplotlib; matplotlib.use('svg'); "
        "from tformer.viz.attention import plot_attention; "
        "import tempfile, os; d = tempfile.mkdtemp(); "
        "plot_attention(np.eye(2), source_tokens=['a','b'], target_tokens=['c','d'], path=os.path.join(d, 'x.png')); "
        "assert matplotlib.get_backend() == 'svg', matplotlib.get_backend()"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
