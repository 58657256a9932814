"""What a FLOP count hides: bytes moved and memory saved for backward, per op and per module.

``count_traffic(model, input_shape, train=True)`` runs one forward (and, for ``train``, the backward
of ``out.sum()``) under a dispatch mode and records, for every aten op autograd actually runs:

- MACs (torch's own formulas, ``torch.utils.flop_counter.flop_registry``, plus in-place GEMMs, and the backward
  of grouped and depthwise convolutions, which torch counts as dense: ``EXTRA_MAC_FORMULAS``) and
  elementwise ops (``counting.ELEMENTWISE_FORMULAS``, with the backward rows below);
- bytes read: every tensor input at its dtype, each *distinct* element once (a broadcast
  ``expand`` is read as the tensor it views); bytes written: every tensor output. View ops move
  nothing and are skipped; copies (``copy_``, ``cat``, ``clone``) move bytes but compute nothing;
- in the forward pass, the bytes autograd saves for backward (``saved_tensors_hooks``; each storage
  counted once, parameters and buffers excluded: they exist anyway).

Costs are attributed to every module active when the op runs (``torch.utils.module_tracker``, the
machinery of torch's ``FlopCounterMode``), so a stage includes its blocks. Runs on the meta device
(nothing allocated) or a real one; the caller's train/eval flags are restored.
Activation count (``macts``) follows fvcore's ``ActivationCountAnalysis`` and timm's benchmark CSV:
output elements of conv / linear / matmul ops in the forward pass.

``fvcore_terms``: what fvcore's ``FlopCountAnalysis`` (and so timm's ``benchmark.py``, ``infer_gmacs``) adds to the
MACs of the forward, caught at the ``torch.nn.functional`` level where fvcore's TorchScript trace sees them
(``FVCORE_TERMS``; fvcore 0.1.5's ``jit_handles``, ``_DEFAULT_SUPPORTED_OPS``):

| call | fvcore counts |
|---|---|
| ``F.batch_norm``, eval | 2 per input element with an affine, else 1 |
| ``F.batch_norm``, training (NF nets' weight standardisation) | 5 per input element with an affine, else 4 |
| ``F.group_norm``, ``F.layer_norm``, ``F.instance_norm`` | 5 per input element with an affine, else 4 |
| ``F.adaptive_avg_pool2d`` (1d and 3d: no fvcore rule) | 1 per input element |
| ``F.interpolate`` of a 4-D input: ``nearest`` / ``bilinear`` / ``area`` | 1 / 4 per output element / 1 per input |
| ``F.grid_sample`` | 4 per output element |

``fvcore_unseen_macs`` / ``fvcore_unseen_activations``: what we count and fvcore's trace cannot see, so timm's CSV
leaves out (``FVCORE_UNSEEN``): a convolution with string padding (``padding="same"``: traced as
``aten::_convolution_mode``, which fvcore has no rule for; convmixer's depthwise convs) and recurrent layers
(``aten::lstm``, ``aten::gru``, ``aten::rnn_*``; sequencer's LSTMs).
"""

import contextlib
import math
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Callable, Dict, Iterable, Optional, Tuple, cast

import torch
from torch import nn
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import conv_flop_count, flop_registry, shape_wrapper
from torch.utils.module_tracker import ModuleTracker

from salient_timm.errors import SalientError
from salient_timm.module_mode import training_mode

from .counting import (
    COPY_OPS,
    ELEMENTWISE_FORMULAS,
    MAC_FORMULAS,
    VIEW_OPS,
    _first_output,
    _per_output,
    frozen_parameters,
)

__all__ = [
    "TrainCountError",
    "Cost",
    "ModuleTraffic",
    "TrafficReport",
    "count_traffic",
    "BACKWARD_FORMULAS",
    "VIEW_OPS",
]

aten = torch.ops.aten


class TrainCountError(SalientError, ValueError):
    """The model cannot run a training step at this input (BatchNorm over a single value)."""


