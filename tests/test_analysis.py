"""Cost accounting checked against independent, hand-written counts."""

import pytest
import timm
import torch
from torch import nn

from salient_analysis.claims import CONDITIONAL, NOT_CHECKED, REFUTED, SEED_CLAIMS, VERDICTS, check_claims
from salient_analysis.counting import count_cost, count_params
from salient_analysis.crosscheck import fvcore_count, thop_count
from salient_analysis.formulas import formula_rows
from salient_analysis.size import measure_size
from salient_analysis.spec import AnalysisTarget, SpecError, parse_input_size
from salient_timm import SalientBlock, SSABlock, inject_attention


def hand_salient_ops(n, c, h, w):
    """Salient block by hand: conv C->1 is C MACs per pixel; BN, sigmoid, scale: 1 op per gate pixel; w*x: C*H*W."""
    return n * c * h * w, n * (3 * h * w + c * h * w)


@pytest.mark.parametrize("impl", ["sum", "gemv", "conv"])
@pytest.mark.parametrize("shape", [(1, 16, 8, 8), (3, 64, 5, 7)])
def test_salient_block_count_by_hand(shape, impl):
    report = count_cost(SalientBlock(shape[1], impl=impl), shape)
    macs, elementwise = hand_salient_ops(*shape)
    if impl == "sum":  # the conv's C*H*W multiply-adds become a multiply and a channel sum: same FLOPs
        macs, elementwise = 0, elementwise + 2 * macs
    assert (report.total.macs, report.total.elementwise) == (macs, elementwise)
    assert report.total.flops == 2 * hand_salient_ops(*shape)[0] + hand_salient_ops(*shape)[1]


def test_ssa_block_count_by_hand():
    n, c, h, w = 2, 32, 6, 6
    # GEMV form: GAP reads CHW, g/C on C, (g/C) @ x is C*H*W MACs, w*x writes CHW; BN, sigmoid, scale on HW
    report = count_cost(SSABlock(c, impl="gemv"), (n, c, h, w))
    assert report.total.macs == n * c * h * w
    assert report.total.elementwise == n * (2 * c * h * w + c + 3 * h * w)
    # the default "fused" impl counts (inference, no_grad) as the GEMV form
    default = count_cost(SSABlock(c), (n, c, h, w))
    assert (default.total.macs, default.total.elementwise) == (report.total.macs, report.total.elementwise)
    # literal form: GAP reads CHW, GAP*x writes CHW, mean over C reads CHW, w*x writes CHW
    report = count_cost(SSABlock(c, impl="mean"), (n, c, h, w))
    assert report.total.macs == 0
    assert report.total.elementwise == n * (4 * c * h * w + 3 * h * w)


def conv_linear_macs_by_hooks(model, x):
    """Independent MAC count: output elements x (C_in/groups x kh x kw) per conv, in x out per linear (a Salient
    gate's conv included: with a hook on it, every impl calls it, as the literal block does), and C*H*W per image
    for SSA's GEMV channel reduction."""
    total = []

    def hook(m, inp, out):
        if isinstance(m, nn.Conv2d):
            total.append(out.numel() * m.in_channels // m.groups * m.kernel_size[0] * m.kernel_size[1])
        elif isinstance(m, nn.Linear):
            total.append(out.numel() * m.in_features)
        elif isinstance(m, SSABlock) and m.impl in ("gemv", "fused"):
            total.append(inp[0].numel())

    kinds = (nn.Conv2d, nn.Linear, SalientBlock, SSABlock)
    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, kinds)]
    with torch.no_grad():
        model(x)
    for h in handles:
        h.remove()
    return sum(total)


@pytest.mark.parametrize("name, attn", [("resnet50", "salient"), ("resnet18", "se"), ("resnet26d", "ssa")])
def test_macs_match_hook_count(name, attn):
    model = timm.create_model(name).eval()
    inject_attention(model, attn)
    assert count_cost(model, (1, 3, 64, 64)).total.macs == conv_linear_macs_by_hooks(model, torch.zeros(1, 3, 64, 64))


def test_resnet50_at_32_batch1_counts_in_eval_and_restores_train_mode():
    model = timm.create_model("resnet50").train()
    inject_attention(model, "salient")
    keys = list(model.state_dict())
    report = count_cost(model, (1, 3, 32, 32))  # layer4 is 1x1: a train-mode BN would fail here
    assert report.total.macs > 0 and report.uncounted_ops == []
    assert all(m.training for m in model.modules())
    assert list(model.state_dict()) == keys
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in model.modules())


def test_meta_and_cpu_counts_agree():
    spec = AnalysisTarget("resnet18", attn="salient", input_size=(3, 32, 32), batch=2)
    meta, cpu = count_cost(spec.build(), spec.input_shape), count_cost(spec.build("cpu"), spec.input_shape)
    assert (meta.total.macs, meta.total.elementwise) == (cpu.total.macs, cpu.total.elementwise)


