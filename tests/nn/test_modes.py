import pytest
from torch import nn

from tformer.nn.modes import eval_mode


@pytest.mark.parametrize("training", [True, False])
def test_eval_mode_switches_every_submodule_and_restores_the_flag_even_on_error(training: bool) -> None:
    model = nn.Sequential(nn.Linear(2, 2), nn.Dropout(0.5)).train(training)
    with eval_mode(model):
        assert not model.training and not model[1].training
    assert model.training is training and model[1].training is training
    with pytest.raises(RuntimeError, match="boom"), eval_mode(model):
        raise RuntimeError("boom")
    assert model.training is training and model[1].training is training
