"""Readers for the language-modelling corpora of the catalog: Tiny Shakespeare and WikiText-2.

Both return text exactly as stored (UTF-8, nothing normalised), so published counts can be checked against
them; tokenizing and building the token stream is `text_stream`'s job. Files are found through
`catalog.locate`, so a missing file says where it was looked for and how to get it.
"""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

from tformer.data.catalog import locate
from tformer.data.parallel import read_lines

WIKITEXT2_SPLITS = ("train", "valid", "test")
# nanoGPT's data/shakespeare_char/prepare.py: the first 90% of the characters train, the rest validate.
_SHAKESPEARE_TRAIN_FRACTION = 0.9


def read_tinyshakespeare(root: str | Path | None = None) -> dict[str, str]:
    """{"train": the first 90% of the characters, "valid": the last 10%}, split as nanoGPT's prepare.py
    (n = len(data); data[:int(n*0.9)], data[int(n*0.9):]). `root` is the data dir (None: the default lookup)."""
    text = _read_text(locate("tinyshakespeare", "tinyshakespeare/input.txt.gz", root=root))
    cut = int(len(text) * _SHAKESPEARE_TRAIN_FRACTION)
    return {"train": text[:cut], "valid": text[cut:]}


def read_wikitext2(split: str, root: str | Path | None = None) -> list[str]:
    """The lines of one WikiText-2 split ("train", "valid" or "test"), line ends removed, nothing else
    changed (WikiText lines keep their leading and trailing space). `root` as in `read_tinyshakespeare`."""
    if split not in WIKITEXT2_SPLITS:
        raise ValueError(f"unknown WikiText-2 split {split!r}; valid splits: {', '.join(WIKITEXT2_SPLITS)}")
    return read_lines(locate("wikitext2", f"wikitext2/{split}.txt.gz", root=root))


def _read_text(path: Path) -> str:
    """The whole of a gzipped UTF-8 file, byte for byte (no newline translation)."""
    try:
        with gzip.open(path, "rb") as stream:
            raw = stream.read()
    except (EOFError, gzip.BadGzipFile, zlib.error) as error:
        raise ValueError(
            f"{path}: truncated or corrupt gzip file ({error}); re-download or re-copy it "
            "(`tformer data verify` checks the known data sets)"
        ) from error
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as error:
        line_number = raw.count(b"\n", 0, error.start) + 1
        line_start = raw.rfind(b"\n", 0, error.start) + 1
        raise ValueError(
            f"{path}:{line_number}: invalid UTF-8 at byte {error.start - line_start} of the line "
            f"({raw[error.start : error.end]!r}); the file must be UTF-8 text"
        ) from error
