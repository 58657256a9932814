"""Retrofit any ResNet: one battery over a representative of every block class in the adapter table.

Each representative is the shallowest (or a small, hand-built) model of its family. The expected residual blocks
are counted here by class name, independently of the adapter table, so a row that stops matching its class (or
matches too much) fails the count.
"""

import copy
import functools
import json
import warnings

import pytest
import timm
import torch
import torchvision
from helpers import assert_same_function, randomize_norms
from timm.layers import GroupNorm, GroupNormAct, LayerNorm2d
from torch import nn

import salient_timm
from salient_timm import SalientBlock, SurgeryError, attention_modules, find_residual_blocks, inject_attention
from salient_timm.surgery import ADAPTERS, UNSUPPORTED, adapter_for, residual_stages
from salient_timm.surgery.slots import ensure_slots


def _fpn_backbone():
    from torchvision.models.detection.backbone_utils import resnet_fpn_backbone

    return resnet_fpn_backbone(backbone_name="resnet18", weights=None, trainable_layers=5)


def _resnetv2_bottleneck():
    from timm.models.resnetv2 import ResNetV2

    norm = functools.partial(GroupNormAct, num_groups=8)
    return ResNetV2(layers=(1, 1, 1, 1), channels=(32, 64, 128, 256), preact=False, norm_layer=norm, num_classes=10)


def _senet_bottleneck():
    from timm.models.senet import SEBottleneck, SENet

    return SENet(SEBottleneck, (1, 1, 1, 1), groups=8, reduction=16, inplanes=64, num_classes=10, drop_rate=0.0)


def _cspnet_edge():
    from timm.models.cspnet import CspNet, _cs3_cfg

    return CspNet(_cs3_cfg(width_multiplier=0.25, depth_multiplier=0.33, block_type="edge"), num_classes=10)


