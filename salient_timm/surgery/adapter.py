"""Block adapters: one row per residual block class, saying where its attention slots are and how wide they are.

The generic surgery (``inject.py``), the deploy folding and the counters only ask a block's row; they never name a
block family. A row (``BlockAdapter``) has two slots at most:

| slot | where (the seed's rule: "before the shortcut add") | width |
|---|---|---|
| ``post`` | the residual branch's output right before the shortcut add, after its last norm (pre-activation blocks: after the last conv, which no norm follows) | the last conv's output channels |
| ``mid`` | after the block's kxk stage (its norm and activation included), on the narrower width | the next conv's input channels |

A slot is ``native`` where timm's own class already holds and calls the attribute (byobnet's ``attn_last``,
cspnet's ``attn3``, regnet's ``se``...): surgery fills it and timm's forward runs the module. Elsewhere the row's
``slotted`` subclass (a copy of the class's forward that also calls the slots, tested against the original in
fp64 with the slots empty) is swapped in as ``block.__class__``: no module moves, every state_dict key stays.

Adding a family is adding a module under ``families/`` that calls ``register_adapter`` once per block class, and
importing it in ``families/__init__.py``. Widths come from the conv that feeds the slot (``conv_out``/``conv_in``),
never from a norm's ``num_features`` (GroupNorm, LayerNorm2d and FrozenBatchNorm2d have none).
Source: timm's block registry (``timm/models/byobnet.py``: ``register_block``/``create_block``).
"""

from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Literal, Mapping, Optional, Tuple

from torch import nn

__all__ = [
    "Slot",
    "BlockAdapter",
    "ADAPTERS",
    "UNSUPPORTED",
    "register_adapter",
    "register_unsupported",
    "adapter_for",
    "qualname",
    "conv_out",
    "conv_in",
]

Empty = Literal["none", "identity"]


def _conv(module: nn.Module) -> nn.Module:
    """The conv inside ``module``: itself, or timm's ``ConvNormAct``/``ConvBnAct`` ``.conv``."""
    if hasattr(module, "out_channels") and hasattr(module, "in_channels"):
        return module
    inner = getattr(module, "conv", None)
    if isinstance(inner, nn.Module):
        return _conv(inner)
    raise AttributeError(f"{type(module).__name__} holds no conv with in_channels/out_channels")


def _channels(block: nn.Module, path: str, which: str) -> int:
    value: Any = getattr(_conv(block.get_submodule(path)), which)
    return int(value)


def conv_out(path: str) -> Callable[[nn.Module], int]:
    """Width reader: output channels of the conv at ``path`` (``"conv3"``, ``"conv3_1x1"``) of a block."""
    return lambda block: _channels(block, path, "out_channels")


def conv_in(path: str) -> Callable[[nn.Module], int]:
    """Width reader: input channels of the conv at ``path`` (the conv right after a mid slot)."""
    return lambda block: _channels(block, path, "in_channels")


@dataclass(frozen=True)
class Slot:
    """One attention slot of a block class.

    Args:
        attr: the attribute that holds the module (``se``, ``attn_last``, ``attn_mid``...); the module's keys are
            ``<block>.<attr>.*``.
        width: channels of the tensor at the slot, read from the block (``conv_out``/``conv_in``).
        native: timm's class already calls this attribute; otherwise the row's ``slotted`` forward does.
        empty: what an empty slot holds: ``"none"`` (``None``) or ``"identity"`` (``nn.Identity()``, timm's
            byobnet/cspnet/regnet convention).
        gain: a constant the block multiplies the slot's output by (NF-ResNets' ``attn_gain``); an identity start
            divides its gate by it. ``None``: 1.
    """

    attr: str
    width: Callable[[nn.Module], int]
    native: bool = False
    empty: Empty = "none"
    gain: Optional[Callable[[nn.Module], float]] = None

    def module(self, block: nn.Module) -> Optional[nn.Module]:
        """The module in this slot of ``block``, ``None`` when the slot is empty (``None`` or ``nn.Identity``)."""
        held = getattr(block, self.attr, None)
        return None if held is None or type(held) is nn.Identity else held

    def empty_value(self) -> Optional[nn.Module]:
        return nn.Identity() if self.empty == "identity" else None

    def output_gain(self, block: nn.Module) -> float:
        return 1.0 if self.gain is None else float(self.gain(block))


@dataclass(frozen=True)
class BlockAdapter:
    """How one residual block class takes attention (see the module docstring).

    Args:
        block: the timm or torchvision class (exact type; subclasses get rows of their own).
        post, mid: its slots; ``None`` where the block has none (``refuse`` says why).
        slotted: the forward copy that calls the non-native slots, or ``None`` when every slot is native.
        refuse: position -> why this block cannot take attention there (shown to the user).
        fold_layout: for ``reparameterize``: the block's eval-mode ops before its last conv + norm, that pair and
            its final activation (``salient_timm.deploy.fold``); ``None``: the block is not folded.
        note: a short description for the generated "supported blocks" table (e.g. "pre-activation").
    """

    block: type
    post: Optional[Slot]
    mid: Optional[Slot]
    slotted: Optional[type] = None
    refuse: Mapping[str, str] = field(default_factory=dict)
    fold_layout: Optional[Callable[[nn.Module], tuple]] = None
    note: str = ""

    def slot(self, position: str) -> Optional[Slot]:
        return self.post if position == "post" else self.mid if position == "mid" else None

    @property
    def family(self) -> str:
        return self.block.__module__

    @property
    def positions(self) -> Tuple[str, ...]:
        return tuple(p for p in ("post", "mid") if self.slot(p) is not None)


ADAPTERS: Dict[type, BlockAdapter] = {}  # block class (and its slotted subclass) -> row
UNSUPPORTED: Dict[type, str] = {}  # residual-looking classes that cannot take attention -> the reason


def qualname(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def register_adapter(adapter: BlockAdapter) -> BlockAdapter:
    """Add a row (timm's ``register_block``, keyed by class); its slotted subclass maps to the same row."""
    if adapter.slotted is None and any(s is not None and not s.native for s in (adapter.post, adapter.mid)):
        raise TypeError(f"{qualname(adapter.block)}: a slot that is not native needs a slotted forward")
    ADAPTERS[adapter.block] = adapter
    if adapter.slotted is not None:
        ADAPTERS[adapter.slotted] = adapter
    return adapter


def register_unsupported(cls: type, reason: str) -> None:
    """A residual-looking block class that surgery refuses, with the reason the refusal names."""
    UNSUPPORTED[cls] = reason


def adapter_for(module: nn.Module) -> Optional[BlockAdapter]:
    """The row of ``module``'s exact class (or of the class its slotted subclass copies), ``None`` if none."""
    return ADAPTERS.get(type(module))
