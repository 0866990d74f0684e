"""`tformer reproduce NAME`: a published row from scratch, printed next to its target and the published anchor."""

from __future__ import annotations

import argparse

from tformer.cli.common import DEVICE_HELP
from tformer.tasks.reproduce import MACHINES, ROWS, Reproduction, published_row, reproduce
from tformer.training.budget import spending_summary


def add_parser(sub) -> None:
    p = sub.add_parser(
        "reproduce",
        help="reproduce a published result from scratch: train, average checkpoints, evaluate",
        description=(
            "Trains the row's recipe from scratch: the CPU recipe (a fixed budget of training minutes on 2 "
            "cores) unless the device is a GPU, which runs the GPU recipe where the row has one. Translation "
            "rows average the last checkpoints and decode the test split with beam search, language-model rows "
            f"score their split with the best checkpoint; prints the result next to the target. Rows: "
            f"{', '.join(ROWS)}. Dotted overrides (--train.budget_minutes=...) are passed to the preset."
        ),
    )
    p.add_argument("name", metavar="NAME", choices=sorted(ROWS), help=f"one of: {', '.join(ROWS)}")
    p.add_argument(
        "--average",
        type=int,
        default=5,
        help="translation rows: average the last N checkpoints (default: 5, the paper's choice), of those "
        "written in the last quarter of the updates",
    )
    p.add_argument("--device", default="auto", help=DEVICE_HELP)
    p.add_argument(
        "--recipe",
        choices=MACHINES,
        default=None,
        help="which recipe to run (default: gpu on a CUDA device where the row has one, else cpu)",
    )
    p.set_defaults(run=run, accepts_overrides=True)


def run(args: argparse.Namespace) -> int:
    row = published_row(args.name)
    overrides = [f"--train.device={args.device}", *args.overrides]
    done = reproduce(
        args.name, overrides=overrides, average=args.average, device=args.device, machine=args.recipe
    )
    m, recipe = done.evaluation.metrics, done.recipe
    value = m[row.metric]
    reached = row.reached(value, recipe)
    size = f"{m['n']} sentences, beam {m['beam_size']}" if "n" in m else f"{int(m['tokens'])} tokens"
    print(f"{row.what} ({size}, checkpoint {done.checkpoint})")
    if done.averaged_steps:
        print(f"  averaged checkpoints: steps {', '.join(map(str, done.averaged_steps))}")
    print(f"  recipe: {done.machine} ({recipe.preset}: {recipe.budget})")
    if reached is None:
        print(f"  {row.metric}: {value:.4g}   no target: reported")
    else:
        bound = ">=" if row.higher_is_better else "<="
        verdict = "reached" if reached else "NOT reached"
        print(
            f"  {row.metric}: {value:.4g}   target {bound} {recipe.target} (tolerance {recipe.tolerance}): {verdict}"
        )
    print(f"  published anchor: {row.anchor}")
    if "sacrebleu" in m:
        print(f"  sacreBLEU (cased, detokenized): {m['sacrebleu']:.2f}  {m['sacrebleu_signature']}")
        print(f"  chrF: {m['chrf']:.2f}  {m['chrf_signature']}")
    else:
        print("  " + "   ".join(f"{k}: {v:.4f}" for k, v in m.items() if k not in ("split", "tokens")))
    print(f"  time: {_time_spent(done)}")
    return 1 if reached is False else 0


def _time_spent(done: Reproduction) -> str:
    progress = done.train_progress
    if done.budget_minutes is not None:
        training = spending_summary(progress, budget_minutes=done.budget_minutes)
    else:
        training = (
            f"{progress.step:,} updates in {progress.train_seconds / 60:.1f} min, evaluations and "
            f"checkpoints {progress.eval_seconds / 60:.1f} min"
        )
    return f"{training}; averaging and final evaluation {done.after_training_seconds / 60:.1f} min"
