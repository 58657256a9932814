"""Measuring a model mid-fine-tune leaves every module's train/eval flag as it was (``salient_timm.module_mode``).

Fine-tuning often freezes BatchNorms (``bn.eval()`` inside a training model); a tool that restores only the root's
flag (``model.train(was_training)``) would silently unfreeze them, and the next step would update their statistics.
"""

import pytest
import timm
import torch

import salient_timm  # noqa: F401  (registers the salient variants)
from salient_analysis.counting import count_cost
from salient_analysis.localization import feature_maps
from salient_analysis.maps import gate_variation, localization
from salient_analysis.traffic import count_traffic
from salient_timm.module_mode import training_mode


def _mid_fine_tune():
    model = timm.create_model("salient_resnet18", num_classes=4).train()
    model.bn1.eval()
    model.layer1[0].bn2.eval()
    return model


def _flags(model):
    return {name: m.training for name, m in model.named_modules()}


X = torch.randn(2, 3, 32, 32)
BOXES = torch.tensor([[0.0, 0.0, 16.0, 16.0], [8.0, 8.0, 32.0, 32.0]])
MEASUREMENTS = {
    "count_cost": lambda m: count_cost(m, X.shape),
    "count_traffic train": lambda m: count_traffic(m, X.shape, train=True),
    "count_traffic infer": lambda m: count_traffic(m, X.shape, train=False),
    "gate_variation": lambda m: gate_variation(m, [X]),
    "localization": lambda m: localization(m, X, BOXES),
    "feature_maps": lambda m: feature_maps(m, X, ["layer1", "layer2"]),
}


@pytest.mark.parametrize("measure", MEASUREMENTS)
def test_a_measurement_leaves_frozen_batch_norms_frozen(measure):
    model = _mid_fine_tune()
    before = _flags(model)
    MEASUREMENTS[measure](model)
    assert _flags(model) == before
    assert not model.bn1.training and model.layer1[0].bn1.training


def test_the_flags_come_back_after_an_error_too():
    model = _mid_fine_tune()
    before = _flags(model)
    with pytest.raises(RuntimeError), training_mode(model, False):
        assert not any(_flags(model).values())
        raise RuntimeError("a forward that fails")
    assert _flags(model) == before
