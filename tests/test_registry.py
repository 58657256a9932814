"""``import salient_timm`` makes our variants first-class timm models."""

import os

import pytest
import timm
import torch
from helpers import randomize_bn
from safetensors.torch import save_file
from timm.models import get_pretrained_cfg

import salient_timm
from salient_timm import (
    VARIANTS,
    CheckpointError,
    SalientBlock,
    SSABlock,
    SurgeryError,
    attention_modules,
    convert_to_cifar_stem,
    find_residual_blocks,
)

ALL = sorted(VARIANTS)
X32 = torch.randn(2, 3, 32, 32)


def test_all_variants_are_listed():
    """Every variant, plus salient_retrofit: the architecture name under which retrofits reload from a hub folder."""
    listed = set(timm.list_models("salient_*")) | set(timm.list_models("ssa_*"))
    assert listed == set(VARIANTS) | {"salient_retrofit"} and len(timm.list_models("salient_*")) >= 10


@pytest.mark.parametrize("name", ALL)
def test_forward_backward_every_block_gated(name):
    model = timm.create_model(name, num_classes=7)
    expected = SalientBlock if VARIANTS[name].attn == "salient" else SSABlock
    blocks = find_residual_blocks(model)
    assert blocks and all(isinstance(b.module.se, expected) for b in blocks)
    out = model(X32)
    assert out.shape == (2, 7)
    out.sum().backward()
    assert all(m.bn.weight.grad is not None for _, m in attention_modules(model))


