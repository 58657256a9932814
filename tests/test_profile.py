"""salient-analyze profile: bytes, saved memory and training FLOPs match hand counts; reports add up.

Hand counts use fp32 (4 bytes) and input zeros of shape (N, C_in, H, W) = (2, 4, 5, 5); the conv is
Conv2d(4, 8, 3, padding=1, bias=False), so its output is (2, 8, 5, 5) = 400 values.
"""

import json

import pytest
import timm
import torch
from click.testing import CliRunner
from torch import nn

from salient_analysis.cli import main
from salient_analysis.crosscheck import fvcore_activations
from salient_analysis.profiling import (
    ModelProfile,
    ProfileOptions,
    ScopeCost,
    profile_models,
    profile_steps,
    timm_units,
    trust_warnings,
)
from salient_analysis.spec import AnalysisTarget
from salient_analysis.timing import Peaks, remeasured
from salient_analysis.traffic import count_traffic
from salient_timm import SalientBlock, inject_attention

N, C_IN, C, H, W = 2, 4, 8, 5, 5
X, OUT, WEIGHT = N * C_IN * H * W, N * C * H * W, C * C_IN * 9  # 200, 400, 288 values
B = 4  # bytes per fp32 value


def _conv() -> nn.Conv2d:
    return nn.Conv2d(C_IN, C, 3, padding=1, bias=False)


@pytest.mark.parametrize("device", ["cpu", "meta"])
def test_conv_bytes_saved_bytes_and_training_macs_by_hand(device):
    with torch.device(device):
        model = nn.Sequential(_conv(), nn.ReLU())  # ReLU: the conv's output gradient is a full tensor
    conv = count_traffic(model, (N, C_IN, H, W)).module("0")
    assert conv.forward.macs == OUT * C_IN * 9
    assert (conv.forward.read, conv.forward.written) == ((X + WEIGHT) * B, OUT * B)
    assert conv.saved_bytes == X * B  # its input; the weight is a parameter, not activation memory
    # backward: the weight gradient only (the model input needs no gradient): reads dy, x and w, writes dw
    assert conv.backward.macs == OUT * C_IN * 9
    assert (conv.backward.read, conv.backward.written) == ((OUT + X + WEIGHT) * B, WEIGHT * B)


