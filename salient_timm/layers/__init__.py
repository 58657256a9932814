"""The gate layers, timm's ``layers/`` style: one concept a module.

| module | what |
|---|---|
| ``salient`` | ``ScaledSigmoid``, ``SalientBlock``, ``SSABlock``, ``ConstantGate`` (the gate-free control) |
| ``_fused_gate`` | the fused gate: one custom autograd function for eager training (private; ``salient`` calls it) |
| ``create_attn`` | attention kinds by name (ours and timm's ``get_attn``), ``resolve_attention``, argument rules |
| ``identity`` | ``init_identity``: exact and near-identity starts for the kinds that allow them |
"""

from .create_attn import (
    NONE_KIND,
    OUR_KINDS,
    TIMM_KINDS,
    AttentionArgumentError,
    AttentionKind,
    UnknownAttentionKindError,
    attention_kinds,
    check_attention_kwargs,
    resolve_attention,
)
from .identity import IDENTITY_KINDS, IdentityInitError, init_identity
from .salient import ConstantGate, SalientBlock, ScaledSigmoid, SSABlock

__all__ = [
    "ScaledSigmoid",
    "SalientBlock",
    "SSABlock",
    "ConstantGate",
    "AttentionKind",
    "OUR_KINDS",
    "TIMM_KINDS",
    "NONE_KIND",
    "IDENTITY_KINDS",
    "attention_kinds",
    "resolve_attention",
    "check_attention_kwargs",
    "init_identity",
    "UnknownAttentionKindError",
    "AttentionArgumentError",
    "IdentityInitError",
]
