"""Char, byte-level BPE, WordPiece and word-level tokenizers behind one small interface.

HuggingFace `tokenizers` does the work; this module fixes what the rest of tformer relies on:

- a tokenizer knows its special tokens by role (pad, unk, bos, eos, cls, sep, mask), read from its backend's
  special tokens by their usual spellings (`SPECIAL_SPELLINGS`), so a pretrained vocabulary keeps its own ids;
  the tokenizers trained here put "<pad>"=0, "<bos>"=1, "<eos>"=2, "<unk>"=3 first, as checkpoints always had;
- `encode` never adds specials (batching adds BOS/EOS or CLS/SEP), and special-token text typed by a user
  ("<eos>", "[SEP]") is encoded as ordinary text, so data can never inject a control token;
- the serialised form is HuggingFace's tokenizer JSON, a plain data format: loading it runs no code.

Round trips: the char tokenizer gives back exactly any text made of characters seen in training; byte-level
BPE gives back exactly any text at all (every byte is in its base alphabet); WordPiece normalises whitespace
and is for encoder models that never decode free text; word level gives back the text with whitespace
normalised (words joined by single spaces) when every word is in the vocabulary, "<unk>" for each one that is not.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from tokenizers import Regex, decoders, models, normalizers, pre_tokenizers, trainers
from tokenizers import Tokenizer as HFTokenizer

PAD_TOKEN, BOS_TOKEN, EOS_TOKEN, UNK_TOKEN = "<pad>", "<bos>", "<eos>", "<unk>"
# The specials every tokenizer trained here starts with, at ids 0..3 in this order.
SPECIAL_TOKENS: tuple[str, ...] = (PAD_TOKEN, BOS_TOKEN, EOS_TOKEN, UNK_TOKEN)
PAD_ID, BOS_ID, EOS_ID, UNK_ID = 0, 1, 2, 3

# How each role is spelled in the vocabularies tformer reads, first match wins: its own, BERT's WordPiece
# (vocab.txt, bert-base-uncased, MiniLM) and the SentencePiece family's (RoBERTa, BART, Marian).
SPECIAL_SPELLINGS: dict[str, tuple[str, ...]] = {
    "pad": (PAD_TOKEN, "[PAD]"),
    "unk": (UNK_TOKEN, "[UNK]"),
    "bos": (BOS_TOKEN, "<s>"),
    "eos": (EOS_TOKEN, "</s>"),
    "cls": ("[CLS]",),
    "sep": ("[SEP]",),
    "mask": ("[MASK]", "<mask>"),
}
_REQUIRED_ROLES = ("pad", "unk")  # batching pads and encoding maps unknown text: every vocabulary needs both

# Byte-level BPE starts from all 256 byte symbols, so a smaller vocabulary leaves no room for merges.
_MIN_BPE_VOCAB = len(SPECIAL_TOKENS) + 256
# The word-level trainer needs a size; this one keeps every word that meets min_frequency.
_UNLIMITED_VOCAB = 2**31 - 1


@dataclass(frozen=True)
class SpecialIds:
    """The ids of a vocabulary's special tokens by role; None where the vocabulary has no such token."""

    pad: int
    unk: int
    bos: int | None = None
    eos: int | None = None
    cls: int | None = None
    sep: int | None = None
    mask: int | None = None

    @classmethod
    def of(cls, backend: HFTokenizer) -> SpecialIds:
        """The roles of the backend's special tokens (added tokens marked special), by SPECIAL_SPELLINGS."""
        special = {t.content: i for i, t in backend.get_added_tokens_decoder().items() if t.special}
        found = {
            role: next((special[s] for s in spellings if s in special), None)
            for role, spellings in SPECIAL_SPELLINGS.items()
        }
        missing = [role for role in _REQUIRED_ROLES if found[role] is None]
        if missing:
            expected = "; ".join(f"{role}: {' or '.join(SPECIAL_SPELLINGS[role])}" for role in missing)
            raise ValueError(
                f"the tokenizer has no special token for {', '.join(missing)} (expected {expected}; "
                f"its special tokens: {sorted(special) or 'none'})"
            )
        return cls(**found)


