"""Run-folder outputs: metrics.csv, metrics.json (each written atomically) and curves.png (rank 0 only)."""

import csv
import json
import os
from typing import Any, Dict, List, Optional

from ..extras import require
from ..io.atomic import atomic_file, atomic_write_text

__all__ = ["write_metrics", "plot_curves"]


def write_metrics(out: str, history: List[Dict[str, float]]) -> None:
    """metrics.json (a list, one dict per epoch) and metrics.csv (same columns)."""
    atomic_write_text(os.path.join(out, "metrics.json"), json.dumps(history, indent=2))
    if not history:
        return
    with atomic_file(os.path.join(out, "metrics.csv"), "w", newline="") as f:
        columns = list(dict.fromkeys(k for row in history for k in row))  # rows of a resumed run may add columns
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(history)


def curves_figure(history: List[Dict[str, float]], title: str, initial: Optional[Dict[str, Any]] = None):
    """Figure with three panels: train/test loss, train/test top-1 (with the step-0 evaluation of a fine-tune
    at epoch 0 when ``initial`` is given) and the learning rate of each epoch (a retrofit's attention group
    beside the backbone's, ``attn_lr``); whole-epoch ticks, also for a one-epoch run."""
    matplotlib = require("matplotlib", "plot", "curves.png")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    epochs = [h["epoch"] for h in history]
    fig, (ax_loss, ax_acc, ax_lr) = plt.subplots(1, 3, figsize=(12, 3.4))
    ax_loss.plot(epochs, [h["train_loss"] for h in history], label="train", marker="o", ms=3)
    ax_loss.plot(epochs, [h["test_loss"] for h in history], label="test", marker="o", ms=3)
    ax_loss.set(xlabel="epoch", ylabel="loss")
    ax_acc.plot(epochs, [h["train_top1"] for h in history], label="train", marker="o", ms=3)
    ax_acc.plot(epochs, [h["test_top1"] for h in history], label="test", marker="o", ms=3)
    ax_acc.set(xlabel="epoch", ylabel="top-1 (%)")
    if initial is not None:  # the model before any update (a fine-tune's pretrained start), at epoch 0
        ax_loss.plot([0], [initial["test_loss"]], marker="*", ms=10, ls="none", color="k", label="step 0 (test)")
        ax_acc.plot([0], [initial["test_top1"]], marker="*", ms=10, ls="none", color="k", label="step 0 (test)")
    ax_lr.plot(epochs, [h["lr"] for h in history], marker="o", ms=3, color="tab:green", label="backbone")
    attn = [(h["epoch"], h["attn_lr"]) for h in history if h.get("attn_lr") is not None]
    if attn:  # a retrofit's attention group trains at its own lr
        ax_lr.plot(*zip(*attn), marker="s", ms=3, color="tab:purple", label="attention")
        if all(h["lr"] > 0 for h in history) and all(v > 0 for _, v in attn):
            ax_lr.set_yscale("log")  # the groups differ by the lr scale (x30 by default)
        ax_lr.legend()
    ax_lr.set(xlabel="epoch", ylabel="learning rate")
    first = 0 if initial is not None else min(epochs)
    for ax in (ax_loss, ax_acc, ax_lr):
        ax.set_xlim(first - 0.5, max(epochs) + 0.5)  # whole epochs, even for a one-epoch run
        ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
        ax.grid(alpha=0.3)
    ax_loss.legend()
    ax_acc.legend()
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def plot_curves(out: str, history: List[Dict[str, float]], title: str, initial: Optional[Dict[str, Any]] = None) -> str:
    """curves.png in the run folder (see ``curves_figure``)."""
    import matplotlib.pyplot as plt

    fig = curves_figure(history, title, initial)
    path = os.path.join(out, "curves.png")
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
