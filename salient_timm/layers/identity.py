"""Identity starts for attention modules: ``init_identity(module)`` turns a freshly built module into an exact
identity (``module(x) == x``) for the kinds that allow it, so a retrofit starts where the base model is.
``init_identity(module, gain)`` with ``gain > 0`` is the near-identity start: the layer that feeds the gate keeps
``gain`` times its fresh initialisation instead of zero, so the layers before it get gradient from the first step
(see ``salient_timm/optim.py`` for why that matters).

| kind | gate | layer feeding the gate: identity (gain 0) / near-identity |
|---|---|---|
| salient, ssa | ``2*sigmoid(BN1(s))`` | BN gamma 0 / gamma = gain; beta 0 |
| constant | ``2*sigmoid(b)`` | b = 0 (no layer to scale) |
| se | ``2*sigmoid(fc2(.))`` | fc2 0 / fc2 weight x gain, bias 0 |
| eca | ``2*sigmoid(conv(.))`` | last conv 0 / weight x gain |
| cbam | both gates ``2*sigmoid`` | channel fc2 and spatial BN as above |
"""

from typing import Any, Callable, Dict, Tuple

import torch
from timm.layers.cbam import CbamModule
from timm.layers.eca import EcaModule
from timm.layers.squeeze_excite import SEModule
from torch import nn

from ..errors import SalientError
from .create_attn import OUR_KINDS
from .salient import ScaledSigmoid

__all__ = ["IdentityInitError", "IDENTITY_KINDS", "init_identity"]


class IdentityInitError(SalientError, ValueError):
    """``init='identity'`` asked of an attention module that cannot start as the identity."""


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
