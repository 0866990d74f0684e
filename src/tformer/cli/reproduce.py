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
            "Trains the row's preset from scratch; translation rows average the last checkpoints and decode the "
            "test split with beam search, language-model rows score their split with the best checkpoint; prints "
            f"the result next to the target. Rows: {', '.join(ROWS)}. Dotted overrides "
            "(--train.max_steps=...) are passed to the preset."
        ),
    )
    p.add_argument("name", metavar="NAME", choices=sorted(ROWS), help=f"one of: {', '.join(ROWS)}")
    p.add_argument(
        "--average",
        type=int,
        default=5,
        help="translation rows: checkpoints to average (default: 5, the paper's choice)",
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
    verdict = "reached" if row.reached(value) else "NOT reached"
    bound = ">=" if row.higher_is_better else "<="
    size = f"{m['n']} sentences, beam {m['beam_size']}" if "n" in m else f"{int(m['tokens'])} tokens"
    print(f"{row.what} ({size}, checkpoint {checkpoint})")
    print(f"  {row.metric}: {value:.4g}   target {bound} {row.target} (tolerance {row.tolerance}): {verdict}")
    print(f"  published anchor: {row.anchor}")
    if "sacrebleu" in m:
        print(f"  sacreBLEU (cased, detokenized): {m['sacrebleu']:.2f}  {m['sacrebleu_signature']}")
        print(f"  chrF: {m['chrf']:.2f}  {m['chrf_signature']}")
    else:
        print("  " + "   ".join(f"{k}: {v:.4f}" for k, v in m.items() if k not in ("split", "tokens")))
    return 0 if verdict == "reached" else 1
