"""Where translation pairs come from and how they become token ids.

Two sources: generated dates (the demo; any number of pairs, splits by date) and Multi30k (real captions in
German, English and French, read from the data directory). Tokenizers are trained on the training split only.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass

from tformer.checks import check_fraction, check_positive_int, check_positive_ints
from tformer.data.catalog import locate
from tformer.data.dates import generate_date_pairs
from tformer.data.normalize import normalize_punctuation
from tformer.data.parallel import read_parallel
from tformer.data.tokenizers import Tokenizer, TokenizerPair, train_bpe_tokenizer, train_char_tokenizer

DATASETS = ("dates", "multi30k")
TOKENIZERS = ("char", "bpe")
MULTI30K_LANGUAGES = ("de", "en", "fr")
# split name -> file stem in the data directory
MULTI30K_SPLITS = {"train": "train", "valid": "val", "test": "test_2016_flickr"}
# TED talks instead of image captions: how far a Multi30k model generalises (German <-> English only; the files
# are fairseq's tokenized, lowercased text, so only lowercased tokenized BLEU is meaningful on them)
OUT_OF_DOMAIN_SPLIT = "iwslt14_valid"


@dataclass(frozen=True)
class TranslationDataConfig:
    dataset: str = "dates"  # "dates" (generated, the demo) or "multi30k"
    src_lang: str = "de"  # multi30k only
    tgt_lang: str = "en"
    data_dir: str | None = None  # default: $TFORMER_DATA_DIR, else ../shared/data when present
    n_train: int = 20_000  # generated data sets only
    n_valid: int = 500  # generated data sets: pairs per held-out split
    limit_pairs: int | None = None  # real data sets: use only the first N pairs of each split (smoke tests)
    normalize: bool = (
        False  # Moses-style punctuation normalisation of both sides (and of inputs at translate time)
    )
    lowercase: bool = False  # lowercase both sides before tokenizing
    tokenizer: str = "char"  # "char" or "bpe"
    joint_vocab: bool = True  # one vocabulary for source and target (needed for share_embeddings)
    vocab_size: int = 8000  # bpe only: per vocabulary
    max_tokens: int = 4096  # per batch: examples x longest (source or target) length, padding included
    label_smoothing: float = 0.1
    eval_decode: int = 500  # validation sentences decoded at each evaluation (0: loss only)

    def __post_init__(self) -> None:
        choices = {"dataset": DATASETS, "tokenizer": TOKENIZERS}
        if self.dataset == "multi30k":
            choices |= {"src_lang": MULTI30K_LANGUAGES, "tgt_lang": MULTI30K_LANGUAGES}
        for name, valid in choices.items():
            if getattr(self, name) not in valid:
                raise ValueError(
                    f"data.{name} {getattr(self, name)!r} is unknown (valid: {', '.join(valid)})"
                )
        if self.dataset == "multi30k" and self.src_lang == self.tgt_lang:
            raise ValueError(
                f"data.src_lang and data.tgt_lang are both {self.src_lang!r}: choose two languages"
            )
        check_positive_ints(self, "n_train", "n_valid", "vocab_size", "max_tokens", prefix="data.")
        check_positive_int("data.limit_pairs", self.limit_pairs, optional=True)
        if self.eval_decode < 0:
            raise ValueError(f"data.eval_decode must be >= 0, got {self.eval_decode}")
        check_fraction("data.label_smoothing", self.label_smoothing)


def load_pairs(config: TranslationDataConfig, split: str, *, seed: int) -> list[tuple[str, str]]:
    """(source, target) sentence pairs of one split: "train", "valid" or "test"."""
    if config.dataset == "dates":
        n = config.n_train if split == "train" else config.n_valid
        return generate_date_pairs(n, seed=seed, split=split)
    if split == OUT_OF_DOMAIN_SPLIT:
        source, target = _iwslt14_files(config)
    elif split in MULTI30K_SPLITS:
        stem = MULTI30K_SPLITS[split]
        source = locate("multi30k", f"multi30k/{stem}.{config.src_lang}.gz", root=config.data_dir)
        target = locate("multi30k", f"multi30k/{stem}.{config.tgt_lang}.gz", root=config.data_dir)
    else:
        valid = ", ".join([*MULTI30K_SPLITS, OUT_OF_DOMAIN_SPLIT])
        raise ValueError(f"multi30k has no split {split!r} (valid: {valid})")
    pairs = read_parallel(source, target)[: config.limit_pairs]
    if split == OUT_OF_DOMAIN_SPLIT:
        pairs = [(html.unescape(s), html.unescape(t)) for s, t in pairs]
    return [
        (prepare_text(config, s, config.src_lang), prepare_text(config, t, config.tgt_lang)) for s, t in pairs
    ]


def prepare_text(config: TranslationDataConfig, text: str, lang: str) -> str:
    """What the model sees of a sentence: the training data and every input at translate time go through here."""
    if config.normalize:
        text = normalize_punctuation(text, lang)
    return text.lower() if config.lowercase else text


def prepare_sources(config: TranslationDataConfig, sentences: Sequence[str]) -> list[str]:
    return [prepare_text(config, s, config.src_lang) for s in sentences]


def _iwslt14_files(config: TranslationDataConfig):
    """The IWSLT14 validation files: fairseq's prepare-iwslt14.sh output, lowercased and Moses-tokenized. The
    Moses tokenizer also escapes & " ' [ ] < > | as XML entities (1,190 `&quot;` in the German side), which no
    model trained on raw text has seen, so load_pairs turns them back into characters on both sides."""
    if {config.src_lang, config.tgt_lang} != {"de", "en"}:
        raise ValueError(
            f"{OUT_OF_DOMAIN_SPLIT} is German-English only; this model is {config.src_lang}->{config.tgt_lang}"
        )
    return tuple(
        locate("iwslt14_de_en", f"iwslt14_de_en/valid.{lang}.gz", root=config.data_dir)
        for lang in (config.src_lang, config.tgt_lang)
    )


def _train_tokenizer(config: TranslationDataConfig, texts: Sequence[str]) -> Tokenizer:
    if config.tokenizer == "char":
        return train_char_tokenizer(texts)
    return train_bpe_tokenizer(texts, vocab_size=config.vocab_size)


def build_tokenizers(config: TranslationDataConfig, pairs: Sequence[tuple[str, str]]) -> TokenizerPair:
    sources, targets = [s for s, _ in pairs], [t for _, t in pairs]
    if config.joint_vocab:
        return TokenizerPair.joint(_train_tokenizer(config, sources + targets))
    return TokenizerPair(_train_tokenizer(config, sources), _train_tokenizer(config, targets))
