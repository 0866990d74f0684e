"""HuggingFace peers with the same dimensions as a tformer config (random init), when transformers is installed.

transformers is imported inside the builders: it is a dev extra, and importing it costs seconds.
"""

from __future__ import annotations

import importlib.util

from torch import nn

from tformer.models.gpt import GPTConfig
from tformer.models.seq2seq import Seq2SeqConfig
from tformer.nn.feedforward import FeedForwardKind
from tformer.nn.positional import PositionalKind


def transformers_version() -> str | None:
    """The installed transformers version, or None when it is not installed."""
    if importlib.util.find_spec("transformers") is None:
        return None
    import transformers

    return transformers.__version__


def marian_from_config(config: Seq2SeqConfig, *, bos_id: int, eos_id: int) -> nn.Module:
    """A randomly initialised MarianMTModel of the same sizes: post-norm, ReLU, sqrt(D)-scaled embeddings,
    sinusoidal positions, one vocabulary shared by source, target and output layer (as the `base` preset).

    Marian starts decoding from `decoder_start_token_id` (our BOS). Its default of forcing EOS as the last
    token is switched off, so that both sides generate exactly the tokens they are asked for.
    """
    if not config.share_embeddings or config.src_vocab_size != config.tgt_vocab_size:
        raise ValueError("the Marian peer needs share_embeddings=True (one vocabulary, as MarianMTModel)")
    if (
        config.feedforward is not FeedForwardKind.RELU
        or config.positional is not PositionalKind.SINUSOIDAL
        or config.n_kv_heads not in (None, config.n_heads)
    ):
        raise ValueError(
            "the Marian peer needs feedforward=relu, positional=sinusoidal and full multi-head attention, got "
            f"{config.feedforward.value}, {config.positional.value}, n_kv_heads={config.n_kv_heads}"
        )
    from transformers import MarianConfig, MarianMTModel

    return MarianMTModel(
        MarianConfig(
            vocab_size=config.src_vocab_size,
            d_model=config.d_model,
            encoder_layers=config.n_encoder_layers,
            decoder_layers=config.n_decoder_layers,
            encoder_attention_heads=config.n_heads,
            decoder_attention_heads=config.n_heads,
            encoder_ffn_dim=config.d_ff,
            decoder_ffn_dim=config.d_ff,
            activation_function="relu",
            dropout=config.dropout,
            attention_dropout=config.attention_dropout,
            activation_dropout=config.dropout,  # tformer's FFN drops out its hidden activations too
            max_position_embeddings=config.max_len,
            scale_embedding=True,
            share_encoder_decoder_embeddings=True,
            tie_word_embeddings=config.tie_output,
            pad_token_id=config.pad_id,
            bos_token_id=bos_id,
            eos_token_id=eos_id,
            decoder_start_token_id=bos_id,
            forced_eos_token_id=None,
        )
    )


def gpt2_from_config(config: GPTConfig, *, eos_id: int) -> nn.Module:
    """A randomly initialised GPT2LMHeadModel of the same sizes (learned positions, tanh-GELU, tied head)."""
    if (
        config.feedforward is not FeedForwardKind.GELU_TANH
        or config.positional is not PositionalKind.LEARNED
        or not config.bias
        or not config.tie_embeddings
        or config.n_kv_heads not in (None, config.n_heads)
    ):
        raise ValueError(
            "the GPT-2 peer needs GPT-2's architecture: gelu_tanh, learned positions, biases, tied embeddings "
            f"and full multi-head attention; got {config}"
        )
    from transformers import GPT2Config, GPT2LMHeadModel

    return GPT2LMHeadModel(
        GPT2Config(
            vocab_size=config.vocab_size,
            n_positions=config.context_length,
            n_embd=config.d_model,
            n_layer=config.n_layers,
            n_head=config.n_heads,
            n_inner=config.d_ff,
            activation_function="gelu_new",  # GPT-2's tanh approximation of GELU
            resid_pdrop=config.dropout,
            embd_pdrop=config.dropout,
            attn_pdrop=config.attention_dropout,
            bos_token_id=eos_id,
            eos_token_id=eos_id,
            pad_token_id=eos_id,
        )
    )
