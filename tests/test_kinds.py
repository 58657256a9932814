"""One resolver maps attention kinds to block factories, with clear errors for bad names."""

import functools

import pytest
import torch
from timm.layers import get_attn
from torch import nn

from salient_timm import SalientBlock, SSABlock, UnknownAttentionKindError, attention_kinds, resolve_attention
from salient_timm.layers import IDENTITY_KINDS, TIMM_KINDS, IdentityInitError, init_identity


def test_our_kinds_and_none():
    assert resolve_attention("salient") is SalientBlock
    assert resolve_attention("SSA") is SSABlock
    assert resolve_attention("none") is None and resolve_attention(None) is None


@pytest.mark.parametrize("name", TIMM_KINDS)
def test_every_timm_kind_resolves_like_get_attn(name):
    factory = resolve_attention(name)
    expected = get_attn(name)
    assert factory is expected or (
        isinstance(factory, functools.partial)
        and factory.func is expected.func
        and factory.keywords == expected.keywords
    )


def test_classes_and_factories_pass_through():
    class MyGate(nn.Module):
        def __init__(self, channels):
            super().__init__()

        def forward(self, x):
            return x

    assert resolve_attention(MyGate) is MyGate
    factory = functools.partial(SalientBlock, gate_scale=2.0)
    assert resolve_attention(factory) is factory


def test_unknown_name_lists_valid_kinds_and_suggests():
    with pytest.raises(UnknownAttentionKindError) as err:
        resolve_attention("salinet")
    msg = str(err.value)
    assert "did you mean salient" in msg and "cbam" in msg and "none" in msg and "\n" not in msg


def test_wrong_type_is_rejected():
    with pytest.raises(UnknownAttentionKindError, match="name, an nn.Module class or a factory"):
        resolve_attention(3)


def test_all_kinds_listed_once():
    kinds = attention_kinds()
    assert len(kinds) == len(set(kinds)) and {"none", "salient", "ssa", "se"} <= set(kinds)


@pytest.mark.parametrize("name", IDENTITY_KINDS)
def test_identity_recipes_are_exact(name):
    module = resolve_attention(name)(32).eval()
    init_identity(module)
    x = torch.randn(2, 32, 6, 6)
    assert torch.equal(module(x), x)


def test_identity_refused_for_kinds_without_recipe():
    with pytest.raises(IdentityInitError, match="kinds that support it: salient, ssa, constant, se"):
        init_identity(resolve_attention("gc")(32))
