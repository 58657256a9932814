"""Library functions behind each ``salient-analyze`` command: they build models and return ``Report`` data."""

import copy
from dataclasses import replace
from typing import Any, Callable, Dict, Iterable, List, Optional, Tuple, cast

from torch import nn

from salient_timm import attention_modules, find_residual_blocks

from .claims import ABOUT_TOLERANCE, check_claims
from .counting import OpCount, ParamReport, count_cost, count_params
from .crosscheck import available_memory, fvcore_count, real_forward_bytes, thop_count
from .deploy import FOLD_BN_NOTE, REPARAM_NOTE, Folding, reparameterized
from .formulas import formula_rows
from .profiling import count_timm_units
from .render import Report, Table
from .size import measure_size
from .spec import AnalysisTarget, SpecError
from .stages import model_stages
from .traffic import ModuleTraffic, TrainCountError, count_traffic

__all__ = [
    "CONVENTION",
    "params_report",
    "flops_report",
    "size_report",
    "compare_report",
    "formula_report",
    "reproduce_report",
]

CONVENTION = (
    "MACs = conv/linear multiply-accumulates (bias adds not counted); elementwise = 1 op per output "
    "element of BN, activations, sigmoid, multiply, add (addcmul: 2), 1 per input element of mean/adaptive pooling, "
    "k*k per output element of pooling windows; FLOPs = 2*MACs + elementwise. Eval mode, batch as given."
)
Progress = Optional[Callable[[str], None]]


def _base(spec: AnalysisTarget) -> AnalysisTarget:
    return replace(spec, attn="none", attn_stages=None)


def params_report(spec: AnalysisTarget) -> Report:
    """Parameters of the base model and the variant, per stage (``salient_analysis.stages``), and what the attention
    adds; stages without parameters in either are left out."""
    variant_model = spec.build()
    base_model = _base(spec).build() if spec.attn != "none" else variant_model
    variant, base = count_params(variant_model), count_params(base_model)
    b, v = _stage_params(base_model), _stage_params(variant_model)
    rows = [
        {"part": part, "base": b.get(part, 0), "variant": v.get(part, 0), "added": v.get(part, 0) - b.get(part, 0)}
        for part in dict.fromkeys([*b, *v])
        if b.get(part, 0) or v.get(part, 0)
    ]
    rows.append(
        {"part": "total", "base": base.params, "variant": variant.params, "added": variant.params - base.params}
    )
    notes = [
        f"model {spec.label}: {variant.attention_params:,} parameters in attention modules; "
        f"{variant.buffers:,} buffer elements"
    ]
    if spec.attn == "none":  # nothing added: one column of counts, not three that repeat it
        rows = [{"part": r["part"], "params": r["variant"]} for r in rows]
        return Report("params", [Table(f"Parameters: {spec.label}", ["part", "params"], rows)], notes=notes)
    return Report(
        "params",
        [Table(f"Parameters: {_base(spec).label} -> {spec.label}", ["part", "base", "variant", "added"], rows)],
        notes=notes,
    )


def _stage_params(model: nn.Module) -> Dict[str, int]:
    """Parameters per stage, and the root's own (ViT's ``cls_token``, ``pos_embed``) as "outside the stages"."""
    counts = {
        stage: sum(p.numel() for name in names for p in model.get_submodule(name).parameters())
        for stage, names in model_stages(model)
    }
    counts["outside the stages"] = sum(p.numel() for p in model.parameters(recurse=False))
    return counts


