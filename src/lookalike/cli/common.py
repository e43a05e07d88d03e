"""What every command shares: the consoles, the one way to fail, and the options used by several areas."""

from __future__ import annotations

from typing import Annotated, NoReturn, Optional

import typer
from rich.console import Console

from lookalike.errors import LookalikeError

console = Console()
err_console = Console(stderr=True)

ModelOpt = Annotated[Optional[str], typer.Option("--model", "-m", help="model name or alias (default: config)")]
SizeOpt = Annotated[Optional[int], typer.Option("--size", "-s", help="input size in pixels (default: the model's)")]
CatalogOpt = Annotated[str, typer.Option("--catalog", "-c", help="catalog name (letters, digits, - and _)")]


def fail(exc: LookalikeError) -> NoReturn:
    """Print a user mistake as one line on stderr and exit 2 (never a traceback)."""
    err_console.print(f"[red]error:[/red] {exc.message}", highlight=False)
    raise typer.Exit(2)
