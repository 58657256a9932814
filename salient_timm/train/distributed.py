"""Process-group set-up for torchrun launches (DDP: NCCL on GPU, gloo on CPU) and metric reduction."""

import os
from dataclasses import dataclass
from typing import Optional

import torch
import torch.distributed as dist

from .config import TrainConfigError

__all__ = ["DistInfo", "init_distributed", "all_sum", "pick_device"]


@dataclass(frozen=True)
class DistInfo:
    world_size: int = 1
    rank: int = 0
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


DEVICE_TYPES = ("cpu", "cuda", "mps")


def pick_device(requested: Optional[str], local_rank: int) -> torch.device:
    """``--device`` as a torch device (default: this process's GPU, else CPU); ``TrainConfigError`` if unusable."""
    if requested:
        try:
            device = torch.device(requested)
        except RuntimeError as e:
            raise TrainConfigError(f"unknown --device {requested!r}; valid: cpu, cuda, cuda:N, mps") from e
        if device.type not in DEVICE_TYPES:
            raise TrainConfigError(f"unsupported --device {requested!r}; valid: cpu, cuda, cuda:N, mps")
        if device.type == "cuda" and not torch.cuda.is_available():
            raise TrainConfigError(f"--device {requested}: CUDA is not available on this machine; use --device cpu")
        if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
            raise TrainConfigError(f"--device {requested}: this machine has {torch.cuda.device_count()} CUDA device(s)")
        if device.type == "mps" and not torch.backends.mps.is_available():
            raise TrainConfigError(f"--device {requested}: MPS is not available on this machine; use --device cpu")
        return device
    return torch.device("cuda", local_rank) if torch.cuda.is_available() else torch.device("cpu")


def init_distributed(device: torch.device) -> DistInfo:
    """Join the process group torchrun describes in the environment (no-op for a single process)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    info = DistInfo(world, int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0")))
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return info


def all_sum(values: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """Sum a float64 tensor of counters over all processes."""
    if info.enabled:
        values = values.clone()
        dist.all_reduce(values, op=dist.ReduceOp.SUM)
    return values
