"""inject_attention retrofits timm and torchvision ResNets in place, keeping their weights loadable."""

import functools

import pytest
import timm
import torch
import torchvision
from helpers import n_params, randomize_bn
from torch import nn

import salient_timm
from salient_timm import (
    IdentityInitError,
    SalientBlock,
    SSABlock,
    SurgeryError,
    UnknownAttentionKindError,
    attention_modules,
    find_residual_blocks,
    inject_attention,
)
from salient_timm.layers import IDENTITY_KINDS, TIMM_KINDS

X64 = torch.randn(2, 3, 64, 64)


def snapshot(model):
    return {k: v.clone() for k, v in model.state_dict().items()}, [type(m) for m in model.modules()]


def assert_untouched(model, before):
    state, types = before
    after = model.state_dict()
    assert list(after) == list(state)
    assert all(torch.equal(after[k], v) for k, v in state.items())
    assert [type(m) for m in model.modules()] == types


MODELS = {
    "timm resnet18": lambda: timm.create_model("resnet18"),
    "timm resnet26d": lambda: timm.create_model("resnet26d"),
    "timm resnext50_32x4d": lambda: timm.create_model("resnext50_32x4d"),
    "timm wide_resnet50_2": lambda: timm.create_model("wide_resnet50_2"),
    "tv resnet18": lambda: torchvision.models.resnet18(),
    "tv resnet50": lambda: torchvision.models.resnet50(),
    "tv resnext50_32x4d": lambda: torchvision.models.resnext50_32x4d(),
    "tv wide_resnet50_2": lambda: torchvision.models.wide_resnet50_2(),
}


@pytest.mark.parametrize("position", ["post", "mid"])
@pytest.mark.parametrize("make", MODELS.values(), ids=MODELS.keys())
def test_identity_retrofit_keeps_outputs_and_keys(make, position):
    model = randomize_bn(make()).eval()
    before = snapshot(model)
    expected = model(X64)
    assert inject_attention(model, "salient", position=position, init="identity") is model
    assert torch.equal(model(X64), expected)
    state = model.state_dict()
    assert all(torch.equal(state[k], v) for k, v in before[0].items())  # every original key, same tensor
    slot = "se" if position == "post" else "attn_mid"
    new_keys = set(state) - set(before[0])
    assert new_keys and all(f".{slot}." in k for k in new_keys)
    assert len(attention_modules(model, position)) == len(find_residual_blocks(model))


@pytest.mark.parametrize("kind", IDENTITY_KINDS)
@pytest.mark.parametrize("make", [MODELS["timm resnet18"], MODELS["tv resnet50"]], ids=["timm18", "tv50"])
def test_identity_init_exact_for_every_supported_kind(make, kind):
    model = randomize_bn(make()).eval()
    expected = model(X64)
    inject_attention(model, kind, init="identity")
    assert (model(X64) - expected).abs().max().item() == 0.0


def test_identity_refused_for_other_kinds_leaves_model_untouched():
    model = timm.create_model("resnet18")
    before = snapshot(model)
    with pytest.raises(IdentityInitError, match="not available for GlobalContext"):
        inject_attention(model, "gc", init="identity")
    assert_untouched(model, before)


@pytest.mark.parametrize("kind", TIMM_KINDS)
def test_every_timm_kind_injects_or_fails_cleanly(kind):
    model = timm.create_model("resnet18").eval()
    before = snapshot(model)
    try:
        inject_attention(model, kind)
    except SurgeryError as e:
        assert "could not build attention for layer1.0.se" in str(e)
        assert_untouched(model, before)
        return
    assert len(attention_modules(model)) == 8
    if kind not in ("halo", "bat"):  # these need spatial sizes divisible by their block size
        assert model(torch.randn(1, 3, 64, 64)).shape == (1, 1000)


def _deltas(model_name, position):
    base = timm.create_model(model_name)
    model = timm.create_model(model_name)
    inject_attention(model, "salient", position=position)
    attn = [m for _, m in attention_modules(model)]
    conv = sum(m.conv.weight.numel() for m in attn)
    bn = sum(m.bn.weight.numel() + m.bn.bias.numel() for m in attn)
    assert n_params(model) - n_params(base) == conv + bn
    return conv, bn, base


def test_param_delta_resnet34_post_is_sum_of_planes():
    conv, bn, base = _deltas("resnet34", "post")
    widths = [b.module.bn2.num_features for b in find_residual_blocks(base)]
    assert conv == sum(widths) == 3 * 64 + 4 * 128 + 6 * 256 + 3 * 512 == 3776
    assert bn == 2 * len(widths) == 32


