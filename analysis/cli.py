"""``salient-analyze``: thin click commands over ``salient_analysis.reports`` (presentation only).

Start-up: this module imports only click and the renderer, so ``--help`` and ``--version`` answer without
loading torch, timm or fvcore; each command imports the counting it needs when it runs.
"""

import functools
import os
import sys
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Callable, List, Optional, Tuple

import click

from .render import FORMATS, Report, render

if TYPE_CHECKING:
    import salient_timm

    from .spec import AnalysisTarget

# Kinds named in --attn's help (the rest are listed by the one-line error an unknown name gets).
HELP_KINDS = ("none", "salient", "ssa", "se")


def _version() -> str:
    try:
        return version("salient-timm")
    except PackageNotFoundError:  # run from a source tree without installing: the package's own fallback
        import salient_timm

        return salient_timm.__version__


def _user_errors() -> Tuple[type, ...]:
    """Errors that mean "bad input": shown as one line, exit code 1. Every project error is a SalientError; any
    other exception is a bug and keeps its traceback."""
    import salient_timm

    return (salient_timm.SalientError,)


class InputSize(click.ParamType):
    """``32``, ``HxW`` or ``CxHxW``."""

    name = "SIZE"

    def convert(self, value, param, ctx) -> Tuple[int, int, int]:
        from .spec import SpecError, parse_input_size

        if isinstance(value, tuple):
            return value
        try:
            return parse_input_size(value)
        except SpecError as e:
            self.fail(str(e), param, ctx)


