"""Losses shared by the tasks: label-smoothed cross-entropy with an ignore index, and the LossOutput contract.

Shape legend: V classes (vocabulary); `...` any leading batch dims (usually B, T).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

_REDUCTIONS = ("mean", "sum", "none")


@dataclass
class LossOutput:
    """What a task's loss returns: the trainer sums both over an accumulation window, then divides.

    Returning a sum and a count (not a mean) keeps the per-item weighting exact when micro-batches hold
    different numbers of real tokens.
    """

    loss_sum: Tensor  # scalar, summed over items
    n_items: Tensor  # scalar count of the items in loss_sum (e.g. non-pad tokens), on the loss's device


def total_loss(outputs: Iterable[LossOutput]) -> tuple[float, int]:
    """(summed loss, summed item count) over `outputs`, added up on their device in float64 and read once at
    the end: reading every batch's value would make the host wait for a GPU batch by batch."""
    total: Tensor | None = None
    for out in outputs:
        pair = torch.stack([out.loss_sum.to(torch.float64), out.n_items.to(torch.float64)])
        total = pair if total is None else total + pair
    if total is None:
        return 0.0, 0
    loss_sum, n_items = total.tolist()
    return loss_sum, int(n_items)


def label_smoothed_cross_entropy(
    logits: Tensor,
    targets: Tensor,
    *,
    smoothing: float = 0.0,
    ignore_index: int = -100,
    reduction: str = "mean",
) -> Tensor:
    """Cross-entropy against (1 - smoothing) * onehot(target) + smoothing / V, as in the paper and torch.

    logits: Float[..., V]; targets: Long[...]. Positions whose target is `ignore_index` contribute exactly 0
    and get no gradient. "mean" averages over non-ignored items and is 0 (not NaN) when all are ignored;
    "sum" sums them; "none" returns Float[...] with zeros at ignored positions. Half-precision logits are
    upcast to float32, so the result is float32 for them.
    """
    if not 0.0 <= smoothing < 1.0:
        raise ValueError(f"smoothing must be in [0, 1), got {smoothing!r}")
    if reduction not in _REDUCTIONS:
        raise ValueError(f"reduction must be one of {_REDUCTIONS}, got {reduction!r}")
    if logits.shape[:-1] != targets.shape:
        raise ValueError(
            f"logits must be targets' shape plus a class dim: logits {tuple(logits.shape)}, "
            f"targets {tuple(targets.shape)}"
        )
    if targets.dtype != torch.long:
        raise TypeError(f"targets must be torch.long class ids, got {targets.dtype}")

    real = targets != ignore_index  # [...]
    # Zero the ignored rows first: a NaN/inf there (say from a fully masked pad query) would otherwise reach
    # the gradient through log_softmax's backward even though its loss is masked out.
    logits = torch.where(real.unsqueeze(-1), logits, 0.0)  # [..., V]
    # float32 log-softmax: in fp16/bf16 the log-probabilities of a large vocabulary lose too many digits
    log_probs = F.log_softmax(logits, dim=-1, dtype=torch.float32)  # [..., V]
    # gather needs a valid class id at every position; ignored ones are zeroed below
    safe_targets = targets.masked_fill(~real, 0)
    nll = -log_probs.gather(-1, safe_targets.unsqueeze(-1)).squeeze(-1)  # [...]
    loss = nll
    if smoothing > 0.0:
        # the uniform part of the target puts smoothing / V on every class, so its cross-entropy is the
        # mean of -log p over the classes
        uniform = -log_probs.mean(dim=-1)  # [...]
        loss = (1.0 - smoothing) * nll + smoothing * uniform
    loss = loss.masked_fill(~real, 0.0)

    if reduction == "none":
        return loss
    if reduction == "sum":
        return loss.sum()
    return loss.sum() / real.sum().clamp(min=1)
