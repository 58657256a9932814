"""Model surgery: find the residual blocks of a ResNet and hang attention modules on them.

``inject_attention`` is transactional: every new module is built, placed on the block's
device/dtype and (for ``init='identity'``) checked to be an exact identity before the
first block is touched, so any error leaves the model as it was.
"""

from dataclasses import dataclass
from typing import Any, List, Literal, Optional, Tuple

import torch
from torch import nn

from .errors import SalientError
from .kinds import KNOWN_BUILD_ISSUES, AttentionKind, check_attention_kwargs, init_identity, resolve_attention
from .slots import BASE_CLASS, SLOT_ATTRS, SLOTTED_CLASS, ensure_slot, mid_channels, post_channels

__all__ = [
    "SurgeryError",
    "ResidualBlock",
    "find_residual_blocks",
    "attention_modules",
    "inject_attention",
    "POSITIONS",
    "INITS",
]

Position = Literal["post", "mid"]
POSITIONS: Tuple[Position, ...] = ("post", "mid")  # the keys of SLOT_ATTRS
INITS: Tuple[str, ...] = ("default", "identity")


class SurgeryError(SalientError, ValueError):
    """The model cannot take the requested attention (no blocks, occupied slot, bad option)."""


def _qualname(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


SUPPORTED_BLOCKS: Tuple[str, ...] = tuple(_qualname(c) for c in SLOTTED_CLASS)


@dataclass(frozen=True)
class ResidualBlock:
    """A supported residual block: its qualified name in the model and the module itself."""

    name: str
    module: nn.Module

    def channels(self, position: Position) -> int:
        """Width of the tensor at ``position`` (post: C_out = planes*expansion; mid: width)."""
        return post_channels(self.module) if position == "post" else mid_channels(self.module)

    def slot(self, position: Position) -> Optional[nn.Module]:
        """The module in ``position``'s slot, ``None`` if empty."""
        return getattr(self.module, SLOT_ATTRS[position], None)


def _is_supported(module: nn.Module) -> bool:
    return type(module) in SLOTTED_CLASS or type(module) in BASE_CLASS


def find_residual_blocks(model: nn.Module) -> List[ResidualBlock]:
    """Every timm/torchvision BasicBlock or Bottleneck in ``model``, in module order."""
    return [ResidualBlock(name, m) for name, m in model.named_modules() if _is_supported(m)]


def attention_modules(model: nn.Module, position: Optional[Position] = None) -> List[Tuple[str, nn.Module]]:
    """``(qualified name, module)`` of every filled attention slot (one position, or both)."""
    positions: Tuple[Position, ...] = POSITIONS if position is None else (position,)
    found = []
    for block in find_residual_blocks(model):
        for pos in positions:
            module = block.slot(pos)
            if module is not None:
                found.append((f"{block.name}.{SLOT_ATTRS[pos]}", module))
    return found


def _require_blocks(model: nn.Module) -> List[ResidualBlock]:
    blocks = find_residual_blocks(model)
    if not blocks:
        raise SurgeryError(
            f"{type(model).__name__} has no supported residual blocks; supported block types: "
            f"{', '.join(SUPPORTED_BLOCKS)} (timm resnet*/resnext*/wide_resnet*/se-/eca-resnet*, "
            "torchvision resnet*/resnext*/wide_resnet*)"
        )
    return blocks


@torch.no_grad()
def _check_identity(module: nn.Module, channels: int, where: str) -> None:
    """Raise unless ``module(x) == x`` exactly on a random probe (eval mode, restored after).

    On the meta device there are no values to compare: the recipe (``init_identity``) is trusted there,
    and the check runs once the weights are real (tests cover every recipe on CPU)."""
    ref = next(module.parameters(), None)
    if ref is not None and ref.device.type == "meta":
        return
    probe = torch.randn(2, channels, 6, 6, device=getattr(ref, "device", None), dtype=getattr(ref, "dtype", None))
    was_training = module.training
    module.eval()
    try:
        out = module(probe.clone())
    finally:
        module.train(was_training)
    if out.shape != probe.shape or not torch.equal(out, probe):
        raise SurgeryError(f"init='identity' did not give an identity attention module at {where}")


def _build(factory, channels: int, block: nn.Module, init: str, gain: float, where: str, kwargs: dict) -> nn.Module:
    try:
        module = factory(channels, **kwargs)
    except Exception as e:  # surface constructor errors with the place and arguments
        name = getattr(factory, "__name__", type(factory).__name__)
        known = next((hint for kind, hint in KNOWN_BUILD_ISSUES.items() if resolve_attention(kind) is factory), None)
        args = ", ".join(f"{k}={v!r}" for k, v in kwargs.items()) or "default arguments"
        detail = known or f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
        raise SurgeryError(
            f"could not build attention for {where} ({name}, channels={channels}, {args}): {detail}"
        ) from e
    if not isinstance(module, nn.Module):
        raise SurgeryError(f"attention factory returned {type(module).__name__}, not an nn.Module")
    ref = next(block.parameters())
    module.to(device=ref.device, dtype=ref.dtype)
    if init == "identity":
        init_identity(module, gain)
        if gain == 0.0:
            _check_identity(module, channels, where)
    module.train(block.training)
    return module


def inject_attention(
    model: nn.Module,
    kind: AttentionKind,
    *,
    position: Position = "post",
    init: Literal["default", "identity"] = "default",
    init_gain: float = 0.0,
    replace: bool = False,
    **block_kwargs: Any,
) -> nn.Module:
    """Hang an attention module on every residual block of a timm or torchvision ResNet, in place.

    Args:
        model: a model containing timm or torchvision ``BasicBlock``/``Bottleneck`` blocks
            (a bare ResNet, a ``features_only`` wrapper, or any module holding them).
        kind: ``"salient"``, ``"ssa"``, a timm ``get_attn`` name (``"se"``, ``"eca"``, ...),
            ``"none"`` (with ``replace=True``: remove), or an ``nn.Module`` class/factory
            called as ``kind(channels, **block_kwargs)``.
        position: ``"post"`` (after the branch's last norm, before the shortcut add; the
            seed's position and timm's ``se`` slot) or ``"mid"`` (after the 3x3 conv's
            norm+activation, on the narrower width).
        init: ``"default"`` (the module's own init) or ``"identity"`` (output equals the
            model's output before surgery, exactly; salient, ssa, se, eca, cbam).
        init_gain: with ``init="identity"``, > 0 gives the near-identity start: the layer feeding
            each gate keeps ``init_gain`` x its fresh init (Salient/SSA: BN gamma = init_gain), so
            the gate's conv learns from the first step. 0 (default) is the exact identity.
        replace: allow overwriting a filled slot (e.g. the SE of ``seresnet50``).
        **block_kwargs: passed to the attention constructor (e.g. ``rd_ratio=1/8`` for se).

    Returns:
        ``model`` itself. Original state_dict keys are unchanged; the new weights live at
        ``<block>.se.*`` (post) or ``<block>.attn_mid.*`` (mid).

    Raises:
        SurgeryError / UnknownAttentionKindError / IdentityInitError, with the model untouched.
    """
    if position not in SLOT_ATTRS:
        raise SurgeryError(f"unknown position {position!r}; valid positions: {', '.join(POSITIONS)}")
    if init not in INITS:
        raise SurgeryError(f"unknown init {init!r}; valid inits: {', '.join(INITS)}")
    if not 0.0 <= init_gain < float("inf"):
        raise SurgeryError(f"init_gain must be a finite number >= 0, got {init_gain}")
    if init_gain and init != "identity":
        raise SurgeryError("init_gain applies to init='identity' only (the near-identity start)")
    factory = resolve_attention(kind)
    check_attention_kwargs(kind, block_kwargs)
    if factory is None and not replace:
        raise SurgeryError("kind 'none' adds nothing; pass replace=True to remove existing attention")
    blocks = _require_blocks(model)
    slot = SLOT_ATTRS[position]

    plan = []
    for block in blocks:
        where = f"{block.name}.{slot}"
        current = block.slot(position)
        if current is not None and not replace:
            raise SurgeryError(
                f"{where} already holds {type(current).__name__}; pass replace=True to swap it (Python: "
                "inject_attention), or choose another position (--position mid on the command line), or start "
                "from a model without attention (e.g. resnet50, not seresnet50)"
            )
        channels = block.channels(position)
        new = None if factory is None else _build(factory, channels, block.module, init, init_gain, where, block_kwargs)
        plan.append((block.module, new))

    # Commit: nothing below can fail, so the model is never left half-modified.
    for module, new in plan:
        ensure_slot(module)
        setattr(module, slot, new)
    return model
