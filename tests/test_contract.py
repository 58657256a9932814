"""The gate keeps PyTorch's module contract: what a user does to a plain module works the same on a gated model.

Each test runs the default (fused) gate beside the seed's literal block (Salient ``impl="conv"``, SSA ``"mean"``) in
fp64 and compares what a user observes: hook calls, outputs, gradients, buffers. docs/contract.md lists every
feature with the test that covers it.
"""

import copy

import pytest
import timm
import torch
import torch.nn.utils.prune
import torchvision
from helpers import randomize_bn
from torch import nn

import salient_timm
from salient_timm import SalientBlock, ScaledSigmoid, SSABlock

LITERAL = {"salient": "conv", "ssa": "mean"}
BASES = ("timm-basic", "timm-bottleneck", "tv-bottleneck")


def _block_twins(kind: str, base: str):
    """(fused, literal): one residual block with a downsample and a post gate, fp64, training mode, equal weights."""
    blocks = []
    for impl in ("fused", LITERAL[kind]):
        torch.manual_seed(0)
        if base == "tv-bottleneck":
            model = torchvision.models.resnet50()
        else:
            name = "resnet18" if base == "timm-basic" else "resnet26"
            model = timm.create_model(name, channels=(8, 16, 32, 64), stem_width=8)
        salient_timm.inject_attention(model, kind, impl=impl)
        blocks.append(randomize_bn(model).layer2[0].double().train())
    blocks[1].load_state_dict(blocks[0].state_dict())
    return blocks


def _last_norm(block):
    return block.bn3 if hasattr(block, "bn3") else block.bn2


def _last_act(block):
    return getattr(block, "relu", None) or (block.act3 if hasattr(block, "act3") else block.act2)


TARGETS = {
    "se": lambda b: b.se,
    "se.bn": lambda b: b.se.bn,
    "se.gate": lambda b: b.se.gate,
    "se.conv": lambda b: b.se.conv,
    "last norm": _last_norm,
    "last act": _last_act,
}


def _hook(kind: str, module: nn.Module, log: list):
    if kind == "forward":
        return module.register_forward_hook(lambda m, args, out: log.append(kind))
    if kind == "forward_pre":
        return module.register_forward_pre_hook(lambda m, args: log.append(kind))
    if kind == "full_backward":
        return module.register_full_backward_hook(lambda m, gin, gout: log.append(kind))
    return module.register_full_backward_pre_hook(lambda m, gout: log.append(kind))


def _run(block: nn.Module, x: torch.Tensor, r: torch.Tensor):
    out = block(x)
    grads = torch.autograd.grad(out, [x, *block.parameters()], r, allow_unused=True)
    return out, grads


def _assert_same_run(got, want):
    torch.testing.assert_close(got[0], want[0], rtol=1e-12, atol=1e-12)
    for a, b in zip(got[1], want[1]):
        if a is None or b is None:
            assert a is None and b is None
        else:
            torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("hook", ["forward", "forward_pre", "full_backward", "full_backward_pre"])
@pytest.mark.parametrize("target", list(TARGETS))
@pytest.mark.parametrize("kind", ["salient", "ssa"])
@pytest.mark.parametrize("base", BASES)
def test_a_hook_of_any_kind_on_the_gate_its_parts_or_the_blocks_norm_and_act_fires_as_in_the_literal_block(
    base, kind, target, hook
):
    if target == "se.conv" and kind == "ssa":
        pytest.skip("SSA has no conv")
    fused, literal = _block_twins(kind, base)
    logs = {"fused": [], "literal": []}
    for name, block in (("fused", fused), ("literal", literal)):
        _hook(hook, TARGETS[target](block), logs[name])
    x = torch.randn(2, fused.conv1.in_channels, 8, 8, dtype=torch.float64, requires_grad=True)
    r = torch.randn(2, _last_norm(fused).weight.shape[0], 4, 4, dtype=torch.float64)
    try:
        want = _run(literal, x, r)
    except RuntimeError as e:  # a full backward hook on an in-place ReLU: torch refuses it in the literal block too
        with pytest.raises(RuntimeError, match=str(e).split(".")[0][:40]):
            _run(fused, x, r)
        return
    got = _run(fused, x, r)
    assert logs["fused"] == logs["literal"] and logs["literal"]
    _assert_same_run(got, want)


