"""The fused gate (the default ``impl``) is the seed's block, exactly, and only changes how backward runs."""

import copy

import pytest
import timm
import torch
from helpers import FreshAllocations, assert_same_function, randomize_bn
from torch import nn

import salient_timm
from salient_timm import SalientBlock, SSABlock, find_residual_blocks


def _pair(kind: str, c: int):
    """(fused default block, literal reference block) with equal, non-trivial parameters, in fp64."""
    fused, literal = (
        (SalientBlock(c), SalientBlock(c, impl="conv"))
        if kind == "salient"
        else (SSABlock(c), SSABlock(c, impl="mean"))
    )
    with torch.no_grad():
        fused.bn.weight.fill_(0.7)
        fused.bn.bias.fill_(0.2)
        fused.bn.running_mean.fill_(0.3)
    literal.load_state_dict(fused.state_dict())
    return fused.double(), literal.double()


def _input(n, c, h, w, channels_last):
    x = torch.randn(n, c, h, w, dtype=torch.float64)
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


@pytest.mark.parametrize("kind", ["salient", "ssa"])
@pytest.mark.parametrize("train", [True, False])
@pytest.mark.parametrize("channels_last", [False, True])
def test_fused_gate_equals_the_literal_block_forward_and_every_gradient(kind, train, channels_last):
    fused, literal = _pair(kind, 24)
    fused.train(train), literal.train(train)
    x = _input(3, 24, 5, 7, channels_last).requires_grad_()
    y_fused = assert_same_function(fused, literal, x)
    assert y_fused.grad_fn.name() == "_SpatialGateFnBackward"  # the fused path ran
    for name, buf in fused.bn.named_buffers():  # BN's running statistics advance exactly once per forward
        torch.testing.assert_close(buf, literal.bn.get_buffer(name), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("kind", ["salient", "ssa"])
@pytest.mark.parametrize("channels_last", [False, True])
def test_fused_gate_passes_gradcheck(kind, channels_last):
    block, _ = _pair(kind, 6)
    x = _input(2, 6, 3, 4, channels_last).requires_grad_()
    assert torch.autograd.gradcheck(lambda x, *params: block(x), (x, *block.parameters()))


def test_frozen_gate_parameters_and_inputs_without_grad_still_train_the_rest():
    block, literal = _pair("salient", 8)
    block.bn.requires_grad_(False), literal.bn.requires_grad_(False)
    x = torch.randn(2, 8, 4, 4, dtype=torch.float64)  # input without grad: only the conv weight learns
    block(x).square().sum().backward()
    literal(x).square().sum().backward()
    torch.testing.assert_close(block.conv.weight.grad, literal.conv.weight.grad)
    assert block.bn.weight.grad is None


def test_fused_gate_saves_only_the_input_for_backward():
    """Saved full-size tensors: x alone (the gate's own graph is (N, 1, H, W))."""
    block = SalientBlock(32)
    x = torch.randn(4, 32, 8, 8, requires_grad=True)
    full_size = set()

    def pack(t):
        if t.numel() >= x.numel():
            full_size.add(t.untyped_storage().data_ptr())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        block(x)
    assert full_size == {x.untyped_storage().data_ptr()}


@pytest.mark.parametrize("context", ["no_grad", "script", "fx"])
def test_fused_impl_uses_its_plain_ops_where_a_custom_function_cannot_go(context):
    block = SalientBlock(8).train()
    x = torch.randn(2, 8, 4, 4)
    reference = SalientBlock(8, impl="gemv").train()
    reference.load_state_dict(block.state_dict())
    if context == "no_grad":
        with torch.no_grad():
            out = block(x)
        assert out.grad_fn is None
    elif context == "script":
        out = torch.jit.script(block)(x.requires_grad_())
    else:
        out = torch.fx.symbolic_trace(block)(x.requires_grad_())
    torch.testing.assert_close(out, reference(x))


def test_registered_model_trains_through_the_fused_gate_like_the_literal_one():
    torch.manual_seed(0)
    fused = timm.create_model("salient_resnet18", num_classes=4).double()
    literal = timm.create_model("salient_resnet18", num_classes=4, attn_kwargs=dict(impl="conv")).double()
    literal.load_state_dict(fused.state_dict())
    assert list(fused.state_dict()) == list(literal.state_dict())  # same keys, same checkpoints
    x = torch.randn(2, 3, 32, 32, dtype=torch.float64).contiguous(memory_format=torch.channels_last)
    for model in (fused, literal):
        nn.functional.cross_entropy(model(x), torch.tensor([0, 3])).backward()
    for (name, a), b in zip(fused.named_parameters(), literal.parameters()):
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-9, atol=1e-12, msg=name)