def _split(value: str) -> List[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


def spec_options(multi: bool = False, maps: bool = False) -> Callable:
    """The model-spec options every command shares (``multi``: comma-separated --model/--attn lists;
    ``maps``: --model optional (a salient-train checkpoint names it), the size default from the model, no batch)."""

    def decorate(fn: Callable) -> Callable:
        options = [
            click.option(
                "--model",
                "-m",
                required=not maps,
                help="timm model name (ours included)"
                + (", comma-separated list" if multi else "")
                + (" (optional with a salient-train checkpoint)" if maps else ""),
            ),
            click.option(
                "--attn",
                "-a",
                default="none",
                show_default=True,
                help=f"attention to inject: {'|'.join(HELP_KINDS)}|..." + (" (comma-separated list)" if multi else ""),
            ),
            click.option(
                "--position",
                type=click.Choice(["post", "mid"]),
                default="post",
                show_default=True,
                help="post: before the shortcut add (seed); mid: after the 3x3 conv",
            ),
            click.option(
                "--attn-stages",
                default=None,
                metavar="N,N,...",
                help="the residual stages that get --attn, numbered from 1 (e.g. 1,2)  [default: all]",
            ),
            click.option(
                "--num-classes",
                type=click.IntRange(min=0),
                default=None,
                help="classifier size (default: the model's, 1000)",
            ),
            click.option("--cifar-stem", is_flag=True, help="3x3 stride-1 stem without max-pool"),
            click.option(
                "--input-size",
                "--img-size",  # salient-train's (and timm's train.py) name for the side S
                "-s",
                "input_size",
                type=InputSize(),
                default=None if maps else "224",
                show_default=not maps,
                help="S, HxW or CxHxW (--img-size S, as in salient-train)"
                + ("  [default: the model's (a checkpoint's: its training size)]" if maps else ""),
            ),
        ]
        if not maps:
            options.append(
                click.option(
                    "--batch-size",
                    "-b",
                    "batch",
                    type=click.IntRange(min=1),
                    default=1,
                    show_default=True,
                    help="batch size of the counted forward pass",
                )
            )
        return functools.reduce(lambda f, opt: opt(f), reversed(options), fn)

    return decorate


format_option = click.option("--format", "-f", "fmt", type=click.Choice(FORMATS), default="table", show_default=True)
checkpoint_option = click.option(
    "--checkpoint",
    "-c",
    default=None,
    type=click.Path(exists=True, dir_okay=False),
    help="salient-train checkpoint (best.pth/last.pth, its own options) or a weights file for --model",
)


def _check_output(path: Optional[str], hint: str, figure: bool = False) -> None:
    """A file to write: its folder must exist; a figure is PNG or PDF (one-line usage errors)."""
    if not path:
        return
    if figure and not path.lower().endswith((".png", ".pdf")):
        raise click.BadParameter(f"the figure is written as PNG or PDF: end {hint} with .png or .pdf", param_hint=hint)
    if not os.path.isdir(os.path.dirname(os.path.abspath(path))):
        raise click.BadParameter(f"folder {os.path.dirname(path)!r} does not exist; create it first", param_hint=hint)


def _optional_spec(
    model, attn, position, attn_stages, num_classes, cifar_stem, input_size
) -> Optional["salient_timm.ModelSpec"]:
    """The model options of ``maps`` / ``export`` as a build spec (None without --model: a checkpoint names it)."""
    import salient_timm

    from .spec import check_model_name

    if not model:
        return None
    check_model_name(model)
    return salient_timm.ModelSpec(
        model,
        attn=attn,
        position=position,
        attn_stages=attn_stages,
        num_classes=num_classes,
        cifar_stem=cifar_stem,
        in_chans=input_size[0] if input_size else 3,
    )


def _emit(build: Callable[[], Report], fmt: str) -> None:
    try:
        report = build()
    except _user_errors() as e:
        raise click.ClickException(str(e)) from e
    click.echo(render(report, fmt))


def _spec(model, attn, position, attn_stages, num_classes, cifar_stem, input_size, batch) -> "AnalysisTarget":
    from .spec import AnalysisTarget

    try:
        return AnalysisTarget(model, attn, position, num_classes, cifar_stem, input_size, batch, attn_stages)
    except _user_errors() as e:
        raise click.ClickException(str(e)) from e


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(_version(), prog_name="salient-analyze")
def main() -> None:
    """Count parameters, FLOPs and size of attention add-ons on ResNets, and check the seed's claims.

    The seed is the SalientNet design note this project reproduces: it proposes the Salient block and
    states its parameter counts, cost formulas, sizes and accuracies, which `reproduce` checks one by one.

    Every command takes --format table|markdown|json|csv (JSON schema: see salient_analysis.render).
    """


@main.command()
@spec_options()
@format_option
def params(fmt, **spec) -> None:
    """Parameters: base, variant and added, per stage."""
    from . import reports

    _emit(lambda: reports.params_report(_spec(**spec)), fmt)


REPARAM_HELP = (
    "count the model as timm's benchmark.py --reparam does: folded by timm.utils.reparameterize_model, each "
    "module's own fuse/reparameterize hook (our ResNet blocks fold there, the Salient gate a 1-channel conv); "
    "what timm's published CSV counts"
)
FOLD_BN_HELP = (
    "as --reparam, then every conv + BatchNorm pair the hooks leave folded too (salient_timm.reparameterize: "
    "a deployment's count, below timm's CSV where it keeps BatchNorms)"
)


def _folding(reparam: bool, fold_bn: bool) -> Optional[str]:
    return "fold-bn" if fold_bn else "timm" if reparam else None


@main.command()
@spec_options()
@click.option("--per-block", is_flag=True, help="also one row per residual block and attention module")
@click.option("--crosscheck", is_flag=True, help="also run fvcore and thop on the model and list what each leaves out")
@click.option("--no-crosscheck", is_flag=True, hidden=True)  # the default now; kept so old command lines run
@click.option("--reparam", is_flag=True, help=REPARAM_HELP)
@click.option("--fold-bn", is_flag=True, help=FOLD_BN_HELP)
@format_option
def flops(fmt, per_block, crosscheck, no_crosscheck, reparam, fold_bn, **spec) -> None:
    """Full op count (MACs, elementwise ops, FLOPs); --crosscheck adds fvcore's and thop's totals."""
    from . import reports

    report = functools.partial(
        reports.flops_report,
        per_block=per_block,
        crosscheck=crosscheck and not no_crosscheck,
        reparam=_folding(reparam, fold_bn),
    )
    _emit(lambda: report(_spec(**spec)), fmt)


@main.command()
@spec_options()
@format_option
def size(fmt, **spec) -> None:
    """Parameter/buffer counts, bytes at fp32/fp16/bf16, torch.save and safetensors file sizes."""
    from . import reports

    _emit(lambda: reports.size_report(_spec(**spec)), fmt)


@main.command()
@spec_options(multi=True)
@click.option("--reparam", is_flag=True, help=REPARAM_HELP)
@click.option("--fold-bn", is_flag=True, help=FOLD_BN_HELP)
@format_option
def compare(fmt, model, attn, reparam, fold_bn, **rest) -> None:
    """Several models x attention kinds side by side (comma-separated --model and --attn)."""
    from . import reports

    specs = [_spec(m, a, **rest) for m in _split(model) for a in _split(attn)]
    if not specs:
        raise click.BadParameter("give at least one model and one attention kind", param_hint="--model/--attn")
    folding = _folding(reparam, fold_bn)
    if fmt != "table" or len(specs) == 1:  # a document on stdout, nothing else; one model needs no progress bar
        _emit(lambda: reports.compare_report(specs, reparam=folding), fmt)
        return
    with click.progressbar(length=len(specs), label="counting", file=sys.stderr) as bar:
        _emit(lambda: reports.compare_report(specs, progress=lambda _: bar.update(1), reparam=folding), fmt)


@main.command()
@spec_options()
@format_option
def formula(fmt, **spec) -> None:
    """One row per attention block: the seed's formula, the full formula, and the measured count."""
    from . import reports

    _emit(lambda: reports.formula_report(_spec(**spec)), fmt)


@main.command()
@format_option
def reproduce(fmt) -> None:
    """Every numeric claim of the seed (the SalientNet design note this project reproduces): measured
    value and verdict in a table, the whole measurement and the reason below it."""
    from . import reports
    from .claims import SEED_CLAIMS

    with click.progressbar(length=len(SEED_CLAIMS), label="checking claims", file=sys.stderr) as bar:
        _emit(lambda: reports.reproduce_report(progress=lambda _: bar.update(1)), fmt)


@main.command()
@spec_options()
@click.option(
    "--train/--infer",
    default=True,
    show_default=True,
    help="a training step (forward + backward) or an inference forward",
)
@click.option("--device", default="cpu", show_default=True, help="where to measure: cpu, cuda or cuda:N")
@click.option("--repeats", type=click.IntRange(min=1), default=5, show_default=True, help="timed repeats (medians)")
@click.option("--warmup", type=click.IntRange(min=0), default=1, show_default=True, help="untimed repeats first")
@click.option("--no-measure", is_flag=True, help="counts only: no timing, no peak memory, no roofline")
@click.option("--reparam", is_flag=True, help=REPARAM_HELP + "; with --infer")
@click.option(
    "--peak-gflops",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="device peak GFLOP/s for the roofline (default: measured with a large matmul)",
)
@click.option(
    "--bandwidth-gbs",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="device bandwidth GB/s for the roofline (default: measured with a large copy)",
)
@click.option(
    "--plot",
    default=None,
    type=click.Path(dir_okay=False),
    help="write a figure (.png/.pdf): per-block shares of FLOPs, bytes and time, and a roofline",
)
@format_option
def profile(fmt, train, device, repeats, warmup, no_measure, reparam, peak_gflops, bandwidth_gbs, plot, **spec) -> None:
    """Bytes moved, memory saved for backward and measured time beside FLOPs, per stage, block and gate."""
    from salient_timm.checks import DeviceError, usable_device

    from .profiling import ProfileOptions, profile_steps
    from .reports import profile_report
    from .timing import Peaks

    if (peak_gflops is None) != (bandwidth_gbs is None):
        raise click.BadParameter(
            "give both --peak-gflops and --bandwidth-gbs, or neither (then both are measured)",
            param_hint="--peak-gflops/--bandwidth-gbs",
        )
    if reparam and train:
        raise click.BadParameter("a folded model is for inference: add --infer", param_hint="--reparam")
    _check_output(plot, "--plot", figure=True)
    if plot and no_measure:
        raise click.BadParameter("the figure shows measured time: drop --no-measure", param_hint="--plot")
    try:
        usable_device(device, types=("cpu", "cuda"))
    except DeviceError as e:
        raise click.BadParameter(str(e), param_hint="--device") from e
    peaks = Peaks(peak_gflops * 1e9, bandwidth_gbs * 1e9, measured=False) if peak_gflops else None
    options = ProfileOptions(
        train=train, device=device, repeats=repeats, warmup=warmup, measure=not no_measure, peaks=peaks, reparam=reparam
    )
    model_spec = _spec(**spec)

    def build() -> Report:
        warnings: List[str] = []
        with click.progressbar(
            length=profile_steps(model_spec, options), label="profiling", file=sys.stderr, item_show_func=str
        ) as bar:
            report = profile_report(
                model_spec, options, plot=plot, progress=lambda what: bar.update(1, what), warn=warnings.append
            )
        for warning in warnings:
            click.echo(f"warning: {warning}", err=True)
        return report

    _emit(build, fmt)


@main.command()
@spec_options(maps=True)
@checkpoint_option
@click.option(
    "--onnx",
    "onnx_path",
    default=None,
    type=click.Path(dir_okay=False),
    help="write ONNX here (dynamic batch), checked against onnxruntime",
)
@click.option(
    "--exported-program",
    "program_path",
    default=None,
    type=click.Path(dir_okay=False),
    help="write torch.export's ExportedProgram here (.pt2)",
)
@click.option(
    "--hf",
    "hf_dir",
    default=None,
    type=click.Path(file_okay=False),
    help="write a Hugging Face folder (timm.create_model('local-dir:DIR', pretrained=True) reloads it)",
)
@click.option(
    "--random-weights",
    is_flag=True,
    help="--hf without --checkpoint: share the untrained model (e.g. to test a pipeline), labelled as such",
)
@format_option
def export(
    fmt,
    model,
    attn,
    position,
    attn_stages,
    num_classes,
    cifar_stem,
    input_size,
    checkpoint,
    onnx_path,
    program_path,
    hf_dir,
    random_weights,
) -> None:
    """Deploy a model: ONNX with an onnxruntime parity check, ExportedProgram, Hugging Face folder."""
    from .reports.export import export_report

    if not (onnx_path or program_path or hf_dir):
        raise click.UsageError("give at least one of --onnx, --exported-program, --hf")
    if hf_dir and not checkpoint and not random_weights:
        raise click.UsageError(
            "--hf without --checkpoint would share random weights under the base's pretrained label; give "
            "--checkpoint RUN/best.pth (or a weights file), or --random-weights to share the untrained model"
        )
    _check_output(onnx_path, "--onnx")
    _check_output(program_path, "--exported-program")

    def build() -> Report:
        spec = _optional_spec(model, attn, position, attn_stages, num_classes, cifar_stem, input_size)
        return export_report(spec, checkpoint, input_size, onnx_path, program_path, hf_dir)

    _emit(build, fmt)


@main.command()
@spec_options(maps=True)
@checkpoint_option
@click.option(
    "--image",
    "-i",
    "images",
    multiple=True,
    type=click.Path(exists=True, dir_okay=False),
    help="image file (repeat for one row per image)",
)
@click.option(
    "--dataset",
    type=click.Choice(["cluttered-fashion-mnist", "fashion-mnist"]),
    default=None,
    help="instead of --image: a test split with object boxes; adds pointing game and energy in box per block",
)
@click.option("--data-dir", default=None, help="the Fashion-MNIST idx files  [default: Debian's folder]")
@click.option("--canvas", type=click.IntRange(min=28), default=None, help="canvas size  [default: cluttered 64]")
@click.option("--clutter", type=click.IntRange(min=0), default=None, help="clutter patches  [default: 8]")
@click.option("--test-subset", type=click.IntRange(min=1), default=None, metavar="N", help="first N test items")
@click.option(
    "--rows", type=click.IntRange(min=1, max=64), default=6, show_default=True, help="--dataset: images drawn"
)
@click.option("--out", "-o", default=None, type=click.Path(dir_okay=False), help="write the figure here (.png or .pdf)")
@click.option("--all-blocks", is_flag=True, help="one overlay per block instead of one per stage")
@click.option("--dpi", type=click.IntRange(min=20, max=600), default=100, show_default=True)
@format_option
def maps(
    fmt,
    model,
    attn,
    position,
    attn_stages,
    num_classes,
    cifar_stem,
    input_size,
    checkpoint,
    images,
    dataset,
    data_dir,
    canvas,
    clutter,
    test_subset,
    rows,
    out,
    all_blocks,
    dpi,
) -> None:
    """Saliency maps: every gate's map for each image; statistics always, a figure with --out. With --dataset:
    how well each gate localizes the object (pointing game, energy in box, chance)."""
    from .reports import maps as reports

    _check_output(out, "--out", figure=True)
    if bool(images) == bool(dataset):
        raise click.UsageError("give --image (one or more) or --dataset, not both")

    def build() -> Report:
        spec = _optional_spec(model, attn, position, attn_stages, num_classes, cifar_stem, input_size)
        if dataset:
            return reports.localization_report(
                spec,
                dataset,
                checkpoint,
                input_size,
                data_dir,
                canvas,
                clutter,
                test_subset,
                rows,
                out,
                all_blocks,
                dpi,
            )
        return reports.maps_report(spec, images, checkpoint, input_size, out, all_blocks, dpi)

    _emit(build, fmt)


if __name__ == "__main__":
    main()
