"""Training curves from the trainer's history: a list of flat records such as ``{"step": 100, "loss": 2.3}``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tformer.viz.attention import new_figure, save_png

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["curve_points", "curves_figure", "plot_curves"]


def plot_curves(
    history: Sequence[Mapping[str, Any]], *, keys: Sequence[str], path: str | Path, x_key: str = "step"
) -> Path:
    """Save one plot per key (stacked, shared x axis) as a PNG; returns the path.

    Records without a key are skipped for that key, so train and eval records can share one history.
    """
    return save_png(curves_figure(history, keys=keys, x_key=x_key), path)


def curves_figure(
    history: Sequence[Mapping[str, Any]], *, keys: Sequence[str], x_key: str = "step"
) -> Figure:
    """The figure of ``plot_curves``, to show in a notebook or save elsewhere."""
    if isinstance(keys, str) or not keys:
        raise ValueError(f"keys must be a non-empty list of metric names, got {keys!r}")
    curves = {key: curve_points(history, key=key, x_key=x_key) for key in keys}
    figure = new_figure(width=7.0, height=2.2 * len(keys) + 0.6)
    axes = figure.subplots(len(keys), 1, sharex=True, squeeze=False)[:, 0]
    for ax, (key, (xs, ys)) in zip(axes, curves.items(), strict=True):
        ax.plot(xs, ys, marker="." if len(xs) < 50 else None)
        ax.set_ylabel(key)
        ax.grid(True, alpha=0.3)
    axes[-1].set_xlabel(x_key)
    return figure


def curve_points(
    history: Sequence[Mapping[str, Any]], *, key: str, x_key: str = "step"
) -> tuple[list[float], list[float]]:
    """The (x, y) points of one key: its value in every record that has it, against that record's ``x_key``."""
    xs: list[float] = []
    ys: list[float] = []
    for index, record in enumerate(history):
        if record.get(key) is None:
            continue
        if x_key not in record:
            raise ValueError(
                f"history record {index} has '{key}' but no '{x_key}' (its keys: {', '.join(record)})"
            )
        xs.append(_number(record[x_key], name=x_key, index=index))
        ys.append(_number(record[key], name=key, index=index))
    if not ys:
        available = sorted({name for record in history for name in record})
        raise ValueError(
            f"no history record has the key '{key}' (keys in the history: {', '.join(available)})"
        )
    return xs, ys


def _number(value: Any, *, name: str, index: int) -> float:
    try:
        return float(value)  # also takes 0-d tensors and numpy scalars
    except (TypeError, ValueError) as error:
        raise TypeError(f"history record {index}: '{name}' = {value!r} is not a number") from error
