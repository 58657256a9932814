"""timm ``sknet.py``: ``SelectiveKernelBasic`` and ``SelectiveKernelBottleneck`` (skresnet18/34/50, skresnext50).

| block | post | mid |
|---|---|---|
| SelectiveKernelBasic | ``se`` (timm's) after ``conv2`` (ConvNormAct, no act) | ``attn_mid`` after the selective-kernel ``conv1`` |
| SelectiveKernelBottleneck | ``se`` after ``conv3`` | ``attn_mid`` after the selective-kernel ``conv2`` |
"""

from typing import TYPE_CHECKING, Optional

import torch
from timm.models.sknet import SelectiveKernelBasic, SelectiveKernelBottleneck
from torch import nn

from ..adapter import BlockAdapter, Slot, conv_in, conv_out, register_adapter

__all__ = ["SelectiveKernelBasicSlots", "SelectiveKernelBottleneckSlots"]


class SelectiveKernelBasicSlots(SelectiveKernelBasic):
    """timm SelectiveKernelBasic with ``attn_mid`` after ``conv1``."""

    if TYPE_CHECKING:
        attn_mid: Optional[nn.Module]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x
        x = self.conv1(x)
        attn_mid = self.attn_mid
        if attn_mid is not None:
            x = attn_mid(x)
        x = self.conv2(x)
        if self.se is not None:
            x = self.se(x)
        if self.drop_path is not None:
            x = self.drop_path(x)
        if self.downsample is not None:
            shortcut = self.downsample(shortcut)
        return self.act(x + shortcut)


class SelectiveKernelBottleneckSlots(SelectiveKernelBottleneck):
    """timm SelectiveKernelBottleneck with ``attn_mid`` after ``conv2``."""

    if TYPE_CHECKING:
        attn_mid: Optional[nn.Module]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x
        x = self.conv2(self.conv1(x))
        attn_mid = self.attn_mid
        if attn_mid is not None:
            x = attn_mid(x)
        x = self.conv3(x)
        if self.se is not None:
            x = self.se(x)
        if self.drop_path is not None:
            x = self.drop_path(x)
        if self.downsample is not None:
            shortcut = self.downsample(shortcut)
        return self.act(x + shortcut)


register_adapter(
    BlockAdapter(
        SelectiveKernelBasic,
        post=Slot("se", conv_out("conv2"), native=True),
        mid=Slot("attn_mid", conv_in("conv2")),
        slotted=SelectiveKernelBasicSlots,
    )
)
register_adapter(
    BlockAdapter(
        SelectiveKernelBottleneck,
        post=Slot("se", conv_out("conv3"), native=True),
        mid=Slot("attn_mid", conv_in("conv3")),
        slotted=SelectiveKernelBottleneckSlots,
    )
)
