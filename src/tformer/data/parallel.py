"""Parallel text on disk: two line-aligned files (plain or .gz, UTF-8) -> a list of (source, target) pairs.

Line i of the source file translates line i of the target file, so every check here is about keeping that
alignment honest: both files must have the same number of lines, and a bad line is reported as `file:line`
(or, on request, its pair is dropped, never one side alone).

Lines are split on "\\n" only, and only the line end ("\\n" or "\\r\\n") is removed: inner and leading
whitespace is content. Splitting on "\\n" alone matters because `str.splitlines` and text-mode universal
newlines also break on "\\r", U+2028 and other separators that can occur inside a sentence, which would
silently shift one side against the other.
"""

from __future__ import annotations

import gzip
import logging
import zlib
from pathlib import Path

logger = logging.getLogger(__name__)

ERROR, SKIP = "error", "skip"
_POLICIES = (ERROR, SKIP)


def read_parallel(
    source: str | Path,
    target: str | Path,
    *,
    max_tokens_per_line: int | None = None,
    on_empty: str = ERROR,
    on_long: str = ERROR,
) -> list[tuple[str, str]]:
    """Read line-aligned source/target files into (source, target) pairs.

    A line is empty when it holds nothing but whitespace; it is long when it has more whitespace-separated
    tokens than `max_tokens_per_line` (None: no limit). `on_empty` / `on_long` say what to do with such a
    pair: "error" raises ValueError naming `file:line`, "skip" drops the pair and logs one warning with
    the count. Raises FileNotFoundError for a missing file and ValueError for files of different lengths,
    invalid UTF-8 and truncated or corrupt gzip files.
    """
    _check_policy("on_empty", on_empty)
    _check_policy("on_long", on_long)
    if max_tokens_per_line is not None and (
        isinstance(max_tokens_per_line, bool) or not isinstance(max_tokens_per_line, int)
    ):
        raise TypeError(f"max_tokens_per_line must be an int or None, got {max_tokens_per_line!r}")
    if max_tokens_per_line is not None and max_tokens_per_line < 1:
        raise ValueError(f"max_tokens_per_line must be >= 1 or None, got {max_tokens_per_line}")
    source, target = Path(source), Path(target)
    source_lines, target_lines = read_lines(source), read_lines(target)
    if len(source_lines) != len(target_lines):
        shorter = source if len(source_lines) < len(target_lines) else target
        raise ValueError(
            f"parallel files differ in length: {source} has {len(source_lines)} lines, {target} has "
            f"{len(target_lines)}; {shorter} runs out at line {min(len(source_lines), len(target_lines)) + 1}"
        )

    pairs: list[tuple[str, str]] = []
    skipped_empty = skipped_long = 0
    for index, (source_line, target_line) in enumerate(zip(source_lines, target_lines, strict=True)):
        line_number = index + 1
        problem = _find_problem(
            ((source, source_line), (target, target_line)),
            line_number=line_number,
            max_tokens=max_tokens_per_line,
        )
        if problem is None:
            pairs.append((source_line, target_line))
        elif problem[0] == "empty" and on_empty == SKIP:
            skipped_empty += 1
        elif problem[0] == "long" and on_long == SKIP:
            skipped_long += 1
        else:
            raise ValueError(problem[1])
    if skipped_empty:
        logger.warning(f"skipped {skipped_empty} pairs with an empty line in {source} / {target}")
    if skipped_long:
        logger.warning(
            f"skipped {skipped_long} pairs with a line over {max_tokens_per_line} tokens in {source} / {target}"
        )
    return pairs


def read_lines(path: str | Path) -> list[str]:
    """All lines of a UTF-8 text file (plain, or gzip when the name ends in .gz) without their line ends."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {path}")
    lines: list[str] = []
    opener = gzip.open if path.suffix == ".gz" else open
    if opener is gzip.open and path.stat().st_size == 0:  # gzip reads an empty file as empty text
        raise ValueError(f"{path}: empty file, not a gzip stream (truncated?); re-download or re-copy it")
    try:
        with opener(path, "rb") as stream:
            for raw in stream:
                lines.append(_decode_line(raw, path=path, line_number=len(lines) + 1))
    except (EOFError, gzip.BadGzipFile, zlib.error) as error:
        raise ValueError(
            f"{path}: truncated or corrupt gzip file after line {len(lines)} ({error}); "
            "re-download or re-copy it (`tformer data verify` checks the known data sets)"
        ) from error
    return lines


def _decode_line(raw: bytes, *, path: Path, line_number: int) -> str:
    if raw.endswith(b"\n"):
        raw = raw[:-2] if raw.endswith(b"\r\n") else raw[:-1]
    try:
        line = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ValueError(
            f"{path}:{line_number}: invalid UTF-8 at byte {error.start} of the line "
            f"({raw[error.start : error.end]!r}); the file must be UTF-8 text"
        ) from error
    # A byte-order mark is an encoding artefact, not part of the first sentence.
    return line.removeprefix("\ufeff") if line_number == 1 else line


def _find_problem(
    sides: tuple[tuple[Path, str], ...], *, line_number: int, max_tokens: int | None
) -> tuple[str, str] | None:
    """("empty" | "long", message) for the first bad side of one pair, or None when both are fine."""
    for path, line in sides:
        if not line.strip():
            kind = "empty line" if not line else "empty line (whitespace only)"
            return "empty", f"{path}:{line_number}: {kind}"
    if max_tokens is not None:
        for path, line in sides:
            n_tokens = len(line.split())
            if n_tokens > max_tokens:
                return "long", (
                    f"{path}:{line_number}: line has {n_tokens} whitespace-separated tokens, "
                    f"more than max_tokens_per_line={max_tokens}"
                )
    return None


def _check_policy(name: str, value: str) -> None:
    if value not in _POLICIES:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, _POLICIES))}, got {value!r}")
