"""The inference deploy form that ``--reparam`` (and ``--fold-bn``) count.

| option | folding | what it is |
|---|---|---|
| ``--reparam`` | ``timm.utils.reparameterize_model``: each module's own ``fuse()`` / ``reparameterize()`` / ``switch_to_deploy()`` hook (RepVGG, MobileOne, FastViT, LeViT...; our slotted ResNet blocks fold there, the Salient gate a 1-channel conv) | what timm's ``benchmark.py --reparam`` runs, so what timm's published CSV counts |
| ``--fold-bn`` | ``salient_timm.reparameterize``: the above, plus every conv + BatchNorm pair the hooks leave (a ResNet's stem, ``nn.Sequential`` pairs) | a deployment's count; below the CSV where a model keeps BatchNorms timm does not fold (repghostnet: 4.3 %) |
"""

import warnings
from typing import List, Literal, Tuple

from timm.utils import reparameterize_model
from torch import nn

import salient_timm
from salient_timm.surgery.slots import ensure_slots

from .spec import AnalysisTarget

__all__ = ["REPARAM_NOTE", "FOLD_BN_NOTE", "Folding", "reparameterized"]

Folding = Literal["timm", "fold-bn"]
REPARAM_NOTE = (
    "--reparam: the model as timm's benchmark.py --reparam counts it (timm.utils.reparameterize_model: each "
    "module's own fuse/reparameterize hook; our ResNet blocks fold there, the Salient gate a 1-channel conv)"
)
FOLD_BN_NOTE = (
    "--fold-bn: timm's reparameterize_model hooks, then every conv + BatchNorm pair they leave folded too "
    "(salient_timm.reparameterize); timm's published CSV counts --reparam, not this"
)


def reparameterized(
    spec: AnalysisTarget, device: str = "cpu", how: Folding = "timm", as_gated: bool = False
) -> Tuple[nn.Module, List[str]]:
    """``spec``'s model in eval mode, folded for inference (``how``: see the module docstring), on ``device``, and
    the warnings naming what could not fold (it stays as it is). Folding reads weights, so the model is built on
    the CPU first; a model with nothing to fold comes back unchanged.

    ``as_gated``: the residual blocks first take the deploy hook a gated block has (``salient_timm``'s slotted
    classes, empty slots), so a plain base folds as its gated variant does: the base of a ``--reparam`` ratio."""
    model = spec.build("cpu").eval()
    if as_gated:
        for block in salient_timm.find_residual_blocks(model):
            ensure_slots(block.module, block.adapter)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if how == "timm":
            folded = reparameterize_model(model, inplace=True)
        else:
            folded = salient_timm.reparameterize(model, inplace=True)
    return folded.to(device), [str(w.message) for w in caught if "reparameterize" in str(w.message)]
