"""Whatever text (or junk) reaches `tformer generate`: the prompt and a continuation, or one error line.

Decided behaviour: the prompt is the argument, else stdin (UTF-8; its final line ends are dropped); invalid
UTF-8 is an error naming the line; an empty prompt starts a new line; a prompt longer than the model's context
keeps its last tokens, with a warning.
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
from tformer.data.catalog import data_dir

pytestmark = pytest.mark.skipif(
    not (data_dir() / "tinyshakespeare" / "input.txt.gz").is_file(),
    reason="the shared Tiny Shakespeare copy is not present",
)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("lm")
    assert main(["train", "tiny_shakespeare", f"--out_dir={out}", "--train.max_steps=2"]) == 0
    return out / "last.safetensors"


def _generate(checkpoint: Path, stdin: bytes, *args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    saved = sys.stdin
    sys.stdin = io.TextIOWrapper(io.BytesIO(stdin), encoding="utf-8")
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(["generate", str(checkpoint), *args, "--device", "cpu", "--max-new-tokens", "3"])
    finally:
        sys.stdin = saved
    return code, out.getvalue(), err.getvalue()


@settings(max_examples=40, deadline=None)
@given(
    data=st.one_of(
        st.binary(max_size=40),
        st.text(max_size=40).map(lambda text: text.encode("utf-8", "surrogatepass")),
    )
)
def test_any_bytes_on_stdin_give_the_prompt_and_a_continuation_or_one_error(checkpoint: Path, data: bytes):
    code, out, err = _generate(checkpoint, data, "--seed", "0")  # no PROMPT argument: stdin is read
    assert "Traceback" not in err
    try:
        prompt = data.decode("utf-8").rstrip("\n")
    except UnicodeDecodeError:
        assert code == 2 and "not valid UTF-8" in err and len(err.strip().splitlines()) == 1 and out == ""
        return
    assert code == 0, err
    assert out.startswith(prompt) and out.endswith("\n")


def test_a_prompt_longer_than_the_context_keeps_its_end_with_a_warning(checkpoint: Path, caplog):
    code, out, err = _generate(checkpoint, b"", "ROMEO: " * 20_000, "--greedy")
    assert code == 0
    assert "exceeds the context window: keeping its last 64" in caplog.text
    assert out.startswith("ROMEO: ")


def test_bad_options_are_one_line_errors(checkpoint: Path):
    for args, message in [
        (["--num-samples", "0"], "--num-samples must be >= 1"),
        (["--temperature", "-1"], "temperature must be >= 0"),
        (["--top-p", "2"], "top_p must be None or in (0, 1]"),
        (["--stop", ""], "stop strings must not be empty"),
    ]:
        code, _, err = _generate(checkpoint, b"", "x", *args)
        assert code == 2 and message in err and len(err.strip().splitlines()) == 1, (args, err)
