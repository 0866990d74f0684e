"""Whatever text (or junk) reaches `tformer translate`: one output line per input line, or one error line.

Decided behaviour: input is UTF-8 split at "\\n" only (a CRLF's "\\r" and a leading byte-order mark dropped);
invalid UTF-8 is an error naming the line; an empty input prints a warning and nothing else; an input longer
than the model's positions is truncated to them with a warning naming it, and still gets its output line.
"""

from __future__ import annotations

import contextlib
import io
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tformer.cli.main import main


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("run")
    assert (
        main(["train", "tiny_dates", f"--out_dir={out}", "--train.max_steps=2", "--train.eval_every=2"]) == 0
    )
    return out / "last.safetensors"


def _translate(checkpoint: Path, stdin: bytes, *args: str) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of `tformer translate CHECKPOINT ...` with `stdin` piped in."""
    out, err = io.StringIO(), io.StringIO()
    saved = sys.stdin
    sys.stdin = io.TextIOWrapper(io.BytesIO(stdin), encoding="utf-8")
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(["translate", str(checkpoint), "--device", "cpu", *args])
    finally:
        sys.stdin = saved
    return code, out.getvalue(), err.getvalue()


def _n_lines(data: bytes) -> int:
    """Input lines as decided: "\\n"-terminated, the last one possibly without its "\\n"; a leading byte-order
    mark is no text."""
    data = data.removeprefix("\ufeff".encode())
    return data.count(b"\n") + (0 if data == b"" or data.endswith(b"\n") else 1)


def _is_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


@settings(max_examples=50, deadline=None)
@given(
    data=st.one_of(
        st.binary(max_size=40),
        st.text(max_size=40).map(lambda text: text.encode("utf-8", "surrogatepass")),
        st.lists(
            st.sampled_from(["1.1.2000", "", "\r", "\u2028", "\x1c", "\x00", "\ufeff", "ü", "\xff"]),
            max_size=6,
        ).map(lambda parts: "\n".join(parts).encode("utf-8", "surrogateescape")),
    )
)
def test_any_bytes_on_stdin_give_one_line_per_input_line_or_one_error(checkpoint: Path, data: bytes) -> None:
    code, out, err = _translate(checkpoint, data)
    if not _is_utf8(data):
        first_bad = data[: _first_bad_byte(data)].count(b"\n") + 1
        assert (
            code == 2
            and err
            == f"tformer translate: error: stdin line {first_bad}: not valid UTF-8 "
            + err.split("not valid UTF-8 ", 1)[1]
        )
        assert len(err.strip().splitlines()) == 1 and out == ""
        return
    assert code == 0, err
    assert out.count("\n") == _n_lines(data)
    assert "Traceback" not in err


def _first_bad_byte(data: bytes) -> int:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as error:
        return error.start
    raise AssertionError("valid UTF-8")


def test_empty_stdin_warns_and_prints_nothing(checkpoint: Path) -> None:
    assert _translate(checkpoint, b"") == (0, "", "warning: no input sentences: nothing to translate\n")


def test_separators_inside_a_sentence_do_not_split_it(checkpoint: Path) -> None:
    # str.splitlines would make four sentences of these two lines and shift every later output line
    code, out, _ = _translate(checkpoint, "1.1.2000\u2028x\x1cy\n2.2.2000\x85z\n".encode())
    assert code == 0 and out.count("\n") == 2


def test_crlf_and_a_byte_order_mark_change_nothing(checkpoint: Path) -> None:
    plain = _translate(checkpoint, b"23.11.2026\n1. Mai 1990\n")
    assert _translate(checkpoint, b"\xef\xbb\xbf23.11.2026\r\n1. Mai 1990\r\n") == plain
    assert _translate(checkpoint, b"23.11.2026\n1. Mai 1990") == plain  # no final newline


def test_invalid_utf8_names_the_line_in_one_line(checkpoint: Path, tmp_path: Path) -> None:
    junk = b"23.11.2026\n\x00\x01fine\n\xc3\x28 broken\n"
    code, out, err = _translate(checkpoint, junk)
    assert (code, out) == (2, "") and err.startswith(
        "tformer translate: error: stdin line 3: not valid UTF-8"
    )
    path = tmp_path / "junk.txt"
    path.write_bytes(junk)
    code, out, err = _translate(checkpoint, b"", "--input", str(path))
    assert code == 2 and f"{path}:3: not valid UTF-8" in err and len(err.strip().splitlines()) == 1


def test_a_huge_line_is_truncated_with_a_warning_and_keeps_its_output_line(checkpoint: Path) -> None:
    huge = "23.11.2026 " * 100_000  # 1.1 MB on one line
    code, out, err = _translate(checkpoint, f"1.1.2000\n{huge}\n2.2.2000\n".encode())
    assert code == 0 and out.count("\n") == 3
    assert "warning: input 2 has 1100000 tokens; the model takes 63: it was truncated" in err


def test_a_file_of_the_same_input_gives_the_same_output(checkpoint: Path, tmp_path: Path) -> None:
    data = "1.1.2000\u2028x\r\n\n\ufeff2.2.2000\n".encode()
    path = tmp_path / "input.txt"
    path.write_bytes(data)
    from_stdin = _translate(checkpoint, data)
    assert _translate(checkpoint, b"", "--input", str(path)) == from_stdin
    assert from_stdin[1].count("\n") == 3
