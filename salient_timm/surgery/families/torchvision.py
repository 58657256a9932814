"""torchvision ``models/resnet.py``: ``BasicBlock`` and ``Bottleneck`` (resnet*, resnext*, wide_resnet*, and the
backbones of torchvision's detection and segmentation models, ``resnet_fpn_backbone`` with ``FrozenBatchNorm2d``).

| block | post | mid |
|---|---|---|
| BasicBlock | ``se`` after ``bn2`` | ``attn_mid`` after the first ``relu`` |
| Bottleneck | ``se`` after ``bn3`` | ``attn_mid`` after ``relu(bn2)`` |

The attribute names are timm's, so a retrofitted ``torchvision.models.resnet50()`` and ``salient_resnet50`` load
each other's state_dict strictly.
"""

from typing import Any

import torch
from torch import nn
from torchvision.models.resnet import BasicBlock, Bottleneck

from ..adapter import BlockAdapter, Slot, conv_in, conv_out, register_adapter
from ..slots import fuse_block, gate_epilogue

__all__ = ["TvBasicBlockSlots", "TvBottleneckSlots"]


class TvBasicBlockSlots(BasicBlock):
    """torchvision BasicBlock with ``attn_mid`` (after the first relu) and ``se`` (after bn2)."""

    def fuse(self) -> nn.Module:
        return fuse_block(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x
        out = self.relu(self.bn1(self.conv1(x)))
        if self.attn_mid is not None:
            out = self.attn_mid(out)
        out = self.conv2(out)
        if not torch.jit.is_scripting():
            fused = gate_epilogue(self.se, out, self.bn2, x, self.downsample, self.relu)
            if fused is not None:
                return fused
        out = self.bn2(out)
        if self.se is not None:
            out = self.se(out)
        if self.downsample is not None:
            identity = self.downsample(x)
        return self.relu(out + identity)


class TvBottleneckSlots(Bottleneck):
    """torchvision Bottleneck with ``attn_mid`` (after relu(bn2)) and ``se`` (after bn3)."""

    def fuse(self) -> nn.Module:
        return fuse_block(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        if self.attn_mid is not None:
            out = self.attn_mid(out)
        out = self.conv3(out)
        if not torch.jit.is_scripting():
            fused = gate_epilogue(self.se, out, self.bn3, x, self.downsample, self.relu)
            if fused is not None:
                return fused
        out = self.bn3(out)
        if self.se is not None:
            out = self.se(out)
        if self.downsample is not None:
            identity = self.downsample(x)
        return self.relu(out + identity)


def _basic_layout(b: Any) -> tuple:
    return [(b.conv1, b.bn1), b.relu, getattr(b, "attn_mid", None)], b.conv2, b.bn2, b.relu


def _bottleneck_layout(b: Any) -> tuple:
    return [(b.conv1, b.bn1), b.relu, (b.conv2, b.bn2), b.relu, getattr(b, "attn_mid", None)], b.conv3, b.bn3, b.relu


register_adapter(
    BlockAdapter(
        BasicBlock,
        post=Slot("se", conv_out("conv2")),
        mid=Slot("attn_mid", conv_in("conv2")),
        slotted=TvBasicBlockSlots,
        fold_layout=_basic_layout,
    )
)
register_adapter(
    BlockAdapter(
        Bottleneck,
        post=Slot("se", conv_out("conv3")),
        mid=Slot("attn_mid", conv_in("conv3")),
        slotted=TvBottleneckSlots,
        fold_layout=_bottleneck_layout,
    )
)
