"""Residual blocks with attention slots, for the block types timm and torchvision ship.

Two slots per block, both ``Optional[nn.Module]`` (``None`` = empty):

- ``se`` ("post"): after the residual branch's last norm, before the shortcut add. This is
  timm's own ``se`` attribute, so the weights sit at timm's keys (``layerX.Y.se.*``).
- ``attn_mid`` ("mid"): after the 3x3 conv's norm + activation (Bottleneck: after ``act2``;
  BasicBlock: after ``act1``), on the narrower ``width`` channels.

Surgery swaps an instance's class to the subclass here (``block.__class__ = ...``): no
module is moved or renamed, so every original state_dict key stays where it was, and the
forward is plain code that FX, TorchScript and ``torch.export`` all see. The registered
``salient_resnet*`` / ``ssa_resnet*`` variants are built from the timm subclasses directly.

Each subclass has timm's deploy hook ``fuse()`` (called by ``timm.utils.reparameterize_model``): it returns
the block folded for inference (``salient_timm.folding``), and warns naming any slot that cannot fold.
"""

import warnings
from typing import TYPE_CHECKING, Any, Dict, Optional, cast

import torch
from timm.models.resnet import BasicBlock as TimmBasicBlock
from timm.models.resnet import Bottleneck as TimmBottleneck
from torch import nn
from torchvision.models.resnet import BasicBlock as TvBasicBlock
from torchvision.models.resnet import Bottleneck as TvBottleneck

from .blocks import SalientBlock, SSABlock
from .folding import fold_residual_block

__all__ = ["SLOT_ATTRS", "SLOTTED_CLASS", "BASE_CLASS", "ensure_slot", "mid_channels", "post_channels"]

SLOT_ATTRS: Dict[str, str] = {"post": "se", "mid": "attn_mid"}


@torch.jit.unused
def _gate_epilogue(
    block: nn.Module, x: torch.Tensor, norm: nn.Module, shortcut: torch.Tensor, act: nn.Module
) -> Optional[torch.Tensor]:
    """``act(downsample(shortcut) + se(norm(x)))`` as one fused pass (``salient_timm.fused``) when ``se`` is a Salient
    or SSA gate whose ``residual_epilogue`` applies, ``act`` a ReLU and drop-path off; else None, nothing has run
    (``norm`` included), and the caller runs its plain ops. ``x``: the branch's last conv output."""
    se, drop_path = getattr(block, "se", None), getattr(block, "drop_path", None)
    if type(se) not in (SalientBlock, SSABlock) or type(act) is not nn.ReLU:
        return None
    if drop_path is not None and not isinstance(drop_path, nn.Identity):
        return None
    downsample = block.downsample
    return cast(SalientBlock, se).residual_epilogue(
        x, lambda: shortcut if downsample is None else cast(nn.Module, downsample)(shortcut), norm
    )


def _fuse(block: nn.Module) -> nn.Module:
    """timm's deploy hook: the block folded for inference; a warning names each slot left as it is."""
    folded, left = fold_residual_block(block)
    for reason in left:
        warnings.warn(f"reparameterize: {reason}; it stays as it is", stacklevel=3)
    return folded