def test_torch_flop_counter_counts_a_training_step_through_the_fused_gate():
    """FlopCounterMode's module tracker must not hook the fused function's inner graph."""
    from torch.utils.flop_counter import FlopCounterMode

    model = timm.create_model("salient_resnet18", num_classes=4)
    literal = timm.create_model("salient_resnet18", num_classes=4, attn_kwargs=dict(impl="conv"))
    literal.load_state_dict(model.state_dict())
    x = torch.randn(2, 3, 32, 32)
    counts = []
    for m in (model, literal):  # under the tracker the gate runs as the literal block: the same count
        with FlopCounterMode(display=False) as counter:
            m(x).sum().backward()
        counts.append(counter.get_total_flops())
    assert counts[0] == counts[1] > 0
    torch.testing.assert_close(model.layer1[0].se.conv.weight.grad, literal.layer1[0].se.conv.weight.grad)


def test_hooks_on_the_gate_fire_in_training():
    """A forward hook on ``gate`` (capture_gates, user code) sees the gate map; the block then runs its plain ops."""
    block = SalientBlock(8).train()
    seen = []
    block.gate.register_forward_hook(lambda module, args, out: seen.append(out.shape))
    y = block(torch.randn(2, 8, 4, 4, requires_grad=True))
    assert seen == [torch.Size([2, 1, 4, 4])] and y.grad_fn.name() != "_SpatialGateFnBackward"


@pytest.mark.parametrize("kind", ["salient", "ssa"])
def test_under_bf16_autocast_the_fused_gate_runs_and_matches_fp32_to_bf16_precision(kind):
    """Autocast is the GPU default: the fused path must run there, BN and sigmoid in fp32, the product in bf16."""

    def block(impl):
        b = (SalientBlock(32, impl=impl) if kind == "salient" else SSABlock(32, impl=impl)).train()
        with torch.no_grad():
            b.bn.weight.fill_(0.7)
            b.bn.bias.fill_(0.2)
            if kind == "salient":
                b.conv.weight.copy_(torch.linspace(-0.5, 0.5, 32).view_as(b.conv.weight))
        return b

    x = torch.randn(4, 32, 8, 8).bfloat16()  # what a conv under autocast hands the gate
    weights = torch.linspace(-1, 1, x.numel()).view_as(x)
    runs = {}
    for name, impl, autocast in (("fused", "fused", True), ("plain", "gemv", True), ("fp32", "gemv", False)):
        b, xi = block(impl), (x if autocast else x.float()).clone().requires_grad_()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            out = b(xi)
        (out.float() * weights).sum().backward()
        runs[name] = (b, out, [xi.grad.float()] + [p.grad for p in b.parameters()])
    fused, out, grads = runs["fused"]
    assert out.dtype == torch.bfloat16 and out.grad_fn.name() == "_SpatialGateFnBackward"
    assert fused.bn.running_mean.dtype == torch.float32
    torch.testing.assert_close(fused.bn.running_mean, runs["fp32"][0].bn.running_mean, rtol=1e-2, atol=1e-3)
    torch.testing.assert_close(out.float(), runs["fp32"][1], rtol=2e-2, atol=2e-2)
    for got, plain, want in zip(grads, runs["plain"][2], runs["fp32"][2]):
        assert got.dtype == want.dtype
        if want.numel() > 1:  # x and the conv weight: bf16 rounding of the full-size terms
            assert (got - want).abs().max() <= 2e-2 * want.abs().max()
        else:  # BN's gamma, beta: sums that cancel; no worse than the plain ops under the same autocast
            assert (got - want).abs() <= 2 * (plain - want).abs() + 2e-2 * want.abs()


