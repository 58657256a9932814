"""The fused gate (default ``impl``) behaves like plain autograd under every autograd feature a user may reach.

One matrix: each feature runs the fused block and its plain-ops twin (``impl="sum"`` / SSA's ``"mean"``)
side by side in fp64, and compares outputs, every gradient and the BatchNorm running statistics.
"""

import pytest
import timm
import torch
import torch.autograd.forward_ad as fwAD
from torch import nn
from torch.utils.checkpoint import checkpoint

from salient_timm import SalientBlock, SSABlock

PLAIN_IMPL = {"salient": "sum", "ssa": "mean"}
BLOCK = {"salient": SalientBlock, "ssa": SSABlock}
MODEL = {"salient": "salient_resnet18", "ssa": "ssa_resnet18"}


def _block_twins(kind: str, c: int = 6, train: bool = True):
    """(fused, plain) blocks with equal non-trivial parameters and running statistics, fp64."""
    torch.manual_seed(0)
    fused, plain = BLOCK[kind](c).double(), BLOCK[kind](c, impl=PLAIN_IMPL[kind]).double()
    with torch.no_grad():
        fused.bn.weight.fill_(0.7), fused.bn.bias.fill_(0.2), fused.bn.running_mean.fill_(0.3)
    plain.load_state_dict(fused.state_dict())
    return fused.train(train), plain.train(train)


def _model_twins(kind: str):
    torch.manual_seed(0)
    fused = timm.create_model(MODEL[kind], num_classes=4).double()
    plain = timm.create_model(MODEL[kind], num_classes=4, attn_kwargs=dict(impl=PLAIN_IMPL[kind])).double()
    plain.load_state_dict(fused.state_dict())
    return fused, plain


def _assert_same_state(a: nn.Module, b: nn.Module) -> None:
    for (name, x), y in zip(a.state_dict().items(), b.state_dict().values()):
        torch.testing.assert_close(x, y, rtol=1e-10, atol=1e-12, msg=name)


def _grads(out: torch.Tensor, inputs) -> list:
    return list(torch.autograd.grad(out, inputs))


# ---- reverse mode: gradients whose layout the block does not choose ----------------------------------------------

_R = torch.Generator().manual_seed(1)
LOSSES = {  # what a user does with the block's output: the incoming gradient gets these strides
    "transposed": lambda y: (
        y.transpose(2, 3) * torch.randn(y.transpose(2, 3).shape, generator=_R, dtype=y.dtype)
    ).sum(),
    "permuted_nhwc": lambda y: (y.permute(0, 2, 3, 1) ** 2).sum(),
    "sliced": lambda y: y[:, 1:, ::2, 1:].square().sum(),
    "expanded": lambda y: y.sum(),
    "broadcast_channel": lambda y: (y * torch.arange(y.shape[1], dtype=y.dtype).view(1, -1, 1, 1)).mean(),
    "channels_last_out": lambda y: (y.contiguous(memory_format=torch.channels_last) * y.detach().flip(3)).sum(),
}


@pytest.mark.parametrize("kind", ["salient", "ssa"])
@pytest.mark.parametrize("loss", sorted(LOSSES))
@pytest.mark.parametrize("channels_last", [False, True])
def test_any_incoming_gradient_layout_gives_the_plain_gradients(kind, loss, channels_last):
    fused, plain = _block_twins(kind, c=8)
    x = torch.randn(2, 8, 5, 7, dtype=torch.float64)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    x.requires_grad_()
    y = fused(x)
    assert y.grad_fn.name() == "_SpatialGateFnBackward"
    _R.manual_seed(1)
    got = _grads(LOSSES[loss](y), [x, *fused.parameters()])
    _R.manual_seed(1)
    want = _grads(LOSSES[loss](plain(x)), [x, *plain.parameters()])
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("kind", ["salient", "ssa"])
def test_retained_graph_backward_twice_accumulates_like_plain_ops(kind):
    fused, plain = _block_twins(kind)
    x = torch.randn(2, 6, 4, 4, dtype=torch.float64, requires_grad=True)
    for block in (fused, plain):
        y = block(x).square().sum()
        y.backward(retain_graph=True)
        y.backward()
    for a, b in zip(fused.parameters(), plain.parameters()):
        torch.testing.assert_close(a.grad, b.grad)


