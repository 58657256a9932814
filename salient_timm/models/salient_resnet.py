"""timm registrations: ``salient_resnet*`` and ``ssa_resnet*``.

Each variant is a timm ``ResNet`` with an attention module in every residual block's
``se`` slot (the seed's position: after the last norm, before the shortcut add), plus an
optional CIFAR stem (``cifar_stem=True``). Pretrained cfgs are the base architecture's
(``salient_resnet50.a1_in1k`` -> ``resnet50.a1_in1k`` weights): loading base weights fills
the attention keys with an identity start, so the model's output equals the base
ResNet's. A checkpoint missing any backbone key, or carrying keys the model does not
have, raises ``CheckpointError`` instead of loading partially.
"""

import functools
import os
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Dict, Mapping, Optional

import torch
from timm.models import build_model_with_cfg, generate_default_cfgs, get_arch_pretrained_cfgs, register_model
from timm.models.resnet import ResNet

from ..io.weights import CheckpointError, CheckpointNotFoundError, describe_unreadable
from ..layers.create_attn import OUR_KINDS
from ..stem import convert_to_cifar_stem
from ..surgery.families.resnet import TimmBasicBlockSlots, TimmBottleneckSlots
from ._filter import READ_ERRORS, checkpoint_filter_fn

__all__ = ["SalientResNet", "Variant", "VARIANTS", "CheckpointError"]


