"""Full cost accounting on top of torch's own ``FlopCounterMode``.

Convention (stated in every report):
- **MACs**: multiply-accumulates of conv / linear / matmul (torch counts 2 FLOPs per MAC;
  bias adds are not counted, as in torch's counter).
- **elementwise ops**: 1 per output element for BN, activations, sigmoid, the broadcast
  multiply and the residual add (2 for ``addcmul``, the folded gate's multiply + add); 1 per input
  element for mean / adaptive pooling; k*k per output element for max / avg pooling windows.
- **FLOPs** = 2 * MACs + elementwise ops.

Counting runs the model once under ``torch.no_grad()`` in eval mode (the caller's train /
eval flags are restored), on whatever device the model lives on; the meta device works
and allocates nothing. No hooks or buffers are left behind.
"""

import contextlib
import math
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Callable, Dict, Iterable, Iterator, List, Tuple

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count

from salient_timm import attention_modules
from salient_timm.checks import explain_forward_errors
from salient_timm.module_mode import training_mode

from .recurrent import AllStepsLSTM

__all__ = [
    "eval_forward",
    "MAC_OPS",
    "MAC_FORMULAS",
    "ELEMENTWISE_FORMULAS",
    "OpCount",
    "VIEW_OPS",
    "COPY_OPS",
    "FREE_OPS",
    "CostReport",
    "count_cost",
    "count_params",
    "ParamReport",
]

aten = torch.ops.aten
# Ops torch's counter already knows: counted as 2 FLOPs per MAC.
MAC_OPS = frozenset(
    {
        aten.convolution,
        aten._convolution,
        aten.addmm,
        aten.mm,
        aten.bmm,
        aten.baddbmm,
        aten.matmul,
        aten._scaled_dot_product_flash_attention,
        aten._scaled_dot_product_efficient_attention,
        aten._scaled_dot_product_cudnn_attention,
        aten.convolution_backward,
        aten._scaled_dot_product_flash_attention_for_cpu,
        aten.mkldnn_rnn_layer,
    }
)


def _numel(shape) -> int:
    return math.prod(shape) if shape is not None else 0


def _per_output(*args, out_shape=None, **kwargs) -> int:
    return _numel(out_shape)


def _two_per_output(*args, out_shape=None, **kwargs) -> int:
    return 2 * _numel(out_shape)


def _first_output(*args, out_shape=None, **kwargs) -> int:
    """Ops that return (out, indices/stats): count the first output's elements."""
    return _numel(out_shape[0])


def _per_input(x_shape, *args, **kwargs) -> int:
    return _numel(x_shape)


def _window(x_shape, kernel_size, *args, out_shape=None, **kwargs) -> int:
    """k_h * k_w per output element; max_pool2d_with_indices returns (out, indices) shapes."""
    out = out_shape[0] if isinstance(out_shape[0], tuple) else out_shape
    k = tuple(kernel_size) if isinstance(kernel_size, (list, tuple)) else (kernel_size,)
    return _numel(out) * math.prod(k * 2 if len(k) == 1 else k)


def _sdpa_cpu(query, key, value, *args, out_shape=None, **kwargs) -> int:
    """The CPU kernel of ``F.scaled_dot_product_attention``: its two matmuls, as torch's formula for the CUDA ones."""
    return sdpa_flop_count(query, key, value)


def _mkldnn_rnn_layer(x, weight0, weight1, *args, out_shape=None, **kwargs) -> int:
    """One layer and direction of a CPU LSTM/GRU: per step and sequence, the input and hidden GEMMs of all gates
    (weight0: gates*H x I, weight1: gates*H x H), as the meta device's per-step addmm ops count them."""
    hidden_size = args[7] if len(args) > 7 else kwargs["hidden_size"]
    steps = _numel(out_shape[0]) // hidden_size
    return 2 * steps * (_numel(weight0) + _numel(weight1))


# Ops that run as one kernel on some devices and as counted parts on others (the meta device, which
# salient-analyze builds on, decomposes them): 2 FLOPs per MAC, so a count is the same on every device.
MAC_FORMULAS: Dict[object, Callable[..., int]] = {
    aten._scaled_dot_product_flash_attention_for_cpu: _sdpa_cpu,
    aten.mkldnn_rnn_layer: _mkldnn_rnn_layer,
}

