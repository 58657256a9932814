"""Reading weight files with one clear reason when they cannot be read.

``read_state_dict(path)`` is timm's ``load_state_dict`` (safetensors, or ``torch.load`` with
``weights_only=True``; a ``state_dict``/``model`` entry is unwrapped, ``module.`` prefixes removed)
with every failure turned into a ``CheckpointError`` that says why: missing, empty, truncated or
corrupt, a pickle that a safe load refuses (it would run code), or a file that holds something other
than a state dict. ``describe_unreadable`` gives that reason for any read error.
"""

import os
import zipfile
from typing import Any, Dict, List, Optional

import torch
from timm.models import load_state_dict

from ..errors import SalientError, first_line

__all__ = [
    "CheckpointError",
    "CheckpointNotFoundError",
    "read_state_dict",
    "describe_unreadable",
    "load_checkpoint",
    "NotATrainingCheckpointError",
]


class CheckpointError(SalientError, RuntimeError):
    """A checkpoint that cannot be read, or does not fit the model (missing/extra/misshapen keys)."""


class CheckpointNotFoundError(CheckpointError, FileNotFoundError):
    """A weights file that does not exist."""


class NotATrainingCheckpointError(CheckpointError):
    """A readable weights file that is not a salient-train checkpoint (no options, optimizer, ... inside)."""


def _typed_first_line(e: BaseException) -> str:
    """``"UnpicklingError: <its first line>"``, or the type name alone for an empty message."""
    return f"{type(e).__name__}: {first_line(e)}" if str(e).strip() else type(e).__name__


def describe_unreadable(path: str, error: BaseException) -> str:
    """One sentence: why ``path`` could not be read, given the exception reading it raised."""
    if not os.path.exists(path):
        return f"checkpoint not found: {path}"
    if os.path.isdir(path):
        return f"{path} is a folder, not a weights file"
    if os.path.getsize(path) == 0:
        return f"cannot read {path}: the file is empty"
    chain: List[BaseException] = []  # timm re-raises torch's error with its own text: read the whole chain
    link: Optional[BaseException] = error
    while link is not None and len(chain) < 5:
        chain.append(link)
        link = link.__cause__ or link.__context__
    text = " ".join(str(e) for e in chain)
    if "GLOBAL" in text or "Unsupported global" in text:
        return (
            f"refused to load {path}: it holds Python objects that a safe load (weights_only=True) does not "
            "run; only tensors and plain values are read. Re-save it as a state dict (or safetensors)"
        )
    if (
        any(isinstance(e, (zipfile.BadZipFile, EOFError)) for e in chain)
        or "central directory" in text
        or "PytorchStreamReader" in text
    ):
        return f"cannot read {path}: the file is truncated or corrupt ({_typed_first_line(error)})"
    if any(isinstance(e, (AttributeError, TypeError)) for e in chain):
        return f"{path} does not hold a state dict (a mapping of names to tensors)"
    return f"cannot read {path}: not a torch.save or safetensors weights file ({_typed_first_line(chain[-1])})"


def read_state_dict(path: str) -> Dict[str, torch.Tensor]:
    """timm's ``load_state_dict(path)``, raising ``CheckpointError`` with the reason when the file is unusable."""
    try:
        state = load_state_dict(path)
    except Exception as e:  # noqa: BLE001  every read failure becomes one clear CheckpointError
        raise CheckpointError(describe_unreadable(path, e)) from e
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path} does not hold a state dict (a mapping of names to tensors)")
    return state


REQUIRED = ("model", "optimizer", "scheduler", "epoch", "rng", "args")


def load_checkpoint(path: str) -> Dict[str, Any]:
    """A salient-train checkpoint, loaded ``weights_only``; ``CheckpointError`` if unreadable or incomplete."""
    if not os.path.isfile(path):
        raise CheckpointNotFoundError(f"checkpoint not found: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001  truncated zip, garbage bytes, empty file, refused pickle
        raise CheckpointError(describe_unreadable(path, e)) from e
    missing = [k for k in REQUIRED if not isinstance(state, dict) or k not in state]
    if missing:
        raise NotATrainingCheckpointError(f"{path} is not a salient-train checkpoint (missing {', '.join(missing)})")
    return state
