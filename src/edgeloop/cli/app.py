"""Assembles the ``edgeloop`` Typer app from one module per command (group).

Command modules keep heavy imports (torch, onnxruntime, fastapi) inside their functions, so
``edgeloop --help`` stays fast. To add a command, add one row to ``COMMANDS`` or ``GROUPS``.
"""

from __future__ import annotations

import importlib
import os
import sys
from typing import Any

import typer

from edgeloop import __version__
from edgeloop.errors import EdgeloopError

# (command name, "module:function"), in the order `edgeloop --help` lists them.
COMMANDS: list[tuple[str, str]] = [
    ("demo", "edgeloop.cli.demo:demo"),
    ("profile", "edgeloop.cli.profile:profile"),
    ("targets", "edgeloop.cli.profile:targets"),
    ("train", "edgeloop.cli.train:train"),
    ("export", "edgeloop.cli.train:export"),
    ("run", "edgeloop.cli.run:run"),
    ("bench", "edgeloop.cli.run:bench"),
    ("evaluate", "edgeloop.cli.run:evaluate"),
    ("optimize", "edgeloop.cli.optimize:optimize"),
    ("prune", "edgeloop.cli.compress:prune"),
    ("sparsify", "edgeloop.cli.compress:sparsify"),
    ("distill", "edgeloop.cli.distill:distill"),
    ("qat", "edgeloop.cli.compress:qat"),
    ("binarize", "edgeloop.cli.compress:binarize"),
    ("pack", "edgeloop.cli.bundle:pack"),
    ("verify", "edgeloop.cli.bundle:verify"),
    ("release", "edgeloop.cli.bundle:release"),
    ("agent", "edgeloop.cli.agent:agent"),
    ("server", "edgeloop.cli.server:server"),
]

# (group name, "module:typer_app")
GROUPS: list[tuple[str, str]] = [
    ("keys", "edgeloop.cli.keys:app"),
    ("registry", "edgeloop.cli.registry:app"),
    ("fleet", "edgeloop.cli.fleet:app"),
    ("rollout", "edgeloop.cli.rollout:app"),
    ("monitor", "edgeloop.cli.monitor:app"),
]

app = typer.Typer(
    name="edgeloop",
    help="Take a trained model to a fleet of edge devices and keep it good there.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _resolve(target: str) -> Any:
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)


for _name, _target in COMMANDS:
    app.command(_name)(_resolve(_target))
for _name, _target in GROUPS:
    app.add_typer(_resolve(_target), name=_name)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"edgeloop {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks for errors."),
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """Take a trained model to a fleet of edge devices and keep it good there."""
    if debug:
        os.environ["EDGELOOP_DEBUG"] = "1"


def main(argv: list[str] | None = None) -> int:
    """Entry point: run the app, turning an :class:`EdgeloopError` into one line and its code."""
    args = sys.argv[1:] if argv is None else argv
    debug = "--debug" in args or os.environ.get("EDGELOOP_DEBUG") == "1"
    try:
        rv = app(args=args, prog_name="edgeloop", standalone_mode=False)
    except EdgeloopError as e:
        if debug:
            raise
        from rich.markup import escape

        from edgeloop.cli._console import err_console

        # escaped: messages quote shapes like [batch, 8] that rich would take for markup
        err_console.print(
            f"[bold red]error:[/] {escape(str(e))}", markup=True, highlight=False, soft_wrap=True
        )
        return e.exit_code
    except typer.Exit as e:
        return int(e.exit_code or 0)
    except typer.Abort:
        sys.stderr.write("aborted\n")
        return 130
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        return 130
    except Exception as e:  # click's usage errors and friends
        import click

        if isinstance(e, click.exceptions.ClickException):
            e.show()
            return e.exit_code
        if isinstance(e, click.exceptions.Exit):
            return e.exit_code
        raise
    return rv if isinstance(rv, int) else 0
