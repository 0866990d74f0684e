"""`tformer compare --translation RUN_DIR ... --lm RUN_DIR ... --out DIR`: the Transformer against the LSTM
baselines on the same data and hardware, as a docs/results.md section with PNG plots."""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path

from tformer.cli.common import DEVICE_HELP
from tformer.tasks.comparison import compare


def add_parser(sub) -> None:
    p = sub.add_parser(
        "compare",
        help="compare trained runs (Transformer vs LSTM): tables and plots for docs/results.md",
        description=(
            "Translation runs: parameters, BLEU (lowercased tokenized and cased sacreBLEU) and chrF on the test "
            "split, training time to the best validation BLEU, training tokens/s, decoding sentences/s (greedy "
            "and the run's beam), BLEU by source-sentence length, validation BLEU against training time. "
            "Language-model runs: parameters, test perplexity, training tokens/s. Writes OUT/comparison.md "
            "and its PNGs. RUN_DIR is an output directory of `tformer train` (best.safetensors, log.jsonl)."
        ),
    )
    p.add_argument(
        "--translation", nargs="+", type=Path, default=[], metavar="RUN_DIR", help="translation runs"
    )
    p.add_argument("--lm", nargs="+", type=Path, default=[], metavar="RUN_DIR", help="language-model runs")
    p.add_argument("--out", type=Path, required=True, metavar="DIR", help="where to write the report")
    p.add_argument(
        "--n",
        type=int,
        default=None,
        help="translation: score and time the first N test sentences (default: all)",
    )
    p.add_argument("--device", default="auto", help=DEVICE_HELP)
    p.set_defaults(run=run)


def _command(args: argparse.Namespace) -> str:
    """The command line, rebuilt from the parsed arguments so the report names exactly what ran."""
    words = ["tformer", "compare"]
    for flag, dirs in (("--translation", args.translation), ("--lm", args.lm)):
        if dirs:
            words += [flag, *map(str, dirs)]
    words += ["--out", str(args.out), "--device", args.device]
    if args.n is not None:
        words += ["--n", str(args.n)]
    return shlex.join(words)


def run(args: argparse.Namespace) -> int:
    path = compare(
        translation_runs=args.translation,
        lm_runs=args.lm,
        out_dir=args.out,
        n=args.n,
        device=args.device,
        command=_command(args),
    )
    print(path.read_text(encoding="utf-8"))
    print(f"written: {path} and its PNGs")
    return 0
