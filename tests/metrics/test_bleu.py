"""BLEU and chrF against sacreBLEU (the reference implementation) and against hand computations."""

from __future__ import annotations

import math

import pytest
import sacrebleu
from sacrebleu.metrics import BLEU

from tformer.metrics.bleu import corpus_bleu, sacrebleu_scores, tokenized_lowercase_bleu

# Hand-made corpora: repeated words (clipping), every n-gram order matched somewhere, and in the second one
# hypotheses shorter than their references (c = 17 < r = 22, so a brevity penalty below 1).
EQUAL_LENGTH = (
    ["the the the cat sat on the mat", "a dog runs in the park today", "he reads a book"],
    ["the cat sat on the mat", "a dog is running in the park", "she is reading a good book"],
)
SHORTER = (
    ["a man rides a red bike", "two kids play in the snow snow", "the woman is cooking"],
    [
        "a man is riding a red bike down the hill",
        "two kids play in the white snow",
        "the old woman is cooking",
    ],
)


@pytest.mark.parametrize("corpus", [EQUAL_LENGTH, SHORTER], ids=["equal-length", "shorter"])
@pytest.mark.parametrize("smooth", [False, True])
def test_corpus_bleu_matches_sacrebleu_without_tokenization(corpus, smooth):
    hypotheses, references = corpus
    ours = corpus_bleu(hypotheses, references, smooth=smooth)
    ref = sacrebleu.corpus_bleu(
        hypotheses, [references], tokenize="none", force=True, smooth_method="exp" if smooth else "none"
    )
    assert ours.score == pytest.approx(ref.score, abs=1e-6)
    assert ours.precisions == pytest.approx(ref.precisions, abs=1e-6)
    assert ours.brevity_penalty == pytest.approx(ref.bp, abs=1e-12)
    assert (ours.hyp_len, ours.ref_len) == (ref.sys_len, ref.ref_len)
    assert 0.0 < ours.score < 100.0


def test_shorter_corpus_has_a_brevity_penalty():
    assert corpus_bleu(*SHORTER).brevity_penalty == pytest.approx(math.exp(1 - 22 / 17))


def test_smoothing_matters_only_when_an_order_has_no_match():
    # 1-grams and 2-grams match, no 3-gram does: unsmoothed BLEU is 0, sacreBLEU's "exp" smoothing is not.
    hypotheses, references = ["a b c d e"], ["a b x c d y e"]
    assert corpus_bleu(hypotheses, references).score == 0.0
    smoothed = corpus_bleu(hypotheses, references, smooth=True)
    ref = sacrebleu.corpus_bleu(hypotheses, [references], tokenize="none", force=True, smooth_method="exp")
    assert smoothed.score == pytest.approx(ref.score, abs=1e-6)
    assert smoothed.score > 0.0
    assert corpus_bleu(*EQUAL_LENGTH, smooth=True).score == corpus_bleu(*EQUAL_LENGTH).score


def test_max_order_matches_sacrebleu():
    hypotheses, references = SHORTER
    ref = BLEU(tokenize="none", force=True, smooth_method="none", max_ngram_order=2).corpus_score(
        hypotheses, [references]
    )
    ours = corpus_bleu(hypotheses, references, max_order=2)
    assert ours.score == pytest.approx(ref.score, abs=1e-6)
    assert len(ours.precisions) == 2


def test_torchtext_docstring_example():
    # torchtext.data.metrics.bleu_score documents 0.8408964276313782 for this corpus (its second sentence has
    # two references there; the closest-length one has the same length, so one reference gives the same
    # value). By hand: p1..p4 = 4/6, 3/4, 2/2, 1/1, c = r = 6, so BLEU = (1/2) ** (1/4).
    result = corpus_bleu(["My full pytorch test", "Another Sentence"], ["My full pytorch test", "No Match"])
    assert result.score == pytest.approx(100 * 0.5**0.25, abs=1e-9)
    assert result.score == pytest.approx(100 * 0.8408964276313782, abs=1e-4)  # torchtext sums in float32


def test_clipping_papineni_example():
    # Papineni et al. (2002): "the" x 7 against "the cat is on the mat" has modified unigram precision 2/7.
    result = corpus_bleu(["the the the the the the the"], ["the cat is on the mat"])
    assert result.precisions[0] == pytest.approx(100 * 2 / 7)
    assert result.score == 0.0  # no 2-gram matches


