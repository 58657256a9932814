"""Does a (retrofitted) model run at an input size? One clear error naming the module that cannot.

Some attention kinds only run at certain feature sizes: timm's ``halo`` and ``bat`` need every feature map
divisible by their ``block_size`` and fail with a bare ``AssertionError`` deep inside their forward.
``explain_forward_errors`` turns such failures into a ``ModelInputError`` that names the module, its
type, the input size and the constraint; ``check_runs`` dry-runs a model on the meta device (nothing
allocated, the caller's model untouched) so a bad size is refused before anything is trained or counted;
``check_runs(..., train=True)`` also refuses a training batch on which a BatchNorm would see one value per
channel (batch 1 with a 1x1 map), which torch only reports mid-step with a traceback. ``usable_device`` checks a
device name the same way before anything is built: known to torch, of a type the caller runs on, present here.
"""

import contextlib
import copy
from typing import Dict, Iterator, List, Sequence, Tuple

import torch
from torch import nn

from .errors import SalientError, first_line

__all__ = [
    "ModelInputError",
    "SingleValueBatchNormError",
    "DeviceError",
    "explain_forward_errors",
    "check_runs",
    "usable_device",
]


class ModelInputError(SalientError, ValueError):
    """The model cannot run a forward pass at the given input size."""


def _constraint(module: nn.Module) -> str:
    block = getattr(module, "block_size", None)
    if block is not None:
        return f"; {type(module).__name__} needs every feature map it sees divisible by its block_size {block}"
    return ""


@contextlib.contextmanager
def explain_forward_errors(model: nn.Module, input_shape: Sequence[int]) -> Iterator[None]:
    """Re-raise an assertion or shape error from ``model``'s forward as ``ModelInputError`` naming the module."""
    names = {id(m): name for name, m in model.named_modules()}
    stack: List[nn.Module] = []
    failed: List[nn.Module] = []

    def enter(module, args):
        if id(module) in names:
            stack.append(module)

    def leave(module, args, out):
        if stack and stack[-1] is module:
            stack.pop()

    pre = nn.modules.module.register_module_forward_pre_hook(enter)
    post = nn.modules.module.register_module_forward_hook(leave)
    try:
        yield
    except (AssertionError, RuntimeError, ValueError) as e:
        if isinstance(e, SalientError):
            raise
        failed = stack[-1:] or [model]
        module = failed[0]
        where = names.get(id(module)) or type(model).__name__
        reason = first_line(e)
        raise ModelInputError(
            f"{type(model).__name__} cannot run at input {'x'.join(map(str, input_shape))}: {where} "
            f"({type(module).__name__}) failed: {reason}{_constraint(module)}"
        ) from e
    finally:
        pre.remove()
        post.remove()


class SingleValueBatchNormError(ModelInputError):
    """A BatchNorm would see one value per channel in training (batch 1 with a 1x1 map): it cannot train."""


def _refuse_single_values(names: Dict[int, str], input_shape: Sequence[int]):
    def hook(module: nn.Module, args) -> None:
        x = args[0]
        if module.training and x.dim() >= 2 and x.numel() == x.shape[1]:
            spatial = "x".join(map(str, x.shape[2:])) or "1"
            raise SingleValueBatchNormError(
                f"at input {'x'.join(map(str, input_shape))}, {names[id(module)]} ({type(module).__name__}) "
                f"would see one value per channel (batch {x.shape[0]} with a {spatial} map): BatchNorm cannot "
                "train on that"
            )

    return hook


def check_runs(model: nn.Module, input_shape: Sequence[int], train: bool = False) -> None:
    """One forward of a meta-device copy of ``model`` on ``input_shape`` (nothing allocated, ``model`` untouched):
    eval mode, or ``train=True`` for a training step's batch. ``ModelInputError`` naming the module if it fails;
    ``SingleValueBatchNormError`` in training when a BatchNorm would see one value per channel."""
    probe = copy.deepcopy(model).to("meta").train(train)
    names = {id(m): name for name, m in probe.named_modules()}
    if train:
        hook = _refuse_single_values(names, input_shape)
        for m in probe.modules():
            if isinstance(m, nn.modules.batchnorm._NormBase):
                m.register_forward_pre_hook(hook)
    with explain_forward_errors(probe, input_shape), torch.no_grad():
        probe(torch.zeros(tuple(input_shape), device="meta"))


class DeviceError(SalientError, ValueError):
    """A device name torch does not know, of a type the caller cannot use, or absent from this machine."""


def usable_device(requested: str, types: Tuple[str, ...] = ("cpu", "cuda", "mps")) -> torch.device:
    """``requested`` (``cpu``, ``cuda``, ``cuda:1``, ``mps``) as a torch device of one of ``types`` that this machine
    has; ``DeviceError`` naming the valid names, or what the machine lacks, otherwise."""
    valid = ", ".join(name for t in types for name in ((t, "cuda:N") if t == "cuda" else (t,)))
    try:
        device = torch.device(requested)
    except RuntimeError as e:
        raise DeviceError(f"unknown device {requested!r}; valid: {valid}") from e
    if device.type not in types:
        raise DeviceError(f"unknown device {requested!r}; valid: {valid}")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise DeviceError(f"{requested}: CUDA is not available on this machine; use cpu")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise DeviceError(f"{requested}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise DeviceError(f"{requested}: MPS is not available on this machine; use cpu")
    return device
