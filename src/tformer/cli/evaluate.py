"""`tformer evaluate CHECKPOINT`: decode a held-out split, write the hypotheses, report the metrics."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from tformer.cli.common import DEVICE_HELP
from tformer.tasks.evaluation import evaluate_checkpoint
from tformer.tasks.translation_data import OUT_OF_DOMAIN_SPLIT


def add_parser(sub) -> None:
    p = sub.add_parser(
        "evaluate",
        help="evaluate a checkpoint on a held-out split",
        description=(
            "Translation checkpoints: decode a held-out split with the checkpoint's model and tokenizers; write "
            "the hypotheses; print exact match, BLEU on lowercased tokenized text (as published Multi30k "
            "numbers), and cased detokenized sacreBLEU and chrF with their signatures. Language-model "
            "checkpoints: print the split's cross-entropy, perplexity and (character models) bits per character."
        ),
    )
    p.add_argument(
        "checkpoint", metavar="CHECKPOINT", help="a .safetensors checkpoint written by `tformer train`"
    )
    p.add_argument(
        "--split",
        default="test",
        choices=["valid", "test", OUT_OF_DOMAIN_SPLIT],
        help=f"split to decode (default: test; {OUT_OF_DOMAIN_SPLIT}: IWSLT14 TED talks, de/en Multi30k models)",
    )
    p.add_argument(
        "--n",
        type=int,
        default=None,
        help="decode only the first N pairs (generated data sets: draw N; default: the run's data.n_valid)",
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
    if args.n is not None and args.n < 1:
        raise ValueError(f"--n must be >= 1, got {args.n}")
    if args.beam is not None and args.beam < 1:
        raise ValueError(f"--beam must be >= 1, got {args.beam}")
    result = evaluate_checkpoint(
        args.checkpoint, split=args.split, n=args.n, beam_size=args.beam, device=args.device
    )
    print("\n".join(result.summary))
    if result.hypotheses:  # a decoding task: keep what it wrote
        output = args.output or Path(args.checkpoint).with_name(f"hypotheses.{args.split}.txt")
        output.write_text("".join(h + "\n" for h in result.hypotheses), encoding="utf-8")
        print(f"hypotheses: {output}")
    print(json.dumps(result.metrics))
    return 0
