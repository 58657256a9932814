"""torch.compile sees our blocks as one graph: ``fullgraph=True`` (which raises on any graph break) traces
forward and backward of every block type and gate implementation, registered and retrofitted.

The ``eager`` backend checks what dynamo captures without paying for inductor's C++ build on CPU;
salient_resnet26 stands for every Bottleneck variant (resnet50/101/152, -d, resnext, wide), salient_resnet18
for every BasicBlock one.
"""

import pytest
import timm
import torch
import torchvision

import salient_timm


def _compiled_matches_eager(model: torch.nn.Module, x: torch.Tensor) -> None:
    """Eager trains through the fused gate, compile through its plain ops (the same sums in another order).
    fp64, because these tiny random models normalise 2-value batches in layer4, which amplifies fp32 rounding."""
    torch._dynamo.reset()
    model.double().train()
    x = x.double()
    eager_out = model(x)
    eager_out.sum().backward()
    eager_grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad(set_to_none=True)
    for m in model.modules():  # same BN statistics for the compiled pass
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.reset_running_stats()
    out = torch.compile(model, fullgraph=True, backend="eager")(x)
    out.sum().backward()
    torch.testing.assert_close(out, eager_out, rtol=1e-9, atol=1e-9)
    for p, g in zip(model.parameters(), eager_grads):
        torch.testing.assert_close(p.grad, g, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    "name, kwargs",
    [
        ("salient_resnet18", {}),
        ("salient_resnet26", {}),
        ("ssa_resnet18", {}),
        ("salient_resnet18", dict(attn_kwargs=dict(impl="gemv"))),
        ("salient_resnet18", dict(attn_kwargs=dict(impl="conv"))),
        ("ssa_resnet18", dict(attn_kwargs=dict(impl="gemv"))),
    ],
)
def test_registered_variants_compile_without_graph_breaks(name, kwargs):
    _compiled_matches_eager(timm.create_model(name, num_classes=5, **kwargs), torch.randn(2, 3, 32, 32))


@pytest.mark.parametrize("kind", ["salient", "ssa", "se"])
def test_retrofitted_torchvision_model_compiles_without_graph_breaks(kind):
    model = torchvision.models.resnet18(num_classes=5)
    salient_timm.inject_attention(model, kind, init="identity", init_gain=0.1)
    salient_timm.inject_attention(model, "salient", position="mid")
    _compiled_matches_eager(model, torch.randn(2, 3, 32, 32))
