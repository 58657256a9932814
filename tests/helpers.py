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
