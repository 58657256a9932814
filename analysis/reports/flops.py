"""``salient-analyze flops``: the full op count (total, per stage, per block), fvcore's and thop's beside it."""

import copy
from typing import Dict, List, Optional, Tuple

from torch import nn

from salient_timm import attention_modules, find_residual_blocks

from ..counting import CostReport, OpCount, count_cost
from ..crosscheck import available_memory, fvcore_count, real_forward_bytes, thop_count
from ..deploy import FOLD_BN_NOTE, REPARAM_NOTE, Folding, reparameterized
from ..render import Report, Table
from ..spec import AnalysisTarget
from ..stages import model_stages
from ._common import CONVENTION, input_text

__all__ = ["flops_report"]

STAGE_NOTE = (
    "the stage rows (timm's stages: stem, layer1-4, head for a ResNet; the top-level modules, feature_info's "
    "stages split out, otherwise; those without ops left out) add up to the total"
)


def flops_report(
    spec: AnalysisTarget, per_block: bool = False, crosscheck: bool = False, reparam: Optional[Folding] = None
) -> Report:
    """Full op count (total, per stage, optionally per block); ``crosscheck``: fvcore's and thop's totals beside it.

    ``reparam``: the model folded for inference first (``salient_analysis.deploy``: ``"timm"`` as timm's
    ``benchmark.py --reparam``, ``"fold-bn"`` every conv + BN too); the cross-check counts the same folded model."""
    folded_notes: List[str] = []
    folded: Optional[nn.Module] = None
    if reparam:
        folded, folded_notes = reparameterized(spec, how=reparam)  # reads weights: on the CPU, counted on meta
        model = copy.deepcopy(folded).to("meta")
    else:
        model = spec.build()
    report = count_cost(model, spec.input_shape)
    rows = [_cost_row("total", report.total), *_stage_rows(model, report)]
    if per_block:
        rows += _block_rows(model, report)
    tables = [
        Table(f"Cost of {spec.label} at input {input_text(spec)}", ["scope", "MACs", "elementwise", "FLOPs"], rows)
    ]
    notes = [STAGE_NOTE + ("; block and attention rows are parts of their stage" if per_block else "")]
    if report.uncounted_ops:
        notes.append(f"ops not counted (no formula): {', '.join(report.uncounted_ops)}")
    too_large = _crosscheck_too_large(model, spec) if crosscheck else None
    if too_large:
        crosscheck = False
        notes.append(too_large)
    if reparam:
        notes += [REPARAM_NOTE if reparam == "timm" else FOLD_BN_NOTE, *folded_notes]
    if crosscheck:
        table, crosscheck_notes = _other_counters(
            folded if folded is not None else spec.build(device="cpu"), spec, report
        )
        tables.append(table)
        notes += crosscheck_notes
    return Report("flops", tables, CONVENTION, notes)


def _cost_row(scope: str, count) -> dict:
    return {"scope": scope, "MACs": count.macs, "elementwise": count.elementwise, "FLOPs": count.flops}


def _stage_rows(model: nn.Module, report: CostReport) -> List[dict]:
    """One row per stage with ops (timm's structure: every top-level module in one stage), then the root's own."""
    stages: Dict[str, OpCount] = {}
    for stage, names in model_stages(model):
        counts = [report.module(name) for name in names]
        stages[stage] = OpCount(sum(c.macs for c in counts), sum(c.elementwise for c in counts))
    rest = OpCount(
        report.total.macs - sum(c.macs for c in stages.values()),
        report.total.elementwise - sum(c.elementwise for c in stages.values()),
    )
    rows = [_cost_row(stage, count) for stage, count in stages.items() if count.macs or count.elementwise]
    if rest.macs or rest.elementwise:  # ops of the root's own forward (e.g. ViT's position embedding add)
        rows.append(_cost_row("outside the stages", rest))
    return rows


def _block_rows(model: nn.Module, report: CostReport) -> List[dict]:
    """One row per residual block, each followed by its attention modules' rows."""
    attention = {name.rsplit(".", 1)[0]: name for name, _ in attention_modules(model)}
    rows = []
    for block in find_residual_blocks(model):
        rows.append(_cost_row(block.name, report.module(block.name)))
        rows += [_cost_row(name, report.module(name)) for b, name in attention.items() if b == block.name]
    return rows


def _crosscheck_too_large(model: nn.Module, spec: AnalysisTarget) -> Optional[str]:
    """Why fvcore and thop cannot run here (their real forward would need over half the free memory), or None."""
    need, have = real_forward_bytes(model, spec.input_shape), available_memory()
    if have is None or need <= have // 2:
        return None
    return (
        f"fvcore / thop cross-check skipped: it runs a real forward, which at input "
        f"{input_text(spec)} needs up to {need / 1e9:.1f} GB, more than half of "
        f"the {have / 1e9:.1f} GB available (counting itself allocates nothing)"
    )


def _other_counters(real: nn.Module, spec: AnalysisTarget, report: CostReport) -> Tuple[Table, List[str]]:
    """fvcore's and thop's totals on the real model, what each misses against ``report``, and notes saying so."""
    checks = [fvcore_count(real, spec.input_shape, report), thop_count(real, spec.input_shape, report)]
    table = Table(
        "Other counters (their totals, and what they leave out)",
        ["library", "total", "unit", "vs our MACs", "ops missed", "missed ops"],
        [
            {
                "library": c.library,
                "total": c.total,
                "unit": c.unit,
                "vs our MACs": c.total - report.total.macs,
                "ops missed": c.missed_total,
                "missed ops": ", ".join(f"{op.replace('aten::', '')} {n:,}" for op, n in sorted(c.missed.items())),
            }
            for c in checks
        ],
    )
    notes = [
        f"{c.library} ignores {', '.join(op.replace('aten::', '') for op in sorted(c.missed))}: {c.missed_total:,} ops"
        for c in checks
        if c.missed
    ]
    notes += [
        f"{c.library} skipped these ops entirely (calls): "
        + ", ".join(f"{op} {n}" for op, n in sorted(c.skipped.items()))
        + (
            " - scaled_dot_product_attention holds attention's two matmuls, which we count"
            if "scaled_dot_product_attention" in c.skipped
            else ""
        )
        for c in checks
        if c.skipped
    ]
    return table, notes
