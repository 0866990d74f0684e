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

Shape legend: B batch, S source length, T target length, D model width, V vocabulary.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import platform
import statistics
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from tformer.models.seq2seq import Seq2SeqConfig, Seq2SeqTransformer, count_parameters, preset_config
from tformer.nn.masks import causal_mask
from tformer.nn.positional import sinusoidal_table

PAD_ID = 0
# Real sentences in a batch have different lengths: each row keeps between this fraction and all of the
# padded length, so about (1 - MIN_KEEP) / 2 = 10% of the positions are padding.
MIN_KEEP = 0.8
# float32 logits of two implementations of the same function differ by rounding only.
LOGIT_TOLERANCE = 1e-4


class TorchSeq2Seq(nn.Module):
    """The baseline: stock nn.Transformer with the paper's embeddings, sinusoidal positions and tied output.

    nn.Transformer always ends its encoder and decoder stacks with a LayerNorm, even in post-norm mode where
    every block already ends in one; tformer's post-norm stacks, like the paper, do not. That is the only
    architectural difference: 2 x 2 x d_model parameters and two cheap LayerNorms per step.
    """

    def __init__(self, config: Seq2SeqConfig) -> None:
        super().__init__()
        c = config
        self.d_model = c.d_model
        self.src_embed = nn.Embedding(c.src_vocab_size, c.d_model, padding_idx=c.pad_id)
        self.tgt_embed = nn.Embedding(c.tgt_vocab_size, c.d_model, padding_idx=c.pad_id)
        self.register_buffer("positions", sinusoidal_table(c.max_len, c.d_model), persistent=False)
        self.dropout = nn.Dropout(c.dropout)
        self.transformer = nn.Transformer(
            d_model=c.d_model,
            nhead=c.n_heads,
            num_encoder_layers=c.n_encoder_layers,
            num_decoder_layers=c.n_decoder_layers,
            dim_feedforward=c.d_ff,
            dropout=c.dropout,
            batch_first=True,
        )
        self.output_projection = nn.Linear(c.d_model, c.tgt_vocab_size, bias=False)
        self.output_projection.weight = self.tgt_embed.weight

    def _embed(self, ids: Tensor, embed: nn.Embedding) -> Tensor:
        x = embed(ids) * math.sqrt(self.d_model)  # [B, L] -> [B, L, D]
        return self.dropout(x + self.positions[: ids.shape[1]])

    def forward(self, src_ids: Tensor, tgt_ids: Tensor, *, src_mask: Tensor) -> Tensor:
        """src_ids [B, S], tgt_ids [B, T], src_mask Bool[B, S] (True = token) -> logits [B, T, V].

        The same masks as tformer: source padding in encoder self-attention and cross-attention, causal in
        decoder self-attention, no target padding mask (right padding is already behind the causal mask).
        nn.Transformer's masks use the opposite polarity (True = ignore), hence the `~`.
        """
        t = tgt_ids.shape[1]
        x = self.transformer(
            self._embed(src_ids, self.src_embed),
            self._embed(tgt_ids, self.tgt_embed),
            tgt_mask=~causal_mask(t, device=tgt_ids.device),
            src_key_padding_mask=~src_mask,
            memory_key_padding_mask=~src_mask,
            tgt_is_causal=True,
        )
        return self.output_projection(x)