# name -> (factory, {block class: count}) ; counts read off the model definitions, not off the adapter table
REPRESENTATIVES = {
    "test_resnet": (
        lambda: timm.create_model("test_resnet"),
        {"timm.models.resnet.BasicBlock": 3, "timm.models.resnet.Bottleneck": 1},
    ),
    "resnet18 GroupNorm": (
        lambda: timm.create_model("resnet18", norm_layer=functools.partial(GroupNorm, num_groups=8)),
        {"timm.models.resnet.BasicBlock": 8},
    ),
    "test_resnet LayerNorm2d": (
        lambda: timm.create_model("test_resnet", norm_layer=LayerNorm2d),
        {"timm.models.resnet.BasicBlock": 3, "timm.models.resnet.Bottleneck": 1},
    ),
    "tv resnet18": (lambda: torchvision.models.resnet18(), {"torchvision.models.resnet.BasicBlock": 8}),
    "tv resnet50": (lambda: torchvision.models.resnet50(), {"torchvision.models.resnet.Bottleneck": 16}),
    "tv resnet_fpn_backbone FrozenBatchNorm2d": (_fpn_backbone, {"torchvision.models.resnet.BasicBlock": 8}),
    "resnetv2_18": (lambda: timm.create_model("resnetv2_18"), {"timm.models.resnetv2.PreActBasic": 8}),
    "resnetv2_50x1_bit": (
        lambda: timm.create_model("resnetv2_50x1_bit"),
        {"timm.models.resnetv2.PreActBottleneck": 16},
    ),
    "resnetv2 Bottleneck": (_resnetv2_bottleneck, {"timm.models.resnetv2.Bottleneck": 4}),
    "test_byobnet": (
        lambda: timm.create_model("test_byobnet"),
        {f"timm.models.byobnet.{c}": 1 for c in ("BasicBlock", "BottleneckBlock", "DarkBlock", "EdgeBlock")},
    ),
    "lambda_resnet26t": (
        lambda: timm.create_model("lambda_resnet26t"),
        {"timm.models.byobnet.BottleneckBlock": 5, "timm.models.byobnet.SelfAttnBlock": 3},
    ),
    "regnetx_002": (lambda: timm.create_model("regnetx_002"), {"timm.models.regnet.Bottleneck": 13}),
    "regnetv_040": (lambda: timm.create_model("regnetv_040"), {"timm.models.regnet.PreBottleneck": 22}),
    "res2net50_14w_8s": (lambda: timm.create_model("res2net50_14w_8s"), {"timm.models.res2net.Bottle2neck": 16}),
    "resnest14d": (lambda: timm.create_model("resnest14d"), {"timm.models.resnest.ResNestBottleneck": 4}),
    "skresnet18": (lambda: timm.create_model("skresnet18"), {"timm.models.sknet.SelectiveKernelBasic": 8}),
    "skresnet50": (lambda: timm.create_model("skresnet50"), {"timm.models.sknet.SelectiveKernelBottleneck": 16}),
    "legacy_seresnet18": (
        lambda: timm.create_model("legacy_seresnet18", drop_rate=0.0),
        {"timm.models.senet.SEResNetBlock": 8},
    ),
    "legacy_seresnext26_32x4d": (
        lambda: timm.create_model("legacy_seresnext26_32x4d", drop_rate=0.0),
        {"timm.models.senet.SEResNeXtBottleneck": 8},
    ),
    "legacy_seresnet50": (
        lambda: timm.create_model("legacy_seresnet50", drop_rate=0.0),
        {"timm.models.senet.SEResNetBottleneck": 16},
    ),
    "senet SEBottleneck": (_senet_bottleneck, {"timm.models.senet.SEBottleneck": 4}),
    "tresnet_m": (
        lambda: timm.create_model("tresnet_m"),
        {"timm.models.tresnet.BasicBlock": 7, "timm.models.tresnet.Bottleneck": 14},
    ),
    "test_nfnet": (lambda: timm.create_model("test_nfnet"), {"timm.models.nfnet.NormFreeBlock": 4}),
    "dla34": (lambda: timm.create_model("dla34"), {"timm.models.dla.DlaBasic": 12}),
    "dla46_c": (lambda: timm.create_model("dla46_c"), {"timm.models.dla.DlaBottleneck": 12}),
    "dla60_res2net": (lambda: timm.create_model("dla60_res2net"), {"timm.models.dla.DlaBottle2neck": 16}),
    "cspresnet50": (lambda: timm.create_model("cspresnet50"), {"timm.models.cspnet.BottleneckBlock": 13}),
    "cs3darknet_focus_s": (lambda: timm.create_model("cs3darknet_focus_s"), {"timm.models.cspnet.DarkBlock": 9}),
    "cspnet EdgeBlock": (_cspnet_edge, {"timm.models.cspnet.EdgeBlock": 3}),
    "hrnet_w18_small": (
        lambda: timm.create_model("hrnet_w18_small"),
        {"timm.models.resnet.BasicBlock": 18, "timm.models.resnet.Bottleneck": 5},
    ),
}
KINDS = ("salient", "ssa", "se", "eca", "cbam")


def _qualname(module: nn.Module) -> str:
    return f"{type(module).__module__}.{type(module).__name__}"


def _counted(model: nn.Module, expected: dict) -> int:
    return sum(1 for m in model.modules() if _qualname(m) in expected)


@functools.cache
def _meta(name: str) -> nn.Module:
    with torch.device("meta"):
        return REPRESENTATIVES[name][0]()


def test_every_row_has_a_representative_here():
    covered = {cls for name, (_, expected) in REPRESENTATIVES.items() for cls in expected}
    rows = {f"{a.block.__module__}.{a.block.__name__}" for a in ADAPTERS.values()}
    assert rows == covered


@pytest.mark.parametrize("name", REPRESENTATIVES)
def test_every_kind_at_every_free_slot_gives_one_gate_per_residual_block(name):
    """Meta device: shapes only. A slot the network fills itself is refused by name (replace=True overwrites)."""
    model, expected = _meta(name), REPRESENTATIVES[name][1]
    blocks = find_residual_blocks(model)
    assert len(blocks) == _counted(model, expected) == sum(expected.values())
    before = set(model.state_dict())
    for position in ("post", "mid"):
        occupied = [b for b in blocks if b.slot(position) is not None]
        for kind in KINDS:
            trial = copy.deepcopy(model)
            if occupied:
                with pytest.raises(SurgeryError, match=f"{occupied[0].slot_name(position)} already holds"):
                    inject_attention(trial, kind, position=position, init="identity")
                inject_attention(trial, kind, position=position, init="identity", replace=True)
            else:
                inject_attention(trial, kind, position=position, init="identity")
            gates = attention_modules(trial, position)
            assert len(gates) == len(blocks)
            assert all(type(m).__name__ != "Identity" for _, m in gates)
            new = set(trial.state_dict()) - before
            assert new and all(any(k.startswith(f"{g}.") for g, _ in gates) for k in new)


