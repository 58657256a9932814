"""Fused eager training path for the spatial gates: fewest full-size passes, exact math.

A spatial gate computes, for x of shape (N, C, H, W) and per-sample channel weights v (N or 1, C):

    s = sum_c v_c x_c                  # (N, 1, H, W)  saliency; v = w (Salient) or GAP(x)/C (SSA)
    g = gate(bn(s))                    # (N, 1, H, W)  BN + (scaled) sigmoid
    y = x * g                          # (N, C, H, W)

Plain autograd materialises several N·C·H·W temporaries in backward (``dy*x`` before its channel
sum, ``ds*w`` broadcast, ``ds*x`` before the weight's reduction, the sum of two ``dx`` terms).
``spatial_gate`` instead saves only x and the (N, 1, H, W) saliency, and computes

    dg = sum_c dy_c x_c                          # one read of dy and x, no N·C·H·W temporary
    ds, d(gate params) = autograd of the gate    # replayed on (N, 1, H, W) tensors only
    dx = dy * g  +  v ⊗ ds  [+ (dv_from_GAP / HW) ⊗ 1 for SSA]   # one product, then an in-place rank-1/2 GEMM
    dw = sum_{n,hw} ds * x                       # a GEMV (Salient)

On a residual block's post slot with a ReLU after the shortcut add (``slots``), the same function also
takes the shortcut: forward ``relu(shortcut + x * g)`` is one ``addcmul`` and an in-place ReLU instead of a
product, an add and a ReLU, and backward's ``threshold_backward`` gives the shortcut's gradient and ``dy`` at once.
There it also takes the branch's last BatchNorm (``norm``, x = norm(c)): it saves the norm's input c, which the
norm's own backward needs anyway, instead of x, and recomputes x = a * c + b (per-channel a, b from the batch
statistics of that forward) in backward. A gated block then keeps the same full-size tensors for backward as
the plain block (c, and the block's output for the ReLU) plus the (N, 1, H, W) maps. In backward, dx is written
over that recomputed x, and (CPU, fp32/fp64) the norm's input gradient over dx (``_norm_backward``).

Every reduction is a batched GEMV/GEMM over views of x, so it works on NCHW and channels_last
alike without copies; the incoming gradient may have any strides. It is exact up to float summation
order (fp64 tests against the seed's conv block, ``gradcheck``, ``gradgradcheck``).

The forward calls the gate's BatchNorm once, as plain ops do, and keeps no graph; the backward replays
the small gate with that forward's normalisation, so a checkpointed region recomputes once. Where the
fast backward cannot serve, the function differentiates the plain ops instead: ``create_graph=True``
(double backward) and batched grad_outputs. Forward-mode AD, ``torch.func`` transforms, TorchScript, FX,
``torch.compile``, ``torch.export`` and ONNX export never enter it (see ``use_fused``): they run the blocks'
plain ops, which they support, trace and fuse themselves. Under autocast (bf16/fp16) it follows autocast's
rules: the full-size GEMV and product in x's dtype (accumulating in fp32), the gate's BN and sigmoid in fp32.
"""

import contextlib
from typing import Callable, Optional, Sequence, Tuple, cast

import torch
import torch.autograd.forward_ad as fwAD
import torch.nn.functional as F
from torch import nn

__all__ = ["spatial_gate", "use_fused", "use_inference_epilogue", "residual_inference", "pixel_dot"]


def _is_channels_last(x: torch.Tensor) -> bool:
    return not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last)


