"""The salient-train checkpoint file (``last.pth``, ``best.pth``): one schema, written by the trainer, read by
``ModelSpec.from_checkpoint``, the model card and resume.

The file is a dict of tensors and plain Python values only, so ``torch.load(..., weights_only=True)`` reads it, and
timm reads its ``model`` entry (a ``best.pth`` works as ``pretrained_cfg_overlay=dict(file=...)``):

| key | type | what |
|---|---|---|
| ``model`` | state_dict | the trained weights |
| ``model_ema`` | state_dict, with ``--model-ema`` | the moving average: what the run evaluated, chose, exports |
| ``optimizer``, ``scheduler`` | state_dict | to resume exactly |
| ``scaler`` | None | kept for files that have it |
| ``epoch`` | int | the last finished epoch, 0-based (history rows count from 1) |
| ``rng`` | dict | torch, CUDA, numpy and Python RNG states (``salient_timm.train.checkpoint.rng_state``) |
| ``args`` | dict | the run's options, as in its ``args.json`` (model, attention, data, recorded preprocessing) |
| ``metrics`` | list of dicts | the history, one row per finished epoch (``metrics.json``) |
"""

from dataclasses import dataclass
from typing import Any, Dict, List, Optional

import torch

from .atomic import atomic_file
from .weights import CheckpointError, load_checkpoint

__all__ = ["TrainCheckpoint"]


@dataclass
class TrainCheckpoint:
    """One salient-train checkpoint (see the module's table)."""

    model: Dict[str, torch.Tensor]
    optimizer: Dict[str, Any]
    scheduler: Dict[str, Any]
    epoch: int
    rng: Dict[str, Any]
    args: Dict[str, Any]
    metrics: List[Dict[str, Any]]
    scaler: Optional[Dict[str, Any]] = None
    model_ema: Optional[Dict[str, torch.Tensor]] = None

    @classmethod
    def read(cls, path: str) -> "TrainCheckpoint":
        """Load ``path`` (``weights_only``). Raises ``CheckpointNotFoundError``, ``NotATrainingCheckpointError`` (a
        weights file without the trainer's entries) or ``CheckpointError`` (unreadable, or an entry of the wrong
        type), each naming the file."""
        return cls.from_dict(load_checkpoint(path), path)

    @classmethod
    def from_dict(cls, state: Dict[str, Any], source: str = "checkpoint") -> "TrainCheckpoint":
        """The schema of a loaded dict; ``CheckpointError`` naming ``source`` and the entry of the wrong type."""
        expected = {"args": dict, "metrics": list, "rng": dict}
        for key, kind in expected.items():
            if not isinstance(state.get(key), kind):
                raise CheckpointError(f"{source}: '{key}' is {type(state.get(key)).__name__}, expected {kind.__name__}")
        try:
            epoch = int(state["epoch"])
        except (TypeError, ValueError) as e:
            raise CheckpointError(f"{source}: 'epoch' is {state['epoch']!r}, expected an integer") from e
        return cls(
            model=state["model"],
            optimizer=state["optimizer"],
            scheduler=state["scheduler"],
            epoch=epoch,
            rng=state["rng"],
            args=dict(state["args"]),
            metrics=list(state["metrics"]),
            scaler=state.get("scaler"),
            model_ema=state.get("model_ema"),
        )

    def to_dict(self) -> Dict[str, Any]:
        """The file's dict: every key of the table, ``model_ema`` only when the run keeps one."""
        state = {
            "model": self.model,
            "optimizer": self.optimizer,
            "scheduler": self.scheduler,
            "scaler": self.scaler,
            "epoch": self.epoch,
            "rng": self.rng,
            "args": self.args,
            "metrics": self.metrics,
        }
        if self.model_ema is not None:
            state["model_ema"] = self.model_ema
        return state

    def save(self, path: str) -> None:
        """Write the file atomically (``io.atomic``: a temp file in the same folder, fsync, rename)."""
        with atomic_file(path, "wb") as f:
            torch.save(self.to_dict(), f)

    @property
    def weights(self) -> Dict[str, torch.Tensor]:
        """The weights the run evaluated and chose: the EMA's with ``--model-ema``, else the trained ones."""
        return self.model_ema if self.model_ema else self.model

    def epoch_row(self) -> Optional[Dict[str, Any]]:
        """The history row of this checkpoint's own epoch (``best.pth``'s may not hold the highest test top-1:
        under ``--holdout`` it is chosen on validation), or None."""
        return next((row for row in self.metrics if int(row["epoch"]) == self.epoch + 1), None)
