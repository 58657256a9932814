"""Attention kinds by name: ours (``salient``, ``ssa``), timm's ``get_attn`` kinds, or a class.

``resolve_attention(kind)`` returns a factory called as ``factory(channels, **kwargs)``
(timm's ``attn_layer`` convention) or ``None`` for ``"none"``.
``init_identity(module)`` turns a freshly built attention module into an exact identity
(``module(x) == x``) for the kinds that allow it, so a retrofit starts where the base model is.
``init_identity(module, gain)`` with ``gain > 0`` is the near-identity start: the layer that
feeds the gate keeps ``gain`` times its fresh initialisation instead of zero, so the layers
before it get gradient from the first step (see ``retrofit.py`` for why that matters).

| kind | gate | layer feeding the gate: identity (gain 0) / near-identity |
|---|---|---|
| salient, ssa | ``2*sigmoid(BN1(s))`` | BN gamma 0 / gamma = gain; beta 0 |
| constant | ``2*sigmoid(b)`` | b = 0 (no layer to scale) |
| se | ``2*sigmoid(fc2(.))`` | fc2 0 / fc2 weight x gain, bias 0 |
| eca | ``2*sigmoid(conv(.))`` | last conv 0 / weight x gain |
| cbam | both gates ``2*sigmoid`` | channel fc2 and spatial BN as above |
"""

import difflib
import functools
from typing import Any, Callable, Dict, Optional, Tuple, Type, Union, cast

import torch
from timm.layers import get_attn
from timm.layers.cbam import CbamModule
from timm.layers.eca import EcaModule
from timm.layers.squeeze_excite import SEModule
from torch import nn

from .blocks import ConstantGate, SalientBlock, ScaledSigmoid, SSABlock
from .errors import SalientError

__all__ = [
    "AttentionKind",
    "UnknownAttentionKindError",
    "IdentityInitError",
    "OUR_KINDS",
    "TIMM_KINDS",
    "IDENTITY_KINDS",
    "attention_kinds",
    "resolve_attention",
    "init_identity",
]

AttentionKind = Union[str, Type[nn.Module], Callable[..., nn.Module], None]

# constant: the control without spatial or channel information (blocks.ConstantGate)
OUR_KINDS: Dict[str, Type[nn.Module]] = {"salient": SalientBlock, "ssa": SSABlock, "constant": ConstantGate}
# Every string timm.layers.get_attn accepts (timm/layers/create_attn.py); tests check each resolves.
TIMM_KINDS: Tuple[str, ...] = (
    "se",
    "ese",
    "eca",
    "ecam",
    "ceca",
    "ge",
    "gc",
    "gca",
    "cbam",
    "lcbam",
    "coord",
    "scoord",
    "ela",
    "strip",
    "sk",
    "splat",
    "lambda",
    "bottleneck",
    "halo",
    "nl",
    "bat",
)
NONE_KIND = "none"


class UnknownAttentionKindError(SalientError, ValueError):
    """An attention kind name that is neither ours, timm's, nor ``none``."""


class IdentityInitError(SalientError, ValueError):
    """``init='identity'`` asked of an attention module that cannot start as the identity."""


def attention_kinds() -> Tuple[str, ...]:
    """All valid kind names, ``none`` first."""
    return (NONE_KIND, *OUR_KINDS, *TIMM_KINDS)


def resolve_attention(kind: AttentionKind) -> Optional[Callable[..., nn.Module]]:
    """Map a kind (name, ``nn.Module`` class or factory) to a factory ``f(channels, **kw)``.

    Returns ``None`` for ``None``/``"none"``. Raises ``UnknownAttentionKindError`` naming
    the valid kinds (and close matches) for an unknown name.
    """
    if kind is None:
        return None
    if isinstance(kind, str):
        name = kind.strip().lower()
        if name == NONE_KIND:
            return None
        if name in OUR_KINDS:
            return OUR_KINDS[name]
        if name in TIMM_KINDS:
            return get_attn(name)
        close = difflib.get_close_matches(name, attention_kinds(), n=3)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise UnknownAttentionKindError(
            f"unknown attention kind {kind!r}{hint}; valid kinds: {', '.join(attention_kinds())}, "
            "or an nn.Module class taking channels as its first argument"
        )
    if isinstance(kind, type) and issubclass(kind, nn.Module):
        return cast(Callable[..., nn.Module], kind)
    if isinstance(kind, functools.partial) or (callable(kind) and not isinstance(kind, nn.Module)):
        return cast(Callable[..., nn.Module], kind)
    raise UnknownAttentionKindError(
        f"attention kind must be a name, an nn.Module class or a factory, got {type(kind).__name__}; "
        f"valid names: {', '.join(attention_kinds())}"
    )


def _positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def _positive_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and 0 < value < float("inf")


