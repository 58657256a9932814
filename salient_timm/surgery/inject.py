"""Model surgery: find the residual blocks of a ResNet and hang attention modules on them.

The planner never names a block family: it asks each block's row in the adapter table (``adapter.py``,
``families/``) where its slots are and how wide. ``inject_attention`` is transactional: every new module is built,
placed on the block's device/dtype and (for ``init='identity'``) checked to be an exact identity before the first
block is touched, so any error leaves the model as it was.

Stages: a block's stage is the container that holds it, one level below what all blocks share (``layer1`` ...
``layer4`` of a ResNet, ``stages.0`` ... of byobnet/resnetv2/cspnet/nfnet, ``s1`` ... of RegNet, ``level2`` ... of
DLA), numbered from 1 in module order; ``stages=`` selects which get attention (mmdetection's ResNet ``plugins``
``stages`` in index form).
"""

import difflib
import re
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Literal, Optional, Sequence, Tuple

import torch
from torch import nn

from ..errors import SalientError, first_line
from ..layers.create_attn import KNOWN_BUILD_ISSUES, AttentionKind, check_attention_kwargs, resolve_attention
from ..layers.identity import init_identity
from ..module_mode import training_mode
from . import families  # noqa: F401  (registers every row)
from .adapter import ADAPTERS, UNSUPPORTED, BlockAdapter, Slot, adapter_for, qualname
from .slots import set_slot

__all__ = [
    "SurgeryError",
    "ResidualBlock",
    "find_residual_blocks",
    "attention_modules",
    "inject_attention",
    "residual_stages",
    "supported_blocks",
    "POSITIONS",
    "INITS",
]

Position = Literal["post", "mid"]
POSITIONS: Tuple[Position, ...] = ("post", "mid")
INITS: Tuple[str, ...] = ("default", "identity")


class SurgeryError(SalientError, ValueError):
    """The model cannot take the requested attention (no blocks, occupied slot, bad option)."""


def supported_blocks() -> List[str]:
    """Qualified names of every block class with a row (the slotted subclasses left out)."""
    return sorted({qualname(a.block) for a in ADAPTERS.values()})


@dataclass(frozen=True)
class ResidualBlock:
    """A supported residual block: its qualified name in the model, the module, its row and its stage (from 1)."""

    name: str
    module: nn.Module
    adapter: BlockAdapter
    stage: int = 1

    def _slot(self, position: str) -> Slot:
        slot = self.adapter.slot(position)
        if slot is None:
            reason = self.adapter.refuse.get(position, "it has no such slot")
            raise SurgeryError(
                f"{self.name} ({qualname(self.adapter.block)}) takes no attention at {position}: {reason}"
            )
        return slot

    def channels(self, position: Position) -> int:
        """Width of the tensor at ``position`` (post: the branch's output channels; mid: the kxk stage's)."""
        return self._slot(position).width(self.module)

    def slot(self, position: Position) -> Optional[nn.Module]:
        """The module in ``position``'s slot, ``None`` if empty (or if the block has no such slot)."""
        slot = self.adapter.slot(position)
        return None if slot is None else slot.module(self.module)

    def slot_name(self, position: Position) -> str:
        """``<block>.<attribute>``: where the module's keys live (``layer1.0.se``, ``stages.0.0.attn_last``)."""
        return f"{self.name}.{self._slot(position).attr}"


def residual_stages(names: Sequence[str]) -> List[int]:
    """Stage number (from 1) of each block name: blocks share a stage when their containers agree one level below
    the longest container prefix that every block shares (see the module docstring)."""
    parents = [name.split(".")[:-1] for name in names]
    common = 0
    while parents and all(len(p) > common for p in parents) and len({p[common] for p in parents}) == 1:
        common += 1
    keys = [".".join(p[: common + 1]) for p in parents]
    order: Dict[str, int] = {}
    for key in keys:
        order.setdefault(key, len(order) + 1)
    return [order[key] for key in keys]


def find_residual_blocks(model: nn.Module) -> List[ResidualBlock]:
    """Every residual block with a row in the adapter table, in module order, with its stage."""
    found = [(name, m, adapter_for(m)) for name, m in model.named_modules()]
    blocks = [(name, m, a) for name, m, a in found if a is not None]
    stages = residual_stages([name for name, _, _ in blocks])
    return [ResidualBlock(name, m, a, stage) for (name, m, a), stage in zip(blocks, stages)]


def attention_modules(model: nn.Module, position: Optional[Position] = None) -> List[Tuple[str, nn.Module]]:
    """``(qualified name, module)`` of every filled attention slot (one position, or both)."""
    positions: Tuple[Position, ...] = POSITIONS if position is None else (position,)
    found = []
    for block in find_residual_blocks(model):
        for pos in positions:
            module = block.slot(pos)
            if module is not None:
                found.append((block.slot_name(pos), module))
    return found


