"""Stages of any timm model, from timm's own structure: per-stage rows that add up to the model's total.

| model | stages (in forward order) |
|---|---|
| residual blocks in two or more top-level children (ResNet's ``layer1`` ... ``layer4``, HRNet's ``layer1``, ``stage2`` ..., DLA's ``level2`` ...) | ``stem``, each of those children, the children between them as they are, ``head`` |
| other timm models (``feature_info``) | each top-level child, containers of stage modules split down to them |
| any other ``nn.Module`` | each top-level child |

Residual stages: ``stem`` is every child before the first that holds residual blocks
(``salient_timm.find_residual_blocks``); ``head`` is ``global_pool``, ``fc``, ``head``, ``head_drop`` and
``classifier`` after the last. timm's ``feature_info`` names the stage modules: a ViT reads ``patch_embed``, ``blocks.0`` ...
``blocks.11``, ``norm``, ``head``; a ConvNeXt ``stem``, ``stages.0`` ... ``stages.3``, ``head``.

Each stage lists the modules it is made of; together they partition the model's children, so their counts add
up to the total except for ops the root's own forward issues (e.g. ViT's position embedding add), which reports
list as a row of their own.
"""

from typing import List, Set, Tuple

from torch import nn

from salient_timm import find_residual_blocks

__all__ = ["HEAD_CHILDREN", "model_stages"]

HEAD_CHILDREN = frozenset({"global_pool", "fc", "head", "head_drop", "classifier"})  # timm's and torchvision's heads


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
    holders = {block.name.split(".")[0] for block in find_residual_blocks(model)}
    if len(holders) >= 2:  # residual stages at the top level: stem, the stages (and what lies between), head
        first = min(children.index(h) for h in holders)
        last = max(children.index(h) for h in holders)
        rows: List[Tuple[str, List[str]]] = [("stem", children[:first])] if first else []
        rows += [(name, [name]) for name in children[first : last + 1]]
        after = children[last + 1 :]
        rows += [(name, [name]) for name in after if name not in HEAD_CHILDREN]
        head = [name for name in after if name in HEAD_CHILDREN]
        return rows + ([("head", head)] if head else [])
    return [(name, [name]) for name in _split(model, "", _feature_modules(model))]