def _cost_row(scope: str, count) -> dict:
    return {"scope": scope, "MACs": count.macs, "elementwise": count.elementwise, "FLOPs": count.flops}


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
    rows = [_cost_row("total", report.total)]
    stages: Dict[str, OpCount] = {}
    for stage, names in model_stages(model):  # timm's structure: every top-level module in one stage
        counts = [report.module(name) for name in names]
        stages[stage] = OpCount(sum(c.macs for c in counts), sum(c.elementwise for c in counts))
    rest = OpCount(
        report.total.macs - sum(c.macs for c in stages.values()),
        report.total.elementwise - sum(c.elementwise for c in stages.values()),
    )
    rows += [_cost_row(stage, count) for stage, count in stages.items() if count.macs or count.elementwise]
    if rest.macs or rest.elementwise:  # ops of the root's own forward (e.g. ViT's position embedding add)
        rows.append(_cost_row("outside the stages", rest))
    if per_block:
        attention = {name.rsplit(".", 1)[0]: name for name, _ in attention_modules(model)}
        for block in find_residual_blocks(model):
            rows.append(_cost_row(block.name, report.module(block.name)))
            rows += [_cost_row(name, report.module(name)) for b, name in attention.items() if b == block.name]
    tables = [
        Table(
            f"Cost of {spec.label} at input {'x'.join(map(str, spec.input_shape))}",
            ["scope", "MACs", "elementwise", "FLOPs"],
            rows,
        )
    ]
    stage_note = (
        "the stage rows (timm's stages: stem, layer1-4, head for a ResNet; the top-level modules, feature_info's "
        "stages split out, otherwise; those without ops left out) add up to the total"
    )
    notes = [stage_note + ("; block and attention rows are parts of their stage" if per_block else "")]
    if report.uncounted_ops:
        notes.append(f"ops not counted (no formula): {', '.join(report.uncounted_ops)}")
    if crosscheck:
        need, have = real_forward_bytes(model, spec.input_shape), available_memory()
        if have is not None and need > have // 2:
            crosscheck = False
            notes.append(
                f"fvcore / thop cross-check skipped: it runs a real forward, which at input "
                f"{'x'.join(map(str, spec.input_shape))} needs up to {need / 1e9:.1f} GB, more than half of "
                f"the {have / 1e9:.1f} GB available (counting itself allocates nothing)"
            )
    if reparam:
        notes += [REPARAM_NOTE if reparam == "timm" else FOLD_BN_NOTE, *folded_notes]
    if crosscheck:
        real = folded if folded is not None else spec.build(device="cpu")
        checks = [fvcore_count(real, spec.input_shape, report), thop_count(real, spec.input_shape, report)]
        tables.append(
            Table(
                "Other counters (their totals, and what they leave out)",
                ["library", "total", "unit", "vs our MACs", "ops missed", "missed ops"],
                [
                    {
                        "library": c.library,
                        "total": c.total,
                        "unit": c.unit,
                        "vs our MACs": c.total - report.total.macs,
                        "ops missed": c.missed_total,
                        "missed ops": ", ".join(
                            f"{op.replace('aten::', '')} {n:,}" for op, n in sorted(c.missed.items())
                        ),
                    }
                    for c in checks
                ],
            )
        )
        notes += [
            f"{c.library} ignores {', '.join(op.replace('aten::', '') for op in sorted(c.missed))}: "
            f"{c.missed_total:,} ops"
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
    return Report("flops", tables, CONVENTION, notes)


def _size_row(label: str, model: nn.Module) -> dict:
    s = measure_size(model)
    return {
        "model": label,
        "params": s.params,
        "buffers": s.buffers,
        "fp32 bytes": s.bytes_at["fp32"],
        "fp16 bytes": s.bytes_at["fp16"],
        "bf16 bytes": s.bytes_at["bf16"],
        "fp32 MB": s.bytes_at["fp32"] / 1e6,
        "torch.save bytes": s.torch_save_bytes,
        "safetensors bytes": s.safetensors_bytes,
    }


def size_report(spec: AnalysisTarget) -> Report:
    """Parameter/buffer counts, bytes per dtype and real serialized sizes (base, variant, added)."""
    rows = [_size_row(spec.label, spec.build())]
    if spec.attn != "none":
        rows.insert(0, _size_row(_base(spec).label, _base(spec).build()))
        rows.append({"model": "added", **{k: rows[1][k] - rows[0][k] for k in rows[0] if k != "model"}})
    cols = [
        "model",
        "params",
        "buffers",
        "fp32 bytes",
        "fp16 bytes",
        "bf16 bytes",
        "fp32 MB",
        "torch.save bytes",
        "safetensors bytes",
    ]
    return Report(
        "size",
        [Table(f"Size of {spec.label}", cols, rows)],
        notes=["bytes at fp16/bf16 cast floating tensors only; MB = 10^6 bytes"],
    )


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
    base: Tuple[Any, ParamReport],
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


def compare_report(
    specs: Iterable[AnalysisTarget], progress: Progress = None, reparam: Optional[Folding] = None
) -> Report:
    """One row per model spec: params, MACs, FLOPs and fp32 size, with ratios to the spec's base model.

    ``reparam``: each model (and its base) counted as folded for inference (``salient_analysis.deploy``:
    ``"timm"`` as timm's ``benchmark.py --reparam``, ``"fold-bn"`` every conv + BN too); inference columns only."""
    rows: List[dict] = []
    base_cache: dict = {}
    folded_notes: List[str] = []
    halved: List[str] = []
    for spec in specs:
        key = _base(spec)
        if reparam:
            model, left = reparameterized(spec, how=reparam)  # folding reads weights: timm's hooks copy tensors
            folded_notes += [f"{spec.label}: {note}" for note in left]
            # a variant's ratios: against its base folded as the variant's blocks fold (timm's own blocks have no
            # deploy hook, a gated block has); a model without --attn: against itself
            cached = (key, spec.attn != "none")
            if cached not in base_cache:
                base_model = reparameterized(key, how=reparam, as_gated=True)[0] if spec.attn != "none" else model
                base_cache[cached] = (count_cost(base_model, key.input_shape), count_params(base_model))
            rows.append(_compare_row(f"{spec.label} ({reparam_label(reparam)})", model, spec, base_cache[cached]))
        else:
            model = spec.build()
            if key not in base_cache:
                base_model = key.build() if spec.attn != "none" else model
                base_cache[key] = (count_cost(base_model, key.input_shape), count_params(base_model))
            step, per_step = _train_step(model, spec)
            if per_step != 1.0:
                halved.append(spec.label)
            rows.append(_compare_row(spec.label, model, spec, base_cache[key], step, per_step))
        if progress:
            progress(spec.label)
    title = "Comparison" + (f" at input {'x'.join(map(str, spec.input_shape))}" if rows else "")
    return Report(
        "compare",
        [
            Table(
                title,
                [
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
                ],
                rows,
            )
        ],
        CONVENTION,
        [
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
        + (
            [
                f"train columns of {', '.join(halved)}: counted at batch 2 and halved (per image), since at batch 1 "
                "some BatchNorm sees a 1x1 map, one value per channel, and cannot train; the step is counted, not run"
            ]
            if halved
            else []
        )
        + (
            [
                (REPARAM_NOTE if reparam == "timm" else FOLD_BN_NOTE)
                + "; ratios against the base folded as the variant's blocks fold; no train columns (a folded model "
                "is for inference)"
            ]
            + folded_notes
            if reparam
            else []
        ),
    )


def reparam_label(how: Folding) -> str:
    return "reparam" if how == "timm" else "fold-bn"


def formula_report(spec: AnalysisTarget) -> Report:
    """One row per attention block: formulas (seed's and full) against the measured count."""
    measured = formula_rows(spec.build(), spec.input_shape)
    if not measured:
        raise SpecError(
            f"{spec.label} has no attention blocks: pass --attn (e.g. --attn salient) or a salient_*/ssa_* model"
        )
    rows = [
        {
            "block": r.block,
            "stage": r.stage,
            "kind": r.kind,
            "C": r.c,
            "H": r.h,
            "W": r.w,
            "params formula": r.formula.params if r.formula else None,
            "params measured": r.params_measured,
            "seed params": r.formula.seed_params if r.formula else None,
            "seed cost": r.seed_cost,
            "full formula FLOPs": r.full_flops,
            "measured FLOPs": r.measured_flops,
            "seed leaves out": r.seed_leaves_out,
            "verdict": r.verdict,
        }
        for r in measured
    ]
    notes = []
    if all(r.verdict == "match" for r in measured):
        notes.append(f"measured == full formula (params, MACs and elementwise ops) on all {len(rows)} blocks")
    for kind, f in {r.kind: r.formula for r in measured if r.formula}.items():
        notes.append(f"{kind}: seed cost {f.seed_cost_text}; full formula {f.full_text}")
    notes.append(
        "seed cost counts 1 per MAC; 'seed leaves out' = (MACs + elementwise) - seed cost; "
        "FLOPs columns = 2*MACs + elementwise"
    )
    title = f"Per-block formulas for {spec.label} at input {'x'.join(map(str, spec.input_shape))}"
    return Report("formula", [Table(title, list(rows[0]), rows)], CONVENTION, notes)


SEED = "the SalientNet design note this project reproduces"
SHORT = 24  # characters of a measured value in the table; the whole value is in the notes below it


def _short(text: str) -> str:
    """The first clause of a measured value, cut to ``SHORT`` characters (the notes have it whole)."""
    first = text.split(";")[0].split(" (")[0].strip()
    return first if len(first) <= SHORT else first[: SHORT - 1] + "…"


def reproduce_report(progress: Progress = None) -> Report:
    """Every numeric claim of the seed text with the measured value, a verdict and the reason."""
    checks = check_claims(progress=(lambda c: progress(c.id)) if progress else None)
    rows = [
        {"claim": c.claim.id, "seed says": c.claim.claimed, "measured": _short(c.measured), "verdict": c.verdict}
        for c in checks
    ]
    details = [f"{c.claim.id}: measured {c.measured}. {c.explanation}" for c in checks if c.measured != "-"]
    unmeasured: dict = {}
    for c in checks:
        if c.measured == "-":
            unmeasured.setdefault(c.explanation, []).append(c.claim.id)
    details += [f"{', '.join(ids)}: {why}" for why, ids in unmeasured.items()]
    counts = {}
    for c in checks:
        counts[c.verdict] = counts.get(c.verdict, 0) + 1
    return Report(
        "reproduce",
        [Table(f"Claims of the seed ({SEED})", ["claim", "seed says", "measured", "verdict"], rows)],
        notes=[
            ", ".join(f"{n} {v}" for v, n in counts.items()),
            *details,
            f"'about' claims hold within ±{ABOUT_TOLERANCE:.0%}; every measured value is computed from "
            "models built by timm/salient_timm (only the claims are constants)",
        ],
    )
