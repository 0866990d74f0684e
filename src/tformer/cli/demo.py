"""`tformer demo`: the main job on a fresh machine: train, evaluate and show a date-rewriting Transformer."""

from __future__ import annotations

import argparse

from tformer.cli.common import DEVICE_HELP
from tformer.tasks.demo import run_demo


def add_parser(sub) -> None:
    p = sub.add_parser(
        "demo",
        help="train a small Transformer to rewrite dates into ISO form (no downloads, ~3 min on 2 CPU cores)",
        description=(
            "Generates human-written dates in English, German and French ('23rd of November 2026', "
            "'dreiundzwanzigster November 2026', '23.11.2026', ...), trains a small encoder-decoder Transformer "
            "to rewrite them as ISO dates (2026-11-23), reports exact match on held-out dates, shows examples "
            "and saves a cross-attention heatmap."
        ),
    )
    p.add_argument("--device", default="auto", help=DEVICE_HELP)
    p.add_argument(
        "--out-dir",
        default="runs/demo",
        help="where checkpoints, logs and the heatmap go (default: runs/demo)",
    )
    p.add_argument("--max-steps", type=int, default=None, help="training updates (default: the preset's)")
    p.add_argument(
        "--seed", type=int, default=None, help="random seed for data, initialisation and order (default: 0)"
    )
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    overrides = [f"--train.device={args.device}", f"--out_dir={args.out_dir}"]
    if args.max_steps is not None:
        if args.max_steps < 1:
            raise ValueError(f"--max-steps must be >= 1, got {args.max_steps}")
        warmup = min(200, args.max_steps // 10)  # the preset's warmup, shortened for short runs
        overrides += [
            f"--train.max_steps={args.max_steps}",
            f"--train.schedule.total_steps={args.max_steps}",
            f"--train.schedule.warmup_steps={warmup}",
        ]
    if args.seed is not None:
        overrides.append(f"--train.seed={args.seed}")
    result = run_demo(overrides=overrides)
    print()
    print(f"Trained {result.steps} steps in {result.train_seconds:.0f} s.")
    print(
        f"Exact match on {result.n_test} held-out dates (never seen in training): {100 * result.exact_match:.1f}%"
    )
    print()
    width = max(len(src) for src, _ in result.examples)
    for src, out in result.examples:
        print(f"  {src:<{width}}  ->  {out}")
    print()
    print(f"Checkpoint: {result.checkpoint}")
    print(f"Cross-attention of the first example: {result.attention_png}")
    print(f'Try your own:  tformer translate {result.checkpoint} "4 juillet 1976" "March 3rd, 2001"')
    return 0
