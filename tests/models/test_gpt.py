"""The decoder-only model: GPT-2's size and outputs, causality, cached generation, init, and learning."""

import math

import pytest
import torch
import torch.nn.functional as F

from tformer.models.gpt import GPT, PRESETS, GPTConfig, PositionalKind, example_inputs, preset_config
from tformer.models.summary import summarize
from tformer.registry import find_model_preset
from tformer.tasks.models import describe_model

V = 97


def tiny(**overrides) -> GPT:
    torch.manual_seed(0)
    return GPT(preset_config("tiny", {"vocab_size": V, "context_length": 32, **overrides})).eval()


def random_ids(b: int, t: int, seed: int = 1) -> torch.Tensor:
    return torch.randint(0, V, (b, t), generator=torch.Generator().manual_seed(seed))


# GPT-2 small has 124,439,808 parameters (tied embeddings; the number HuggingFace reports).
GPT2_PARAMS = 124_439_808


def test_gpt2_preset_has_gpt2_small_parameter_count():
    v, n_pos, d, n_layers, f = 50257, 1024, 768, 12, 3072
    attention = d * 3 * d + 3 * d + d * d + d  # fused qkv + output projection, with biases
    ffn = d * f + f + f * d + d
    layer = attention + ffn + 2 * (2 * d)  # two LayerNorms (weight + bias)
    expected = v * d + n_pos * d + n_layers * layer + 2 * d  # + final LayerNorm; lm_head tied
    model = GPT(preset_config("gpt2"))
    assert sum(p.numel() for p in model.parameters()) == expected == GPT2_PARAMS


def test_info_prints_the_gpt2_parameter_count():
    text = describe_model("gpt2", length=8)
    assert text.startswith("gpt.gpt2")
    assert f"total parameters:     {GPT2_PARAMS:,}" in text


def copy_hf_gpt2(mine: GPT, hf) -> None:
    """HF's Conv1D stores weights as [in, out]: transpose into nn.Linear's [out, in]. c_attn is q|k|v fused,
    in the same order as our qkv_proj."""
    sd = hf.transformer.state_dict()

    def linear(dst, prefix):
        dst.weight.copy_(sd[f"{prefix}.weight"].T)
        dst.bias.copy_(sd[f"{prefix}.bias"])

    def norm(dst, prefix):
        dst.weight.copy_(sd[f"{prefix}.weight"])
        dst.bias.copy_(sd[f"{prefix}.bias"])

    with torch.no_grad():
        mine.token_embedding.weight.copy_(sd["wte.weight"])
        mine.positions.embedding.weight.copy_(sd["wpe.weight"])
        for i, block in enumerate(mine.blocks.layers):
            norm(block.attn_residual.norm, f"h.{i}.ln_1")
            linear(block.self_attn.qkv_proj, f"h.{i}.attn.c_attn")
            linear(block.self_attn.out_proj, f"h.{i}.attn.c_proj")
            norm(block.ff_residual.norm, f"h.{i}.ln_2")
            linear(block.feedforward.linear1, f"h.{i}.mlp.c_fc")
            linear(block.feedforward.linear2, f"h.{i}.mlp.c_proj")
        norm(mine.blocks.norm, "ln_f")


def test_logits_equal_huggingface_gpt2_with_and_without_cache():
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    hf_config = transformers.GPT2Config(
        n_embd=64,
        n_layer=2,
        n_head=4,
        n_positions=32,
        vocab_size=V,
        activation_function="gelu_new",
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
    )
    hf = transformers.GPT2LMHeadModel(hf_config).eval()
    with torch.no_grad():  # weights well away from init, so activations reach the range where variants differ
        for p in hf.parameters():
            p.normal_(0.0, 0.2)
    mine = GPT(GPTConfig(vocab_size=V, context_length=32, d_model=64, n_heads=4, n_layers=2, d_ff=256)).eval()
    copy_hf_gpt2(mine, hf)
    assert hf.lm_head.weight.data_ptr() == hf.transformer.wte.weight.data_ptr()  # HF ties too
    ids = random_ids(2, 10)
    with torch.no_grad():
        torch.testing.assert_close(mine(ids).logits, hf(ids).logits, atol=1e-5, rtol=0)
        # prefill 4 tokens, then one token per step, each side with its own cache
        past = hf(ids[:, :4], use_cache=True).past_key_values
        cache = mine.new_cache()
        mine(ids[:, :4], cache=cache)
        for t in range(4, 10):
            expected = hf(ids[:, t : t + 1], past_key_values=past, use_cache=True)
            past = expected.past_key_values
            got = mine(ids[:, t : t + 1], cache=cache).logits
            torch.testing.assert_close(got, expected.logits, atol=1e-5, rtol=0)