class _ProductInto(nn.Module):
    """``x * x`` written into a buffer the module made (an ``out=`` op, as the fused gate's backward writes dx)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.mul(x, x, out=torch.empty_like(x))


def test_an_out_tensor_counts_as_written_not_read():
    """Bytes of ``torch.mul(x, x, out=buf)``: x read (its two uses are one tensor each), buf written once."""
    op = count_traffic(_ProductInto(), (N, C, H, W), train=False).by_op["aten::mul (forward)"]
    assert (op.read, op.written) == (2 * OUT * B, OUT * B)


@pytest.mark.parametrize("groups", [1, 4, 16])  # dense, grouped, depthwise
def test_conv_backward_costs_the_forward_multiplies_per_gradient_for_any_groups(groups):
    """Per layer, by hand: the first conv needs only its weight gradient (its input is data), the second its weight
    and input gradients, each as many multiplies as the forward. (torch's counter: dense for the weight gradient,
    i.e. ``groups`` times too many.)"""
    model = nn.Sequential(*(nn.Conv2d(16, 16, 3, padding=1, groups=groups, bias=False) for _ in range(2)))
    step = count_traffic(model, (2, 16, 8, 8))
    forward_per_conv = 2 * 16 * 8 * 8 * (16 // groups) * 9
    assert step.module("0").forward.macs == step.module("1").forward.macs == forward_per_conv
    assert step.module("0").backward.macs == forward_per_conv
    assert step.module("1").backward.macs == 2 * forward_per_conv


def test_a_grouped_resnet_trains_at_about_three_times_its_forward():
    """resnext50_32x4d (the base of salient_resnext50_32x4d): a training step is forward + two backward products,
    less the stem's input gradient; torch's dense rule made it 4.65x."""
    step = count_traffic(timm.create_model("resnext50_32x4d").to("meta"), (2, 3, 224, 224))
    assert 2.9 < step.total.backward.macs / step.total.forward.macs + 1 <= 3.0


def test_batch_norm_saved_bytes_and_training_ops_by_hand():
    model = nn.Sequential(_conv(), nn.BatchNorm2d(C), nn.ReLU())
    bn = count_traffic(model, (N, C_IN, H, W)).module("1")
    assert bn.forward.macs == 0 and bn.forward.elementwise >= OUT  # normalise every value (+1 for the batch counter)
    # saved: its input (the conv's output) and the per-channel batch mean and inverse std
    assert bn.saved_bytes == OUT * B + 2 * C * B
    assert bn.backward.elementwise == OUT  # one gradient value per input element
    assert bn.backward.written >= OUT * B


def test_salient_gate_counts_by_hand_follow_the_literal_block_per_module_and_the_fused_path_as_run():
    """Per-module rows come from a pass under a module tracker (a global hook): the gate runs as the literal block
    there, conv included. The as-run step, untracked, is the fused path: it keeps the gate's input and its map."""
    model = nn.Sequential(_conv(), SalientBlock(C), nn.ReLU())
    report = count_traffic(model, (N, C_IN, H, W))
    gate = report.module("1")
    hw = N * H * W
    assert gate.forward.macs == OUT  # the C->1 conv: C multiply-adds per pixel
    assert gate.backward.macs == 2 * OUT  # its input and weight gradients
    assert gate.forward.written >= OUT * B  # the gated product itself
    plain = count_traffic(nn.Sequential(_conv(), nn.ReLU()), (N, C_IN, H, W))
    assert report.as_run.saved_bytes - plain.as_run.saved_bytes == OUT * B + hw * B  # x, and the saliency map


def test_inference_counts_save_nothing_and_match_count_cost():
    from salient_analysis.counting import count_cost

    model = timm.create_model("resnet18", num_classes=10)
    inject_attention(model, "salient")
    infer = count_traffic(model, (1, 3, 32, 32), train=False)
    assert infer.total.saved_bytes == 0 and infer.total.backward.flops == 0
    cost = count_cost(model, (1, 3, 32, 32))
    assert (infer.total.forward.macs, infer.total.forward.elementwise) == (cost.total.macs, cost.total.elementwise)


@pytest.mark.parametrize("name, attn", [("resnet18", "salient"), ("resnet26", "se"), ("resnet18", "ssa")])
def test_activation_count_matches_fvcore(name, attn):
    model = timm.create_model(name, num_classes=10)
    inject_attention(model, attn)
    ours = count_traffic(model, (2, 3, 32, 32), train=False).total.activations
    assert ours == fvcore_activations(model, (2, 3, 32, 32))


def test_timm_units_reproduce_timms_published_resnet50_activations():
    """timm's benchmark CSV lists resnet50 at 224 px with infer_macts 11.11 (and infer_gmacs 4.11)."""
    units = timm_units(count_traffic(AnalysisTarget("resnet50").build("meta"), (1, 3, 224, 224), train=False))
    assert round(units["infer_macts"], 2) == 11.11
    assert abs(units["infer_gmacs"] - 4.11) < 0.03


def test_stage_rows_add_up_to_the_total_and_attention_rows_are_inside_their_blocks():
    spec = AnalysisTarget("resnet18", attn="salient", cifar_stem=True, input_size=(3, 16, 16), batch=2)
    profiles, peaks = profile_models(spec, ProfileOptions(measure=False))
    assert peaks is None
    for p in profiles:
        stages = [s for s in p.scopes if s.kind == "stage"]
        for metric in ("flops", "bytes", "saved"):
            assert sum(getattr(s, metric) for s in stages) == getattr(p.total, metric)
    variant = profiles[-1]
    for gate in (s for s in variant.scopes if s.kind == "attention"):
        block = variant.scope(gate.name.rsplit(".", 1)[0])
        assert 0 < gate.flops < block.flops and 0 < gate.saved < block.saved
    base = profiles[0]  # the gate is what the variant adds: saved memory and bytes grow, FLOPs barely
    assert variant.total.saved > base.total.saved and variant.total.bytes > base.total.bytes