def pixel_dot(x: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """``sum_c v[n, c] * x[n, c, h, w]`` -> (N, 1, H, W) as one batched GEMV; v is (N, C) or (1, C).

    ``x.reshape(N, C, H*W)`` is a view for NCHW and for channels_last, so neither layout is copied.
    """
    n, c, h, w = x.shape
    return torch.matmul(v.reshape(-1, 1, c), x.reshape(n, c, h * w)).view(n, 1, h, w)


def _channel_dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``sum_c a * b`` over dim 1 -> (N, 1, H, W); channels_last with C <= 512 as N·H·W row dot products
    (no N·C·H·W temporary; measured 2.7-5x faster there on CPU, slower than multiply + sum for larger C)."""
    n, c, h, w = a.shape
    if c <= 512 and _is_channels_last(a) and _is_channels_last(b):  # (NHW, 1, C) @ (NHW, C, 1)
        rows_a = a.permute(0, 2, 3, 1).reshape(-1, 1, c)
        rows_b = b.permute(0, 2, 3, 1).reshape(-1, c, 1)
        return torch.bmm(rows_a, rows_b).view(n, 1, h, w)
    return (a * b).sum(1, keepdim=True)


def _pixel_weighted_sum(x: torch.Tensor, ds: torch.Tensor) -> torch.Tensor:
    """``sum_hw ds[n, hw] * x[n, c, hw]`` -> (N, C), one GEMV per sample over x's contiguous rows."""
    n, c, h, w = x.shape
    if _is_channels_last(x):  # (N, 1, HW) @ (N, HW, C)
        return torch.bmm(ds, x.permute(0, 2, 3, 1).reshape(n, h * w, c)).view(n, c)
    return torch.bmm(x.reshape(n, c, h * w), ds.transpose(1, 2)).view(n, c)


def _add_outer_(dx: torch.Tensor, left: torch.Tensor, right: torch.Tensor) -> None:
    """In place ``dx[n] += left[n] @ right[n]`` with dx viewed as (N, C, HW); left (N|1, C, K), right (N, K, HW)."""
    n, c, h, w = dx.shape
    left = left.expand(n, c, left.shape[-1])
    if _is_channels_last(dx):  # (N, HW, C) is the contiguous view
        dx.permute(0, 2, 3, 1).view(n, h * w, c).baddbmm_(right.transpose(1, 2), left.transpose(1, 2))
    else:
        dx.view(n, c, h * w).baddbmm_(left, right)


def _batch_norm(s: torch.Tensor, stats: Optional[Tuple[torch.Tensor, torch.Tensor]], weight, bias, eps: float):
    """BatchNorm of the (N, 1, H, W) saliency without touching running statistics: batch statistics when
    ``stats`` is None (training, or no running stats), else the running (mean, var) captured at forward."""
    if stats is None:
        return F.batch_norm(s, None, None, weight, bias, True, 0.0, eps)
    return F.batch_norm(s, stats[0], stats[1], weight, bias, False, 0.0, eps)


def _norm_forward(norm: nn.BatchNorm2d, c: torch.Tensor):
    """``(norm(c), stats, batch_stats)`` with ``nn.BatchNorm2d.forward``'s own semantics (running statistics
    updated once with its momentum, ``num_batches_tracked``, ``momentum=None`` as a cumulative average,
    ``track_running_stats=False``), by ``torch.native_batch_norm``, which also returns what backward needs.

    ``stats``: (batch mean, 1/std) where the batch statistics normalise (``batch_stats``), else copies of the
    running (mean, var) this forward used."""
    momentum = 0.0 if norm.momentum is None else norm.momentum
    if norm.training and norm.track_running_stats and norm.num_batches_tracked is not None:
        norm.num_batches_tracked.add_(1)
        if norm.momentum is None:  # cumulative moving average
            momentum = 1.0 / float(norm.num_batches_tracked)
    batch_stats = norm.training or (norm.running_mean is None and norm.running_var is None)
    tracked = not norm.training or norm.track_running_stats
    running_mean, running_var = (norm.running_mean, norm.running_var) if tracked else (None, None)
    y, mean, invstd = torch.native_batch_norm(
        c, norm.weight, norm.bias, running_mean, running_var, batch_stats, momentum, norm.eps
    )
    if batch_stats:
        return y, (mean, invstd), True
    return y, (cast(torch.Tensor, running_mean).clone(), cast(torch.Tensor, running_var).clone()), False


def _invstd(stats, batch_stats: bool, eps: float) -> torch.Tensor:
    """1/std of the norm's forward: saved by it (batch statistics), or from the running variance it used."""
    return stats[1] if batch_stats else torch.rsqrt(stats[1] + eps)


def _norm_recompute(c: torch.Tensor, stats, weight, bias, batch_stats: bool, eps: float) -> torch.Tensor:
    """``norm(c)`` again, from the statistics of its forward: one per-channel ``addcmul`` in c's dtype."""
    mean, _ = stats
    scale = _invstd(stats, batch_stats, eps)
    if weight is not None:
        scale = scale * weight
    shift = -mean * scale if bias is None else bias - mean * scale
    shape = (1, -1, 1, 1)
    return torch.addcmul(shift.to(c.dtype).view(shape), c, scale.to(c.dtype).view(shape))


def _norm_backward(dx: torch.Tensor, c: torch.Tensor, weight, stats, batch_stats: bool, eps: float, mask):
    """``native_batch_norm_backward`` of ``norm(c)`` for the incoming gradient dx, this backward's own scratch tensor.

    On CPU in fp32/fp64 the input gradient is written over dx: the norm's input gradient is a per-channel
    ``a * dx + b * c + d`` (a, b, d from the statistics and the two channel sums the native kernel returns as the
    weight and bias gradients), two in-place passes instead of a fresh full-size tensor, whose page faults cost more
    than a pass on CPU. Elsewhere (CUDA's caching allocator makes a fresh tensor free; bf16/fp16 would round the
    two passes twice) the native kernel, as plain autograd runs it."""
    in_place = mask[0] and dx.device.type == "cpu" and dx.dtype in (torch.float32, torch.float64)
    running = (None, None) if batch_stats else stats
    # in place: only the channel sums sum(dx * c_hat) and sum(dx), which the kernel returns as the weight and bias
    # gradients
    grads = torch.ops.aten.native_batch_norm_backward(
        dx, c, weight, *running, *stats, batch_stats, eps, [False, True, True] if in_place else mask
    )
    if not in_place:
        return grads
    mean, d_weight, d_bias = stats[0], grads[1], grads[2]
    invstd = _invstd(stats, batch_stats, eps)
    scale = invstd if weight is None else invstd * weight  # d(norm(c))/dc with the statistics held fixed
    shape = (1, -1, 1, 1)
    if batch_stats:  # the statistics depend on c: dc = scale * (dx - mean(dx) - c_hat * mean(dx * c_hat))
        count = dx.numel() // dx.shape[1]
        c_coef = -scale * invstd * d_weight / count
        shift = -scale * d_bias / count - c_coef * mean
        torch.addcmul(shift.to(dx.dtype).view(shape), dx, scale.to(dx.dtype).view(shape), out=dx)
        dx.addcmul_(c, c_coef.to(dx.dtype).view(shape))
    else:  # running statistics: constants of c
        dx.mul_(scale.to(dx.dtype).view(shape))
    return (
        dx,
        d_weight if mask[1] else None,
        d_bias if mask[2] else None,
    )


def _norm_plain(c: torch.Tensor, stats, weight, bias, batch_stats: bool, eps: float) -> torch.Tensor:
    """``norm(c)`` in differentiable plain ops, with the forward's normalisation (running statistics untouched)."""
    if batch_stats:
        return F.batch_norm(c, None, None, weight, bias, True, 0.0, eps)
    return F.batch_norm(c, stats[0], stats[1], weight, bias, False, 0.0, eps)


def _autocast_off(device_type: str) -> contextlib.AbstractContextManager:
    """Autocast disabled for ``device_type`` where it is on; nothing otherwise (e.g. the meta device, which
    ``torch.autocast`` does not take)."""
    on = torch.amp.is_autocast_available(device_type) and torch.is_autocast_enabled(device_type)
    return torch.autocast(device_type, enabled=False) if on else contextlib.nullcontext()


def _norm_dtype(bn: nn.BatchNorm2d) -> torch.dtype:
    """The gate BN's own dtype (fp32 under autocast: its parameters and running statistics)."""
    for t in (bn.weight, bn.running_mean):
        if t is not None:
            return t.dtype
    return torch.get_default_dtype()


def _saliency(x: torch.Tensor, weight: Optional[torch.Tensor], dtype: torch.dtype):
    """``(v, s)``: the channel weights in x's dtype and ``s = sum_c v_c x_c`` (N, 1, H, W) in ``dtype``.

    Under autocast x is bf16/fp16: the GEMV reads it as it is (accumulating in fp32) and only the small map is
    cast, so BN and the sigmoid run in fp32, as autocast runs norms; the product stays in x's dtype."""
    c = x.shape[1]
    v = x.mean((2, 3)) * (1.0 / c) if weight is None else weight.reshape(1, c).to(x.dtype)  # = blocks.gap_over_channels
    return v, pixel_dot(x, v).to(dtype)


class _SpatialGateFn(torch.autograd.Function):
    """y = x * gate(bn(pixel_dot(x, v))); v = weight (Salient) or GAP(x)/C (SSA, weight None).

    With a ``shortcut``, the block's residual epilogue too: ``relu(shortcut + y)`` as one ``addcmul`` and an
    in-place ReLU, and in backward one ``threshold_backward`` whose result is the shortcut's gradient.

    Forward calls ``bn`` once (its running statistics update exactly as in plain ops) and keeps no graph.
    Backward replays the (N, 1, H, W) gate from the saved saliency with ``bn``'s statistics of that forward,
    so nothing in the saved state re-enters a checkpointed region, and with ``create_graph`` it recomputes
    the whole gate in plain ops (twice differentiable, as autograd would be).
    """

    @staticmethod
    def forward(ctx, x, weight, bn, gate, bn_weight, bn_bias, shortcut, norm, norm_weight, norm_bias):
        c, norm_stats = x, (None, None)  # the norm's input where the function takes the norm (then x = norm(c))
        with _autocast_off(x.device.type):  # explicit dtypes (autocast's rules, see _saliency)
            if norm is not None:
                x, norm_stats, ctx.norm_batch_stats = _norm_forward(norm, c)
                ctx.norm_eps = norm.eps
            v, s = _saliency(x, weight, _norm_dtype(bn))
            batch_stats = bn.training or bn.running_mean is None
            stats = None if batch_stats else (bn.running_mean.clone(), bn.running_var.clone())
            g = gate(bn.forward(s)).to(x.dtype)  # the one call that updates the running statistics
            if shortcut is None:
                y = x * g
            else:  # x = norm(c) is this function's own tensor (nothing saves it): the sum overwrites it, as
                # timm's `x += shortcut` does, instead of allocating a full-size output
                own_x = norm is not None and shortcut.dtype == x.dtype and shortcut.shape == x.shape
                y = torch.addcmul(shortcut, x, g, out=x if own_x else None).relu_()
        saved_v = v if weight is None else None  # SSA: v (N, C)
        saved_x, saved_c = (x, None) if norm is None else (None, c)  # with the norm: c, and x recomputed
        saved_out = None if shortcut is None else y
        norm_saved = (norm_weight, norm_bias, *norm_stats)
        ctx.save_for_backward(saved_x, weight, s, bn_weight, bn_bias, saved_v, saved_out, saved_c, *norm_saved)
        ctx.stats, ctx.eps, ctx.gate, ctx.norm_dtype = stats, bn.eps, gate, s.dtype
        ctx.shortcut_dtype = None if shortcut is None else shortcut.dtype
        return y

    @staticmethod
    def backward(ctx, dy):
        x, weight, s, bn_weight, bn_bias, v, out, c, norm_weight, norm_bias, *norm_stats = ctx.saved_tensors
        d_shortcut = None
        if out is not None:  # through the ReLU: the gradient of the sum, so of the shortcut and of x * g
            dy = torch.ops.aten.threshold_backward(dy, out, 0)  # differentiable in dy, as autograd's own
            d_shortcut = dy.to(ctx.shortcut_dtype) if ctx.needs_input_grad[6] else None
        if torch.is_grad_enabled() or _batched(dy):
            # create_graph=True (the grads must be differentiable) or batched grad_outputs
            # (autograd.grad(is_grads_batched=True), jacobian(vectorize=True)): differentiate the plain ops
            norm = (c, norm_weight, norm_bias, norm_stats)
            grads = _SpatialGateFn._plain_backward(ctx, dy, x, weight, bn_weight, bn_bias, *norm)
            return grads[:6] + (d_shortcut, None) + grads[6:]
        with _autocast_off(dy.device.type):
            if c is None:
                needs_x = ctx.needs_input_grad[0]
                grads = _SpatialGateFn._fast_backward(ctx, dy, x, weight, s, bn_weight, bn_bias, v, needs_x)
                return grads + (d_shortcut, None, None, None)
            need_norm = ctx.needs_input_grad[0] or any(ctx.needs_input_grad[8:10])
            x = _norm_recompute(c, norm_stats, norm_weight, norm_bias, ctx.norm_batch_stats, ctx.norm_eps)
            grads = _SpatialGateFn._fast_backward(ctx, dy, x, weight, s, bn_weight, bn_bias, v, need_norm, True)
            del x
            norm_grads: Tuple[Optional[torch.Tensor], ...] = (None, None, None)
            if need_norm:
                mask = [ctx.needs_input_grad[0], norm_weight is not None and ctx.needs_input_grad[8]]
                mask.append(norm_bias is not None and ctx.needs_input_grad[9])
                norm_grads = _norm_backward(
                    grads[0], c, norm_weight, norm_stats, ctx.norm_batch_stats, ctx.norm_eps, mask
                )
            return (norm_grads[0],) + grads[1:] + (d_shortcut, None, norm_grads[1], norm_grads[2])

    @staticmethod
    def _fast_backward(ctx, dy, x, weight, s, bn_weight, bn_bias, v, needs_x, x_is_scratch=False):
        """Full-size work in x's dtype (GEMMs accumulate in fp32), the (N, 1, H, W) gate in the norm's dtype.
        ``x_is_scratch``: x was recomputed for this backward alone, so dx is written over it once x's own reads
        are done (one full-size allocation fewer; on CPU a fresh large tensor costs page faults, more than a pass)."""
        n, c, h, w = x.shape
        dy = dy.to(x.dtype)
        needs_w = ctx.needs_input_grad[1]
        params = (bn_weight, bn_bias)
        wanted = [p for p, need in zip(params, ctx.needs_input_grad[4:6]) if need]
        with torch.enable_grad():  # the small gate graph, on (N, 1, H, W) tensors only
            s_leaf = s.detach().requires_grad_()
            g = ctx.gate(_batch_norm(s_leaf, ctx.stats, bn_weight, bn_bias, ctx.eps))
        grads = torch.autograd.grad(g, [s_leaf, *wanted], _channel_dot(dy, x).to(g.dtype))
        g = g.detach().to(x.dtype)
        ds = grads[0].reshape(n, 1, h * w).to(x.dtype)
        by_param = iter(grads[1:])
        param_grads = tuple(next(by_param) if need else None for need in ctx.needs_input_grad[4:6])
        dw = left = None
        if weight is None:  # s = sum_c v_c x_c with v = mean_hw(x) / C: ds also reaches x through v
            if needs_x:  # v saved by forward: no second pass over x
                dv = _pixel_weighted_sum(x, ds).view(n, c, 1)
                left = torch.cat([v.view(n, c, 1), dv * (1.0 / (c * h * w))], dim=2)
                ds = torch.cat([ds, torch.ones_like(ds)], dim=1)
        else:
            if needs_w:  # sum over n and hw of ds * x
                dw = _pixel_weighted_sum(x, ds).sum(0, dtype=weight.dtype).view_as(weight)
            left = weight.reshape(1, c, 1).to(x.dtype)
        if not needs_x:
            return (None, dw, None, None) + param_grads
        # x's reads are done. dy may have any strides (transposed, expanded...); dx takes x's layout for the GEMMs
        dx = torch.mul(dy, g, out=x if x_is_scratch else torch.empty_like(x))
        _add_outer_(dx, left, ds)
        return (dx, dw, None, None) + param_grads

    @staticmethod
    def _plain_backward(ctx, dy, x, weight, bn_weight, bn_bias, c, norm_weight, norm_bias, norm_stats):
        """Gradients of x * gate(...) by autograd of the plain ops: for the first six inputs, then (with the norm,
        x = norm(c)) for the norm's weight and bias; the first is then c's gradient."""
        create_graph = torch.is_grad_enabled()
        with torch.enable_grad(), _autocast_off(dy.device.type):
            if c is not None:
                x = _norm_plain(c, norm_stats, norm_weight, norm_bias, ctx.norm_batch_stats, ctx.norm_eps)
            _, s = _saliency(x, weight, ctx.norm_dtype)
            y = x * ctx.gate(_batch_norm(s, ctx.stats, bn_weight, bn_bias, ctx.eps)).to(x.dtype)
        inputs = (x if c is None else c, weight, None, None, bn_weight, bn_bias, norm_weight, norm_bias)
        needs = ctx.needs_input_grad[:6] + ctx.needs_input_grad[8:10]
        needs = tuple(need and t is not None for t, need in zip(inputs, needs))
        wanted = [t for t, need in zip(inputs, needs) if need]
        grads = iter(torch.autograd.grad(y, wanted, dy.to(y.dtype), create_graph=create_graph, allow_unused=True))
        return tuple(next(grads) if need else None for need in needs)


def _batched(t: torch.Tensor) -> bool:
    return torch._C._functorch.is_batchedtensor(t) or torch._C._functorch.is_legacy_batchedtensor(t)


def _transformed(tensors: Sequence[Optional[torch.Tensor]]) -> bool:
    """Whether a torch.func transform (grad, vmap, jvp...) is active or any tensor carries a forward-AD tangent."""
    if torch._C._functorch.peek_interpreter_stack() is not None:
        return True
    return any(t is not None and fwAD.unpack_dual(t).tangent is not None for t in tensors)


def _traced(x: torch.Tensor) -> bool:
    """Whether a tracer, compiler or exporter sees this call (FX, ``torch.compile``, ``torch.export``, JIT trace,
    ONNX export): they record or fuse the blocks' plain ops themselves."""
    if not isinstance(x, torch.Tensor) or torch.fx._symbolic_trace.is_fx_symbolic_tracing():
        return True  # an FX proxy: trace the plain ops
    if torch.compiler.is_compiling() or torch.compiler.is_exporting() or torch.jit.is_tracing():
        return True
    return torch.onnx.is_in_onnx_export()


def use_fused(x: torch.Tensor, params: Sequence[Optional[torch.Tensor]]) -> bool:
    """Whether the fused path applies: eager reverse-mode autograd that will run backward (autocast included), no
    tracer, no torch.func transform or forward-mode AD, no anomaly detection (those take the plain ops, which
    support them)."""
    if _traced(x):
        return False
    if torch.is_anomaly_enabled():  # anomaly mode traces a NaN to the forward line that made it: the module's own
        return False
    if not torch.is_grad_enabled() or x.dim() != 4:
        return False
    if not (x.requires_grad or any(p is not None and p.requires_grad for p in params)):
        return False
    if x.layout != torch.strided or _transformed((x, *params)):
        return False
    return x.is_contiguous() or _is_channels_last(x)


def use_inference_epilogue(x: torch.Tensor, params: Sequence[Optional[torch.Tensor]] = ()) -> bool:
    """Whether ``residual_inference`` applies: grad mode off (``no_grad``, ``inference_mode``), plain eager (no
    tracer, compiler, exporter, torch.func transform or forward-mode tangent), a strided 4-D tensor."""
    if torch.is_grad_enabled() or _traced(x) or x.dim() != 4 or x.layout != torch.strided:
        return False
    return not _transformed((x, *params))


def residual_inference(x: torch.Tensor, g: torch.Tensor, shortcut: torch.Tensor, x_is_scratch: bool) -> torch.Tensor:
    """``relu(shortcut + x * g)`` without autograd, in the plain ops' order and rounding (the product, then the add,
    then the ReLU: bitwise what the block's plain ops, TorchScript and FX compute; an ``addcmul`` would save a pass,
    0.6 ms of 2.6 at batch 8 in layer1 on CPU, but rounds once, and deep ResNets amplify that to 1e-2 in their
    logits), written over x where x is the caller's scratch tensor (nothing else reads it: a norm's or conv's fresh
    output), as timm's ``x += shortcut`` writes over its norm's output; else the product is the one fresh tensor.
    Shapes: x and shortcut (N, C, H, W), g (N, 1, H, W); dtypes promote as ``x * g + shortcut`` does."""
    over_x = x_is_scratch and shortcut.shape == x.shape and x.dtype == shortcut.dtype == g.dtype
    y = torch.mul(x, g, out=x) if over_x else torch.mul(x, g)
    y = y.add_(shortcut) if torch.result_type(y, shortcut) == y.dtype and y.shape == shortcut.shape else y + shortcut
    return y.relu_()


def spatial_gate(
    x: torch.Tensor,
    weight: Optional[torch.Tensor],
    bn: nn.BatchNorm2d,
    gate: Callable[[torch.Tensor], torch.Tensor],
    shortcut: Optional[torch.Tensor] = None,
    norm: Optional[nn.BatchNorm2d] = None,
) -> torch.Tensor:
    """Fused ``x * gate(bn(sum_c v_c x_c))`` (see module docstring); ``weight`` (C,) or ``None`` for SSA's GAP(x)/C.

    With ``shortcut`` (same shape as x): the residual block's epilogue as well, ``relu(shortcut + x * gate)``.
    With ``norm`` (a C-channel ``nn.BatchNorm2d``, exactly that type): x is the norm's input and the gate reads
    ``norm(x)``; the norm runs once, as its own forward would (running statistics included).
    ``bn`` is a 1-channel ``nn.BatchNorm2d`` (called once per forward, as plain ops would); ``gate`` a pure
    elementwise function (``ScaledSigmoid.forward``). Shapes: x (N, C, H, W) contiguous or channels_last.
    """
    norm_params = (None, None) if norm is None else (norm.weight, norm.bias)
    return _SpatialGateFn.apply(x, weight, bn, gate, bn.weight, bn.bias, shortcut, norm, *norm_params)
