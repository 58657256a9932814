"""``salient-analyze profile``: bytes moved, memory saved for backward and measured time beside FLOPs, per stage,
block and gate (``salient_analysis.profiling`` measures; this module lays the tables out)."""

from typing import Callable, List, Optional, Tuple

from ..deploy import REPARAM_NOTE
from ..profiling import ModelProfile, ProfileOptions, ScopeCost, profile_models, trust_warnings
from ..render import Report, Table
from ..spec import AnalysisTarget
from ..timing import Peaks
from ._common import input_text

__all__ = ["profile_report"]

ATTENTION_COLUMNS = [
    "block",
    "FLOPs",
    "% FLOPs",
    "MB moved",
    "% bytes",
    "saved MB",
    "% saved",
    "ms",
    "% time",
    "FLOP/B",
    "roofline ms",
]
STEP_COLUMNS = [
    "model",
    "GFLOPs",
    "MB moved",
    "saved MB",
    "peak MB (measured)",
    "step ms",
    "min-max ms",
    "x base time",
    "infer_gmacs",
    "infer_macts",
    "gmacs_mm",
]

SIDE_BY_SIDE_COLUMNS = [
    "scope",
    "GFLOPs base",
    "GFLOPs variant",
    "MB moved base",
    "MB moved variant",
    "saved MB base",
    "saved MB variant",
    "ms base",
    "ms variant",
    "x time",
    "roofline ms variant",
]


def profile_report(
    spec: AnalysisTarget,
    options: ProfileOptions = ProfileOptions(),
    measured: Optional[Tuple[List[ModelProfile], Optional[Peaks]]] = None,
    *,
    plot: Optional[str] = None,
    progress: Optional[Callable[[str], None]] = None,
    warn: Optional[Callable[[str], None]] = None,
) -> Report:
    """The ``profile`` command as one call. Tables: attention blocks (shares of the step), stages and blocks base
    vs variant, step totals.

    ``measured``: ``profile_models(spec, options)``'s result when the caller already has it; else measured here,
    calling ``progress(what)`` after each of ``profile_steps(spec, options)`` steps. ``plot``: a .png/.pdf path for
    ``profile_figure`` (needs measured time). ``warn(sentence)``: each sign that the machine was busy
    (``trust_warnings``)."""
    profiles, peaks = measured if measured is not None else profile_models(spec, options, progress=progress)
    if plot:
        from ..profile_plot import plot_profile

        plot_profile(profiles, peaks, plot)
    for warning in trust_warnings(profiles, peaks) if warn else ():
        warn(warning)
    base, variant = profiles[0], profiles[-1]
    what = "training step (forward + backward of out.sum())" if options.train else "inference forward"
    tables = []
    if variant is not base:
        title = f"Attention blocks of {variant.label}: share of the {what} at {input_text(spec)}"
        tables.append(Table(title, ATTENTION_COLUMNS, _attention_rows(variant, peaks)))
    tables.append(
        Table(
            f"Stages, {base.label} -> {variant.label} (rows add up to the total)",
            SIDE_BY_SIDE_COLUMNS,
            _side_by_side(base, variant, ("stage", "total"), peaks),
        )
    )
    tables.append(
        Table(
            f"Residual blocks, {base.label} -> {variant.label}",
            SIDE_BY_SIDE_COLUMNS,
            _side_by_side(base, variant, ("block",), peaks),
        )
    )
    tables.append(Table(f"Whole {what}", STEP_COLUMNS, [_step_row(p, base) for p in profiles]))
    if options.reparam:
        tables = [t for t in tables if t.rows]
    notes = _profile_notes(options, profiles, peaks, gated=variant is not base)
    return Report("profile", tables, None, notes + ([f"figure written to {plot}"] if plot else []))


def _step_row(p: ModelProfile, base: ModelProfile) -> dict:
    return {
        "model": p.label,
        "GFLOPs": p.total.flops / 1e9,
        "MB moved": p.total.bytes / 1e6,
        "saved MB": p.total.saved / 1e6,
        "peak MB (measured)": p.peak_bytes / 1e6 if p.peak_bytes is not None else None,
        "step ms": _ms(p.step_seconds),
        "min-max ms": f"{1e3 * p.step_spread[0]:.1f}-{1e3 * p.step_spread[1]:.1f}" if p.step_spread else None,
        "x base time": p.step_seconds / base.step_seconds if p.step_seconds and base.step_seconds else None,
        **p.units,
    }


