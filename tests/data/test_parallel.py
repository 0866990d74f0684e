"""read_parallel: alignment, line ends, every error naming file and line, skip policies, real Multi30k."""

from __future__ import annotations

import gzip
import logging
import re
from pathlib import Path

import pytest

from tformer.data.parallel import read_lines, read_parallel

SHARED_MULTI30K = Path(__file__).resolve().parents[3] / "shared" / "data" / "multi30k"


def write(path: Path, data: bytes) -> Path:
    if path.suffix == ".gz":
        path.write_bytes(gzip.compress(data, mtime=0))
    else:
        path.write_bytes(data)
    return path


@pytest.fixture
def pair_paths(tmp_path):
    def make(source: bytes, target: bytes, *, suffix: str = ".txt") -> tuple[Path, Path]:
        return write(tmp_path / f"src{suffix}", source), write(tmp_path / f"tgt{suffix}", target)

    return make


@pytest.mark.parametrize("suffix", [".txt", ".gz"])
def test_reads_pairs_stripping_only_the_line_end(pair_paths, suffix):
    source, target = pair_paths(
        b"  two  spaces \r\nplain\nno newline at end",
        "zwei\tTab \r\nSch\u00f6n\nletzte".encode(),
        suffix=suffix,
    )
    assert read_parallel(source, target) == [
        ("  two  spaces ", "zwei\tTab "),
        ("plain", "Sch\u00f6n"),
        ("no newline at end", "letzte"),
    ]


def test_splits_on_newline_only_and_drops_a_leading_bom(pair_paths):
    # A bare "\r" or U+2028 inside a sentence must not split it, or the two sides would drift apart.
    source, target = pair_paths("\ufeffa\rb\u2028c\nd\n".encode(), b"x\ny\n")
    assert read_parallel(source, target) == [("a\rb\u2028c", "x"), ("d", "y")]


def test_different_line_counts_name_both_files_counts_and_where_one_runs_out(pair_paths):
    source, target = pair_paths(b"a\nb\nc\n", b"x\ny\nz\nw\nv\n")
    with pytest.raises(ValueError) as error:
        read_parallel(source, target)
    message = str(error.value)
    assert f"{source} has 3 lines" in message and f"{target} has 5" in message
    assert f"{source} runs out at line 4" in message


@pytest.mark.parametrize("side", ["source", "target"])
@pytest.mark.parametrize("blank", [b"", b" \t"])
def test_empty_line_on_either_side_names_file_and_line(pair_paths, side, blank):
    good, bad = b"a\nb\nc\n", b"a\nb\n" + blank + b"\n"
    source, target = pair_paths(bad, good) if side == "source" else pair_paths(good, bad)
    with pytest.raises(ValueError, match="empty line") as error:
        read_parallel(source, target)
    bad_path = source if side == "source" else target
    assert str(error.value).startswith(f"{bad_path}:3: empty line")


def test_skip_empty_drops_the_whole_pair_and_warns_with_the_count(pair_paths, caplog):
    source, target = pair_paths(b"a\n\nc\nd\n", b"w\nx\ny\n\n")
    with caplog.at_level(logging.WARNING, logger="tformer.data.parallel"):
        pairs = read_parallel(source, target, on_empty="skip")
    assert pairs == [("a", "w"), ("c", "y")]
    assert "skipped 2 pairs with an empty line" in caplog.text


def test_long_line_names_file_line_length_and_limit(pair_paths):
    source, target = pair_paths(b"one two\nthree\n", b"eins zwei\ndrei vier  f\xc3\xbcnf\n")
    with pytest.raises(ValueError) as error:
        read_parallel(source, target, max_tokens_per_line=2)
    assert str(error.value) == (
        f"{target}:2: line has 3 whitespace-separated tokens, more than max_tokens_per_line=2"
    )
    assert read_parallel(source, target, max_tokens_per_line=3) == [
        ("one two", "eins zwei"),
        ("three", "drei vier  f\u00fcnf"),
    ]


