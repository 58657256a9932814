"""``salient-analyze`` command group (presentation only; the analysis lives in library modules)."""
import click

import salient_timm


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(salient_timm.__version__, prog_name="salient-analyze")
def main() -> None:
    """Count parameters, FLOPs and size of attention add-ons on ResNets, and check the seed's claims."""


if __name__ == "__main__":
    main()
