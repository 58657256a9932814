"""``salient-analyze formula``: one row per attention block, the seed's and the full formula against the count."""

from ..formulas import formula_rows
from ..render import Report, Table
from ..spec import AnalysisTarget, SpecError
from ._common import CONVENTION

__all__ = ["formula_report"]


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