@pytest.mark.parametrize("positional", list(PositionalKind))
def test_logits_never_depend_on_later_tokens(positional):
    model = tiny(positional=positional)
    inputs = {}

    def keep_embeddings(_module, _args, output):
        output.retain_grad()
        inputs["embedded"] = output

    model.token_embedding.register_forward_hook(keep_embeddings)
    t_len = 6
    logits = model(random_ids(1, t_len)).logits
    for t in range(t_len):
        model.zero_grad()
        inputs["embedded"].grad = None
        logits[0, t].sum().backward(retain_graph=True)
        per_position = inputs["embedded"].grad[0].abs().sum(-1)  # [T]
        assert (per_position[t + 1 :] == 0).all(), f"position {t} sees the future"
        assert (per_position[: t + 1] > 0).all(), f"position {t} ignores its past"


@pytest.mark.parametrize("positional", list(PositionalKind))
@pytest.mark.parametrize("max_length", [None, 12])
def test_cached_equals_uncached(positional, max_length):
    model = tiny(positional=positional)
    ids = random_ids(3, 12)
    full = model(ids).logits
    cache = model.new_cache(max_length=max_length)
    out = model(ids[:, :5], cache=cache)
    assert out.cache is cache and cache.length == 5
    steps = [out.logits] + [model(ids[:, t : t + 1], cache=cache).logits for t in range(5, 12)]
    torch.testing.assert_close(torch.cat(steps, dim=1), full, atol=1e-5, rtol=0)


def test_last_only_is_the_last_row_and_too_long_inputs_are_refused():
    model = tiny()
    ids = random_ids(2, 9)
    full = model(ids).logits
    last = model(ids, last_only=True).logits
    assert last.shape == (2, 1, V)
    torch.testing.assert_close(last, full[:, -1:], atol=1e-6, rtol=0)
    with pytest.raises(ValueError, match="33 positions exceed context_length=32"):
        model(random_ids(1, 33))
    cache = model.new_cache()
    model(random_ids(1, 30), cache=cache)
    with pytest.raises(
        ValueError, match="30 cached \\+ 3 new tokens = 33 positions exceed context_length=32"
    ):
        model(random_ids(1, 3), cache=cache)


def test_gpt2_init_scales_the_residual_projections():
    n_layers = 8
    torch.manual_seed(0)
    model = GPT(
        GPTConfig(vocab_size=1000, context_length=16, d_model=256, n_heads=4, n_layers=n_layers, d_ff=1024)
    )
    residual = 0.02 / math.sqrt(2 * n_layers)
    block = model.blocks.layers[3]
    # 65k-260k samples each: the sample std is within ~0.5% of the true one
    for weight, std in [
        (block.self_attn.out_proj.weight, residual),
        (block.feedforward.linear2.weight, residual),
        (block.self_attn.qkv_proj.weight, 0.02),
        (block.feedforward.linear1.weight, 0.02),
        (model.token_embedding.weight, 0.02),
        (model.positions.embedding.weight, 0.02),
    ]:
        assert weight.std().item() == pytest.approx(std, rel=0.03)
        assert abs(weight.mean().item()) < 0.1 * std
    assert block.self_attn.qkv_proj.bias.abs().max() == 0 and block.feedforward.linear2.bias.abs().max() == 0
    assert (block.attn_residual.norm.weight == 1).all()