# Constructor arguments checked before anything is built: name -> (test, what it must be).
ARGUMENT_RULES: Dict[str, Tuple[Callable[[Any], bool], str]] = {
    "rd_ratio": (_positive_number, "a positive number (channels divided by it give the reduced width)"),
    "rd_channels": (_positive_int, "a positive integer"),
    "rd_divisor": (_positive_int, "a positive integer"),
    "kernel_size": (_positive_int, "a positive integer"),
    "block_size": (_positive_int, "a positive integer"),
    "halo_size": (lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 0, "an integer >= 0"),
    "num_heads": (_positive_int, "a positive integer"),
    "gate_scale": (_positive_number, "a positive number"),
}
# timm kinds that timm itself cannot build with their default arguments, and the way around it.
KNOWN_BUILD_ISSUES: Dict[str, str] = {
    "ge": "timm's GatherExcite fails to build with use_mlp=True, its default (a timm bug: ConvMlp gets act_layer "
    "twice); salient-train and salient-analyze cannot pass it arguments, so use it from Python: "
    "inject_attention(model, 'ge', use_mlp=False) or ModelSpec(..., attn='ge', attn_kwargs={'use_mlp': False})",
}


def check_attention_kwargs(kind: AttentionKind, kwargs: Dict[str, Any]) -> None:
    """``AttentionArgumentError`` for a constructor argument outside its valid range (``ARGUMENT_RULES``)."""
    for name, value in kwargs.items():
        rule = ARGUMENT_RULES.get(name)
        if rule is not None and not rule[0](value):
            raise AttentionArgumentError(f"attention argument {name}={value!r} for {kind!r}: must be {rule[1]}")


class AttentionArgumentError(SalientError, ValueError):
    """An attention constructor argument outside its valid range."""


def _identity_gate_like(reference: torch.Tensor) -> ScaledSigmoid:
    return ScaledSigmoid(2.0, device=reference.device, dtype=reference.dtype)


@torch.no_grad()
def _shrink(module: nn.Module, gain: float) -> None:
    """Weight x gain (a norm's gamma: = gain), bias 0: the layer's output is 0 for gain 0."""
    for name, p in module.named_parameters(recurse=False):
        if name == "weight" and not isinstance(module, nn.modules.batchnorm._NormBase):
            p.mul_(gain)
        else:
            p.fill_(gain if name == "weight" else 0.0)


def _se_identity(m: SEModule, gain: float) -> None:
    # x * 2*sigmoid(fc2(.)) with fc2 = 0  ->  x * 1
    m.gate = _identity_gate_like(m.fc2.weight)
    _shrink(m.fc2, gain)


def _eca_identity(m: EcaModule, gain: float) -> None:
    last = m.conv2 if m.conv2 is not None else m.conv
    m.gate = _identity_gate_like(last.weight)
    _shrink(last, gain)


def _cbam_identity(m: CbamModule, gain: float) -> None:
    # channel: x * gate(fc2(.avg) + fc2(.max)), fc2 = 0; spatial: x * gate(BN(conv(.))), BN affine = 0
    m.channel.gate = _identity_gate_like(m.channel.fc2.weight)
    _shrink(m.channel.fc2, gain)
    m.spatial.gate = _identity_gate_like(m.spatial.conv.bn.weight)
    _shrink(m.spatial.conv.bn, gain)


# class -> (kind name, recipe). Our blocks carry their own ``init_identity`` method.
_IDENTITY_RECIPES: Dict[type, Tuple[str, Callable[[Any, float], None]]] = {
    SEModule: ("se", _se_identity),
    EcaModule: ("eca", _eca_identity),
    CbamModule: ("cbam", _cbam_identity),
}
IDENTITY_KINDS: Tuple[str, ...] = (*OUR_KINDS, *(name for name, _ in _IDENTITY_RECIPES.values()))


def init_identity(module: nn.Module, gain: float = 0.0, output_gain: float = 1.0) -> None:
    """Re-initialise a fresh attention module in place so that ``module(x) == x`` exactly (``gain=0``).

    The gate becomes ``2*sigmoid(z)`` with the layer feeding it zeroed (``z = 0``), so
    gradients still flow. ``gain > 0``: that layer keeps ``gain`` x its fresh init (near-identity).
    ``output_gain``: a constant the block multiplies the module's output by (NF-ResNets' ``attn_gain``); the first
    gate's scale is divided by it, so that ``output_gain * module(x) == x``.
    Raises ``IdentityInitError`` for kinds without such a recipe or a bad gain.
    """
    if not 0.0 <= gain < float("inf"):
        raise IdentityInitError(f"identity gain must be a finite number >= 0, got {gain}")
    if not 0.0 < output_gain < float("inf"):
        raise IdentityInitError(f"output gain must be a finite number > 0, got {output_gain}")
    own = getattr(module, "init_identity", None)
    if callable(own):
        own(gain)
    else:
        recipe = _IDENTITY_RECIPES.get(type(module))
        if recipe is None:
            raise IdentityInitError(
                f"init='identity' is not available for {type(module).__name__}; "
                f"kinds that support it: {', '.join(IDENTITY_KINDS)} (use init='default' for others)"
            )
        recipe[1](module, gain)
    if output_gain != 1.0:
        gate = next(m for m in module.modules() if isinstance(m, ScaledSigmoid))
        gate.set_scale(gate.init_scale / output_gain)
