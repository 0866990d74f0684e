"""`tformer translate CHECKPOINT [SENTENCE ...]`: sentences from arguments, a file, stdin or a prompt."""

from __future__ import annotations

import argparse
import dataclasses
import re
import sys
from collections.abc import Iterable
from pathlib import Path

from tformer.cli.common import DEVICE_HELP, warn
from tformer.tasks.base import TrainedModel
from tformer.tasks.runs import load_trained
from tformer.tasks.translation import Translation, plot_translation_attention, translate
from tformer.tasks.translation_data import prepare_sources


def add_parser(sub) -> None:
    p = sub.add_parser(
        "translate",
        help="translate sentences with a trained checkpoint",
        description=(
            "Translate sentences given as arguments, read from --input FILE or from stdin (one per line); with "
            "none of these on a terminal, an interactive prompt opens. Output goes to stdout or --output."
        ),
    )
    p.add_argument(
        "checkpoint", metavar="CHECKPOINT", help="a .safetensors checkpoint written by `tformer train`"
    )
    p.add_argument("sentences", nargs="*", metavar="SENTENCE", help="sentences to translate")
    p.add_argument("--input", type=Path, help="read sentences from this UTF-8 file, one per line")
    p.add_argument("--output", type=Path, help="write translations to this file instead of stdout")
    p.add_argument(
        "--beam", type=int, default=None, help="beam size; 1 is greedy (default: the run config's)"
    )
    p.add_argument("--n-best", type=int, default=1, help="print the N best translations with their scores")
    p.add_argument("--batch-size", type=int, default=64, help="sentences decoded together (default: 64)")
    p.add_argument(
        "--plot-attention",
        type=Path,
        metavar="FILE.png",
        help="cross-attention heatmap of the first sentence",
    )
    p.add_argument(
        "--attention-layer",
        type=int,
        default=-1,
        metavar="N",
        help="decoder layer of the heatmap, from 0; negative counts from the last (default: -1, the last)",
    )
    p.add_argument(
        "--attention-head",
        type=int,
        default=None,
        metavar="H",
        help="attention head of the heatmap, from 0 (default: the mean of the layer's heads)",
    )
    p.add_argument("--device", default="auto", help=DEVICE_HELP)
    p.set_defaults(run=run)


def _read_lines(path: Path) -> list[str]:
    if not path.is_file():
        raise FileNotFoundError(f"input file not found: {path}")
    data = path.read_bytes()
    try:
        return _split_lines(data.decode("utf-8"))
    except UnicodeDecodeError as error:
        line = data[: error.start].count(b"\n") + 1
        raise ValueError(f"{path}:{line}: not valid UTF-8 ({error.reason}); save the file as UTF-8") from None


def _read_stdin() -> list[str]:
    data = sys.stdin.buffer.read()
    try:
        return _split_lines(data.decode("utf-8"))
    except UnicodeDecodeError as error:
        line = data[: error.start].count(b"\n") + 1
        raise ValueError(f"stdin line {line}: not valid UTF-8 ({error.reason})") from None


def _split_lines(text: str) -> list[str]:
    r"""One sentence per "\n"-terminated line (a CRLF's "\r" and a leading byte-order mark dropped).

    Not str.splitlines: it also breaks at U+2028, U+0085, \x1c ... which can sit inside a sentence, and would
    then put the output lines out of step with the input lines.
    """
    lines = text.removeprefix("\ufeff").split("\n")
    if lines[-1] == "":  # the end of the last line, or no input at all
        lines.pop()
    return [line.removesuffix("\r") for line in lines]


def _format(result: Translation, n_best: int) -> str:
    if n_best == 1:
        return _one_line(result.text)
    return "\n".join(
        f"{rank}\t{score:.4f}\t{_one_line(text)}" for rank, (text, score) in enumerate(result.alternatives, 1)
    )


def _one_line(text: str) -> str:
    """A translation may contain a line break (byte-level BPE can emit one); output stays one line per input."""
    return re.sub(r"[\r\n]+", " ", text)


def _prepare(sentences: list[str], trained: TrainedModel) -> list[str]:
    """Normalise inputs as the training data was; cut those longer than the model's positions, with a warning."""
    # Recurrent models have no position table; 1024 keeps a runaway line from stalling them all the same.
    limit = getattr(trained.config.model, "max_len", 1024) - 1  # one position for EOS
    clipped = []
    for number, sentence in enumerate(prepare_sources(trained.config.data, sentences), 1):
        ids = trained.state.source.encode(sentence)
        if len(ids) > limit:
            warn(f"input {number} has {len(ids)} tokens; the model takes {limit}: it was truncated")
            sentence = trained.state.source.decode(ids[:limit])
        clipped.append(sentence)
    return clipped


def _interactive(trained: TrainedModel, options: argparse.Namespace, decode) -> int:
    print("Type a sentence and press Enter (Ctrl-D to quit).", file=sys.stderr)
    while True:
        try:
            line = input("> ")
        except EOFError:
            print(file=sys.stderr)
            return 0
        result = translate(
            trained.model, trained.state, _prepare([line], trained), config=decode, n_best=options.n_best
        )
        print(_format(result[0], options.n_best), flush=True)


def run(args: argparse.Namespace) -> int:
    if args.n_best < 1 or args.batch_size < 1:
        raise ValueError(f"--n-best and --batch-size must be >= 1, got {args.n_best} and {args.batch_size}")
    if args.beam is not None and args.beam < args.n_best:
        raise ValueError(
            f"--beam {args.beam} cannot give --n-best {args.n_best}: use a beam of at least {args.n_best}"
        )
    trained = load_trained(args.checkpoint, device=args.device, task="translation")
    decode = (
        trained.config.decode
        if args.beam is None
        else dataclasses.replace(trained.config.decode, beam_size=args.beam)
    )
    if args.sentences:
        sentences = args.sentences
    elif args.input:
        sentences = _read_lines(args.input)
    elif sys.stdin.isatty():
        return _interactive(trained, args, decode)
    else:
        sentences = _read_stdin()
    if not sentences:
        warn("no input sentences: nothing to translate")
        return 0
    prepared = _prepare(sentences, trained)
    results = translate(
        trained.model,
        trained.state,
        prepared,
        config=decode,
        batch_size=args.batch_size,
        n_best=args.n_best,
    )
    _write((_format(r, args.n_best) for r in results), args.output)
    if args.plot_attention:
        png = plot_translation_attention(
            trained.model,
            trained.state,
            prepared[0],
            results[0],
            path=args.plot_attention,
            layer=args.attention_layer,
            head=args.attention_head,
        )
        print(f"attention map: {png}", file=sys.stderr)
    return 0


def _write(lines: Iterable[str], output: Path | None) -> None:
    text = "".join(line + "\n" for line in lines)
    if output is None:
        sys.stdout.write(text)
    else:
        output.write_text(text, encoding="utf-8")
