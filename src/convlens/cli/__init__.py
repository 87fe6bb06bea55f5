"""The ``convlens`` command line: a thin click layer over the library.

Each subcommand lives in its own module of this package and exposes ``register(group)``.
No logic lives here: commands parse options, call the library and print.
"""

from __future__ import annotations

import importlib
import sys

import click

from convlens import __version__
from convlens.errors import ConvLensError

#: Modules of ``convlens.cli`` that add commands.
COMMAND_MODULES: tuple[str, ...] = (
    "arith",
    "train_demo",
    "transpose",
    "project",
    "symbolic",
    "figure",
    "report",
    "scan",
)

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


@click.group(context_settings=CONTEXT)
@click.version_option(__version__, "--version", prog_name="convlens")
def cli() -> None:
    """See through convolutions: conv matrices, transposed convolution, convolution
    arithmetic, symbolic derivations and the Zeiler-Fergus deconvnet.

    Run `convlens COMMAND --help` for the options of one command.
    """


for _name in COMMAND_MODULES:
    importlib.import_module(f"convlens.cli.{_name}").register(cli)


def main(argv: list[str] | None = None) -> None:
    """Run the CLI; library errors print one line on stderr and exit with status 2."""
    try:
        cli.main(args=argv, prog_name="convlens", standalone_mode=False)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except (click.exceptions.Abort, KeyboardInterrupt):
        click.echo("convlens: interrupted", err=True)
        sys.exit(130)
    except (ConvLensError, FileNotFoundError, IsADirectoryError, PermissionError) as exc:
        click.echo(f"convlens: error: {exc}", err=True)
        sys.exit(2)