def test_brevity_penalty_by_hand():
    # c = 3 hypothesis tokens, r = 6 reference tokens: BP = exp(1 - 6/3) = exp(-1). Every 1..3-gram of the
    # hypothesis is in the reference, so p1 = p2 = p3 = 1 and BLEU-3 = 100 * exp(-1).
    result = corpus_bleu(["the cat sat"], ["the cat sat on the mat"], max_order=3)
    assert result.brevity_penalty == pytest.approx(math.exp(-1))
    assert result.precisions == pytest.approx((100.0, 100.0, 100.0))
    assert result.score == pytest.approx(100 * math.exp(-1))


def test_longer_hypothesis_has_no_brevity_penalty():
    assert corpus_bleu(["the cat sat on the mat today"], ["the cat sat on the mat"]).brevity_penalty == 1.0


def test_perfect_match_is_100_and_no_overlap_is_0():
    texts = ["a man is riding a bike", "two dogs play in the snow"]
    assert corpus_bleu(texts, texts).score == pytest.approx(100.0)
    assert corpus_bleu(["one two three four"], ["five six seven eight"]).score == 0.0
    assert corpus_bleu([""], ["a b c d"]).score == 0.0  # empty hypothesis: c = 0


def test_whitespace_is_the_only_tokenization():
    assert corpus_bleu(["a  b\tc d"], ["a b c d"]).score == pytest.approx(100.0)
    assert corpus_bleu(["a b c d."], ["a b c d ."]).score == 0.0  # "d." is not "d"


@pytest.mark.parametrize(
    ("hypotheses", "references", "error", "match"),
    [
        (["a b"], ["a b", "c d"], ValueError, "1 hypotheses for 2 references"),
        ([], [], ValueError, "at least one"),
        ("a b", ["a b"], TypeError, "hypotheses must be a list of strings"),
        (["a b"], [["a", "b"]], TypeError, r"references\[0\] must be a str"),
    ],
)
def test_bad_input_raises(hypotheses, references, error, match):
    for function in (corpus_bleu, tokenized_lowercase_bleu, sacrebleu_scores):
        with pytest.raises(error, match=match):
            function(hypotheses, references)


@pytest.mark.parametrize("max_order", [0, -1, 2.0, True])
def test_bad_max_order_raises(max_order):
    with pytest.raises(ValueError, match="max_order must be an int >= 1"):
        corpus_bleu(["a"], ["a"], max_order=max_order)


def test_tokenized_lowercase_bleu_ignores_case_and_splits_punctuation():
    references = ["A man, in a blue shirt, is running.", "Two dogs play in the snow."]
    shouted = ["A MAN, IN A BLUE SHIRT, IS RUNNING.", "two Dogs play in the Snow."]
    assert tokenized_lowercase_bleu(shouted, references) == pytest.approx(100.0)
    # 13a splits the punctuation off, so "running." and "running" share the token "running".
    hypotheses = ["a man in a blue shirt is running.", "two dogs play in snow."]
    expected = corpus_bleu(
        ["a man in a blue shirt is running .", "two dogs play in snow ."],
        ["a man , in a blue shirt , is running .", "two dogs play in the snow ."],
    ).score
    assert tokenized_lowercase_bleu(hypotheses, references) == pytest.approx(expected)
    assert 0.0 < expected < 100.0


def test_sacrebleu_scores_are_cased_detokenized_with_signatures():
    hypotheses = ["The cat sat on the mat.", "A dog runs in the park."]
    references = ["The cat sat on a mat.", "A dog is running in the park."]
    scores = sacrebleu_scores(hypotheses, references)
    assert scores["sacrebleu"] == pytest.approx(sacrebleu.corpus_bleu(hypotheses, [references]).score)
    assert scores["chrf"] == pytest.approx(sacrebleu.corpus_chrf(hypotheses, [references]).score)
    assert scores["sacrebleu_signature"].startswith("nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:")
    assert scores["chrf_signature"].startswith("nrefs:1|case:mixed|eff:yes|nc:6|nw:0|space:no|version:")
    lowered = sacrebleu_scores([h.lower() for h in hypotheses], references)
    assert lowered["sacrebleu"] < scores["sacrebleu"]  # cased: "the" does not match "The"
