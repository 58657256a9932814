"""Shared helpers: deterministic seeds and models with non-trivial BN statistics."""

import pytest
import torch
from torch import nn

import salient_timm  # noqa: F401  (registers the variants)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@torch.no_grad()
def randomize_bn(model: nn.Module) -> nn.Module:
    """Give every BatchNorm non-trivial running stats and affine, as a trained model has.

    Fresh timm ResNets zero the last BN of each block; without this an identity check
    would pass even if the attention output were garbage.
    """
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.normal_(0, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.normal_(1.0, 0.3)
            m.bias.normal_(0, 0.3)
    return model


def n_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