@pytest.mark.parametrize("name", ALL)
def test_features_only(name):
    model = timm.create_model(name, features_only=True).eval()
    feats = model(torch.randn(1, 3, 64, 64))
    assert [f.shape[-1] for f in feats] == [64 // r for r in model.feature_info.reduction()]
    assert [f.shape[1] for f in feats] == model.feature_info.channels()


@pytest.mark.parametrize("name", ALL)
def test_fx_trace_matches_eager(name):
    model = randomize_bn(timm.create_model(name)).eval()
    traced = torch.fx.symbolic_trace(model)
    assert any("se" in n.target for n in traced.graph.nodes if n.op == "call_module")
    with torch.no_grad():  # the same ops in both (with grad, eager takes the fused path: fp32 rounding apart)
        torch.testing.assert_close(traced(X32), model(X32))


@pytest.mark.parametrize("name", ALL)
def test_state_dict_round_trip_and_reset_classifier(name, tmp_path):
    model = randomize_bn(timm.create_model(name, num_classes=10)).eval()
    path = tmp_path / "w.safetensors"
    save_file(model.state_dict(), str(path))
    fresh = timm.create_model(name, num_classes=10).eval()
    fresh.load_state_dict(model.state_dict(), strict=True)
    assert torch.equal(fresh(X32), model(X32))
    # timm drops the head when num_classes differs from the cfg's, so the cfg must say 10 too
    reloaded = timm.create_model(
        name, num_classes=10, pretrained=True, pretrained_cfg_overlay=dict(file=str(path), num_classes=10)
    ).eval()
    assert torch.equal(reloaded(X32), model(X32))
    reloaded.reset_classifier(3)
    assert reloaded(X32).shape == (2, 3)
    reloaded.reset_classifier(0)
    assert reloaded(X32).shape == (2, model.num_features)


@pytest.mark.parametrize("name", ["salient_resnet18", "ssa_resnet18"])
def test_export_and_script(name):
    model = randomize_bn(timm.create_model(name)).eval()
    with torch.no_grad():  # the same ops in both (with grad, eager takes the fused path: fp32 rounding apart)
        expected = model(X32)
        torch.testing.assert_close(torch.export.export(model, (X32,)).module()(X32), expected)
        torch.testing.assert_close(torch.jit.script(model)(X32), expected)


def test_attn_kwargs_and_block_args_reach_the_blocks():
    literal = timm.create_model("salient_resnet18", attn_kwargs=dict(impl="conv"))
    assert all(m.impl == "conv" for _, m in attention_modules(literal))
    se = timm.create_model("salient_resnet18", block_args=dict(attn_layer="se"))
    assert type(se.layer1[0].se).__name__ == "SEModule"
    with pytest.raises(TypeError, match="impl"):
        timm.create_model("salient_resnet18", attn_kwargs=dict(impl_typo="conv"))


def test_pretrained_cfgs_point_at_base_weights():
    cfg = get_pretrained_cfg("salient_resnet50.a1_in1k")
    assert cfg.hf_hub_id == "timm/resnet50.a1_in1k" and cfg.architecture == "salient_resnet50"
    assert get_pretrained_cfg("ssa_resnet18").hf_hub_id.startswith("timm/resnet18.")
    assert timm.list_pretrained("salient_resnext50_32x4d.*")


@pytest.fixture
def base18(tmp_path):
    """A resnet18 with non-trivial weights, saved as safetensors and as a torch.save'd dict."""
    base = randomize_bn(timm.create_model("resnet18")).eval()
    st, pth = tmp_path / "r18.safetensors", tmp_path / "r18.pth"
    save_file(base.state_dict(), str(st))
    torch.save({"state_dict": base.state_dict()}, pth)
    return base, st, pth


@pytest.mark.parametrize("fmt", ["safetensors", "pth"])
@pytest.mark.parametrize("name", ["salient_resnet18", "ssa_resnet18"])
def test_base_weights_load_with_identity_start(base18, fmt, name):
    base, st, pth = base18
    path = st if fmt == "safetensors" else pth
    model = timm.create_model(name, pretrained=True, pretrained_cfg_overlay=dict(file=str(path))).eval()
    x = torch.randn(2, 3, 64, 64)
    assert (model(x) - base(x)).abs().max().item() == 0.0
    assert all(m.gate.scale.item() == 2.0 for _, m in attention_modules(model))


def test_base_weights_with_new_head_keep_backbone(base18):
    base, st, _ = base18
    model = timm.create_model(
        "salient_resnet18", pretrained=True, num_classes=5, pretrained_cfg_overlay=dict(file=str(st))
    ).eval()
    x = torch.randn(2, 3, 64, 64)
    assert torch.equal(model.forward_features(x), base.forward_features(x))
    assert model(x).shape == (2, 5)


@pytest.mark.parametrize("num_classes", [1000, 5])
def test_checkpoint_missing_backbone_key_raises(base18, tmp_path, num_classes):
    base, _, _ = base18
    state = base.state_dict()
    del state["layer2.0.conv1.weight"]
    path = tmp_path / "partial.safetensors"
    save_file(state, str(path))
    with pytest.raises(CheckpointError, match="missing backbone keys: layer2.0.conv1.weight"):
        timm.create_model(
            "salient_resnet18", pretrained=True, num_classes=num_classes, pretrained_cfg_overlay=dict(file=str(path))
        )


@pytest.fixture
def head10(tmp_path):
    """A fine-tuned 10-class resnet18, saved as safetensors."""
    state = randomize_bn(timm.create_model("resnet18", num_classes=10)).state_dict()
    path = tmp_path / "r18_10.safetensors"
    save_file(state, str(path))
    return state, path


def test_a_head_of_another_size_is_named_with_the_num_classes_that_fits(head10):
    _, path = head10
    with pytest.raises(CheckpointError) as error:  # before: "not a torch.save or safetensors weights file"
        timm.create_model("salient_resnet18", pretrained=True, pretrained_cfg_overlay=dict(file=str(path)))
    message = str(error.value)
    assert "head fc.weight (10, 512) does not fit the model's (1000, 512)" in message
    assert "num_classes=10" in message and "not a torch.save" not in message


def test_the_suggested_num_classes_loads_the_file_with_its_head_or_a_new_one(head10):
    state, path = head10
    keep = timm.create_model(
        "salient_resnet18", num_classes=10, pretrained=True, pretrained_cfg_overlay=dict(file=str(path), num_classes=10)
    )
    overlay = dict(file=str(path))
    new = timm.create_model("salient_resnet18", num_classes=10, pretrained=True, pretrained_cfg_overlay=overlay)
    assert torch.equal(keep.fc.weight, state["fc.weight"]) and not torch.equal(new.fc.weight, state["fc.weight"])
    assert torch.equal(new.layer4[1].conv2.weight, state["layer4.1.conv2.weight"])


def test_model_spec_keeps_a_fitting_head_and_replaces_another(head10):
    state, path = head10
    same = salient_timm.ModelSpec("resnet18", attn="salient", init="identity", pretrained=str(path), num_classes=10)
    other = same.replace(num_classes=4)
    assert torch.equal(same.build().fc.weight, state["fc.weight"])
    model = other.build()
    assert model.fc.out_features == 4 and torch.equal(model.layer1[0].conv1.weight, state["layer1.0.conv1.weight"])


def test_a_torchvision_base_with_another_head_keeps_its_backbone_like_a_timm_base(tmp_path):
    import torchvision

    reference = torchvision.models.resnet18()
    torch.save(reference.state_dict(), tmp_path / "tv18.pth")
    spec = salient_timm.ModelSpec(
        "torchvision:resnet18", attn="salient", init="identity", pretrained=str(tmp_path / "tv18.pth"), num_classes=10
    )
    model = spec.build().eval()  # before: a raw RuntimeError, size mismatch for fc.weight
    assert model.fc.out_features == 10
    x = torch.randn(2, 3, 64, 64)
    trunk = lambda m: torch.nn.Sequential(*list(m.children())[:-1])(x)  # noqa: E731  (all but fc, in order)
    torch.testing.assert_close(trunk(model), trunk(reference.eval()), rtol=0, atol=0)


def test_a_torchvision_base_of_another_depth_is_one_checkpoint_error(tmp_path):
    import torchvision

    torch.save(torchvision.models.resnet34().state_dict(), tmp_path / "tv34.pth")
    spec = salient_timm.ModelSpec("torchvision:resnet18", attn="salient", pretrained=str(tmp_path / "tv34.pth"))
    with pytest.raises(CheckpointError, match="does not fit"):
        spec.build()


def test_checkpoint_with_foreign_keys_raises(base18, tmp_path):
    base, _, _ = base18
    state = dict(base.state_dict(), total_ops=torch.zeros(1))  # what thop leaves behind
    path = tmp_path / "thop.safetensors"
    save_file(state, str(path))
    with pytest.raises(CheckpointError, match="unexpected keys: total_ops"):
        timm.create_model("salient_resnet18", pretrained=True, pretrained_cfg_overlay=dict(file=str(path)))


def test_checkpoint_of_other_architecture_raises(base18):
    _, st, _ = base18
    with pytest.raises(CheckpointError, match="does not fit salient_resnet50"):
        timm.create_model("salient_resnet50", pretrained=True, pretrained_cfg_overlay=dict(file=str(st)))


def test_partial_attention_weights_raise(tmp_path):
    state = timm.create_model("salient_resnet18").state_dict()
    del state["layer3.1.se.conv.weight"]
    path = tmp_path / "half.safetensors"
    save_file(state, str(path))
    with pytest.raises(CheckpointError, match="only some of layer3.1.se's weights; missing: layer3.1.se.conv.weight"):
        timm.create_model("salient_resnet18", pretrained=True, pretrained_cfg_overlay=dict(file=str(path)))


def test_a_checkpoint_without_one_gates_weights_starts_that_gate_as_the_identity(tmp_path):
    """A slot the checkpoint does not know (added after training) starts as identity; the rest load as saved."""
    trained = randomize_bn(timm.create_model("salient_resnet18")).eval()
    state = {k: v for k, v in trained.state_dict().items() if not k.startswith("layer3.1.se.")}
    path = tmp_path / "one_gate_less.safetensors"
    save_file(state, str(path))
    model = timm.create_model("salient_resnet18", pretrained=True, pretrained_cfg_overlay=dict(file=str(path))).eval()
    loaded = model.state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in state.items())
    assert float(loaded["layer3.1.se.gate.scale"]) == 2.0 and not loaded["layer3.1.se.bn.weight"].any()
    t = torch.randn(2, 256, 4, 4)
    with torch.no_grad():
        assert torch.equal(model.layer3[1].se(t), t)


