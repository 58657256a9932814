"""salient-analyze as a counter a timm user can trust: --reparam means timm's benchmark.py --reparam, output that
can be pasted (issue 32)."""

import contextlib
import json

import pytest
import timm
import torch
from click.testing import CliRunner
from timm.utils import reparameterize_model

from salient_analysis import counting
from salient_analysis.cli import main
from salient_analysis.counting import count_cost, count_params


def _json(*args):
    result = CliRunner().invoke(main, [*args, "--format", "json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def _timm_folded(name: str, size: int):
    model = reparameterize_model(timm.create_model(name).eval(), inplace=True)
    return count_params(model).params, count_cost(model, (1, 3, size, size)).total


@pytest.mark.parametrize("name", ["repvgg_a0", "mobileone_s0"])
def test_compare_and_flops_reparam_count_what_timms_reparameterize_model_gives(name):
    """The regression that landed once: --reparam counted the unfolded model. Folded counts differ from the
    unfolded ones and equal timm's reparameterize_model counted."""
    params, total = _timm_folded(name, 64)
    plain = _json("compare", "-m", name, "-s", "64")["tables"][0]["rows"]
    folded = _json("compare", "-m", name, "-s", "64", "--reparam")["tables"][0]["rows"]
    assert [r["model"] for r in folded] == [f"{name} (reparam)"]  # only the deploy form, as benchmark.py counts
    assert folded[0]["params"] == params != plain[0]["params"]
    assert folded[0]["MACs"] == total.macs != plain[0]["MACs"]
    flops = _json("flops", "-m", name, "-s", "64", "--reparam")["tables"][0]["rows"][0]
    assert flops["scope"] == "total" and flops["MACs"] == total.macs


def test_fold_bn_folds_what_timms_hooks_leave():
    """--fold-bn goes further than timm's hooks: resnet18's stem BN is folded too, so fewer elementwise ops."""
    reparam = _json("compare", "-m", "salient_resnet18", "-s", "64", "--reparam")["tables"][0]["rows"][0]
    fold_bn = _json("compare", "-m", "salient_resnet18", "-s", "64", "--fold-bn")["tables"][0]["rows"][0]
    assert fold_bn["model"].endswith("(fold-bn)") and fold_bn["elementwise"] < reparam["elementwise"]
    assert fold_bn["params"] < reparam["params"]  # the stem BN's affine and statistics are gone


def test_a_json_document_is_all_that_reaches_stdout_and_nothing_reaches_stderr():
    for args in (("compare", "-m", "resnet18,resnet26", "-s", "32"), ("flops", "-m", "resnet18", "-s", "32")):
        result = CliRunner().invoke(main, [*args, "--format", "json"])  # click keeps stdout and stderr apart
        assert result.exit_code == 0
        json.loads(result.stdout)
        assert result.stderr == ""


def test_every_column_says_its_unit_and_a_wide_table_folds_to_100_columns():
    result = CliRunner().invoke(main, ["compare", "-m", "resnet18", "-a", "none,salient", "-s", "32"])
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert max(len(line) for line in lines if not line.startswith(("Convention", "  ", "FLOPs ratio is"))) <= 100
    assert "infer_gmacs [GMACs/img]" in result.stdout and "MACs [count]" in result.stdout
    assert result.stdout.count("\nmodel ") >= 2  # folded: each part repeats the first column
    data = _json("compare", "-m", "resnet18", "-s", "32")
    assert data["tables"][0]["units"]["infer_macts"] == "M acts/img"


def test_params_without_attention_is_one_column_and_a_typo_names_the_closest_three():
    rows = _json("params", "-m", "resnet18")["tables"][0]
    assert rows["columns"] == ["part", "params"]
    result = CliRunner().invoke(main, ["params", "-m", "convnext_tin"])
    assert result.exit_code == 1 and "did you mean convnext_tiny, convnext_tiny_hnf, convnextv2_tiny?" in result.output


class _Sequence(torch.nn.Module):
    """An LSTM over the rows of a conv's feature map, as sequencer2d's blocks run it."""

    def __init__(self, **lstm) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 6, 1)
        self.rnn = torch.nn.LSTM(6, 5, **lstm)

    def forward(self, x):
        x = self.conv(x).flatten(2)  # (B, C, L)
        x = x.permute(0, 2, 1) if self.rnn.batch_first else x.permute(2, 0, 1)
        out, (h, c) = self.rnn(x)
        return out.sum() + h.sum() + c.sum()


LSTM_SHAPES = {
    "plain": {},
    "batch first, 2 layers, bidirectional": dict(batch_first=True, num_layers=2, bidirectional=True),
    "no bias, projected": dict(bias=False, proj_size=3),
    "bidirectional, projected, 3 layers, dropout": dict(num_layers=3, bidirectional=True, proj_size=2, dropout=0.5),
}


def _cost_by_step(model, shape, monkeypatch):
    """The count torch's own per-step decomposition gives (the all-steps rule switched off)."""
    with monkeypatch.context() as patch:
        patch.setattr(counting, "AllStepsLSTM", contextlib.nullcontext)
        return count_cost(model, shape)


@pytest.mark.parametrize("lstm", LSTM_SHAPES.values(), ids=LSTM_SHAPES)
def test_an_lstm_on_meta_counts_as_its_step_by_step_decomposition(lstm, monkeypatch):
    """The all-steps rule (issue 32: sequencer2d_s counted in twice fvcore's time) changes no count: every op,
    module and uncounted op as the ~11 ops per step give them."""
    model = _Sequence(**lstm).to("meta")
    shape = (2, 3, 4, 5)
    fast, by_step = count_cost(model, shape), _cost_by_step(model, shape, monkeypatch)
    assert fast.total.macs > 0 and fast.total.elementwise > 0
    assert fast.modules == by_step.modules and fast.uncounted_ops == by_step.uncounted_ops


def test_sequencer_counts_as_its_decomposition_in_a_fraction_of_the_ops(monkeypatch):
    model = timm.create_model("sequencer2d_s", layers=(1, 1, 1, 1), num_classes=7).to("meta")
    shape = (1, 3, 64, 64)
    calls = []
    with monkeypatch.context() as patch:
        patch.setattr(counting, "_OpSpy", _CallCounter(calls, counting._OpSpy))
        fast = count_cost(model, shape)
    by_step = _cost_by_step(model, shape, monkeypatch)
    assert fast.modules == by_step.modules and fast.total.macs > 0
    assert calls[0] < 1000  # by step: about 11 per LSTM step and direction


class _CallCounter:
    """Wraps the op spy so the test sees how many ops the count dispatched."""

    def __init__(self, calls, spy) -> None:
        self.calls, self.spy = calls, spy

    def __call__(self, seen):
        calls = self.calls
        calls.append(0)

        class Counting(self.spy):
            def __torch_dispatch__(self, func, types, args=(), kwargs=None):
                calls[-1] += 1
                return super().__torch_dispatch__(func, types, args, kwargs)

        return Counting(seen)