# Backward ops: the same convention as the forward rows (1 op per element of the first output).
BACKWARD_FORMULAS: Dict[object, Callable[..., int]] = {
    **{
        op: _per_output
        for op in (
            aten.threshold_backward,
            aten.sigmoid_backward,
            aten.silu_backward,
            aten.gelu_backward,
            aten.hardsigmoid_backward,
            aten.hardswish_backward,
            aten.tanh_backward,
            aten.leaky_relu_backward,
            aten.avg_pool2d_backward,
            aten.max_pool2d_with_indices_backward,
            aten._adaptive_avg_pool2d_backward,
            aten._softmax_backward_data,
            aten._log_softmax_backward_data,
            aten.addcmul_,
            aten.addcdiv_,
        )
    },
    **{
        op: _first_output
        for op in (
            aten.native_batch_norm_backward,
            aten.native_layer_norm_backward,
            aten.native_group_norm_backward,
        )
    },
}


def _conv_backward_flops(grad_out, x, w, _bias, _stride, _padding, _dilation, transposed, *args, out_val=None, **kw):
    """``convolution_backward``: each requested gradient (input, weight) costs the forward's multiplies, for any
    ``groups``. torch's own formula counts the weight gradient of a grouped conv as if it were dense (``groups``
    times too many: 33x the forward for ``Conv2d(groups=32)``); the forward's formula (``conv_flop_count``) reads
    the grouped weight shape, so it is right."""
    output_mask = args[2] if len(args) > 2 else kw["output_mask"]
    forward = conv_flop_count(list(x.shape), list(w.shape), list(grad_out.shape), transposed)
    return forward * (int(bool(output_mask[0])) + int(bool(output_mask[1])))


# Our rules where torch's registry has none (in-place GEMMs) or a wrong one (grouped conv backward); 2 FLOPs per MAC,
# like the registry. Checked before the registry.
EXTRA_MAC_FORMULAS = {
    aten.baddbmm_: flop_registry[aten.baddbmm],
    aten.convolution_backward: _conv_backward_flops,
    **{op: shape_wrapper(formula) for op, formula in MAC_FORMULAS.items()},
}
# Output elements of these forward ops are fvcore's / timm's "activations".
ACTIVATION_OPS = frozenset({aten.convolution, aten._convolution, aten.addmm, aten.mm, aten.bmm, aten.baddbmm})


def _sdpa_cpu_activations(args, out) -> int:
    """The outputs of the two matmuls the meta device decomposes attention into: scores (B,h,L,S) and (B,h,L,E)."""
    query, key = args[0], args[1]
    return query.shape[:-1].numel() * key.shape[-2] + out[0].numel()


def _mkldnn_rnn_activations(args, out) -> int:
    """The outputs of the per-step input and hidden GEMMs (B x gates*H each) the meta device decomposes into."""
    steps = out[0].numel() // args[10]
    return 2 * steps * args[1].shape[0]


# Forward ops that run as one kernel here and as activation ops on the meta device: their activations.
ACTIVATION_FORMULAS: Dict[object, Callable[..., int]] = {
    aten._scaled_dot_product_flash_attention_for_cpu: _sdpa_cpu_activations,
    aten.mkldnn_rnn_layer: _mkldnn_rnn_activations,
}


@dataclass
class Cost:
    """MACs, elementwise ops and bytes read / written of a set of ops."""

    macs: int = 0
    elementwise: int = 0
    read: int = 0
    written: int = 0

    @property
    def flops(self) -> int:
        return 2 * self.macs + self.elementwise

    @property
    def bytes(self) -> int:
        return self.read + self.written

    def add(self, other: "Cost") -> None:
        self.macs += other.macs
        self.elementwise += other.elementwise
        self.read += other.read
        self.written += other.written


@dataclass
class ModuleTraffic:
    """One module (inclusive of its children): forward and backward cost, bytes saved for backward."""

    forward: Cost = field(default_factory=Cost)
    backward: Cost = field(default_factory=Cost)
    saved_bytes: int = 0
    activations: int = 0

    @property
    def step(self) -> Cost:
        """Forward + backward: the training step."""
        total = Cost()
        total.add(self.forward)
        total.add(self.backward)
        return total


@dataclass
class TrafficReport:
    """``modules[""]`` is the whole model; keys are qualified module names ("layer1.0.se")."""

    input_shape: Tuple[int, ...]
    train: bool
    modules: Dict[str, ModuleTraffic]
    by_op: Dict[str, Cost]
    uncounted_ops: Tuple[str, ...]
    fvcore_terms: int = 0  # fvcore's norm and pooling terms of the forward (module docstring)
    fvcore_unseen_macs: int = 0  # MACs of the forward fvcore's trace cannot see (module docstring)
    fvcore_unseen_activations: int = 0  # and their conv/linear/matmul outputs
    as_run: Optional[ModuleTraffic] = None  # train: the whole step as eager training runs it (count_traffic)

    @property
    def total(self) -> ModuleTraffic:
        return self.modules[""]

    def module(self, name: str) -> ModuleTraffic:
        return self.modules.get(name, ModuleTraffic())


