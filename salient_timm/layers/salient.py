"""Spatial attention gates from the SalientNet seed text.

``SalientBlock`` (seed, "Salient-Net"): a per-pixel gate shared by all channels,

    w = sigmoid(BN1(conv1x1_{C->1}(x)))      # (N, 1, H, W)
    out = w * x                              # broadcast over C

``SSABlock`` (the seed author's later, parameter-free variant):

    s = mean_c(GAP(x) * x)                   # (N, 1, H, W)
    out = sigmoid(BN1(s)) * x

Both follow timm's ``attn_layer`` convention (``channels`` first, ``device``/``dtype``
keywords) so they work as ``block_args=dict(attn_layer=SalientBlock)`` in timm's ResNet.

Implementation (``impl``, same parameters and state_dict keys for all; they compute the same sums
in another order, equal to float rounding, tested):

| impl | Salient | SSA | when |
|---|---|---|---|
| ``"fused"`` (default) | batched GEMV ``w @ x`` | GEMV ``(GAP(x)/C) @ x`` | eager training: ``fused.spatial_gate``, one custom autograd function with a GEMV/in-place-GEMM backward; under ``torch.compile`` the ``sum`` form (inductor fuses it, no GEMM call); otherwise plain GEMV ops |
| ``"sum"`` | ``(x * w).sum(1)`` | - | plain pointwise + reduction |
| ``"gemv"`` | batched GEMV | batched GEMV | plain ops, autograd backward |
| ``"conv"`` | the seed's ``nn.Conv2d`` call | - | the literal seed block |
| ``"mean"`` | - | ``mean_c(GAP(x) * x)`` | SSA's literal form |

``"fused"`` falls back to its plain GEMV ops under TorchScript, FX, ``torch.compile``,
``torch.export``, ONNX export, ``no_grad``, forward-mode AD and ``torch.func``, and
differentiates them under ``create_graph`` (see ``salient_timm.fused``). Measured on
CPU in ``benchmarks/block_overhead.py`` / ``benchmarks/RESULTS.md``.

One addition to the seed: the gate is ``scale * sigmoid(.)`` where ``scale`` is a
persistent buffer, 1.0 by default (exactly the seed's gate). ``init_identity()`` sets
``scale=2`` and zeroes the BN affine, so the block starts as the identity
(``2 * sigmoid(0) = 1``) while its gradients stay alive; because the scale lives in the
state_dict, a checkpoint always reloads with the gate it was trained with.
"""

from typing import TYPE_CHECKING, Callable, Optional, cast

import torch
from torch import nn
from torch.nn.modules import module as _module_hooks
from torch.nn.modules.batchnorm import _BatchNorm

from ..errors import SalientError
from ._fused_gate import pixel_dot, residual_inference, spatial_gate, use_fused, use_inference_epilogue

__all__ = ["ScaledSigmoid", "SalientBlock", "SSABlock", "ConstantGate"]


