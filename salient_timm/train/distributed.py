"""Process-group set-up for torchrun launches (DDP: NCCL on GPU, gloo on CPU) and metric reduction."""

import os
from dataclasses import dataclass
from typing import Optional

import torch
import torch.distributed as dist

from ..checks import DeviceError, usable_device
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


def pick_device(requested: Optional[str], local_rank: int) -> torch.device:
    """``--device`` as a torch device (default: this process's GPU, else CPU); ``TrainConfigError`` if unusable
    (``salient_timm.checks.usable_device``)."""
    if requested:
        try:
            return usable_device(requested)
        except DeviceError as e:
            raise TrainConfigError(f"--device: {e}") from e
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
