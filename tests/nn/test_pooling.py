"""Pooling against per-row loops over the real tokens, and the classifier and projection heads against their
formulas written out."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from tformer.nn import (
    AttentionPooling,
    ClassifierHead,
    ClsPooling,
    MeanPooling,
    PoolingKind,
    ProjectionHead,
    make_pooling,
)

B, T, D = 4, 6, 8
LENGTHS = [6, 3, 1, 0]  # a full row, two padded ones and one without any real token


def batch(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    torch.manual_seed(seed)
    x = torch.randn(B, T, D)
    mask = torch.arange(T) < torch.tensor(LENGTHS).unsqueeze(1)  # [B, T], right padding
    return x, mask


def attention_pooling() -> AttentionPooling:
    pool = AttentionPooling(D)
    with torch.no_grad():  # a non-zero query, so the weights are not simply uniform
        pool.query.copy_(torch.randn(D, generator=torch.Generator().manual_seed(1)))
    return pool


def all_kinds():
    return [ClsPooling(), MeanPooling(), attention_pooling()]


def test_mean_pooling_equals_a_loop_over_real_tokens():
    x, mask = batch()
    pooled, weights = MeanPooling()(x, mask)
    for b, n in enumerate(LENGTHS):
        expected = x[b, :n].mean(dim=0) if n else torch.zeros(D)
        torch.testing.assert_close(pooled[b], expected, atol=1e-6, rtol=0)
        expected_w = torch.tensor([1.0 / n if t < n else 0.0 for t in range(T)])
        torch.testing.assert_close(weights[b], expected_w)
    unmasked, weights = MeanPooling()(x)
    torch.testing.assert_close(unmasked, x.mean(dim=1))
    torch.testing.assert_close(weights, torch.full((B, T), 1.0 / T))


def test_cls_pooling_picks_position_zero():
    x, mask = batch()
    pooled, weights = ClsPooling()(x, mask)
    torch.testing.assert_close(pooled[:3], x[:3, 0], atol=0, rtol=0)
    assert pooled[3].abs().max() == 0  # position 0 is padding: no [CLS] token to pick
    assert weights[:3, 0].eq(1).all() and weights[:, 1:].eq(0).all() and weights[3].eq(0).all()
    torch.testing.assert_close(ClsPooling()(x)[0], x[:, 0], atol=0, rtol=0)


def test_attention_pooling_equals_a_loop_over_real_tokens():
    x, mask = batch()
    pool = attention_pooling()
    pooled, weights = pool(x, mask)
    for b, n in enumerate(LENGTHS):
        if n == 0:
            continue
        w = torch.softmax(x[b, :n] @ pool.query.detach() / D**0.5, dim=0)  # [n]
        torch.testing.assert_close(pooled[b], w @ x[b, :n], atol=1e-6, rtol=0)
        torch.testing.assert_close(weights[b, :n], w, atol=1e-6, rtol=0)
        assert weights[b, n:].eq(0).all()


@pytest.mark.parametrize("pool", all_kinds(), ids=lambda p: type(p).__name__)
def test_padding_never_changes_the_pooled_result(pool):
    x, mask = batch()
    pooled, weights = pool(x, mask)
    noisy = x.clone()
    noisy[~mask] = torch.randn(int((~mask).sum()), D) * 100
    noisy[3, 2] = float("inf")  # even inf and NaN in padding stay out
    noisy[2, 4] = float("nan")
    pooled_noisy, weights_noisy = pool(noisy, mask)
    torch.testing.assert_close(pooled_noisy, pooled, atol=0, rtol=0)
    torch.testing.assert_close(weights_noisy, weights, atol=0, rtol=0)
    # the pooled vector is the weighted sum the weights describe
    torch.testing.assert_close(pooled, torch.einsum("bt,btd->bd", weights, x), atol=1e-6, rtol=0)


@pytest.mark.parametrize("pool", all_kinds(), ids=lambda p: type(p).__name__)
def test_a_row_without_tokens_pools_to_finite_zeros_with_finite_gradients(pool):
    x, mask = batch()
    x.requires_grad_(True)
    pooled, weights = pool(x, mask)
    assert torch.isfinite(pooled).all() and torch.isfinite(weights).all()
    assert pooled[3].abs().max() == 0 and weights[3].abs().max() == 0
    pooled.sum().backward()
    assert torch.isfinite(x.grad).all() and x.grad[~mask].abs().max() == 0


def test_make_pooling_builds_each_kind_from_the_enum_or_its_value():
    assert isinstance(make_pooling(PoolingKind.CLS, D), ClsPooling)
    assert isinstance(make_pooling("mean", D), MeanPooling)
    attention = make_pooling("attention", D)
    assert isinstance(attention, AttentionPooling) and attention.query.shape == (D,)
    with pytest.raises(ValueError, match=r"one of 'cls', 'mean', 'attention', got 'max'"):
        make_pooling("max", D)


@pytest.mark.parametrize("pool", all_kinds(), ids=lambda p: type(p).__name__)
def test_bad_inputs_name_the_shapes(pool):
    x, mask = batch()
    with pytest.raises(ValueError, match=r"\[B, T\] = \(4, 6\).*got \(4, 5\)"):
        pool(x, mask[:, :5])
    with pytest.raises(TypeError, match="bool.*torch.int64"):
        pool(x, mask.long())
    with pytest.raises(ValueError, match=r"\[B, T, D\].*got shape \(4, 8\)"):
        pool(x[:, 0])
    with pytest.raises(ValueError, match=r"T >= 1.*\(4, 0, 8\)"):
        pool(x[:, :0])


def test_attention_pooling_starts_as_the_mean():
    x, mask = batch()
    torch.testing.assert_close(AttentionPooling(D)(x, mask)[0], MeanPooling()(x, mask)[0], atol=1e-6, rtol=0)


def test_classifier_head_follows_its_formula():
    torch.manual_seed(2)
    pooled = torch.randn(B, D)
    plain = ClassifierHead(D, 3).eval()
    torch.testing.assert_close(plain(pooled), pooled @ plain.out.weight.T + plain.out.bias)
    assert plain.hidden is None
    pooler = ClassifierHead(D, 3, hidden=5, dropout=0.1).eval()
    h = torch.tanh(pooled @ pooler.hidden.weight.T + pooler.hidden.bias)  # BERT's pooler
    torch.testing.assert_close(pooler(pooled), h @ pooler.out.weight.T + pooler.out.bias)
    assert pooler(pooled).shape == (B, 3)


def test_classifier_head_drops_out_only_in_training():
    head = ClassifierHead(D, 3, dropout=0.5, hidden=5)
    pooled = torch.randn(64, D)
    torch.manual_seed(3)
    assert not torch.equal(head.train()(pooled), head.eval()(pooled))


def test_projection_head_is_a_linear_then_unit_length():
    torch.manual_seed(4)
    x = torch.randn(B, D)
    head = ProjectionHead(D, 5)
    assert head.proj.bias is None
    expected = x @ head.proj.weight.T
    torch.testing.assert_close(head(x), expected / expected.norm(dim=-1, keepdim=True))
    torch.testing.assert_close(head(x).norm(dim=-1), torch.ones(B))
    raw = ProjectionHead(D, 5, bias=True, normalize=False)
    torch.testing.assert_close(raw(x), x @ raw.proj.weight.T + raw.proj.bias)
    assert torch.isfinite(head(torch.zeros(2, D))).all()  # a zero vector stays zero, not NaN


@pytest.mark.parametrize(
    "build, match",
    [
        (lambda: ClassifierHead(D, 0), "n_classes must be an int >= 1, got 0"),
        (lambda: ClassifierHead(D, 3, hidden=0), "hidden must be an int >= 1 or None, got 0"),
        (
            lambda: ClassifierHead(D, 3, dropout=1.5),
            r"dropout probability must be a number in \[0, 1\], got 1.5",
        ),
        (lambda: ProjectionHead(D, 2.0), "d_out must be an int >= 1, got 2.0"),
        (lambda: AttentionPooling(0), "d_model must be an int >= 1, got 0"),
    ],
)
def test_bad_sizes_are_named(build, match):
    with pytest.raises(ValueError, match=match):
        build()


def test_gradients_reach_every_parameter():
    x, mask = batch()
    pool, classifier, projection = attention_pooling(), ClassifierHead(D, 3, hidden=5), ProjectionHead(D, 4)
    pooled, _ = pool(x, mask)
    loss = F.cross_entropy(classifier(pooled), torch.tensor([0, 1, 2, 0])) + projection(pooled).sum() ** 2
    loss.backward()
    for module in (pool, classifier, projection):
        for name, p in module.named_parameters():
            assert p.grad is not None and p.grad.abs().sum() > 0, f"{type(module).__name__}.{name}"