def _profile_json(*args: str) -> dict:
    """``salient-analyze profile`` of resnet18 + salient at 16 px, batch 2, no warm-up, as parsed JSON."""
    command = [
        "profile",
        "-m",
        "resnet18",
        "-a",
        "salient",
        "-s",
        "16",
        "-b",
        "2",
        "--warmup",
        "0",
        *args,
        "-f",
        "json",
    ]
    result = CliRunner().invoke(main, command)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_profile_command_measures_and_plots(tmp_path):
    figure = tmp_path / "profile.png"
    data = _profile_json("--cifar-stem", "--repeats", "2", "--plot", str(figure))
    attention, stages, blocks, step = data["tables"]
    assert [r["block"] for r in attention["rows"]][-1] == "all attention" and len(attention["rows"]) == 9
    assert all(r["ms"] > 0 and 0 < r["% time"] < 100 for r in attention["rows"])
    assert [r["model"] for r in step["rows"]] == ["resnet18", "resnet18+salient"]
    assert all(r["step ms"] > 0 and r["peak MB (measured)"] > 0 for r in step["rows"])
    assert figure.stat().st_size > 10_000


@pytest.mark.parametrize(
    "args, message",
    [
        (["--device", "bogus"], "unknown device 'bogus'; valid: cpu, cuda, cuda:N"),
        (["--peak-gflops", "100"], "give both --peak-gflops and --bandwidth-gbs"),
        (["--plot", "x.png", "--no-measure"], "drop --no-measure"),
        (["--plot", "x.svg"], "end --plot with .png or .pdf"),
    ],
)
def test_profile_rejects_bad_options_in_one_line(args, message):
    result = CliRunner().invoke(main, ["profile", "-m", "resnet18", "-s", "16", *args])
    assert result.exit_code == 2 and message in result.output and "Traceback" not in result.output


def test_given_peaks_set_the_roofline():
    data = _profile_json("--repeats", "1", "--peak-gflops", "100", "--bandwidth-gbs", "10")
    gate = data["tables"][0]["rows"][0]
    expected_ms = 1e3 * max(gate["FLOPs"] / 100e9, gate["MB moved"] * 1e6 / 10e9)
    assert gate["roofline ms"] == pytest.approx(expected_ms)
    assert any("as given" in n for n in data["notes"])


def test_compare_has_counted_bytes_and_saved_memory_columns():
    """Training memory as training runs it: the fused Salient/SSA epilogue keeps only its (N, 1, H, W) maps beyond
    the plain ResNet (here Salient +0.1 %, SSA +1.8 % with its (N, C) channel weights); SE keeps a full-size tensor
    per block (+16 %)."""
    result = CliRunner().invoke(
        main, ["compare", "-m", "resnet18", "-a", "none,salient,ssa,se", "-s", "32", "-b", "2", "-f", "json"]
    )
    assert result.exit_code == 0, result.output
    base, salient, ssa, se = json.loads(result.stdout)["tables"][0]["rows"]
    for gated in (salient, ssa):
        assert base["train saved MB"] < gated["train saved MB"] < 1.03 * base["train saved MB"]
    assert se["train saved MB"] > 1.1 * base["train saved MB"]
    assert salient["MB moved"] > base["MB moved"] > 0 and salient["infer_macts"] > base["infer_macts"]


def test_counting_a_training_step_leaves_the_model_as_it_was():
    """No BatchNorm statistic moved, no gradient left, train/eval flags kept, on a real device."""
    from salient_analysis.traffic import count_traffic
    from salient_timm import ModelSpec

    model = ModelSpec("resnet18", attn="salient", num_classes=10).build().eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    count_traffic(model, (2, 3, 32, 32), train=True)
    assert not model.training and all(p.grad is None for p in model.parameters())
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), key