F = torch.nn.functional


def _affine_rule(weight_at: int, per: int) -> Callable[..., int]:
    """``per`` ops per input element with an affine weight (argument ``weight_at`` or ``weight=``), else per - 1."""

    def count(args, kwargs) -> int:
        weight = kwargs.get("weight", args[weight_at] if len(args) > weight_at else None)
        return args[0].numel() * (per if weight is not None else per - 1)

    return count


def _per_input_element(args, kwargs) -> int:
    return args[0].numel()


def _batch_norm(args, kwargs) -> int:
    """fvcore's ``batchnorm_flop_jit``: eval 2 (affine) or 1 per element; training its generic norm rule, 5 or 4."""
    training = kwargs.get("training", args[5] if len(args) > 5 else False)
    return _affine_rule(3, 5 if training else 2)(args, kwargs)


def _interpolate(args, kwargs, out: torch.Tensor) -> int:
    """fvcore's rules for the ops ``F.interpolate`` of a 4-D input traces to; none for the other modes and ranks."""
    mode = kwargs.get("mode", args[3] if len(args) > 3 else "nearest")
    if args[0].dim() != 4:
        return 0
    return {"nearest": out.numel(), "bilinear": 4 * out.numel(), "area": args[0].numel()}.get(mode, 0)


FVCORE_TERMS: Dict[Callable, Callable[..., int]] = {
    F.batch_norm: _batch_norm,  # (input, running_mean, running_var, weight, bias, training, ...)
    F.instance_norm: _affine_rule(3, 5),  # (input, running_mean, running_var, weight, ...)
    F.layer_norm: _affine_rule(2, 5),  # (input, normalized_shape, weight, ...)
    F.group_norm: _affine_rule(2, 5),  # (input, num_groups, weight, ...)
    F.adaptive_avg_pool2d: _per_input_element,
}
# rules that need the call's output: (args, kwargs, output) -> ops
FVCORE_OUTPUT_TERMS: Dict[Callable, Callable[..., int]] = {
    F.interpolate: _interpolate,
    F.grid_sample: lambda args, kwargs, out: 4 * out.numel(),
}


def _string_padding(args, kwargs) -> bool:
    return isinstance(kwargs.get("padding", args[4] if len(args) > 4 else 0), str)


# calls fvcore's trace cannot count: call -> whether this call is one (module docstring)
FVCORE_UNSEEN: Dict[Callable, Callable[..., bool]] = {
    **{conv: _string_padding for conv in (F.conv1d, F.conv2d, F.conv3d)},  # (input, weight, bias, stride, padding)
    **{rnn: lambda args, kwargs: True for rnn in (torch.lstm, torch.gru, torch.rnn_tanh, torch.rnn_relu)},
}


