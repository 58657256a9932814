"""salient-train's command line: one process, or one of many under torchrun (DDP). The run itself: ``run``."""

import argparse
import os
from typing import Optional, Sequence

import click

from .. import __version__
from ..errors import SalientError
from .config import TrainConfigError
from .options import command_options, resolve
from .run import run

__all__ = ["main", "run", "parse_args"]


def execute(ctx: click.Context) -> None:
    """Run salient-train from a parsed command line (``salient_train.cli``'s and this module's): a usage error, a
    ``SalientError`` or Ctrl-C each end with one line and their exit code."""
    args = None
    try:
        args = resolve(ctx)
        run(args)
    except TrainConfigError as e:
        raise click.UsageError(str(e), ctx) from e
    except SalientError as e:
        raise click.ClickException(str(e)) from e
    except KeyboardInterrupt:
        out = getattr(args, "out", None)
        done = out and os.path.exists(os.path.join(out, "last.pth"))
        click.echo(
            "interrupted"
            + (
                f": {out} keeps every finished epoch; continue with --resume {out}"
                if done
                else (f": no epoch finished; start again with --resume {out}" if out else "")
            ),
            err=True,
        )
        ctx.exit(130)


def _command(**_params) -> None:
    execute(click.get_current_context())


main = click.version_option(__version__, prog_name="salient-train")(
    click.Command(
        "salient-train",
        callback=_command,
        params=command_options(),
        context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110},
        help="Train or fine-tune a timm ResNet, optionally retrofitted with attention. Launch with torchrun for "
        "several processes (DDP; NCCL on GPU, gloo on CPU).\n\n"
        "A retrofit (--pretrained or --pretrained-path, with --attn) starts the attention as the identity and "
        "trains it with --attn-lr-scale and --attn-weight-decay.",
    )
)


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    """Parse a salient-train command line (without the program name) into the run's options."""
    with main.make_context("salient-train", list(argv or [])) as ctx:
        return resolve(ctx)


if __name__ == "__main__":
    main()