@pytest.mark.parametrize("register", ["forward", "forward_pre", "full_backward"])
@pytest.mark.parametrize("kind", ["salient", "ssa"])
def test_global_module_hooks_see_every_module_call_the_literal_block_makes(kind, register):
    from torch.nn.modules import module as hooks

    fused, literal = _block_twins(kind, "timm-bottleneck")
    x = torch.randn(2, fused.conv1.in_channels, 8, 8, dtype=torch.float64, requires_grad=True)
    r = torch.randn(2, _last_norm(fused).weight.shape[0], 4, 4, dtype=torch.float64)
    seen = {}
    for name, block in (("fused", fused), ("literal", literal)):
        calls: list = []
        record = _recorder(calls, {id(m): n for n, m in block.named_modules()})
        handle = {
            "forward": hooks.register_module_forward_hook,
            "forward_pre": hooks.register_module_forward_pre_hook,
            "full_backward": hooks.register_module_full_backward_hook,
        }[register](record)
        try:
            seen[name] = _run(block, x, r)
        except RuntimeError as e:  # a full backward hook on an in-place ReLU's output: torch refuses it
            seen[name] = type(e)
        finally:
            handle.remove()
        seen[name + " calls"] = sorted(c for c in calls if c is not None)
    if seen["literal"] is RuntimeError:
        assert seen["fused"] is RuntimeError
        return
    assert seen["fused calls"] == seen["literal calls"] and "se.bn" in seen["literal calls"]
    _assert_same_run(seen["fused"], seen["literal"])


def _recorder(calls: list, names: dict):
    return lambda module, *args: calls.append(names.get(id(module)))


def _gate_twins(kind: str):
    torch.manual_seed(0)
    make = SalientBlock if kind == "salient" else SSABlock
    fused, literal = make(8).double(), make(8, impl=LITERAL[kind]).double()
    literal.load_state_dict(fused.state_dict())
    return fused.train(), literal.train()


