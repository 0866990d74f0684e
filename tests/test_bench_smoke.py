"""`tformer bench` cannot rot: every suite runs one tiny step on CPU through the CLI, and what the benchmark
relies on holds: FLOPs as a formula gives them, compiled = eager, static KV cache = dynamic KV cache."""

from __future__ import annotations

import json

import pytest
import torch
from torch import Tensor

from tformer.bench.measure import count_flops
from tformer.bench.suites import SIZES, gpt_config, seq2seq_config
from tformer.cli.main import main
from tformer.decoding import Seq2SeqState, beam_search, greedy_search
from tformer.models.gpt import GPT
from tformer.models.gpt import preset_config as gpt_preset
from tformer.models.seq2seq import Seq2SeqTransformer
from tformer.models.seq2seq import preset_config as seq2seq_preset

PAD, BOS, EOS = 0, 1, 2
NUMBERS = ("steps_per_s", "tokens_per_s", "flops_per_step", "mfu", "median_ms")


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> dict:
    path = tmp_path_factory.mktemp("bench") / "bench.json"
    argv = ["bench", "--device", "cpu", "--size", "tiny", "--steps", "1", "--warmup", "0", "--threads", "1"]
    assert main([*argv, "--static-cache", "--json", str(path)]) == 0
    return json.loads(path.read_text())


def test_every_suite_has_a_row_per_implementation_with_positive_numbers(report):
    rows = {(r["suite"], r["case"], r["implementation"]): r for r in report["rows"]}
    marian, gpt2 = "HF MarianMTModel", "HF GPT2LMHeadModel"
    assert set(rows) == {
        ("seq2seq-train", "train", "tformer"),
        ("seq2seq-train", "train", "torch.nn.Transformer"),
        ("seq2seq-train", "train", marian),
        ("seq2seq-train", "real-token logits", "tformer, real-token logits"),
        ("seq2seq-train", "real-token logits", "torch.nn.Transformer"),
        ("seq2seq-train", "real-token logits", marian),
        ("gpt-train", "eager", "tformer"),
        ("gpt-train", "eager", gpt2),
        ("generate", "seq2seq greedy", "tformer"),
        ("generate", "seq2seq greedy", f"{marian} generate"),
        ("generate", "seq2seq beam 4", "tformer"),
        ("generate", "seq2seq beam 4", f"{marian} generate"),
        ("generate", "gpt greedy", "tformer"),
        ("generate", "gpt greedy", f"{gpt2} generate"),
    }
    for key, row in rows.items():
        assert all(row[name] > 0 for name in NUMBERS), key
        assert row["peak_memory_bytes"] is None, key  # CPU: not measured
        assert (row["tformer_speed_ratio"] is None) == row["implementation"].startswith("tformer"), key
        assert row["tformer_speed_ratio"] is None or row["tformer_speed_ratio"] > 0, key
    assert report["peak_flops"] > 0


def test_tokens_and_ratios_are_what_the_workload_says(report):
    sizes = SIZES["tiny"]
    by_case = {}
    for row in report["rows"]:
        tokens_per_step = row["tokens_per_s"] / row["steps_per_s"]
        by_case.setdefault((row["suite"], row["case"]), []).append((row, tokens_per_step))
    for (suite, _), rows in by_case.items():
        expected = {
            "gpt-train": sizes.gpt_batch * sizes.gpt_len,
            "generate": sizes.sentences * sizes.new_tokens,
        }
        ours = next(row for row, _ in rows if row["implementation"].startswith("tformer"))
        for row, tokens_per_step in rows:
            if suite in expected:
                assert tokens_per_step == pytest.approx(expected[suite])
            if row is not ours:
                assert row["tformer_speed_ratio"] == pytest.approx(ours["tokens_per_s"] / row["tokens_per_s"])
            assert row["mfu"] == pytest.approx(
                row["flops_per_step"] * row["steps_per_s"] / report["peak_flops"]
            )
    # Training peers do the same work as tformer, so their FLOPs are equal, to the last one.
    for case in (("seq2seq-train", "train"), ("gpt-train", "eager")):
        assert len({row["flops_per_step"] for row, _ in by_case[case]}) == 1
    # Logits at the real target positions only skip the output layer's work on the padding.
    full = {row["flops_per_step"] for row, _ in by_case[("seq2seq-train", "train")]}.pop()
    ours, *peers = (row["flops_per_step"] for row, _ in by_case[("seq2seq-train", "real-token logits")])
    assert ours < full and peers == [full, full]