_BLOCK_LIKE = re.compile(r"(Block|Bottle|Basic|Unit|Residual|Res)")


def _no_blocks_error(model: nn.Module) -> SurgeryError:
    """Name what the model holds instead: a refused class with its reason, or the block-like classes found."""
    classes = list(dict.fromkeys(type(m) for m in model.modules()))
    refused = [c for c in classes if c in UNSUPPORTED]
    if refused:
        return SurgeryError(
            f"{type(model).__name__} holds {qualname(refused[0])} blocks, which take no attention: "
            f"{UNSUPPORTED[refused[0]]}"
        )
    found = [qualname(c) for c in classes if _BLOCK_LIKE.search(c.__name__) and c is not type(model)][:3]
    what = f"found {', '.join(found)}: no row in the adapter table" if found else "found none"
    names = sorted({a.family.split(".")[-1] for a in ADAPTERS.values()})
    return SurgeryError(
        f"{type(model).__name__} has no supported residual blocks ({what}); supported: the blocks of timm's "
        f"{', '.join(f for f in names if f != 'resnet')} and resnet models and torchvision's resnets "
        "(salient_timm.supported_blocks() lists the classes)"
    )


@torch.no_grad()
def _check_identity(module: nn.Module, channels: int, gain: float, where: str) -> None:
    """Raise unless ``gain * module(x) == x`` exactly on a random probe (eval mode, restored after).

    On the meta device there are no values to compare: the recipe (``init_identity``) is trusted there,
    and the check runs once the weights are real (tests cover every recipe on CPU)."""
    ref = next(module.parameters(), None)
    if ref is not None and ref.device.type == "meta":
        return
    probe = torch.randn(2, channels, 6, 6, device=getattr(ref, "device", None), dtype=getattr(ref, "dtype", None))
    with training_mode(module, False):
        out = module(probe.clone())
    if gain != 1.0:
        out = gain * out
    if out.shape != probe.shape or not torch.equal(out, probe):
        raise SurgeryError(f"init='identity' did not give an identity attention module at {where}")


def _build(factory, block: ResidualBlock, position: Position, init: str, gain: float, kwargs: dict) -> nn.Module:
    where, channels = block.slot_name(position), block.channels(position)
    try:
        module = factory(channels, **kwargs)
    except Exception as e:  # surface constructor errors with the place and arguments
        name = getattr(factory, "__name__", type(factory).__name__)
        known = next((hint for kind, hint in KNOWN_BUILD_ISSUES.items() if resolve_attention(kind) is factory), None)
        args = ", ".join(f"{k}={v!r}" for k, v in kwargs.items()) or "default arguments"
        detail = known or f"{type(e).__name__}: {first_line(e)}"
        raise SurgeryError(
            f"could not build attention for {where} ({name}, channels={channels}, {args}): {detail}"
        ) from e
    if not isinstance(module, nn.Module):
        raise SurgeryError(f"attention factory returned {type(module).__name__}, not an nn.Module")
    ref = next(block.module.parameters(), None)
    if ref is not None:
        module.to(device=ref.device, dtype=ref.dtype)
    if init == "identity":
        output_gain = block.adapter.slot(position).output_gain(block.module)  # type: ignore[union-attr]
        init_identity(module, gain, output_gain=output_gain)
        if gain == 0.0:
            _check_identity(module, channels, output_gain, where)
    module.train(block.module.training)
    return module


def _select_stages(blocks: List[ResidualBlock], stages: Optional[Sequence[Any]]) -> List[ResidualBlock]:
    """The blocks of the chosen stages: 1-based numbers, or one flag per stage (mmdetection's form)."""
    if stages is None:
        return blocks
    count = max(b.stage for b in blocks)
    chosen = list(stages)
    if chosen and all(isinstance(s, bool) for s in chosen):
        if len(chosen) != count:
            raise SurgeryError(f"stages: {len(chosen)} flags for a model with {count} stages")
        chosen = [i + 1 for i, flag in enumerate(chosen) if flag]
    bad = [s for s in chosen if isinstance(s, bool) or not isinstance(s, int) or not 1 <= s <= count]
    if bad or not chosen:
        raise SurgeryError(
            f"stages {tuple(stages)!r}: this model's residual stages are 1..{count} (give their numbers, e.g. "
            f"stages=(1, 2) or --attn-stages 1,2, or {count} flags)"
        )
    return [b for b in blocks if b.stage in set(chosen)]


def _require_blocks(model: nn.Module, position: Position) -> List[ResidualBlock]:
    blocks = find_residual_blocks(model)
    if not blocks:
        raise _no_blocks_error(model)
    refused = [b for b in blocks if b.adapter.slot(position) is None]
    if refused:
        b = refused[0]
        valid = ", ".join(b.adapter.positions) or "none"
        reason = b.adapter.refuse.get(position, "it has no such slot")
        raise SurgeryError(
            f"{b.name} ({qualname(b.adapter.block)}) takes no attention at position {position!r}: {reason}; "
            f"valid positions for it: {valid}"
        )
    return blocks


