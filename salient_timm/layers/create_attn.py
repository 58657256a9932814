"""Attention kinds by name: ours (``salient``, ``ssa``, ``constant``), timm's ``get_attn`` kinds, or a class.

``resolve_attention(kind)`` returns a factory called as ``factory(channels, **kwargs)`` (timm's ``attn_layer``
convention, as ``timm/layers/create_attn.py:get_attn``) or ``None`` for ``"none"``; ``check_attention_kwargs`` checks
constructor arguments against ``ARGUMENT_RULES`` before anything is built.
"""

import difflib
import functools
from typing import Any, Callable, Dict, Optional, Tuple, Type, Union, cast

from timm.layers import get_attn
from torch import nn

from ..errors import SalientError
from .salient import ConstantGate, SalientBlock, SSABlock

__all__ = [
    "AttentionKind",
    "UnknownAttentionKindError",
    "OUR_KINDS",
    "TIMM_KINDS",
    "NONE_KIND",
    "ARGUMENT_RULES",
    "KNOWN_BUILD_ISSUES",
    "AttentionArgumentError",
    "check_attention_kwargs",
    "attention_kinds",
    "resolve_attention",
]

AttentionKind = Union[str, Type[nn.Module], Callable[..., nn.Module], None]

# constant: the control without spatial or channel information (salient.ConstantGate)
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