class _FvcoreTerms(TorchFunctionMode):
    """Sums ``FVCORE_TERMS`` of the functional calls a forward makes (the outermost call of each), and marks the
    calls of ``FVCORE_UNSEEN`` while they run (``unseen``), for ``_TrafficMode`` to count what they dispatch."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0
        self.unseen = False
        self.unseen_macs = 0
        self.unseen_activations = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        rule = FVCORE_TERMS.get(func)
        if rule is not None:
            self.count += int(rule(args, kwargs))
        unseen = FVCORE_UNSEEN.get(func)
        if unseen is not None and not self.unseen and unseen(args, kwargs):
            self.unseen = True
            try:
                return func(*args, **kwargs)
            finally:
                self.unseen = False
        out = func(*args, **kwargs)
        output_rule = FVCORE_OUTPUT_TERMS.get(func)
        if output_rule is not None:
            self.count += int(output_rule(args, kwargs, out))
        return out


def _distinct_bytes(t: torch.Tensor) -> int:
    """Bytes of the distinct elements a tensor view covers (stride-0 broadcast dims count once)."""
    n = math.prod(size for size, stride in zip(t.shape, t.stride()) if stride != 0) if t.dim() else 1
    return n * t.element_size()


def _tensors(tree) -> Iterable[torch.Tensor]:
    flat, _ = torch.utils._pytree.tree_flatten(tree)
    return [t for t in flat if isinstance(t, torch.Tensor)]


def _storage_key(t: torch.Tensor) -> int:
    return t.untyped_storage()._cdata


class _TrafficMode(TorchDispatchMode):
    """Counts every dispatched op into ``report`` for the modules the tracker says are active."""

    def __init__(
        self,
        tracker: ModuleTracker,
        phase: str,
        names: Dict[str, str],
        report: "_Accumulator",
        fvcore: Optional[_FvcoreTerms] = None,
    ) -> None:
        super().__init__()
        self.tracker, self.phase, self.names, self.acc, self.fvcore = tracker, phase, names, report, fvcore

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        packet = func._overloadpacket
        if packet in VIEW_OPS:
            return out
        inputs = {k: v for k, v in kwargs.items() if k != "out"}  # an out= tensor is written, not read
        cost = Cost(
            read=sum(_distinct_bytes(t) for t in _tensors((args, inputs))),
            written=sum(t.numel() * t.element_size() for t in _tensors(out)),
        )
        mac_formula = EXTRA_MAC_FORMULAS.get(packet) or flop_registry.get(packet)
        elementwise = ELEMENTWISE_FORMULAS.get(packet) or BACKWARD_FORMULAS.get(packet)
        if mac_formula is not None:
            cost.macs = int(mac_formula(*args, **kwargs, out_val=out)) // 2
        elif elementwise is not None:
            cost.elementwise = int(shape_wrapper(elementwise)(*args, **kwargs, out_val=out))
        elif torch.is_floating_point(next(iter(_tensors(out)), torch.empty(0))) and packet not in _COPY_OPS:
            self.acc.uncounted.add(str(packet).replace("aten.", "aten::"))
        activations = 0
        if self.phase == "forward" and packet in ACTIVATION_OPS:
            activations = sum(t.numel() for t in _tensors(out))
        elif self.phase == "forward" and packet in ACTIVATION_FORMULAS:
            activations = ACTIVATION_FORMULAS[packet](args, out)
        for name in _active(self.tracker, self.names):
            m = self.acc.module(name)
            getattr(m, self.phase).add(cost)
            m.activations += activations
        if self.fvcore is not None and self.fvcore.unseen:
            self.fvcore.unseen_macs += cost.macs
            self.fvcore.unseen_activations += activations
        self.acc.by_op[f"{str(packet).replace('aten.', 'aten::')} ({self.phase})"].add(cost)
        return out


# Selective reads and writes: bytes counted, no op count expected.
_COPY_OPS = COPY_OPS | {aten.index, aten.masked_fill, aten.masked_fill_}


@dataclass
class _Accumulator:
    modules: Dict[str, ModuleTraffic] = field(default_factory=dict)
    by_op: Dict[str, Cost] = field(default_factory=lambda: defaultdict(Cost))
    uncounted: set = field(default_factory=set)

    def module(self, name: Optional[str]) -> Optional[ModuleTraffic]:
        if name is None:
            return None
        return self.modules.setdefault(name, ModuleTraffic())


def _active(tracker: ModuleTracker, names: Dict[str, str]) -> set:
    """Our keys of the modules running now, and always "" (the whole count; in backward the tracker may
    leave the root out of ``parents``); "Global" and the root both map to "", counted once."""
    return {""} | {names[fqn] for fqn in tracker.parents if fqn in names}


def _tracker_names(model: nn.Module) -> Dict[str, str]:
    """ModuleTracker's fqn ("ResNet.layer1.0") -> our key ("layer1.0"); "Global" -> ""."""
    root = type(model).__name__
    names = {"Global": ""}
    for name, module in model.named_modules():
        if isinstance(module, nn.Identity):  # computes nothing; its output is its input, so the tracker
            continue  # would keep it "active" through its neighbours' backward
        names[f"{root}.{name}" if name else root] = name
    names[root] = ""  # the root module and Global are the same scope
    return names


class _NoModules:
    """A ``ModuleTracker`` stand-in with no module active: everything counts to the whole model only."""

    parents: set = set()


