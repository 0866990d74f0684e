"""Attention heatmaps: which source tokens each target token looked at.

matplotlib is imported inside the functions and drawn through its Agg canvas directly (no pyplot), so importing
tformer stays cheap and never changes the backend of a notebook or GUI the caller is using.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["attention_figure", "new_figure", "plot_attention", "save_png"]

_INCHES_PER_TOKEN = 0.35  # room for one tick label at 9 pt


def plot_attention(
    weights: Any,
    *,
    source_tokens: Sequence[str],
    target_tokens: Sequence[str],
    path: str | Path,
    title: str | None = None,
) -> Path:
    """Save a heatmap of ``weights`` [T, S] (source tokens on x, target tokens on y) as a PNG; returns the path."""
    figure = attention_figure(weights, source_tokens=source_tokens, target_tokens=target_tokens, title=title)
    return save_png(figure, path)


def attention_figure(
    weights: Any,
    *,
    source_tokens: Sequence[str],
    target_tokens: Sequence[str],
    title: str | None = None,
) -> Figure:
    """The heatmap of ``plot_attention`` as a matplotlib Figure (to show in a notebook or save elsewhere).

    ``weights`` is a [T, S] torch tensor or array, e.g. ``capture_attention(model)`` then ``maps.cross_attention()[b].mean(0)`` (viz.capture).
    """
    grid = _as_matrix(weights)
    expected = (len(target_tokens), len(source_tokens))
    if grid.shape != expected:
        raise ValueError(
            f"attention weights have shape {grid.shape} but the tokens give "
            f"(len(target_tokens), len(source_tokens)) = {expected}"
        )
    n_target, n_source = grid.shape
    figure = new_figure(
        width=max(4.0, _INCHES_PER_TOKEN * n_source + 2.0),
        height=max(3.0, _INCHES_PER_TOKEN * n_target + 1.5),
    )
    axes = figure.add_subplot()
    image = axes.imshow(grid, cmap="viridis", aspect="auto", interpolation="nearest")
    axes.set_xticks(range(n_source), [_literal(token) for token in source_tokens], rotation=90, fontsize=9)
    axes.set_yticks(range(n_target), [_literal(token) for token in target_tokens], fontsize=9)
    axes.set_xlabel("source")
    axes.set_ylabel("target")
    if title is not None:
        axes.set_title(_literal(title))
    figure.colorbar(image, ax=axes)
    return figure


def _as_matrix(weights: Any) -> np.ndarray:
    if hasattr(weights, "detach"):  # a torch tensor: may need grad, live on a GPU or be bfloat16
        weights = weights.detach().float().cpu().numpy()
    grid = np.asarray(weights, dtype=np.float64)
    if grid.ndim != 2:
        raise ValueError(f"attention weights must be 2-D [target, source], got shape {grid.shape}")
    return grid


def _literal(text: str) -> str:
    """Escape ``$`` so that tokens such as ``$5`` are drawn as written, not parsed as mathtext."""
    return str(text).replace("$", r"\$")


def new_figure(*, width: float, height: float) -> Figure:
    """A Figure (inches) on the Agg canvas with tight layout, made without pyplot or any global backend change."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), layout="tight")
    FigureCanvasAgg(figure)
    return figure


def save_png(figure: Figure, path: str | Path) -> Path:
    """Write ``figure`` to ``path`` (which must end in .png), creating missing parent folders."""
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise ValueError(f"figures are written as PNG: the path must end in .png, got {str(path)!r}")
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, format="png", dpi=100)
    return path
