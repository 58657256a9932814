"""Inference-time folding of a ResNet residual block with attention slots into one deploy module.

In eval mode BatchNorm is an affine map, so every conv + BN pair folds into one conv (torch's
``fuse_conv_bn_eval``). The Salient gate folds further, because its logit is linear in the tensor it gates:

| slot | block | the gate logit ``t`` (eval) is | it folds into | deploy forward |
|---|---|---|---|---|
| post (``se``) | Basic, Bottleneck | affine in the last conv's input | a 1-channel conv beside that conv | (1) |
| mid (``attn_mid``) | Bottleneck | ``a * w . x + c`` on conv3's input | a 1-channel 1x1 conv beside conv3 | (2) |
| mid | BasicBlock | - (a 3x3 conv follows the product) | stays as it is | its own |
| any | - | SE, SSA, ECA, CBAM: a pool precedes the product | stays as it is | its own |

(1) ``act(addcmul(shortcut, y, scale * sigmoid(t)))``: +1/C of the conv's MACs, no extra pass over the product.
(2) ``act(addcmul(shortcut, u, g) + b3)``: conv3(g x) = g conv3(x) for a 1x1 conv, so BN3's shift follows the product.

The logit is its own 1-channel conv on the same input rather than an extra output channel of the conv: both cost
+1/C of its MACs, but oneDNN runs a conv with C+1 output channels up to 26 % slower than one with C (measured on
CPU: resnet50's layer1 conv3 at batch 8), while the 1-channel conv re-reads only the conv's input.

``a = gamma / sqrt(var + eps)`` and ``c = beta - a * mean`` are the gate BN's eval affine, ``w`` its 1x1 conv
and ``scale`` its ``ScaledSigmoid`` scale. The folded weights are computed in float64 and stored in the model's
dtype. Source of the convention: timm's ``timm.utils.reparameterize_model`` (a module's ``fuse()`` returns its
deploy replacement), and ``torch.fx.experimental.optimization.fuse`` for conv + BN.
"""

from typing import Any, List, Optional, Tuple, cast

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.utils.fusion import fuse_conv_bn_eval

from ..errors import SalientError
from ..layers._fused_gate import use_inference_epilogue
from ..layers.salient import SalientBlock, ScaledSigmoid, epilogue_gate, global_module_hooks, has_hooks

__all__ = ["FoldedResidualBlock", "ReparameterizeError", "fold_conv_bn", "fold_residual_block", "fold_sequential"]


class ReparameterizeError(SalientError, RuntimeError):
    """A model that cannot be folded as asked: in training mode (BatchNorm folds only with running statistics)."""


def _eval_affine(bn: Any) -> Optional[Tuple[torch.Tensor, torch.Tensor]]:
    """``(a, c)`` with ``bn(x) = a * x + c`` per channel in eval mode, in float64; None if ``bn`` has no running
    statistics (``track_running_stats=False`` normalises with batch statistics even in eval)."""
    mean, var = getattr(bn, "running_mean", None), getattr(bn, "running_var", None)
    if not isinstance(mean, torch.Tensor) or not isinstance(var, torch.Tensor):
        return None
    weight = getattr(bn, "weight", None)
    bias = getattr(bn, "bias", None)
    a = torch.rsqrt(var.double() + bn.eps)
    if weight is not None:
        a = a * weight.detach().double()
    c = -a * mean.double()
    if bias is not None:
        c = c + bias.detach().double()
    return a, c


def _foldable_norm(bn: nn.Module) -> bool:
    frozen = type(bn).__name__ == "FrozenBatchNorm2d"  # torchvision's and timm's, both with eval statistics
    return (isinstance(bn, _BatchNorm) or frozen) and _eval_affine(bn) is not None


def fold_conv_bn(conv: Any, bn: Any) -> Optional[nn.Conv2d]:
    """``bn(conv(x))`` as one conv (torch's ``fuse_conv_bn_eval``), or None when the pair cannot fold (not a plain
    ``nn.Conv2d``, or a norm without running statistics). Both must be in eval mode."""
    if type(conv) is not nn.Conv2d or not _foldable_norm(bn):
        return None
    if isinstance(bn, _BatchNorm):
        return fuse_conv_bn_eval(conv, bn)
    a, c = cast(Tuple[torch.Tensor, torch.Tensor], _eval_affine(bn))  # a frozen BN: the same affine, by hand
    fused = _conv_like(conv, conv.out_channels, bias=True)
    with torch.no_grad():
        weight = conv.weight.double() * a.view(-1, 1, 1, 1)
        bias = (conv.bias.double() * a if conv.bias is not None else 0) + c
        fused.weight.copy_(weight)
        cast(torch.Tensor, fused.bias).copy_(bias)
    return fused


