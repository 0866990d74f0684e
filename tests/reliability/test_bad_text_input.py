"""Arbitrary text into the tokenizers and the parallel-text reader: exact round trips or clear errors.

Property-based (hypothesis) with hand cases for the extremes: empty strings, control characters, every Unicode
plane, lines of a million characters, files of different lengths, invalid UTF-8, gzip cut at every length.
"""

from __future__ import annotations

import gzip
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tformer.data.parallel import read_lines, read_parallel
from tformer.data.tokenizers import (
    EOS_ID,
    UNK_ID,
    UNK_TOKEN,
    Tokenizer,
    train_bpe_tokenizer,
    train_char_tokenizer,
    train_word_tokenizer,
    train_wordpiece_tokenizer,
)

# Any Unicode text but lone surrogates (no file or stdin decoded as UTF-8 can hold one), weighted towards control
# characters, separators and the specials' spelling.
CHARACTER = st.characters(blacklist_categories=["Cs"])
TEXT = st.text(
    alphabet=st.one_of(
        CHARACTER,
        st.sampled_from("\x00\t\n\r\x0b\x0c\x1c\x85\u2028\u2029\ufeff\u200b\u0301 <>/eosbp"),
    ),
    max_size=60,
)
PROPERTY = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
CORPUS = [
    "Ein Hund läuft über die Wiese.",
    "A dog runs across the meadow!",
    "日本語のテキスト 🙂",
    "tab\tand\nnewline",
]


@pytest.fixture(scope="module")
def bpe() -> Tokenizer:
    return train_bpe_tokenizer(CORPUS * 20, vocab_size=300)


# ---------------------------------------------------------------------------------------------------------------
# Tokenizers


@PROPERTY
@given(text=TEXT, extra=TEXT)
def test_char_tokenizer_round_trips_text_it_has_seen_and_marks_the_rest(text: str, extra: str) -> None:
    tokenizer = train_char_tokenizer([text])
    ids = tokenizer.encode(text)
    assert len(ids) == len(text)  # one token per code point, specials' spelling included
    assert tokenizer.decode(ids) == text
    unseen = [char for char in extra if char not in set(text)]
    extra_ids = tokenizer.encode(extra)
    assert len(extra_ids) == len(extra) and extra_ids.count(UNK_ID) == len(unseen)


@PROPERTY
@given(text=TEXT)
def test_bpe_round_trips_any_text(bpe: Tokenizer, text: str) -> None:
    ids = bpe.encode(text)
    assert all(0 <= i < bpe.vocab_size for i in ids)
    assert bpe.decode(ids) == text
    assert (ids == []) == (text == "")


# Unicode White_Space; Python's str.split also splits at the ASCII separators \x1c-\x1f, which are not in it
_NOT_WHITE_SPACE = str.maketrans(dict.fromkeys("\x1c\x1d\x1e\x1f", "x"))


@PROPERTY
@given(text=TEXT)
def test_word_tokenizer_round_trips_its_words_joined_by_single_spaces(text: str) -> None:
    tokenizer = train_word_tokenizer([text])
    ends = [i for i, char in enumerate(text.translate(_NOT_WHITE_SPACE)) if char.isspace()]
    words = [w for w in _cut(text, ends) if w]
    control = {"<pad>", "<bos>", "<eos>"}  # typed in text, they are ordinary unknown words, never control ids
    expected = " ".join(UNK_TOKEN if word in control else word for word in words)
    assert tokenizer.decode(tokenizer.encode(text)) == expected
    assert EOS_ID not in tokenizer.encode(text + " <eos>")


def _cut(text: str, separators: list[int]) -> list[str]:
    """`text` split at the given character positions, the separators themselves dropped."""
    pieces, start = [], 0
    for index in separators:
        pieces.append(text[start:index])
        start = index + 1
    return [*pieces, text[start:]]


@PROPERTY
@given(text=TEXT)
def test_wordpiece_encodes_any_text_into_its_vocabulary(text: str) -> None:
    tokenizer = _wordpiece()
    ids = tokenizer.encode(text)
    assert all(0 <= i < tokenizer.vocab_size for i in ids)
    assert isinstance(tokenizer.decode(ids), str)


_WORDPIECE: list[Tokenizer] = []


def _wordpiece() -> Tokenizer:
    if not _WORDPIECE:  # trained once; hypothesis forbids function-scoped fixtures
        _WORDPIECE.append(train_wordpiece_tokenizer(CORPUS * 20, vocab_size=100))
    return _WORDPIECE[0]


