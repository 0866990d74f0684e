"""BLEU and chrF over decoded text: lists of strings in, numbers out.

Two kinds of BLEU are reported, named for what they are:

- `tokenized_lowercase_bleu`: BLEU on lowercased, tokenized text, the figure published Multi30k results use
  (computed here by `corpus_bleu`, written out so it can be read and checked);
- `sacrebleu_scores`: cased, detokenized sacreBLEU and chrF with their signature strings, the WMT standard.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from sacrebleu.metrics import BLEU, CHRF
from sacrebleu.tokenizers.tokenizer_13a import Tokenizer13a

from tformer.checks import check_positive_int

_TOKENIZE_13A = Tokenizer13a()


@dataclass(frozen=True)
class BleuResult:
    """Corpus BLEU and its parts; `score` and `precisions` are percentages (0-100), as sacreBLEU prints them."""

    score: float
    precisions: tuple[float, ...]  # modified n-gram precision for n = 1..max_order (smoothed if asked)
    brevity_penalty: float
    hyp_len: int  # total hypothesis tokens (c)
    ref_len: int  # total reference tokens (r)


def corpus_bleu(
    hypotheses: Sequence[str], references: Sequence[str], *, max_order: int = 4, smooth: bool = False
) -> BleuResult:
    """Corpus BLEU (Papineni et al., 2002) over text that is already tokenized: tokens are split on whitespace.

    One reference per hypothesis. n-gram counts are clipped by the reference counts and summed over the corpus;
    the score is BP * exp(mean over n of log p_n), with uniform weights over 1..max_order and brevity penalty
    BP = exp(1 - r/c) when c <= r (else 1). Without smoothing, any p_n = 0 makes the score 0.

    With the defaults this is what torchtext's `bleu_score` computes (uniform weights over 1..4-grams, no
    smoothing), the function bentrevett/pytorch-seq2seq and most published Multi30k numbers use, times 100.
    It also equals sacreBLEU with tokenize="none" and smooth_method="none". `smooth=True` applies sacreBLEU's
    default "exp" smoothing (NIST mteval-v13a): the k-th order with no match counts as 1 / 2^k matches.
    """
    _check_pairs(hypotheses, references)
    check_positive_int("max_order", max_order)
    matches = [0] * max_order  # clipped n-gram matches, index n - 1
    totals = [0] * max_order  # n-grams in the hypotheses
    hyp_len = ref_len = 0
    for hypothesis, reference in zip(hypotheses, references, strict=True):
        hyp_tokens, ref_tokens = hypothesis.split(), reference.split()
        hyp_len += len(hyp_tokens)
        ref_len += len(ref_tokens)
        for n in range(1, max_order + 1):
            hyp_ngrams, ref_ngrams = _ngrams(hyp_tokens, n), _ngrams(ref_tokens, n)
            # Clipping: a hypothesis n-gram counts at most as often as it occurs in the reference.
            matches[n - 1] += sum((hyp_ngrams & ref_ngrams).values())
            totals[n - 1] += max(len(hyp_tokens) - n + 1, 0)
    precisions = _precisions(matches, totals, smooth=smooth)
    brevity_penalty = 0.0 if hyp_len == 0 else math.exp(min(1.0 - ref_len / hyp_len, 0.0))
    if min(precisions) == 0.0:
        score = 0.0
    else:
        score = 100.0 * brevity_penalty * math.exp(sum(math.log(p) for p in precisions) / max_order)
    return BleuResult(
        score=score,
        precisions=tuple(100.0 * p for p in precisions),
        brevity_penalty=brevity_penalty,
        hyp_len=hyp_len,
        ref_len=ref_len,
    )


def tokenized_lowercase_bleu(hypotheses: Sequence[str], references: Sequence[str]) -> float:
    """BLEU (0-100) on lowercased text tokenized with sacreBLEU's "13a" tokenizer, no smoothing.

    Published Multi30k figures tokenize with spaCy, which is not available here. 13a (mteval-v13a, sacreBLEU's
    default) splits ASCII punctuation off words as spaCy does for the periods and commas that dominate
    Multi30k, and is fixed and language-independent, so every run scores the same way. It keeps apostrophes
    and hyphenated words whole where spaCy splits some ("man's" -> "man 's"), so figures are close to, not
    identical with, spaCy-tokenized ones. It leaves non-ASCII quotes attached ('„läuft“'); "intl" would split
    those, but it also splits every hyphen and apostrophe, which spaCy does not, so 13a is the closer match.
    """
    _check_pairs(hypotheses, references)
    return corpus_bleu(
        [_TOKENIZE_13A(text.lower()) for text in hypotheses],
        [_TOKENIZE_13A(text.lower()) for text in references],
    ).score


def sacrebleu_scores(hypotheses: Sequence[str], references: Sequence[str]) -> dict[str, float | str]:
    """Cased, detokenized sacreBLEU and chrF (sacreBLEU's defaults) with their signatures, as a flat dict:
    {"sacrebleu": float, "sacrebleu_signature": str, "chrf": float, "chrf_signature": str}."""
    _check_pairs(hypotheses, references)
    scores: dict[str, float | str] = {}
    for name, metric in (("sacrebleu", BLEU()), ("chrf", CHRF())):
        scores[name] = metric.corpus_score(list(hypotheses), [list(references)]).score
        scores[f"{name}_signature"] = str(metric.get_signature())
    return scores


def _ngrams(tokens: list[str], n: int) -> Counter[tuple[str, ...]]:
    return Counter(tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1))


def _precisions(matches: list[int], totals: list[int], *, smooth: bool) -> list[float]:
    """p_n as fractions; 0 where an order has no match (or no n-grams at all) unless smoothed."""
    precisions = []
    halvings = 1  # "exp" smoothing: the k-th order without a match gets 1 / 2^k matches
    for matched, total in zip(matches, totals, strict=True):
        if matched > 0:
            precisions.append(matched / total)
        elif smooth and total > 0 and any(matches):
            halvings *= 2
            precisions.append(1.0 / (halvings * total))
        else:
            precisions.append(0.0)
    return precisions


def _check_pairs(hypotheses: Sequence[str], references: Sequence[str]) -> None:
    for name, texts in (("hypotheses", hypotheses), ("references", references)):
        if isinstance(texts, str) or not isinstance(texts, Sequence):
            raise TypeError(f"{name} must be a list of strings, got {type(texts).__name__}")
        not_str = [i for i, text in enumerate(texts) if not isinstance(text, str)]
        if not_str:
            raise TypeError(f"{name}[{not_str[0]}] must be a str, got {type(texts[not_str[0]]).__name__}")
    if len(hypotheses) != len(references):
        raise ValueError(
            f"{len(hypotheses)} hypotheses for {len(references)} references: they must pair up, one each"
        )
    if not hypotheses:
        raise ValueError("BLEU needs at least one hypothesis-reference pair, got empty lists")
