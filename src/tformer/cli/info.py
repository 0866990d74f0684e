"""`tformer info PRESET_OR_CHECKPOINT`: a model summary with parameter counts and FLOPs per token."""

from __future__ import annotations

import argparse

from tformer.tasks.models import describe_model


def add_parser(sub) -> None:
    p = sub.add_parser(
        "info",
        help="summarise a model: modules, output shapes, parameters, FLOPs per token",
        description="Summarise a model preset (e.g. 'base', 'seq2seq.small') or a trained checkpoint file.",
    )
    p.add_argument(
        "target",
        metavar="PRESET_OR_CHECKPOINT",
        help="model preset name or path to a .safetensors checkpoint",
    )
    p.add_argument(
        "--length", type=int, default=32, help="sequence length of the example batch (default: 32)"
    )
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    print(describe_model(args.target, length=args.length))
    return 0
