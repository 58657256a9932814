"""Plain test helpers (import them as ``from helpers import ...``; conftest.py keeps only fixtures)."""

import torch
from torch import nn

_NORMS = (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm)


@torch.no_grad()
def randomize_norms(model: nn.Module) -> nn.Module:
    """Give every norm layer (BatchNorm and its timm subclasses, GroupNorm, LayerNorm(2d), FrozenBatchNorm2d) a
    non-trivial affine and running statistics, and NF-ResNets' weight-standardised convs and skip gains non-zero
    gains, as trained models have. Zero-initialised last gammas (timm's ``zero_init_last``) would otherwise hide a
    gate placed on a branch that outputs zero."""
    for m in model.modules():
        if isinstance(m, _NORMS) or type(m).__name__ in ("FrozenBatchNorm2d", "LayerNorm2d"):
            for name, mean, std in (("weight", 1.0, 0.3), ("bias", 0.0, 0.3)):
                t = getattr(m, name, None)
                if isinstance(t, torch.Tensor):
                    t.normal_(mean, std)
            for name in ("running_mean", "running_var"):
                t = getattr(m, name, None)
                if isinstance(t, torch.Tensor):
                    t.normal_(0, 0.5) if name == "running_mean" else t.uniform_(0.5, 2.0)
        gain = getattr(m, "gain", None)  # timm's ScaledStdConv2d
        if isinstance(gain, nn.Parameter):
            gain.normal_(1.0, 0.3)
        skip = getattr(m, "skipinit_gain", None)
        if isinstance(skip, nn.Parameter):
            skip.fill_(0.7)
    return model


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


class FreshAllocations(torch.utils._python_dispatch.TorchDispatchMode):
    """Counts the full-size (``numel``) tensors ops return in new storage (in-place and ``out=`` results reuse one)."""

    def __init__(self, numel: int) -> None:
        super().__init__()
        self.numel, self.count = numel, 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        seen = {
            t.untyped_storage().data_ptr()
            for t in torch.utils._pytree.tree_leaves((args, kwargs))
            if isinstance(t, torch.Tensor)
        }
        out = func(*args, **(kwargs or {}))
        for t in torch.utils._pytree.tree_leaves(out):
            if isinstance(t, torch.Tensor) and t.numel() == self.numel and t.untyped_storage().data_ptr() not in seen:
                self.count += 1
        return out