class Tokenizer:
    """Text <-> token ids, with the special tokens' ids read from the backend; wraps a HuggingFace
    `tokenizers.Tokenizer`."""

    def __init__(self, backend: HFTokenizer) -> None:
        if not isinstance(backend, HFTokenizer):
            raise TypeError(f"backend must be a tokenizers.Tokenizer, got {type(backend).__name__}")
        self.special_ids = SpecialIds.of(backend)
        # Not stored in the JSON, so it is set on every construction, including from_json.
        backend.encode_special_tokens = True
        # A pretrained tokenizer.json may carry its library's truncation and padding settings (all-MiniLM's cuts
        # at 128 tokens); encode returns every id of the text and batching pads, so neither may stay.
        backend.no_truncation()
        backend.no_padding()
        self._backend = backend
        ids = self.special_ids
        # Decoding drops the control tokens and keeps <unk>, so unknown input stays visible.
        self._dropped_on_decode = frozenset(
            i for i in (ids.pad, ids.bos, ids.eos, ids.cls, ids.sep, ids.mask) if i is not None
        )

    @property
    def pad_id(self) -> int:
        return self.special_ids.pad

    @property
    def unk_id(self) -> int:
        return self.special_ids.unk

    @property
    def bos_id(self) -> int:
        return self._required("bos")

    @property
    def eos_id(self) -> int:
        return self._required("eos")

    def _required(self, role: str) -> int:
        token_id = getattr(self.special_ids, role)
        if token_id is None:
            raise ValueError(
                f"this tokenizer has no {role} token (spelled {' or '.join(SPECIAL_SPELLINGS[role])}); "
                f"its special tokens: {self.special_ids}"
            )
        return token_id

    @property
    def vocab_size(self) -> int:
        return self._backend.get_vocab_size(with_added_tokens=True)

    def token_to_id(self, token: str) -> int | None:
        return self._backend.token_to_id(token)

    def id_to_token(self, token_id: int) -> str | None:
        return self._backend.id_to_token(token_id)

    def encode(self, text: str) -> list[int]:
        """Token ids of `text`, without BOS/EOS."""
        _check_text(text, where="text")
        return self._backend.encode(text, add_special_tokens=False).ids

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        if isinstance(texts, str):
            raise TypeError("encode_batch expects a sequence of strings, got a single str; use encode()")
        for index, text in enumerate(texts):
            _check_text(text, where=f"texts[{index}]")
        return [e.ids for e in self._backend.encode_batch(list(texts), add_special_tokens=False)]

    def decode(self, ids: Iterable[int], *, skip_special: bool = True) -> str:
        """Text of `ids`. With `skip_special`, pad/bos/eos/cls/sep/mask are dropped (wherever they are;
        nothing stops at EOS) and <unk> is kept, so unknown input stays visible as "<unk>"."""
        id_list = _as_id_list(ids, vocab_size=self.vocab_size)
        if skip_special:
            id_list = [i for i in id_list if i not in self._dropped_on_decode]
        return self._backend.decode(id_list, skip_special_tokens=False)

    def decode_batch(self, batch: Iterable[Iterable[int]], *, skip_special: bool = True) -> list[str]:
        return [self.decode(ids, skip_special=skip_special) for ids in batch]

    def to_json(self) -> str:
        return self._backend.to_str()

    @classmethod
    def from_json(cls, text: str) -> Tokenizer:
        """Rebuild from `to_json()` output (plain JSON: no code is executed)."""
        if not isinstance(text, str):
            raise TypeError(f"from_json expects a JSON str, got {type(text).__name__}")
        try:
            backend = HFTokenizer.from_str(text)
        except Exception as err:  # the Rust side raises a bare Exception for malformed input
            raise ValueError(f"not a valid tokenizer JSON: {err}") from err
        return cls(backend)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(self.to_json(), encoding="utf-8")

    @classmethod
    def load(cls, path: str | Path) -> Tokenizer:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"tokenizer file {str(path)!r} does not exist (write one with save())")
        return cls.from_json(path.read_text(encoding="utf-8"))

    @classmethod
    def from_pretrained(cls, folder: str | Path) -> Tokenizer:
        """The tokenizer of a HuggingFace-layout model folder: its tokenizer.json, or else its vocab.txt read
        as BERT's WordPiece (lowercasing as tokenizer_config.json's do_lower_case says; default True, as
        HuggingFace's BertTokenizer)."""
        folder = Path(folder)
        if not folder.is_dir():
            raise FileNotFoundError(f"pretrained tokenizer folder {str(folder)!r} does not exist")
        if (folder / "tokenizer.json").is_file():
            return cls.load(folder / "tokenizer.json")
        if (folder / "vocab.txt").is_file():
            return cls(_bert_wordpiece(folder / "vocab.txt", lowercase=_do_lower_case(folder)))
        raise FileNotFoundError(
            f"{folder} holds neither tokenizer.json nor vocab.txt: expected a HuggingFace model folder"
        )

    def __repr__(self) -> str:
        model_type = type(self._backend.model).__name__
        return f"Tokenizer(model={model_type}, vocab_size={self.vocab_size})"