def _profile_notes(
    options: ProfileOptions, profiles: List[ModelProfile], peaks: Optional[Peaks], gated: bool
) -> List[str]:
    notes = [
        "counted on the meta device with the code that runs (the fused gate's own ops in training); bytes = every "
        "tensor input (distinct elements) and output of every op at its dtype, views excluded; saved = storages "
        "autograd keeps for backward, each once, parameters excluded",
        "FLOPs = 2*MACs + elementwise ops, forward and backward ops alike (counting.CONVENTION)",
        "infer_gmacs / infer_macts: per image, forward, timm's benchmark.py units (MACs + fvcore's norm and pooling "
        "terms; activations: outputs of conv/linear/matmul); gmacs_mm: conv/linear/matmul MACs only",
    ]
    if options.train and gated:
        notes.append(
            "each gate is counted and timed on its own call: the fused residual epilogue (gate, shortcut add and "
            "ReLU, with the branch's BatchNorm, which then keeps its input instead of the gate's) steps aside while "
            "modules are tracked; compare's train columns count the step as training runs it"
        )
    if options.reparam:
        notes.append(REPARAM_NOTE + "; blocks and gates are folded into plain convs, so only stages and totals")
    if options.measure:
        notes.append(
            f"measured on {options.device} (fp32, contiguous NCHW): {options.repeats} repeats after "
            f"{options.warmup} warm-up, base "
            "and variant interleaved; stage, block and gate times each in isolation on the input seen in a "
            "real forward (so they need not add up to the step)"
        )
        if peaks is not None:
            notes.append(
                f"roofline: peak {peaks.flops_per_s / 1e9:.1f} GFLOP/s (fp32 matmul), "
                f"{peaks.bytes_per_s / 1e9:.1f} GB/s (copy)"
                + (
                    f", best of before and after the timing ({peaks.drift:.0%} apart)"
                    if peaks.measured
                    else ", as given"
                )
            )
        notes += [f"warning: {w}" for w in trust_warnings(profiles, peaks)]
    return notes


def _pct(part: Optional[float], whole: Optional[float]) -> Optional[float]:
    return 100.0 * part / whole if part is not None and whole else None


def _ms(seconds: Optional[float]) -> Optional[float]:
    return None if seconds is None else 1e3 * seconds


def _attention_rows(variant: ModelProfile, peaks: Optional[Peaks]) -> List[dict]:
    total = variant.total
    rows = []
    attention = [s for s in variant.scopes if s.kind == "attention"]
    summed = ScopeCost(
        "all attention",
        "attention",
        sum(s.flops for s in attention),
        sum(s.bytes for s in attention),
        sum(s.saved for s in attention),
        seconds=sum(s.seconds for s in attention) if attention and all(s.seconds for s in attention) else None,
    )
    for s in attention + ([summed] if attention else []):
        rows.append(
            {
                "block": s.name,
                "FLOPs": s.flops,
                "% FLOPs": _pct(s.flops, total.flops),
                "MB moved": s.bytes / 1e6,
                "% bytes": _pct(s.bytes, total.bytes),
                "saved MB": s.saved / 1e6,
                "% saved": _pct(s.saved, total.saved),
                "ms": _ms(s.seconds),
                "% time": _pct(s.seconds, total.seconds),
                "FLOP/B": s.intensity,
                "roofline ms": _ms(peaks.roofline_s(s.flops, s.bytes)) if peaks else None,
            }
        )
    return rows


def _side_by_side(base: ModelProfile, variant: ModelProfile, kind: str, peaks: Optional[Peaks]) -> List[dict]:
    rows = []
    for v in variant.scopes:
        if v.kind not in kind:
            continue
        b = base.scope(v.name) or ScopeCost(v.name, v.kind, 0, 0, 0)
        rows.append(
            {
                "scope": v.name,
                "GFLOPs base": b.flops / 1e9,
                "GFLOPs variant": v.flops / 1e9,
                "MB moved base": b.bytes / 1e6,
                "MB moved variant": v.bytes / 1e6,
                "saved MB base": b.saved / 1e6,
                "saved MB variant": v.saved / 1e6,
                "ms base": _ms(b.seconds),
                "ms variant": _ms(v.seconds),
                "x time": v.seconds / b.seconds if v.seconds and b.seconds else None,
                "roofline ms variant": _ms(peaks.roofline_s(v.flops, v.bytes)) if peaks else None,
            }
        )
    return rows
