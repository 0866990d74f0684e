"""CPU training step of the word-level WikiText-2 GPT recipe with each output layer: the tied full softmax over
the 33,280-word vocabulary against the adaptive softmax (tformer.nn.heads.AdaptiveSoftmaxHead).

One timed step = forward + tformer's language-model loss + backward + AdamW step, on the same batch of random
words drawn from a Zipf distribution (word ids ordered by frequency, as tformer's word tokenizer orders them), so
the adaptive softmax's tail bands are hit as often as in real text. The contenders' steps are interleaved
(A B A B ...) so that noise from other processes hits both alike; the median is reported.

    python benchmarks/lm_output_layer.py [--batch 32] [--length 128] [--d-model 256] [--layers 4]
                                         [--steps 5] [--threads N]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from tformer.data.text_stream import LMBatch
from tformer.models.gpt import GPT, GPTConfig
from tformer.tasks.language_model import language_model_loss

VOCAB = 33280  # tformer's WikiText-2 word vocabulary
CUTOFFS = (2000, 10000)  # the wikitext2_cpu preset's bands


def zipf_batch(batch: int, length: int, seed: int) -> LMBatch:
    g = torch.Generator().manual_seed(seed)
    weights = 1.0 / torch.arange(1, VOCAB + 1, dtype=torch.float64)
    ids = torch.multinomial(weights, batch * (length + 1), replacement=True, generator=g).view(
        batch, length + 1
    )
    return LMBatch(input_ids=ids[:, :-1], targets=ids[:, 1:].contiguous())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--length", type=int, default=128)
    p.add_argument("--d-model", type=int, default=256)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--threads", type=int, default=None)
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    common = dict(
        vocab_size=VOCAB,
        context_length=args.length,
        d_model=args.d_model,
        n_heads=4,
        n_layers=args.layers,
        d_ff=4 * args.d_model,
        dropout=0.3,
        positional="rotary",
    )
    contenders = {
        "full softmax, tied": GPTConfig(**common),
        f"adaptive softmax {list(CUTOFFS)}": GPTConfig(
            **common, tie_embeddings=False, adaptive_softmax_cutoffs=CUTOFFS
        ),
    }
    batch = zipf_batch(args.batch, args.length, seed=0)
    steps = {}
    for name, config in contenders.items():
        torch.manual_seed(0)
        model = GPT(config)
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)

        def step(model: GPT = model, optimizer: torch.optim.Optimizer = optimizer) -> None:
            loss = language_model_loss(model, batch)
            (loss.loss_sum / loss.n_items).backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)

        step()  # warm-up
        steps[name] = step
    times: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(args.steps):
        for name, step in steps.items():
            started = time.perf_counter()
            step()
            times[name].append(time.perf_counter() - started)
    tokens = args.batch * args.length
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {args.batch} x {args.length}")
    base = None
    for name, seconds in times.items():
        median = statistics.median(seconds)
        base = base or median
        print(
            f"{name:32s} {median:7.3f} s/step  {tokens / median:8.0f} tokens/s  speed-up {base / median:.2f}x"
        )


if __name__ == "__main__":
    main()
