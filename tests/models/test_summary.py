import torch
from torch import nn

from tformer.models.seq2seq import Seq2SeqTransformer, example_inputs, preset_config
from tformer.models.summary import summarize


class TwoLinears(nn.Module):
    def __init__(self):
        super().__init__()
        self.first, self.second = nn.Linear(4, 8), nn.Linear(8, 3, bias=False)

    def forward(self, x):
        return self.second(self.first(x))


def test_flops_per_token_equal_the_hand_count():
    summary = summarize(TwoLinears(), {"x": torch.randn(1, 5, 4)}, tokens=5)
    assert summary.forward_flops_per_token == 2 * (4 * 8 + 8 * 3)  # a multiply-add is 2 FLOPs
    assert [(r.name, r.output_shape, r.n_params) for r in summary.rows] == [
        ("first", (1, 5, 8), 40),
        ("second", (1, 5, 3), 24),
    ]


def test_seq2seq_rows_sum_to_the_total_with_tied_weights_counted_once():
    config = preset_config("tiny", src_vocab_size=50, tgt_vocab_size=60)
    model = Seq2SeqTransformer(config)
    summary = summarize(model, example_inputs(config, length=7), tokens=7)
    assert (
        sum(r.n_params for r in summary.rows)
        == summary.total_params
        == sum(p.numel() for p in model.parameters())
    )
    rows = {r.name: r for r in summary.rows}
    assert (
        rows["output_projection"].kind.endswith("shares weights") and rows["output_projection"].n_params == 0
    )
    assert rows["decoder.layers.1"].output_shape == (1, 7, 64)
