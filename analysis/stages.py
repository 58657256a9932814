"""Stages of any timm model, from timm's own structure: per-stage rows that add up to the model's total.

| model | stages (in forward order) |
|---|---|
| ResNet family (top-level ``layer1`` ... ``layer4``) | ``stem``, ``layer1`` ... ``layer4``, ``head`` |
| other timm models (``feature_info``) | each top-level child, containers of stage modules split down to them |
| any other ``nn.Module`` | each top-level child |

ResNet: ``stem`` is every child before the head that is not a layer; ``head`` is ``global_pool``, ``fc``, ``head``
and ``head_drop``. timm's ``feature_info`` names the stage modules: a ViT reads ``patch_embed``, ``blocks.0`` ...
``blocks.11``, ``norm``, ``head``; a ConvNeXt ``stem``, ``stages.0`` ... ``stages.3``, ``head``.

Each stage lists the modules it is made of; together they partition the model's children, so their counts add
up to the total except for ops the root's own forward issues (e.g. ViT's position embedding add), which reports
list as a row of their own.
"""

from typing import Dict, List, Set, Tuple

from torch import nn

__all__ = ["HEAD_CHILDREN", "model_stages"]

HEAD_CHILDREN = frozenset({"global_pool", "fc", "head", "head_drop"})  # a ResNet's head (timm and torchvision)


def _feature_modules(model: nn.Module) -> Set[str]:
    """Module names of timm's ``feature_info`` (a list of dicts on every timm model); empty without one."""
    info = getattr(model, "feature_info", None)
    if not isinstance(info, list):
        return set()
    return {str(f["module"]) for f in info if isinstance(f, dict) and f.get("module")}


def _split(module: nn.Module, prefix: str, stages: Set[str]) -> List[str]:
    """``module``'s children named by their full names, split further where they hold stage modules."""
    names: List[str] = []
    for name, child in module.named_children():
        full = f"{prefix}{name}"
        if full not in stages and any(s.startswith(full + ".") for s in stages):
            names += _split(child, full + ".", stages)
        else:
            names.append(full)
    return names


def model_stages(model: nn.Module) -> List[Tuple[str, List[str]]]:
    """``[(stage label, [module names]), ...]`` in forward order (module docstring's table); the module names
    partition the model's children."""
    children = [name for name, _ in model.named_children()]
    if any(name.startswith("layer") for name in children):  # ResNet family: stem, layer1..4, head
        grouped: Dict[str, List[str]] = {}
        for name in children:
            stage = name if name.startswith("layer") else "head" if name in HEAD_CHILDREN else "stem"
            grouped.setdefault(stage, []).append(name)
        order = ["stem"] + sorted(s for s in grouped if s.startswith("layer")) + ["head"]
        return [(stage, grouped[stage]) for stage in order if stage in grouped]
    return [(name, [name]) for name in _split(model, "", _feature_modules(model))]
