"""Optimizer parameter groups that let a retrofit's new attention layers learn.

An identity-started gate (``init="identity"``) has its last layer at zero: the Salient/SSA
gate BN's gamma, the SE/ECA excitation weights. Everything before that zero gets no gradient
until the zero moves, and the zero's own gradient is a correlation summed over pixels, so with
the backbone's fine-tuning lr and weight decay the gate barely moves (measured in
``results/retrofit.md``). The fix is the usual one for new layers on a pretrained network: the
attention parameters get their own group with a larger lr and no weight decay.

    recipe = retrofit_defaults("salient")                                  # {"init_gain": 0.1, "attn_lr_scale": 30.0}
    inject_attention(model, "salient", init="identity", init_gain=recipe["init_gain"])
    groups = retrofit_param_groups(model, 0.05, weight_decay=5e-4, attn_lr_scale=recipe["attn_lr_scale"])
    opt = torch.optim.SGD(groups, momentum=0.9)          # or timm.optim.create_optimizer_v2(groups, opt="sgd", lr=0.05)

Every group carries its own absolute ``lr``, so it trains right under a plain ``torch.optim`` optimizer with any
torch scheduler (which takes each group's ``lr`` as its base) and under timm's schedulers (which do the same with
``initial_lr``). The groups carry no ``lr_scale``: timm's schedulers multiply a group's scheduled lr by it, which
would scale the attention lr a second time. The backbone is split with timm's own ``param_groups_weight_decay`` (no
decay on biases and norm parameters).

| group | params | weight decay | lr |
|---|---|---|---|
| backbone, decay | conv/linear weights of the base model | ``weight_decay`` | ``lr`` |
| backbone, no decay | biases, norm affine | 0 | ``lr`` |
| attention, decay | weights in a filled attention slot | ``attn_weight_decay`` (0) | ``lr`` x ``attn_lr_scale`` |
| attention, no decay | their biases and norm affine (the gate BN's gamma) | 0 | ``lr`` x ``attn_lr_scale`` |

With ``attn_lr_scale=1`` and ``attn_weight_decay=weight_decay`` the groups train exactly as
timm's ``create_optimizer_v2(model)`` does.
"""

from typing import Any, Dict, List

from timm.optim import param_groups_weight_decay
from torch import nn

from .errors import SalientError
from .surgery import attention_modules

__all__ = [
    "attention_parameter_names",
    "retrofit_param_groups",
    "retrofit_defaults",
    "ParamGroupError",
    "RETROFIT_DEFAULTS",
    "DEFAULT_ATTN_LR_SCALE",
    "DEFAULT_INIT_GAIN",
]

DEFAULT_INIT_GAIN, DEFAULT_ATTN_LR_SCALE = 0.1, 30.0
# kind -> retrofit start and attention lr multiplier, chosen from results/retrofit.md (digits, 3 seeds): the
# smallest recipe per kind whose gates reach half the from-scratch variation in at least half the blocks.
# SE's channel gates need the larger lr. SSA's saliency (quadratic in the features) was tiny next to a fresh
# BN's running variance there: at gain 1 its step-0 gates were within 0.001 of 1 (mean |dev|). Others: salient row.
RETROFIT_DEFAULTS: Dict[str, Dict[str, float]] = {
    "salient": dict(init_gain=DEFAULT_INIT_GAIN, attn_lr_scale=DEFAULT_ATTN_LR_SCALE),
    "ssa": dict(init_gain=1.0, attn_lr_scale=DEFAULT_ATTN_LR_SCALE),
    "se": dict(init_gain=DEFAULT_INIT_GAIN, attn_lr_scale=100.0),
}


def retrofit_defaults(kind: str) -> Dict[str, float]:
    """``{"init_gain", "attn_lr_scale"}`` of the retrofit recipe for an attention kind name (see the table)."""
    return dict(RETROFIT_DEFAULTS.get(str(kind).lower(), RETROFIT_DEFAULTS["salient"]))


def attention_parameter_names(model: nn.Module) -> List[str]:
    """Qualified names of the parameters that live in the model's attention slots (``layer1.0.se.conv.weight``, ...)."""
    return [f"{slot}.{name}" for slot, module in attention_modules(model) for name, _ in module.named_parameters()]


class ParamGroupError(SalientError, ValueError):
    """Parameter-group options that cannot train: a negative or non-finite lr, scale or decay, or no attention."""


def retrofit_param_groups(
    model: nn.Module,
    lr: float,
    weight_decay: float = 0.0,
    attn_lr_scale: float = DEFAULT_ATTN_LR_SCALE,
    attn_weight_decay: float = 0.0,
) -> List[Dict[str, Any]]:
    """Param groups: the backbone as timm splits it, then the attention parameters with their own lr and decay.

    Args:
        model: a model with filled attention slots (``inject_attention`` or a ``salient_*`` variant).
        lr: the backbone's learning rate; each group's ``lr`` is absolute (see the module docstring).
        weight_decay: the backbone's weight decay (biases and norm parameters get none, as in timm).
        attn_lr_scale: the attention groups' lr is ``lr * attn_lr_scale`` (1 = the backbone's lr).
        attn_weight_decay: weight decay of the attention weights that timm would decay (0: nothing pulls
            the gates back to flat); their biases and norm parameters never decay.

    Frozen parameters (``requires_grad=False``) are left out. Raises ``ParamGroupError`` if the model has
    no attention parameters or an lr, scale or decay is negative or not finite.
    """
    for name, value in (
        ("lr", lr),
        ("attn_lr_scale", attn_lr_scale),
        ("attn_weight_decay", attn_weight_decay),
        ("weight_decay", weight_decay),
    ):
        if not 0 <= value < float("inf"):  # also refuses NaN
            raise ParamGroupError(f"{name} must be a finite number >= 0, got {value}")
    attn_ids = {id(p) for _, module in attention_modules(model) for p in module.parameters()}
    if not any(p.requires_grad for p in model.parameters() if id(p) in attn_ids):
        raise ParamGroupError(
            f"{type(model).__name__} has no trainable attention parameters "
            "(inject salient/ssa/se first, or use a salient_*/ssa_* model)"
        )
    backbone, attention = [], []
    # timm's split (decay: weights; no decay: biases, norms), asked with a placeholder decay of 1 so that
    # the split happens even when weight_decay is 0; each half is split again into backbone and attention
    for group in param_groups_weight_decay(model, 1.0):
        decays = group["weight_decay"] > 0
        base = [p for p in group["params"] if id(p) not in attn_ids]
        attn = [p for p in group["params"] if id(p) in attn_ids]
        if base:
            backbone.append({"params": base, "weight_decay": weight_decay if decays else 0.0, "lr": float(lr)})
        if attn:
            attention.append(
                {
                    "params": attn,
                    "weight_decay": attn_weight_decay if decays else 0.0,
                    "lr": float(lr) * float(attn_lr_scale),
                }
            )
    return backbone + attention
