"""One training epoch and one evaluation pass; metrics are exact sums over all processes."""

import contextlib
import time
from typing import Callable, Dict, Optional

import torch
from torch import nn
from torch.utils.data import DataLoader

from .distributed import DistInfo, all_sum

__all__ = ["train_one_epoch", "evaluate"]


def _autocast(device: torch.device, amp: bool):
    return torch.autocast(device.type, dtype=torch.bfloat16) if amp else contextlib.nullcontext()


def _topk_correct(logits: torch.Tensor, target: torch.Tensor, k: int) -> int:
    k = min(k, logits.shape[1])
    return int((logits.topk(k, dim=1).indices == target[:, None]).any(dim=1).sum())


def train_one_epoch(
    model: nn.Module,
    loader: DataLoader,
    optimizer,
    loss_fn,
    device: torch.device,
    amp: bool,
    channels_last: bool,
    info: DistInfo,
    progress=None,
    after_step: Optional[Callable[[], None]] = None,
) -> Dict[str, float]:
    """Train over ``loader`` once; returns mean loss, top-1 (%) and images/s over all processes. ``after_step``
    runs after every optimizer step (the weights' moving average)."""
    model.train()
    sums = torch.zeros(3, dtype=torch.float64)  # loss * n, correct, n
    start = time.perf_counter()
    for images, target in loader:
        images, target = images.to(device, non_blocking=True), target.to(device, non_blocking=True)
        if channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        with _autocast(device, amp):
            logits = model(images)
            loss = loss_fn(logits, target)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if after_step is not None:
            after_step()
        n = target.shape[0]
        sums += torch.tensor([loss.item() * n, _topk_correct(logits.float(), target, 1), n], dtype=torch.float64)
        if progress is not None:
            progress.update(1)
            progress.set_postfix(
                loss=f"{sums[0] / sums[2]:.3f}",
                acc=f"{100 * sums[1] / sums[2]:.1f}",
                img_s=f"{info.world_size * sums[2] / (time.perf_counter() - start):.0f}",
            )
    elapsed = time.perf_counter() - start
    sums = all_sum(sums, info)
    n = max(sums[2].item(), 1.0)
    return {
        "train_loss": sums[0].item() / n,
        "train_top1": 100 * sums[1].item() / n,
        "img_per_s": sums[2].item() / elapsed,
    }


@torch.no_grad()
def evaluate(
    model: nn.Module,
    loader: DataLoader,
    loss_fn,
    device: torch.device,
    amp: bool,
    channels_last: bool,
    info: DistInfo,
    split: str = "test",
) -> Dict[str, float]:
    """``{split}_loss``, ``{split}_top1`` and ``{split}_top5`` (%) over the whole split (each process evaluates its
    own shard)."""
    model.eval()
    sums = torch.zeros(4, dtype=torch.float64)  # loss * n, top1, top5, n
    for images, target in loader:
        images, target = images.to(device), target.to(device)
        if channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        with _autocast(device, amp):
            logits = model(images).float()
        n = target.shape[0]
        sums += torch.tensor(
            [loss_fn(logits, target).item() * n, _topk_correct(logits, target, 1), _topk_correct(logits, target, 5), n],
            dtype=torch.float64,
        )
    sums = all_sum(sums, info)
    n = max(sums[3].item(), 1.0)
    return {
        f"{split}_loss": sums[0].item() / n,
        f"{split}_top1": 100 * sums[1].item() / n,
        f"{split}_top5": 100 * sums[2].item() / n,
    }
