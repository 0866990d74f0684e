"""Pure metric functions over decoded text: strings in, a number out."""

from __future__ import annotations

from collections.abc import Sequence


def exact_match(hypotheses: Sequence[str], references: Sequence[str]) -> float:
    """Fraction of hypotheses equal to their reference, character for character."""
    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} hypotheses for {len(references)} references: they must pair up")
    if not references:
        raise ValueError("exact_match needs at least one reference")
    return sum(h == r for h, r in zip(hypotheses, references, strict=True)) / len(references)
