"""What a training checkpoint holds besides the weights: every RNG's state, to resume exactly.

The file's schema (keys, types, atomic save, read) is ``salient_timm.io.checkpoint.TrainCheckpoint``; core reads
it too (``ModelSpec.from_checkpoint``, the model card), so it lives below the trainer. ``load_checkpoint`` (the
file as a dict) is re-exported from ``salient_timm.io.weights``.
"""

import random
from typing import Any, Dict, Tuple

import numpy as np
import torch

from ..io.weights import load_checkpoint

__all__ = ["load_checkpoint", "rng_state", "set_rng_state"]


def rng_state() -> Dict[str, Any]:
    """Every RNG the run uses, as tensors and plain values."""
    np_state: Tuple[Any, ...] = tuple(np.random.get_state())
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.stack(torch.cuda.get_rng_state_all()) if torch.cuda.is_available() else None,
        "numpy": {
            "keys": torch.from_numpy(np_state[1].astype(np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached": float(np_state[4]),
        },
        "python": [list(random.getstate()[1]), random.getstate()[2]],
    }


def set_rng_state(state: Dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if state.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(list(state["cuda"]))
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"]))
    keys, gauss = state["python"]
    random.setstate((3, tuple(keys), gauss))
