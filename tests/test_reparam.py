"""The gate folded away at inference: ``salient_timm.reparameterize`` and timm's ``reparameterize_model`` (issue 21).

Every model gets random BN statistics and affines (``randomize_bn``) so a fold that dropped a BN, a bias or the gate
would show; outputs are compared with the eval model's, in fp64 to 1e-10 and in fp32 to 1e-5 relative.
"""

import json
import warnings

import pytest
import timm
import torch
import torchvision
from click.testing import CliRunner
from helpers import randomize_bn
from timm.utils import reparameterize_model
from torch import nn

import salient_timm
from salient_analysis.cli import main
from salient_timm import ModelSpec, ReparameterizeError, reparameterize
from salient_timm.deploy.fold import FoldedResidualBlock


def _model(base: str, kind: str = "salient", position: str = "post", **kwargs) -> nn.Module:
    if base.startswith("torchvision:"):
        model = getattr(torchvision.models, base.split(":")[1])(num_classes=10)
    else:
        model = timm.create_model(base, num_classes=10)
    if kind != "none":
        salient_timm.inject_attention(model, kind, position=position, **kwargs)
    return randomize_bn(model).eval()


def _relative_error(model: nn.Module, folded: nn.Module, x: torch.Tensor) -> float:
    with torch.no_grad():
        ref, out = model(x), folded(x)
    return ((out - ref).abs().max() / ref.abs().max()).item()


def _gates(folded: nn.Module) -> list:
    return [m.gate for m in folded.modules() if isinstance(m, FoldedResidualBlock)]


# (base, position, where the gate ends up): Basic and Bottleneck blocks of timm and torchvision
FOLDS = [
    ("resnet18", "post", "post"),
    ("resnet26", "post", "post"),
    ("resnet26", "mid", "mid"),
    ("torchvision:resnet18", "post", "post"),
    ("torchvision:resnet50", "post", "post"),
    ("torchvision:resnet50", "mid", "mid"),
]


@pytest.mark.parametrize("base, position, folded_as", FOLDS)
def test_the_folded_model_computes_what_the_eval_model_computes(base, position, folded_as):
    model = _model(base, position=position, init="identity", init_gain=0.5).double()
    folded = reparameterize(model)
    assert _relative_error(model, folded, torch.randn(2, 3, 48, 48, dtype=torch.float64)) < 1e-10
    assert _gates(folded) and set(_gates(folded)) == {folded_as}  # every gate became a conv channel
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())  # stem, blocks, downsample


@pytest.mark.parametrize("base, position, folded_as", FOLDS[:3])
def test_in_fp32_the_fold_is_within_float_rounding(base, position, folded_as):
    model = _model(base, position=position)
    assert _relative_error(model, reparameterize(model), torch.randn(4, 3, 64, 64)) < 1e-5


def test_a_folded_gate_costs_one_conv_output_channel():
    model = _model("resnet26")
    folded = reparameterize(model)
    block = folded.layer1[0]
    assert block.conv.out_channels == model.layer1[0].conv3.out_channels == 256 and block.gate_conv.out_channels == 1
    assert sum(p.numel() for p in folded.parameters()) < sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("impl", ["fused", "sum", "gemv", "conv"])
def test_every_impl_of_the_registered_variant_folds_the_same(impl):
    model = randomize_bn(timm.create_model("salient_resnet18", num_classes=10, attn_kwargs=dict(impl=impl))).eval()
    folded = reparameterize(model)
    assert set(_gates(folded)) == {"post"}
    assert _relative_error(model, folded, torch.randn(2, 3, 64, 64)) < 1e-5


@pytest.mark.parametrize(
    "build, folded_as",
    [
        (lambda: timm.create_model("salient_resnet26", num_classes=10), "post"),
        (lambda: timm.create_model("salient_resnet50d", num_classes=10), "post"),  # deep stem, avg-pool downsample
        (lambda: ModelSpec("resnet18", attn="salient", init="identity", init_gain=0.1, num_classes=10).build(), "post"),
        (lambda: ModelSpec("torchvision:resnet50", attn="salient", position="mid", num_classes=10).build(), "mid"),
        (lambda: ModelSpec("resnet26", attn="salient", position="mid", num_classes=10).build(), "mid"),
    ],
    ids=["salient_resnet26", "salient_resnet50d", "timm-retrofit", "torchvision-retrofit-mid", "timm-retrofit-mid"],
)
def test_timms_reparameterize_model_folds_registered_variants_and_retrofits(build, folded_as):
    """What timm's ``benchmark.py --reparam`` calls: the blocks' ``fuse()`` hooks; the stem's BN stays (no hook)."""
    model = randomize_bn(build()).eval()
    folded = reparameterize_model(model)
    assert all(isinstance(m, FoldedResidualBlock) for layer in (folded.layer1, folded.layer4) for m in layer)
    assert set(_gates(folded)) == {folded_as}
    assert not any(isinstance(m, salient_timm.SalientBlock) for m in folded.modules())
    assert _relative_error(model, folded, torch.randn(2, 3, 64, 64)) < 1e-5


