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


def assert_same_function(module: nn.Module, reference: nn.Module, x: torch.Tensor, grad_atol: float = 1e-12):
    """``module`` computes ``reference``'s function in fp64: equal outputs (1e-12) and, for one random cotangent,
    equal gradients of ``x`` and of every parameter, in order (rtol 1e-10, ``grad_atol``). Returns module's output."""
    out, expected = module(x), reference(x)
    torch.testing.assert_close(out, expected, rtol=1e-12, atol=1e-12)
    cotangent = torch.randn_like(out)
    grads = torch.autograd.grad(out, [x, *module.parameters()], cotangent)
    expected_grads = torch.autograd.grad(expected, [x, *reference.parameters()], cotangent)
    assert len(grads) == len(expected_grads)
    for got, want in zip(grads, expected_grads):
        torch.testing.assert_close(got, want, rtol=1e-10, atol=grad_atol)
    return out
