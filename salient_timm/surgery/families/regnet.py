"""timm ``regnet.py``: ``Bottleneck`` (regnetx_*, regnety_*) and the pre-activation ``PreBottleneck`` (regnetv_*).

| block | post | mid |
|---|---|---|
| Bottleneck | ``attn_last`` after ``conv3`` (ConvNormAct, no act) | ``se`` (timm's: regnety's SE) after ``conv2`` |
| PreBottleneck | ``attn_last`` after ``conv3`` (pre-activation: no norm follows) | ``se`` after ``conv2`` |

RegNet puts its own attention (regnety's SE) at mid, so a regnety model takes ``mid`` only with ``replace=True``.
"""

from typing import TYPE_CHECKING, Optional

import torch
from timm.models.regnet import Bottleneck, PreBottleneck
from torch import nn

from ..adapter import BlockAdapter, Slot, conv_out, register_adapter

__all__ = ["RegNetBottleneckSlots", "RegNetPreBottleneckSlots"]


class RegNetBottleneckSlots(Bottleneck):
    """timm regnet Bottleneck with ``attn_last`` after ``conv3``."""

    if TYPE_CHECKING:
        attn_last: Optional[nn.Module]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x
        x = self.conv3(self.se(self.conv2(self.conv1(x))))
        attn_last = self.attn_last
        if attn_last is not None:
            x = attn_last(x)
        if self.downsample is not None:
            x = self.drop_path(x) + self.downsample(shortcut)
        return self.act3(x)


class RegNetPreBottleneckSlots(PreBottleneck):
    """timm regnet PreBottleneck with ``attn_last`` after ``conv3``."""

    if TYPE_CHECKING:
        attn_last: Optional[nn.Module]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm1(x)
        shortcut = x
        x = self.conv2(self.norm2(self.conv1(x)))
        x = self.conv3(self.norm3(self.se(x)))
        attn_last = self.attn_last
        if attn_last is not None:
            x = attn_last(x)
        if self.downsample is not None:
            x = self.drop_path(x) + self.downsample(shortcut)
        return x


for _block, _slotted in ((Bottleneck, RegNetBottleneckSlots), (PreBottleneck, RegNetPreBottleneckSlots)):
    register_adapter(
        BlockAdapter(
            _block,
            post=Slot("attn_last", conv_out("conv3")),
            mid=Slot("se", conv_out("conv2"), native=True, empty="identity"),
            slotted=_slotted,
            note="pre-activation: post on the last conv's output" if _block is PreBottleneck else "",
        )
    )
