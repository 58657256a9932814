"""Run-folder outputs: metrics.csv, metrics.json and curves.png (rank 0 only)."""

import csv
import json
import os
from typing import Dict, List

from ..extras import require

__all__ = ["write_metrics", "plot_curves"]


def _atomic_write(path: str, text: str) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def write_metrics(out: str, history: List[Dict[str, float]]) -> None:
    """metrics.json (a list, one dict per epoch) and metrics.csv (same columns)."""
    _atomic_write(os.path.join(out, "metrics.json"), json.dumps(history, indent=2))
    if not history:
        return
    tmp = os.path.join(out, "metrics.csv.tmp")
    with open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(history[0]))
        writer.writeheader()
        writer.writerows(history)
    os.replace(tmp, os.path.join(out, "metrics.csv"))


def plot_curves(out: str, history: List[Dict[str, float]], title: str) -> str:
    """curves.png: train/test loss and top-1 accuracy per epoch."""
    matplotlib = require("matplotlib", "plot", "curves.png")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [h["epoch"] for h in history]
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(9, 3.4))
    ax_loss.plot(epochs, [h["train_loss"] for h in history], label="train", marker="o", ms=3)
    ax_loss.plot(epochs, [h["test_loss"] for h in history], label="test", marker="o", ms=3)
    ax_loss.set(xlabel="epoch", ylabel="loss")
    ax_acc.plot(epochs, [h["train_top1"] for h in history], label="train", marker="o", ms=3)
    ax_acc.plot(epochs, [h["test_top1"] for h in history], label="test", marker="o", ms=3)
    ax_acc.set(xlabel="epoch", ylabel="top-1 (%)")
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path = os.path.join(out, "curves.png")
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
