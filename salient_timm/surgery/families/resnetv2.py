"""timm ``resnetv2.py``: ``PreActBasic``, ``PreActBottleneck`` (BiT: resnetv2_50x1_bit, resnetv2_50d_gn/evos...) and
the non-pre-activation ``Bottleneck`` (the ResNet stem of hybrid ViTs).

| block | post | mid |
|---|---|---|
| PreActBasic | ``se`` after ``conv2`` (no norm follows the last conv in a pre-activation block) | ``attn_mid`` after ``norm2`` (the first conv's norm + act) |
| PreActBottleneck | ``se`` after ``conv3`` | ``attn_mid`` after ``norm3`` (the 3x3 conv's norm + act) |
| Bottleneck | ``se`` after ``norm3`` | ``attn_mid`` after ``norm2`` |

In a pre-activation block the next block's ``norm1`` normalises the sum, so the gate sits on the raw conv output:
still the seed's "before the shortcut add", and the only place where it gates the branch alone.
"""

from typing import TYPE_CHECKING, Optional

import torch
from timm.models.resnetv2 import Bottleneck, PreActBasic, PreActBottleneck
from torch import nn

from ..adapter import BlockAdapter, Slot, conv_in, conv_out, register_adapter

__all__ = ["PreActBasicSlots", "PreActBottleneckSlots", "ResNetV2BottleneckSlots"]


class PreActBasicSlots(PreActBasic):
    """timm resnetv2 PreActBasic with ``attn_mid`` and ``se``."""

    if TYPE_CHECKING:
        attn_mid: Optional[nn.Module]
        se: Optional[nn.Module]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x_preact = self.norm1(x)
        shortcut = x
        if self.downsample is not None:
            shortcut = self.downsample(x_preact)
        x = self.norm2(self.conv1(x_preact))
        attn_mid = self.attn_mid
        if attn_mid is not None:
            x = attn_mid(x)
        x = self.conv2(x)
        se = self.se
        if se is not None:
            x = se(x)
        return self.drop_path(x) + shortcut


class PreActBottleneckSlots(PreActBottleneck):
    """timm resnetv2 PreActBottleneck with ``attn_mid`` and ``se``."""

    if TYPE_CHECKING:
        attn_mid: Optional[nn.Module]
        se: Optional[nn.Module]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x_preact = self.norm1(x)
        shortcut = x
        if self.downsample is not None:
            shortcut = self.downsample(x_preact)
        x = self.conv1(x_preact)
        x = self.norm3(self.conv2(self.norm2(x)))
        attn_mid = self.attn_mid
        if attn_mid is not None:
            x = attn_mid(x)
        x = self.conv3(x)
        se = self.se
        if se is not None:
            x = se(x)
        return self.drop_path(x) + shortcut


class ResNetV2BottleneckSlots(Bottleneck):
    """timm resnetv2 Bottleneck (not pre-activation) with ``attn_mid`` and ``se``."""

    if TYPE_CHECKING:
        attn_mid: Optional[nn.Module]
        se: Optional[nn.Module]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x
        if self.downsample is not None:
            shortcut = self.downsample(x)
        x = self.norm2(self.conv2(self.norm1(self.conv1(x))))
        attn_mid = self.attn_mid
        if attn_mid is not None:
            x = attn_mid(x)
        x = self.norm3(self.conv3(x))
        se = self.se
        if se is not None:
            x = se(x)
        return self.act3(self.drop_path(x) + shortcut)


register_adapter(
    BlockAdapter(
        PreActBasic,
        post=Slot("se", conv_out("conv2")),
        mid=Slot("attn_mid", conv_in("conv2")),
        slotted=PreActBasicSlots,
        note="pre-activation: post on the last conv's output",
    )
)
register_adapter(
    BlockAdapter(
        PreActBottleneck,
        post=Slot("se", conv_out("conv3")),
        mid=Slot("attn_mid", conv_in("conv3")),
        slotted=PreActBottleneckSlots,
        note="pre-activation: post on the last conv's output",
    )
)
register_adapter(
    BlockAdapter(
        Bottleneck,
        post=Slot("se", conv_out("conv3")),
        mid=Slot("attn_mid", conv_in("conv3")),
        slotted=ResNetV2BottleneckSlots,
    )
)