def _flat(out) -> torch.Tensor:
    """A model's output as one tensor (torchvision's FPN backbone returns a dict of maps)."""
    return torch.cat([t.flatten(1) for t in out.values()], 1) if isinstance(out, dict) else out


def _same(a, b) -> bool:
    return torch.equal(_flat(a), _flat(b))


class _Flat(nn.Module):
    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _flat(self.model(x))


def _real(name: str) -> nn.Module:
    torch.manual_seed(0)
    return randomize_norms(REPRESENTATIVES[name][0]().double()).eval()


def _input(name: str, batch: int = 2) -> torch.Tensor:
    return torch.randn(batch, 3, 64, 64, dtype=torch.float64)


def _free_stages(model: nn.Module):
    """``{position: stages whose blocks all have that slot free}`` (TResNet: its SE sits at post in stages 1-2 and at
    mid in stage 3)."""
    blocks = find_residual_blocks(model)
    stages = sorted({b.stage for b in blocks})
    free = {
        p: tuple(s for s in stages if all(b.slot(p) is None for b in blocks if b.stage == s)) for p in ("post", "mid")
    }
    return {p: s for p, s in free.items() if s}


@pytest.mark.parametrize("name", REPRESENTATIVES)
def test_identity_retrofit_is_exact_and_every_gate_then_learns(name):
    """fp64, every norm randomised: Salient at each free slot keeps the outputs bit for bit; once the gates are
    moved off the identity, a training step's gradients reach every gate's conv, and the outputs change."""
    model = _real(name)
    x = _input(name)
    with torch.no_grad():
        expected = model(x)
    retrofit = copy.deepcopy(model)
    free = _free_stages(model)
    for position, stages in free.items():
        inject_attention(retrofit, "salient", position=position, init="identity", stages=stages)
    gates = [(where, g) for where, g in attention_modules(retrofit) if isinstance(g, SalientBlock)]
    assert len(gates) == sum(len([b for b in find_residual_blocks(model) if b.stage in s]) for s in free.values())
    with torch.no_grad():
        assert _same(retrofit(x), expected)
        for _, gate in gates:
            gate.bn.weight.fill_(0.5)
            gate.conv.weight.normal_()
        assert not _same(retrofit(x), expected)
    retrofit.train()
    _flat(retrofit(x)).square().mean().backward()
    for where, gate in gates:
        assert gate.conv.weight.grad is not None and gate.conv.weight.grad.abs().sum() > 0, where


SLOTTED = [name for name, (_, expected) in REPRESENTATIVES.items() if name != "hrnet_w18_small"]


@pytest.mark.parametrize("name", SLOTTED)
def test_slotted_forward_with_empty_slots_is_the_original_block(name):
    """The forward copies against timm's/torchvision's own forward: training mode, fp64, outputs and every
    gradient (and both models' BatchNorm statistics move the same way)."""
    model = _real(name).train()
    slotted = copy.deepcopy(model)
    for block in find_residual_blocks(slotted):
        ensure_slots(block.module, block.adapter)
    swapped = [b for b in find_residual_blocks(slotted) if b.adapter.slotted is not None]
    if not swapped:
        pytest.skip("every slot of this family is timm's own: nothing is copied")
    assert all(type(b.module) is b.adapter.slotted for b in swapped)
    x = _input(name).requires_grad_()
    assert_same_function(_Flat(slotted), _Flat(model), x, grad_atol=1e-10)
    for (key, a), b in zip(slotted.state_dict().items(), model.state_dict().values()):
        assert torch.equal(a, b), key


