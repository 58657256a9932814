"""timm ``cspnet.py``: ``BottleneckBlock`` (cspresnet50, cspresnext50, cs3*), ``DarkBlock`` (darknet53,
cspdarknet53, cs3darknet_*), ``EdgeBlock`` (cs3edgenet_x).

| block | post | mid |
|---|---|---|
| BottleneckBlock | ``attn3`` (timm's) after ``conv3`` | ``attn2`` (timm's) after ``conv2`` |
| DarkBlock | ``attn_last`` after ``conv2`` (ConvNormAct with its act) | ``attn`` (timm's) after ``conv1`` |
| EdgeBlock | ``attn_last`` after ``conv2`` (ConvNormAct with its act) | ``attn`` (timm's) after ``conv1`` |

timm builds the native slots as ``nn.Identity`` when unused (its cs3se_* variants fill them). Dark and edge
blocks end their branch with an activation, and the gate follows it, still before the shortcut add.
"""

from typing import TYPE_CHECKING, Optional

import torch
from timm.models.cspnet import BottleneckBlock, DarkBlock, EdgeBlock
from torch import nn

from ..adapter import BlockAdapter, Slot, conv_in, conv_out, register_adapter

__all__ = ["CspDarkBlockSlots", "CspEdgeBlockSlots"]


def _last_gated_forward(self, x: torch.Tensor) -> torch.Tensor:
    shortcut = x
    x = self.conv2(self.attn(self.conv1(x)))
    attn_last = self.attn_last
    if attn_last is not None:
        x = attn_last(x)
    return self.drop_path(x) + shortcut


class CspDarkBlockSlots(DarkBlock):
    """timm cspnet DarkBlock with ``attn_last`` after ``conv2``."""

    if TYPE_CHECKING:
        attn_last: Optional[nn.Module]

    forward = _last_gated_forward


class CspEdgeBlockSlots(EdgeBlock):
    """timm cspnet EdgeBlock with ``attn_last`` after ``conv2``."""

    if TYPE_CHECKING:
        attn_last: Optional[nn.Module]

    forward = _last_gated_forward


register_adapter(
    BlockAdapter(
        BottleneckBlock,
        post=Slot("attn3", conv_out("conv3"), native=True, empty="identity"),
        mid=Slot("attn2", conv_in("conv3"), native=True, empty="identity"),
    )
)
for _block, _slotted in ((DarkBlock, CspDarkBlockSlots), (EdgeBlock, CspEdgeBlockSlots)):
    register_adapter(
        BlockAdapter(
            _block,
            post=Slot("attn_last", conv_out("conv2")),
            mid=Slot("attn", conv_in("conv2"), native=True, empty="identity"),
            slotted=_slotted,
        )
    )