def _conv_like(conv: Any, out_channels: int, bias: bool) -> nn.Conv2d:
    return nn.Conv2d(
        conv.in_channels,
        out_channels,
        conv.kernel_size,
        conv.stride,
        conv.padding,
        conv.dilation,
        conv.groups,
        bias=bias,
        padding_mode=conv.padding_mode,
        device=conv.weight.device,
        dtype=conv.weight.dtype,
    )


def fold_sequential(seq: nn.Sequential) -> int:
    """Fold, in place, every conv directly followed by a foldable BN inside ``seq`` (the BN becomes
    ``nn.Identity``, so indices and keys of the rest stay); returns how many pairs folded."""
    folded = 0
    names = list(seq._modules)
    for first, second in zip(names, names[1:]):
        fused = fold_conv_bn(seq._modules[first], seq._modules[second])
        if fused is not None:
            seq._modules[first], seq._modules[second] = fused, nn.Identity()
            folded += 1
    return folded


def _pair(conv: Any, bn: Any) -> nn.Module:
    fused = fold_conv_bn(conv, bn)
    return fused if fused is not None else nn.Sequential(conv, bn)


def _gate_logit(gate: Any) -> Optional[Tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """``(a * w (C,), c (1,), scale)`` of a foldable Salient gate in float64, or None."""
    if type(gate) is not SalientBlock or type(gate.gate) is not ScaledSigmoid or type(gate.conv) is not nn.Conv2d:
        return None
    affine = _eval_affine(gate.bn) if _foldable_norm(gate.bn) else None
    if affine is None:
        return None
    a, c = affine
    return a * gate.conv.weight.detach().double().reshape(-1), c, gate.gate.scale.detach()


class FoldedResidualBlock(nn.Module):
    """A residual block in deploy form: folded convs, the Salient gate as a 1-channel conv beside a conv.

    ``gate``: ``"none"`` (``post`` slot module, or Identity, then the shortcut add), ``"post"`` (``gate_conv``, on
    the last conv's input, gives the gate logit) or ``"mid"`` (``gate_conv`` beside conv3; ``branch_bias`` is BN3's
    shift, added after the product). Shapes: (N, C_in, H, W) -> (N, C_out, H', W') as the block it replaces.
    Inference only.
    """

    branch_bias: torch.Tensor
    gate_scale: torch.Tensor

    def __init__(
        self,
        branch: nn.Sequential,
        conv: nn.Module,
        channels: int,
        gate: str,
        post: nn.Module,
        downsample: nn.Module,
        act: nn.Module,
        gate_scale: torch.Tensor,
        branch_bias: torch.Tensor,
        gate_conv: Optional[nn.Module] = None,
    ) -> None:
        super().__init__()
        self.branch = branch
        self.conv = conv
        self.gate_conv = gate_conv if gate_conv is not None else nn.Identity()
        self.channels = channels
        self.gate = gate
        self.post = post
        self.downsample = downsample
        self.act = act
        self.register_buffer("gate_scale", gate_scale)
        self.register_buffer("branch_bias", branch_bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = self.downsample(x)
        h = self.branch(x)
        out = self.conv(h)
        scratch = False  # out is this call's own tensor and no autograd runs: the epilogue may write over it
        if not torch.jit.is_scripting():
            scratch = self._is_scratch(out, h, shortcut)
        if self.gate == "none":
            if not torch.jit.is_scripting():
                fused = self._post_epilogue(out, shortcut, scratch)
                if fused is not None:
                    return fused
            if scratch and isinstance(self.post, nn.Identity):
                return self.act(out.add_(shortcut))  # timm's `x += shortcut`
            return self.act(self.post(out) + shortcut)
        if not torch.jit.is_scripting() and scratch and self._logit_is_gemv():
            g = self._gate_gemv(h)
        else:
            g = self.gate_scale * torch.sigmoid(self.gate_conv(h))
        if scratch and g.dtype == out.dtype:  # one pass over the conv's own output (a folded model rounds as it folds)
            out = torch.addcmul(shortcut, out, g, out=out)
            if self.gate == "mid":
                out.add_(self.branch_bias.view(1, -1, 1, 1))
            return self.act(out)
        out = torch.addcmul(shortcut, out, g)
        if self.gate == "mid":
            out = out + self.branch_bias.view(1, -1, 1, 1)
        return self.act(out)

    @torch.jit.unused
    def _is_scratch(self, out: torch.Tensor, h: torch.Tensor, shortcut: torch.Tensor) -> bool:
        """Whether ``out`` (the last conv's output) may be written over: inference (``use_inference_epilogue``), a
        fresh tensor of the shortcut's shape and dtype that no hook on the conv (its own or a global one) could have
        kept, as ``SalientBlock.residual_epilogue`` asks of a norm's output."""
        if not use_inference_epilogue(out) or out is h or out.shape != shortcut.shape or out.dtype != shortcut.dtype:
            return False
        if global_module_hooks() or any(has_hooks(m) for m in self.conv.modules()):
            return False
        return out.data_ptr() != h.data_ptr()

    @torch.jit.unused
    def _logit_is_gemv(self) -> bool:
        """Whether the 1-channel gate conv is a plain 1x1 conv (Bottleneck blocks) no hook watches."""
        conv = self.gate_conv
        if type(conv) is not nn.Conv2d or has_hooks(conv) or conv.padding_mode != "zeros":
            return False
        plain = conv.stride == (1, 1) and conv.padding in ((0, 0), "valid") and conv.groups == 1
        return plain and conv.kernel_size == (1, 1) and conv.dilation == (1, 1)

    @torch.jit.unused
    def _gate_gemv(self, h: torch.Tensor) -> torch.Tensor:
        """``scale * sigmoid(gate_conv(h))`` with the 1x1 conv as one batched GEMV over h's rows (NCHW or
        channels_last, no copy), then in place: a 1-output-channel oneDNN conv costs 57-80 us a call at batch 1 on
        this CPU, the GEMV 9-34 us (issue 33)."""
        conv = cast(nn.Conv2d, self.gate_conv)
        n, c, height, width = h.shape
        weight = conv.weight.view(1, 1, c).expand(n, 1, c)
        bias = conv.bias if conv.bias is not None else torch.zeros(1, dtype=h.dtype, device=h.device)
        logit = torch.baddbmm(bias.view(1, 1, 1), weight, h.reshape(n, c, height * width))
        return logit.view(n, 1, height, width).sigmoid_().mul_(self.gate_scale)

    @torch.jit.unused
    def _post_epilogue(self, out: torch.Tensor, shortcut: torch.Tensor, scratch: bool) -> Optional[torch.Tensor]:
        """A Salient or SSA gate left in the post slot (SSA cannot fold): its residual epilogue, or None."""
        gate = epilogue_gate(self.post, self.act)
        if gate is None:
            return None
        return gate.residual_epilogue(out, lambda: shortcut, None, x_is_scratch=scratch)


def _resolve(ops: List[Any]) -> List[Optional[nn.Module]]:
    """A fold layout's ops with each ``(conv, norm)`` pair folded into one conv where it can fold."""
    return [_pair(*op) if isinstance(op, tuple) else op for op in ops]


def fold_residual_block(block: nn.Module, adapter: Any) -> Tuple[FoldedResidualBlock, List[str]]:
    """The deploy form of an eval-mode residual block whose row (``salient_timm.surgery.adapter.BlockAdapter``) has a
    ``fold_layout``, and a reason for each attention slot left as it is (``"post: SE (a global pool precedes the
    product)"``).

    Raises ``ReparameterizeError`` in training mode. The block itself is not changed."""
    if any(m.training for m in block.modules()):
        raise ReparameterizeError(
            "folding needs an eval-mode model (BatchNorm folds with its running statistics): call model.eval() first"
        )
    raw_ops, conv, bn, act = adapter.fold_layout(block)
    ops = _resolve(raw_ops)
    post: Optional[nn.Module] = adapter.post.module(block)
    mid: Optional[nn.Module] = adapter.mid.module(block)
    left: List[str] = []
    last: Optional[nn.Conv2d] = fold_conv_bn(conv, bn)  # with a bias; None where the pair cannot fold
    channels = int(conv.out_channels)
    gate, scale, branch_bias = "none", torch.ones((), dtype=conv.weight.dtype), torch.zeros(0, dtype=conv.weight.dtype)
    gate_conv: Optional[nn.Conv2d] = None
    dtype, device = conv.weight.dtype, conv.weight.device
    mid_logit = _gate_logit(mid) if mid is not None else None
    post_logit = _gate_logit(post) if post is not None else None
    if mid is not None:
        between = ops[ops.index(mid) + 1 :]
        reason = _mid_blocker(last, mid_logit, post, between)
        if reason is None:
            assert last is not None and mid_logit is not None
            last, gate_conv, branch_bias, scale = _fold_mid(last, mid_logit, channels)
            gate = "mid"
            ops = [op for op in ops if op is not mid]
        else:
            left.append(f"mid {type(mid).__name__}: {reason}")
    if post is not None:
        if post_logit is not None and last is not None and last.groups == 1:
            gate_conv, scale = _fold_post(last, post_logit, channels)
            gate, post = "post", None
        else:
            reason = "its product follows a global pool or a nonlinearity" if post_logit is None else "no plain conv"
            left.append(f"post {type(post).__name__}: {reason}")
    downsample = getattr(block, "downsample", None)
    if isinstance(downsample, nn.Sequential):
        fold_sequential(downsample)
    module = FoldedResidualBlock(
        nn.Sequential(*[op for op in ops if op is not None and not isinstance(op, nn.Identity)]),
        last if last is not None else nn.Sequential(conv, bn),
        channels,
        gate,
        post if post is not None else nn.Identity(),
        downsample if downsample is not None else nn.Identity(),
        act,
        scale.to(device=device, dtype=dtype).clone(),
        branch_bias.to(device=device, dtype=dtype),
        gate_conv,
    )
    return module, left


def _fold_mid(last: nn.Conv2d, logit: tuple, channels: int) -> Tuple[nn.Conv2d, nn.Conv2d, torch.Tensor, torch.Tensor]:
    """A mid gate folded after the folded conv ``last``: the conv without its norm's shift (the shift follows the
    gate as ``branch_bias``), the 1-channel gate conv reading the conv's input, the shift, and the gate's scale."""
    row, c, scale = logit
    folded = _conv_like(last, channels, bias=False)
    gate_conv = _conv_like(last, 1, bias=True)
    with torch.no_grad():
        folded.weight.copy_(last.weight)
        gate_conv.weight.copy_(row.view(1, -1, 1, 1))
        cast(torch.Tensor, gate_conv.bias).copy_(c.view(1))
    return folded, gate_conv, cast(torch.Tensor, last.bias).detach().clone(), scale


def _fold_post(last: nn.Conv2d, logit: tuple, channels: int) -> Tuple[nn.Conv2d, torch.Tensor]:
    """A post gate's logit ``row @ (last(x)) + c`` as one 1-channel conv on ``last``'s input (computed in fp64),
    and the gate's scale."""
    row, c, scale = logit
    weight = last.weight.double()
    bias = cast(torch.Tensor, last.bias).double()
    gate_conv = _conv_like(last, 1, bias=True)
    with torch.no_grad():
        gate_conv.weight.copy_((row.view(-1, 1) * weight.reshape(channels, -1)).sum(0).view(1, *weight.shape[1:]))
        cast(torch.Tensor, gate_conv.bias).copy_((row @ bias + c).view(1))
    return gate_conv, scale


def _mid_blocker(
    last: Optional[nn.Conv2d], logit: Optional[tuple], post: Optional[nn.Module], between: List[Optional[nn.Module]]
) -> Optional[str]:
    """Why a mid-slot gate cannot fold into the conv after it (``between``: the ops in between), or None if it can."""
    if logit is None:
        return "its product follows a global pool or a nonlinearity"
    if last is None:
        return "the conv after it does not fold with its norm"
    if last.kernel_size != (1, 1):
        k = "x".join(map(str, last.kernel_size))
        return f"a {k} conv follows its product (only a 1x1 conv commutes with a per-pixel gate)"
    if last.stride != (1, 1) or last.groups != 1:
        return "the conv after it is not a plain 1x1 stride-1 conv"
    blocker = next((op for op in between if op is not None and not isinstance(op, nn.Identity)), None)
    if blocker is not None:
        return f"a {type(blocker).__name__} (an anti-aliasing pool) sits between the gate and the conv after it"
    if post is not None:
        return "the post slot is filled too and only one gate folds into the last conv"
    return None
