"""`tformer reproduce NAME`: a published row from scratch, printed next to its target and tolerance."""

from __future__ import annotations

import argparse

from tformer.cli.common import DEVICE_HELP
from tformer.tasks.reproduce import ROWS, published_row, reproduce


def add_parser(sub) -> None:
    p = sub.add_parser(
        "reproduce",
        help="reproduce a published result from scratch: train, average checkpoints, evaluate",
        description=(
            "Trains the row's preset from scratch, averages the last checkpoints, decodes the test split with beam "
            f"search and prints the result next to the target. Rows: {', '.join(ROWS)}. Dotted overrides "
            "(--train.max_steps=...) are passed to the preset."
        ),
    )
    p.add_argument("name", metavar="NAME", choices=sorted(ROWS), help=f"one of: {', '.join(ROWS)}")
    p.add_argument(
        "--average", type=int, default=5, help="checkpoints to average (default: 5, the paper's choice)"
    )
    p.add_argument("--device", default="auto", help=DEVICE_HELP)
    p.set_defaults(run=run, accepts_overrides=True)


def run(args: argparse.Namespace) -> int:
    row = published_row(args.name)
    overrides = [f"--train.device={args.device}", *args.overrides]
    evaluation, checkpoint = reproduce(
        args.name, overrides=overrides, average=args.average, device=args.device
    )
    m = evaluation.metrics
    value = m[row.metric]
    verdict = "reached" if value >= row.target - row.tolerance else "NOT reached"
    print(f"{row.what} ({m['n']} sentences, beam {m['beam_size']}, checkpoint {checkpoint})")
    print(f"  {row.metric}: {value:.2f}   target >= {row.target} (tolerance {row.tolerance}): {verdict}")
    print(f"  published anchor: {row.anchor}")
    print(f"  sacreBLEU (cased, detokenized): {m['sacrebleu']:.2f}  {m['sacrebleu_signature']}")
    print(f"  chrF: {m['chrf']:.2f}  {m['chrf_signature']}")
    return 0 if verdict == "reached" else 1