def test_seed_format_checkpoint_without_gate_scale_loads_doc_gate(tmp_path):
    trained = randomize_bn(timm.create_model("salient_resnet18")).eval()
    state = {k: v for k, v in trained.state_dict().items() if not k.endswith("gate.scale")}
    path = tmp_path / "seed.safetensors"
    save_file(state, str(path))
    model = timm.create_model("salient_resnet18", pretrained=True, pretrained_cfg_overlay=dict(file=str(path)))
    assert torch.equal(model.eval()(X32), trained(X32))
    assert all(m.gate.scale.item() == 1.0 for _, m in attention_modules(model))


def _torch_saved(obj):
    def write(path):
        torch.save(obj, path)

    return write


@pytest.mark.parametrize(
    "content, match",
    [
        (b"garbage" * 10, "not a torch.save or safetensors weights file"),
        (None, "not found"),
        (b"", "the file is empty"),
        (_torch_saved([1, 2, 3]), "does not hold a state dict"),
        (_torch_saved(torch.zeros(3)), "does not hold a state dict"),
        (_torch_saved({"model": {"run": os.system}}), "refused to load .* safe load"),
    ],
)
def test_unreadable_checkpoint_files_say_why(tmp_path, content, match):
    path = tmp_path / ("bad.safetensors" if isinstance(content, bytes) or content is None else "bad.pth")
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        content(path)
    with pytest.raises(CheckpointError, match=match):
        timm.create_model("salient_resnet18", pretrained=True, pretrained_cfg_overlay=dict(file=str(path)))