def test_tied_and_untied_embeddings():
    tied = tiny()
    assert tied.lm_head.weight is tied.token_embedding.weight
    untied = tiny(tie_embeddings=False)
    assert untied.lm_head.weight is not untied.token_embedding.weight
    assert not torch.equal(untied.lm_head.weight, untied.token_embedding.weight)
    n_tied = sum(p.numel() for p in tied.parameters())
    assert sum(p.numel() for p in untied.parameters()) == n_tied + V * 64


def test_tiny_gpt_overfits_one_text():
    text = "to be, or not to be, that is the question: whether 'tis nobler in the mind"
    chars = sorted(set(text))
    ids = torch.tensor([[chars.index(ch) for ch in text]])
    torch.manual_seed(0)
    model = GPT(preset_config("tiny", {"vocab_size": len(chars), "context_length": 128}))
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for _ in range(150):
        logits = model(ids[:, :-1]).logits
        loss = F.cross_entropy(logits.flatten(0, 1), ids[0, 1:])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert loss.item() < 0.1


def test_registry_and_summary():
    family, preset = find_model_preset("gpt2")
    assert family.name == "gpt" and family.build is GPT
    assert find_model_preset("gpt.tiny")[1] is PRESETS["tiny"]
    config = preset_config("tiny", {"vocab_size": V})
    model = family.build(config)
    summary = summarize(model, family.example_inputs(config, length=7), tokens=7)
    assert math.isfinite(summary.forward_flops_per_token) and summary.forward_flops_per_token > 0
    # 2 FLOPs per weight of every matmul (qkv, out, FFN, LM head); Q K^T and weights @ V add 2 * 2 T D per layer
    # where the counter sees the attention kernel (it does not see PyTorch's CPU one).
    d, f, t, n_layers = 64, 256, 7, 2
    linear = 2 * (n_layers * (4 * d * d + 2 * d * f) + d * V)
    assert linear <= summary.forward_flops_per_token <= linear + n_layers * 4 * t * d
    assert sum(r.n_params for r in summary.rows) == summary.total_params
    assert example_inputs(config, length=5)["input_ids"].shape == (1, 5)


@pytest.mark.parametrize(
    "bad,match",
    [
        (dict(d_model=30, n_heads=4), "must divide d_model=30"),
        (dict(n_layers=0), "n_layers must be an int >= 1"),
        (dict(context_length=0), "context_length must be an int >= 1"),
        (dict(n_kv_heads=5), "n_kv_heads=5"),
        (dict(dropout=1.0), "dropout"),
    ],
)
def test_config_errors_name_the_field(bad, match):
    with pytest.raises(ValueError, match=match):
        GPTConfig(**bad)


def test_preset_errors():
    with pytest.raises(ValueError, match="valid: tiny, small, gpt2"):
        preset_config("huge")
    with pytest.raises(ValueError, match="unknown GPTConfig field.*n_layer "):
        preset_config("tiny", {"n_layer": 3})


def test_dropout_sits_where_gpt2_has_it():
    # GPT-2 drops out the embeddings, each attention output and each MLP output (plus attention weights),
    # never the MLP's hidden layer: the same number of dropout layers, with the same probabilities.
    transformers = pytest.importorskip("transformers")
    hf = transformers.GPT2LMHeadModel(
        transformers.GPT2Config(
            n_embd=64, n_layer=3, n_head=4, vocab_size=V, resid_pdrop=0.2, embd_pdrop=0.2, attn_pdrop=0.1
        )
    )
    ours = GPT(
        preset_config("tiny", {"vocab_size": V, "n_layers": 3, "dropout": 0.2, "attention_dropout": 0.1})
    )

    def dropout_ps(model: torch.nn.Module) -> list[float]:
        # attention-weight dropout is a layer in HF and an argument of SDPA in tformer: compare the others
        return sorted(
            m.p for name, m in model.named_modules() if hasattr(m, "p") and "attn_dropout" not in name
        )

    assert [p for p in dropout_ps(ours) if p > 0] == [p for p in dropout_ps(hf) if p > 0] == [0.2] * 7
    assert {m.dropout for m in ours.modules() if hasattr(m, "dropout") and isinstance(m.dropout, float)} == {
        0.1
    }
