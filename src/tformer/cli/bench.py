"""`tformer bench`: time tformer against torch.nn.Transformer and HuggingFace models in one process."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from tformer.bench.harness import DTYPES, BenchOptions, run_bench
from tformer.bench.report import format_table
from tformer.bench.suites import SIZES, SUITES


def add_parser(sub) -> None:
    p = sub.add_parser(
        "bench",
        help="time tformer against torch.nn.Transformer and HuggingFace peers (training and generation)",
        description="Time tformer against its peers on the same work (dimensions, batch, dtype, device) and "
        "print one table: steps/s, tokens/s, MFU against a matmul peak measured in the same run, peak memory "
        "and tformer's ratio to each peer. See benchmarks/README.md.",
    )
    p.add_argument(
        "--device", default=None, help="cpu, cuda or cuda:N (default: cuda when available, else cpu)"
    )
    p.add_argument(
        "--suite",
        nargs="+",
        choices=SUITES,
        default=list(SUITES),
        help=f"suites to run (default: all of {', '.join(SUITES)})",
    )
    p.add_argument("--steps", type=int, default=10, help="timed steps per implementation (default: 10)")
    p.add_argument(
        "--warmup", type=int, default=2, help="untimed steps per implementation first (default: 2)"
    )
    p.add_argument(
        "--size",
        choices=SIZES,
        default=None,
        help="workload sizes: full (base seq2seq, GPT-2 124M), small (CPU), tiny (seconds) "
        "(default: full on CUDA, small on CPU)",
    )
    p.add_argument("--dtype", choices=DTYPES, default=None, help="default: bf16 on CUDA, fp32 on CPU")
    p.add_argument(
        "--compile",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="also time torch.compile'd GPT training and tformer's compiled seq2seq decoding step "
        "(default: on CUDA only)",
    )
    p.add_argument(
        "--static-cache", action="store_true", help="tformer seq2seq decoding into a preallocated KV cache"
    )
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", type=Path, default=None, metavar="FILE", help="also write the report here")
    p.add_argument(
        "--profile",
        type=Path,
        default=None,
        metavar="DIR",
        help="after timing each case, profile every implementation (torch.profiler) and write op tables, "
        "Chrome traces and summary.md here",
    )
    p.add_argument(
        "--profile-steps",
        type=int,
        default=None,
        help="steps per implementation under --profile (default: 3)",
    )
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    on_cuda = device.startswith("cuda")
    if args.threads is not None:
        if args.threads < 1:
            raise ValueError(f"--threads must be >= 1, got {args.threads}")
        torch.set_num_threads(args.threads)
    if args.profile_steps is not None and args.profile is None:
        raise ValueError(f"--profile-steps {args.profile_steps} needs --profile DIR (where the profiles go)")
    options = BenchOptions(
        device=device,
        suites=tuple(dict.fromkeys(args.suite)),
        steps=args.steps,
        warmup=args.warmup,
        size=args.size or ("full" if on_cuda else "small"),
        dtype=args.dtype or ("bf16" if on_cuda else "fp32"),
        compile=on_cuda if args.compile is None else args.compile,
        static_cache=args.static_cache,
        seed=args.seed,
        profile_dir=args.profile,
        profile_steps=3 if args.profile_steps is None else args.profile_steps,
    )
    report = run_bench(options)
    print(format_table(report))
    if args.json is not None:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
        print(f"wrote {args.json}")
    if args.profile is not None:
        print(f"wrote profiles to {args.profile}")
    return 0
