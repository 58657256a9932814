"""The fused gate (the default ``impl``) is the seed's block, exactly, and only changes how backward runs."""

import pytest
import timm
import torch
from torch import nn

from salient_timm import SalientBlock, SSABlock


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
    y_fused, y_literal = fused(x), literal(x)
    assert y_fused.grad_fn.name() == "_SpatialGateFnBackward"  # the fused path ran
    torch.testing.assert_close(y_fused, y_literal, rtol=1e-12, atol=1e-12)
    dy = torch.randn_like(y_fused)
    grads_fused = torch.autograd.grad(y_fused, [x, *fused.parameters()], dy)
    grads_literal = torch.autograd.grad(y_literal, [x, *literal.parameters()], dy)
    for a, b in zip(grads_fused, grads_literal):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
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
    with FlopCounterMode(display=False) as counter:
        model(torch.randn(2, 3, 32, 32)).sum().backward()
    assert counter.get_total_flops() > 0 and model.layer1[0].se.conv.weight.grad is not None


def test_hooks_on_the_gate_fire_in_training():
    """A forward hook on ``gate`` (capture_gates, user code) sees the gate map; the block then runs its plain ops."""
    block = SalientBlock(8).train()
    seen = []
    block.gate.register_forward_hook(lambda module, args, out: seen.append(out.shape))
    y = block(torch.randn(2, 8, 4, 4, requires_grad=True))
    assert seen == [torch.Size([2, 1, 4, 4])] and y.grad_fn.name() != "_SpatialGateFnBackward"
