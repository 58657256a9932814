"""The slot mechanism shared by every family: class swap, slot filling, the fused residual epilogue, ``fuse()``.

Surgery swaps a block's class to its row's ``slotted`` subclass (``block.__class__ = ...``): no module is moved or
renamed, so every original state_dict key stays where it was, and the forward is plain code that FX, TorchScript
and ``torch.export`` all see. Native slots are filled with ``setattr``; an emptied slot gets what timm puts there
(``None`` or ``nn.Identity()``).

The slotted forwards of blocks shaped ``act(norm(x) * gate + shortcut)`` with a ReLU (timm's and torchvision's
ResNets, Res2Net, ResNeSt, legacy SE-ResNets, DLA) call ``gate_epilogue``: a Salient or SSA gate there runs the
gate, the shortcut add and the ReLU as one fused function in eager training (``salient_timm.layers._fused_gate``).
Slotted classes with a fold layout have timm's deploy hook ``fuse()`` (called by ``timm.utils.reparameterize_model``).
"""

import warnings
from typing import Optional, cast

import torch
from torch import nn

from ..deploy.fold import fold_residual_block
from ..layers.salient import epilogue_gate
from .adapter import BlockAdapter, adapter_for

__all__ = ["ensure_slots", "set_slot", "gate_epilogue", "fuse_block"]


def ensure_slots(block: nn.Module, adapter: BlockAdapter) -> None:
    """Make ``block`` its row's slotted subclass (if it has one) and give every non-native slot attribute its empty
    value where it is missing. Already slotted blocks are left as they are."""
    if adapter.slotted is not None and type(block) is adapter.block:
        block.__class__ = adapter.slotted
    for slot in (adapter.post, adapter.mid):
        if slot is not None and not slot.native and not hasattr(block, slot.attr):
            setattr(block, slot.attr, slot.empty_value())


def set_slot(block: nn.Module, position: str, module: Optional[nn.Module]) -> None:
    """Put ``module`` in ``block``'s ``position`` slot (``None``: empty it). The block must have a row."""
    adapter = cast(BlockAdapter, adapter_for(block))
    slot = adapter.slot(position)
    assert slot is not None
    ensure_slots(block, adapter)
    setattr(block, slot.attr, module if module is not None else slot.empty_value())


@torch.jit.unused
def gate_epilogue(
    gate: Optional[nn.Module],
    x: torch.Tensor,
    norm: nn.Module,
    shortcut: torch.Tensor,
    downsample: Optional[nn.Module],
    act: nn.Module,
    drop_path: Optional[nn.Module] = None,
) -> Optional[torch.Tensor]:
    """``act(downsample(shortcut) + gate(norm(x)))`` as one fused pass when ``gate`` is a Salient or SSA gate whose
    ``residual_epilogue`` applies, ``act`` a ReLU and drop-path off; else ``None``, nothing has run (``norm`` and
    ``downsample`` included) and the caller runs its plain ops. ``x``: the branch's last conv output."""
    fusable = epilogue_gate(gate, act)
    if fusable is None or (drop_path is not None and not isinstance(drop_path, nn.Identity)):
        return None
    return fusable.residual_epilogue(x, lambda: shortcut if downsample is None else downsample(shortcut), norm)


def fuse_block(block: nn.Module) -> nn.Module:
    """timm's deploy hook: the block folded for inference; a warning names each slot left as it is."""
    adapter = cast(BlockAdapter, adapter_for(block))
    folded, left = fold_residual_block(block, adapter)
    for reason in left:
        warnings.warn(f"reparameterize: {reason}; it stays as it is", stacklevel=3)
    return folded
