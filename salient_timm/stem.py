"""CIFAR stem: the 3x3 stride-1 stem without max-pool used for 32x32 inputs (seed's experiments).

ImageNet ResNets shrink the input 4x before the first stage (7x7/2 conv, 3x3/2 max-pool):
a 32x32 image reaches ``layer4`` at 1x1. The CIFAR stem keeps full resolution there
(32 -> layer1 at 32x32 -> layer4 at 4x4).
"""

from typing import List

from torch import nn

from .surgery import SurgeryError, find_residual_blocks

__all__ = ["convert_to_cifar_stem", "has_cifar_stem"]


def _stem_convs(model: nn.Module) -> List[nn.Conv2d]:
    conv1 = getattr(model, "conv1", None)
    if isinstance(conv1, nn.Conv2d):
        return [conv1]
    if isinstance(conv1, nn.Sequential):
        return [m for m in conv1 if isinstance(m, nn.Conv2d)]
    return []


def has_cifar_stem(model: nn.Module) -> bool:
    """True when the stem keeps full resolution (stride-1 first conv, no stem pooling)."""
    convs = _stem_convs(model)
    return bool(convs) and convs[0].stride == (1, 1) and isinstance(getattr(model, "maxpool", None), nn.Identity)


def convert_to_cifar_stem(model: nn.Module) -> nn.Module:
    """Turn a timm or torchvision ResNet's stem into a CIFAR stem, in place; returns ``model``.

    - single 7x7/2 ``conv1`` -> fresh 3x3/1 conv (same channels, kaiming init as timm's ResNet);
    - deep 3x3 stem (``-d``/``-c`` variants) -> its first conv gets stride 1 (weights kept);
    - ``maxpool`` -> ``nn.Identity``; timm ``feature_info`` reductions are updated.

    Raises ``SurgeryError`` (model untouched) for non-ResNets, exotic stem pools, or a
    model that already has a CIFAR stem.
    """
    convs = _stem_convs(model)
    pool = getattr(model, "maxpool", None)
    if not convs or pool is None or not find_residual_blocks(model):
        raise SurgeryError(
            f"{type(model).__name__} is not a timm/torchvision ResNet: a CIFAR stem needs `conv1` and "
            "`maxpool` stem modules and residual blocks"
        )
    if has_cifar_stem(model):
        raise SurgeryError(f"{type(model).__name__} already has a CIFAR stem (stride-1 conv1, no max-pool)")
    if not isinstance(pool, nn.MaxPool2d):
        raise SurgeryError(
            f"stem pool {type(pool).__name__} is not supported (only nn.MaxPool2d; "
            "replace_stem_pool and anti-aliased stems are not)"
        )
    first = convs[0]
    new_conv = None
    if isinstance(model.conv1, nn.Conv2d):
        new_conv = nn.Conv2d(
            first.in_channels,
            first.out_channels,
            kernel_size=3,
            stride=1,
            padding=1,
            bias=first.bias is not None,
            device=first.weight.device,
            dtype=first.weight.dtype,
        )
        nn.init.kaiming_normal_(new_conv.weight, mode="fan_out", nonlinearity="relu")
    elif first.kernel_size != (3, 3):
        raise SurgeryError(f"deep stem's first conv is {first.kernel_size}, expected 3x3")

    if new_conv is not None:
        model.conv1 = new_conv
    else:
        first.stride = (1, 1)
    model.maxpool = nn.Identity()
    for info in getattr(model, "feature_info", None) or []:
        if isinstance(info, dict) and "reduction" in info:
            info["reduction"] = max(1, info["reduction"] // (2 if info.get("module") == "act1" else 4))
    return model