def _grads(model: nn.Module, x: torch.Tensor, autocast: bool):
    model.zero_grad(set_to_none=True)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        out = model(x)
    (out.float() * torch.linspace(-1, 1, out.numel()).view_as(out)).sum().backward()
    return {name: p.grad.clone() for name, p in model.named_parameters()}


@pytest.mark.parametrize("name", ["salient_resnet18", "ssa_resnet18"])
def test_a_bf16_autocast_model_trains_through_the_fused_gate_as_through_plain_ops(name):
    """Whole model: the fused gate adds no error to what bf16 autocast itself costs (plain ops, same autocast)."""
    model = timm.create_model(name, num_classes=10).train()
    plain = timm.create_model(name, num_classes=10, attn_kwargs=dict(impl="gemv")).train()
    plain.load_state_dict(model.state_dict())
    x = torch.randn(4, 3, 32, 32)
    fused, bf16, fp32 = _grads(model, x, True), _grads(plain, x, True), _grads(plain, x, False)
    for key in fp32:
        autocast_error = (bf16[key] - fp32[key]).abs().max()
        assert fused[key].dtype == torch.float32
        assert (fused[key] - bf16[key]).abs().max() <= 0.1 * autocast_error + 1e-3 * fp32[key].abs().max(), key


def test_a_training_step_on_the_meta_device_runs_through_the_fused_gate():
    """salient-analyze counts training steps on the meta device, where torch.autocast cannot be entered."""
    block = SalientBlock(8, device="meta").train()
    x = torch.empty(2, 8, 4, 4, device="meta", requires_grad=True)
    out = block(x)
    assert out.grad_fn.name() == "_SpatialGateFnBackward"
    out.sum().backward()
    assert x.grad.shape == x.shape and block.conv.weight.grad.device.type == "meta"


def _block_pair(kind: str, base: str):
    """(fused block, literal block): one residual block with a downsample and a post gate, fp64, equal weights."""
    literal_impl = "conv" if kind == "salient" else "mean"
    if base.startswith("torchvision"):
        import torchvision

        build = torchvision.models.resnet18 if base.endswith("basic") else torchvision.models.resnet50
    else:
        name = "resnet18" if base.endswith("basic") else "resnet26"

        def build():
            return timm.create_model(name, channels=(8, 16, 32, 64), stem_width=8)  # narrow: fast checks

    blocks = []
    for impl in ("fused", literal_impl):
        torch.manual_seed(0)
        model = build()
        salient_timm.inject_attention(model, kind, impl=impl)
        blocks.append(randomize_bn(model).layer2[0].double().train())
    blocks[1].load_state_dict(blocks[0].state_dict())
    return blocks


def _set_bn_mode(block: nn.Module, bn_mode: str) -> None:
    """``train``; ``eval`` (running statistics, gradients still wanted: fine-tuning with frozen statistics);
    ``cumulative`` (``momentum=None``); ``untracked`` (``track_running_stats=False``, no affine)."""
    block.train(bn_mode != "eval")
    for m in block.modules():
        if isinstance(m, nn.BatchNorm2d) and m.num_features > 1:
            if bn_mode == "cumulative":
                m.momentum = None
            elif bn_mode == "untracked":
                m.track_running_stats, m.running_mean, m.running_var, m.num_batches_tracked = False, None, None, None
                m.affine, m.weight, m.bias = False, None, None


