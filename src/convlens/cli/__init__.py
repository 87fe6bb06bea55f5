"""The ``convlens`` command line: a thin click layer over the library.

Each subcommand lives in its own module of this package and exposes ``register(group)``.
No logic lives here: commands parse options, call the library and print.

The group is lazy: ``convlens --help`` lists the commands from :data:`COMMANDS` without importing
their modules, and a command's module (with its torch, sympy or matplotlib) is imported only when
that command runs, so ``convlens arith conv`` starts as fast as the arithmetic allows.

>>> from click.testing import CliRunner
>>> result = CliRunner().invoke(cli, ["--help"])
>>> "arith" in result.output and "symbolic" in result.output
True
"""

from __future__ import annotations

import importlib
import os
import sys
from typing import Any

import click

from convlens import __version__
from convlens.errors import ConvLensError

#: Every top-level command, one line each: name -> (module of ``convlens.cli`` whose
#: ``register(group)`` adds it, the command's one-line help). The help is what ``convlens --help``
#: lists without importing the module; ``tests/test_startup.py`` checks that it equals the
#: command's own ``short_help`` (or the first sentence of its docstring), so it cannot drift.
#: A new command adds its line here; a module may register several commands.
COMMANDS: dict[str, tuple[str, str]] = {
    "arith": ("arith", "Convolution arithmetic: output sizes, inverses, receptive fields."),
    "correspondence": (
        "analyze",
        "Correspondence of object parts across images (Zeiler & Fergus, arXiv:1311.2901, §4.3, "
        "Table 1).",
    ),
    "demo": (
        "report",
        "The report for the embedded demo CNN (trained on Fashion-MNIST) on the bundled test "
        "sample: no model, no data, nothing downloaded.",
    ),
    "evolution": (
        "analyze",
        "Feature evolution during training (Zeiler & Fergus, arXiv:1311.2901, Figure 4).",
    ),
    "explore": ("explore", "Write an interactive HTML page for conv, transposed conv and C."),
    "figure": (
        "figure",
        "Draw the kernel sliding (conv), the transposed conv (scatter or fractional) and C.",
    ),
    "invariance": (
        "analyze",
        "Invariance to vertical translation, scale and rotation (Zeiler & Fergus, "
        "arXiv:1311.2901, Figure 5).",
    ),
    "lint": ("lint", "Checkerboard overlap, size ambiguity and aliasing of a model."),
    "project": (
        "project",
        "Project activations of IMAGE... back to pixel space (Zeiler & Fergus, arXiv:1311.2901).",
    ),
    "report": (
        "report",
        "Scan a dataset and write a browsable HTML report: per layer the top-k projections beside "
        "their image patches, the first-layer filters, occlusion maps, feature evolution over "
        "checkpoints (with --checkpoints), invariance, correspondence of parts (with --parts, or "
        "the demo data) and a summary.",
    ),
    "scan": (
        "scan",
        "Scan a dataset for the top-k images of every channel of LAYERS and project them "
        "(Zeiler & Fergus, Fig. 2).",
    ),
    "symbolic": (
        "symbolic",
        "Derive C, the conv output and the transposed-conv result with sympy.",
    ),
    "train-demo": (
        "train_demo",
        "Train the demo CNN on Fashion-MNIST (deterministic on the CPU) and save its weights.",
    ),
    "transpose": (
        "transpose",
        "Transposed convolution four ways: matmul, scatter, fractional, autograd.",
    ),
}

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


def load_command_module(module: str) -> dict[str, click.Command]:
    """Import ``convlens.cli.<module>`` and return the commands its ``register`` adds, by name.

    >>> sorted(load_command_module("arith"))
    ['arith']
    """
    scratch = click.Group()
    importlib.import_module(f"convlens.cli.{module}").register(scratch)
    return dict(scratch.commands)


class LazyGroup(click.Group):
    """A click group that imports a command's module only when the command is looked up.

    Listing (``--help``, shell completion) reads :data:`COMMANDS`; :meth:`get_command` imports the
    one module that registers the command asked for.
    """

    def __init__(self, *args: Any, lazy: dict[str, tuple[str, str]], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lazy = lazy

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(self.lazy) | set(self.commands))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in self.lazy:
            for name, command in load_command_module(self.lazy[cmd_name][0]).items():
                self.commands.setdefault(name, command)
        return self.commands.get(cmd_name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        names = self.list_commands(ctx)
        if not names:
            return
        limit = formatter.width - 6 - max(len(name) for name in names)
        rows = []
        for name in names:
            if name in self.commands:
                command = self.commands[name]
                if command.hidden:
                    continue
                text = command.get_short_help_str(limit)
            else:
                # click's own shortening, applied to the table's line (no import of the module).
                text = click.Command(name, help=self.lazy[name][1]).get_short_help_str(limit)
            rows.append((name, text))
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=LazyGroup, lazy=COMMANDS, context_settings=CONTEXT)
@click.version_option(__version__, "--version", prog_name="convlens")
def cli() -> None:
    """See through convolutions: conv matrices, transposed convolution, convolution
    arithmetic, symbolic derivations and the Zeiler-Fergus deconvnet.

    Run `convlens COMMAND --help` for the options of one command.
    """


def _format_warning(
    message: Warning | str, category: type[Warning], filename: str, lineno: int, line: Any = None
) -> str:
    """A warning as a command-line user reads it: one line, no source file or code line."""
    first = (str(message).strip().splitlines() or [""])[0]
    return f"convlens: warning: {first}\n"


def main(argv: list[str] | None = None) -> None:
    """Run the CLI; library errors print one line on stderr and exit with status 2, warnings
    one line each (``convlens: warning: ...``)."""
    import warnings

    shown = warnings.formatwarning  # only how a shown warning reads: recording is untouched
    warnings.formatwarning = _format_warning
    try:
        _main(argv)
    finally:
        warnings.formatwarning = shown


def _main(argv: list[str] | None) -> None:
    try:
        cli.main(args=argv, prog_name="convlens", standalone_mode=False)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.UsageError as exc:
        if type(exc).__name__ == "NoArgsIsHelpError":  # a group called bare: its help
            exc.show()
            sys.exit(exc.exit_code)
        # One line, like every other error: the message names the option, plus where help is.
        command = exc.ctx.command_path if exc.ctx is not None else "convlens"
        click.echo(f"convlens: error: {exc.format_message()} (see '{command} --help')", err=True)
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        click.echo(f"convlens: error: {exc.format_message()}", err=True)
        sys.exit(exc.exit_code)
    except (click.exceptions.Abort, KeyboardInterrupt) as exc:
        if isinstance(exc.__cause__, EOFError):
            # click turns an EOFError (a truncated .gz or stream) into Abort: it is bad data, not
            # an interruption.
            click.echo(
                f"convlens: error: unexpected end of data (a truncated or corrupt file): "
                f"{exc.__cause__ or 'EOFError'}",
                err=True,
            )
            sys.exit(2)
        click.echo("convlens: interrupted", err=True)
        sys.exit(130)
    except (ConvLensError, OSError) as exc:
        click.echo(f"convlens: error: {exc}", err=True)
        sys.exit(2)
    except Exception as exc:  # a bug of convlens: one line, the traceback only on request
        if os.environ.get("CONVLENS_DEBUG"):
            raise
        click.echo(
            f"convlens: internal error: {type(exc).__name__}: {exc} "
            "(please report it; CONVLENS_DEBUG=1 shows the traceback)",
            err=True,
        )
        sys.exit(1)