def test_skip_long_drops_the_pair_and_warns(pair_paths, caplog):
    source, target = pair_paths(b"a b c\nd\ne\n", b"x\ny\nz z z z\n")
    with caplog.at_level(logging.WARNING, logger="tformer.data.parallel"):
        pairs = read_parallel(source, target, max_tokens_per_line=2, on_long="skip")
    assert pairs == [("d", "y")]
    assert "skipped 2 pairs with a line over 2 tokens" in caplog.text


def test_skip_long_still_raises_on_an_empty_line(pair_paths):
    source, target = pair_paths(b"a b c\n\n", b"x\ny\n")
    with pytest.raises(ValueError, match=r":2: empty line"):
        read_parallel(source, target, max_tokens_per_line=2, on_long="skip")


@pytest.mark.parametrize("suffix", [".txt", ".gz"])
def test_invalid_utf8_names_file_and_line(pair_paths, suffix):
    source, target = pair_paths(b"ok\nok\n", b"ok\nbad \xff byte\n", suffix=suffix)
    with pytest.raises(ValueError) as error:
        read_parallel(source, target)
    assert str(error.value).startswith(f"{target}:2: invalid UTF-8 at byte 4")


def test_truncated_gzip_names_the_file(tmp_path):
    path = tmp_path / "cut.de.gz"
    whole = gzip.compress(b"".join(b"line %d\n" % i for i in range(2000)), mtime=0)
    path.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(ValueError, match=rf"^{re.escape(str(path))}: truncated or corrupt gzip file"):
        read_lines(path)


def test_a_gz_file_that_is_not_gzip_names_the_file(tmp_path):
    path = tmp_path / "plain.en.gz"
    path.write_bytes(b"not compressed\n")
    with pytest.raises(ValueError, match=rf"^{re.escape(str(path))}: truncated or corrupt gzip file"):
        read_lines(path)


def test_missing_file_and_bad_options(pair_paths, tmp_path):
    source, target = pair_paths(b"a\n", b"x\n")
    with pytest.raises(FileNotFoundError, match="nowhere.txt"):
        read_parallel(source, tmp_path / "nowhere.txt")
    with pytest.raises(ValueError, match=r"on_empty must be one of 'error', 'skip', got 'drop'"):
        read_parallel(source, target, on_empty="drop")
    with pytest.raises(ValueError, match=r"on_long must be one of"):
        read_parallel(source, target, on_long="ignore")
    with pytest.raises(ValueError, match=r"max_tokens_per_line must be >= 1 or None, got 0"):
        read_parallel(source, target, max_tokens_per_line=0)
    with pytest.raises(TypeError, match=r"max_tokens_per_line must be an int"):
        read_parallel(source, target, max_tokens_per_line=2.5)


def _reference_lines(path: Path) -> list[str]:
    # Independent reading, as the data README prescribes; these files hold no "\r" or other separators.
    with gzip.open(path, "rt", encoding="utf-8", newline="") as stream:
        text = stream.read()
    assert text.endswith("\n") and "\r" not in text
    return text[:-1].split("\n")


@pytest.mark.skipif(not SHARED_MULTI30K.is_dir(), reason=f"shared data not present at {SHARED_MULTI30K}")
@pytest.mark.parametrize(("split", "expected"), [("train", 29_000), ("val", 1_014)])
def test_real_multi30k_en_de(split, expected):
    source, target = SHARED_MULTI30K / f"{split}.en.gz", SHARED_MULTI30K / f"{split}.de.gz"
    pairs = read_parallel(source, target)
    assert len(pairs) == expected
    assert pairs == list(zip(_reference_lines(source), _reference_lines(target), strict=True))


def test_an_empty_gz_file_is_reported_as_truncated(tmp_path):
    empty = tmp_path / "train.de.gz"
    empty.write_bytes(b"")  # zero bytes: not even a gzip header
    with pytest.raises(ValueError, match=r"train\.de\.gz: empty file, not a gzip stream"):
        read_lines(empty)
    assert read_lines(write(tmp_path / "plain.txt", b"")) == []  # an empty plain file is just empty
    assert read_lines(write(tmp_path / "empty.gz", b"")) == []  # and so is a gzip stream of no text
