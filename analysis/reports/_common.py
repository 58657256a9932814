"""What every report shares: the counting convention, the progress callback, the base model of a spec."""

from dataclasses import replace
from typing import Callable, Optional

from ..spec import AnalysisTarget

__all__ = ["CONVENTION", "Progress", "base_of", "input_text"]

CONVENTION = (
    "MACs = conv/linear multiply-accumulates (bias adds not counted); elementwise = 1 op per output "
    "element of BN, activations, sigmoid, multiply, add (addcmul: 2), 1 per input element of mean/adaptive pooling, "
    "k*k per output element of pooling windows; FLOPs = 2*MACs + elementwise. Eval mode, batch as given."
)

Progress = Optional[Callable[[str], None]]


def base_of(spec: AnalysisTarget) -> AnalysisTarget:
    """The same model without attention: what ``added`` columns and ratios compare against."""
    return replace(spec, attn="none", attn_stages=None)


def input_text(spec: AnalysisTarget) -> str:
    """The input shape as the tables print it, e.g. ``1x3x224x224``."""
    return "x".join(map(str, spec.input_shape))
