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
import logging
import os
import pickle
import zipfile
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple

import torch
from safetensors import SafetensorError
from timm.models import build_model_with_cfg, generate_default_cfgs, get_arch_pretrained_cfgs, register_model
from timm.models.resnet import ResNet

from .kinds import OUR_KINDS, init_identity
from .stem import convert_to_cifar_stem, has_cifar_stem
from .surgery import attention_modules
from .surgery.families.resnet import TimmBasicBlockSlots, TimmBottleneckSlots
from .weights import CheckpointError, CheckpointNotFoundError, describe_unreadable

__all__ = ["SalientResNet", "Variant", "VARIANTS", "CheckpointError", "fill_attention_keys"]

_logger = logging.getLogger(__name__)


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


def _prefixes(names: List[str]) -> tuple:
    return tuple(f"{n}." for n in names)


def _describe(keys: List[str], limit: int = 6) -> str:
    shown = ", ".join(keys[:limit])
    return f"{shown}, ... ({len(keys)} in all)" if len(keys) > limit else shown


def fill_attention_keys(state_dict: Dict[str, torch.Tensor], model: torch.nn.Module) -> Dict[str, torch.Tensor]:
    """timm ``pretrained_filter_fn``: make a checkpoint fit a model with attention slots, or raise.

    - An attention module none of whose keys the checkpoint has (base ResNet weights, or a slot added
      after training) is set to the identity (``init_identity``) and its keys are filled from the model.
    - A module whose keys are present: only the gate ``scale`` buffer may be missing (checkpoints of
      the seed's own code), and is filled with the model's value (1.0, the seed's gate).
    - Any other missing backbone key, any unexpected key, or a shape mismatch outside the
      classifier raises ``CheckpointError``. Into a CIFAR stem (``has_cifar_stem``) a 7x7 stem
      weight is not loaded (the 3x3 stem keeps its fresh init, with a warning).

    Works for any timm/torchvision ResNet, with or without attention (then it is a strict,
    clearly-erroring loader).
    """
    own = model.state_dict()
    cfg = getattr(model, "pretrained_cfg", None) or {}
    classifier = cfg.get("classifier") or "fc"
    is_classifier = _prefixes([classifier] if isinstance(classifier, str) else list(classifier))
    modules = attention_modules(model)
    attn_keys = [k for k in own if k.startswith(_prefixes([name for name, _ in modules]))]
    fresh = []
    for name, module in modules:
        keys = [k for k in own if k.startswith(f"{name}.")]
        if not any(k in state_dict for k in keys):  # a module the checkpoint does not know: it starts as identity
            init_identity(module)
            fresh.append(name)
            continue
        missing_attn = [k for k in keys if k not in state_dict and not k.endswith(".gate.scale")]
        if missing_attn:
            raise CheckpointError(f"checkpoint has only some of {name}'s weights; missing: {_describe(missing_attn)}")
    if fresh:
        own = model.state_dict()
        _logger.info("checkpoint has no weights for %d attention modules: they start as identity", len(fresh))
    state_dict = dict(state_dict)
    for k in attn_keys:
        state_dict.setdefault(k, own[k])

    missing = [
        k
        for k in own
        if k not in state_dict and not k.startswith(is_classifier) and not k.endswith("num_batches_tracked")
    ]
    unexpected = [k for k in state_dict if k not in own]
    if missing or unexpected:
        parts = ([f"missing backbone keys: {_describe(missing)}"] if missing else []) + (
            [f"unexpected keys: {_describe(unexpected)}"] if unexpected else []
        )
        raise CheckpointError(
            f"checkpoint does not fit {cfg.get('architecture', type(model).__name__)}: {'; '.join(parts)}"
        )

    _check_head(state_dict, own, is_classifier, model, cfg)
    first_conv = f"{cfg.get('first_conv') or 'conv1'}.weight"
    mismatched = []
    for k, v in state_dict.items():
        if k.startswith(is_classifier) or v.shape == own[k].shape:
            continue
        if k == first_conv and has_cifar_stem(model) and v.shape[2:] != own[k].shape[2:]:
            _logger.warning(
                "cifar_stem: checkpoint %s %s does not fit the 3x3 stem %s; keeping its fresh init",
                k,
                tuple(v.shape),
                tuple(own[k].shape),
            )
            state_dict[k] = own[k]
        elif k != first_conv:  # timm adapts the first conv to in_chans itself
            mismatched.append(f"{k} {tuple(v.shape)} vs {tuple(own[k].shape)}")
    if mismatched:
        raise CheckpointError(f"checkpoint shapes do not fit the model: {_describe(mismatched)}")
    return state_dict


def _check_head(
    state_dict: Dict[str, torch.Tensor], own: Dict[str, torch.Tensor], is_classifier: Tuple[str, ...], model, cfg
) -> None:
    """A classifier of another size is dropped by timm only when the model's num_classes differs from its cfg's
    (a new head); when they agree, timm would load it strictly and fail: name the sizes and the fix."""
    heads = [k for k in state_dict if k.startswith(is_classifier) and k in own and k.endswith("weight")]
    if not heads or cfg.get("num_classes") is None or getattr(model, "num_classes", None) != cfg["num_classes"]:
        return
    k = heads[0]
    theirs, ours = state_dict[k].shape, own[k].shape
    if theirs != ours:
        raise CheckpointError(
            f"the checkpoint's head {k} {tuple(theirs)} does not fit the model's {tuple(ours)}: it was trained for "
            f"{theirs[0]} classes; create the model with num_classes={theirs[0]} (and num_classes={theirs[0]} in "
            f"pretrained_cfg_overlay to keep this head), or with another num_classes for a new head"
        )


_READ_ERRORS = (
    SafetensorError,
    pickle.UnpicklingError,
    EOFError,
    zipfile.BadZipFile,
    RuntimeError,
    AttributeError,
    TypeError,
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
            pretrained_filter_fn=fill_attention_keys,
            **dict(spec.arch, block_args=block_args, **kwargs),
        )
    except CheckpointError:
        raise
    except _READ_ERRORS as e:
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
