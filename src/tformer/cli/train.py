"""`tformer train PRESET_OR_YAML [--section.key=value ...]`."""

from __future__ import annotations

import argparse
import os

from tformer.tasks.runs import load_run_config, preset_names, train


def add_parser(sub) -> None:
    p = sub.add_parser(
        "train",
        help="train a model from a preset or YAML config",
        description=(
            "Train from a preset shipped with tformer or a YAML file. Any config value can be overridden with a "
            "dotted option, e.g. --model.n_encoder_layers=4 --train.lr=3e-4 --out_dir=runs/x. "
            f"Presets: {', '.join(preset_names())}."
        ),
    )
    p.add_argument("config", metavar="PRESET_OR_YAML", help="preset name or path to a .yaml run config")
    p.add_argument(
        "--resume", action="store_true", help="continue exactly from OUT_DIR/last.safetensors if present"
    )
    p.set_defaults(run=run, accepts_overrides=True)


def run(args: argparse.Namespace) -> int:
    config = load_run_config(args.config, args.overrides)
    result, _, out_dir = train(config, resume=args.resume)
    if int(os.environ.get("RANK", "0")) != 0:  # under torchrun, one summary is enough
        return 0
    best = "n/a" if result.best_metric is None else f"{result.best_metric:.4g}"
    print(f"done: {result.step} steps; best {config.train.metric} {best} at step {result.best_step}")
    print(f"checkpoints: {out_dir / 'best.safetensors'} (best), {out_dir / 'last.safetensors'} (last)")
    return 0