# op -> count formula (torch passes tensor args as shapes and the output shape as out_shape).
# Adding an op means adding a row here.
ELEMENTWISE_FORMULAS: Dict[object, Callable[..., int]] = {
    **{
        op: _per_output
        for op in (
            aten.relu,
            aten.relu_,
            aten.sigmoid,
            aten.sigmoid_,
            aten.hardsigmoid,
            aten.hardsigmoid_,
            aten.silu,
            aten.silu_,
            aten.gelu,
            aten.tanh,
            aten.tanh_,
            aten.hardswish,
            aten.hardswish_,
            aten.leaky_relu,
            aten.leaky_relu_,
            aten.elu,
            aten.softmax,
            aten._softmax,
            aten._safe_softmax,
            aten.exp,
            aten.neg,
            aten.sqrt,
            aten.rsqrt,
            aten.add,
            aten.add_,
            aten.sub,
            aten.sub_,
            aten.mul,
            aten.mul_,
            aten.div,
            aten.div_,
            aten.maximum,
            aten.minimum,
            aten.where,
            aten.clamp,
            aten.clamp_,
        )
    },
    **{op: _two_per_output for op in (aten.addcmul, aten.addcmul_)},  # a multiply and an add per element
    **{
        op: _first_output
        for op in (
            aten.native_batch_norm,
            aten._native_batch_norm_legit,
            aten._native_batch_norm_legit_no_training,
            aten.cudnn_batch_norm,
            aten.miopen_batch_norm,
            aten.native_layer_norm,
            aten.native_group_norm,
        )
    },
    **{
        op: _per_input
        for op in (
            aten.mean,
            aten.sum,
            aten.amax,
            aten.amin,
            aten.max,
            aten._adaptive_avg_pool2d,
            aten.adaptive_max_pool2d,
        )
    },
    **{op: _window for op in (aten.max_pool2d_with_indices, aten.avg_pool2d, aten.max_pool2d)},
}
# Ops that only reinterpret metadata or allocate: no data moves, nothing is computed.
VIEW_OPS = frozenset(
    {
        aten.view,
        aten._unsafe_view,
        aten._reshape_alias,
        aten.reshape,
        aten.t,
        aten.transpose,
        aten.permute,
        aten.expand,
        aten.squeeze,
        aten.unsqueeze,
        aten.flatten,
        aten.detach,
        aten.alias,
        aten.as_strided,
        aten.select,
        aten.slice,
        aten.split,
        aten.split_with_sizes,
        aten.unsafe_split,
        aten.unbind,
        aten.chunk,
        aten.lift_fresh,
        aten.empty,
        aten.empty_like,
        aten.empty_strided,
        aten.new_empty,
        aten.new_empty_strided,
    }
)
# Ops that write data (copies, fills, concatenation) but compute nothing.
COPY_OPS = frozenset(
    {
        aten.clone,
        aten.contiguous,
        aten.copy_,
        aten._to_copy,
        aten.cat,
        aten.stack,
        aten.pad,
        aten.constant_pad_nd,
        aten.zeros,
        aten.zeros_like,
        aten.new_zeros,
        aten.ones,
        aten.ones_like,
        aten.new_ones,
        aten.full,
        aten.full_like,
        aten.new_full,
        aten.fill_,
        aten.zero_,
        aten.scalar_tensor,
        aten._local_scalar_dense,
        aten.randn,
    }
)
FREE_OPS = VIEW_OPS | COPY_OPS


@dataclass
class OpCount:
    """Counts for one module (or the whole model): MACs, elementwise ops, and per-op detail."""

    macs: int = 0
    elementwise: int = 0
    by_op: Dict[str, int] = field(default_factory=dict)

    @property
    def flops(self) -> int:
        return 2 * self.macs + self.elementwise


@dataclass
class CostReport:
    """Result of ``count_cost``: totals, per-module counts (qualified names), and what was not counted."""

    input_shape: Tuple[int, ...]
    total: OpCount
    modules: Dict[str, OpCount]
    uncounted_ops: List[str]

    def module(self, name: str) -> OpCount:
        """Counts of the module ``name``; a container that is never called itself (a ``ModuleList``, e.g. HRNet's
        ``transition1``) sums its outermost called descendants."""
        if name in self.modules or not name:
            return self.modules.get(name, OpCount())
        called = [k for k in self.modules if k.startswith(name + ".")]
        outer = [k for k in called if not any(k.startswith(o + ".") for o in called)]
        total = OpCount()
        for k in outer:
            count = self.modules[k]
            total.macs += count.macs
            total.elementwise += count.elementwise
            for op, n in count.by_op.items():
                total.by_op[op] = total.by_op.get(op, 0) + n
        return total