@pytest.mark.parametrize("name", ["salient_resnet18", "salient_resnet50d", "ssa_resnet34"])
def test_cifar_stem_keeps_resolution(name):
    model = timm.create_model(name, cifar_stem=True, num_classes=100, features_only=True)
    feats = model(X32)
    assert [f.shape[-1] for f in feats] == [32, 32, 16, 8, 4]
    assert model.feature_info.reduction() == [1, 1, 2, 4, 8]


def test_cifar_stem_with_imagenet_weights_loads_the_rest(base18, caplog):
    base, st, _ = base18
    model = timm.create_model(
        "salient_resnet18", cifar_stem=True, pretrained=True, pretrained_cfg_overlay=dict(file=str(st))
    )
    assert "keeping its fresh init" in caplog.text
    assert model.conv1.kernel_size == (3, 3) and model.conv1.stride == (1, 1)
    assert torch.equal(model.layer4[1].conv2.weight, base.layer4[1].conv2.weight)


@pytest.mark.parametrize(
    "make",
    [lambda: timm.create_model("resnet26d"), lambda: __import__("torchvision").models.resnet18()],
    ids=["timm-deep", "tv"],
)
def test_convert_to_cifar_stem_helper(make):
    model = make().eval()
    keys = set(model.state_dict())
    assert convert_to_cifar_stem(model) is model
    assert set(model.state_dict()) == keys
    assert model.forward_features(X32).shape[-1] == 4 if hasattr(model, "forward_features") else True
    with pytest.raises(SurgeryError, match="already has a CIFAR stem"):
        convert_to_cifar_stem(model)


def test_convert_to_cifar_stem_refuses_non_resnets():
    with pytest.raises(SurgeryError, match="is not a timm/torchvision ResNet"):
        convert_to_cifar_stem(torch.nn.Sequential(torch.nn.Conv2d(3, 3, 3)))


def test_package_version_is_set():
    assert salient_timm.__version__ != "0.0.0+unknown"