# ---- higher order -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["salient", "ssa"])
@pytest.mark.parametrize("train", [True, False])
def test_fused_gate_passes_gradgradcheck(kind, train):
    block, _ = _block_twins(kind, c=4, train=train)
    x = torch.randn(2, 4, 3, 3, dtype=torch.float64, requires_grad=True)
    if train:  # gradgradcheck re-runs forward: keep the running statistics out of the comparison
        block.bn.track_running_stats, block.bn.running_mean, block.bn.running_var = False, None, None
    assert torch.autograd.gradgradcheck(lambda x, *params: block(x), (x, *block.parameters()))


@pytest.mark.parametrize("kind", ["salient", "ssa"])
def test_gradient_penalty_through_a_registered_model_equals_plain_ops(kind):
    """WGAN-GP / R1 style: differentiate the input gradient's norm (double backward through every gate)."""
    fused, plain = _model_twins(kind)
    x = torch.randn(2, 3, 32, 32, dtype=torch.float64, requires_grad=True)
    for model in (fused, plain):
        (g,) = torch.autograd.grad(model(x).sum(), x, create_graph=True)
        g.pow(2).sum().backward()
    for (name, a), b in zip(fused.named_parameters(), plain.parameters()):
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-8, atol=1e-10, msg=name)
    _assert_same_state(fused, plain)


@pytest.mark.parametrize("kind", ["salient", "ssa"])
def test_hessian_of_the_block_equals_plain_ops(kind):
    fused, plain = _block_twins(kind, c=3, train=False)
    x = torch.randn(1, 3, 2, 2, dtype=torch.float64)
    hf = torch.autograd.functional.hessian(lambda x: fused(x).pow(3).sum(), x)
    hp = torch.autograd.functional.hessian(lambda x: plain(x).pow(3).sum(), x)
    torch.testing.assert_close(hf, hp)


# ---- forward mode and torch.func ---------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["salient", "ssa"])
def test_forward_mode_ad_equals_plain_ops(kind):
    fused, plain = _block_twins(kind)
    x, t = torch.randn(2, 6, 4, 5, dtype=torch.float64), torch.randn(2, 6, 4, 5, dtype=torch.float64)
    tangents = []
    for block in (fused, plain):
        with fwAD.dual_level():
            tangents.append(fwAD.unpack_dual(block(fwAD.make_dual(x, t))).tangent)
    torch.testing.assert_close(tangents[0], tangents[1])
    _assert_same_state(fused, plain)


@pytest.mark.parametrize("kind", ["salient", "ssa"])
def test_torch_func_per_sample_grads_jvp_and_jacrev_equal_plain_ops(kind):
    from torch.func import functional_call, grad, jacrev, jvp, vmap

    fused, plain = _model_twins(kind)
    x = torch.randn(3, 3, 32, 32, dtype=torch.float64)
    results = []
    for model in (fused.eval(), plain.eval()):
        params, buffers = dict(model.named_parameters()), dict(model.named_buffers())

        def loss(p, sample, model=model, buffers=buffers):
            return functional_call(model, (p, buffers), (sample[None],)).logsumexp(1).sum()

        per_sample = vmap(grad(loss), in_dims=(None, 0))(params, x)
        tangent = jvp(model, (x,), (torch.ones_like(x),))[1]
        jac = jacrev(lambda s, model=model: model(s[None])[0])(x[0])
        results.append((per_sample, tangent, jac))
    (ps_f, t_f, j_f), (ps_p, t_p, j_p) = results
    for name in ps_f:
        torch.testing.assert_close(ps_f[name], ps_p[name], rtol=1e-8, atol=1e-10, msg=name)
    torch.testing.assert_close(t_f, t_p), torch.testing.assert_close(j_f, j_p)