@pytest.mark.parametrize("kind", ["salient", "ssa"])
@pytest.mark.parametrize(
    "base,bn_mode",
    [
        ("timm-basic", "train"),
        ("timm-bottleneck", "train"),
        ("torchvision-basic", "train"),
        ("torchvision-bottleneck", "train"),
        ("timm-bottleneck", "eval"),
        ("timm-basic", "cumulative"),
        ("torchvision-bottleneck", "untracked"),
    ],
)
def test_the_residual_epilogue_is_the_literal_block_exactly(kind, base, bn_mode):
    """Branch norm, gate product, shortcut add and ReLU in one fused pass: same output, input gradient (both paths:
    the branch and the shortcut through the downsample), parameter gradients and BN statistics as the seed's literal
    block, in fp64, whatever the BatchNorm's mode."""
    fused, literal = _block_pair(kind, base)
    _set_bn_mode(fused, bn_mode), _set_bn_mode(literal, bn_mode)
    channels = fused.conv1.in_channels
    x = torch.randn(2, channels, 8, 8, dtype=torch.float64, requires_grad=True)
    y_fused = assert_same_function(fused, literal, x, grad_atol=1e-10)
    assert y_fused.grad_fn.name() == "_SpatialGateFnBackward"  # the epilogue ran: the block's output is its own
    for a, b in zip(fused.modules(), literal.modules()):  # BN statistics, downsample's included, updated once
        if isinstance(a, nn.BatchNorm2d):
            for name, buffer in a.named_buffers():
                torch.testing.assert_close(buffer, b.get_buffer(name), rtol=1e-12, atol=1e-12, msg=name)
            if a.num_batches_tracked is not None:
                assert a.num_batches_tracked == (0 if bn_mode == "eval" else 1)


