"""The ``salient-train`` command: parses and checks its options from ``options.py`` (no torch, no timm), then runs
``salient_timm.train.cli.execute``. ``--help`` and ``--version`` answer without importing the trainer."""

from importlib.metadata import PackageNotFoundError, version

import click

from .options import OPTIONS
from .params import build

__all__ = ["main"]

HELP = (
    "Train or fine-tune a timm ResNet, optionally retrofitted with attention. Launch with torchrun for several "
    "processes (DDP; NCCL on GPU, gloo on CPU).\n\n"
    "A retrofit (--pretrained or --pretrained-path, with --attn) starts the attention as the identity and trains it "
    "with --attn-lr-scale and --attn-weight-decay."
)


def _version() -> str:
    try:
        return version("salient-timm")
    except PackageNotFoundError:  # a source tree that is not installed
        return "0.0.0+unknown"


def _command(**_params) -> None:
    from salient_timm.train.cli import execute  # the trainer, only now: torch and timm load here

    execute(click.get_current_context())


main = click.version_option(_version(), prog_name="salient-train")(
    click.Command(
        "salient-train",
        callback=_command,
        params=build(OPTIONS),
        context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110},
        help=HELP,
    )
)


if __name__ == "__main__":
    main()
