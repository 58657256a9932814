"""timm ``res2net.py``: ``Bottle2neck`` (res2net50_*, res2net101_*, res2next50, res2net50d).

| block | post | mid |
|---|---|---|
| Bottle2neck | ``se`` (timm's) after ``bn3`` | ``attn_mid`` after the scales' concatenation (before ``conv3``) |
"""

from typing import TYPE_CHECKING, Optional

import torch
from timm.models.res2net import Bottle2neck
from torch import nn

from ..adapter import BlockAdapter, Slot, conv_in, conv_out, register_adapter
from ..slots import gate_epilogue

__all__ = ["Bottle2neckSlots"]


class Bottle2neckSlots(Bottle2neck):
    """timm Res2Net Bottle2neck with ``attn_mid`` before ``conv3``."""

    if TYPE_CHECKING:
        attn_mid: Optional[nn.Module]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x
        out = self.relu(self.bn1(self.conv1(x)))
        spx = torch.split(out, self.width, 1)
        spo = []
        sp = spx[0]  # redundant, for torchscript (as timm's)
        for i, (conv, bn) in enumerate(zip(self.convs, self.bns)):
            if i == 0 or self.is_first:
                sp = spx[i]
            else:
                sp = sp + spx[i]
            sp = self.relu(bn(conv(sp)))
            spo.append(sp)
        if self.scale > 1:
            if self.pool is not None:
                spo.append(self.pool(spx[-1]))
            else:
                spo.append(spx[-1])
        out = self.drop_block(torch.cat(spo, 1))
        attn_mid = self.attn_mid
        if attn_mid is not None:
            out = attn_mid(out)
        out = self.conv3(out)
        if not torch.jit.is_scripting():
            fused = gate_epilogue(self.se, out, self.bn3, x, self.downsample, self.relu, self.drop_path)
            if fused is not None:
                return fused
        out = self.bn3(out)
        if self.se is not None:
            out = self.se(out)
        if self.drop_path is not None:
            out = self.drop_path(out)
        if self.downsample is not None:
            shortcut = self.downsample(x)
        return self.relu(out + shortcut)


register_adapter(
    BlockAdapter(
        Bottle2neck,
        post=Slot("se", conv_out("conv3"), native=True),
        mid=Slot("attn_mid", conv_in("conv3")),
        slotted=Bottle2neckSlots,
    )
)