def _saved_bytes(block: nn.Module, x: torch.Tensor, at_least: int) -> int:
    """Bytes of the distinct tensors of at least ``at_least`` elements that autograd keeps for backward."""
    storages = {}

    def pack(t):
        if t.numel() >= at_least:
            storages[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        block(x)
    return sum(storages.values())


@pytest.mark.parametrize("kind", ["salient", "ssa"])
@pytest.mark.parametrize("base", ["timm-basic", "timm-bottleneck", "torchvision-bottleneck"])
def test_a_gated_block_keeps_no_more_for_backward_than_the_plain_block_plus_its_maps(kind, base):
    """Training memory: the gate adds only its (N, 1, H, W) maps (SSA: and its (N, C) weights) to what the plain
    residual block saves (the gate's input is recomputed from the branch norm's saved input in backward, not kept)."""
    fused, _ = _block_pair(kind, base)
    plain = copy.deepcopy(fused)
    plain.se = None
    x = torch.randn(4, fused.conv1.in_channels, 16, 16, dtype=torch.float64, requires_grad=True)
    width = find_residual_blocks(fused)[0].channels("post")
    maps = 4 * (8 * 8) * 8 * 3  # output (N, 1, 8, 8) in fp64: saliency, and at most two more per-pixel tensors
    maps += 4 * width * 8 if kind == "ssa" else 0  # SSA's per-sample channel weights GAP(x)/C, (N, C)
    assert _saved_bytes(fused, x, 4 * 8 * 8) <= _saved_bytes(plain, x, 4 * 8 * 8) + maps
    assert _saved_bytes(fused, x, 4 * width * 8 * 8) == _saved_bytes(plain, x, 4 * width * 8 * 8)


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("kind", ["salient", "ssa"])
@pytest.mark.parametrize("base", ["timm-basic", "timm-bottleneck", "torchvision-bottleneck"])
def test_a_gated_training_step_allocates_no_more_output_sized_tensors_than_the_plain_block_in_channels_last(
    kind, base, channels_last
):
    """On CPU a fresh large tensor costs page faults, more than a pass over it (benchmarks/RESULTS.md, issue 33).
    The fused epilogue writes the residual sum over the norm's output (as timm's ``x += shortcut`` does), dx over
    the gate input it recomputes in backward, and the norm's input gradient over dx: channels_last makes one
    output-sized tensor fewer than the plain block, NCHW at most one more (its channel dot ``sum_c dy_c x_c`` needs
    the product)."""
    fused, _ = _block_pair(kind, base)
    plain = copy.deepcopy(fused)
    plain.se = None
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    x = torch.randn(2, fused.conv1.in_channels, 8, 8, dtype=torch.float64).contiguous(memory_format=fmt)
    counts = []
    for block in (plain, fused):
        block.to(memory_format=fmt)
        xi = x.clone().requires_grad_()
        numel = block(xi).numel()
        with FreshAllocations(numel) as seen:
            out = block(xi)
            out.backward(torch.ones_like(out))
        counts.append(seen.count - 1)  # ones_like: the incoming gradient
    assert out.grad_fn.name() == "_SpatialGateFnBackward"
    assert counts[1] <= counts[0] + (-1 if channels_last else 1), counts


@pytest.mark.parametrize("kind", ["salient", "ssa"])
@pytest.mark.parametrize("base", ["timm-basic", "timm-bottleneck", "torchvision-bottleneck"])
def test_eval_inference_of_a_gated_block_allocates_no_more_output_sized_tensors_than_the_plain_block(kind, base):
    """Inference makes no product tensor: the residual sum is written over the norm's fresh output, as timm's
    ``x += shortcut`` does (a gated block made one output-sized tensor more, issue 33)."""
    fused, _ = _block_pair(kind, base)
    plain = copy.deepcopy(fused)
    plain.se = None
    x = torch.randn(2, fused.conv1.in_channels, 8, 8, dtype=torch.float64)
    counts = []
    for block in (plain.eval(), fused.eval()):
        with torch.inference_mode():
            numel = block(x).numel()
            with FreshAllocations(numel) as seen:
                block(x)
        counts.append(seen.count)
    assert counts[1] <= counts[0], counts


@pytest.mark.parametrize("kind", ["salient", "ssa"])
def test_eval_inference_in_fp32_is_bitwise_what_the_plain_ops_compute(kind):
    """The inference epilogue keeps the plain ops' order (product, add, ReLU), so an eager model and its FX trace,
    TorchScript or plain-ops twin agree bit for bit in inference (a fused multiply-add rounds once, and deep
    ResNets amplify that to 1e-2 in their logits)."""
    torch.manual_seed(0)
    models = [timm.create_model("resnet26", channels=(8, 16, 32, 64), stem_width=8) for _ in range(2)]
    for model, impl in zip(models, ("fused", "gemv")):
        salient_timm.inject_attention(model, kind, impl=impl)
    models[1].load_state_dict(randomize_bn(models[0]).state_dict())
    x = torch.randn(2, 3, 32, 32).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        fused, plain = (m.eval().to(memory_format=torch.channels_last)(x) for m in models)
    assert torch.equal(fused, plain)


@pytest.mark.parametrize("context", ["no_grad", "inference_mode"])
@pytest.mark.parametrize("norm", ["batchnorm", "frozen", "hooked"])
@pytest.mark.parametrize("kind", ["salient", "ssa"])
@pytest.mark.parametrize("base", ["timm-basic", "timm-bottleneck", "torchvision-bottleneck"])
def test_eval_inference_of_a_gated_block_computes_what_the_literal_block_computes(base, kind, norm, context):
    """Inference (``model.eval()`` under ``no_grad`` / ``inference_mode``): the block's output is the literal
    block's, its input and a hooked norm's output are left as they were, and a hook on the norm fires once."""
    from timm.layers import freeze_batch_norm_2d

    fused, literal = (b.eval() for b in _block_pair(kind, base))
    last = "bn2" if base == "timm-basic" else "bn3"
    if norm == "frozen":
        for b in (fused, literal):
            setattr(b, last, freeze_batch_norm_2d(getattr(b, last)))
    seen = []
    if norm == "hooked":
        getattr(fused, last).register_forward_hook(lambda module, args, out: seen.append(out.clone()) or None)
        getattr(fused, last).register_forward_hook(lambda module, args, out: seen.append(out))
    x = torch.randn(2, fused.conv1.in_channels, 8, 8, dtype=torch.float64)
    x_before = x.clone()
    with torch.no_grad() if context == "no_grad" else torch.inference_mode():
        out, ref = fused(x), literal(x)
    torch.testing.assert_close(out, ref, rtol=1e-12, atol=1e-12)
    assert torch.equal(x, x_before)
    if norm == "hooked":
        assert len(seen) == 2 and torch.equal(seen[0], seen[1])  # what the hook kept was not written over


def test_a_frozen_or_hooked_branch_norm_runs_as_it_is_before_the_fused_epilogue():
    """FrozenBatchNorm2d (fine-tuning with frozen BN) or a hook on the norm: the norm runs its own call (the hook
    fires), the gate and the epilogue still fuse, and the block stays exact."""
    from timm.layers import freeze_batch_norm_2d

    fused, literal = _block_pair("salient", "timm-bottleneck")
    fused.bn2, literal.bn2 = freeze_batch_norm_2d(fused.bn2), freeze_batch_norm_2d(literal.bn2)  # the mid norm
    fused.bn3, literal.bn3 = freeze_batch_norm_2d(fused.bn3), freeze_batch_norm_2d(literal.bn3)  # the branch's last
    seen = []
    fused.bn3.register_forward_hook(lambda module, args, out: seen.append(out.shape))
    x = torch.randn(2, fused.conv1.in_channels, 8, 8, dtype=torch.float64, requires_grad=True)
    out = fused(x)
    assert out.grad_fn.name() == "_SpatialGateFnBackward" and len(seen) == 1
    torch.testing.assert_close(out, literal(x), rtol=1e-12, atol=1e-12)
    r = torch.randn_like(out)
    for a, b in zip(torch.autograd.grad(out, x, r), torch.autograd.grad(literal(x), x, r)):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)
    plain_bn = _block_pair("salient", "timm-bottleneck")[0]  # a hook on a plain BatchNorm2d: the same contract
    plain_bn.bn3.register_forward_hook(lambda module, args, out: seen.append(out.shape))
    out = plain_bn(x)
    assert out.grad_fn.name() == "_SpatialGateFnBackward" and len(seen) == 2


