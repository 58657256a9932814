"""timm ``byobnet.py`` (and ``byoanet.py``, which builds from it): resnet26t/33ts/50t/51q/61q, resnext26ts,
resnet50_clip (CLIP RN50), gernet, regnetz, se-/eca-/gc- variants, halonet, botnet, lambda_resnet.

| block | post | mid |
|---|---|---|
| BasicBlock | ``attn_last`` (timm's) after ``conv2_kxk`` | ``attn`` (timm's) after ``conv1_kxk`` |
| BottleneckBlock | ``attn_last`` after ``conv3_1x1`` | ``attn`` after ``conv2b_kxk`` |
| DarkBlock | ``attn_last`` after ``conv2_kxk`` | ``attn`` after ``conv1_1x1`` |
| EdgeBlock | ``attn_last`` after ``conv2_1x1`` | ``attn`` after ``conv1_kxk`` |
| SelfAttnBlock | ``attn_last`` after ``conv3_1x1`` | ``attn`` after ``post_attn`` (the self-attention's norm + act) |

timm builds the first four with both attributes (``nn.Identity`` when empty, as its eca_/se_/gc variants fill
them), so surgery fills them and timm's forward runs them; SelfAttnBlock gets a forward with the same two slots.
RepVggBlock and MobileOneBlock are refused: see ``UNSUPPORTED``.
"""

from typing import TYPE_CHECKING

import torch
from timm.models.byobnet import (
    BasicBlock,
    BottleneckBlock,
    DarkBlock,
    EdgeBlock,
    MobileOneBlock,
    RepVggBlock,
    SelfAttnBlock,
)
from torch import nn

from ..adapter import BlockAdapter, Slot, conv_in, conv_out, register_adapter, register_unsupported

__all__ = ["SelfAttnBlockSlots"]


class SelfAttnBlockSlots(SelfAttnBlock):
    """timm byobnet SelfAttnBlock with ``attn`` (after ``post_attn``) and ``attn_last`` (after ``conv3_1x1``)."""

    if TYPE_CHECKING:
        attn: nn.Module
        attn_last: nn.Module

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x
        x = self.conv1_1x1(x)
        x = self.conv2_kxk(x)
        x = self.self_attn(x)
        x = self.post_attn(x)
        x = self.attn(x)
        x = self.conv3_1x1(x)
        x = self.attn_last(x)
        x = self.drop_path(x)
        if self.shortcut is not None:
            x = x + self.shortcut(shortcut)
        return self.act(x)


def _native(post_conv: str) -> dict:
    return dict(
        post=Slot("attn_last", conv_out(post_conv), native=True, empty="identity"),
        mid=Slot("attn", conv_in(post_conv), native=True, empty="identity"),
    )


register_adapter(BlockAdapter(BasicBlock, **_native("conv2_kxk")))
register_adapter(BlockAdapter(BottleneckBlock, **_native("conv3_1x1")))
register_adapter(BlockAdapter(DarkBlock, **_native("conv2_kxk")))
register_adapter(BlockAdapter(EdgeBlock, **_native("conv2_1x1")))
register_adapter(
    BlockAdapter(
        SelfAttnBlock,
        post=Slot("attn_last", conv_out("conv3_1x1"), empty="identity"),
        mid=Slot("attn", conv_in("conv3_1x1"), empty="identity"),
        slotted=SelfAttnBlockSlots,
    )
)
_REPARAM = (
    "a re-parameterisable block: its shortcut is a BatchNorm branch summed with the conv branches, all folded into "
    "one conv for deploy, and timm's own `attn` sits after that sum; a gate before the add would break the fold"
)
register_unsupported(RepVggBlock, _REPARAM)
register_unsupported(MobileOneBlock, _REPARAM)