@pytest.mark.parametrize("impl", ["fused", "sum", "gemv"])
@pytest.mark.parametrize(
    "method",
    [
        lambda conv: torch.nn.utils.prune.l1_unstructured(conv, "weight", amount=0.5),
        lambda conv: torch.nn.utils.prune.random_unstructured(conv, "weight", amount=0.3),
        lambda conv: torch.nn.utils.weight_norm(conv),
        lambda conv: torch.nn.utils.parametrizations.weight_norm(conv),
    ],
    ids=["prune_l1", "prune_random", "legacy_weight_norm", "parametrized_weight_norm"],
)
def test_prune_and_weight_reparametrizations_of_the_gate_conv_train_as_on_the_literal_conv(impl, method):
    """Two SGD steps: every impl reads the conv's weight as nn.Conv2d.forward does (its forward-pre hook or its
    parametrization once per forward), so outputs match the literal conv after the weight moved, and the second
    backward does not hit a freed graph."""
    torch.manual_seed(0)
    gate, literal = SalientBlock(8, impl=impl).double(), SalientBlock(8, impl="conv").double()
    literal.load_state_dict(gate.state_dict())
    torch.manual_seed(1)
    method(gate.conv)
    torch.manual_seed(1)
    method(literal.conv)
    opts = [torch.optim.SGD(m.parameters(), lr=0.5) for m in (gate, literal)]
    x = torch.randn(2, 8, 5, 5, dtype=torch.float64, requires_grad=True)
    for _ in range(2):
        outs = []
        for m, opt in zip((gate, literal), opts):
            opt.zero_grad()
            out = m(x)
            out.square().sum().backward()
            opt.step()
            outs.append(out.detach())
        torch.testing.assert_close(outs[0], outs[1], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("impl", ["fused", "sum", "gemv"])
def test_spectral_norm_runs_one_power_iteration_per_training_forward_as_on_the_literal_conv(impl):
    from torch.nn.utils.parametrizations import spectral_norm

    torch.manual_seed(0)
    gate, literal = SalientBlock(8, impl=impl).double(), SalientBlock(8, impl="conv").double()
    literal.load_state_dict(gate.state_dict())
    spectral_norm(gate.conv), spectral_norm(literal.conv)
    literal.load_state_dict(gate.state_dict())
    x = torch.randn(2, 8, 5, 5, dtype=torch.float64, requires_grad=True)
    for _ in range(3):
        gate(x).sum().backward(), literal(x).sum().backward()
    for (name, a), b in zip(gate.state_dict().items(), literal.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12, msg=name)  # _u, _v: the same iterations


def _mac_counter(macs: list):
    return lambda module, args, out: macs.append(out.numel() * module.in_channels)


def test_a_per_module_counter_counts_the_gate_conv_as_for_the_literal_block():
    """torchinfo-style counters hook every module: the gate's conv runs as a module and is counted."""
    calls = {}
    for impl in ("fused", "conv"):
        gate = SalientBlock(8, impl=impl).train()
        calls[impl] = []
        gate.conv.register_forward_hook(_mac_counter(calls[impl]))
        gate(torch.randn(2, 8, 5, 5, requires_grad=True)).sum().backward()
    assert calls["fused"] == calls["conv"] == [2 * 25 * 8]


@pytest.mark.parametrize(
    "build",
    [
        lambda: timm.create_model("salient_resnet18", num_classes=10),
        lambda: timm.create_model("ssa_resnet18", num_classes=10),
        lambda: salient_timm.inject_attention(
            timm.create_model("resnet18", num_classes=10), "salient", init="identity"
        ),
        lambda: salient_timm.inject_attention(
            timm.create_model("resnet18", num_classes=10), "se", init="identity", position="mid"
        ),
        lambda: salient_timm.inject_attention(torchvision.models.resnet18(), "ssa", init="identity", init_gain=0.5),
    ],
    ids=["salient_resnet18", "ssa_resnet18", "salient identity", "se identity mid", "tv ssa near-identity"],
)
def test_a_model_built_on_meta_and_materialised_by_reset_parameters_has_the_gates_of_a_normal_one(build):
    """FSDP's default: build on meta, ``to_empty()``, then every module's ``reset_parameters()``. Every buffer a
    gate owns comes back (the scale of an identity start included); the outputs are finite."""
    torch.manual_seed(0)
    normal = build()
    with torch.device("meta"):
        torch.manual_seed(0)
        meta = build()
    meta.to_empty(device="cpu")
    for module in meta.modules():
        if callable(getattr(module, "reset_parameters", None)):
            module.reset_parameters()
    scales = {n: b for n, b in normal.named_buffers() if n.endswith("gate.scale")}
    assert scales and all(torch.equal(meta.get_buffer(n), b) for n, b in scales.items())
    missing = [type(m).__name__ for m in meta.modules() if _owns_state(m) and not hasattr(m, "reset_parameters")]
    assert not [name for name in missing if name in ("ScaledSigmoid", "SalientBlock", "SSABlock")]
    with torch.no_grad():
        assert torch.isfinite(meta.eval()(torch.randn(2, 3, 32, 32))).all()


def _owns_state(module: nn.Module) -> bool:
    return any(True for _ in module.parameters(recurse=False)) or any(True for _ in module.buffers(recurse=False))


@pytest.mark.parametrize("name", ["ssa_resnet18", "salient_resnet18"])
def test_fx_graph_mode_quantization_post_training_and_qat(name):
    from torch.ao.quantization import get_default_qat_qconfig_mapping, get_default_qconfig_mapping
    from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx, prepare_qat_fx

    x = torch.randn(2, 3, 32, 32)
    model = timm.create_model(name, num_classes=10).eval()
    prepared = prepare_fx(copy.deepcopy(model), get_default_qconfig_mapping("fbgemm"), (x,))
    with torch.no_grad():
        prepared(x)
        quantized = convert_fx(prepared)
        out, ref = quantized(x), model(x)
    assert out.shape == ref.shape and torch.isfinite(out).all()
    qat = prepare_qat_fx(copy.deepcopy(model).train(), get_default_qat_qconfig_mapping("fbgemm"), (x,))
    qat(x).sum().backward()
    assert any(p.grad is not None for p in qat.parameters())


@pytest.mark.parametrize("name", ["salient_resnet18", "salient_resnet26", "ssa_resnet18"])
@pytest.mark.parametrize("position", ["post", "mid"])
def test_a_channels_last_model_folds_like_a_contiguous_one(name, position):
    from timm.utils import reparameterize_model

    torch.manual_seed(0)
    if position == "post":
        model = timm.create_model(name, num_classes=10)
    else:
        base = name.split("_", 1)[1]
        model = salient_timm.inject_attention(
            timm.create_model(base, num_classes=10), name.split("_")[0], position="mid"
        )
    model = randomize_bn(model).eval().to(memory_format=torch.channels_last)
    x = torch.randn(2, 3, 32, 32).contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        ref = model(x)
        for fold in (salient_timm.reparameterize, reparameterize_model):
            torch.testing.assert_close(fold(copy.deepcopy(model))(x), ref, rtol=1e-4, atol=1e-4)


def test_anomaly_mode_points_at_the_gate_not_at_the_fused_function():
    """Under ``detect_anomaly`` the gate runs as plain ops, so a NaN in backward is traced to the gate's own forward
    (salient_timm/layers/salient.py) and to the block's line that called it, as in any module."""
    import warnings

    model = timm.create_model("salient_resnet18", num_classes=4).train()
    x = torch.randn(2, 64, 8, 8, requires_grad=True)
    assert model.layer1[0].se(x).grad_fn.name() == "_SpatialGateFnBackward"  # outside anomaly mode: fused
    with torch.autograd.detect_anomaly(check_nan=True), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = model.layer1[0].se(x)
        assert out.grad_fn.name() != "_SpatialGateFnBackward"
        with pytest.raises(RuntimeError, match="returned nan"):
            out.backward(torch.full_like(out, float("nan")))
    traceback = "\n".join(str(w.message) for w in caught)
    assert "salient_timm/layers/salient.py" in traceback and "_fused_gate.py" not in traceback


def test_the_scaled_sigmoid_restores_its_scale():
    gate = ScaledSigmoid(2.0)
    gate.scale.fill_(7.0)
    gate.reset_parameters()
    assert float(gate.scale) == 2.0


def test_timm_model_ema_tracks_a_gated_model():
    """timm's ModelEmaV3 (``--model-ema``): a deep copy whose weights and buffers (the gates' scales and BN
    statistics included) follow the trained model."""
    from timm.utils import ModelEmaV3

    model = timm.create_model("salient_resnet18", num_classes=4).train()
    ema = ModelEmaV3(model, decay=0.5)
    before = {k: v.clone() for k, v in ema.module.state_dict().items()}
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    model(torch.randn(4, 3, 32, 32)).logsumexp(1).sum().backward()
    opt.step()
    ema.update(model)
    for name, value in ema.module.state_dict().items():  # floating tensors averaged, counters copied
        own = model.state_dict()[name]
        if value.is_floating_point():
            torch.testing.assert_close(value, 0.5 * before[name] + 0.5 * own)
        else:
            assert torch.equal(value, own), name
    with torch.no_grad():
        assert torch.isfinite(ema.module.eval()(torch.randn(2, 3, 32, 32))).all()


def test_ddp_no_sync_accumulates_the_gradients_of_plain_ops(tmp_path):
    """One-process gloo DDP: a ``no_sync`` step then a synchronised one give the plain-ops gradients."""
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        grads = []
        for impl in ("fused", "conv"):
            torch.manual_seed(0)
            model = timm.create_model("salient_resnet18", num_classes=4, attn_kwargs=dict(impl=impl)).double()
            ddp = DistributedDataParallel(model)
            torch.manual_seed(1)
            xs = [torch.randn(2, 3, 32, 32, dtype=torch.float64) for _ in range(2)]
            with ddp.no_sync():
                ddp(xs[0]).sum().backward()
            ddp(xs[1]).sum().backward()
            grads.append([p.grad.clone() for p in model.parameters()])
        for a, b in zip(*grads):
            torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-9)
    finally:
        dist.destroy_process_group()


