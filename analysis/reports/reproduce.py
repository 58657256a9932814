"""``salient-analyze reproduce``: every numeric claim of the seed, measured, with a verdict and the reason."""

from ..claims import ABOUT_TOLERANCE, check_claims
from ..render import Report, Table
from ._common import Progress

__all__ = ["reproduce_report"]

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
