"""Figure for ``salient-analyze profile --plot``: per-block shares (FLOPs, bytes, time) and a roofline scatter."""

from typing import List, Optional, Sequence

from salient_timm.extras import require

from .profiling import ModelProfile
from .timing import Peaks

__all__ = ["plot_profile", "profile_figure"]

METRICS = (("flops", "FLOPs"), ("bytes", "bytes moved"), ("seconds", "measured time"))


def _shares(profile: ModelProfile, names: List[str], metric: str) -> List[float]:
    total = getattr(profile.total, metric) or 0
    values = []
    for name in names:
        scope = profile.scope(name)
        value = getattr(scope, metric) if scope is not None else None
        values.append(100.0 * value / total if value is not None and total else 0.0)
    return values


def plot_profile(profiles: List[ModelProfile], peaks: Optional[Peaks], path: str, dpi: int = 100) -> None:
    """Write ``profile_figure`` to ``path`` (.png or .pdf)."""
    import matplotlib.pyplot as plt

    fig = profile_figure(profiles, peaks)
    fig.savefig(path, dpi=dpi)
    plt.close(fig)


def profile_figure(profiles: List[ModelProfile], peaks: Optional[Peaks]):
    """Left: each residual block's share of the step, base vs variant, per metric (legend above the bars).
    Right: the roofline, over the whole height."""
    matplotlib = require("matplotlib", "plot", "the profile figure")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    base, variant = profiles[0], profiles[-1]
    fig = plt.figure(figsize=(14, 3.2 * len(METRICS)))
    grid = fig.add_gridspec(len(METRICS), 2, width_ratios=[2.2, 1])
    for row, (metric, title) in enumerate(METRICS):
        _share_panel(fig.add_subplot(grid[row, 0]), base, variant, metric, title, legend=row == 0)
    _roofline_panel(fig.add_subplot(grid[:, 1]), (base, variant), peaks)  # the whole right column
    fig.suptitle(f"{variant.label}: where the step goes (counted FLOPs and bytes, measured time)")
    fig.tight_layout()
    return fig


def _share_panel(ax, base: ModelProfile, variant: ModelProfile, metric: str, title: str, legend: bool) -> None:
    """Each residual block's share of the step in ``metric``, base and variant bars, the variant's attention slot
    drawn over its bar; ``legend``: above the panel, where it covers no bar."""
    blocks = [s.name for s in variant.scopes if s.kind == "block"]
    xs = range(len(blocks))
    width = 0.4
    ax.bar([x - width / 2 for x in xs], _shares(base, blocks, metric), width, label=base.label, color="#999999")
    ax.bar([x + width / 2 for x in xs], _shares(variant, blocks, metric), width, label=variant.label, color="#d95f02")
    slot_of = {s.name.rsplit(".", 1)[0]: s.name for s in variant.scopes if s.kind == "attention"}
    if slot_of:  # drawn over the variant's bar: the part of the block that is its attention slot
        ax.bar(
            [x + width / 2 for x in xs],
            _shares(variant, [slot_of.get(b, "") for b in blocks], metric),
            width,
            label="its attention slot",
            color="#1b9e77",
        )
    ax.set_ylabel(f"% of step {title}")
    ax.set_xticks(list(xs))
    ax.set_xticklabels(blocks, rotation=45, ha="right", fontsize=7)
    if legend:
        ax.legend(fontsize=8, loc="lower left", bbox_to_anchor=(0.0, 1.02), ncol=3, frameon=False)


def _roofline_panel(ax, profiles: Sequence[ModelProfile], peaks: Optional[Peaks]) -> None:
    """Achieved GFLOP/s against FLOP/byte for every timed block and attention slot, under the measured roofline."""
    for profile, color in zip(profiles, ("#999999", "#d95f02")):
        points = [s for s in profile.scopes if s.kind in ("block", "attention") and s.seconds and s.bytes]
        for kind, marker in (("block", "o"), ("attention", "^")):
            chosen = [s for s in points if s.kind == kind]
            if chosen:
                ax.scatter(
                    [s.intensity for s in chosen],
                    [s.flops / s.seconds / 1e9 for s in chosen],
                    color=color,
                    marker=marker,
                    label=f"{profile.label} {kind}s",
                    s=18,
                )
    if peaks is not None:
        import numpy as np

        grid = np.logspace(-2, 3, 100)
        ax.plot(
            grid,
            np.minimum(peaks.flops_per_s, grid * peaks.bytes_per_s) / 1e9,
            "k--",
            lw=1,
            label="roofline (measured peaks)",
        )
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("FLOP / byte")
    ax.set_ylabel("achieved GFLOP/s")
    ax.set_title("roofline: blocks and attention slots", fontsize=9)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7)
    else:  # counted only: no times to place
        ax.text(0.5, 0.5, "not measured", ha="center", va="center", transform=ax.transAxes, color="0.5")
