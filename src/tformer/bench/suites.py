"""The benchmark suites: which implementations are compared, on what work, at which sizes.

Every suite yields comparison groups. A group's contenders do the same work (same dimensions, batch, dtype,
device); each group has one tformer contender, which the report compares with every peer.
Shape legend: B batch, S source length, T target length, P prompt length, N new tokens, V vocabulary.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from tformer.bench.hf_peers import gpt2_from_config, marian_from_config
from tformer.bench.measure import Contender
from tformer.bench.torch_seq2seq import Batch, TorchSeq2Seq, check_same_function, make_batch
from tformer.decoding import Seq2SeqState, beam_search, greedy_search
from tformer.decoding.causal_lm import SamplingConfig, generate_tokens
from tformer.models import gpt, seq2seq
from tformer.training.optim import build_optimizer

PAD_ID, BOS_ID, EOS_ID = 0, 1, 2
LEARNING_RATE = 1e-4  # any small rate: the update's arithmetic, not its size, is what is timed


@dataclass(frozen=True)
class Sizes:
    """Model and workload sizes of one benchmark run."""

    seq2seq_preset: str
    seq2seq_vocab: int
    train_batch: int  # seq2seq training: B sentence pairs of S = T = seq_len tokens (about 10% padding)
    seq_len: int
    gpt_preset: str
    gpt_vocab: int
    gpt_batch: int  # GPT training: B rows of gpt_len tokens
    gpt_len: int
    sentences: int  # generation: sentences (or prompts) per batch
    new_tokens: int  # generation: exactly this many new tokens per sentence
    prompt_len: int
    beam_size: int = 4


SIZES: dict[str, Sizes] = {
    # The target workloads (one GPU): the paper's base model and GPT-2 124M.
    "full": Sizes("base", 37000, 128, 32, "gpt2", 50257, 16, 1024, 64, 32, 32),
    # CPU: the `small` seq2seq preset (as benchmarks/seq2seq_cpu.py) and a tiny GPT, same generation workload.
    "small": Sizes("small", 8000, 32, 32, "tiny", 8000, 16, 64, 64, 32, 16),
    # Seconds per suite: for the smoke test and a quick check that everything runs.
    "tiny": Sizes("tiny", 1000, 4, 8, "tiny", 1000, 2, 16, 4, 4, 4),
}


@dataclass(frozen=True)
class Settings:
    """What every suite needs to know about the run."""

    device: torch.device
    dtype: torch.dtype  # training: autocast to it (fp32 = no autocast); generation: weights cast to it
    sizes: Sizes
    compile: bool  # also time torch.compile'd GPT models
    static_cache: bool  # tformer seq2seq decoding into a preallocated KV cache
    with_hf: bool  # transformers is installed
    seed: int


@dataclass
class Group:
    suite: str
    case: str
    builders: list[Callable[[], Contender]]
    notes: list[str] = dataclasses.field(default_factory=list)


SUITES = ("seq2seq-train", "gpt-train", "generate")


def groups(suite: str, settings: Settings) -> Iterator[Group]:
    if suite not in SUITES:
        raise ValueError(f"unknown suite {suite!r} (valid: {', '.join(SUITES)})")
    yield from {"seq2seq-train": _seq2seq_train, "gpt-train": _gpt_train, "generate": _generate}[suite](
        settings
    )


def seq2seq_config(sizes: Sizes) -> seq2seq.Seq2SeqConfig:
    # One shared vocabulary, as MarianMTModel (and the paper's base model) have.
    return seq2seq.preset_config(
        sizes.seq2seq_preset,
        src_vocab_size=sizes.seq2seq_vocab,
        tgt_vocab_size=sizes.seq2seq_vocab,
        share_embeddings=True,
        pad_id=PAD_ID,
        max_len=max(128, sizes.seq_len, sizes.new_tokens + 1),
    )


def gpt_config(sizes: Sizes) -> gpt.GPTConfig:
    context = max(sizes.gpt_len, sizes.prompt_len + sizes.new_tokens)
    return gpt.preset_config(sizes.gpt_preset, {"vocab_size": sizes.gpt_vocab, "context_length": context})


def _seeded(settings: Settings, make: Callable[[], nn.Module]) -> nn.Module:
    torch.manual_seed(settings.seed)
    return make().to(settings.device)


def _training_contender(
    name: str,
    model: nn.Module,
    loss_of: Callable[[nn.Module], Tensor],
    *,
    settings: Settings,
    tokens: int,
    compiled: bool = False,
) -> Contender:
    """A full training step: forward and loss (under autocast below fp32), backward, AdamW step, zero grads.

    Every contender gets the same optimizer (tformer's AdamW factory: fused kernels on CUDA and CPU) and drops its
    gradients at the end of the step, so only weights and optimizer state stay resident between steps.
    """
    model.train()
    optimizer = build_optimizer(model, lr=LEARNING_RATE, weight_decay=0.01)
    runner = torch.compile(model) if compiled else model
    low_precision = settings.dtype != torch.float32

    def step(module: nn.Module) -> None:
        with torch.autocast(settings.device.type, dtype=settings.dtype, enabled=low_precision):
            loss = loss_of(module)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return Contender(
        name=name,
        is_tformer=name.startswith("tformer"),
        step=lambda: step(runner),
        tokens_per_step=tokens,
        eager_step=lambda: step(model),
        compiled=compiled,
    )


def _token_loss(logits: Tensor, labels: Tensor) -> Tensor:
    return F.cross_entropy(logits.flatten(0, 1), labels.flatten(), ignore_index=PAD_ID)  # [B*T, V] vs [B*T]


def _checked_seq2seq_batch(config: seq2seq.Seq2SeqConfig, settings: Settings) -> tuple[Batch, float]:
    """The training batch (on the CPU), and the max |logit diff| between tformer and torch.nn.Transformer on it."""
    sizes = settings.sizes
    batch = make_batch(
        batch=sizes.train_batch,
        src_len=sizes.seq_len,
        tgt_len=sizes.seq_len,
        vocab=sizes.seq2seq_vocab,
        seed=settings.seed,
        pad_id=PAD_ID,
    )
    rows = min(4, sizes.train_batch)  # a few sentences prove the function; the full base batch is slow on CPU
    same = dataclasses.replace(batch, **{k: v[:rows] for k, v in dataclasses.asdict(batch).items()})
    return batch, check_same_function(config, same, seed=settings.seed)


def _seq2seq_train(settings: Settings) -> Iterator[Group]:
    # torch.nn.Transformer drops out attention weights, FFN activations and sub-layer outputs, all with one p:
    # every contender is set up to do the same, so that all three train the same stochastic function.
    base = seq2seq_config(settings.sizes)
    config = dataclasses.replace(base, attention_dropout=base.dropout)
    cpu_batch, diff = _checked_seq2seq_batch(config, settings)
    b = cpu_batch.to(settings.device)
    tokens = int((b.labels != PAD_ID).sum())

    real = (b.labels != PAD_ID).flatten().nonzero().squeeze(1)  # Long[N]: the targets that count
    real_labels = b.labels.flatten()[real]

    def contender(name: str, make: Callable[[], nn.Module], loss_of: Callable) -> Callable[[], Contender]:
        return lambda: _training_contender(
            name, _seeded(settings, make), loss_of, settings=settings, tokens=tokens
        )

    def peers() -> list[Callable[[], Contender]]:
        builders = [
            contender(
                "torch.nn.Transformer",
                lambda: TorchSeq2Seq(config),
                lambda m: _token_loss(m(b.src_ids, b.tgt_in, src_mask=b.src_mask), b.labels),
            )
        ]
        if settings.with_hf:
            builders.append(
                contender(
                    "HF MarianMTModel",
                    lambda: marian_from_config(config, bos_id=BOS_ID, eos_id=EOS_ID),
                    lambda m: _token_loss(
                        m(input_ids=b.src_ids, attention_mask=b.src_mask, decoder_input_ids=b.tgt_in).logits,
                        b.labels,
                    ),
                )
            )
        return builders

    full_logits = contender(
        "tformer",
        lambda: seq2seq.Seq2SeqTransformer(config),
        lambda m: _token_loss(m(b.src_ids, b.tgt_in, src_mask=b.src_mask).logits, b.labels),
    )
    # What tformer's translation task trains with: the output layer and the loss at real target positions only
    # (the same loss and gradients; the peers still compute logits at every position).
    real_logits = contender(
        "tformer, real-token logits",
        lambda: seq2seq.Seq2SeqTransformer(config),
        lambda m: F.cross_entropy(
            m(b.src_ids, b.tgt_in, src_mask=b.src_mask, tgt_positions=real).logits, real_labels
        ),
    )
    notes = [
        f"seq2seq-train: tformer and torch.nn.Transformer compute the same function (max |logit diff| "
        f"{diff:.1e} with tformer's weights copied in)",
        f"seq2seq-train: every contender drops out embeddings, sub-layer outputs, FFN activations and attention "
        f"weights with p={config.dropout} (tformer on CPU: masks from 16-bit random numbers, see nn/dropout.py)",
        f"seq2seq-train: {1 - tokens / b.labels.numel():.1%} of the target positions are padding; case "
        "'real-token logits' is tformer as its translation task trains, the peers as in case 'train'",
    ]
    yield Group("seq2seq-train", "train", [full_logits, *peers()], notes)
    yield Group("seq2seq-train", "real-token logits", [real_logits, *peers()])


def _gpt_train(settings: Settings) -> Iterator[Group]:
    sizes = settings.sizes
    config = gpt_config(sizes)
    g = torch.Generator().manual_seed(settings.seed)
    ids = torch.randint(0, config.vocab_size, (sizes.gpt_batch, sizes.gpt_len + 1), generator=g)
    inputs, targets = ids[:, :-1].to(settings.device), ids[:, 1:].to(settings.device)  # [B, T] each

    def contender(name: str, make: Callable[[], nn.Module], *, compiled: bool) -> Callable[[], Contender]:
        # The same loss outside the model for both (HF's own would shift the labels and upcast the logits).
        return lambda: _training_contender(
            name,
            _seeded(settings, make),
            lambda m: _token_loss(m(inputs).logits, targets),
            settings=settings,
            tokens=inputs.numel(),
            compiled=compiled,
        )

    modes = [False, True] if settings.compile else [False]
    for compiled in modes:
        suffix = " compiled" if compiled else ""
        builders = [contender(f"tformer{suffix}", lambda: gpt.GPT(config), compiled=compiled)]
        if settings.with_hf:
            builders.append(
                contender(
                    f"HF GPT2LMHeadModel{suffix}",
                    lambda: gpt2_from_config(config, eos_id=EOS_ID),
                    compiled=compiled,
                )
            )
        yield Group("gpt-train", "compiled" if compiled else "eager", builders)


def _expect_new_tokens(name: str, got: list[int], want: int) -> None:
    """The work is equal only if every side generated exactly `want` tokens per sentence."""
    if any(n != want for n in got):
        raise RuntimeError(f"{name} generated {sorted(set(got))} new tokens per sentence instead of {want}")


def _seq2seq_decoding(
    model: nn.Module, src: Tensor, mask: Tensor, *, beam: int, settings: Settings, compiled: bool = False
) -> None:
    n = settings.sizes.new_tokens
    max_length = n if settings.static_cache else None
    state = Seq2SeqState(model, src, mask, max_length=max_length, compile=compiled)
    lengths = dict(batch_size=src.size(0), bos_id=BOS_ID, eos_id=EOS_ID, max_new_tokens=n, min_new_tokens=n)
    if beam == 1:
        hypotheses = greedy_search(state, **lengths)
    else:
        hypotheses = [best[0] for best in beam_search(state, beam_size=beam, length_penalty=1.0, **lengths)]
    _expect_new_tokens("tformer", [len(h.tokens) for h in hypotheses], n)


def _lm_decoding(model: nn.Module, prompts: Tensor, *, new_tokens: int) -> None:
    """tformer's greedy generation from a language model: `tformer generate`'s loop at temperature 0."""
    greedy = SamplingConfig(max_new_tokens=new_tokens, temperature=0.0)
    chosen = list(generate_tokens(model, prompts, config=greedy))  # new_tokens x Long[B]
    _expect_new_tokens("tformer", [len(chosen)] * prompts.size(0), new_tokens)


def _hf_generate(
    model: nn.Module, ids: Tensor, mask: Tensor, *, beam: int, prefix: int, new_tokens: int
) -> None:
    """HF generate forced to `new_tokens` tokens (EOS suppressed until then); `prefix` = positions before them."""
    out = model.generate(
        input_ids=ids,
        attention_mask=mask,
        do_sample=False,
        num_beams=beam,
        max_new_tokens=new_tokens,
        min_new_tokens=new_tokens,
        length_penalty=1.0,
    )
    _expect_new_tokens("HF generate", [out.size(1) - prefix] * out.size(0), new_tokens)


def _generate(settings: Settings) -> Iterator[Group]:
    sizes, device = settings.sizes, settings.device
    n = sizes.new_tokens
    tokens = sizes.sentences * n

    def inference(make: Callable[[], nn.Module]) -> Callable[[], nn.Module]:
        return lambda: _seeded(settings, make).to(settings.dtype).eval()

    config = seq2seq_config(sizes)
    source = make_batch(
        batch=sizes.sentences, src_len=sizes.seq_len, tgt_len=1, vocab=sizes.seq2seq_vocab, seed=settings.seed
    ).to(device)
    src, mask = source.src_ids, source.src_mask  # [B, S] each, about 10% right padding
    tformer_seq2seq = inference(lambda: seq2seq.Seq2SeqTransformer(config))
    marian = inference(lambda: marian_from_config(config, bos_id=BOS_ID, eos_id=EOS_ID))
    # With --compile, tformer also decodes through a compiled decoder step (Seq2SeqState(compile=True)); HF's
    # generate stays as users call it.
    for beam, compiled in itertools.product(
        (1, sizes.beam_size), (False, True) if settings.compile else (False,)
    ):

        def tformer_contender(beam: int = beam, compiled: bool = compiled) -> Contender:
            model = tformer_seq2seq()
            decoding = functools.partial(_seq2seq_decoding, model, src, mask, beam=beam, settings=settings)
            name = "tformer compiled" if compiled else "tformer"
            work = functools.partial(decoding, compiled=compiled)
            return Contender(name, True, work, tokens, eager_step=decoding, compiled=compiled)

        def hf_contender(beam: int = beam) -> Contender:
            model = marian()
            work = functools.partial(_hf_generate, model, src, mask, beam=beam, prefix=1, new_tokens=n)
            return Contender("HF MarianMTModel generate", False, work, tokens)

        builders = [tformer_contender] + ([hf_contender] if settings.with_hf else [])
        case = "seq2seq greedy" if beam == 1 else f"seq2seq beam {beam}"
        yield Group("generate", f"{case}, compiled" if compiled else case, builders)

    lm_config = gpt_config(sizes)
    g = torch.Generator().manual_seed(settings.seed)
    prompts = torch.randint(0, lm_config.vocab_size, (sizes.sentences, sizes.prompt_len), generator=g).to(
        device
    )

    def tformer_lm() -> Contender:
        model = inference(lambda: gpt.GPT(lm_config))()
        return Contender(
            "tformer", True, functools.partial(_lm_decoding, model, prompts, new_tokens=n), tokens
        )

    def hf_lm() -> Contender:
        model = inference(lambda: gpt2_from_config(lm_config, eos_id=EOS_ID))()
        ones = torch.ones_like(prompts)
        work = functools.partial(
            _hf_generate, model, prompts, ones, beam=1, prefix=sizes.prompt_len, new_tokens=n
        )
        return Contender("HF GPT2LMHeadModel generate", False, work, tokens)

    yield Group("generate", "gpt greedy", [tformer_lm] + ([hf_lm] if settings.with_hf else []))