@pytest.mark.parametrize("fold", [reparameterize, reparameterize_model], ids=["salient_timm", "timm"])
def test_a_training_mode_model_is_refused_and_left_as_it_was(fold):
    model = _model("resnet18").train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ReparameterizeError, match="eval"):
        fold(model)
    assert model.training and type(model.layer1[0]).__name__ == "TimmBasicBlockSlots"
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


@pytest.mark.parametrize(
    "base, kind, position, named",
    [
        ("resnet18", "se", "post", "post SEModule"),
        ("resnet18", "ssa", "post", "post SSABlock"),
        ("resnet18", "salient", "mid", "a 3x3 conv follows its product"),
    ],
)
def test_slots_that_cannot_fold_stay_and_are_named_in_one_warning(base, kind, position, named):
    model = _model(base, kind, position)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        folded = reparameterize(model)
    messages = [str(w.message) for w in caught if "reparameterize" in str(w.message)]
    assert len(messages) == 1 and named in messages[0] and "8 attention slot(s)" in messages[0]
    assert _relative_error(model, folded, torch.randn(2, 3, 64, 64)) < 1e-5
    assert set(_gates(folded)) == {"none"}


LITERAL = {"salient": "conv", "ssa": "mean"}


@pytest.mark.parametrize(
    "base, kind, position",
    [
        ("resnet26", "none", "post"),
        ("resnet26", "salient", "post"),
        ("resnet26", "salient", "mid"),
        ("resnet26", "ssa", "post"),
        ("torchvision:resnet50", "ssa", "post"),
        ("resnet18", "ssa", "post"),
    ],
)
@pytest.mark.parametrize("channels_last", [False, True])
def test_the_folded_model_computes_what_the_literal_eval_model_computes(base, kind, position, channels_last):
    """The reference runs the literal blocks' plain ops (no fused path, nothing written in place), so a folded or
    fused inference path that wrote over a tensor still in use would show here; the input is left as it was."""
    kwargs = {} if kind == "none" else {"impl": LITERAL[kind]}
    literal = _model(base, kind, position, **kwargs).double()
    fused = _model(base, kind, position).double()
    fused.load_state_dict(literal.state_dict())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # an SSA slot stays as it is: reparameterize warns
        folded = reparameterize(fused)
    x = torch.randn(2, 3, 64, 64, dtype=torch.float64)
    if channels_last:
        for m in (literal, fused, folded):
            m.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    x_before = x.clone()
    for context in (torch.no_grad, torch.inference_mode):
        with context():
            ref = literal(x)
            torch.testing.assert_close(folded(x), ref, rtol=1e-10, atol=1e-10)
            torch.testing.assert_close(fused(x), ref, rtol=1e-10, atol=1e-10)
    assert torch.equal(x, x_before)


@pytest.mark.parametrize("kind, position", [("none", "post"), ("salient", "post"), ("salient", "mid"), ("ssa", "post")])
def test_a_folded_block_writes_its_residual_sum_over_its_conv_output(kind, position):
    """A folded bottleneck makes one output-sized tensor in inference, its last conv's output, gated or not: the gate
    product, the sum and the ReLU are written over it (timm's ``x += shortcut``), not into fresh tensors (on CPU a
    fresh large tensor costs page faults, issue 33). (The second block of a stage: in the first, a stride-2 stage's
    first conv output has the block output's size too.)"""
    from helpers import FreshAllocations

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        block = reparameterize(_model("resnet26", kind, position)).layer2[1]
    assert isinstance(block, FoldedResidualBlock)
    x = torch.randn(2, block.branch[0].in_channels, 16, 16)
    with torch.inference_mode():
        numel = block(x).numel()
        with FreshAllocations(numel) as seen:
            block(x)
    assert seen.count == 1


def test_a_global_hook_keeps_the_folded_conv_output_it_saw():
    """A global forward hook (activation capture) may keep the folded conv's output: inference then leaves it as the
    hook saw it instead of writing the gate, the sum and the ReLU over it."""
    block = reparameterize(_model("resnet26", "salient")).layer1[1]
    x = torch.randn(2, block.branch[0].in_channels, 8, 8)
    kept = []

    def keep(module, args, out):
        if module is block.conv:
            kept.append((out, out.clone()))

    handle = nn.modules.module.register_module_forward_hook(keep)
    try:
        with torch.inference_mode():
            block(x)
    finally:
        handle.remove()
    assert len(kept) == 1 and torch.equal(kept[0][0], kept[0][1])


