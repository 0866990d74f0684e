"""`tformer evaluate CHECKPOINT`: decode a held-out split, write the hypotheses, report the metrics."""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

from tformer.cli.common import DEVICE_HELP
from tformer.metrics.text import exact_match
from tformer.tasks.runs import load_trained
from tformer.tasks.translation import load_pairs, translate


def add_parser(sub) -> None:
    p = sub.add_parser(
        "evaluate",
        help="evaluate a checkpoint on a held-out split",
        description="Decode a held-out split with the checkpoint's model and tokenizer; print and save metrics.",
    )
    p.add_argument(
        "checkpoint", metavar="CHECKPOINT", help="a .safetensors checkpoint written by `tformer train`"
    )
    p.add_argument(
        "--split", default="test", choices=["valid", "test"], help="which split to decode (default: test)"
    )
    p.add_argument(
        "--n", type=int, default=1000, help="examples to decode, for generated data sets (default: 1000)"
    )
    p.add_argument(
        "--beam", type=int, default=None, help="beam size (default: the run config's decode.beam_size)"
    )
    p.add_argument(
        "--output", type=Path, default=None, help="hypotheses file (default: next to the checkpoint)"
    )
    p.add_argument("--device", default="auto", help=DEVICE_HELP)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    if args.n < 1:
        raise ValueError(f"--n must be >= 1, got {args.n}")
    trained = load_trained(args.checkpoint, device=args.device)
    config = trained.config
    decode = config.decode if args.beam is None else dataclasses.replace(config.decode, beam_size=args.beam)
    data = dataclasses.replace(config.data, n_valid=args.n)
    pairs = load_pairs(data, args.split, seed=config.train.seed)
    outputs = translate(trained.model, trained.tokenizer, [s for s, _ in pairs], config=decode)
    hypotheses = [o.text for o in outputs]
    metrics = {
        "split": args.split,
        "n": len(pairs),
        "beam_size": decode.beam_size,
        "exact_match": exact_match(hypotheses, [t for _, t in pairs]),
    }
    output = args.output or Path(args.checkpoint).with_name(f"hypotheses.{args.split}.txt")
    output.write_text("".join(h + "\n" for h in hypotheses), encoding="utf-8")
    print(f"exact match on {metrics['n']} {args.split} examples: {100 * metrics['exact_match']:.2f}%")
    print(f"hypotheses: {output}")
    print(json.dumps(metrics))
    return 0
