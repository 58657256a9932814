"""timm ``dla.py``: ``DlaBasic``, ``DlaBottleneck``, ``DlaBottle2neck`` (dla34 ... dla169, dla60_res2net).

| block | post | mid |
|---|---|---|
| DlaBasic | ``se`` after ``bn2`` | ``attn_mid`` after ``relu(bn1)`` |
| DlaBottleneck | ``se`` after ``bn3`` | ``attn_mid`` after ``relu(bn2)`` |
| DlaBottle2neck | ``se`` after ``bn3`` | ``attn_mid`` after the scales' concatenation |

A DLA block takes its shortcut from the tree that holds it (``forward(x, shortcut, children)``); the gate sits
before that add as in any other block.
"""

from typing import TYPE_CHECKING, List, Optional

import torch
from timm.models.dla import DlaBasic, DlaBottle2neck, DlaBottleneck
from torch import nn

from ..adapter import BlockAdapter, Slot, conv_in, conv_out, register_adapter
from ..slots import gate_epilogue

__all__ = ["DlaBasicSlots", "DlaBottleneckSlots", "DlaBottle2neckSlots"]


class DlaBasicSlots(DlaBasic):
    """timm DlaBasic with ``attn_mid`` and ``se``."""

    if TYPE_CHECKING:
        attn_mid: Optional[nn.Module]
        se: Optional[nn.Module]

    def forward(
        self, x: torch.Tensor, shortcut: Optional[torch.Tensor] = None, children: Optional[List[torch.Tensor]] = None
    ) -> torch.Tensor:
        if shortcut is None:
            shortcut = x
        out = self.relu(self.bn1(self.conv1(x)))
        attn_mid = self.attn_mid
        if attn_mid is not None:
            out = attn_mid(out)
        out = self.conv2(out)
        if not torch.jit.is_scripting():
            fused = gate_epilogue(self.se, out, self.bn2, shortcut, None, self.relu)
            if fused is not None:
                return fused
        out = self.bn2(out)
        se = self.se
        if se is not None:
            out = se(out)
        return self.relu(out + shortcut)


class DlaBottleneckSlots(DlaBottleneck):
    """timm DlaBottleneck with ``attn_mid`` and ``se``."""

    if TYPE_CHECKING:
        attn_mid: Optional[nn.Module]
        se: Optional[nn.Module]

    def forward(
        self, x: torch.Tensor, shortcut: Optional[torch.Tensor] = None, children: Optional[List[torch.Tensor]] = None
    ) -> torch.Tensor:
        if shortcut is None:
            shortcut = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        attn_mid = self.attn_mid
        if attn_mid is not None:
            out = attn_mid(out)
        out = self.conv3(out)
        if not torch.jit.is_scripting():
            fused = gate_epilogue(self.se, out, self.bn3, shortcut, None, self.relu)
            if fused is not None:
                return fused
        out = self.bn3(out)
        se = self.se
        if se is not None:
            out = se(out)
        return self.relu(out + shortcut)


class DlaBottle2neckSlots(DlaBottle2neck):
    """timm DlaBottle2neck with ``attn_mid`` and ``se``."""

    if TYPE_CHECKING:
        attn_mid: Optional[nn.Module]
        se: Optional[nn.Module]

    def forward(
        self, x: torch.Tensor, shortcut: Optional[torch.Tensor] = None, children: Optional[List[torch.Tensor]] = None
    ) -> torch.Tensor:
        if shortcut is None:
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
        out = torch.cat(spo, 1)
        attn_mid = self.attn_mid
        if attn_mid is not None:
            out = attn_mid(out)
        out = self.conv3(out)
        if not torch.jit.is_scripting():
            fused = gate_epilogue(self.se, out, self.bn3, shortcut, None, self.relu)
            if fused is not None:
                return fused
        out = self.bn3(out)
        se = self.se
        if se is not None:
            out = se(out)
        return self.relu(out + shortcut)


register_adapter(
    BlockAdapter(
        DlaBasic,
        post=Slot("se", conv_out("conv2")),
        mid=Slot("attn_mid", conv_in("conv2")),
        slotted=DlaBasicSlots,
    )
)
for _block, _slotted in ((DlaBottleneck, DlaBottleneckSlots), (DlaBottle2neck, DlaBottle2neckSlots)):
    register_adapter(
        BlockAdapter(
            _block,
            post=Slot("se", conv_out("conv3")),
            mid=Slot("attn_mid", conv_in("conv3")),
            slotted=_slotted,
        )
    )