def train_char_tokenizer(texts: Iterable[str]) -> Tokenizer:
    """One token per Unicode code point seen in `texts` (sorted, after the specials); others map to <unk>."""
    characters: set[str] = set()
    for text in _checked_texts(texts):
        characters.update(text)
    vocab = {token: i for i, token in enumerate(SPECIAL_TOKENS)}
    for character in sorted(characters):
        vocab[character] = len(vocab)
    backend = HFTokenizer(models.WordLevel(vocab=vocab, unk_token=UNK_TOKEN))
    # "[\s\S]" rather than "." because "." skips newlines.
    backend.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
    backend.decoder = decoders.Fuse()
    backend.add_special_tokens(list(SPECIAL_TOKENS))
    return Tokenizer(backend)


def train_bpe_tokenizer(texts: Iterable[str], *, vocab_size: int, min_frequency: int = 2) -> Tokenizer:
    """Byte-level BPE (GPT-2 style, no prefix space): encodes any text and decodes it back exactly."""
    _check_positive_int(vocab_size, name="vocab_size", minimum=_MIN_BPE_VOCAB)
    _check_positive_int(min_frequency, name="min_frequency", minimum=1)
    backend = HFTokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator(_checked_texts(texts), trainer=trainer)
    return Tokenizer(backend)


def train_wordpiece_tokenizer(texts: Iterable[str], *, vocab_size: int) -> Tokenizer:
    """Cased BERT-style WordPiece: split on whitespace and punctuation, "##" continuations; a word with a
    character outside the alphabet becomes <unk>. Decoding rejoins words with single spaces."""
    _check_positive_int(vocab_size, name="vocab_size", minimum=len(SPECIAL_TOKENS) + 1)
    backend = HFTokenizer(models.WordPiece(unk_token=UNK_TOKEN))
    backend.normalizer = normalizers.BertNormalizer(
        clean_text=True, handle_chinese_chars=True, strip_accents=False, lowercase=False
    )
    backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    backend.decoder = decoders.WordPiece()
    trainer = trainers.WordPieceTrainer(
        vocab_size=vocab_size, special_tokens=list(SPECIAL_TOKENS), show_progress=False
    )
    backend.train_from_iterator(_checked_texts(texts), trainer=trainer)
    return Tokenizer(backend)


def train_word_tokenizer(
    texts: Iterable[str], *, min_frequency: int = 1, max_vocab_size: int | None = None
) -> Tokenizer:
    """One token per whitespace-separated word (the WikiText / pytorch word_language_model convention).

    The vocabulary is the specials, then the words seen at least `min_frequency` times, most frequent first
    (ties alphabetical), cut to `max_vocab_size` entries in all when given. Other words encode to <unk>; so do
    the words "<pad>", "<bos>" and "<eos>" typed in text, and the literal "<unk>" that WikiText-2 contains.
    Decoding joins words with single spaces.
    """
    _check_positive_int(min_frequency, name="min_frequency", minimum=1)
    if max_vocab_size is not None:
        _check_positive_int(max_vocab_size, name="max_vocab_size", minimum=len(SPECIAL_TOKENS) + 1)
    backend = HFTokenizer(models.WordLevel(unk_token=UNK_TOKEN))
    # A word that spells a control token is ordinary text: rewriting it to <unk> before the vocabulary lookup
    # keeps it from encoding to PAD/BOS/EOS (the literal "<unk>" already looks up UNK_ID).
    control_words = "|".join((PAD_TOKEN, BOS_TOKEN, EOS_TOKEN))  # no regex metacharacters in them
    backend.normalizer = normalizers.Replace(Regex(rf"(?<!\S)(?:{control_words})(?!\S)"), UNK_TOKEN)
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    # No decoder: HF then joins tokens with single spaces, which is the word-level decoding.
    # The Rust trainer counts words through the same normalizer and pre-tokenizer that encode uses, but it is
    # given no specials: with special_tokens it would give a literal "<unk>" of the data a second id and
    # leave a hole at UNK_ID. Its vocabulary comes back ordered by (count desc, word), ids 0, 1, ...
    trainer = trainers.WordLevelTrainer(
        vocab_size=_UNLIMITED_VOCAB, min_frequency=min_frequency, special_tokens=[], show_progress=False
    )
    backend.train_from_iterator(_checked_texts(texts), trainer=trainer)
    ranked = sorted(backend.get_vocab().items(), key=lambda item: item[1])
    words = [word for word, _ in ranked if word not in SPECIAL_TOKENS]
    if max_vocab_size is not None:
        words = words[: max_vocab_size - len(SPECIAL_TOKENS)]
    vocab = {token: i for i, token in enumerate((*SPECIAL_TOKENS, *words))}
    backend.model = models.WordLevel(vocab=vocab, unk_token=UNK_TOKEN)
    backend.add_special_tokens(list(SPECIAL_TOKENS))
    return Tokenizer(backend)


