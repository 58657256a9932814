"""timm's CSV columns (infer_gmacs, infer_macts) are fvcore's counts: each convention against fvcore itself.

Each module below holds one construct whose fvcore rule differs from a plain count (analysis/traffic.py's table):
our ``timm_units`` of it must equal fvcore's ``FlopCountAnalysis`` / ``ActivationCountAnalysis`` run the way timm's
benchmark.py runs them (eval, a batch of one, ``torch.ones``).
"""

import logging
import warnings

import pytest
import torch
from timm.layers import ScaledStdConv2d
from torch import nn
from torch.nn import functional as F

from salient_analysis.profiling import timm_units
from salient_analysis.traffic import count_traffic


class Interpolate(nn.Module):
    def __init__(self, mode: str) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.mode = mode

    def forward(self, x):
        return F.interpolate(self.conv(x), scale_factor=2, mode=self.mode)


class GridSample(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 1)

    def forward(self, x):
        grid = torch.zeros(x.shape[0], 5, 7, 2, dtype=x.dtype, device=x.device)
        return F.grid_sample(self.conv(x), grid, align_corners=False)


class Recurrent(nn.Module):
    """sequencer's pattern: a bidirectional LSTM over rows, a linear after it."""

    def __init__(self, cell: type) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 6, 1)
        self.rnn = cell(6, 5, batch_first=True, bidirectional=True)
        self.fc = nn.Linear(10, 4)

    def forward(self, x):
        x = self.conv(x)
        b, c, h, w = x.shape
        out, _ = self.rnn(x.permute(0, 2, 3, 1).reshape(b * h, w, c))
        return self.fc(out)


CONSTRUCTS = {
    # convmixer: nn.Conv2d(padding="same") traces to aten::_convolution_mode, which fvcore does not count
    "conv padding same": lambda: nn.Sequential(nn.Conv2d(3, 8, 3, padding="same", groups=1), nn.Conv2d(8, 8, 1)),
    "conv padding valid": lambda: nn.Sequential(nn.Conv2d(3, 8, 3, padding="valid"), nn.ReLU()),
    # nf_resnet / nf_regnet / nfnet: weight standardisation is a training-mode batch_norm over the weight
    "scaled std conv": lambda: nn.Sequential(ScaledStdConv2d(3, 8, 3), ScaledStdConv2d(8, 8, 3, gain_init=0.5)),
    "batch norm eval": lambda: nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.BatchNorm2d(8, affine=False)),
    "group and layer norm": lambda: nn.Sequential(
        nn.Conv2d(3, 8, 3), nn.GroupNorm(2, 8), nn.GroupNorm(2, 8, affine=False)
    ),
    "adaptive pool": lambda: nn.Sequential(nn.Conv2d(3, 8, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 2)),
    # hrnet, coat, segmentation heads: upsampling terms
    "nearest upsample": lambda: Interpolate("nearest"),
    "bilinear upsample": lambda: Interpolate("bilinear"),
    "bicubic upsample": lambda: Interpolate("bicubic"),
    "grid sample": GridSample,
    # sequencer: fvcore has no rule for aten::lstm
    "lstm": lambda: Recurrent(nn.LSTM),
    "gru": lambda: Recurrent(nn.GRU),
}


def fvcore_counts(model: nn.Module, x: torch.Tensor):
    from fvcore.nn import ActivationCountAnalysis, FlopCountAnalysis

    logging.getLogger("fvcore").setLevel(logging.ERROR)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        flops = FlopCountAnalysis(model, x).unsupported_ops_warnings(False)
        acts = ActivationCountAnalysis(model, x).unsupported_ops_warnings(False)
        return flops.total(), acts.total()


@pytest.mark.parametrize("device", ["cpu", "meta"])  # salient-analyze counts on meta; CPU runs other kernels (LSTM)
@pytest.mark.parametrize("construct", sorted(CONSTRUCTS))
def test_timm_units_are_fvcores_counts_as_timms_benchmark_runs_it(construct, device):
    torch.manual_seed(0)
    model = CONSTRUCTS[construct]().eval()
    x = torch.ones(1, 3, 12, 10)
    macs, activations = fvcore_counts(model, x)
    ours = timm_units(count_traffic(model.to(device), x.shape, train=False))
    assert round(ours["infer_gmacs"] * 1e9) == macs
    assert round(ours["infer_macts"] * 1e6) == activations


def test_what_fvcore_cannot_see_stays_in_our_own_count():
    """The CSV convention leaves a padding="same" conv out; gmacs_mm, our count, keeps it."""
    model = nn.Conv2d(3, 8, 3, padding="same").eval()
    ours = timm_units(count_traffic(model, (1, 3, 12, 10), train=False))
    assert ours["infer_gmacs"] == 0
    assert round(ours["gmacs_mm"] * 1e9) == 8 * 12 * 10 * 3 * 9


def fused_and_explicit(attention_class: type) -> tuple:
    """Two eval-mode copies of one timm attention block (16 wide, 2 heads, same weights): fused_attn on, and off."""
    torch.manual_seed(0)
    fused, explicit = attention_class(16, num_heads=2).eval(), attention_class(16, num_heads=2).eval()
    explicit.load_state_dict(fused.state_dict())
    fused.fused_attn, explicit.fused_attn = True, False
    return fused, explicit


@pytest.mark.parametrize("device", ["cpu", "meta"])
def test_fused_attention_counts_as_its_matmuls_on_every_device(device):
    """timm's table counts attention matmuls (fvcore of the unfused block); the fused block (one CPU kernel,
    decomposed on meta) must count the same on CPU as on the meta device salient-analyze uses."""
    from timm.models.vision_transformer import Attention

    fused, unfused = fused_and_explicit(Attention)
    x = torch.ones(1, 6, 16)
    macs, activations = fvcore_counts(unfused, x)
    ours = timm_units(count_traffic(fused.to(device), x.shape, train=False))
    assert round(ours["infer_gmacs"] * 1e9) == macs
    assert round(ours["infer_macts"] * 1e6) == activations


def test_timm_units_count_diff_attention_as_timms_table_and_leave_it_fused():
    """DiffAttention's fused path runs two ``attn @ v`` products, its explicit path (what timm's table counts)
    one: timm's units follow the explicit path, measured by fvcore, and the model keeps its fused setting."""
    from timm.layers import DiffAttention

    from salient_analysis.profiling import count_timm_units

    fused, explicit = fused_and_explicit(DiffAttention)
    x = torch.ones(1, 6, 16)
    macs, activations = fvcore_counts(explicit, x)
    ours = count_timm_units(fused, x.shape)
    assert round(ours["infer_gmacs"] * 1e9) == macs
    assert round(ours["infer_macts"] * 1e6) == activations
    assert fused.fused_attn is True
    from salient_analysis.counting import count_cost

    assert count_cost(fused, x.shape).total.macs > count_cost(explicit, x.shape).total.macs  # one more attn @ v


@pytest.mark.parametrize("model", ["lstm", "attention"])
def test_count_cost_is_the_same_on_cpu_and_meta(model):
    """The same model counts the same whether built with weights (CPU: one LSTM or attention kernel) or on meta."""
    from timm.models.vision_transformer import Attention

    from salient_analysis.counting import count_cost

    torch.manual_seed(0)
    net = Recurrent(nn.LSTM).eval() if model == "lstm" else Attention(16, num_heads=2).eval()
    shape = (1, 3, 12, 10) if model == "lstm" else (1, 6, 16)
    on_cpu = count_cost(net, shape).total
    on_meta = count_cost(net.to("meta"), shape).total
    assert on_cpu.macs == on_meta.macs > 0
