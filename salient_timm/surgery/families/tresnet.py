"""timm ``tresnet.py``: ``BasicBlock`` and ``Bottleneck`` (tresnet_m/l/xl, tresnet_v2_l).

| block | post | mid |
|---|---|---|
| BasicBlock | ``se`` (timm's SE, stages 1-2) after ``conv2`` | ``attn_mid`` after ``conv1`` |
| Bottleneck | ``attn_last`` after ``conv3`` | ``se`` (timm's SE, stage 3) after ``conv2`` |

TResNet puts its SE at post in basic blocks and at mid in bottlenecks; a filled slot takes another kind only with
``replace=True``.
"""

from typing import TYPE_CHECKING, Optional

import torch
from timm.models.tresnet import BasicBlock, Bottleneck
from torch import nn

from ..adapter import BlockAdapter, Slot, conv_in, conv_out, register_adapter

__all__ = ["TResNetBasicBlockSlots", "TResNetBottleneckSlots"]


class TResNetBasicBlockSlots(BasicBlock):
    """timm TResNet BasicBlock with ``attn_mid`` after ``conv1``."""

    if TYPE_CHECKING:
        attn_mid: Optional[nn.Module]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = self.downsample(x) if self.downsample is not None else x
        out = self.conv1(x)
        attn_mid = self.attn_mid
        if attn_mid is not None:
            out = attn_mid(out)
        out = self.conv2(out)
        if self.se is not None:
            out = self.se(out)
        return self.act(self.drop_path(out) + shortcut)


class TResNetBottleneckSlots(Bottleneck):
    """timm TResNet Bottleneck with ``attn_last`` after ``conv3``."""

    if TYPE_CHECKING:
        attn_last: Optional[nn.Module]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = self.downsample(x) if self.downsample is not None else x
        out = self.conv2(self.conv1(x))
        if self.se is not None:
            out = self.se(out)
        out = self.conv3(out)
        attn_last = self.attn_last
        if attn_last is not None:
            out = attn_last(out)
        return self.act(self.drop_path(out) + shortcut)


register_adapter(
    BlockAdapter(
        BasicBlock,
        post=Slot("se", conv_out("conv2"), native=True),
        mid=Slot("attn_mid", conv_in("conv2")),
        slotted=TResNetBasicBlockSlots,
    )
)
register_adapter(
    BlockAdapter(
        Bottleneck,
        post=Slot("attn_last", conv_out("conv3")),
        mid=Slot("se", conv_in("conv3"), native=True),
        slotted=TResNetBottleneckSlots,
    )
)
