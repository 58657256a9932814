"""Train/eval mode for the duration of a call, every module's own flag restored after.

``model.train(was_training)`` restores only the root's flag and sets every submodule to it: a model fine-tuned with
frozen BatchNorms (those modules in eval inside a training model, timm's ``freeze_batch_norm_2d`` style or a
user's ``bn.eval()``) would come back with them training. ``training_mode`` restores each module's own flag.
"""

import contextlib
from typing import Iterator

from torch import nn

__all__ = ["training_mode"]


@contextlib.contextmanager
def training_mode(model: nn.Module, training: bool) -> Iterator[nn.Module]:
    """``with training_mode(model, False): model(x)``: ``model.train(training)`` inside, and afterwards (also on an
    exception) every module's ``training`` flag exactly as it was. Yields ``model``."""
    flags = [(m, m.training) for m in model.modules()]
    model.train(training)
    try:
        yield model
    finally:
        for m, flag in flags:
            m.training = flag