@pytest.mark.parametrize("train", [False, True])
def test_the_residual_epilogue_passes_gradcheck_and_gradgradcheck(train):
    """Both BN modes are a deterministic function of x (train: batch statistics; the running ones only move)."""
    fused, _ = _block_pair("salient", "timm-bottleneck")
    fused.train(train)
    x = torch.randn(2, fused.conv1.in_channels, 4, 4, dtype=torch.float64, requires_grad=True)
    assert fused(x).grad_fn.name() == "_SpatialGateFnBackward"
    params = [fused.bn3.weight, fused.bn3.bias, fused.se.conv.weight]
    assert torch.autograd.gradcheck(lambda x, *p: fused(x), (x, *params), fast_mode=True)
    assert torch.autograd.gradgradcheck(lambda x, *p: fused(x), (x, *params), fast_mode=True)


def test_drop_path_or_another_activation_takes_the_plain_ops_and_stays_exact():
    fused, literal = _block_pair("salient", "timm-basic")
    fused.act2 = literal.act2 = nn.GELU()  # not a ReLU: no epilogue
    x = torch.randn(2, fused.conv1.in_channels, 8, 8, dtype=torch.float64, requires_grad=True)
    out = fused(x)
    assert out.grad_fn.name() != "_SpatialGateFnBackward"
    torch.testing.assert_close(out, literal(x), rtol=1e-12, atol=1e-12)


def test_gate_hooks_and_counters_see_the_gate_while_training_with_the_epilogue():
    """The fused epilogue bypasses the gate's own call; a hook on the gate (capture_gates) or a module tracker
    (salient-analyze's per-gate counts) must still see every gate run."""
    from torch.utils.flop_counter import FlopCounterMode

    model = timm.create_model("salient_resnet18", num_classes=10).train()
    x = torch.randn(2, 3, 32, 32)
    with salient_timm.capture_gates(model) as gates:
        model(x).sum().backward()
    assert len(gates) == 8
    with FlopCounterMode(display=False) as counter:
        model(x).sum().backward()
    assert counter.get_flop_counts()["SalientResNet.layer1.0.se"]  # the gate's own FLOPs, attributed to it
    assert model(x).grad_fn is not None and model.layer1[0](torch.randn(2, 64, 8, 8)).grad_fn.name() == (
        "_SpatialGateFnBackward"
    )  # without a watcher, the epilogue runs