@pytest.mark.parametrize("kind", ["salient", "ssa"])
def test_batched_grad_outputs_give_the_plain_jacobian(kind):
    """``autograd.grad(is_grads_batched=True)`` / ``jacobian(vectorize=True)`` vmap the backward itself."""
    fused, plain = _block_twins(kind, c=3)
    x = torch.randn(2, 3, 2, 2, dtype=torch.float64)
    jf = torch.autograd.functional.jacobian(fused, x, vectorize=True)
    jp = torch.autograd.functional.jacobian(plain, x, vectorize=True)
    torch.testing.assert_close(jf, jp)


# ---- activation checkpointing ------------------------------------------------------------------------------------


def _count_convs(module: nn.Module) -> list:
    calls = [0]
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            m.register_forward_hook(lambda *_: calls.__setitem__(0, calls[0] + 1))
    return calls


@pytest.mark.parametrize("kind", ["salient", "ssa"])
@pytest.mark.parametrize("use_reentrant", [False, True])
def test_checkpointed_stage_recomputes_once_and_updates_bn_like_plain_ops(kind, use_reentrant):
    fused, plain = _model_twins(kind)
    h = torch.randn(2, 64, 8, 8, dtype=torch.float64, requires_grad=True)
    convs, grads = [], []
    for model in (fused, plain):
        calls = _count_convs(model.layer1)
        with torch.no_grad():
            model.layer1.eval()(h)  # convs one forward runs (a hooked gate conv runs as a module: 2 of them)
        model.layer1.train()
        n_convs, calls[0] = calls[0], 0
        out = checkpoint(model.layer1, h, use_reentrant=use_reentrant)
        out.square().sum().backward()
        convs.append(calls[0])
        grads.append([h.grad.clone(), *(p.grad for p in model.layer1.parameters())])
        h.grad = None
    assert n_convs == (6 if kind == "salient" else 4) and convs == [2 * n_convs, 2 * n_convs]  # forward, recompute
    assert fused.layer1[0].bn1.num_batches_tracked.item() == plain.layer1[0].bn1.num_batches_tracked.item() == 2
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    _assert_same_state(fused, plain)


@pytest.mark.parametrize("kind", ["salient", "ssa"])
def test_timm_grad_checkpointing_trains_like_plain_ops_and_like_no_checkpointing(kind):
    fused, plain = _model_twins(kind)
    reference, _ = _model_twins(kind)  # fused, without checkpointing
    x, target = torch.randn(2, 3, 32, 32, dtype=torch.float64), torch.tensor([1, 3])
    for model in (fused, plain):
        model.set_grad_checkpointing(True)
    for model in (fused, plain, reference):
        nn.functional.cross_entropy(model(x), target).backward()
    for (name, a), b, c in zip(fused.named_parameters(), plain.parameters(), reference.parameters()):
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-9, atol=1e-12, msg=name)
        torch.testing.assert_close(a.grad, c.grad, rtol=1e-9, atol=1e-12, msg=name)
    _assert_same_state(fused, plain)


def test_a_converted_batchnorm_takes_the_plain_ops():
    """The fused backward replays ``nn.BatchNorm2d``; a SyncBatchNorm/FrozenBatchNorm2d gate runs plain ops."""
    from timm.layers import freeze_batch_norm_2d

    block = SalientBlock(8).train()
    block.bn = freeze_batch_norm_2d(block.bn)
    y = block(torch.randn(2, 8, 4, 4, requires_grad=True))
    assert y.grad_fn.name() != "_SpatialGateFnBackward"
    fused = SalientBlock(8).train()
    assert fused(torch.randn(2, 8, 4, 4, requires_grad=True)).grad_fn.name() == "_SpatialGateFnBackward"
