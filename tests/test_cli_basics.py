"""The salient-analyze entry point answers --help and --version, and rejects unknown commands."""

import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

import salient_timm
from salient_analysis.cli import main


def test_help_and_version():
    runner = CliRunner()
    result = runner.invoke(main, ["--help"])
    assert result.exit_code == 0 and "Usage: salient-analyze" in result.output.replace("main", "salient-analyze")
    result = runner.invoke(main, ["--version"])
    assert result.exit_code == 0 and salient_timm.__version__ in result.output


def test_unknown_command_exits_nonzero():
    result = CliRunner().invoke(main, ["frobnicate"])
    assert result.exit_code == 2 and "No such command 'frobnicate'" in result.output


def test_console_script_is_installed():
    exe = Path(sys.executable).parent / "salient-analyze"
    assert exe.exists(), "salient-analyze is not installed beside this Python: pip install ."
    out = subprocess.run([str(exe), "--version"], capture_output=True, text=True, check=True).stdout
    assert out.strip() == f"salient-analyze, version {salient_timm.__version__}"


def test_salient_analyze_takes_salient_trains_img_size_name():
    """salient-train says --img-size, salient-analyze --input-size (timm has both): analyze takes both."""
    runner = CliRunner()
    by_size = runner.invoke(main, ["flops", "-m", "resnet18", "--input-size", "32", "--no-crosscheck", "-f", "json"])
    by_img = runner.invoke(main, ["flops", "-m", "resnet18", "--img-size", "32", "--no-crosscheck", "-f", "json"])
    assert by_size.exit_code == by_img.exit_code == 0 and by_size.stdout == by_img.stdout


def test_surgery_errors_tell_a_command_line_user_what_they_can_do():
    runner = CliRunner()
    filled = runner.invoke(main, ["params", "-m", "seresnet50", "--attn", "salient"])
    assert filled.exit_code != 0 and "choose the other position (--position mid)" in filled.output
    assert "without attention (e.g. resnet50" in filled.output
    ge = runner.invoke(main, ["params", "-m", "resnet18", "--attn", "ge"])
    assert ge.exit_code != 0 and "cannot pass it arguments, so use it from Python" in ge.output


def test_help_and_version_answer_without_loading_torch_timm_or_fvcore():
    """Start-up: --help and --version (the group's and a command's) import only click and the renderer."""
    code = (
        "import sys\n"
        "from salient_analysis.cli import main\n"
        "for args in (['--help'], ['--version'], ['profile', '--help']):\n"
        "    try:\n"
        "        main(args)\n"
        "    except SystemExit as e:\n"
        "        assert e.code == 0, (args, e.code)\n"
        "print(sorted(m for m in ('torch', 'timm', 'fvcore', 'salient_timm') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "[]"


def test_the_kinds_named_in_the_help_are_kinds():
    from salient_analysis.cli import HELP_KINDS

    assert set(HELP_KINDS) <= set(salient_timm.attention_kinds())


@pytest.mark.parametrize("name, reason", [("bogus", "unknown device"), ("xla", "unknown device"), ("cuda:7", "CUDA")])
def test_an_unusable_device_is_refused_with_the_valid_names(name, reason):
    import torch

    from salient_timm.checks import DeviceError, usable_device

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(DeviceError, match=reason) as error:
        usable_device(name)
    assert "\n" not in str(error.value)
    if reason == "unknown device":
        assert str(error.value).endswith("valid: cpu, cuda, cuda:N, mps")


def test_both_tools_refuse_a_bad_device_with_the_same_one_line_reason(tmp_path):
    """One device check for salient-train and salient-analyze profile: the same reason, no traceback."""
    reason = "unknown device 'bogus'; valid: cpu, cuda, cuda:N"
    train = subprocess.run(
        [sys.executable, "-m", "salient_timm.train", "-m", "resnet18", "--dataset", "digits"]
        + ["--device", "bogus", "--out", str(tmp_path / "r")],
        capture_output=True,
        text=True,
    )
    assert train.returncode != 0 and "Traceback" not in train.stderr and reason + ", mps" in train.stderr
    profile = CliRunner().invoke(main, ["profile", "-m", "resnet18", "--device", "bogus"])
    assert profile.exit_code == 2 and reason in profile.output and "mps" not in profile.output