def _tracked_pass(
    model: nn.Module, x: torch.Tensor, train: bool, names: Dict[str, str], acc: "_Accumulator", owned: set
) -> "_FvcoreTerms":
    """One forward (``train``: and the backward of its loss) under the module tracker, into ``acc``: ops, bytes and
    saved bytes per module. ``owned``: the storages of the model's parameters and buffers (not counted as saved).
    Returns the forward's terms that fvcore's trace cannot see."""
    input_shape = tuple(x.shape)
    seen_saved: set = set()
    with ModuleTracker() as tracker:

        def pack(t: torch.Tensor) -> torch.Tensor:
            key = _storage_key(t)
            if key not in owned and key not in seen_saved:
                seen_saved.add(key)
                nbytes = t.untyped_storage().nbytes()
                for name in _active(tracker, names):
                    acc.module(name).saved_bytes += nbytes
            return t

        # inference: no parameter requires grad (counting.frozen_parameters: the module tracker on CaiT/PiT)
        frozen = contextlib.nullcontext() if train else frozen_parameters(model)
        with torch.set_grad_enabled(train), frozen, torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            fvcore_terms = _FvcoreTerms()
            with fvcore_terms, _TrafficMode(tracker, "forward", names, acc, fvcore_terms):
                try:
                    out = model(x)
                except ValueError as e:
                    if "more than 1 value per channel" not in str(e):
                        raise
                    raise TrainCountError(
                        f"a training step needs more than one value per BatchNorm channel, and at input "
                        f"{'x'.join(map(str, input_shape))} some feature map is 1x1 with batch 1: use a batch "
                        "size of 2 or more, or a larger input"
                    ) from e
        if train:
            with _TrafficMode(tracker, "backward", names, acc):
                _loss(out).backward()
    return fvcore_terms


def count_traffic(model: nn.Module, input_shape: Iterable[int], train: bool = True) -> TrafficReport:
    """Count ops, bytes and saved bytes of one forward (``train``: train mode, plus backward of ``out.sum()``).

    The input is zeros of ``input_shape`` on the model's device and dtype. Inference (``train=False``)
    runs in eval mode under ``no_grad``, as ``count_cost`` does. The model comes back as it was: train/eval
    flags, gradients and buffers (BatchNorm running statistics) restored.

    Per-module rows come from a pass under ``torch.utils.module_tracker``; the fused gate epilogue steps aside
    for a tracker (``salient_timm.slots``), so they count each block's plain ops, gate by gate. With ``train``,
    ``as_run`` is a second, untracked step: what eager training as it runs moves and keeps for backward (the
    fused epilogue saves less: the gate's input is recomputed, not kept).
    """
    input_shape = tuple(int(s) for s in input_shape)
    ref = next(iter(model.parameters()), None)
    x = torch.zeros(
        input_shape, device=ref.device if ref is not None else None, dtype=ref.dtype if ref is not None else None
    )
    acc, names = _Accumulator(), _tracker_names(model)
    acc.module("")
    owned = {_storage_key(t) for t in [*model.parameters(), *model.buffers()]}
    grads = [(p, p.grad) for p in model.parameters()]
    buffers = [(b, b.clone()) for b in model.buffers()]
    as_run = None
    try:
        with training_mode(model, train):
            fvcore_terms = _tracked_pass(model, x, train, names, acc, owned)
            if train:
                as_run = _step_as_run(model, x, owned)
    finally:
        for p, g in grads:
            p.grad = g
        with torch.no_grad():
            for b, value in buffers:
                b.copy_(value)
    return TrafficReport(
        input_shape,
        train,
        dict(acc.modules),
        dict(acc.by_op),
        tuple(sorted(acc.uncounted)),
        fvcore_terms.count,
        fvcore_terms.unseen_macs,
        fvcore_terms.unseen_activations,
        as_run,
    )


def _loss(out) -> torch.Tensor:
    return out.float().sum() if isinstance(out, torch.Tensor) else sum(o.float().sum() for o in out)


def _step_as_run(model: nn.Module, x: torch.Tensor, owned: set) -> ModuleTraffic:
    """One training step with no module tracker (so no gate path steps aside): its bytes and saved bytes."""
    for p in model.parameters():
        p.grad = None  # a fresh step: gradients written, not accumulated onto the first pass's
    acc, seen = _Accumulator(), set()
    total = cast(ModuleTraffic, acc.module(""))
    tracker = cast(ModuleTracker, _NoModules())

    def pack(t: torch.Tensor) -> torch.Tensor:
        key = _storage_key(t)
        if key not in owned and key not in seen:
            seen.add(key)
            total.saved_bytes += t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), _TrafficMode(tracker, "forward", {}, acc):
        out = model(x)
    with _TrafficMode(tracker, "backward", {}, acc):
        _loss(out).backward()
    return total