def test_training_flops_match_the_formula(report):
    """Matrix products count 3x the forward (forward, gradient of the input, of the weight); attention
    (two [T, T] products per layer, causal counted in full) 1 + 2.5x: torch's counter charges the backward
    kernel for recomputing the scores."""
    s = SIZES["tiny"]
    c = gpt_config(s)
    tokens = s.gpt_batch * s.gpt_len
    weights = c.n_layers * (4 * c.d_model**2 + 2 * c.d_model * c.d_ff) + c.vocab_size * c.d_model
    attention = c.n_layers * 4 * s.gpt_batch * s.gpt_len**2 * c.d_model
    gpt_flops = 3 * 2 * tokens * weights + 3.5 * attention
    rows = {(r["suite"], r["implementation"]): r["flops_per_step"] for r in report["rows"]}
    assert rows[("gpt-train", "tformer")] == gpt_flops

    m = seq2seq_config(s)
    n = s.train_batch * s.seq_len  # source and target tokens: S = T
    d, f = m.d_model, m.d_ff
    encoder = m.n_encoder_layers * (2 * n * (4 * d * d + 2 * d * f))
    decoder = m.n_decoder_layers * (2 * n * (4 * d * d + 2 * d * f) + 2 * n * 4 * d * d)  # + cross Q/K/V/out
    output = 2 * n * m.tgt_vocab_size * d
    one_attention = 4 * s.train_batch * s.seq_len**2 * d  # [T, T] scores and their product with V
    attention = (m.n_encoder_layers + 2 * m.n_decoder_layers) * one_attention
    assert rows[("seq2seq-train", "tformer")] == 3 * (encoder + decoder + output) + 3.5 * attention


def test_cli_rejects_bad_options(capsys):
    assert main(["bench", "--device", "cpu", "--steps", "0"]) == 2
    assert "steps must be >= 1, got 0" in capsys.readouterr().err
    assert main(["bench", "--device", "tpu"]) == 2
    assert "device must be cpu, cuda or cuda:N, got 'tpu'" in capsys.readouterr().err


def test_flop_counter_counts_cpu_attention():
    q, k, v = (torch.randn(2, 3, 5, 4, requires_grad=True) for _ in range(3))
    forward = 2 * (2 * 2 * 3 * 5 * 5 * 4)  # Q K^T and P V: 2 * B * H * T * T * K each
    assert count_flops(lambda: torch.nn.functional.scaled_dot_product_attention(q, k, v)) == forward


def _tiny_gpt() -> GPT:
    torch.manual_seed(0)
    return GPT(gpt_preset("tiny", {"vocab_size": 97, "context_length": 24}))


def test_compiled_gpt_gives_the_eager_logits_and_gradients():
    """torch.compile's graph capture (dynamo + AOT autograd) must not change the function. The aot_eager
    backend runs the captured graph with eager kernels: inductor's C++ compilation alone takes ~30 s on a
    2-core CPU, over this file's budget; its kernels are checked by the test below where CUDA is present."""
    model = _tiny_gpt()
    ids = torch.randint(0, 97, (2, 24), generator=torch.Generator().manual_seed(1))
    eager = model(ids).logits
    eager.square().mean().backward()
    eager_grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad(set_to_none=True)
    compiled = torch.compile(model, backend="aot_eager")(ids).logits
    compiled.square().mean().backward()
    torch.testing.assert_close(compiled, eager, rtol=1e-5, atol=1e-5)
    for p, grad in zip(model.parameters(), eager_grads, strict=True):
        torch.testing.assert_close(p.grad, grad, rtol=1e-5, atol=1e-6)


@pytest.mark.skipif(
    not torch.cuda.is_available(), reason="inductor on CPU compiles C++ for ~30 s (see above)"
)
def test_inductor_compiled_gpt_gives_the_eager_logits_on_cuda():
    model = _tiny_gpt().cuda().eval()
    ids = torch.randint(0, 97, (2, 24), device="cuda")
    with torch.no_grad():
        torch.testing.assert_close(torch.compile(model)(ids).logits, model(ids).logits, rtol=1e-4, atol=1e-4)


