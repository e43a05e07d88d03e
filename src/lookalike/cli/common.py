"""What every command shares: the consoles, the one way to fail, progress, and the options used by several areas.

Output rules (a pipe must get whole lines): on a terminal Rich lays tables out to the window; when stdout
is not a terminal the console's width is unbounded, so tables take their content's width and no line
(a path, a model name) is cut or wrapped. Progress goes to stderr, only on a terminal, never with --json.
"""

from __future__ import annotations

import os
import sys
import traceback
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Annotated, Any, NoReturn, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn)

from lookalike.errors import LookalikeError

def _plain_help() -> None:
    """Typer 0.2x help shows ``<bool>`` after flags (they take no value: ``--json true`` fails) and
    ``{image_a}`` for arguments; show flags bare and arguments as ``IMAGE_A``, as Click always did."""
    from typer import core

    option_type = getattr(core.TyperOption, "display_type_rich", None)
    if option_type is not None:
        def display_type_rich(self: Any, ctx: Any) -> str | None:
            return None if getattr(self, "is_flag", False) and self.metavar is None else option_type(self, ctx)

        core.TyperOption.display_type_rich = display_type_rich  # type: ignore[method-assign]
    if isinstance(getattr(core.TyperArgument, "display_name_raw", None), property):
        core.TyperArgument.display_name_raw = property(  # type: ignore[method-assign,assignment]
            lambda self: self.metavar if self.metavar is not None else self.name.upper())
    if hasattr(core.TyperArgument, "_usage_display_name"):
        def usage_name(self: Any) -> str:
            name = self.display_name_raw if self.required else f"[{self.display_name_raw}]"
            return name + ("..." if self.nargs != 1 else "")

        core.TyperArgument._usage_display_name = usage_name  # type: ignore[method-assign]


_plain_help()

PIPE_WIDTH = 10_000  # "unbounded": tables take their content's width when nobody's window limits them


def _console(stderr: bool = False) -> Console:
    console = Console(stderr=stderr)
    if not console.is_terminal:
        console = Console(stderr=stderr, width=PIPE_WIDTH, soft_wrap=True)
    return console


console = _console()
err_console = _console(stderr=True)

ModelOpt = Annotated[Optional[str], typer.Option("--model", "-m", help="model name or alias (default: config)")]
SizeOpt = Annotated[Optional[int], typer.Option("--size", "-s", help="input size in pixels (default: the model's)")]
CatalogOpt = Annotated[str, typer.Option("--catalog", "-c", help="catalog name (letters, digits, - and _)")]


def debug_enabled() -> bool:
    """``--debug`` or ``LOOKALIKE_DEBUG=1``: show tracebacks instead of one-line errors."""
    return os.environ.get("LOOKALIKE_DEBUG", "").strip().lower() not in ("", "0", "false", "no")


def _print_error(message: str) -> None:
    first, *rest = message.splitlines() or [""]
    err_console.print(f"[red]error:[/red] {escape(first)}", highlight=False)
    for line in rest:
        err_console.print(escape(line), highlight=False)


def fail(exc: LookalikeError) -> NoReturn:
    """Print a user mistake as one line (or a short block) on stderr and exit 2 (never a traceback)."""
    if debug_enabled():
        traceback.print_exception(exc, file=sys.stderr)
    _print_error(exc.message)
    raise typer.Exit(2)


def _show_warning(message: Any, category: type[Warning], filename: str, lineno: int, file: Any = None,
                  line: str | None = None) -> None:
    from lookalike.config import ConfigWarning

    if issubclass(category, ConfigWarning) and not debug_enabled():
        err_console.print(f"[yellow]warning:[/yellow] {escape(str(message))}", highlight=False)
    else:
        _original_showwarning(message, category, filename, lineno, file, line)


_original_showwarning = warnings.showwarning


class LookalikeTyper(typer.Typer):
    """The app: a LookalikeError raised anywhere (settings included) ends as ``error: ...``, exit 2."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        warnings.showwarning = _show_warning
        try:
            return super().__call__(*args, **kwargs)
        except LookalikeError as exc:
            try:
                fail(exc)
            except typer.Exit as done:
                sys.exit(done.exit_code)
        except OSError as exc:  # a file or folder the user named cannot be read or written
            if debug_enabled():
                raise
            _print_error(f"{exc.strerror or exc}: {exc.filename}" if exc.filename else str(exc))
            sys.exit(2)
        except Exception as exc:  # a bug, not a user mistake: one line and how to see more
            if debug_enabled():
                raise
            _print_error(f"unexpected {type(exc).__name__}: {exc}\n"
                         "This is a bug in lookalike; rerun with --debug (or LOOKALIKE_DEBUG=1) for the traceback.")
            sys.exit(1)


@contextmanager
def progress(description: str, total: int | None = None, *, quiet: bool = False) -> Iterator[Callable[..., None]]:
    """A transient spinner (or a bar when ``total`` is known) with elapsed time on stderr.

    Yields ``update(completed=None, total=None, description=None)``. Quiet (nothing at all) with --json
    or when stderr is not a terminal, so pipes and files only get the result."""
    columns: list[Any] = [SpinnerColumn(), TextColumn("{task.description}")]
    if total is not None:
        columns += [BarColumn(), MofNCompleteColumn()]
    columns.append(TimeElapsedColumn())
    disabled = quiet or not err_console.is_terminal
    with Progress(*columns, console=err_console, transient=True, disable=disabled) as bar:
        task = bar.add_task(description, total=total)

        def update(completed: int | None = None, total: int | None = None, description: str | None = None) -> None:
            changes: dict[str, Any] = {}
            if completed is not None:
                changes["completed"] = completed
            if total is not None:
                changes["total"] = total
            if description is not None:
                changes["description"] = description
            bar.update(task, **changes)

        yield update


def plural(n: int, one: str, many: str | None = None) -> str:
    """``1 exact copy``, ``2 exact copies``."""
    return f"{n} {one if n == 1 else (many or one + 's')}"


def display_path(path: str | os.PathLike[str]) -> str:
    """A path as a person reads it: relative to the current folder when inside it, else with ``~`` for home.

    Only for human output (tables, messages); --json keeps the stored absolute path."""
    text = os.fspath(path)
    if not os.path.isabs(text):
        return text
    cwd = os.getcwd()
    if text == cwd or text.startswith(cwd.rstrip(os.sep) + os.sep):
        return os.path.relpath(text, cwd)
    home = os.path.expanduser("~")
    if home not in ("", os.sep) and text.startswith(home.rstrip(os.sep) + os.sep):
        return "~" + text[len(home.rstrip(os.sep)):]
    return text