class SalientResNet(ResNet):
    """timm ``ResNet`` that can swap its ImageNet stem for a CIFAR stem.

    Args:
        cifar_stem: 3x3 stride-1 stem without max-pool (for 32x32 inputs); see ``stem.py``.
        *args, **kwargs: timm ``ResNet`` arguments (``block``, ``layers``, ``block_args``, ...).
    """

    def __init__(self, *args: Any, cifar_stem: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.cifar_stem = cifar_stem
        if cifar_stem:
            convert_to_cifar_stem(self)


@dataclass(frozen=True)
class Variant:
    """A registered variant: base timm architecture, attention kind, and ResNet arguments."""

    base: str
    attn: str
    arch: Mapping[str, Any] = field(default_factory=dict)


_R18 = dict(block=TimmBasicBlockSlots, layers=(2, 2, 2, 2))
_R26 = dict(block=TimmBottleneckSlots, layers=(2, 2, 2, 2))
_R34 = dict(block=TimmBasicBlockSlots, layers=(3, 4, 6, 3))
_R50 = dict(block=TimmBottleneckSlots, layers=(3, 4, 6, 3))
_R101 = dict(block=TimmBottleneckSlots, layers=(3, 4, 23, 3))
_R152 = dict(block=TimmBottleneckSlots, layers=(3, 8, 36, 3))

VARIANTS: Dict[str, Variant] = {
    "salient_resnet18": Variant("resnet18", "salient", _R18),
    "salient_resnet26": Variant("resnet26", "salient", _R26),
    "salient_resnet34": Variant("resnet34", "salient", _R34),
    "salient_resnet50": Variant("resnet50", "salient", _R50),
    "salient_resnet101": Variant("resnet101", "salient", _R101),
    "salient_resnet152": Variant("resnet152", "salient", _R152),
    "salient_resnet50d": Variant("resnet50d", "salient", dict(_R50, stem_width=32, stem_type="deep", avg_down=True)),
    "salient_resnext50_32x4d": Variant("resnext50_32x4d", "salient", dict(_R50, cardinality=32, base_width=4)),
    "salient_wide_resnet50_2": Variant("wide_resnet50_2", "salient", dict(_R50, base_width=128)),
    "ssa_resnet18": Variant("resnet18", "ssa", _R18),
    "ssa_resnet34": Variant("resnet34", "ssa", _R34),
    "ssa_resnet50": Variant("resnet50", "ssa", _R50),
    "ssa_resnet101": Variant("resnet101", "ssa", _R101),
}


def _variant_cfgs(name: str, base: str) -> Dict[str, Any]:
    """The base architecture's pretrained cfgs, re-keyed ``base.tag`` -> ``name.tag`` (same weights)."""
    cfgs = {}
    for key, cfg in get_arch_pretrained_cfgs(base).items():
        tag = key.partition(".")[2]
        cfgs[f"{name}.{tag}" if tag else name] = replace(cfg, architecture=name)
    return cfgs or {name: {"num_classes": 1000, "first_conv": "conv1", "classifier": "fc"}}


default_cfgs = generate_default_cfgs(
    {key: cfg for name, v in VARIANTS.items() for key, cfg in _variant_cfgs(name, v.base).items()}
)


def _create(
    variant: str, pretrained: bool = False, attn_kwargs: Optional[Dict[str, Any]] = None, **kwargs: Any
) -> SalientResNet:
    """Build ``variant``; ``attn_kwargs`` go to every attention block (e.g. ``dict(impl="conv")``),
    and a ``block_args`` entry of the caller's overrides ours (``attn_layer`` included)."""
    spec = VARIANTS[variant]
    attn_layer: Callable[..., torch.nn.Module] = OUR_KINDS[spec.attn]
    if attn_kwargs:
        attn_layer = functools.partial(attn_layer, **attn_kwargs)
    block_args = {"attn_layer": attn_layer, **(kwargs.pop("block_args", None) or {})}
    overlay = kwargs.get("pretrained_cfg_overlay") or {}
    path = overlay.get("file") if pretrained else None
    if path is not None and not os.path.isfile(path):
        raise CheckpointNotFoundError(f"checkpoint file not found: {path}")
    try:
        return build_model_with_cfg(
            SalientResNet,
            variant,
            pretrained,
            pretrained_filter_fn=checkpoint_filter_fn,
            **dict(spec.arch, block_args=block_args, **kwargs),
        )
    except CheckpointError:
        raise
    except READ_ERRORS as e:
        if path is None:
            raise
        raise CheckpointError(describe_unreadable(path, e)) from e


@register_model
def salient_resnet18(pretrained: bool = False, **kwargs: Any) -> SalientResNet:
    """ResNet-18 with a Salient block on every residual block."""
    return _create("salient_resnet18", pretrained, **kwargs)


@register_model
def salient_resnet26(pretrained: bool = False, **kwargs: Any) -> SalientResNet:
    """ResNet-26 (bottleneck) with a Salient block on every residual block."""
    return _create("salient_resnet26", pretrained, **kwargs)


@register_model
def salient_resnet34(pretrained: bool = False, **kwargs: Any) -> SalientResNet:
    """ResNet-34 with a Salient block on every residual block."""
    return _create("salient_resnet34", pretrained, **kwargs)


@register_model
def salient_resnet50(pretrained: bool = False, **kwargs: Any) -> SalientResNet:
    """ResNet-50 with a Salient block on every residual block (the seed's SalientNet50)."""
    return _create("salient_resnet50", pretrained, **kwargs)


@register_model
def salient_resnet101(pretrained: bool = False, **kwargs: Any) -> SalientResNet:
    """ResNet-101 with a Salient block on every residual block."""
    return _create("salient_resnet101", pretrained, **kwargs)


@register_model
def salient_resnet152(pretrained: bool = False, **kwargs: Any) -> SalientResNet:
    """ResNet-152 with a Salient block on every residual block."""
    return _create("salient_resnet152", pretrained, **kwargs)


@register_model
def salient_resnet50d(pretrained: bool = False, **kwargs: Any) -> SalientResNet:
    """ResNet-50-D (deep stem, avg-pool downsample) with a Salient block on every residual block."""
    return _create("salient_resnet50d", pretrained, **kwargs)


@register_model
def salient_resnext50_32x4d(pretrained: bool = False, **kwargs: Any) -> SalientResNet:
    """ResNeXt-50 32x4d with a Salient block on every residual block."""
    return _create("salient_resnext50_32x4d", pretrained, **kwargs)


@register_model
def salient_wide_resnet50_2(pretrained: bool = False, **kwargs: Any) -> SalientResNet:
    """Wide ResNet-50-2 with a Salient block on every residual block."""
    return _create("salient_wide_resnet50_2", pretrained, **kwargs)


@register_model
def ssa_resnet18(pretrained: bool = False, **kwargs: Any) -> SalientResNet:
    """ResNet-18 with a parameter-free SSA block on every residual block."""
    return _create("ssa_resnet18", pretrained, **kwargs)


@register_model
def ssa_resnet34(pretrained: bool = False, **kwargs: Any) -> SalientResNet:
    """ResNet-34 with a parameter-free SSA block on every residual block."""
    return _create("ssa_resnet34", pretrained, **kwargs)


@register_model
def ssa_resnet50(pretrained: bool = False, **kwargs: Any) -> SalientResNet:
    """ResNet-50 with a parameter-free SSA block on every residual block."""
    return _create("ssa_resnet50", pretrained, **kwargs)


@register_model
def ssa_resnet101(pretrained: bool = False, **kwargs: Any) -> SalientResNet:
    """ResNet-101 with a parameter-free SSA block on every residual block."""
    return _create("ssa_resnet101", pretrained, **kwargs)
