"""CPU training-step benchmark: tformer's `small` seq2seq preset against the same model built on torch.nn.Transformer.

One timed step = forward + cross-entropy over the vocabulary + backward; no optimizer step for either model
(the optimizer update is the same AdamW arithmetic whichever model owns the parameters, so it would only dilute
the difference). Both models are in train mode (dropout active), float32, on the CPU, and see the same batch.
The two models' steps are interleaved (A B A B ...) so that noise from other processes hits both alike.

Before timing, the script checks that the two models compute the same function: tformer's weights are loaded
into a torch baseline whose two final LayerNorms are removed (see `TorchSeq2Seq`), and the logits must agree.

    python benchmarks/seq2seq_cpu.py [--batch 32] [--src-len 32] [--tgt-len 32] [--vocab 8000] [--steps 20]
                                     [--warmup 3] [--threads N] [--attention-dropout P] [--seed 0]
                                     [--json out.json]

The torch baseline, the batch and the equivalence check live in `tformer.bench.torch_seq2seq`, shared with
`tformer bench --suite seq2seq-train`, which also times the optimizer step and HuggingFace's MarianMTModel.
This script stays for its narrower, published measurement (docs/results.md).

Shape legend: B batch, S source length, T target length, D model width, V vocabulary.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import statistics
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from tformer.bench.harness import cpu_model
from tformer.bench.torch_seq2seq import Batch, TorchSeq2Seq, check_same_function, make_batch
from tformer.models.seq2seq import Seq2SeqConfig, Seq2SeqTransformer, preset_config
from tformer.models.summary import count_parameters

PAD_ID = 0


@dataclasses.dataclass
class Contender:
    name: str
    model: nn.Module
    logits: Callable[[Batch], Tensor]  # Float[B, T, V]
    times_s: list[float]


def train_step_seconds(contender: Contender, batch: Batch) -> float:
    """Wall time of forward + loss + backward; gradients are dropped beforehand, outside the timed region."""
    contender.model.zero_grad(set_to_none=True)
    start = time.perf_counter()
    logits = contender.logits(batch)
    loss = F.cross_entropy(logits.flatten(0, 1), batch.labels.flatten(), ignore_index=PAD_ID)  # [B*T, V]
    loss.backward()
    return time.perf_counter() - start


def build_contenders(config: Seq2SeqConfig, seed: int) -> list[Contender]:
    torch.manual_seed(seed)
    ours = Seq2SeqTransformer(config).train()
    torch.manual_seed(seed)
    theirs = TorchSeq2Seq(config).train()
    return [
        Contender("tformer small", ours, lambda b: ours(b.src_ids, b.tgt_in, src_mask=b.src_mask).logits, []),
        Contender(
            "torch nn.Transformer", theirs, lambda b: theirs(b.src_ids, b.tgt_in, src_mask=b.src_mask), []
        ),
    ]


def run_interleaved(contenders: list[Contender], batch: Batch, *, steps: int, warmup: int) -> None:
    """Warm-up steps (untimed), then `steps` timed rounds of one step per contender, in turn."""
    for round_index in range(warmup + steps):
        for contender in contenders:
            seconds = train_step_seconds(contender, batch)
            if round_index >= warmup:
                contender.times_s.append(seconds)


def summarize_ms(times_s: list[float]) -> dict[str, float]:
    ms = [1000.0 * t for t in times_s]
    deciles = statistics.quantiles(ms, n=10, method="inclusive") if len(ms) > 1 else ms * 9
    return {"median_ms": statistics.median(ms), "p10_ms": deciles[0], "p90_ms": deciles[8]}


def format_table(report: dict) -> str:
    a = report["args"]
    lines = [
        "seq2seq training step on CPU: forward + cross-entropy + backward (no optimizer step), float32, train mode",
        f"batch {a['batch']}, src len {a['src_len']}, tgt len {a['tgt_len']}, vocab {a['vocab']} (src and tgt), "
        f"padding {100 * report['src_padding']:.1f}% src / {100 * report['tgt_padding']:.1f}% tgt",
        f"{a['steps']} timed steps per model after {a['warmup']} warm-up, interleaved A B A B",
        f"torch {report['torch_version']}, {report['threads']} threads, {report['cpu_model']}, {report['date']}",
        "",
        f"{'model':<22}{'params':>12}{'median ms':>12}{'p10 ms':>10}{'p90 ms':>10}{'tgt tok/s':>12}",
    ]
    for name, r in report["models"].items():
        tokens_per_s = report["tgt_tokens"] / (r["median_ms"] / 1000.0)
        lines.append(
            f"{name:<22}{r['params']:>12,}{r['median_ms']:>12.1f}{r['p10_ms']:>10.1f}{r['p90_ms']:>10.1f}"
            f"{tokens_per_s:>12,.0f}"
        )
    lines += [
        "",
        f"ratio tformer / torch (median ms): {report['ratio_median']:.3f}",
        f"parameters: torch has {report['param_difference']:,} more: the final LayerNorm nn.Transformer adds "
        "to each stack (post-norm tformer, like the paper, has none)",
        f"same function: max |logit diff| {report['max_logit_diff']:.1e} (perturbed tformer weights copied into "
        "the torch model minus its final LayerNorms, eval mode)",
        "attention dropout: torch 0.1 (nn.Transformer uses `dropout` for it too), tformer small "
        f"{report['tformer_attention_dropout']}",
    ]
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--src-len", type=int, default=32)
    parser.add_argument("--tgt-len", type=int, default=32)
    parser.add_argument("--vocab", type=int, default=8000, help="source and target vocabulary size")
    parser.add_argument("--steps", type=int, default=20, help="timed steps per model")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps per model first")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch intra-op threads")
    parser.add_argument(
        "--attention-dropout",
        type=float,
        default=None,
        help="tformer's dropout on attention weights (default: the preset's, 0.0); 0.1 matches nn.Transformer, "
        "which applies its `dropout` there too",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=None, help="also write the results to this JSON file")
    args = parser.parse_args(argv)
    for name in ("batch", "src_len", "tgt_len", "steps", "threads"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if args.warmup < 0:
        parser.error(f"--warmup must be >= 0, got {args.warmup}")
    if args.vocab < 2:
        parser.error(f"--vocab must be >= 2 (padding plus at least one token), got {args.vocab}")
    return args


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    config = preset_config(
        "small",
        src_vocab_size=args.vocab,
        tgt_vocab_size=args.vocab,
        pad_id=PAD_ID,
        max_len=max(1024, args.src_len, args.tgt_len),
    )
    if args.attention_dropout is not None:
        config = dataclasses.replace(config, attention_dropout=args.attention_dropout)
    batch = make_batch(
        batch=args.batch,
        src_len=args.src_len,
        tgt_len=args.tgt_len,
        vocab=args.vocab,
        seed=args.seed,
        pad_id=PAD_ID,
    )
    max_logit_diff = check_same_function(config, batch, seed=args.seed)
    contenders = build_contenders(config, args.seed)
    run_interleaved(contenders, batch, steps=args.steps, warmup=args.warmup)

    models = {c.name: {"params": count_parameters(c.model), **summarize_ms(c.times_s)} for c in contenders}
    ours, theirs = (models[c.name] for c in contenders)
    # check_same_function proved the architectures equal apart from nn.Transformer's two final LayerNorms.
    assert theirs["params"] - ours["params"] == 2 * 2 * config.d_model
    report = {
        "benchmark": "seq2seq_cpu",
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "torch_version": torch.__version__,
        "python_version": platform.python_version(),
        "threads": torch.get_num_threads(),
        "cpu_model": cpu_model(),
        "src_padding": 1.0 - batch.src_mask.float().mean().item(),
        "tgt_padding": (batch.labels == PAD_ID).float().mean().item(),
        "tgt_tokens": int((batch.labels != PAD_ID).sum()),
        "tformer_attention_dropout": config.attention_dropout,
        "max_logit_diff": max_logit_diff,
        "models": models,
        "ratio_median": ours["median_ms"] / theirs["median_ms"],
        "param_difference": theirs["params"] - ours["params"],
        "step_times_ms": {c.name: [1000.0 * t for t in c.times_s] for c in contenders},
    }
    print(format_table(report))
    if args.json is not None:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
        print(f"\nwrote {args.json}")
    return report


if __name__ == "__main__":
    main()