class ScaledSigmoid(nn.Module):
    """Gate ``scale * sigmoid(x)``; ``scale`` is a persistent buffer (1.0 = plain sigmoid).

    ``reset_parameters()`` restores the scale it was built or last set with (``set_scale``), as meta-device
    materialisation (``to_empty()`` then every module's ``reset_parameters()``) expects."""

    scale: torch.Tensor

    def __init__(self, scale: float = 1.0, device=None, dtype=None) -> None:
        super().__init__()
        self.init_scale = float(scale)
        self.register_buffer("scale", torch.tensor(float(scale), device=device, dtype=dtype))

    @torch.no_grad()
    def set_scale(self, value: float) -> None:
        """The gate's scale now and after ``reset_parameters()`` (an identity start sets 2)."""
        self.init_scale = float(value)
        self.scale.fill_(self.init_scale)

    @torch.no_grad()
    def reset_parameters(self) -> None:
        self.scale.fill_(self.init_scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.scale * torch.sigmoid(x)


class _SpatialGate(nn.Module):
    """Shared tail of both blocks: ``x * gate(BN1(s))`` for a saliency map ``s`` of shape (N,1,H,W)."""

    if TYPE_CHECKING:  # for type checkers only: TorchScript reads class annotations as attribute types
        conv: nn.Conv2d  # Salient only (SSA has no weights before its BN)
        impl: str

    def __init__(self, conv: Optional[nn.Conv2d], gate_scale: float = 1.0, device=None, dtype=None) -> None:
        super().__init__()
        if conv is not None:  # registered first so state_dict order reads conv -> bn -> gate, as in the seed
            self.conv = conv
        self.bn = nn.BatchNorm2d(1, device=device, dtype=dtype)
        self.gate = ScaledSigmoid(gate_scale, device=device, dtype=dtype)

    def saliency(self, x: torch.Tensor, weight: Optional[torch.Tensor] = None) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not torch.jit.is_scripting():
            weight = self._weight()  # read once: a parametrization (spectral_norm...) runs once per forward
            if self.impl == "fused" and self._fused_applies(x, weight):
                return spatial_gate(x, weight, self.bn, self.gate.forward)
            return x * self.gate(self.bn(self.saliency(x, weight)))
        return x * self.gate(self.bn(self.saliency(x)))

    @torch.jit.unused
    def _weight(self) -> Optional[torch.Tensor]:
        """The conv's weight as (C,), read as ``nn.Conv2d.forward`` reads it; None for SSA, and where the conv must run
        as a module (``_conv_runs``: then its own call reads it)."""
        if not hasattr(self, "conv") or self._conv_runs():
            return None
        return self.conv.weight.reshape(-1)

    @torch.jit.unused
    def _conv_runs(self) -> bool:
        """Salient's conv runs as a module: the seed's impl, a conv with hooks (prune, legacy weight_norm, per-module
        counters), or the default impl while global module hooks watch (the literal block's calls are what they
        see)."""
        return self.impl == "conv" or has_hooks(self.conv) or (self.impl == "fused" and global_module_hooks())

    @torch.jit.unused
    def _fused_applies(self, x: torch.Tensor, weight: Optional[torch.Tensor], norm: Optional[nn.Module] = None) -> bool:
        # the fused backward replays exactly nn.BatchNorm2d + ScaledSigmoid, and calls neither as a module: a converted
        # BN (SyncBatchNorm, FrozenBatchNorm2d), a hook of any kind on the gate's parts or any global module hook
        # (ModuleTracker, FlopCounterMode, torchinfo...) takes the plain ops, whose module calls they see.
        if not torch.is_grad_enabled():  # inference: the cheapest test first (use_fused would refuse it last)
            return False
        if type(self.bn) is not nn.BatchNorm2d or type(self.gate) is not ScaledSigmoid:
            return False
        if has_hooks(self.bn) or has_hooks(self.gate) or global_module_hooks():
            return False
        if hasattr(self, "conv") and weight is None:  # its conv runs as a module (_conv_runs)
            return False
        norm_params = () if norm is None else tuple(norm.parameters())
        return use_fused(x, (weight, self.bn.weight, self.bn.bias, *norm_params))

    @torch.jit.unused
    def residual_epilogue(
        self,
        x: torch.Tensor,
        shortcut: Callable[[], torch.Tensor],
        norm: Optional[nn.Module] = None,
        x_is_scratch: bool = False,
    ) -> Optional[torch.Tensor]:
        """``relu(shortcut() + self(norm(x)))`` in one fused pass forward and one backward, or None (and neither
        ``norm`` nor ``shortcut`` called) where the fused path does not apply or something must see the gate's own
        call (a hook of any kind on this module, a global module hook); the caller then runs its plain ops.
        ``shortcut``: a callable giving the block's shortcut (its downsample runs only if the fused path is taken).
        ``norm``: the branch's last norm, x its input; a plain unhooked ``nn.BatchNorm2d`` runs inside the fused
        function (which then saves x instead of its output), any other norm runs first, as it is.
        Without autograd (grad mode off) the gate runs its module calls and the epilogue the plain ops' product, add
        and ReLU, written over the norm's fresh output (``x_is_scratch``: over x, where the caller owns it and passes
        no norm), as timm's ``x += shortcut``; see ``_fused_gate.residual_inference``."""
        if self.impl != "fused" or has_hooks(self):
            return None
        weight = self._weight()
        if not torch.is_grad_enabled():
            return self._inference_epilogue(x, weight, shortcut, norm, x_is_scratch)
        if not self._fused_applies(x, weight, norm):
            return None
        if norm is not None and (type(norm) is not nn.BatchNorm2d or has_hooks(norm)):
            x = norm(x)  # FrozenBatchNorm2d, SyncBatchNorm, a hooked norm...: its own call, then the fused gate
            norm = None
            if not (x.is_contiguous() or x.is_contiguous(memory_format=torch.channels_last)):
                x = x.contiguous()
        return spatial_gate(x, weight, self.bn, self.gate.forward, shortcut(), cast(Optional[nn.BatchNorm2d], norm))

    @torch.jit.unused
    def _inference_epilogue(
        self,
        x: torch.Tensor,
        weight: Optional[torch.Tensor],
        shortcut: Callable[[], torch.Tensor],
        norm: Optional[nn.Module],
        x_is_scratch: bool,
    ) -> Optional[torch.Tensor]:
        if global_module_hooks() or not use_inference_epilogue(x, (weight,)):
            return None  # a global hook must see the gate's own call; tracers record the plain ops
        if norm is not None:
            x_in, x = x, norm(x)
            x_is_scratch = _returns_fresh(norm) and x is not x_in and x.data_ptr() != x_in.data_ptr()
        g = self.gate(self.bn(self.saliency(x, weight)))
        return residual_inference(x, g, shortcut(), x_is_scratch)

    @torch.no_grad()
    def init_identity(self, gain: float = 0.0) -> None:
        """Start as the identity: gate ``2*sigmoid(BN(.)) = 1`` (BN gamma 0). ``gain > 0``: gamma = gain,
        a near-identity gate ``2*sigmoid(gain * z_hat)`` whose conv learns from the first step."""
        self.gate.set_scale(2.0)
        nn.init.constant_(self.bn.weight, gain)
        nn.init.zeros_(self.bn.bias)


def has_hooks(module: nn.Module) -> bool:
    """Whether ``module`` carries a hook of any kind: forward, forward-pre, backward or backward-pre (dict checks)."""
    return bool(
        module._forward_hooks or module._forward_pre_hooks or module._backward_hooks or module._backward_pre_hooks
    )


def _returns_fresh(norm: nn.Module) -> bool:
    """Whether ``norm``'s output is a fresh tensor that nothing else keeps: a BatchNorm (``_BatchNorm`` and its
    kin), GroupNorm or FrozenBatchNorm2d (timm's, torchvision's) with no hook that could keep it."""
    known = isinstance(norm, (_BatchNorm, nn.GroupNorm)) or type(norm).__name__ == "FrozenBatchNorm2d"
    return known and not has_hooks(norm)


def global_module_hooks() -> bool:
    """Whether a global module hook of any kind is set (``torch.utils.module_tracker``: FlopCounterMode,
    salient-analyze; ``register_module_forward_hook`` and its kin)."""
    return bool(
        _module_hooks._global_forward_hooks
        or _module_hooks._global_forward_pre_hooks
        or _module_hooks._global_backward_hooks
        or _module_hooks._global_backward_pre_hooks
    )


def gap_over_channels(x: torch.Tensor) -> torch.Tensor:
    """SSA's channel weights ``GAP(x) / C``, (N, C): one FX leaf (``torch.fx.wrap``), so a traced graph holds no
    Python scalar for FX quantization to observe."""
    return x.mean((2, 3)) * (1.0 / x.shape[1])


# FX traces these as single calls: the traced graph computes exactly what eager does, and FX graph-mode
# quantization leaves the gate's reductions in float instead of observing their inner shapes and scalars.
torch.fx.wrap("pixel_dot")
torch.fx.wrap("gap_over_channels")


def _compiling() -> bool:
    if torch.jit.is_scripting():
        return False
    return _dynamo_compiling()


@torch.jit.unused
def _dynamo_compiling() -> bool:
    return torch.compiler.is_compiling()


class GateConfigError(SalientError, ValueError):
    """A gate built with options it does not have (an unknown ``impl``)."""


def _check_impl(impl: str, valid: tuple) -> str:
    if impl not in valid:
        raise GateConfigError(f"unknown impl {impl!r}; valid: {', '.join(valid)}")
    return impl


class SalientBlock(_SpatialGate):
    """Seed Salient block: ``x * sigmoid(BN1(conv1x1_{C->1}(x)))``.

    Args:
        channels: input channels C. Parameters: C (conv, no bias) + 2 (BN affine).
        gate_scale: gate multiplier, 1.0 is the seed's gate (see module docstring).
        impl: ``"fused"`` (default), ``"sum"``, ``"gemv"`` or ``"conv"`` (the seed's nn.Conv2d call); see above.
    Shapes: (N, C, H, W) -> (N, C, H, W); the gate map is (N, 1, H, W).
    """

    def __init__(
        self,
        channels: int,
        gate_scale: float = 1.0,
        impl: str = "fused",
        device: Optional[torch.device] = None,
        dtype: Optional[torch.dtype] = None,
    ) -> None:
        conv = nn.Conv2d(channels, 1, kernel_size=1, bias=False, device=device, dtype=dtype)
        super().__init__(conv, gate_scale, device=device, dtype=dtype)
        self.impl = _check_impl(impl, ("fused", "sum", "gemv", "conv"))

    def saliency(self, x: torch.Tensor, weight: Optional[torch.Tensor] = None) -> torch.Tensor:
        """``sum_c w_c x_c``, (N, 1, H, W); ``weight``: the conv's weight as (C,) if already read this forward."""
        if self.impl == "conv" or weight is None and not torch.jit.is_scripting() and self._conv_runs():
            return self.conv(x)
        w = self.conv.weight.reshape(-1) if weight is None else weight
        if self.impl == "sum" or (self.impl == "fused" and _compiling()):
            # sum_c w_c x_c as multiply + channel sum: what inductor fuses into one kernel (no GEMM call)
            return (x * w.view(1, -1, 1, 1)).sum(1, keepdim=True)
        return pixel_dot(x, w.view(1, -1))  # (N,1,C) @ (N,C,HW): one batched GEMV


class SSABlock(_SpatialGate):
    """Parameter-free saliency: ``x * sigmoid(BN1(mean_c(GAP(x) * x)))``.

    Args:
        channels: input channels C (kept for the attn_layer signature; no weights depend on it).
        gate_scale: gate multiplier, 1.0 is the plain sigmoid.
        impl: ``"fused"`` (default), ``"mean"`` (the literal form) or ``"gemv"`` (``(GAP(x)/C) @ x``).
    Parameters: 2 (BN affine). Shapes: (N, C, H, W) -> (N, C, H, W).
    """

    def __init__(
        self,
        channels: int,
        gate_scale: float = 1.0,
        impl: str = "fused",
        device: Optional[torch.device] = None,
        dtype: Optional[torch.dtype] = None,
    ) -> None:
        super().__init__(None, gate_scale, device=device, dtype=dtype)
        self.channels = channels
        self.impl = _check_impl(impl, ("fused", "mean", "gemv"))

    def saliency(self, x: torch.Tensor, weight: Optional[torch.Tensor] = None) -> torch.Tensor:
        """``mean_c(GAP(x) * x)``, (N, 1, H, W)."""
        if self.impl in ("fused", "gemv"):  # mean_c(g * x) = (g / C) @ x, with g = GAP(x) of shape (N, C)
            return pixel_dot(x, gap_over_channels(x))
        return (x.mean((2, 3), keepdim=True) * x).mean(1, keepdim=True)


def epilogue_gate(gate: Optional[nn.Module], act: nn.Module) -> Optional[_SpatialGate]:
    """``gate`` where its ``residual_epilogue`` may stand for ``act(shortcut + gate(x))``: a ``SalientBlock`` or
    ``SSABlock`` before an unhooked ``nn.ReLU`` (a hook on the activation must see its call); else None."""
    if type(gate) not in (SalientBlock, SSABlock) or type(act) is not nn.ReLU or has_hooks(act):
        return None
    return cast(_SpatialGate, gate)


class ConstantGate(nn.Module):
    """A learnable per-block constant gate, ``x * scale * sigmoid(b)``: the control that has everything of a
    retrofitted gate (a new multiplicative factor on the branch, trained with the same recipe) but no spatial or
    channel information. The evidence study compares Salient against it to isolate the map.

    Args:
        channels: kept for the ``attn_layer`` signature; no weight depends on it.
        gate_scale: gate multiplier, 1.0 is the plain sigmoid (identity start: 2, with b = 0).
    Parameters: 1 (``logit``). Shapes: (N, C, H, W) -> (N, C, H, W); the gate is (1, 1, 1, 1).
    """

    def __init__(
        self,
        channels: int,
        gate_scale: float = 1.0,
        device: Optional[torch.device] = None,
        dtype: Optional[torch.dtype] = None,
    ) -> None:
        super().__init__()
        self.channels = channels
        self.logit = nn.Parameter(torch.zeros(1, 1, 1, 1, device=device, dtype=dtype))
        self.gate = ScaledSigmoid(gate_scale, device=device, dtype=dtype)

    def reset_parameters(self) -> None:
        nn.init.zeros_(self.logit)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gate(self.logit)

    @torch.no_grad()
    def init_identity(self, gain: float = 0.0) -> None:
        """``2 * sigmoid(0) = 1``. ``gain`` has no layer to act on: the constant learns from the first step."""
        self.gate.set_scale(2.0)
        self.logit.zero_()
