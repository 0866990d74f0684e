"""Evaluating a trained checkpoint on a held-out split, whatever its task: the checkpoint names its task kind,
and the kind evaluates (translation decodes and scores the hypotheses; a language model scores the split's
likelihood)."""

from __future__ import annotations

from pathlib import Path

from tformer.tasks.base import Evaluation, EvaluationRequest
from tformer.tasks.runs import load_trained


def evaluate_checkpoint(
    checkpoint: str | Path,
    *,
    split: str,
    n: int | None = None,
    beam_size: int | None = None,
    device: str = "auto",
) -> Evaluation:
    """Score the checkpoint on `split` with its own config; `n` and `beam_size` go to kinds that take them."""
    trained = load_trained(checkpoint, device=device)
    return trained.kind.evaluate(trained, EvaluationRequest(split=split, n=n, beam_size=beam_size))