@pytest.mark.parametrize("position", ["post", "mid"])
def test_a_folded_bottleneck_gate_adds_no_convolution_call_and_a_hook_on_its_conv_still_fires(position):
    """In inference the folded gate's 1x1 logit is a GEMV, not a 1-output-channel oneDNN conv (3-6x slower a call
    at batch 1, issue 33): the gated block runs as many convolutions as the plain one. A hook on the gate conv
    sees its call."""

    class Convs(torch.utils._python_dispatch.TorchDispatchMode):
        count = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            self.count += func.overloadpacket in (torch.ops.aten.conv2d, torch.ops.aten.convolution)
            return func(*args, **(kwargs or {}))

    blocks = [reparameterize(_model("resnet26", kind, position)).layer1[1] for kind in ("none", "salient")]
    x = torch.randn(2, blocks[0].branch[0].in_channels, 8, 8)
    counts = []
    for block in blocks:
        with torch.inference_mode(), Convs() as seen:
            block(x)
        counts.append(seen.count)
    assert counts[0] == counts[1] > 0
    calls = []
    blocks[1].gate_conv.register_forward_hook(lambda *args: calls.append(1))
    with torch.inference_mode():
        blocks[1](x)
    assert calls == [1]


def test_a_plain_resnet_folds_like_torch_fx_fuse():
    """The baseline of the inference benchmark: torch's own conv+BN fold of a plain ResNet."""
    from torch.fx.experimental.optimization import fuse

    model = _model("resnet26", "none")
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(reparameterize(model)(x), fuse(model)(x), rtol=1e-5, atol=1e-5)


def test_the_original_model_is_untouched_and_still_trains():
    model = _model("resnet18")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    types = [type(m) for m in model.modules()]
    reparameterize(model)
    assert [type(m) for m in model.modules()] == types  # every module as it was (a copy was folded)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    model.train()(torch.randn(2, 3, 32, 32)).sum().backward()


def test_the_folded_model_scripts_traces_and_exports(tmp_path):
    model = _model("resnet26", position="mid")
    folded = reparameterize(model)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        ref = folded(x)
        torch.testing.assert_close(torch.jit.script(folded)(x), ref)
        torch.testing.assert_close(torch.fx.symbolic_trace(folded)(x), ref)
        program = torch.export.export(folded, (x,))
        torch.testing.assert_close(program.module()(x), ref)


def test_the_folded_model_exports_to_onnx_with_runtime_parity(tmp_path):
    pytest.importorskip("onnxruntime")
    from salient_timm.deploy.export import export_onnx, onnx_parity

    for base, position in (("resnet26", "post"), ("torchvision:resnet50", "mid")):
        folded = reparameterize(_model(base, position=position))
        path = export_onnx(folded, str(tmp_path / f"{position}.onnx"), (3, 64, 64))
        assert onnx_parity(folded, path, torch.randn(3, 3, 64, 64)) <= 1e-4


def test_compare_reparam_counts_the_folded_model():
    """Counted, the folded gate is nearly free: the folded salient_resnet moves the folded base's bytes, +0.5 % at most
    (its 1-channel conv re-reads the conv's input)."""
    args = ["compare", "-m", "resnet26", "-a", "none,salient,se", "-s", "64", "-f", "json"]
    result, unfolded = CliRunner().invoke(main, [*args, "--reparam"]), CliRunner().invoke(main, args)
    assert result.exit_code == unfolded.exit_code == 0, result.output
    report = json.loads(result.stdout)
    rows = {row["model"]: row for row in report["tables"][0]["rows"]}
    plain_rows = {row["model"]: row for row in json.loads(unfolded.stdout)["tables"][0]["rows"]}
    base, salient = rows["resnet26 (reparam)"], rows["resnet26+salient (reparam)"]
    assert salient["MB moved"] < 1.005 * base["MB moved"] < plain_rows["resnet26+salient"]["MB moved"]
    assert salient["train MB moved"] is None
    # one output channel of each conv3 (weights over its input width, and a bias) instead of C + 2 gate parameters
    assert salient["added params"] == sum(width + 1 for width in (64, 64, 128, 128, 256, 256, 512, 512))
    assert any("SEModule" in note for note in report["notes"])


def test_flops_and_profile_count_the_folded_model_with_reparam():
    """timm's benchmark.py --reparam, on flops and profile: repvgg's branches and every conv + BN fold away (fewer
    MACs, no BN ops); profile refuses a folded training step in one line."""
    from salient_analysis.cli import main

    def total(*args):
        result = CliRunner().invoke(
            main, ["flops", "-m", "repvgg_a0", "-s", "64", "--no-crosscheck", "-f", "json", *args]
        )
        assert result.exit_code == 0, result.output
        return json.loads(result.stdout)["tables"][0]["rows"][0]

    plain, folded = total(), total("--reparam")
    assert folded["MACs"] < plain["MACs"] and folded["elementwise"] < plain["elementwise"]
    result = CliRunner().invoke(
        main,
        [
            "profile",
            "-m",
            "resnet18",
            "-a",
            "salient",
            "-s",
            "32",
            "--infer",
            "--reparam",
            "--no-measure",
            "-f",
            "json",
        ],
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert all(t["rows"] for t in data["tables"]) and any("--reparam" in n for n in data["notes"])
    result = CliRunner().invoke(main, ["profile", "-m", "resnet18", "--reparam", "--no-measure"])
    assert result.exit_code == 2 and "add --infer" in result.output and "Traceback" not in result.output
