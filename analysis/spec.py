"""What to analyse: a timm model name, optionally retrofitted, at an input size and batch.

``AnalysisTarget.build()`` makes the model (on the meta device by default: no weights are
allocated, so even resnet152 builds in a fraction of a second).
"""

import re
from dataclasses import dataclass
from typing import Optional, Tuple

import torch
from torch import nn

import salient_timm
from salient_timm import attention_kinds
from salient_timm.errors import SalientError
from salient_timm.spec import ModelSpecError
from salient_timm.spec import check_model_name as _check_model_name

__all__ = ["SpecError", "AnalysisTarget", "parse_input_size", "check_model_name"]


class SpecError(SalientError, ValueError):
    """A model spec that cannot be built (unknown model, bad size, bad batch)."""


def parse_input_size(text: str) -> Tuple[int, int, int]:
    """``"32"`` -> (3, 32, 32); ``"224x160"`` -> (3, 224, 160); ``"1x28x28"`` -> (1, 28, 28)."""
    cleaned = str(text).strip().lower()
    # every separator between two numbers: "7x", "x7", ",32," and "3xx32" are refused, not guessed at
    dims = [int(p) for p in re.split(r"[x,]", cleaned)] if re.fullmatch(r"\d+([x,]\d+){0,2}", cleaned) else []
    if len(dims) == 1:
        dims = [3, dims[0], dims[0]]
    elif len(dims) == 2:
        dims = [3, *dims]
    if len(dims) != 3 or min(dims) < 1:
        raise SpecError(f"bad input size {text!r}; use S, HxW or CxHxW with positive integers (e.g. 32, 3x32x32)")
    return tuple(dims)  # type: ignore[return-value]


def check_model_name(name: str) -> str:
    """``salient_timm.spec.check_model_name`` (close names suggested), raised as this toolkit's ``SpecError``."""
    try:
        return _check_model_name(name)
    except ModelSpecError as e:
        raise SpecError(str(e)) from e


@dataclass(frozen=True)
class AnalysisTarget:
    """A model to analyse at an input size and batch; ``salient_timm.ModelSpec`` builds it (``model_spec``).

    ``attn='none'`` keeps the model as timm builds it."""

    model: str
    attn: str = "none"
    position: str = "post"
    num_classes: Optional[int] = None
    cifar_stem: bool = False
    input_size: Tuple[int, int, int] = (3, 224, 224)
    batch: int = 1
    attn_stages: Optional[str] = None  # "1,2": the residual stages that get attn (salient_timm.ModelSpec parses it)

    def __post_init__(self) -> None:
        check_model_name(self.model)
        if self.attn.lower() not in attention_kinds():
            salient_timm.resolve_attention(self.attn)  # raises with the valid kinds and close matches
        if self.batch < 1:
            raise SpecError(f"batch must be a positive integer, got {self.batch}")
        if self.num_classes is not None and self.num_classes < 0:
            raise SpecError(f"num_classes must be >= 0, got {self.num_classes}")
        try:
            _ = self.model_spec  # its own checks (attn_stages)
        except ModelSpecError as e:
            raise SpecError(str(e)) from e

    @property
    def label(self) -> str:
        """Short name, e.g. ``resnet50+salient``, ``resnet50+se@mid``."""
        return self.model_spec.label

    @property
    def input_shape(self) -> Tuple[int, int, int, int]:
        return (self.batch, *self.input_size)

    def build(self, device: str = "meta") -> nn.Module:
        """Build the model in eval mode on ``device`` (meta: shapes only, no weights), through
        ``salient_timm.ModelSpec``, the one build seam."""
        return self.model_spec.build(device).eval()

    @property
    def model_spec(self) -> salient_timm.ModelSpec:
        """This spec as the plugin's build seam sees it (no input size, no batch)."""
        return salient_timm.ModelSpec(
            self.model,
            attn=self.attn,
            position=self.position,
            num_classes=self.num_classes,
            cifar_stem=self.cifar_stem,
            in_chans=self.input_size[0],
            attn_stages=self.attn_stages,
        )

    def example_input(self, device: str = "meta") -> torch.Tensor:
        return torch.zeros(self.input_shape, device=device)
