"""``reparameterize(model)``: a timm or torchvision ResNet (attention slots or not) folded for inference.

| what | folded by |
|---|---|
| each residual block whose row has a fold layout (timm's and torchvision's ResNets): conv + BN pairs, downsample, a Salient gate | ``fold.fold_residual_block`` (1) |
| other residual blocks | their conv + BN pairs inside ``nn.Sequential``s; their gates stay, named in the warning |
| the stem's ``conv1``/``bn1`` (deep stems too), conv + BN pairs inside any ``nn.Sequential`` | here only (2) |
| other modules with timm's ``fuse()`` / ``reparameterize()`` / ``switch_to_deploy()`` hooks | timm |

(1) Also reached through ``timm.utils.reparameterize_model``, which calls the slotted blocks' ``fuse()``.
(2) timm's hooks sit on modules that own both halves of a pair; the stem's halves are children of the model
itself, so ``timm.utils.reparameterize_model`` leaves the stem's conv + BN unfolded (the outputs are the same).

Outputs equal the eval model's to float rounding (fp64: to 1e-12). Slots that cannot fold (SE, SSA, ECA, CBAM, a
Salient gate before a 3x3 conv) stay as they are and are named in one warning.
"""

import copy
import warnings
from typing import List

from timm.utils import reparameterize_model
from torch import nn

from ..surgery import find_residual_blocks
from .fold import ReparameterizeError, fold_conv_bn, fold_residual_block, fold_sequential

__all__ = ["reparameterize", "ReparameterizeError"]


def _set(model: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, child, module)


def _fold_stem(model: nn.Module) -> None:
    """The stem's ``conv1`` (a conv, or a deep stem's Sequential ending in one) followed by ``bn1``."""
    conv, bn = getattr(model, "conv1", None), getattr(model, "bn1", None)
    if conv is None or bn is None:
        return
    holder, name = (conv, str(len(conv) - 1)) if isinstance(conv, nn.Sequential) and len(conv) else (model, "conv1")
    fused = fold_conv_bn(holder._modules[name], bn)
    if fused is not None:
        holder._modules[name] = fused
        model.bn1 = nn.Identity()


def reparameterize(model: nn.Module, inplace: bool = False) -> nn.Module:
    """The deploy form of an eval-mode ``model`` (a copy unless ``inplace``); see the module docstring.

    Raises ``ReparameterizeError`` (nothing changed) if any module is in training mode. Warns once, naming the
    attention slots left as they are. The result is for inference: export it (ONNX, ``torch.export``), script it
    or run it; its state_dict differs from the model's (folded convs carry the gate's channel)."""
    training = [name or "the model" for name, m in model.named_modules() if m.training]
    if training:
        raise ReparameterizeError(
            f"reparameterize needs an eval-mode model ({training[0]} is in training mode; BatchNorm folds with its "
            "running statistics): call model.eval() first"
        )
    model = model if inplace else copy.deepcopy(model)
    left: List[str] = []
    for block in find_residual_blocks(model):
        if block.adapter.fold_layout is None:  # no deploy form: its filled slots stay, named
            left += [
                f"{block.name} {pos} {type(block.slot(pos)).__name__}: {block.adapter.block.__name__} has no fold layout"
                for pos in ("post", "mid")
                if block.slot(pos) is not None
            ]
            continue
        folded, reasons = fold_residual_block(block.module, block.adapter)
        left += [f"{block.name} {reason}" for reason in reasons]
        _set(model, block.name, folded)
    reparameterize_model(model, inplace=True)  # other modules' own timm hooks
    _fold_stem(model)
    for module in list(model.modules()):
        if isinstance(module, nn.Sequential):
            fold_sequential(module)
    if left:
        shown = "; ".join(left[:3]) + (f"; and {len(left) - 3} more" if len(left) > 3 else "")
        warnings.warn(
            f"reparameterize: {len(left)} attention slot(s) cannot fold and stay as they are: {shown}", stacklevel=2
        )
    return model
