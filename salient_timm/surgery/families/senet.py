"""timm ``senet.py`` (the legacy SENet port): ``SEResNetBlock``, ``SEResNetBottleneck``, ``SEBottleneck``,
``SEResNeXtBottleneck`` (legacy_seresnet*, legacy_seresnext*, legacy_senet154).

| block | post | mid |
|---|---|---|
| SEResNetBlock | ``se_module`` (timm's SE, always filled) after ``relu(bn2)`` | ``attn_mid`` after the first ``relu(bn1)`` |
| the three bottlenecks | ``se_module`` after ``bn3`` | ``attn_mid`` after ``relu(bn2)`` |

The post slot holds the network's own SE: another kind goes there only with ``replace=True`` (``none`` leaves an
``nn.Identity``, so the block runs without SE); ``mid`` is free.
"""

from typing import TYPE_CHECKING, Optional

import torch
from timm.models.senet import SEBottleneck, SEResNetBlock, SEResNetBottleneck, SEResNeXtBottleneck
from torch import nn

from ..adapter import BlockAdapter, Slot, conv_in, conv_out, register_adapter
from ..slots import gate_epilogue

__all__ = ["SEResNetBlockSlots", "SEResNetBottleneckSlots", "SEBottleneckSlots", "SEResNeXtBottleneckSlots"]


class SEResNetBlockSlots(SEResNetBlock):
    """timm legacy SEResNetBlock with ``attn_mid`` after ``relu(bn1)``."""

    if TYPE_CHECKING:
        attn_mid: Optional[nn.Module]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x
        out = self.relu(self.bn1(self.conv1(x)))
        attn_mid = self.attn_mid
        if attn_mid is not None:
            out = attn_mid(out)
        out = self.relu(self.bn2(self.conv2(out)))
        if self.downsample is not None:
            shortcut = self.downsample(x)
        return self.relu(self.se_module(out) + shortcut)


def _bottleneck_forward(self, x: torch.Tensor) -> torch.Tensor:
    shortcut = x
    out = self.relu(self.bn1(self.conv1(x)))
    out = self.relu(self.bn2(self.conv2(out)))
    attn_mid = self.attn_mid
    if attn_mid is not None:
        out = attn_mid(out)
    out = self.conv3(out)
    if not torch.jit.is_scripting():
        fused = gate_epilogue(self.se_module, out, self.bn3, x, self.downsample, self.relu)
        if fused is not None:
            return fused
    out = self.bn3(out)
    if self.downsample is not None:
        shortcut = self.downsample(x)
    return self.relu(self.se_module(out) + shortcut)


class SEResNetBottleneckSlots(SEResNetBottleneck):
    """timm legacy SEResNetBottleneck with ``attn_mid`` after ``relu(bn2)``."""

    forward = _bottleneck_forward


class SEBottleneckSlots(SEBottleneck):
    """timm legacy SEBottleneck (SENet-154) with ``attn_mid`` after ``relu(bn2)``."""

    forward = _bottleneck_forward


class SEResNeXtBottleneckSlots(SEResNeXtBottleneck):
    """timm legacy SEResNeXtBottleneck with ``attn_mid`` after ``relu(bn2)``."""

    forward = _bottleneck_forward


register_adapter(
    BlockAdapter(
        SEResNetBlock,
        post=Slot("se_module", conv_out("conv2"), native=True, empty="identity"),
        mid=Slot("attn_mid", conv_in("conv2")),
        slotted=SEResNetBlockSlots,
    )
)
for _block, _slotted in (
    (SEResNetBottleneck, SEResNetBottleneckSlots),
    (SEBottleneck, SEBottleneckSlots),
    (SEResNeXtBottleneck, SEResNeXtBottleneckSlots),
):
    register_adapter(
        BlockAdapter(
            _block,
            post=Slot("se_module", conv_out("conv3"), native=True, empty="identity"),
            mid=Slot("attn_mid", conv_in("conv3")),
            slotted=_slotted,
        )
    )