@pytest.mark.parametrize("name", ["test_nfnet", "test_byobnet", "regnetx_002", "tresnet_m"])
def test_a_slot_the_network_fills_itself_is_replaced_or_emptied_only_when_asked(name):
    model = _real(name)
    native = next((p for p in ("mid", "post") if any(b.slot(p) is not None for b in find_residual_blocks(model))), None)
    if native is None:  # no attention of its own: fill one, then it is the network's as far as surgery knows
        native = "mid"
        inject_attention(model, "se", position=native)
    owners = [b for b in find_residual_blocks(model) if b.slot(native) is not None]
    inject_attention(model, "none", position=native, replace=True)
    assert attention_modules(model, native) == []
    for block in owners:  # emptied the way timm empties it: None or nn.Identity
        slot = block.adapter.slot(native)
        held = getattr(block.module, slot.attr)
        assert held is None if slot.empty == "none" else type(held) is nn.Identity
    with torch.no_grad():
        model(_input(name))


def test_nf_resnet_identity_start_divides_by_the_blocks_attention_gain():
    model = randomize_norms(timm.create_model("nf_resnet26").double()).eval()  # no attention of its own
    x = _input("nf_resnet26")
    with torch.no_grad():
        expected = model(x)
    blocks = find_residual_blocks(model)
    assert {b.module.attn_gain for b in blocks} == {2.0}
    inject_attention(model, "salient", position="post", init="identity")
    assert {float(g.gate.scale) for _, g in attention_modules(model)} == {1.0}  # 2 * sigmoid(0) / attn_gain 2
    with torch.no_grad():
        assert torch.equal(model(x), expected)


def test_refusals_name_the_block_class_and_why():
    with torch.device("meta"):
        repvgg = timm.create_model("repvgg_a0")
    with pytest.raises(SurgeryError, match=r"RepVggBlock blocks, which take no attention: a re-parameterisable"):
        inject_attention(repvgg, "salient")
    assert set(UNSUPPORTED) and all(cls not in ADAPTERS for cls in UNSUPPORTED)


def test_stages_select_which_blocks_get_gates():
    model = timm.create_model("resnet18")
    assert [b.stage for b in find_residual_blocks(model)] == [1, 1, 2, 2, 3, 3, 4, 4]
    inject_attention(copy.deepcopy(model), "salient", stages=(1, 2))
    twin = copy.deepcopy(model)
    inject_attention(twin, "salient", stages=(1, 2))
    assert [n for n, _ in attention_modules(twin)] == ["layer1.0.se", "layer1.1.se", "layer2.0.se", "layer2.1.se"]
    flags = copy.deepcopy(model)
    inject_attention(flags, "salient", stages=(False, True, True, True))  # mmdetection's form
    assert {n.split(".")[0] for n, _ in attention_modules(flags)} == {"layer2", "layer3", "layer4"}
    for bad, match in (
        ((0,), r"residual stages are 1\.\.4"),
        ((5,), r"1\.\.4"),
        ((True, False), "2 flags for a model with 4 stages"),
    ):
        with pytest.raises(SurgeryError, match=match):
            inject_attention(copy.deepcopy(model), "salient", stages=bad)


@pytest.mark.parametrize(
    "name, stages",
    [
        ("dla34", 4),  # level2..level5 (trees of blocks)
        ("hrnet_w18_small", 5),  # layer1, stage2..stage4 (parallel branches), incre_modules (its head's blocks)
        ("regnetx_002", 4),  # s1..s4
        ("test_byobnet", 4),  # stages.0..3
        ("tv resnet_fpn_backbone FrozenBatchNorm2d", 4),  # body.layer1..4
    ],
)
def test_every_family_numbers_its_residual_stages_from_one(name, stages):
    blocks = find_residual_blocks(_meta(name))
    assert sorted({b.stage for b in blocks}) == list(range(1, stages + 1))


def test_residual_stages_of_bare_names():
    assert residual_stages(["a.layer1.0", "a.layer1.1", "a.layer2.0"]) == [1, 1, 2]
    assert residual_stages(["layer1.0", "layer1.1"]) == [1, 1]  # one stage: its blocks share it


