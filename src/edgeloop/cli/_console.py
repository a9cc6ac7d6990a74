"""The one place the CLI touches rich: consoles, tables, progress bars, error lines."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from rich.console import Console
from rich.measure import Measurement
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

__all__ = ["console", "err_console", "print_json", "progress", "table", "track"]

_UNBOUNDED = 10_000  # wider than any table's natural width

console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)
# Off a terminal there is no width to fit: rich assumes 80 columns and breaks long lines, which
# split "parity max abs diff" over two lines of a redirected log. Lines stay whole there.
for _c in (console, err_console):
    _c.soft_wrap = not _c.is_terminal


def print_json(data: Any) -> None:
    """Plain JSON on stdout (no colour, no wrapping) so scripts can parse it."""
    sys.stdout.write(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")
    sys.stdout.flush()


def table(title: str | None, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    # The title is a line of its own: rich wraps a table's title at the table's width, which
    # split "model on data, the whole file: 50 samples" over four lines above a narrow table.
    t = Table()
    for c in columns:
        t.add_column(c, overflow="fold")
    for r in rows:
        t.add_row(*("" if v is None else str(v) for v in r))
    terminal = console.is_terminal
    if title:
        console.print(title, style="table.title", markup=False, soft_wrap=not terminal)
    if terminal:
        console.print(t)
        return
    # Redirected output has no terminal width to fit (rich assumes 80 and folds cells mid-word:
    # "origin al"), so print the table at its natural width. Console.print clamps `width` to
    # the console's, hence a console of that width on the same stream.
    natural = Measurement.get(console, console.options.update_width(_UNBOUNDED), t).maximum
    Console(file=console.file, highlight=False, width=max(natural, console.width)).print(t)


@contextmanager
def progress(transient: bool = False) -> Iterator[Progress]:
    """A progress bar on stderr, so stdout stays clean for ``--json`` output."""
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.fields[status]}"),
        console=err_console,
        transient=transient,
        # a transient bar leaves nothing behind; off a terminal rich still writes a bare
        # newline at stop, which put a blank line above the error line
        disable=transient and not err_console.is_terminal,
    ) as p:
        yield p


def track(items: Sequence[Any], description: str) -> Iterator[Any]:
    with progress(transient=True) as p:
        task = p.add_task(description, total=len(items), status="")
        for item in items:
            yield item
            p.advance(task)