def test_deterministic_algorithms_train_the_fused_gate_like_plain_ops():
    fused, literal = _gate_twins("salient")
    x = torch.randn(2, 8, 5, 5, dtype=torch.float64, requires_grad=True)
    previous = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        runs = [_run(m, x, torch.ones(2, 8, 5, 5, dtype=torch.float64)) for m in (fused, literal)]
    finally:
        torch.use_deterministic_algorithms(previous)
    assert runs[0][0].grad_fn.name() == "_SpatialGateFnBackward"
    _assert_same_run(*runs)


@pytest.mark.parametrize("kind", ["salient", "ssa"])
def test_fp16_autocast_trains_the_fused_gate_like_plain_ops_under_the_same_autocast(kind):
    torch.manual_seed(0)
    fused, literal = _gate_twins(kind)
    fused, literal = fused.float(), literal.float()
    x = torch.randn(4, 8, 6, 6).half().requires_grad_()
    outs = []
    for m in (fused, literal):
        with torch.autocast("cpu", dtype=torch.float16):
            out = m(x)
        outs.append((out, torch.autograd.grad(out.float().square().sum(), [x, m.bn.weight])))
    assert outs[0][0].dtype == torch.float16 and outs[0][0].grad_fn.name() == "_SpatialGateFnBackward"
    torch.testing.assert_close(outs[0][0].float(), outs[1][0].float(), rtol=1e-2, atol=1e-2)
    for a, b in zip(outs[0][1], outs[1][1]):
        torch.testing.assert_close(a.float(), b.float(), rtol=2e-2, atol=2e-2)


def test_every_test_docs_contract_names_exists():
    import pathlib
    import re

    root = pathlib.Path(__file__).resolve().parents[1]
    named, file = [], None
    for match in re.finditer(r"`(test_\w+\.py)?::(test_\w+)", (root / "docs" / "contract.md").read_text()):
        file = match.group(1) or file  # "`::name`" continues the row's last file
        named.append((file, match.group(2)))
    assert len(named) >= 35
    for file, name in named:
        assert f"def {name}(" in (root / "tests" / file).read_text(), f"{file}::{name}"