@pytest.mark.parametrize(
    "text", ["", "<eos>", "<pad><bos><unk>", "\x00" * 3, "\r\n", "\U0010ffff", "e\u0301"]
)
def test_hand_cases_round_trip(bpe: Tokenizer, text: str) -> None:
    for tokenizer in (bpe, train_char_tokenizer([text])):
        ids = tokenizer.encode(text)
        assert tokenizer.decode(ids) == text
        assert EOS_ID not in ids or text == ""  # typed "<eos>" is text, not the control token


def test_a_line_of_a_million_characters_round_trips(bpe: Tokenizer) -> None:
    line = ("Ein Hund läuft über die Wiese 🙂 " * 32_000)[:1_000_000]
    assert bpe.decode(bpe.encode(line)) == line
    char = train_char_tokenizer([line])
    assert char.decode(char.encode(line)) == line


def test_non_text_is_a_type_error(bpe: Tokenizer) -> None:
    for bad in (None, b"bytes", 3, ["a"]):
        with pytest.raises(TypeError, match="must be a str"):
            bpe.encode(bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"outside the vocabulary \[0, "):
        bpe.decode([bpe.vocab_size])


# ---------------------------------------------------------------------------------------------------------------
# The parallel-text reader

LINE = st.text(alphabet=st.characters(blacklist_categories=["Cs"], blacklist_characters="\n"), max_size=30)


def _expected(lines: list[str]) -> list[str]:
    """What the reader promises for these lines: split at "\\n" only, a CRLF's "\\r" and line 1's BOM dropped."""
    kept = [line.removesuffix("\r") for line in lines]
    return [kept[0].removeprefix("\ufeff"), *kept[1:]] if kept else kept


@PROPERTY
@given(source=st.lists(LINE, max_size=8), target=st.lists(LINE, max_size=8), gz=st.booleans())
def test_parallel_files_are_read_exactly_or_rejected_naming_file_and_line(
    source: list[str], target: list[str], gz: bool
) -> None:
    with tempfile.TemporaryDirectory() as directory:
        paths = [
            _write(Path(directory) / name, lines, gz=gz) for name, lines in (("s", source), ("t", target))
        ]
        want_source, want_target = _expected(source), _expected(target)
        if len(source) != len(target):
            with pytest.raises(ValueError, match="parallel files differ in length: .*s.* has"):
                read_parallel(*paths)
            return
        empty = [
            i + 1
            for i, (s, t) in enumerate(zip(want_source, want_target, strict=True))
            if not s.strip() or not t.strip()
        ]
        if empty:
            with pytest.raises(ValueError, match=rf":{empty[0]}: empty line"):
                read_parallel(*paths)
            assert read_parallel(*paths, on_empty="skip") == [
                pair for i, pair in enumerate(zip(want_source, want_target, strict=True), 1) if i not in empty
            ]
        else:
            assert read_parallel(*paths) == list(zip(want_source, want_target, strict=True))


def _write(path: Path, lines: list[str], *, gz: bool) -> Path:
    data = "".join(line + "\n" for line in lines).encode("utf-8")
    if gz:
        path = path.with_suffix(".gz")
        path.write_bytes(gzip.compress(data))
    else:
        path.write_bytes(data)
    return path


@PROPERTY
@given(lines=st.lists(st.binary(max_size=12).filter(lambda b: b"\n" not in b), min_size=1, max_size=6))
def test_invalid_utf8_names_the_first_bad_line(lines: list[bytes]) -> None:
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "raw.txt"
        path.write_bytes(b"".join(line + b"\n" for line in lines))
        bad = [number for number, line in enumerate(lines, 1) if not _is_utf8(line)]
        if bad:
            with pytest.raises(ValueError, match=rf"raw.txt:{bad[0]}: invalid UTF-8 at byte \d+ of the line"):
                read_lines(path)
        else:
            assert read_lines(path) == _expected([line.decode("utf-8") for line in lines])


def _is_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def test_gzip_cut_at_any_length_is_an_error(tmp_path: Path) -> None:
    full = gzip.compress("".join(f"line {i} über\n" for i in range(200)).encode())
    cut = tmp_path / "cut.gz"
    for length in range(1, len(full)):
        cut.write_bytes(full[:length])
        with pytest.raises(ValueError, match="cut.gz: truncated or corrupt gzip file"):
            read_lines(cut)