def inject_attention(
    model: nn.Module,
    kind: AttentionKind,
    *,
    position: Position = "post",
    init: Literal["default", "identity"] = "default",
    init_gain: float = 0.0,
    replace: bool = False,
    stages: Optional[Sequence[Any]] = None,
    **block_kwargs: Any,
) -> nn.Module:
    """Hang an attention module on every residual block of a ResNet (timm or torchvision), in place.

    Args:
        model: a model holding residual blocks of a class in the adapter table (``supported_blocks()``): a bare
            ResNet, a ``features_only`` wrapper, a detection backbone, or any module holding them.
        kind: ``"salient"``, ``"ssa"``, a timm ``get_attn`` name (``"se"``, ``"eca"``, ...),
            ``"none"`` (with ``replace=True``: remove), or an ``nn.Module`` class/factory
            called as ``kind(channels, **block_kwargs)``.
        position: ``"post"`` (the residual branch's output before the shortcut add, after its last norm: the
            seed's position) or ``"mid"`` (after the block's kxk stage, on the narrower width).
        init: ``"default"`` (the module's own init) or ``"identity"`` (output equals the
            model's output before surgery, exactly; salient, ssa, constant, se, eca, cbam).
        init_gain: with ``init="identity"``, > 0 gives the near-identity start: the layer feeding
            each gate keeps ``init_gain`` x its fresh init (Salient/SSA: BN gamma = init_gain), so
            the gate's conv learns from the first step. 0 (default) is the exact identity.
        replace: allow overwriting a filled slot (e.g. the SE of ``seresnet50``).
        stages: which residual stages get attention: 1-based numbers (``(1, 2)``) or one flag per stage
            (``(True, True, False, False)``); ``None``: all. See ``residual_stages``.
        **block_kwargs: passed to the attention constructor (e.g. ``rd_ratio=1/8`` for se).

    Returns:
        ``model`` itself. Original state_dict keys are unchanged; the new weights live at ``<block>.<slot>.*``
        (``layer1.0.se.*``, ``stages.0.0.attn_last.*``: ``ResidualBlock.slot_name``).

    Raises:
        SurgeryError / UnknownAttentionKindError / IdentityInitError / AttentionArgumentError, with the model
        untouched.
    """
    factory = _checked_options(kind, position, init, init_gain, replace, block_kwargs)
    blocks = _select_stages(_require_blocks(model, position), stages)
    plan = []
    for block in blocks:
        _check_free(block, position, replace)
        plan.append(
            (block.module, None if factory is None else _build(factory, block, position, init, init_gain, block_kwargs))
        )

    # Commit: nothing below can fail, so the model is never left half-modified.
    for module, new in plan:
        set_slot(module, position, new)
    return model


def _checked_options(
    kind: AttentionKind, position: Any, init: Any, init_gain: Any, replace: bool, block_kwargs: Dict[str, Any]
) -> Optional[Callable[..., nn.Module]]:
    """``inject_attention``'s options checked before anything is touched; the attention factory (None: remove)."""
    if position not in POSITIONS:
        close = difflib.get_close_matches(str(position), POSITIONS, n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        raise SurgeryError(f"unknown position {position!r}{hint}; valid positions: {', '.join(POSITIONS)}")
    if init not in INITS:
        raise SurgeryError(f"unknown init {init!r}; valid inits: {', '.join(INITS)}")
    if isinstance(init_gain, bool) or not isinstance(init_gain, (int, float)) or not 0.0 <= init_gain < float("inf"):
        raise SurgeryError(f"init_gain must be a finite number >= 0, got {init_gain!r}")
    if init_gain and init != "identity":
        raise SurgeryError("init_gain applies to init='identity' only (the near-identity start)")
    factory = resolve_attention(kind)
    check_attention_kwargs(kind, block_kwargs)
    if factory is None and not replace:
        raise SurgeryError("kind 'none' adds nothing; pass replace=True to remove existing attention")
    return factory


def _check_free(block: ResidualBlock, position: Position, replace: bool) -> None:
    """``SurgeryError`` where the slot already holds a module and ``replace`` does not allow overwriting it."""
    current = block.slot(position)
    if current is not None and not replace:
        raise SurgeryError(
            f"{block.slot_name(position)} already holds {type(current).__name__} (the network's own attention); "
            "pass replace=True to swap it (Python), choose the other position "
            f"(--position {'mid' if position == 'post' else 'post'}), leave its stage out (--attn-stages, stages=), "
            "or start from a model without attention (e.g. resnet50, not seresnet50)"
        )
