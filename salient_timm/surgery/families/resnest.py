"""timm ``resnest.py``: ``ResNestBottleneck`` (resnest14d ... resnest269e).

| block | post | mid |
|---|---|---|
| ResNestBottleneck | ``se`` after ``bn3`` | ``attn_mid`` after the split-attention conv2 stage (before ``avd_last``) |

The forward is timm's, including where timm applies ``drop_path`` (to the block's input, before the shortcut).
"""

from typing import TYPE_CHECKING, Optional

import torch
from timm.models.resnest import ResNestBottleneck
from torch import nn

from ..adapter import BlockAdapter, Slot, conv_in, conv_out, register_adapter
from ..slots import gate_epilogue

__all__ = ["ResNestBottleneckSlots"]


class ResNestBottleneckSlots(ResNestBottleneck):
    """timm ResNestBottleneck with ``attn_mid`` and ``se``."""

    if TYPE_CHECKING:
        attn_mid: Optional[nn.Module]
        se: Optional[nn.Module]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x
        out = self.act1(self.bn1(self.conv1(x)))
        if self.avd_first is not None:
            out = self.avd_first(out)
        out = self.act2(self.drop_block(self.bn2(self.conv2(out))))
        attn_mid = self.attn_mid
        if attn_mid is not None:
            out = attn_mid(out)
        if self.avd_last is not None:
            out = self.avd_last(out)
        out = self.conv3(out)
        if not torch.jit.is_scripting():
            fused = gate_epilogue(self.se, out, self.bn3, x, self.downsample, self.act3, self.drop_path)
            if fused is not None:
                return fused
        out = self.bn3(out)
        se = self.se
        if se is not None:
            out = se(out)
        if self.drop_path is not None:
            x = self.drop_path(x)
        if self.downsample is not None:
            shortcut = self.downsample(x)
        return self.act3(out + shortcut)


register_adapter(
    BlockAdapter(
        ResNestBottleneck,
        post=Slot("se", conv_out("conv3")),
        mid=Slot("attn_mid", conv_in("conv3")),
        slotted=ResNestBottleneckSlots,
    )
)
