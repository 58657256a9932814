"""Record what every attention gate computes during a forward pass.

    with capture_gates(model) as gates:
        model(x)
    gates["layer1.0.se"]        # salient/ssa: (N, 1, H, W) spatial map; se: (N, C, 1, 1) channel weights

A gate is the ``gate`` submodule of an attention module (``ScaledSigmoid`` for salient/ssa,
timm's sigmoid or our identity gate for se/eca); its output is what multiplies the features.
For timm's CBAM (``cbam``, ``lcbam``), which gates channels and then pixels, it is the spatial
gate (``spatial.gate``, (N, 1, H, W)): the map that says where the block looks.
Forward hooks only read (detached copies); they are removed on exit, also after an error.

A gate's *neutral* value is what it outputs for a zero pre-activation: 0.5 for the seed's
sigmoid, 1.0 for an identity-started ``2*sigmoid`` gate. Deviation from it, not from 0.5, says
whether a gate does anything (``gate_neutrals``).
"""

import contextlib
from typing import Dict, Iterator, cast

import torch
from torch import nn

from .errors import SalientError
from .surgery import attention_modules

__all__ = ["capture_gates", "gate_modules", "gate_neutrals", "NoGatesError"]


class NoGatesError(SalientError, ValueError):
    """A model without attention gates where gates were asked for."""


def gate_modules(model: nn.Module) -> Dict[str, nn.Module]:
    """``{attention module name: its gate module}``; raises ``NoGatesError`` if the model has none."""
    gates: Dict[str, nn.Module] = {}
    for name, module in attention_modules(model):
        owner = module if isinstance(getattr(module, "gate", None), nn.Module) else getattr(module, "spatial", None)
        if isinstance(getattr(owner, "gate", None), nn.Module):
            gates[name] = cast(nn.Module, cast(nn.Module, owner).gate)
    if not gates:
        raise NoGatesError(
            f"{type(model).__name__} has no attention gates to capture "
            "(inject salient/ssa/se/cbam first, or use a salient_*/ssa_* model)"
        )
    return gates


@torch.no_grad()
def gate_neutrals(model: nn.Module) -> Dict[str, float]:
    """``{attention module name: gate(0)}``: the gate's output for a zero pre-activation (it does nothing there)."""
    out = {}
    for name, gate in gate_modules(model).items():
        ref = next(iter(gate.buffers()), None)
        out[name] = float(gate(torch.zeros(1, device=getattr(ref, "device", None))))
    return out


@contextlib.contextmanager
def capture_gates(model: nn.Module) -> Iterator[Dict[str, torch.Tensor]]:
    """Yield a dict that fills with ``{attention module name: gate output}`` on each forward.

    Raises ``NoGatesError`` if the model has no attention module with a ``gate``.
    """
    gates: Dict[str, torch.Tensor] = {}
    targets = gate_modules(model).items()
    handles = []
    try:
        for name, gate in targets:
            handles.append(
                gate.register_forward_hook(
                    lambda mod, args, out, name=name: gates.__setitem__(name, out.detach().float().cpu())
                )
            )
        yield gates
    finally:
        for handle in handles:
            handle.remove()