def test_param_delta_resnet50_post_and_mid():
    conv, bn, _ = _deltas("resnet50", "post")
    assert (conv, bn) == (15104, 32)  # 4 x sum of planes: Bottleneck output is planes * 4
    conv, bn, _ = _deltas("resnet50", "mid")
    assert (conv, bn) == (3776, 32)


def test_ssa_adds_two_params_per_block():
    model = timm.create_model("resnet50")
    base = n_params(model)
    inject_attention(model, "ssa")
    assert n_params(model) - base == 2 * 16
    assert all(isinstance(m, SSABlock) for _, m in attention_modules(model))


@pytest.mark.parametrize("position", ["post", "mid"])
def test_torchvision_and_timm_retrofits_cross_load(position):
    tv = randomize_bn(torchvision.models.resnet50()).eval()
    inject_attention(tv, "salient", position=position, init="identity")
    tm = timm.create_model("resnet50").eval()
    inject_attention(tm, "salient", position=position)
    tm.load_state_dict(tv.state_dict(), strict=True)
    assert torch.equal(tm(X64), tv(X64))
    tv2 = torchvision.models.resnet50().eval()
    inject_attention(tv2, "salient", position=position)
    tv2.load_state_dict(tm.state_dict(), strict=True)
    assert torch.equal(tv2(X64), tm(X64))


def test_retrofitted_torchvision_loads_timm_registered_variant():
    registered = randomize_bn(timm.create_model("salient_resnet50")).eval()
    tv = torchvision.models.resnet50().eval()
    inject_attention(tv, "salient")
    tv.load_state_dict(registered.state_dict(), strict=True)
    assert torch.equal(tv(X64), registered(X64))


def test_existing_attention_refused_unless_replace():
    model = timm.create_model("seresnet18")
    before = snapshot(model)
    with pytest.raises(
        SurgeryError, match=r"layer1\.0\.se already holds SEModule \(the network.s own attention\); pass replace=True"
    ):
        inject_attention(model, "salient")
    assert_untouched(model, before)
    inject_attention(model, "salient", replace=True)
    assert all(isinstance(m, SalientBlock) for _, m in attention_modules(model, "post"))
    inject_attention(model, "none", replace=True)
    assert attention_modules(model) == []


def test_mid_slot_is_free_on_se_models():
    model = timm.create_model("seresnet18")
    inject_attention(model, "salient", position="mid")
    assert len(attention_modules(model, "mid")) == 8 and len(attention_modules(model, "post")) == 8


@pytest.mark.parametrize("make", [MODELS["timm resnet18"], MODELS["tv resnet18"]], ids=["timm", "tv"])
def test_second_injection_is_refused(make):
    model = make()
    inject_attention(model, "salient")
    before = snapshot(model)
    with pytest.raises(SurgeryError, match="already holds SalientBlock"):
        inject_attention(model, "salient")
    assert_untouched(model, before)


def test_failure_midway_leaves_model_untouched():
    calls = []

    def flaky(channels):
        calls.append(channels)
        if len(calls) == 5:
            raise RuntimeError("boom")
        return SalientBlock(channels)

    model = torchvision.models.resnet18()
    before = snapshot(model)
    with pytest.raises(SurgeryError, match="could not build attention for layer3.0.se .*boom"):
        inject_attention(model, flaky)
    assert len(calls) == 5
    assert_untouched(model, before)


class MyBlock(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 3, padding=1)

    def forward(self, x):
        return x + self.conv(x)


@pytest.mark.parametrize(
    "model, match",
    [
        (nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU()), r"Sequential has no supported residual blocks \(found none\)"),
        (nn.Sequential(MyBlock()), r"found test_surgery.MyBlock: no row in the adapter table.*supported_blocks\(\)"),
        (
            timm.create_model("repvgg_a0"),
            "ByobNet holds timm.models.byobnet.RepVggBlock blocks, which take no attention",
        ),
    ],
    ids=["sequential", "unknown block class", "repvgg"],
)
def test_models_without_supported_blocks_are_refused(model, match):
    before = snapshot(model)
    with pytest.raises(SurgeryError, match=match):
        inject_attention(model, "salient")
    assert_untouched(model, before)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(kind="salinet"), UnknownAttentionKindError, "did you mean salient"),
        (dict(kind="salient", position="pre"), SurgeryError, "valid positions: post, mid"),
        (dict(kind="salient", init="zero"), SurgeryError, "valid inits: default, identity"),
        (dict(kind="none"), SurgeryError, "pass replace=True to remove"),
        (
            dict(kind="se", rd_ratio="x"),
            salient_timm.AttentionArgumentError,
            "rd_ratio='x' for 'se': must be a positive",
        ),
        (dict(kind="se", rd_ratio=0), salient_timm.AttentionArgumentError, "rd_ratio=0 for 'se'"),
        (dict(kind="cbam", rd_ratio=-1), salient_timm.AttentionArgumentError, "rd_ratio=-1 for 'cbam'"),
        (dict(kind="eca", kernel_size=0), salient_timm.AttentionArgumentError, "kernel_size=0 for 'eca'"),
        (dict(kind="eca", kernel_size=-3), salient_timm.AttentionArgumentError, "kernel_size=-3 for 'eca'"),
        (dict(kind="halo", block_size=0), salient_timm.AttentionArgumentError, "block_size=0 for 'halo'"),
    ],
)
def test_bad_arguments_fail_clearly_and_touch_nothing(kwargs, error, match):
    model = timm.create_model("resnet18")
    before = snapshot(model)
    with pytest.raises(error, match=match):
        inject_attention(model, **kwargs)
    assert_untouched(model, before)