@pytest.mark.parametrize("attn", ["salient", "ssa", "se"])
@pytest.mark.parametrize("cifar", [False, True])
def test_full_formula_equals_measured_on_every_block(attn, cifar):
    spec = AnalysisTarget("resnet50", attn=attn, cifar_stem=cifar, input_size=(3, 32, 32))
    rows = formula_rows(spec.build(), spec.input_shape)
    assert len(rows) == 16 and all(r.verdict == "match" for r in rows)
    if attn == "salient":  # default impl "fused" counts as its GEMV: the seed's C*H*W as MACs
        r = rows[0]
        assert r.measured_macs == r.c * r.h * r.w and r.measured_elementwise == r.c * r.h * r.w + 3 * r.h * r.w


def test_formula_catches_a_wrong_count():
    spec = AnalysisTarget("resnet18", attn="salient", input_size=(3, 32, 32))
    model = spec.build()
    report = count_cost(model, spec.input_shape)
    report.modules["layer1.0.se"].elementwise += 1
    rows = formula_rows(model, spec.input_shape, report)
    assert [r.verdict for r in rows].count("MISMATCH") == 1


def test_fvcore_and_thop_report_what_they_miss():
    spec = AnalysisTarget("resnet18", attn="salient", input_size=(3, 32, 32))
    model = spec.build("cpu")
    report = count_cost(model, spec.input_shape)
    fv = fvcore_count(model, spec.input_shape, report)
    # fvcore skips the gate's sigmoid and multiply and the residual add; we count them all
    assert fv.missed["aten::sigmoid"] == report.total.by_op["aten::sigmoid"]
    assert fv.missed["aten::mul"] == report.total.by_op["aten::mul"]
    th = thop_count(model, spec.input_shape, report)
    assert th.missed["aten::mul"] == report.total.by_op["aten::mul"]
    assert "aten::convolution" not in th.missed
    assert "total_ops" not in str(list(model.state_dict()))  # thop ran on a copy


def test_size_matches_files_written(tmp_path):
    from safetensors.torch import save_file

    model = timm.create_model("salient_resnet18")
    report = measure_size(model)
    path = tmp_path / "archive.pt"  # torch.save names its zip records after the file; BytesIO uses "archive"
    torch.save({k: v.contiguous() for k, v in model.state_dict().items()}, path)
    assert report.torch_save_bytes == path.stat().st_size
    save_file(model.state_dict(), str(tmp_path / "m.safetensors"))
    assert report.safetensors_bytes == (tmp_path / "m.safetensors").stat().st_size
    assert report.bytes_at["fp32"] == 4 * (report.params + report.buffers) + 4 * sum(
        b.numel() for b in model.buffers() if b.dtype == torch.int64
    )  # int64 counters are 8 bytes
    assert report.bytes_at["fp16"] < report.bytes_at["fp32"]


def test_measure_size_leaves_meta_models_alone():
    model = AnalysisTarget("resnet18").build()
    report = measure_size(model)
    assert all(p.is_meta for p in model.parameters())  # measured without materialising anything
    assert report.bytes_at == measure_size(AnalysisTarget("resnet18").build("cpu")).bytes_at  # as the real model


def test_count_params_stages_and_attention():
    model = timm.create_model("resnet34")
    inject_attention(model, "salient")
    report = count_params(model)
    assert report.attention_params == 3776 + 32
    assert sum(report.per_child.values()) == report.params


@pytest.mark.parametrize("text, shape", [("32", (3, 32, 32)), ("3x32x32", (3, 32, 32)), ("224x160", (3, 224, 160))])
def test_parse_input_size(text, shape):
    assert parse_input_size(text) == shape


@pytest.mark.parametrize("text", ["0", "x", "3x0x2", "1x2x3x4", "-5"])
def test_parse_input_size_rejects(text):
    with pytest.raises(SpecError, match="bad input size"):
        parse_input_size(text)


def test_unknown_model_suggests_close_names():
    with pytest.raises(SpecError, match="did you mean .*resnet50"):
        AnalysisTarget("resnet5O")


def test_claims_have_derived_verdicts():
    checks = {c.claim.id: c for c in check_claims()}
    assert set(checks) == {c.id for c in SEED_CLAIMS}
    assert all(c.verdict in VERDICTS for c in checks.values())
    salient = checks["salient-params"]
    assert salient.verdict == CONDITIONAL and salient.measured == "15,136"
    assert "resnet50 at 'mid' counting conv weights only" in salient.explanation
    se = checks["se-params"]
    assert se.verdict == REFUTED and "2,514,944" in se.measured and "3776²/16" in se.explanation
    assert checks["salient-size"].verdict == CONDITIONAL and "torch.save file" in checks["salient-size"].explanation
    assert all(checks[c.id].verdict == NOT_CHECKED for c in SEED_CLAIMS if c.id.startswith("acc-"))


def test_stem_pool_and_residual_add_counts_by_hand():
    report = count_cost(timm.create_model("resnet18"), (1, 3, 64, 64))
    ops = report.total.by_op
    assert ops["aten::max_pool2d_with_indices"] == 64 * 16 * 16 * 9  # 3x3 window per output element
    # one add per residual block, on its output: 2 blocks per stage at 64/128/256/512 channels, 16/8/4/2 px
    assert ops["aten::add_"] == sum(2 * c * s * s for c, s in ((64, 16), (128, 8), (256, 4), (512, 2)))