def _bert_wordpiece(vocab_path: Path, *, lowercase: bool) -> HFTokenizer:
    """BERT's tokenizer from its vocab.txt (one token per line, the line number is its id): BertNormalizer,
    whitespace-and-punctuation pre-tokenizer, "##" continuations; the bracketed specials marked special."""
    vocab: dict[str, int] = {}
    for line_number, line in enumerate(vocab_path.read_text(encoding="utf-8").split("\n")[:-1], start=1):
        token = line.rstrip("\r")
        if token in vocab:
            raise ValueError(
                f"{vocab_path}:{line_number}: token {token!r} is already on line {vocab[token] + 1}; "
                "every line of vocab.txt must be a different token"
            )
        vocab[token] = line_number - 1
    backend = HFTokenizer(models.WordPiece(vocab=vocab, unk_token="[UNK]"))
    # strip_accents=None follows lowercase, as in BERT's BasicTokenizer.
    backend.normalizer = normalizers.BertNormalizer(
        clean_text=True, handle_chinese_chars=True, strip_accents=None, lowercase=lowercase
    )
    backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    backend.decoder = decoders.WordPiece()
    bracketed = [t for t in ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]") if t in vocab]
    backend.add_special_tokens(bracketed)  # already in the vocabulary: they keep their ids
    return backend


def _do_lower_case(folder: Path) -> bool:
    config_path = folder / "tokenizer_config.json"
    if not config_path.is_file():
        return True
    try:
        value = json.loads(config_path.read_text(encoding="utf-8")).get("do_lower_case", True)
    except (ValueError, AttributeError) as error:
        raise ValueError(f"{config_path}: not a JSON object ({error})") from None
    if not isinstance(value, bool):
        raise ValueError(f"{config_path}: do_lower_case must be true or false, got {value!r}")
    return value


def _checked_texts(texts: Iterable[str]) -> Iterable[str]:
    if isinstance(texts, str):
        raise TypeError("texts must be an iterable of strings, got a single str")
    for index, text in enumerate(texts):
        _check_text(text, where=f"texts[{index}]")
        yield text


def _check_text(text: object, *, where: str) -> None:
    if not isinstance(text, str):
        raise TypeError(f"{where} must be a str, got {type(text).__name__}")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as error:  # a lone surrogate: a str that no UTF-8 file or stream can hold
        char = ord(text[error.start])
        raise ValueError(
            f"{where} holds a lone surrogate U+{char:04X} at character {error.start}: not valid Unicode text"
        ) from None


def _check_positive_int(value: object, *, name: str, minimum: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")


def _as_id_list(ids: Iterable[int], *, vocab_size: int) -> list[int]:
    # Tensors and numpy arrays have tolist(); going through it avoids one Python object per element.
    raw = ids.tolist() if hasattr(ids, "tolist") else list(ids)
    if not all(isinstance(i, int) and not isinstance(i, bool) for i in raw):
        raise TypeError(f"ids must be a flat sequence of ints, got first items {raw[:8]!r}")
    bad = [i for i in raw if not 0 <= i < vocab_size]
    if bad:
        raise ValueError(f"token ids {bad[:8]} are outside the vocabulary [0, {vocab_size})")
    return raw


@dataclass(frozen=True)
class TokenizerPair:
    """The source and target tokenizers of a translation model: one object twice when the vocabulary is joint."""

    source: Tokenizer
    target: Tokenizer

    @classmethod
    def joint(cls, tokenizer: Tokenizer) -> TokenizerPair:
        return cls(tokenizer, tokenizer)

    @property
    def is_joint(self) -> bool:
        return self.source is self.target

    def to_json(self) -> str:
        target = None if self.is_joint else self.target.to_json()
        return json.dumps({"source": self.source.to_json(), "target": target})

    @classmethod
    def from_json(cls, text: str) -> TokenizerPair:
        """Rebuild from `to_json()` output (plain JSON only, as stored in checkpoints)."""
        try:
            data = json.loads(text)
            source, target = data["source"], data["target"]
        except (TypeError, ValueError, KeyError) as err:
            raise ValueError(
                f"not a tokenizer-pair JSON (expected keys 'source' and 'target'): {err}"
            ) from err
        source_tokenizer = Tokenizer.from_json(source)
        return cls(source_tokenizer, source_tokenizer if target is None else Tokenizer.from_json(target))