def torch_state_from_tformer(model: Seq2SeqTransformer) -> dict[str, Tensor]:
    """tformer's weights under TorchSeq2Seq's parameter names (final LayerNorms excluded, see TorchSeq2Seq).

    Both fuse Q, K and V of self-attention into one [3D, D] projection in the same order; tformer's
    cross-attention keeps Q apart from the fused K/V, so the two are concatenated.
    """
    state = {
        "src_embed.weight": model.src_embed.weight,
        "tgt_embed.weight": model.tgt_embed.weight,
        "output_projection.weight": model.output_projection.weight,  # tied: the target embedding in both
    }

    def copy(prefix: str, module: nn.Module) -> None:
        state[f"{prefix}.weight"], state[f"{prefix}.bias"] = module.weight, module.bias

    def copy_self_attention(prefix: str, attn: nn.Module) -> None:
        state[f"{prefix}.in_proj_weight"], state[f"{prefix}.in_proj_bias"] = (
            attn.qkv_proj.weight,
            attn.qkv_proj.bias,
        )
        copy(f"{prefix}.out_proj", attn.out_proj)

    for i, block in enumerate(model.encoder.layers):
        p = f"transformer.encoder.layers.{i}"
        copy_self_attention(f"{p}.self_attn", block.self_attn)
        copy(f"{p}.linear1", block.feedforward.linear1)
        copy(f"{p}.linear2", block.feedforward.linear2)
        copy(f"{p}.norm1", block.attn_residual.norm)
        copy(f"{p}.norm2", block.ff_residual.norm)
    for i, block in enumerate(model.decoder.layers):
        p = f"transformer.decoder.layers.{i}"
        copy_self_attention(f"{p}.self_attn", block.self_attn)
        cross = block.cross_attn
        state[f"{p}.multihead_attn.in_proj_weight"] = torch.cat([cross.q_proj.weight, cross.kv_proj.weight])
        state[f"{p}.multihead_attn.in_proj_bias"] = torch.cat([cross.q_proj.bias, cross.kv_proj.bias])
        copy(f"{p}.multihead_attn.out_proj", cross.out_proj)
        copy(f"{p}.linear1", block.feedforward.linear1)
        copy(f"{p}.linear2", block.feedforward.linear2)
        copy(f"{p}.norm1", block.self_residual.norm)
        copy(f"{p}.norm2", block.cross_residual.norm)
        copy(f"{p}.norm3", block.ff_residual.norm)
    return state


@dataclasses.dataclass(frozen=True)
class Batch:
    src_ids: Tensor  # Long[B, S], right-padded with PAD_ID
    src_mask: Tensor  # Bool[B, S], True = real token
    tgt_in: Tensor  # Long[B, T], decoder input (teacher forcing)
    labels: Tensor  # Long[B, T], next tokens; PAD_ID where padded (ignored by the loss)


def _padded_ids(batch: int, length: int, vocab: int, g: torch.Generator) -> Tensor:
    """Long[B, L] random real tokens, each row right-padded after a length in [MIN_KEEP * L, L]."""
    ids = torch.randint(PAD_ID + 1, vocab, (batch, length), generator=g)
    lengths = torch.randint(math.ceil(MIN_KEEP * length), length + 1, (batch,), generator=g)
    lengths[0] = length  # the longest sentence sets the padded length, as in a real batch
    return ids.masked_fill(torch.arange(length) >= lengths[:, None], PAD_ID)  # [B, L]


def make_batch(*, batch: int, src_len: int, tgt_len: int, vocab: int, seed: int) -> Batch:
    g = torch.Generator().manual_seed(seed)
    src = _padded_ids(batch, src_len, vocab, g)
    tgt = _padded_ids(batch, tgt_len + 1, vocab, g)  # [B, T + 1]: shifted into input and labels
    return Batch(src_ids=src, src_mask=src != PAD_ID, tgt_in=tgt[:, :-1], labels=tgt[:, 1:])


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


def check_same_function(config: Seq2SeqConfig, batch: Batch, *, seed: int) -> float:
    """Max |logit difference| between tformer and a torch baseline holding its weights, dropout off."""
    torch.manual_seed(seed)
    ours = Seq2SeqTransformer(config).eval()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        # Fresh LayerNorms (1, 0) and biases (0) all look alike, so a mixed-up mapping would go unnoticed.
        for p in ours.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=g))
    theirs = TorchSeq2Seq(config).eval()
    theirs.transformer.encoder.norm = None  # nn.TransformerEncoder/Decoder skip a final norm of None
    theirs.transformer.decoder.norm = None
    theirs.load_state_dict(torch_state_from_tformer(ours), strict=True)
    # Gradients stay enabled: under no_grad nn.Transformer switches to its inference fast path, and the check
    # is about the code that is timed.
    ours_logits = ours(batch.src_ids, batch.tgt_in, src_mask=batch.src_mask).logits.detach()
    theirs_logits = theirs(batch.src_ids, batch.tgt_in, src_mask=batch.src_mask).detach()
    diff = (ours_logits - theirs_logits).abs().max().item()
    if not diff <= LOGIT_TOLERANCE:
        raise RuntimeError(
            f"tformer and the torch baseline disagree (max |logit diff| {diff:.2e} > {LOGIT_TOLERANCE:.0e}): "
            "the benchmark would compare different models"
        )
    return diff


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


def cpu_model() -> str:
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


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
        batch=args.batch, src_len=args.src_len, tgt_len=args.tgt_len, vocab=args.vocab, seed=args.seed
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