def test_block_kwargs_reach_the_attention_constructor():
    model = timm.create_model("resnet50")
    inject_attention(model, "se", rd_ratio=1 / 4, rd_divisor=1)
    se = model.layer1[0].se
    assert se.fc1.out_channels == 256 // 4


def test_new_modules_follow_model_dtype_and_mode():
    model = torchvision.models.resnet18().double().train()
    inject_attention(model, functools.partial(SalientBlock), position="mid")
    attn = model.layer1[0].attn_mid
    assert attn.conv.weight.dtype == torch.float64 and attn.training
    model.eval()
    assert not attn.training
    assert model(X64.double()).dtype == torch.float64


def test_features_only_models_can_be_retrofitted():
    model = randomize_bn(timm.create_model("resnet18", features_only=True, out_indices=(1, 2))).eval()
    expected = model(X64)
    inject_attention(model, "salient", init="identity")
    assert len(attention_modules(model)) == 4  # the wrapper keeps layer1 and layer2 only
    got = model(X64)
    assert [f.shape[1] for f in got] == [64, 128] and all(torch.equal(a, b) for a, b in zip(got, expected))


@pytest.mark.parametrize("position", ["post", "mid"])
def test_retrofitted_torchvision_scripts_and_traces(position):
    model = randomize_bn(torchvision.models.resnet18()).eval()
    inject_attention(model, "salient", position=position)
    expected = model(X64)
    torch.testing.assert_close(torch.jit.script(model)(X64), expected)
    torch.testing.assert_close(torch.fx.symbolic_trace(model)(X64), expected)


def test_retrofitted_model_exports_and_pickles(tmp_path):
    model = randomize_bn(timm.create_model("resnet18")).eval()
    inject_attention(model, "ssa", position="mid", init="identity")
    expected = model(X64)
    exported = torch.export.export(model, (X64,))
    torch.testing.assert_close(exported.module()(X64), expected)
    path = tmp_path / "whole.pt"
    torch.save(model, path)
    torch.testing.assert_close(torch.load(path, weights_only=False)(X64), expected)


def test_a_surgery_step_is_the_inject_call_it_records_and_reads_back_only_known_keys():
    from salient_timm.surgery import SurgeryError, SurgeryStep

    step = SurgeryStep.of("SE", position="mid", kwargs={"rd_ratio": 0.25}, init="identity", init_gain=0.1, stages=[2])
    assert step.to_dict() == {
        "attn": "se",
        "position": "mid",
        "kwargs": {"rd_ratio": 0.25},
        "init": "identity",
        "init_gain": 0.1,
        "stages": [2],
    }
    assert SurgeryStep.from_dict(step.to_dict()) == step
    assert SurgeryStep("salient").to_dict() == {"attn": "salient", "position": "post", "kwargs": {}}
    torch.manual_seed(0)
    by_step = step.apply(timm.create_model("resnet18", num_classes=10))
    torch.manual_seed(0)
    by_call = salient_timm.inject_attention(
        timm.create_model("resnet18", num_classes=10), "se", position="mid", init="identity", init_gain=0.1,
        stages=[2], rd_ratio=0.25,
    )  # fmt: skip
    assert by_step.state_dict().keys() == by_call.state_dict().keys()
    assert all(torch.equal(a, b) for a, b in zip(by_step.state_dict().values(), by_call.state_dict().values()))
    assert len(salient_timm.attention_modules(by_step)) == 2  # stage 2 of resnet18: two blocks
    with pytest.raises(SurgeryError, match="unknown key.*stage.*valid keys: attn, init, init_gain, kwargs"):
        SurgeryStep.from_dict({"attn": "salient", "stage": [1]})
