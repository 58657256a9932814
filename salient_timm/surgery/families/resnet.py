"""timm ``resnet.py``: ``BasicBlock`` and ``Bottleneck`` (resnet*, resnext*, wide_resnet*, -d/-t variants, se-/eca-
resnets, resnetaa*, resnetrs*, and HRNet, which builds its branches from them).

| block | post | mid |
|---|---|---|
| BasicBlock | ``se`` (timm's own attribute) after ``bn2`` | ``attn_mid`` after ``act1`` |
| Bottleneck | ``se`` after ``bn3`` | ``attn_mid`` after ``act2`` |

The registered ``salient_resnet*``/``ssa_resnet*`` variants are built from the slotted subclasses directly.
"""

from typing import TYPE_CHECKING, Any, Optional

import torch
from timm.models.resnet import BasicBlock, Bottleneck
from torch import nn

from ..adapter import BlockAdapter, Slot, conv_in, conv_out, register_adapter
from ..slots import fuse_block, gate_epilogue

__all__ = ["TimmBasicBlockSlots", "TimmBottleneckSlots"]


class TimmBasicBlockSlots(BasicBlock):
    """timm BasicBlock with ``attn_mid`` after ``act1``."""

    if TYPE_CHECKING:  # for type checkers only: TorchScript reads class annotations as attribute types
        attn_mid: Optional[nn.Module]
        aa: nn.Module  # timm types it Optional; its blocks always set one (nn.Identity without anti-aliasing)

    def __init__(self, *args: Any, **kwargs: Any) -> None:  # timm's arguments; the mid slot starts empty
        super().__init__(*args, **kwargs)
        self.attn_mid = None

    def fuse(self) -> nn.Module:
        return fuse_block(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x
        x = self.act1(self.drop_block(self.bn1(self.conv1(x))))
        attn_mid = self.attn_mid
        if attn_mid is not None:
            x = attn_mid(x)
        x = self.conv2(self.aa(x))
        if not torch.jit.is_scripting():
            fused = gate_epilogue(self.se, x, self.bn2, shortcut, self.downsample, self.act2, self.drop_path)
            if fused is not None:
                return fused
        x = self.bn2(x)
        if self.se is not None:
            x = self.se(x)
        if self.drop_path is not None:
            x = self.drop_path(x)
        if self.downsample is not None:
            shortcut = self.downsample(shortcut)
        return self.act2(x + shortcut)


class TimmBottleneckSlots(Bottleneck):
    """timm Bottleneck with ``attn_mid`` after ``act2``."""

    if TYPE_CHECKING:  # for type checkers only: TorchScript reads class annotations as attribute types
        attn_mid: Optional[nn.Module]
        aa: nn.Module

    def __init__(self, *args: Any, **kwargs: Any) -> None:  # timm's arguments; the mid slot starts empty
        super().__init__(*args, **kwargs)
        self.attn_mid = None

    def fuse(self) -> nn.Module:
        return fuse_block(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x
        x = self.act1(self.bn1(self.conv1(x)))
        x = self.act2(self.drop_block(self.bn2(self.conv2(x))))
        attn_mid = self.attn_mid
        if attn_mid is not None:
            x = attn_mid(x)
        x = self.conv3(self.aa(x))
        if not torch.jit.is_scripting():
            fused = gate_epilogue(self.se, x, self.bn3, shortcut, self.downsample, self.act3, self.drop_path)
            if fused is not None:
                return fused
        x = self.bn3(x)
        if self.se is not None:
            x = self.se(x)
        if self.drop_path is not None:
            x = self.drop_path(x)
        if self.downsample is not None:
            shortcut = self.downsample(shortcut)
        return self.act3(x + shortcut)


def _basic_layout(b: Any) -> tuple:
    return [(b.conv1, b.bn1), b.act1, getattr(b, "attn_mid", None), b.aa], b.conv2, b.bn2, b.act2


def _bottleneck_layout(b: Any) -> tuple:
    return (
        [(b.conv1, b.bn1), b.act1, (b.conv2, b.bn2), b.act2, getattr(b, "attn_mid", None), b.aa],
        b.conv3,
        b.bn3,
        b.act3,
    )


register_adapter(
    BlockAdapter(
        BasicBlock,
        post=Slot("se", conv_out("conv2"), native=True),
        mid=Slot("attn_mid", conv_in("conv2")),
        slotted=TimmBasicBlockSlots,
        fold_layout=_basic_layout,
    )
)
register_adapter(
    BlockAdapter(
        Bottleneck,
        post=Slot("se", conv_out("conv3"), native=True),
        mid=Slot("attn_mid", conv_in("conv3")),
        slotted=TimmBottleneckSlots,
        fold_layout=_bottleneck_layout,
    )
)
