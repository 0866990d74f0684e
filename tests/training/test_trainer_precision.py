import pytest
import torch

from tformer.training.trainer import TrainConfig, Trainer


class _NoTask:
    pass


def test_auto_precision_is_fp32_on_cpu():
    trainer = Trainer(
        torch.nn.Linear(2, 2),
        _NoTask(),
        TrainConfig(precision="auto", device="cpu"),
        out_dir="x",
        run_config={},
    )
    assert trainer.config.precision == "fp32"


def test_unknown_precision_names_the_choices():
    with pytest.raises(ValueError, match="precision='fp8'.*'auto'"):
        TrainConfig(precision="fp8")
