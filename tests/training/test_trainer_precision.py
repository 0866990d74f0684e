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


def test_auto_compile_is_on_for_cuda_only():
    from tformer.training.train_config import resolve_auto_settings

    auto = TrainConfig(precision="fp32")
    assert auto.compile == "auto"  # the default
    assert resolve_auto_settings(auto, torch.device("cuda")).compile is True
    assert resolve_auto_settings(auto, torch.device("cpu")).compile is False
    trainer = Trainer(torch.nn.Linear(2, 2), _NoTask(), TrainConfig(device="cpu"), out_dir="x", run_config={})
    assert trainer.config.compile is False
    forced = TrainConfig(compile=True, precision="fp32")
    assert resolve_auto_settings(forced, torch.device("cpu")).compile is True  # a switch, not a suggestion


@pytest.mark.parametrize("value", ["yes", 1, None])
def test_compile_must_be_a_bool_or_auto(value):
    with pytest.raises(ValueError, match="TrainConfig.compile=.*true, false or 'auto'"):
        TrainConfig(compile=value)


def test_a_config_file_with_a_bad_compile_value_names_the_choices():
    from tformer.config import from_dict

    with pytest.raises(TypeError, match="'compile': expected bool \\| 'auto', got 'yes'"):
        from_dict(TrainConfig, {"compile": "yes"})