def _op_name(op) -> str:
    return str(op).replace("aten.", "aten::")


@contextlib.contextmanager
def frozen_parameters(model: nn.Module) -> Iterator[None]:
    """Every parameter with ``requires_grad=False`` for the duration (restored after). Under ``no_grad`` a view of a
    parameter (CaiT's and PiT's expanded class token) still requires grad but has no grad_fn, and torch's module
    tracker (FlopCounterMode's) fails on a module that takes one as input; frozen, nothing requires grad."""
    flags = [(p, p.requires_grad) for p in model.parameters()]
    try:
        for p, _ in flags:
            p.requires_grad_(False)
        yield
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)


def eval_forward(model: nn.Module, input_shape: Iterable[int], *contexts) -> None:
    """One forward of a zero input in eval mode under ``no_grad`` (and ``contexts``), on the
    model's device and dtype; every module's train/eval flag is restored afterwards."""
    ref = next(iter(model.parameters()), None)
    x = torch.zeros(
        tuple(input_shape), device=ref.device if ref is not None else None, dtype=ref.dtype if ref is not None else None
    )
    with contextlib.ExitStack() as stack:
        stack.enter_context(training_mode(model, False))
        stack.enter_context(explain_forward_errors(model, x.shape))
        stack.enter_context(torch.no_grad())
        stack.enter_context(frozen_parameters(model))
        for ctx in contexts:
            stack.enter_context(ctx)
        model(x)


def count_cost(model: nn.Module, input_shape: Iterable[int]) -> CostReport:
    """Count MACs and elementwise ops of one eval-mode forward on a zero input of ``input_shape``.

    Returns totals and a per-module breakdown keyed by qualified module name ("" is the
    whole model, "layer1.0.se" an attention block, ...).
    """
    input_shape = tuple(int(s) for s in input_shape)
    seen: Dict[object, int] = defaultdict(int)
    counter = FlopCounterMode(display=False, custom_mapping={**ELEMENTWISE_FORMULAS, **MAC_FORMULAS})
    eval_forward(model, input_shape, _OpSpy(seen), counter, AllStepsLSTM())  # an LSTM on meta: all steps at once

    root = type(model).__name__
    modules: Dict[str, OpCount] = {}
    for name, per_op in counter.get_flop_counts().items():
        if name == "Global":
            key = ""
        elif name == root:
            continue
        else:
            key = name[len(root) + 1 :] if name.startswith(root + ".") else name
        modules[key] = _to_count(per_op)
    uncounted = sorted(
        _op_name(op) for op in seen if op not in ELEMENTWISE_FORMULAS and op not in MAC_OPS and op not in FREE_OPS
    )
    return CostReport(input_shape, modules.get("", OpCount()), modules, uncounted)


def _to_count(per_op: Dict[object, int]) -> OpCount:
    count = OpCount(by_op={_op_name(op): int(n) for op, n in per_op.items()})
    for op, n in per_op.items():
        if op in MAC_OPS:
            count.macs += int(n) // 2
        else:
            count.elementwise += int(n)
    return count


class _OpSpy(TorchDispatchMode):
    """Notes the overload packet of every op dispatched (nothing is changed)."""

    def __init__(self, seen: Dict[object, int]) -> None:
        super().__init__()
        self.seen = seen

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.seen[func._overloadpacket] += 1
        return func(*args, **(kwargs or {}))


@dataclass
class ParamReport:
    """Parameter and buffer counts, total and per top-level child (stem parts, stages, head)."""

    params: int
    buffers: int
    float_buffers: int
    per_child: Dict[str, int]
    attention_params: int


def count_params(model: nn.Module) -> ParamReport:
    """Count parameters (total, per top-level child, in attention slots) and buffers."""
    per_child = {name: sum(p.numel() for p in child.parameters()) for name, child in model.named_children()}
    buffers = list(model.buffers())
    return ParamReport(
        params=sum(p.numel() for p in model.parameters()),
        buffers=sum(b.numel() for b in buffers),
        float_buffers=sum(b.numel() for b in buffers if b.is_floating_point()),
        per_child={k: v for k, v in per_child.items() if v},
        attention_params=sum(p.numel() for _, m in attention_modules(model) for p in m.parameters()),
    )