def _seq2seq_model() -> Seq2SeqTransformer:
    """A random tiny model with its EOS row scaled up, so that sentences end at different steps and leave
    the batch (a static cache must survive rows being dropped and beams reordered)."""
    torch.manual_seed(0)
    config = seq2seq_preset(
        "tiny", src_vocab_size=24, tgt_vocab_size=24, share_embeddings=True, tie_output=False
    )
    model = Seq2SeqTransformer(config).eval()
    with torch.no_grad():
        model.output_projection.weight[EOS] *= 3.0
    return model


def test_static_cache_gives_the_dynamic_cache_tokens_for_seq2seq():
    model = _seq2seq_model()
    src = torch.randint(3, 24, (5, 7), generator=torch.Generator().manual_seed(2))
    src[1:, 5:] = PAD  # padded sentences
    args = dict(batch_size=5, bos_id=BOS, eos_id=EOS, max_new_tokens=12)
    results = []
    for max_length in (None, 12):
        greedy = greedy_search(Seq2SeqState(model, src, max_length=max_length), **args)
        beams = beam_search(Seq2SeqState(model, src, max_length=max_length), beam_size=3, n_best=2, **args)
        results.append((greedy, beams))
    (dynamic_greedy, dynamic_beams), (static_greedy, static_beams) = results
    lengths = {len(h.tokens) for h in dynamic_greedy}
    assert len(lengths) > 1  # the sentences did end at different steps
    assert [h.tokens for h in static_greedy] == [h.tokens for h in dynamic_greedy]
    assert [h.log_prob for h in static_greedy] == pytest.approx(
        [h.log_prob for h in dynamic_greedy], abs=1e-5
    )
    assert [[h.tokens for h in n] for n in static_beams] == [[h.tokens for h in n] for n in dynamic_beams]


def _greedy_with_cache(
    model: GPT, prompt: Tensor, *, max_length: int | None, steps: int
) -> tuple[Tensor, Tensor]:
    """Greedy tokens Long[B, steps] and their logits Float[B, steps, V], the prompt fed at once, then 1 by 1."""
    cache = model.new_cache(max_length=max_length)
    logits = model(prompt, cache=cache, last_only=True).logits  # [B, 1, V]
    tokens, all_logits = [], []
    for _ in range(steps):
        all_logits.append(logits[:, -1])
        tokens.append(logits[:, -1].argmax(dim=-1))  # [B]
        logits = model(tokens[-1][:, None], cache=cache, last_only=True).logits
    return torch.stack(tokens, dim=1), torch.stack(all_logits, dim=1)


@torch.no_grad()
def test_static_cache_gives_the_dynamic_cache_tokens_for_gpt():
    model = _tiny_gpt().eval()
    prompt = torch.randint(0, 97, (3, 6), generator=torch.Generator().manual_seed(3))
    dynamic_tokens, dynamic_logits = _greedy_with_cache(model, prompt, max_length=None, steps=16)
    static_tokens, static_logits = _greedy_with_cache(model, prompt, max_length=24, steps=16)
    assert torch.equal(static_tokens, dynamic_tokens)
    torch.testing.assert_close(static_logits, dynamic_logits, rtol=1e-5, atol=1e-5)
    # Both are the uncached model's greedy continuation: the logits of a full forward over prompt + tokens.
    full = model(torch.cat([prompt, dynamic_tokens[:, :-1]], dim=1)).logits[:, prompt.size(1) - 1 :]
    torch.testing.assert_close(dynamic_logits, full, rtol=1e-4, atol=1e-5)


def test_the_printed_table_keeps_long_names_apart(report):
    # A case or implementation longer than its column's default width widens the column instead of running
    # into the next one; every row's implementation starts where the header's does.
    from tformer.bench.report import format_table

    long = dict(
        report["rows"][0], case="seq2seq beam 4, compiled and then some", implementation="tformer compiled"
    )
    lines = format_table(dict(report, rows=[long, *report["rows"]])).splitlines()
    header = next(line for line in lines if line.startswith("suite"))
    rows = [line for line in lines if line.startswith(("seq2seq-train", "gpt-train", "generate"))]
    assert "seq2seq beam 4, compiled and then some tformer compiled" in rows[0]
    column = header.index("implementation")
    assert all(row[column - 1] == " " and row[column] != " " for row in rows)
