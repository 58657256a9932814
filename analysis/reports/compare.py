"""``salient-analyze compare``: several models x attention kinds side by side, each against its base model."""

from typing import Any, Dict, Iterable, List, Optional, Tuple, cast

from torch import nn

from ..counting import ParamReport, count_cost, count_params
from ..deploy import FOLD_BN_NOTE, REPARAM_NOTE, Folding, reparameterized
from ..profiling import count_timm_units
from ..render import Report, Table
from ..spec import AnalysisTarget
from ..traffic import ModuleTraffic, TrainCountError, count_traffic
from ._common import CONVENTION, Progress, base_of, input_text

__all__ = ["compare_report", "reparam_label"]

COMPARE_COLUMNS = [
    "model",
    "params",
    "added params",
    "MACs",
    "elementwise",
    "FLOPs",
    "FLOPs ratio",
    "fp32 MB",
    "infer_gmacs",
    "infer_macts",
    "gmacs_mm",
    "MB moved",
    "train MB moved",
    "train saved MB",
]
COMPARE_NOTES = [
    "FLOPs ratio is against the same model without --attn",
    "infer_gmacs / infer_macts: per image, timm's benchmark.py units: conv/linear/matmul MACs plus fvcore's "
    "norm and pooling terms (eval BatchNorm 2 per element, GroupNorm/LayerNorm 5, adaptive average pooling 1 "
    "per input element); activations: outputs of conv/linear/matmul (fvcore's ActivationCountAnalysis). "
    "gmacs_mm: conv/linear/matmul MACs only, per image",
    "MB moved: bytes read + written by every op of the forward pass (counted, not measured); train: "
    "forward + backward of one eager training step as it runs (the fused gate epilogue included), and the "
    "activation bytes autograd saves for backward (salient-analyze profile has the per-module breakdown, "
    "which counts each block's plain ops, and measured time)",
]
BaseCounts = Tuple[Any, ParamReport]  # (CostReport, ParamReport) of a base model


def compare_report(
    specs: Iterable[AnalysisTarget], progress: Progress = None, reparam: Optional[Folding] = None
) -> Report:
    """One row per model spec: params, MACs, FLOPs and fp32 size, with ratios to the spec's base model.

    ``reparam``: each model (and its base) counted as folded for inference (``salient_analysis.deploy``:
    ``"timm"`` as timm's ``benchmark.py --reparam``, ``"fold-bn"`` every conv + BN too); inference columns only."""
    rows: List[dict] = []
    base_cache: Dict[Any, BaseCounts] = {}
    folded_notes: List[str] = []
    halved: List[str] = []
    last: Optional[AnalysisTarget] = None
    for last in specs:
        if reparam:
            row, left = _folded_row(last, reparam, base_cache)
            folded_notes += [f"{last.label}: {note}" for note in left]
        else:
            row, per_step = _trained_row(last, base_cache)
            if per_step != 1.0:
                halved.append(last.label)
        rows.append(row)
        if progress:
            progress(last.label)
    title = "Comparison" + (f" at input {input_text(last)}" if last is not None else "")
    notes = COMPARE_NOTES + _halved_note(halved) + (_folded_notes(reparam, folded_notes) if reparam else [])
    return Report("compare", [Table(title, COMPARE_COLUMNS, rows)], CONVENTION, notes)


def _base_counts(model: nn.Module, spec: AnalysisTarget) -> BaseCounts:
    return count_cost(model, spec.input_shape), count_params(model)


def _trained_row(spec: AnalysisTarget, base_cache: Dict[Any, BaseCounts]) -> Tuple[dict, float]:
    """The row of an unfolded model, with the train columns, and the per-step scale (see ``_train_step``)."""
    model, key = spec.build(), base_of(spec)
    if key not in base_cache:
        base_cache[key] = _base_counts(key.build() if spec.attn != "none" else model, key)
    step, per_step = _train_step(model, spec)
    return _compare_row(spec.label, model, spec, base_cache[key], step, per_step), per_step


def _folded_row(spec: AnalysisTarget, reparam: Folding, base_cache: Dict[Any, BaseCounts]) -> Tuple[dict, List[str]]:
    """The row of a model folded for inference, and what folding left unfolded.

    A variant's ratios are against its base folded as the variant's blocks fold (timm's own blocks have no deploy
    hook, a gated block has); a model without --attn is against itself."""
    model, left = reparameterized(spec, how=reparam)  # folding reads weights: timm's hooks copy tensors
    key = base_of(spec)
    cached = (key, spec.attn != "none")
    if cached not in base_cache:
        base_model = reparameterized(key, how=reparam, as_gated=True)[0] if spec.attn != "none" else model
        base_cache[cached] = _base_counts(base_model, key)
    return _compare_row(f"{spec.label} ({reparam_label(reparam)})", model, spec, base_cache[cached]), left


def _halved_note(halved: List[str]) -> List[str]:
    if not halved:
        return []
    return [
        f"train columns of {', '.join(halved)}: counted at batch 2 and halved (per image), since at batch 1 "
        "some BatchNorm sees a 1x1 map, one value per channel, and cannot train; the step is counted, not run"
    ]


def _folded_notes(reparam: Folding, folded_notes: List[str]) -> List[str]:
    return [
        (REPARAM_NOTE if reparam == "timm" else FOLD_BN_NOTE)
        + "; ratios against the base folded as the variant's blocks fold; no train columns (a folded model "
        "is for inference)",
        *folded_notes,
    ]


def _train_step(model: nn.Module, spec: AnalysisTarget) -> Tuple[ModuleTraffic, float]:
    """The training step as eager training runs it (``TrafficReport.as_run``), and the scale that makes it the
    spec's: where batch 1 cannot train a BatchNorm (a 1x1 map), it is counted at batch 2 and scaled by 1/2."""
    try:
        return cast(ModuleTraffic, count_traffic(model, spec.input_shape).as_run), 1.0
    except TrainCountError:
        if spec.input_shape[0] != 1:
            raise
        return cast(ModuleTraffic, count_traffic(model, (2, *spec.input_shape[1:])).as_run), 0.5


def _compare_row(
    label: str,
    model: nn.Module,
    spec: AnalysisTarget,
    base: BaseCounts,
    step: Optional[ModuleTraffic] = None,
    per_step: float = 1.0,
) -> dict:
    """One row of ``compare``; ``step`` (scaled by ``per_step``, see ``_train_step``) fills the train columns."""
    cost, params = count_cost(model, spec.input_shape), count_params(model)
    bcost, bparams = base
    infer = count_traffic(model, spec.input_shape, train=False)
    return {
        "model": label,
        "params": params.params,
        "added params": params.params - bparams.params,
        "MACs": cost.total.macs,
        "elementwise": cost.total.elementwise,
        "FLOPs": cost.total.flops,
        "FLOPs ratio": cost.total.flops / bcost.total.flops,
        "fp32 MB": 4 * params.params / 1e6,
        **count_timm_units(model, spec.input_shape, infer),
        "MB moved": infer.total.forward.bytes / 1e6,
        "train MB moved": per_step * step.step.bytes / 1e6 if step else None,
        "train saved MB": per_step * step.saved_bytes / 1e6 if step else None,
    }


def reparam_label(how: Folding) -> str:
    return "reparam" if how == "timm" else "fold-bn"