def _compare_rows(*args):
    result = CliRunner().invoke(main, ["compare", "-m", "resnet18", "-a", "none,salient", "-f", "json", *args])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_training_columns_at_batch_one_are_counted_at_batch_two_per_image_and_say_so():
    """At 32 px resnet18's layer4 map is 1x1: batch 1 cannot train its BatchNorm, but a count does not run the step."""
    data = _compare_rows("-s", "32")
    at_two = _compare_rows("-s", "32", "-b", "2")
    for row, row2 in zip(data["tables"][0]["rows"], at_two["tables"][0]["rows"]):
        assert row["train saved MB"] == pytest.approx(row2["train saved MB"] / 2)
        assert row["train MB moved"] == pytest.approx(row2["train MB moved"] / 2)
    assert any("counted at batch 2 and halved" in n for n in data["notes"])
    assert not any("batch 2" in n for n in at_two["notes"])


def test_a_profile_whose_step_cannot_train_says_why_in_one_line():
    result = CliRunner().invoke(main, ["profile", "-m", "resnet18", "-s", "32", "--no-measure"])
    assert result.exit_code == 1 and "use a batch size of 2 or more" in result.output
    assert "Traceback" not in result.output


def test_profile_figure_uses_its_whole_area_and_its_legend_covers_no_bar():
    from salient_analysis.profile_plot import METRICS, profile_figure

    spec = AnalysisTarget("resnet18", attn="salient", cifar_stem=True, input_size=(3, 16, 16), batch=2)
    profiles, _ = profile_models(spec, ProfileOptions(measure=False))
    fig = profile_figure(profiles, None)
    fig.canvas.draw()
    *bars, roofline = fig.axes
    assert len(bars) == len(METRICS) and all(ax.axison for ax in fig.axes)  # before: 2 of 3 right panels empty
    top = bars[0]
    assert roofline.get_position().height > 0.6 * (top.get_position().y1 - bars[-1].get_position().y0)
    renderer = fig.canvas.get_renderer()
    legend = top.get_legend().get_window_extent(renderer)
    assert legend.y0 >= top.get_window_extent(renderer).y1 - 1  # above the panel, not over its bars


@pytest.mark.slow  # a whole salient-analyze process measuring a model, about 12 s
def test_a_cpu_profile_prints_progress_and_no_profiler_noise():
    """stderr holds our progress and warnings only: none of kineto's "gpuGetDeviceCount failed" (CPU-only machine,
    CUDA build of torch) or "USDT: profiler_start" lines."""
    import subprocess
    import sys
    from pathlib import Path

    exe = Path(sys.executable).parent / "salient-analyze"
    args = ["profile", "-m", "resnet18", "-a", "salient", "-s", "16", "--cifar-stem", "-b", "2", "--repeats", "1"]
    result = subprocess.run([str(exe), *args], capture_output=True, text=True, timeout=1200)
    assert result.returncode == 0
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines and lines[0].startswith("profiling")  # the progress bar (its label alone when not a terminal)
    assert all(line.startswith(("profiling", "warning: ")) for line in lines), result.stderr


def _measured(label, step_ms, spread_ms, total_bytes, block_ms, block_bytes):
    """A measured profile with one residual block: only what ``trust_warnings`` reads."""
    scopes = [
        ScopeCost("layer1.0", "block", 10, block_bytes, 0, seconds=block_ms / 1e3),
        ScopeCost(
            "total",
            "total",
            100,
            total_bytes,
            0,
            seconds=step_ms / 1e3,
            spread=(spread_ms[0] / 1e3, spread_ms[1] / 1e3),
        ),
    ]
    return ModelProfile(label, None, scopes, step_ms / 1e3, scopes[-1].spread, None, {})


QUIET = Peaks(100e9, 20e9, drift=0.05)


def test_a_steady_measurement_draws_no_warning():
    base = _measured("resnet18", 100, (96, 104), 1000, 10, 100)
    variant = _measured("resnet18+salient", 112, (108, 118), 1200, 13, 130)  # time follows bytes
    assert trust_warnings([base, variant], QUIET) == []