@pytest.mark.parametrize(
    "name, position, stages",
    [
        ("resnetv2_18", "post", (1, 2)),
        ("regnetx_002", "post", (1, 2)),
        ("test_byobnet", "post", (1, 4)),  # its own SE sits at post in stages 2-3
        ("test_nfnet", "mid", (1, 2)),
        ("dla34", "mid", (1, 2)),
    ],
)
def test_a_retrofit_shares_through_a_hugging_face_folder(name, position, stages, tmp_path):
    from salient_timm.deploy.hub import save_hf_folder

    spec = salient_timm.ModelSpec(name, attn="salient", position=position, num_classes=5, attn_stages=stages)
    model = randomize_norms(spec.build()).eval()
    save_hf_folder(model, str(tmp_path / "hf"))
    loaded = timm.create_model(f"local-dir:{tmp_path / 'hf'}", pretrained=True).eval()
    assert [n for n, _ in attention_modules(loaded)] == [n for n, _ in attention_modules(model)]
    gated = {b.stage for b in find_residual_blocks(loaded) if isinstance(b.slot(position), SalientBlock)}
    assert gated == set(stages)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))


@pytest.mark.parametrize("name", ["resnetv2_18", "regnetx_002", "dla34", "skresnet18", "nf_resnet26"])
def test_features_only_retrofit_keeps_the_features_and_matches_forward_intermediates(name):
    torch.manual_seed(0)
    features = randomize_norms(timm.create_model(name, features_only=True).double()).eval()
    x = _input(name)
    with torch.no_grad():
        before = features(x)
    inject_attention(features, "salient", position="post", init="identity")
    with torch.no_grad():
        assert all(torch.equal(a, b) for a, b in zip(features(x), before))
    full = timm.create_model(name).double().eval()
    inject_attention(full, "salient", position="post", init="identity", init_gain=0.5)
    own = full.state_dict()
    features.load_state_dict(
        dict(zip(features.state_dict(), (own[k] for k in own if k in _prefix_keys(own, features))))
    )
    with torch.no_grad():
        _, intermediates = full.forward_intermediates(x, indices=list(features.feature_info.out_indices))
        for got, want in zip(features(x), intermediates):
            torch.testing.assert_close(got, want)


def _prefix_keys(own: dict, features: nn.Module) -> set:
    return set(list(own)[: len(features.state_dict())])


def test_a_family_without_a_fold_layout_folds_its_convs_and_names_the_gates_it_keeps():
    model = _real("regnetx_002").float()
    inject_attention(model, "salient", position="post")
    model = randomize_norms(model).eval()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        folded = salient_timm.reparameterize(model)
    message = next(str(w.message) for w in caught if "reparameterize" in str(w.message))
    assert "13 attention slot(s) cannot fold" in message and "Bottleneck has no fold layout" in message
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(folded(x), model(x), rtol=1e-4, atol=1e-4)
    assert sum(isinstance(m, SalientBlock) for m in folded.modules()) == 13


def test_the_readme_supported_blocks_table_is_the_generated_one():
    import pathlib

    from salient_timm.surgery.table import supported_blocks_table

    readme = (pathlib.Path(__file__).resolve().parents[1] / "README.md").read_text()
    start, end = "<!-- supported-blocks:start -->\n", "\n<!-- supported-blocks:end -->"
    assert readme[readme.index(start) + len(start) : readme.index(end)] == supported_blocks_table()


def test_adapter_for_knows_a_slotted_block_as_its_original_class():
    block = find_residual_blocks(timm.create_model("test_resnet"))[0].module
    row = adapter_for(block)
    ensure_slots(block, row)
    assert type(block) is row.slotted and adapter_for(block) is row


def test_the_cli_takes_attn_stages_and_refuses_a_bad_one_in_one_line():
    from click.testing import CliRunner

    from salient_analysis.cli import main

    def analyze(*args):
        return CliRunner().invoke(main, ["params", "-m", "regnetx_002", "-f", "json", *args])

    ok = analyze("--attn", "salient", "--attn-stages", "3,4")
    assert ok.exit_code == 0, ok.output
    rows = {r["part"]: r["added"] for r in json.loads(ok.stdout)["tables"][0]["rows"]}
    model = timm.create_model("regnetx_002")
    inject_attention(model, "salient", stages=(3, 4))
    added = sum(p.numel() for _, m in attention_modules(model) if isinstance(m, SalientBlock) for p in m.parameters())
    assert rows["s1"] == rows["s2"] == 0 and rows["total"] == added > 0
    for bad, says in (("9", "residual stages are 1..4"), ("x", "give stage numbers separated by commas")):
        run = analyze("--attn", "salient", "--attn-stages", bad)
        assert run.exit_code == 1 and says in run.output and "Traceback" not in run.output
        assert len(run.output.strip().splitlines()) == 1