class TimmBasicBlockSlots(TimmBasicBlock):
    """timm BasicBlock with ``attn_mid`` after ``act1``."""

    if TYPE_CHECKING:  # for type checkers only: TorchScript reads class annotations as attribute types
        attn_mid: Optional[nn.Module]
        aa: nn.Module  # timm types it Optional; its blocks always set one (nn.Identity without anti-aliasing)

    def __init__(self, *args: Any, **kwargs: Any) -> None:  # timm's arguments; the mid slot starts empty
        super().__init__(*args, **kwargs)
        self.attn_mid = None

    def fuse(self) -> nn.Module:
        return _fuse(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x
        x = self.act1(self.drop_block(self.bn1(self.conv1(x))))
        attn_mid = self.attn_mid
        if attn_mid is not None:
            x = attn_mid(x)
        x = self.conv2(self.aa(x))
        if not torch.jit.is_scripting():
            fused = _gate_epilogue(self, x, self.bn2, shortcut, self.act2)
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


class TimmBottleneckSlots(TimmBottleneck):
    """timm Bottleneck with ``attn_mid`` after ``act2``."""

    if TYPE_CHECKING:  # for type checkers only: TorchScript reads class annotations as attribute types
        attn_mid: Optional[nn.Module]
        aa: nn.Module  # timm types it Optional; its blocks always set one (nn.Identity without anti-aliasing)

    def __init__(self, *args: Any, **kwargs: Any) -> None:  # timm's arguments; the mid slot starts empty
        super().__init__(*args, **kwargs)
        self.attn_mid = None

    def fuse(self) -> nn.Module:
        return _fuse(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x
        x = self.act1(self.bn1(self.conv1(x)))
        x = self.act2(self.drop_block(self.bn2(self.conv2(x))))
        attn_mid = self.attn_mid
        if attn_mid is not None:
            x = attn_mid(x)
        x = self.conv3(self.aa(x))
        if not torch.jit.is_scripting():
            fused = _gate_epilogue(self, x, self.bn3, shortcut, self.act3)
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


class TvBasicBlockSlots(TvBasicBlock):
    """torchvision BasicBlock with ``attn_mid`` (after the first relu) and ``se`` (after bn2)."""

    def fuse(self) -> nn.Module:
        return _fuse(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x
        out = self.relu(self.bn1(self.conv1(x)))
        if self.attn_mid is not None:
            out = self.attn_mid(out)
        out = self.conv2(out)
        if not torch.jit.is_scripting():
            fused = _gate_epilogue(self, out, self.bn2, x, self.relu)
            if fused is not None:
                return fused
        out = self.bn2(out)
        if self.se is not None:
            out = self.se(out)
        if self.downsample is not None:
            identity = self.downsample(x)
        return self.relu(out + identity)


class TvBottleneckSlots(TvBottleneck):
    """torchvision Bottleneck with ``attn_mid`` (after relu(bn2)) and ``se`` (after bn3)."""

    def fuse(self) -> nn.Module:
        return _fuse(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        if self.attn_mid is not None:
            out = self.attn_mid(out)
        out = self.conv3(out)
        if not torch.jit.is_scripting():
            fused = _gate_epilogue(self, out, self.bn3, x, self.relu)
            if fused is not None:
                return fused
        out = self.bn3(out)
        if self.se is not None:
            out = self.se(out)
        if self.downsample is not None:
            identity = self.downsample(x)
        return self.relu(out + identity)


# Supported base block type -> its slotted subclass (and the reverse).
SLOTTED_CLASS: Dict[type, type] = {
    TimmBasicBlock: TimmBasicBlockSlots,
    TimmBottleneck: TimmBottleneckSlots,
    TvBasicBlock: TvBasicBlockSlots,
    TvBottleneck: TvBottleneckSlots,
}
BASE_CLASS: Dict[type, type] = {v: k for k, v in SLOTTED_CLASS.items()}
_BOTTLENECKS = (TimmBottleneck, TvBottleneck)


def ensure_slot(block: nn.Module) -> None:
    """Make ``block`` a slotted subclass (both slots' forward, and the ``fuse()`` deploy hook), adding both slot
    attributes (``None``) if missing. An unsupported or already slotted block is left as it is."""
    if type(block) not in SLOTTED_CLASS:
        return
    block.__class__ = SLOTTED_CLASS[type(block)]
    for attr in SLOT_ATTRS.values():
        if not hasattr(block, attr):
            setattr(block, attr, None)


def post_channels(block: nn.Module) -> int:
    """Channels at the post slot: the residual branch's output width (planes * expansion)."""
    norm = cast(nn.BatchNorm2d, block.bn3 if isinstance(block, _BOTTLENECKS) else block.bn2)
    return int(norm.num_features)


def mid_channels(block: nn.Module) -> int:
    """Channels at the mid slot: the 3x3 conv's output width (``planes`` for a plain ResNet)."""
    norm = cast(nn.BatchNorm2d, block.bn2 if isinstance(block, _BOTTLENECKS) else block.bn1)
    return int(norm.num_features)