@pytest.mark.parametrize(
    "variant, peaks, sign",
    [
        (_measured("v", 89, (86, 93), 1200, 13, 130), QUIET, "0.89x its base's although it moves 1.20x the bytes"),
        (_measured("v", 112, (108, 300), 1200, 13, 130), QUIET, "v's step times spread 108.0-300.0 ms (2.8x)"),
        (_measured("v", 112, (108, 118), 1200, 13, 130), Peaks(100e9, 20e9, drift=0.4), "peak changed by 40%"),
        (_measured("v", 112, (108, 118), 1200, 68, 130), QUIET, "worst layer1.0: 6.8x the time for 1.30x the bytes"),
    ],
    ids=["variant-faster-than-base", "step-spread", "peaks-drift", "block-slower-than-its-bytes"],
)
def test_each_sign_of_a_busy_machine_is_named(variant, peaks, sign):
    """The newcomer's case: a variant step at 0.89x its base and blocks 6.8x slower, printed with no word."""
    base = _measured("resnet18", 100, (96, 104), 1000, 10, 100)
    warnings = trust_warnings([base, variant], peaks)
    assert len(warnings) == 2 and sign in warnings[0] and "rerun alone" in warnings[1]


def test_peaks_measured_twice_keep_the_better_and_their_drift():
    peaks = remeasured(Peaks(80e9, 20e9), Peaks(100e9, 10e9))
    assert (peaks.flops_per_s, peaks.bytes_per_s, peaks.drift) == (100e9, 20e9, 0.5)


def test_progress_counts_every_step_it_announces():
    spec = AnalysisTarget("resnet18", attn="salient", cifar_stem=True, input_size=(3, 16, 16), batch=2)
    options = ProfileOptions(repeats=2, warmup=1)
    seen = []
    profile_models(spec, options, progress=seen.append)
    assert len(seen) == profile_steps(spec, options) == 2 + 2 + 3 + 2
    assert seen[0] == "counted resnet18" and "timing round 3/3" in seen


def _peer_rows():
    import csv
    from pathlib import Path

    lines = (Path(__file__).parent / "data" / "timm_benchmark_infer.csv").read_text().splitlines()
    return list(csv.DictReader(line for line in lines if not line.startswith("#")))


@pytest.mark.parametrize("row", _peer_rows(), ids=lambda r: f"{r['model']}@{r['infer_img_size']}")
def test_compare_reproduces_timms_published_benchmark_table(row):
    """params, infer_gmacs and infer_macts to the table's 2 decimals: timm's benchmark.py convention (fvcore's norm
    and pooling terms on top of the MACs), attention matmuls counted, ``--reparam`` as ``benchmark.py --reparam``."""
    from salient_analysis.reports import compare_report

    size = int(row["infer_img_size"])
    reparam = row["reparam"] == "1"
    target = AnalysisTarget(row["model"], input_size=(3, size, size))
    report = compare_report([target], reparam="timm" if reparam else None)
    ours = report.tables[0].rows[-1]  # with --reparam: the folded row
    assert ours["model"].endswith("(reparam)") == reparam
    assert f"{ours['params'] / 1e6:.2f}" == f"{float(row['param_count']):.2f}"
    assert f"{ours['infer_gmacs']:.2f}" == f"{float(row['infer_gmacs']):.2f}"
    assert f"{ours['infer_macts']:.2f}" == f"{float(row['infer_macts']):.2f}"


def test_the_fvcore_cross_check_names_the_attention_it_skips():
    """fvcore on today's timm skips scaled_dot_product_attention (4.25 of a ViT's 4.61 GMACs): say so, and count
    the softmax ourselves."""
    result = CliRunner().invoke(main, ["flops", "-m", "deit_tiny_patch16_224", "--crosscheck", "-f", "json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    skipped = [note for note in data["notes"] if note.startswith("fvcore skipped")]
    assert skipped and "scaled_dot_product_attention 12" in skipped[0]
    assert not any(note.startswith("ops not counted") and "softmax" in note for note in data["notes"])
