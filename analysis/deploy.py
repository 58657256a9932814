"""The inference deploy form that ``--reparam`` counts, as timm's ``benchmark.py --reparam`` builds it."""

import warnings
from typing import List, Tuple

from torch import nn

import salient_timm

from .spec import ModelSpec

__all__ = ["REPARAM_NOTE", "reparameterized"]

REPARAM_NOTE = (
    "--reparam: the inference deploy form (salient_timm.reparameterize, which runs timm's reparameterize_model "
    "hooks: every conv + BN folded, the Salient gate a 1-channel conv beside the conv before it)"
)


def reparameterized(spec: ModelSpec, device: str = "cpu") -> Tuple[nn.Module, List[str]]:
    """``spec``'s model in eval mode, folded for inference (``salient_timm.reparameterize``), on ``device``, and the
    warnings naming what could not fold (it stays as it is). Folding reads weights, so the model is built on the
    CPU first; a model with nothing to fold comes back unchanged."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        folded = salient_timm.reparameterize(spec.build("cpu").eval(), inplace=True)
    return folded.to(device), [str(w.message) for w in caught if "reparameterize" in str(w.message)]
