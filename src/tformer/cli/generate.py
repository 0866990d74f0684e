"""`tformer generate CHECKPOINT [PROMPT]`: continue a prompt with a trained language model, streaming."""

from __future__ import annotations

import argparse
import dataclasses
import random
import sys

from tformer.cli.common import DEVICE_HELP, decode_utf8
from tformer.decoding.causal_lm import SamplingConfig
from tformer.tasks.generation import check_stop_strings, generate_text
from tformer.tasks.language_model import TextCodec
from tformer.tasks.runs import load_trained

_ESCAPES = {"\\n": "\n", "\\t": "\t", "\\\\": "\\"}


def add_parser(sub) -> None:
    p = sub.add_parser(
        "generate",
        help="generate text with a trained language model",
        description=(
            "Continue PROMPT (or the text on stdin; with neither, start a new line) with a language-model "
            "checkpoint written by `tformer train`. Tokens stream to the terminal as they are produced. "
            "Sampling defaults come from the checkpoint's run config (its `sample` section)."
        ),
    )
    p.add_argument("checkpoint", metavar="CHECKPOINT", help="a .safetensors language-model checkpoint")
    p.add_argument(
        "prompt", nargs="?", metavar="PROMPT", help="text to continue (default: stdin, else empty)"
    )
    p.add_argument("--max-new-tokens", type=int, default=None, help="tokens to generate per sample")
    p.add_argument("--temperature", type=float, default=None, help="softmax temperature; 0 = greedy")
    p.add_argument("--greedy", action="store_true", help="always take the most likely token (temperature 0)")
    p.add_argument("--top-k", type=int, default=None, help="sample only among the K most likely tokens")
    p.add_argument("--top-p", type=float, default=None, help="sample only within the top-P probability mass")
    p.add_argument(
        "--repetition-penalty", type=float, default=None, help="> 1 discourages tokens already seen (1 = off)"
    )
    p.add_argument(
        "--stop",
        action="append",
        default=[],
        metavar="TEXT",
        help=r"stop a sample at TEXT (not printed); repeatable; \n and \t are understood",
    )
    p.add_argument("--num-samples", type=int, default=1, help="independent samples of the same prompt")
    p.add_argument("--seed", type=int, default=None, help="random seed (default: a fresh one, printed)")
    p.add_argument("--no-stream", action="store_true", help="print each sample only when it is complete")
    p.add_argument("--device", default="auto", help=DEVICE_HELP)
    p.set_defaults(run=run)


def _unescape(text: str) -> str:
    for escaped, char in _ESCAPES.items():
        text = text.replace(escaped, char)
    return text


def _prompt(args: argparse.Namespace) -> str:
    if args.prompt is not None:
        return args.prompt
    if sys.stdin.isatty():
        return ""
    return decode_utf8(sys.stdin.buffer.read(), source="stdin").rstrip("\n")


def _sampling(args: argparse.Namespace, defaults: SamplingConfig) -> SamplingConfig:
    chosen = {
        "max_new_tokens": args.max_new_tokens,
        "temperature": 0.0 if args.greedy else args.temperature,
        "top_k": args.top_k,
        "top_p": args.top_p,
        "repetition_penalty": args.repetition_penalty,
    }
    return dataclasses.replace(defaults, **{k: v for k, v in chosen.items() if v is not None})


def run(args: argparse.Namespace) -> int:
    if args.num_samples < 1:
        raise ValueError(f"--num-samples must be >= 1, got {args.num_samples}")
    stop = [_unescape(s) for s in args.stop]
    check_stop_strings(stop)
    prompt = _prompt(args)
    trained = load_trained(args.checkpoint, device=args.device, task="language_model")
    config = _sampling(args, trained.config.sample)
    codec = TextCodec.for_config(trained.config.data, trained.state)
    seed = args.seed
    if seed is None and config.temperature > 0:
        seed = random.SystemRandom().randrange(2**31)
        print(f"seed: {seed} (--seed {seed} repeats these samples)", file=sys.stderr)
    stream = not args.no_stream and args.num_samples == 1

    def write(text: str) -> None:
        sys.stdout.write(text)
        sys.stdout.flush()

    if stream:
        write(prompt)
    generations = generate_text(
        trained.model,
        codec,
        prompt,
        config=config,
        n_samples=args.num_samples,
        seed=seed,
        stop=stop,
        on_text=write if stream else None,
    )
    if stream:
        write("\n")
        return 0
    for i, generation in enumerate(generations):
        if i:
            write("\n" + "-" * 40 + "\n")
        write(prompt + generation.text + "\n")
    return 0
