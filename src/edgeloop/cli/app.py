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
import typer.main

from edgeloop import __version__
from edgeloop.errors import EdgeloopError, MissingExtraError

# (command name, "module:function"), in the order `edgeloop --help` lists them.
COMMANDS: list[tuple[str, str]] = [
    ("demo", "edgeloop.cli.demo:demo"),
    ("profile", "edgeloop.cli.profile:profile"),
    ("targets", "edgeloop.cli.profile:targets"),
    ("estimate", "edgeloop.cli.estimate:estimate"),
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
    ("search", "edgeloop.cli.search:search"),
    ("fit", "edgeloop.cli.fit:fit"),
    ("card", "edgeloop.cli.card:card"),
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
    ("fl", "edgeloop.cli.fl:app"),
    ("heal", "edgeloop.cli.heal:app"),
    ("autoheal", "edgeloop.cli.autoheal:app"),
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


def _tidy_help(command: Any) -> None:
    """Give flags no metavar and repeatable options their element's (``<Path>``, not
    ``<list[Path]>``): typer >= 0.22 labels them with the Python annotation (``<bool>``).

    Older typer (standalone click) has no ``type_descriptor`` and already prints them well.
    """
    for param in getattr(command, "params", []):
        descriptor = getattr(param, "type_descriptor", None)
        if descriptor is None or param.metavar is not None:
            continue
        if getattr(param, "is_flag", False):
            param.metavar = ""
        elif descriptor.is_list and not descriptor.is_choice:
            label = str(param.bare_type())
            if label.startswith("list[") and label.endswith("]"):
                param.metavar = f"<{label[5:-1].lower()}>"
    if hasattr(command, "_help_option"):  # bundled click builds --help lazily, per command
        build_help_option = command.get_help_option

        def get_help_option(ctx: Any, _build: Any = build_help_option) -> Any:
            option = _build(ctx)
            if option is not None:
                option.metavar = ""
            return option

        command.get_help_option = get_help_option
    for sub in getattr(command, "commands", {}).values():
        _tidy_help(sub)


def _click_exception_bases() -> tuple[type[BaseException], ...]:
    """The click exception base classes the installed typer raises, from wherever they live.

    typer >= 0.22 bundles its own click (``typer._click``), whose ``ClickException`` derives
    from ``typer.TyperException``; typer < 0.21 (which Flower pins) raises standalone click's.
    Both may be importable at once, so both are caught.
    """
    bases: list[type[BaseException]] = []
    try:
        from typer._click.exceptions import ClickException as BundledClickException
    except ImportError:  # typer < 0.21: no bundled click
        pass
    else:
        bases.append(BundledClickException)
    try:
        import click
    except ImportError:  # typer >= 0.22 no longer depends on click
        pass
    else:
        bases.append(click.ClickException)
    return tuple(bases)


def _rejected_value(e: BaseException) -> object | None:
    """The value a parameter refused, where the message leaves it out.

    typer >= 0.22 converts values with pydantic and words the error without the input
    ("Input should be a valid integer"); the ValidationError it chains still holds it.
    """
    errors = getattr(e.__cause__, "errors", None)
    if not callable(errors):
        return None
    try:
        first = errors()[0]
    except (IndexError, TypeError):
        return None
    return first.get("input") if isinstance(first, dict) else None


def _usage_error(e: Exception) -> int | None:
    """Print a click usage error as one line on stderr and return its exit code (2).

    Returns None for an exception that is not click's, so the caller re-raises it.
    """
    bases = _click_exception_bases()
    if not bases or not isinstance(e, bases):
        return None
    if type(e).__name__ == "NoArgsIsHelpError":  # a bare group: its help is the answer
        e.show()  # type: ignore[attr-defined]
        return 0
    message = " ".join(str(e.format_message()).split())  # type: ignore[attr-defined]
    got = _rejected_value(e)
    if got is not None and repr(got) not in message:
        message = f"{message.rstrip('.')}; got {got!r}"
    ctx = getattr(e, "ctx", None)
    hint = f" (see '{ctx.command_path} --help')" if ctx is not None else ""
    sys.stderr.write(f"error: {message}{hint}\n")
    return int(getattr(e, "exit_code", 2))


def main(argv: list[str] | None = None) -> int:
    """Entry point: run the app, turning an :class:`EdgeloopError` into one line and its code."""
    args = sys.argv[1:] if argv is None else argv
    debug = "--debug" in args or os.environ.get("EDGELOOP_DEBUG") == "1"
    try:
        command = typer.main.get_command(app)
        _tidy_help(command)
        rv = command.main(args=args, prog_name="edgeloop", standalone_mode=False)
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
    except ModuleNotFoundError as e:
        missing = _missing_extra(e)
        if missing is None or debug:
            raise
        sys.stderr.write(f"error: {missing}\n")
        return MissingExtraError.exit_code
    except Exception as e:
        code = _usage_error(e)
        if code is None:
            raise
        return code
    return rv if isinstance(rv, int) else 0


# What a command may need beyond `pip install edgeloop` (the device install), by extra.
_EXTRAS = {
    "train": ("torch", "onnx", "onnxscript", "sklearn", "torch_pruning", "optuna", "yaml",
              "matplotlib", "jinja2", "PIL"),
    "server": ("fastapi", "starlette", "uvicorn", "sqlalchemy", "alembic", "psycopg", "scipy",
               "prometheus_client"),
    "federated": ("flwr",),
}  # fmt: skip


def _missing_extra(e: ModuleNotFoundError) -> str | None:
    """One line for a command that needs a package of an extra this install left out."""
    root = (e.name or "").split(".")[0]
    for extra, modules in _EXTRAS.items():
        if root in modules:
            return (
                f"this command needs {root!r}, which this install does not have (a device "
                f"install leaves it out): pip install 'edgeloop[{extra}]'"
            )
    return None
