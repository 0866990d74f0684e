"""The recurrent baselines the Transformer paper argues against: an LSTM encoder-decoder with additive
attention (Bahdanau et al., 2015) and an LSTM language model (Zaremba et al., 2014).

Shape legend: B batch, S source length, T target length, E embedding width, H decoder/LM hidden width,
A attention width (= H), L layers, V vocabulary.

    src ids --Embedding--> bidirectional LSTM (H/2 per direction, packed: padding never enters) --> memory
    memory --masked mean--> tanh(Linear) --> initial decoder (h, c) of every layer
    step t: context_t = additive attention(query = top h_{t-1}, memory)
            h_t = LSTM stack([embed(y_{t-1}); context_t])
            logits_t = Linear(maxout(Linear([h_t; context_t; embed(y_{t-1})])))     (Bahdanau's deep output)

Both models keep their recurrent state in an `LSTMCache` the caller owns (like the Transformer's KV cache), so
greedy search, beam search and generation drive them unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from tformer.checks import check_fraction, check_positive_ints
from tformer.models.outputs import DecoderOutput, EncoderOutput, LMOutput, Seq2SeqOutput, select_positions
from tformer.nn.attention import AdditiveAttention
from tformer.nn.dropout import Dropout
from tformer.nn.heads import apply_lm_head, check_adaptive_softmax, language_model_head
from tformer.nn.masks import padding_mask

_INIT_RANGE = 0.1  # uniform(-0.1, 0.1) for every seq2seq parameter, as Luong et al. 2015 and OpenNMT-py do
_LM_INIT_RANGE = 0.05  # Zaremba et al. 2014, "medium" model: every parameter uniform(-0.05, 0.05)


def _check_sizes(config: object, names: tuple[str, ...]) -> None:
    check_positive_ints(config, *names)
    check_fraction("dropout", config.dropout)


@dataclass(frozen=True)
class LSTMSeq2SeqConfig:
    type: Literal["lstm_attention"] = "lstm_attention"  # a run config's `model.type` picks the model family
    src_vocab_size: int = 8000
    tgt_vocab_size: int = 8000
    d_embed: int = 256
    d_hidden: int = 512  # decoder width; the encoder is bidirectional with d_hidden // 2 per direction
    n_layers: int = 1  # LSTM layers on each side
    dropout: float = 0.3  # on embeddings, between layers, before the output layer
    share_embeddings: bool = False  # one embedding for source and target (needs a joint vocabulary)
    tie_output: bool = False  # the output layer reuses the target embedding (the readout has width d_embed)
    pad_id: int = 0

    def __post_init__(self) -> None:
        _check_sizes(self, ("src_vocab_size", "tgt_vocab_size", "d_embed", "d_hidden", "n_layers"))
        if self.d_hidden % 2:
            raise ValueError(
                f"d_hidden must be even (two encoder directions of d_hidden // 2), got {self.d_hidden}"
            )
        if self.share_embeddings and self.src_vocab_size != self.tgt_vocab_size:
            raise ValueError(
                "share_embeddings needs one joint vocabulary, got "
                f"src_vocab_size={self.src_vocab_size}, tgt_vocab_size={self.tgt_vocab_size}"
            )
        if not 0 <= self.pad_id < min(self.src_vocab_size, self.tgt_vocab_size):
            raise ValueError(f"pad_id must be a valid id of both vocabularies, got {self.pad_id}")


class LSTMCache:
    """Recurrent state of a decoder or language model: what `Seq2SeqState` and `CausalLMState` carry.

    hidden = (h, c), each [L, B, H] (torch.nn.LSTM's layout, batch in dim 1). memory_keys [B, S, A] is the
    attention's projection of the encoder memory, computed at the first decoding step and reused after.
    """

    def __init__(self) -> None:
        self.hidden: tuple[Tensor, Tensor] | None = None
        self.memory_keys: Tensor | None = None
        self._length = 0

    @property
    def length(self) -> int:
        """Tokens consumed so far."""
        return self._length

    def update(self, hidden: tuple[Tensor, Tensor], n_tokens: int) -> None:
        self.hidden = hidden
        self._length += n_tokens

    def reorder(self, indices: Tensor) -> None:
        """Beam reorder: row i becomes old row indices[i]. memory_keys stay: beams of a sentence share them."""
        if self.hidden is not None:
            self.hidden = (self.hidden[0].index_select(1, indices), self.hidden[1].index_select(1, indices))

    def select(self, indices: Tensor) -> None:
        """Gather rows of everything (expand a batch to beams, or drop finished rows)."""
        self.reorder(indices)
        if self.memory_keys is not None:
            self.memory_keys = self.memory_keys.index_select(0, indices)


class LSTMAttentionSeq2Seq(nn.Module):
    def __init__(self, config: LSTMSeq2SeqConfig) -> None:
        super().__init__()
        self.config = c = config
        self.src_embed = nn.Embedding(c.src_vocab_size, c.d_embed, padding_idx=c.pad_id)
        self.tgt_embed = (
            self.src_embed
            if c.share_embeddings
            else nn.Embedding(c.tgt_vocab_size, c.d_embed, padding_idx=c.pad_id)
        )
        self.dropout = Dropout(c.dropout)
        self.encoder = nn.LSTM(
            c.d_embed,
            c.d_hidden // 2,
            num_layers=c.n_layers,
            dropout=c.dropout if c.n_layers > 1 else 0.0,
            batch_first=True,
            bidirectional=True,
        )
        # The decoder starts from the source: mean memory -> every layer's (h, c).
        self.bridge = nn.Linear(c.d_hidden, 2 * c.n_layers * c.d_hidden)
        self.attention = AdditiveAttention(c.d_hidden, c.d_hidden, c.d_hidden)
        self.cells = nn.ModuleList(
            nn.LSTMCell(c.d_embed + c.d_hidden if i == 0 else c.d_hidden, c.d_hidden)
            for i in range(c.n_layers)
        )
        self.readout = nn.Linear(2 * c.d_hidden + c.d_embed, 2 * c.d_embed)  # maxout of pairs -> d_embed
        self.output_projection = nn.Linear(c.d_embed, c.tgt_vocab_size, bias=False)
        self._init_weights()
        if c.tie_output:
            self.output_projection.weight = self.tgt_embed.weight

    def _init_weights(self) -> None:
        for param in self.parameters():
            nn.init.uniform_(param, -_INIT_RANGE, _INIT_RANGE)
        with torch.no_grad():
            for embed in dict.fromkeys((self.src_embed, self.tgt_embed)):
                embed.weight[self.config.pad_id].zero_()

    def encode(self, src_ids: Tensor, src_mask: Tensor | None = None) -> EncoderOutput:
        """src_ids Long[B, S], src_mask Bool[B, S] right-padded (default: ids != pad_id) -> memory [B, S, H].

        A row with no real token gets an all-zero memory, which the decoder's attention never reads."""
        if src_mask is None:
            src_mask = padding_mask(src_ids, self.config.pad_id)
        lengths = src_mask.sum(dim=1)  # [B]
        positions = torch.arange(src_mask.size(1), device=src_mask.device)
        if not torch.equal(src_mask, positions < lengths.unsqueeze(1)):
            raise ValueError("src_mask must be right-padded (True for a prefix of every row, then False)")
        x = self.dropout(self.src_embed(src_ids))  # [B, S] -> [B, S, E]
        # Packing runs the backward direction from each row's own last token, so padding never enters a state.
        # It needs at least one step per row: an empty row runs over its first (padding) position, whose
        # output the mask then zeroes.
        packed = pack_padded_sequence(x, lengths.clamp(min=1).cpu(), batch_first=True, enforce_sorted=False)
        memory, _ = pad_packed_sequence(self.encoder(packed)[0], batch_first=True, total_length=x.size(1))
        memory = memory * src_mask.unsqueeze(-1).to(memory.dtype)
        return EncoderOutput(memory=memory, memory_mask=src_mask)  # memory [B, S, H], zero on padding

    def _initial_state(self, memory: Tensor, memory_mask: Tensor) -> tuple[Tensor, Tensor]:
        """(h, c), each [L, B, H], from the mean of the real memory positions."""
        mask = memory_mask.unsqueeze(-1).to(memory.dtype)  # [B, S, 1]
        mean = (memory * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1)  # [B, H]; 0 for an empty row
        state = torch.tanh(self.bridge(mean))  # [B, 2 * L * H]
        state = state.view(-1, 2, self.config.n_layers, self.config.d_hidden)  # [B, 2, L, H]
        state = state.permute(1, 2, 0, 3)  # [2, L, B, H]
        return state[0].contiguous(), state[1].contiguous()

    def decode(
        self,
        tgt_ids: Tensor,
        *,
        memory: Tensor,
        memory_mask: Tensor,
        cache: LSTMCache | None = None,
    ) -> DecoderOutput:
        """tgt_ids Long[B, T] (only the new tokens when a cache is given); memory [B, S, H].

        One step per target position; with a cache the state continues from it and is written back.
        """
        features = self._decoder_features(tgt_ids, memory=memory, memory_mask=memory_mask, cache=cache)
        return DecoderOutput(logits=self._deep_output(features), cache=cache)

    def _decoder_features(
        self,
        tgt_ids: Tensor,
        *,
        memory: Tensor,
        memory_mask: Tensor,
        cache: LSTMCache | None,
    ) -> Tensor:
        """The recurrence: deep-output inputs [h_t; context_t; embed(y_{t-1})] [B, T, 2H + E]."""
        if tgt_ids.dim() != 2 or tgt_ids.size(1) < 1:
            raise ValueError(f"tgt_ids must be Long[B, T] with T >= 1, got shape {tuple(tgt_ids.shape)}")
        if cache is None or cache.hidden is None:
            h, c = self._initial_state(memory, memory_mask)
            keys = self.attention.memory_proj(memory)  # [B, S, A]
        else:
            h, c = cache.hidden
            keys = cache.memory_keys
        hs, cs = list(h.unbind(0)), list(c.unbind(0))  # L x [B, H]
        embedded = self.dropout(self.tgt_embed(tgt_ids))  # [B, T] -> [B, T, E]
        features = []
        for t in range(tgt_ids.size(1)):
            context, _ = self.attention(hs[-1], memory=memory, memory_keys=keys, memory_mask=memory_mask)
            x = torch.cat([embedded[:, t], context], dim=-1)  # [B, E + H]
            for i, cell in enumerate(self.cells):
                hs[i], cs[i] = cell(x if i == 0 else self.dropout(x), (hs[i], cs[i]))
                x = hs[i]
            features.append(torch.cat([x, context, embedded[:, t]], dim=-1))  # [B, 2H + E]
        if cache is not None:
            cache.memory_keys = keys
            cache.update((torch.stack(hs), torch.stack(cs)), tgt_ids.size(1))
        return torch.stack(features, dim=1)  # [B, T, 2H + E]

    def _deep_output(self, features: Tensor) -> Tensor:
        """[..., 2H + E] -> logits [..., V]: position-wise, so it runs on [B, T, .] and on selected [N, .]."""
        readout = self.readout(features)  # [..., 2E]
        readout = readout.view(*readout.shape[:-1], -1, 2).amax(dim=-1)  # maxout: [..., E, 2] -> [..., E]
        return self.output_projection(self.dropout(readout))  # [..., V]

    def forward(
        self,
        src_ids: Tensor,
        tgt_ids: Tensor,
        *,
        src_mask: Tensor | None = None,
        tgt_positions: Tensor | None = None,
    ) -> Seq2SeqOutput:
        """Teacher forcing: logits [B, T, V] for every target position.

        With tgt_positions Long[N] (flat row-major indices into the B*T target positions, the batch's field of
        that name) the logits are [N, V], one row per listed position: the deep output layer and the output
        projection skip padding. Attention weights are not returned: viz.capture collects them by hooks.
        """
        enc = self.encode(src_ids, src_mask)
        features = self._decoder_features(tgt_ids, memory=enc.memory, memory_mask=enc.memory_mask, cache=None)
        if tgt_positions is not None:
            features = select_positions(features, tgt_positions)  # [B, T, 2H + E] -> [N, 2H + E]
        return Seq2SeqOutput(logits=self._deep_output(features), encoder=enc)

    def new_cache(self, *, max_length: int | None = None) -> LSTMCache:
        """A fresh cache; max_length is accepted for the protocol and ignored (the state has a fixed size)."""
        return LSTMCache()


@dataclass(frozen=True)
class LSTMLMConfig:
    type: Literal["lstm"] = "lstm"
    vocab_size: int = 33280
    d_embed: int = 650
    d_hidden: int = 650
    n_layers: int = 2
    dropout: float = 0.5  # on the embeddings, between layers and before the output layer (Zaremba et al.)
    tie_embeddings: bool = (
        True  # output layer = token embedding (Press & Wolf 2017); needs d_embed == d_hidden
    )
    context_length: int = 1_000_000  # no positional limit; CausalLMState rebuilds the state only past this
    adaptive_softmax_cutoffs: tuple[int, ...] = ()  # as GPTConfig's: () = one softmax over the vocabulary
    adaptive_softmax_div: float = 4.0

    def __post_init__(self) -> None:
        _check_sizes(self, ("vocab_size", "d_embed", "d_hidden", "n_layers", "context_length"))
        if self.adaptive_softmax_cutoffs:  # checked against vocab_size when the model is built: a preset's
            # config holds a placeholder vocabulary until the task fills in its tokenizer's
            check_adaptive_softmax(
                self.adaptive_softmax_cutoffs,
                self.adaptive_softmax_div,
                d_model=self.d_hidden,
                tie_embeddings=self.tie_embeddings,
            )
        if self.tie_embeddings and self.d_embed != self.d_hidden:
            raise ValueError(
                f"tie_embeddings needs d_embed == d_hidden, got d_embed={self.d_embed}, "
                f"d_hidden={self.d_hidden} (set them equal or tie_embeddings=False)"
            )


class LSTMLanguageModel(nn.Module):
    """Embedding -> dropout -> L-layer LSTM -> dropout -> Linear(H, V), the pytorch examples word LM (or an
    adaptive softmax in place of the Linear, for large word vocabularies)."""

    def __init__(self, config: LSTMLMConfig) -> None:
        super().__init__()
        self.config = c = config
        self.token_embedding = nn.Embedding(c.vocab_size, c.d_embed)
        self.dropout = Dropout(c.dropout)
        self.lstm = nn.LSTM(
            c.d_embed,
            c.d_hidden,
            num_layers=c.n_layers,
            dropout=c.dropout if c.n_layers > 1 else 0.0,
            batch_first=True,
        )
        self.lm_head = language_model_head(
            c.d_hidden,
            c.vocab_size,
            bias=True,
            cutoffs=c.adaptive_softmax_cutoffs,
            div_value=c.adaptive_softmax_div,
        )
        for param in self.parameters():
            nn.init.uniform_(param, -_LM_INIT_RANGE, _LM_INIT_RANGE)
        if c.tie_embeddings:  # one matrix maps ids to vectors and back; saves V x H parameters
            self.lm_head.weight = self.token_embedding.weight

    def forward(
        self,
        input_ids: Tensor,
        *,
        cache: LSTMCache | None = None,
        last_only: bool = False,
        targets: Tensor | None = None,
    ) -> LMOutput:
        """input_ids Long[B, T] -> logits [B, T, V] ([B, 1, V] with last_only). With a cache the state
        continues from it and the cache (returned in the output) advances by T. targets: as GPT.forward's."""
        if input_ids.dim() != 2:
            raise ValueError(f"input_ids must be Long[B, T], got shape {tuple(input_ids.shape)}")
        x = self.dropout(self.token_embedding(input_ids))  # [B, T] -> [B, T, E]
        x, hidden = self.lstm(x, None if cache is None else cache.hidden)  # x [B, T, H]
        if cache is not None:
            cache.update(hidden, input_ids.size(1))
        if last_only:  # generation reads one row: skip the V x H matmul for all the others
            x = x[:, -1:]  # [B, T, H] -> [B, 1, H]
        logits, target_log_probs = apply_lm_head(self.lm_head, self.dropout(x), targets)
        return LMOutput(logits=logits, cache=cache, target_log_probs=target_log_probs)

    def new_cache(self, *, max_length: int | None = None) -> LSTMCache:
        """A fresh cache; max_length is accepted for the protocol and ignored."""
        return LSTMCache()
